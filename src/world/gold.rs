//! The gold scorer: graded, computable from the prompt alone. Besides the eval
//! stages, only the world's stand-ins for human labels use it, before the
//! iterations: the world's generator for the judge seed data (`eft`) and the
//! `judge-data` stage for the model's own samples on the separate judge pool —
//! the human-labelled judge data of Self-Rewarding LMs. No iteration's task
//! reads it, and no training task has `gold_pairs` upstream.
//!
//! Score = `2·LCS(response, answer) / (|response| + |answer|)` over
//! characters: 1 for the exact answer, 0 for an empty or unrelated response,
//! and every single edit (a swap, a wrong, missing or extra letter) costs
//! about `1/|answer|`. For sorting, the LCS with the sorted answer is the
//! longest correctly ordered run of the right letters, so a response gets
//! credit for both content and order.

use super::format;

/// Below this gold score every response gets the lowest score level.
pub const SCORE_FLOOR: f64 = 0.5;

/// The correct response to a world prompt.
pub fn answer(prompt: &str) -> anyhow::Result<String> {
    let (task, letters) = format::parse_prompt(prompt).ok_or_else(|| {
        crate::user_err!(
            "not a prompt of the built-in world (expected `sort: letters\\n`): {prompt:?}"
        )
    })?;
    Ok(task.solve(letters))
}

/// Gold score in `[0, 1]` of `response` to the world prompt `prompt`.
pub fn score(prompt: &str, response: &str) -> anyhow::Result<f64> {
    Ok(similarity(response, &answer(prompt)?))
}

/// `2·LCS / (|a| + |b|)` over characters; 1 when both are empty.
pub fn similarity(a: &str, b: &str) -> f64 {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    2.0 * lcs_len(&a, &b) as f64 / (a.len() + b.len()) as f64
}

/// Length of the longest common subsequence (one rolling row, O(|a|·|b|)).
fn lcs_len(a: &[char], b: &[char]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for &ca in a {
        let mut diagonal = 0;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == cb {
                diagonal + 1
            } else {
                above.max(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The score level (1..=`levels`) of a gold score: `levels` only for the
/// exact answer; scores below [`SCORE_FLOOR`] get 1; the rest of
/// `[SCORE_FLOOR, 1)` splits evenly into levels `1..levels`.
pub fn level(gold: f64, levels: u32) -> u32 {
    if gold >= 1.0 {
        return levels;
    }
    let steps = f64::from(levels - 1);
    let above_floor = ((gold - SCORE_FLOOR) / (1.0 - SCORE_FLOOR)).max(0.0);
    1 + ((above_floor * steps).floor() as u32).min(levels - 2)
}
