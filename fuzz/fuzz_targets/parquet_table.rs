//! Any bytes as a `.parquet` table: scir's readers (`table::read`,
//! `schema_of`, `inspect`, `check_schema`) must return Ok or an error, never
//! panic, hang or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `table` catches arrow-ipc's panics on malformed embedded schemas on purpose.
    scir_fuzz::scratch::let_scir_catch_panics();
    let dir = std::env::temp_dir().join(format!("scir-fuzz-parquet-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("t.parquet");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(schema) = scir_fuzz::table::schema_of(&path) {
        let _ = scir_fuzz::table::check_schema("t", &schema, &schema);
    }
    let _ = scir_fuzz::table::inspect(&path);
    if let Ok(batches) = scir_fuzz::table::read(&path) {
        for b in &batches {
            let _ = scir_fuzz::table::with_constant_str(b, "arm", "a");
        }
    }
});
