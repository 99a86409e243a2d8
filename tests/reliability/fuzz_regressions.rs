//! Inputs the fuzzers (`scripts/fuzz.sh`) made crash, kept as regression
//! tests: each must now give an error, not a panic.

const PARQUET_CRASHES: [&str; 2] = [
    "parquet_table-crash-5846637274.parquet",
    "parquet_table-crash-float-precision.parquet",
];

/// Parquet files whose embedded Arrow schema declares a 536870976-bit integer or a float of
/// unknown precision: arrow-ipc 59 panics while decoding them, and `table` turns that into
/// an error.
#[test]
fn fuzzed_parquet_files_are_errors_not_panics() {
    for name in PARQUET_CRASHES {
        let path = fuzz_input(name);
        assert!(scir::table::schema_of(&path).is_err(), "{name}");
        assert!(scir::table::inspect(&path).is_err(), "{name}");
        let err = scir::table::read(&path).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a readable Parquet file"),
            "{err:#}"
        );
    }
}

fn fuzz_input(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reliability/fuzz")
        .join(name)
}

/// A GGUF file whose tensor shape claims more elements than memory holds: candle's
/// dequantisation panicked with "capacity overflow"; the import now checks each tensor's
/// extent against the file first.
#[test]
fn fuzzed_gguf_with_a_huge_tensor_is_an_error_that_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let err = scir::model::gguf::import(&fuzz_input("gguf-crash-capacity.gguf"), &out).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("the file is truncated or corrupt"), "{msg}");
    assert!(!out.exists());
}

/// A GGUF header that claims millions of layers: sizing the model from it ran out of memory
/// (the fuzzer's 2 GiB limit) before any tensor was read; the config's sizes are now bounded.
#[test]
fn fuzzed_gguf_with_absurd_sizes_is_an_error_that_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let err = scir::model::gguf::import(&fuzz_input("gguf-oom-layers.gguf"), &out).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("beyond any model scir can hold"), "{msg}");
    assert!(!out.exists());
}

/// `tokenizer.json` files on which the tokenizers crate (0.23) panicked: a `decoder` that is
/// neither tagged nor a known untagged shape (inside its deserializer), and a post-processor
/// template naming a special token it does not define (at the first encode). scir catches
/// both when it loads the file.
#[test]
fn fuzzed_tokenizers_that_panicked_the_tokenizers_crate_are_errors() {
    for name in ["tokenizer-crash-decoder", "tokenizer-crash-post-processor"] {
        // A fuzz input is tokenizer.json, tokenizer_config.json, chat template, split at
        // the fuzzers' separator (fuzz/src/scratch.rs).
        let input = std::fs::read(fuzz_input(name)).unwrap();
        let sep = b"\n--8<--\n";
        let end = input
            .windows(sep.len())
            .position(|w| w == sep)
            .unwrap_or(input.len());
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("tokenizer.json");
        std::fs::write(&path, &input[..end]).unwrap();
        let err = scir::model::tokenizer::read_tokenizer(&path).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("not a valid tokenizer"), "{name}: {msg}");
    }
}
