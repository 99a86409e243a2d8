//! Scratch files for the targets that read from disk: one directory per target and process,
//! emptied before each input, and splitting one input into several files.

use std::path::{Path, PathBuf};

/// What separates the parts of an input that becomes several files.
pub const SEPARATOR: &[u8] = b"\n--8<--\n";

/// An empty scratch directory for `target` (the same path on every call of this process).
pub fn dir(target: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("scir-fuzz-{target}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory under the temp dir");
    dir
}

/// The first `n` parts of `data` split at [`SEPARATOR`] (missing parts empty; the last part
/// keeps any further separators).
pub fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(n);
    let mut rest = data;
    while out.len() + 1 < n {
        match rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + SEPARATOR.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    out.resize(n, &[]);
    out
}

/// Write `bytes` to `dir/name`.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("a writable scratch directory");
}

/// libfuzzer-sys's panic hook aborts at the first panic, before a `catch_unwind` inside scir
/// can see it; scir catches the `tokenizers` crate's panics on purpose
/// (`model::tokenizer::parse_tokenizer`), so targets that reach it put the default hook back.
/// A panic that escapes the target still aborts the run: libfuzzer-sys catches it at the top.
pub fn let_scir_catch_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| drop(std::panic::take_hook()));
}
