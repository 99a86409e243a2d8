//! Inputs the fuzzers (`scripts/fuzz.sh`) made crash, kept as regression
//! tests: each must now give an error, not a panic.

const PARQUET_CRASHES: [&str; 1] = ["parquet_table-crash-5846637274.parquet"];

/// A Parquet file whose embedded Arrow schema declares a 536870976-bit
/// integer: arrow-ipc 59 panicked while decoding it.
#[test]
fn fuzzed_parquet_files_are_errors_not_panics() {
    for name in PARQUET_CRASHES {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/reliability/fuzz")
            .join(name);
        assert!(scir::table::schema_of(&path).is_err(), "{name}");
        assert!(scir::table::inspect(&path).is_err(), "{name}");
        let err = scir::table::read(&path).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a readable Parquet file"),
            "{err:#}"
        );
    }
}
