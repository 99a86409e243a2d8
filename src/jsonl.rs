//! JSON Lines input files (prompt and question sets): one JSON object per non-blank line,
//! every error a user error naming the file and the line.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::user_err;

/// Every non-blank line of the file at `path` as `T`, with its 1-based line number. `what`
/// names the file's kind and `expected` says what a line must hold (both for errors).
pub fn read<T: DeserializeOwned>(
    path: &Path,
    what: &str,
    expected: &str,
) -> anyhow::Result<Vec<(usize, T)>> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| user_err!("{shown}: cannot read the {what} file ({e})"))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let item: T = serde_json::from_str(line).map_err(|e| {
            user_err!(
                "{shown}:{}: not {} ({e}); each line must be {expected}",
                n + 1,
                article(what)
            )
        })?;
        out.push((n + 1, item));
    }
    Ok(out)
}

fn article(what: &str) -> String {
    match what.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {what}"),
        _ => format!("a {what}"),
    }
}
