//! Random edits that turn a correct response into a plausible wrong one: the
//! mistakes a small model makes (two letters out of order, a wrong, missing
//! or doubled letter).

use super::rng::RowRng;

/// One kind of edit.
#[derive(Debug, Clone, Copy)]
enum Edit {
    SwapAdjacent,
    Substitute,
    Delete,
    Duplicate,
}

const EDITS: [Edit; 4] = [
    Edit::SwapAdjacent,
    Edit::Substitute,
    Edit::Delete,
    Edit::Duplicate,
];

/// `text` with `edits` random edits applied (letters drawn from `alphabet`).
/// The result may equal `text` when edits cancel; callers that need a wrong
/// response use [`corrupt_distinct`].
pub fn corrupt(text: &str, edits: usize, alphabet: &[u8], rng: &mut RowRng) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..edits {
        apply(&mut bytes, rng.pick(&EDITS), alphabet, rng);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Like [`corrupt`] but never returns `text` itself (`edits` ≥ 1). Redraws
/// until the result differs; a substitution with a letter of `alphabet`
/// always can, since every alphabet has ≥ 2 letters.
pub fn corrupt_distinct(text: &str, edits: usize, alphabet: &[u8], rng: &mut RowRng) -> String {
    loop {
        let out = corrupt(text, edits.max(1), alphabet, rng);
        if out != text {
            return out;
        }
    }
}

fn apply(bytes: &mut Vec<u8>, edit: Edit, alphabet: &[u8], rng: &mut RowRng) {
    let n = bytes.len();
    if n == 0 {
        bytes.push(rng.pick(alphabet));
        return;
    }
    let i = rng.below(n);
    match edit {
        Edit::SwapAdjacent if n >= 2 => {
            let i = rng.below(n - 1);
            bytes.swap(i, i + 1);
        }
        Edit::Delete if n >= 2 => {
            bytes.remove(i);
        }
        Edit::Duplicate => bytes.insert(i, bytes[i]),
        // Substitutions, and swaps or deletes on a one-letter response.
        _ => bytes[i] = rng.pick(alphabet),
    }
}
