//! The world's tables: schemas and generation.
//!
//! Every prompt in the world is distinct across all tables, so the held-out
//! sets never overlap training data. Prompts are claimed in a fixed order
//! (eval prompts, gold pairs, the pool, IFT, EFT, judge prompts) so the held-out sets come
//! first and never move when a training count changes; each row draws from
//! its own random stream (see `world::rng`).

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::params::{TaskKind, WorldParams};
use super::rng::RowRng;
use super::{format, gold, noise};
use crate::table::Table;
use crate::tables::world::{
    EftRow, EvalPromptRow, GoldPairRow, IftRow, JudgePromptRow, WorldPromptRow,
};
use crate::user_err;

/// Prompt pool, one slice per iteration (`iteration` 1..=iterations).
pub const PROMPTS: &str = WorldPromptRow::NAME;
/// Instruction demonstrations (`iteration` 0).
pub const IFT: &str = IftRow::NAME;
/// Judge training examples, pointwise and pairwise (`iteration` 0).
pub const EFT: &str = EftRow::NAME;
/// The judge-data prompt pool (`iteration` 0).
pub const JUDGE_PROMPTS: &str = JudgePromptRow::NAME;
/// Held-out evaluation prompts (`iteration` 0).
pub const EVAL_PROMPTS: &str = EvalPromptRow::NAME;
/// Held-out pairs with gold preference labels, for eval only (`iteration` 0).
pub const GOLD_PAIRS: &str = GoldPairRow::NAME;
/// `eft.mode` of a pointwise example.
pub const MODE_POINTWISE: &str = "pointwise";
/// `eft.mode` of a pairwise example.
pub const MODE_PAIRWISE: &str = "pairwise";

/// Two responses of a pair differ in gold score by more than this (no ties).
pub const PAIR_EPSILON: f64 = 1e-9;
/// Draws allowed to find one unused prompt (or one pair) before giving up.
const MAX_ATTEMPTS: usize = 10_000;

/// Schemas of every table, in generation output order: the typed definitions of
/// [`crate::tables::world`], which the stages that read these tables share.
pub fn schemas() -> Vec<(String, SchemaRef)> {
    vec![
        WorldPromptRow::declared(),
        IftRow::declared(),
        EftRow::declared(),
        JudgePromptRow::declared(),
        EvalPromptRow::declared(),
        GoldPairRow::declared(),
    ]
}

/// Columns of one table under construction: the four head columns plus
/// table-specific ones filled by the caller.
#[derive(Default)]
struct Head {
    iteration: Vec<i32>,
    task: Vec<&'static str>,
    prompt: Vec<String>,
}

impl Head {
    fn push(&mut self, iteration: i32, task: TaskKind, prompt: String) {
        self.iteration.push(iteration);
        self.task.push(task.keyword());
        self.prompt.push(prompt);
    }

    fn append(&mut self, other: Head) {
        self.iteration.extend(other.iteration);
        self.task.extend(other.task);
        self.prompt.extend(other.prompt);
    }

    fn batch(self, table: &str, extra: Vec<ArrayRef>) -> anyhow::Result<RecordBatch> {
        let schema = schemas()
            .into_iter()
            .find(|(name, _)| name == table)
            .map(|(_, s)| s)
            .ok_or_else(|| crate::internal_err!("no schema for world table {table}"))?;
        let n = self.iteration.len() as i64;
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(self.iteration)),
            Arc::new(Int64Array::from_iter_values(0..n)),
            Arc::new(StringArray::from(self.task)),
            Arc::new(StringArray::from(self.prompt)),
        ];
        columns.extend(extra);
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

/// The generator: the parameters plus every prompt claimed so far.
pub struct World<'a> {
    p: &'a WorldParams,
    used: BTreeSet<String>,
}

impl<'a> World<'a> {
    pub fn new(p: &'a WorldParams) -> World<'a> {
        World {
            p,
            used: BTreeSet::new(),
        }
    }

    /// A prompt not used by any table yet, and its task.
    fn fresh_prompt(&mut self, rng: &mut RowRng) -> anyhow::Result<(TaskKind, String)> {
        let p = self.p;
        for _ in 0..MAX_ATTEMPTS {
            let task = rng.pick(&p.tasks);
            let len = rng.between(p.min_len, p.max_len);
            let letters: String = (0..len).map(|_| rng.pick(p.alphabet()) as char).collect();
            let prompt = format::prompt(task, &letters);
            if self.used.insert(prompt.clone()) {
                return Ok((task, prompt));
            }
        }
        Err(user_err!(
            "world params: could not find an unused prompt after {MAX_ATTEMPTS} draws; raise \
             `alphabet_size` or `max_len`, or lower the counts"
        )
        .into())
    }

    /// Rows `0..n` of a table with one fresh prompt each.
    fn rows(
        &mut self,
        table: &str,
        n: usize,
        mut row: impl FnMut(&mut RowRng, TaskKind, &str) -> anyhow::Result<()>,
    ) -> anyhow::Result<Head> {
        let mut head = Head::default();
        for i in 0..n {
            let mut rng = RowRng::new(self.p.seed, table, i as u64);
            let (task, prompt) = self.fresh_prompt(&mut rng)?;
            row(&mut rng, task, &prompt)?;
            head.push(0, task, prompt);
        }
        Ok(head)
    }

    /// Table `eval_prompts`.
    pub fn eval_prompts(&mut self) -> anyhow::Result<RecordBatch> {
        let n = self.p.eval_prompts;
        self.rows(EVAL_PROMPTS, n, |_, _, _| Ok(()))?
            .batch(EVAL_PROMPTS, vec![])
    }

    /// Table `judge_prompts`.
    pub fn judge_prompts(&mut self) -> anyhow::Result<RecordBatch> {
        let n = self.p.judge_prompts;
        self.rows(JUDGE_PROMPTS, n, |_, _, _| Ok(()))?
            .batch(JUDGE_PROMPTS, vec![])
    }

    /// Table `prompts`: `prompts_per_iteration` rows for each iteration.
    pub fn prompts(&mut self) -> anyhow::Result<RecordBatch> {
        let mut head = Head::default();
        for iteration in 1..=self.p.iterations {
            for i in 0..self.p.prompts_per_iteration {
                let row = ((iteration as u64) << 32) | i as u64;
                let mut rng = RowRng::new(self.p.seed, PROMPTS, row);
                let (task, prompt) = self.fresh_prompt(&mut rng)?;
                head.push(iteration as i32, task, prompt);
            }
        }
        head.batch(PROMPTS, vec![])
    }

    /// Table `ift`: demonstrations, a fraction of them corrupted.
    pub fn ift(&mut self) -> anyhow::Result<RecordBatch> {
        let p = self.p;
        let (mut responses, mut noisy) = (Vec::new(), Vec::new());
        let head = self.rows(IFT, p.ift_examples, |rng, _, prompt| {
            let answer = gold::answer(prompt)?;
            let corrupted = rng.chance(p.ift_noise);
            responses.push(if corrupted {
                let edits = rng.between(1, p.ift_noise_edits);
                noise::corrupt_distinct(&answer, edits, p.alphabet(), rng)
            } else {
                answer
            });
            noisy.push(corrupted);
            Ok(())
        })?;
        head.batch(
            IFT,
            vec![
                Arc::new(StringArray::from(responses)),
                Arc::new(BooleanArray::from(noisy)),
            ],
        )
    }

    /// Table `eft`: `eft_pointwise` score examples, then `eft_pairwise`
    /// verdict examples; a fraction `eft_label_noise` of labels is wrong.
    pub fn eft(&mut self) -> anyhow::Result<RecordBatch> {
        let p = self.p;
        let mut cols = EftColumns::default();
        let point = self.rows(EFT, p.eft_pointwise, |rng, _, prompt| {
            let answer = gold::answer(prompt)?;
            let edits = rng.between(0, p.judge_edits);
            let (response, gold) = judged_response(p, &answer, edits, rng);
            let (level, noisy) = noisy_level(p, gold, rng);
            cols.push(
                MODE_POINTWISE,
                response,
                None,
                format::score_token(level),
                noisy,
            );
            Ok(())
        })?;
        let pair = self.rows(EFT_PAIRWISE_STREAM, p.eft_pairwise, |rng, _, prompt| {
            let ((a, gold_a), (b, gold_b)) = draw_pair(p, &gold::answer(prompt)?, rng)?;
            let noisy = rng.chance(p.eft_label_noise);
            let label = format::verdict((gold_a > gold_b) != noisy);
            cols.push(MODE_PAIRWISE, a, Some(b), label.to_string(), noisy);
            Ok(())
        })?;
        let mut head = point;
        head.append(pair);
        head.batch(EFT, cols.arrays())
    }

    /// Table `gold_pairs`: held-out pairs with their gold scores and the
    /// gold verdict (never noisy).
    pub fn gold_pairs(&mut self) -> anyhow::Result<RecordBatch> {
        let p = self.p;
        let mut cols: [Vec<String>; 3] = Default::default();
        let mut golds: [Vec<f64>; 2] = Default::default();
        let head = self.rows(GOLD_PAIRS, p.gold_pairs, |rng, _, prompt| {
            let ((a, gold_a), (b, gold_b)) = draw_pair(p, &gold::answer(prompt)?, rng)?;
            cols[2].push(format::verdict(gold_a > gold_b).to_string());
            cols[0].push(a);
            cols[1].push(b);
            golds[0].push(gold_a);
            golds[1].push(gold_b);
            Ok(())
        })?;
        let [a, b, label] = cols;
        let [gold_a, gold_b] = golds;
        head.batch(
            GOLD_PAIRS,
            vec![
                Arc::new(StringArray::from(a)),
                Arc::new(StringArray::from(b)),
                Arc::new(Float64Array::from(gold_a)),
                Arc::new(Float64Array::from(gold_b)),
                Arc::new(StringArray::from(label)),
            ],
        )
    }
}

/// Random-stream name of the pairwise EFT rows (their row numbers restart
/// at 0, so they need their own streams).
const EFT_PAIRWISE_STREAM: &str = "eft.pairwise";

/// The `eft` columns after the head.
#[derive(Default)]
struct EftColumns {
    mode: Vec<&'static str>,
    response_a: Vec<String>,
    response_b: Vec<Option<String>>,
    label: Vec<String>,
    noisy: Vec<bool>,
}

impl EftColumns {
    fn push(
        &mut self,
        mode: &'static str,
        a: String,
        b: Option<String>,
        label: String,
        noisy: bool,
    ) {
        self.mode.push(mode);
        self.response_a.push(a);
        self.response_b.push(b);
        self.label.push(label);
        self.noisy.push(noisy);
    }

    fn arrays(self) -> Vec<ArrayRef> {
        vec![
            Arc::new(StringArray::from(self.mode)),
            Arc::new(StringArray::from(self.response_a)),
            Arc::new(StringArray::from(self.response_b)),
            Arc::new(StringArray::from(self.label)),
            Arc::new(BooleanArray::from(self.noisy)),
        ]
    }
}

/// The pointwise label of a response with gold score `gold`: its level, or with
/// probability `eft_label_noise` any other level, uniformly; and whether it is wrong.
pub fn noisy_level(p: &WorldParams, gold: f64, rng: &mut RowRng) -> (u32, bool) {
    let true_level = gold::level(gold, p.score_levels);
    let noisy = rng.chance(p.eft_label_noise);
    let level = if noisy {
        1 + (true_level + rng.between(0, p.score_levels as usize - 2) as u32) % p.score_levels
    } else {
        true_level
    };
    (level, noisy)
}

/// A response to `answer` with 0..=`judge_edits` random edits, and its gold.
fn judged_response(p: &WorldParams, answer: &str, edits: usize, rng: &mut RowRng) -> (String, f64) {
    let response = noise::corrupt(answer, edits, p.alphabet(), rng);
    let gold = gold::similarity(&response, answer);
    (response, gold)
}

/// Two responses to `answer` whose gold scores differ (by > [`PAIR_EPSILON`]);
/// either may be the better one with equal probability.
pub fn draw_pair(
    p: &WorldParams,
    answer: &str,
    rng: &mut RowRng,
) -> anyhow::Result<((String, f64), (String, f64))> {
    for _ in 0..MAX_ATTEMPTS {
        let edits_a = rng.between(0, p.judge_edits);
        let edits_b = (edits_a + rng.between(1, p.judge_edits)) % (p.judge_edits + 1);
        let a = judged_response(p, answer, edits_a, rng);
        let b = judged_response(p, answer, edits_b, rng);
        if (a.1 - b.1).abs() > PAIR_EPSILON {
            return Ok((a, b));
        }
    }
    Err(crate::internal_err!("no pair with distinct gold scores for answer {answer:?}").into())
}
