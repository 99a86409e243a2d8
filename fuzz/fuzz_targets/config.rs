//! Any bytes as `pipeline.yaml`: `config::load` must return Ok or an error,
//! never panic, hang or overflow the stack.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("scir-fuzz-config-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("pipeline.yaml");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let registry = scir_fuzz::stages::registry();
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = scir_fuzz::engine::config::parse(&path, text);
    }
    let _ = scir_fuzz::engine::config::load(&path, &registry);
});
