//! Inputs the fuzzers (`scripts/fuzz.sh`) made crash, kept as regression
//! tests: each must now give an error, not a panic.

use crate::util::FUZZ_SEPARATOR;

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

/// GGUF files that crashed the import, and what the error now says: a tensor shape that
/// claims more elements than memory holds (candle's dequantisation panicked with "capacity
/// overflow"; each tensor's extent is now checked against the file first), and a header that
/// claims millions of layers (sizing the model from it ran out of memory, the fuzzer's 2 GiB
/// limit, before any tensor was read; the config's sizes are now bounded).
#[test]
fn fuzzed_gguf_files_are_errors_that_write_nothing() {
    for (name, says) in [
        (
            "gguf-crash-capacity.gguf",
            "the file is truncated or corrupt",
        ),
        ("gguf-oom-layers.gguf", "beyond any model scir can hold"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let err = scir::model::gguf::import(&fuzz_input(name), &out).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(says), "{name}: {msg}");
        assert!(!out.exists(), "{name}");
    }
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
        let end = input
            .windows(FUZZ_SEPARATOR.len())
            .position(|w| w == FUZZ_SEPARATOR)
            .unwrap_or(input.len());
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("tokenizer.json");
        std::fs::write(&path, &input[..end]).unwrap();
        let err = scir::model::tokenizer::read_tokenizer(&path).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("not a valid tokenizer"), "{name}: {msg}");
    }
}
