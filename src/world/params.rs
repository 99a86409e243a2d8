//! The world's parameters: the task family, sizes, lengths, noise rates and
//! seed. Typed at the edge (`deny_unknown_fields`, every field defaulted) and
//! checked by [`WorldParams::validate`], whose errors name the field.

use serde::{Deserialize, Serialize};

use crate::user_err;

/// Largest number of letters a prompt may hold.
pub const MAX_PROMPT_LEN: usize = 40;
/// Letters available to the world (the alphabet is a prefix of this).
pub const LETTERS: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";
/// Most score levels a pointwise judge may use (one digit token each).
pub const MAX_SCORE_LEVELS: u32 = 9;
/// At most this fraction of all possible prompts may be drawn (distinct
/// prompts are drawn by rejection, which needs room).
const MAX_FILL: f64 = 0.25;

/// One task of the family. The prompt is `<keyword>: <letters>\n`; the
/// correct response is the letters rearranged as the task says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Sort ascending (`sort: dbca` → `abcd`).
    Sort,
    /// Sort descending (`rsort: dbca` → `dcba`).
    SortDesc,
    /// Reverse the order (`reverse: dbca` → `acbd`).
    Reverse,
}

impl TaskKind {
    /// The keyword that opens the prompt.
    pub fn keyword(self) -> &'static str {
        match self {
            TaskKind::Sort => "sort",
            TaskKind::SortDesc => "rsort",
            TaskKind::Reverse => "reverse",
        }
    }

    /// The task whose keyword is `word`.
    pub fn from_keyword(word: &str) -> Option<TaskKind> {
        [TaskKind::Sort, TaskKind::SortDesc, TaskKind::Reverse]
            .into_iter()
            .find(|t| t.keyword() == word)
    }

    /// The correct response to `letters`.
    pub fn solve(self, letters: &str) -> String {
        let mut chars: Vec<char> = letters.chars().collect();
        match self {
            TaskKind::Sort => chars.sort_unstable(),
            TaskKind::SortDesc => chars.sort_unstable_by(|a, b| b.cmp(a)),
            TaskKind::Reverse => chars.reverse(),
        }
        chars.into_iter().collect()
    }
}

/// Parameters of the built-in world. Every field has a default, so a
/// pipeline names only what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorldParams {
    /// Seed of every random draw of the world. The `world` stage adds its
    /// task seed (which follows the pipeline's `seed`), so each pipeline seed
    /// draws its own world; `world_params` records the sum.
    pub seed: u64,
    /// Task variants; each prompt draws one uniformly.
    pub tasks: Vec<TaskKind>,
    /// Size of the alphabet: the first N letters of a–z (2–26). Letters are
    /// drawn with replacement.
    pub alphabet_size: usize,
    /// Fewest letters in a prompt (≥ 2).
    pub min_len: usize,
    /// Most letters in a prompt (≤ 40).
    pub max_len: usize,
    /// Number of training iterations the prompt pool is split into.
    pub iterations: usize,
    /// Prompts in the pool for each iteration (table `prompts`).
    pub prompts_per_iteration: usize,
    /// Instruction demonstrations (table `ift`).
    pub ift_examples: usize,
    /// Fraction of demonstrations whose response is corrupted (0–1).
    pub ift_noise: f64,
    /// A corrupted demonstration carries 1..=this many random edits.
    pub ift_noise_edits: usize,
    /// Pointwise judge examples (table `eft`, mode `pointwise`).
    pub eft_pointwise: usize,
    /// Pairwise judge examples (table `eft`, mode `pairwise`).
    pub eft_pairwise: usize,
    /// Fraction of judge examples whose label is wrong (0–1).
    pub eft_label_noise: f64,
    /// Responses shown to the judge carry 0..=this many random edits (≥ 1).
    pub judge_edits: usize,
    /// Score levels of the pointwise judge (2–9; tokens `1`..`N`, `N` = exact).
    pub score_levels: u32,
    /// Prompts of the judge-data pool (table `judge_prompts`): a model's own samples on
    /// them, gold-labelled, become judge examples (stage `judge-data`). 0: none.
    pub judge_prompts: usize,
    /// Held-out evaluation prompts (table `eval_prompts`).
    pub eval_prompts: usize,
    /// Held-out pairs with gold preference labels (table `gold_pairs`).
    pub gold_pairs: usize,
}

impl Default for WorldParams {
    fn default() -> Self {
        WorldParams {
            seed: 0,
            tasks: vec![TaskKind::Sort],
            alphabet_size: 26,
            min_len: 6,
            max_len: 12,
            iterations: 3,
            prompts_per_iteration: 300,
            ift_examples: 4000,
            ift_noise: 0.3,
            ift_noise_edits: 2,
            eft_pointwise: 3000,
            eft_pairwise: 1000,
            eft_label_noise: 0.1,
            judge_edits: 4,
            score_levels: 5,
            judge_prompts: 0,
            eval_prompts: 200,
            gold_pairs: 400,
        }
    }
}

fn check(ok: bool, field: &str, rule: &str, got: impl std::fmt::Display) -> anyhow::Result<()> {
    if ok {
        Ok(())
    } else {
        Err(user_err!("world params: `{field}` must be {rule} (got {got})").into())
    }
}

impl WorldParams {
    /// Check every field; the error names the field and the allowed range.
    pub fn validate(&self) -> anyhow::Result<()> {
        let p = self;
        check(!p.tasks.is_empty(), "tasks", "a non-empty list", "[]")?;
        let alphabet = (2..=LETTERS.len()).contains(&p.alphabet_size);
        check(
            alphabet,
            "alphabet_size",
            "between 2 and 26",
            p.alphabet_size,
        )?;
        check(p.min_len >= 2, "min_len", "at least 2", p.min_len)?;
        let max_ok = p.max_len >= p.min_len && p.max_len <= MAX_PROMPT_LEN;
        check(max_ok, "max_len", "between min_len and 40", p.max_len)?;
        check(p.iterations >= 1, "iterations", "at least 1", p.iterations)?;
        let ppi = p.prompts_per_iteration;
        check(ppi >= 1, "prompts_per_iteration", "at least 1", ppi)?;
        for (field, rate) in [
            ("ift_noise", p.ift_noise),
            ("eft_label_noise", p.eft_label_noise),
        ] {
            check((0.0..=1.0).contains(&rate), field, "between 0 and 1", rate)?;
        }
        check(
            p.ift_noise_edits >= 1,
            "ift_noise_edits",
            "at least 1",
            p.ift_noise_edits,
        )?;
        check(
            p.judge_edits >= 1,
            "judge_edits",
            "at least 1",
            p.judge_edits,
        )?;
        let levels = (2..=MAX_SCORE_LEVELS).contains(&p.score_levels);
        check(levels, "score_levels", "between 2 and 9", p.score_levels)?;
        let (needed, possible) = (self.prompts_needed(), self.possible_prompts());
        if needed as f64 > MAX_FILL * possible {
            return Err(user_err!(
                "world params: {needed} distinct prompts are needed but only about {possible:.0} \
                 exist with alphabet_size {}, lengths {}..={} and {} task(s); raise \
                 `alphabet_size` or `max_len`, or lower the counts",
                p.alphabet_size,
                p.min_len,
                p.max_len,
                p.tasks.len()
            )
            .into());
        }
        Ok(())
    }

    /// Distinct prompts over all tables (every table draws its own prompts).
    pub fn prompts_needed(&self) -> usize {
        self.iterations * self.prompts_per_iteration
            + self.ift_examples
            + self.eft_pointwise
            + self.eft_pairwise
            + self.judge_prompts
            + self.eval_prompts
            + self.gold_pairs
    }

    /// Number of distinct prompts the parameters allow (as a float: it can
    /// be astronomically large).
    fn possible_prompts(&self) -> f64 {
        let mut distinct_tasks = self.tasks.clone();
        distinct_tasks.sort();
        distinct_tasks.dedup();
        let per_task: f64 = (self.min_len..=self.max_len)
            .map(|len| (self.alphabet_size as f64).powi(len as i32))
            .sum();
        per_task * distinct_tasks.len() as f64
    }

    /// The alphabet as bytes.
    pub fn alphabet(&self) -> &'static [u8] {
        &LETTERS[..self.alphabet_size.min(LETTERS.len())]
    }
}
