//! JSON Lines input files (prompt and question sets): one JSON object per non-blank line,
//! every error a user error naming the file and the line.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::user_err;

/// Every non-blank line of the file at `path` as `T`, with its 1-based line number. `item`
/// names what a line is (`an MT-Bench question`) and `expected` says what it must hold.
pub fn read<T: DeserializeOwned>(
    path: &Path,
    item: &str,
    expected: &str,
) -> anyhow::Result<Vec<(usize, T)>> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| user_err!("{shown}: cannot read the file ({e}); check the path"))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: T = serde_json::from_str(line).map_err(|e| {
            user_err!(
                "{shown}:{}: not {item} ({e}); each line must be {expected}",
                n + 1
            )
        })?;
        out.push((n + 1, value));
    }
    Ok(out)
}
