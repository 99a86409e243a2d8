//! Text formats of the built-in world: plain text, no chat template, one
//! character per token (see [`super::tokenizer()`]).
//!
//! ```text
//! instruction  "sort: qwdbe\n"                          → "bdeqw" <eos>
//! pointwise    "judge\nsort: qwdbe\nbdeqw\nscore: "    → "5" <eos>   (score tokens "1".."N")
//! pairwise     "compare\nsort: qwdbe\nA: bdeqw\nB: bdqew\nbetter: " → "A" <eos>
//! meta-judge   "meta\nsort: qwdbe\nbdeqw\nA: 3\nB: 5\nbetter: "   → "B" <eos>
//! ```
//!
//! The meta-judge (Meta-Rewarding) is shown one response and two judgments of it (score
//! tokens) and names the better judgment.
//!
//! The judge formats open with their own keyword line, so a judge context
//! never shares a prefix with an instruction context (the model cannot
//! confuse "end of answer" with "continue into a verdict"). The response is
//! followed by `<eos>`; the stages append that token id themselves.

use super::params::TaskKind;

/// Beginning-of-sequence token (the tokenizer's post-processor adds it).
pub const BOS: &str = "<bos>";
/// End-of-sequence token: ends every response and every verdict.
pub const EOS: &str = "<eos>";
/// Padding token.
pub const PAD: &str = "<pad>";
/// Unknown-character token (never produced by the world's own text).
pub const UNK: &str = "<unk>";
/// Pairwise verdict: the first response is better.
pub const VERDICT_A: &str = "A";
/// Pairwise verdict: the second response is better.
pub const VERDICT_B: &str = "B";

const KEYWORD_SEP: &str = ": ";
const POINTWISE_HEAD: &str = "judge\n";
const POINTWISE_TAIL: &str = "\nscore: ";
const PAIRWISE_HEAD: &str = "compare\n";
const PAIRWISE_TAIL: &str = "\nbetter: ";
const META_HEAD: &str = "meta\n";

/// The instruction prompt for `task` on `letters`, newline included.
pub fn prompt(task: TaskKind, letters: &str) -> String {
    format!("{}{KEYWORD_SEP}{letters}\n", task.keyword())
}

/// The task and letters of a prompt made by [`prompt`]; `None` if it is not
/// one.
pub fn parse_prompt(prompt: &str) -> Option<(TaskKind, &str)> {
    let line = prompt.strip_suffix('\n')?;
    let (keyword, letters) = line.split_once(KEYWORD_SEP)?;
    let task = TaskKind::from_keyword(keyword)?;
    letters
        .bytes()
        .all(|b| b.is_ascii_lowercase())
        .then_some((task, letters))
}

/// The full instruction example (prompt then response), without `<eos>`.
pub fn instruction(prompt: &str, response: &str) -> String {
    format!("{prompt}{response}")
}

/// The pointwise judge context for one response; the next token is a score
/// token ([`score_token`]).
pub fn judge_pointwise(prompt: &str, response: &str) -> String {
    format!("{POINTWISE_HEAD}{prompt}{response}{POINTWISE_TAIL}")
}

/// The pairwise judge context for responses `a` and `b`; the next token is
/// [`VERDICT_A`] or [`VERDICT_B`].
pub fn judge_pairwise(prompt: &str, a: &str, b: &str) -> String {
    format!("{PAIRWISE_HEAD}{prompt}{VERDICT_A}: {a}\n{VERDICT_B}: {b}{PAIRWISE_TAIL}")
}

/// The meta-judge context for two judgments (score tokens) `a` and `b` of `response`; the
/// next token is [`VERDICT_A`] or [`VERDICT_B`].
pub fn judge_meta(prompt: &str, response: &str, a: &str, b: &str) -> String {
    format!("{META_HEAD}{prompt}{response}\n{VERDICT_A}: {a}\n{VERDICT_B}: {b}{PAIRWISE_TAIL}")
}

/// The token of score level `level` (1-based: `1` worst).
pub fn score_token(level: u32) -> String {
    level.to_string()
}

/// The score tokens of a judge with `levels` levels, worst first.
pub fn score_tokens(levels: u32) -> Vec<String> {
    (1..=levels).map(score_token).collect()
}

/// The verdict token naming the better response (`a_better` → `A`).
pub fn verdict(a_better: bool) -> &'static str {
    if a_better { VERDICT_A } else { VERDICT_B }
}
