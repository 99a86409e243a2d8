//! `generate@k`: Mt writes `n` responses per prompt of iteration k's prompt
//! slice and forms unlabeled pairs.
//!
//! Prompts are the rows of the input table (default `prompts`) whose
//! `iteration` is k; each is wrapped as one user message in the model's chat
//! template (plain text with special tokens when it has none) and encoded
//! once; those ids are stored and every later stage reuses them. Sampling uses
//! one seed per row, derived from the task seed, the prompt id and the sample
//! index, so the output does not depend on batch size or threads.
//!
//! Pairs: `all` (every unordered pair of a prompt's samples, `n(n−1)/2`) or
//! `disjoint` (a seeded shuffle of the samples paired off, `⌊n/2⌋`). A pair of
//! identical token ids is dropped and counted (its id is not reused).
//!
//! ```text
//! responses       iteration Int32, response_id Int64 (= prompt_id·n + sample_idx),
//!                 prompt_id Int64, sample_idx Int32, prompt Utf8 (raw text),
//!                 prompt_ids List<Int32> (as fed to the model), text Utf8,
//!                 token_ids List<Int32> (generated, EOS included when produced),
//!                 length Int32 (tokens), finished Boolean (ended with EOS)
//! pairs           iteration Int32, pair_id Int64 (= prompt_id·P + j, P pairs per prompt),
//!                 prompt_id Int64, response_id_1 Int64, response_id_2 Int64
//! generate_stats  iteration Int32, prompts Int64, responses Int64, pairs Int64,
//!                 degenerate_pairs Int64, finished_rate Float64, mean_length Float64
//! ```

use serde::{Deserialize, Serialize};

use super::common::{self, Col};
use crate::model::generate::{GenerateParams, Sampler, generate};
use crate::model::{Adapters, Message, Weights};
use crate::stage::{Outputs, ParamError, Slot, SlotKind, Stage, TaskContext, resolve_typed};

/// Bump when the output changes for the same inputs and params.
pub const VERSION: u32 = 4;
pub const RESPONSES: &str = "responses";
pub const PAIRS: &str = "pairs";
pub const STATS: &str = "generate_stats";

/// How responses of one prompt are paired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairMode {
    /// Every unordered pair.
    All,
    /// Random disjoint pairs.
    Disjoint,
}

/// Params of `generate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateStageParams {
    /// Responses per prompt (≥ 2).
    pub samples: usize,
    /// Sampling temperature (0: greedy).
    pub temperature: f64,
    /// Nucleus mass.
    pub top_p: f64,
    /// Most new tokens per response.
    pub max_new_tokens: usize,
    /// How pairs are formed.
    pub pairs: PairMode,
    /// The prompts table of the `prompts` input.
    pub table: String,
    /// Rows generated per batch (speed only; does not change the output).
    pub batch_size: usize,
}

impl Default for GenerateStageParams {
    fn default() -> Self {
        GenerateStageParams {
            samples: 4,
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: 24,
            pairs: PairMode::All,
            table: "prompts".into(),
            batch_size: 64,
        }
    }
}

/// The `generate` stage.
pub struct Generate;

const SLOTS: &[Slot] = &[
    Slot {
        name: "model",
        kind: SlotKind::Checkpoint,
    },
    Slot {
        name: "prompts",
        kind: SlotKind::Tables,
    },
];

impl Stage for Generate {
    fn kind(&self) -> &'static str {
        "generate"
    }
    fn version(&self) -> u32 {
        VERSION
    }
    fn about(&self) -> &'static str {
        "Mt samples n responses per prompt and forms unlabeled pairs"
    }
    fn resolve_params(&self, raw: serde_json::Value) -> Result<serde_json::Value, ParamError> {
        let v = resolve_typed::<GenerateStageParams>(raw)?;
        let p: GenerateStageParams = serde_json::from_value(v.clone()).map_err(|e| ParamError {
            path: String::new(),
            message: e.to_string(),
        })?;
        if p.samples < 2 {
            return Err(ParamError {
                path: "samples".into(),
                message: format!("must be at least 2 to form pairs, got {}", p.samples),
            });
        }
        if p.max_new_tokens == 0 {
            return Err(ParamError {
                path: "max_new_tokens".into(),
                message: "must be at least 1".into(),
            });
        }
        Ok(v)
    }
    fn inputs(&self) -> &'static [Slot] {
        SLOTS
    }
    fn default_bindings(&self, _params: &serde_json::Value) -> Vec<(&'static str, String)> {
        vec![("model", "model@k-1".into()), ("prompts", "world".into())]
    }
    fn outputs(&self, _params: &serde_json::Value) -> Outputs {
        Outputs {
            tables: vec![
                (RESPONSES.into(), responses_schema()),
                (PAIRS.into(), pairs_schema()),
                (STATS.into(), stats_schema()),
            ],
            checkpoint: false,
        }
    }
    fn run(&self, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let p: GenerateStageParams = ctx.params()?;
        let model = common::load_model(ctx.input("model")?, Weights::Frozen)?;
        let prompts = prompt_slice(ctx, &p.table)?;
        let n = p.samples;
        let mut rows = Vec::with_capacity(prompts.len() * n);
        let context = model.config().max_position_embeddings;
        for (id, text) in &prompts {
            let ids = model
                .text
                .encode_chat_prompt(&[Message::user(text.clone())])?;
            if ids.len().saturating_add(p.max_new_tokens) > context {
                anyhow::bail!(crate::user_err!(
                    "prompt {id} is {} tokens; with max_new_tokens {} that exceeds the model's \
                     context of {context} positions (max_position_embeddings); shorten or drop \
                     the prompt, or lower max_new_tokens",
                    ids.len(),
                    p.max_new_tokens
                ));
            }
            for s in 0..n {
                rows.push((*id, s, text.clone(), ids.clone()));
            }
        }
        let sampler = if p.temperature == 0.0 {
            Sampler::Greedy
        } else {
            Sampler::Sample {
                temperature: p.temperature,
                top_p: p.top_p,
            }
        };
        let gp = GenerateParams {
            max_new_tokens: p.max_new_tokens,
            sampler,
            stop_ids: model.text.stop_ids().to_vec(),
            pad_id: model.text.pad_id(),
        };
        let bar = ctx.progress(rows.len() as u64, "generate");
        let mut outs = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(p.batch_size.max(1)) {
            let ids: Vec<Vec<u32>> = chunk.iter().map(|r| r.3.clone()).collect();
            let seeds: Vec<u64> = chunk.iter().map(|r| row_seed(ctx.seed, r.0, r.1)).collect();
            outs.extend(generate(&model.decoder, &ids, &seeds, &gp, Adapters::On)?);
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        let mut resp = ResponseCols::default();
        for (row, g) in rows.iter().zip(&outs) {
            let text = model.text.decode(&g.token_ids, true)?;
            resp.push(row, n, text, g);
        }
        let (pairs, degenerate) = form_pairs(&prompts, &outs, n, p.pairs, ctx.seed);
        ctx.log(&format!(
            "{} prompts, {} responses, {} pairs, {degenerate} degenerate pairs dropped",
            prompts.len(),
            outs.len(),
            pairs.pair_id.len()
        ));
        let stats = stats_batch(ctx.iteration, &prompts, &outs, &pairs, degenerate)?;
        let k = ctx.iteration;
        ctx.write_table(RESPONSES, &resp.batch(k)?)?;
        ctx.write_table(PAIRS, &pairs.batch(k)?)?;
        ctx.write_table(STATS, &stats)
    }
}

/// `(prompt_id, text)` of the rows of `table` whose iteration is this task's.
fn prompt_slice(ctx: &TaskContext, table: &str) -> anyhow::Result<Vec<(i64, String)>> {
    let input = ctx.input("prompts")?;
    let b = common::read_table(input, table)?;
    let iters = common::col_i32(&b, "iteration")?;
    let ids = common::col_i64(&b, "id")?;
    let texts = common::col_str(&b, "prompt")?;
    let k = ctx.iteration as i32;
    let out: Vec<(i64, String)> = iters
        .iter()
        .zip(ids)
        .zip(texts)
        .filter(|((it, _), _)| **it == k)
        .map(|((_, id), t)| (id, t.unwrap_or_default()))
        .collect();
    if out.is_empty() {
        anyhow::bail!(crate::user_err!(
            "{}: table {table:?} of {} has no prompts for iteration {k}; give the prompt source \
             at least as many iterations as the pipeline",
            ctx.task,
            input.task
        ));
    }
    Ok(out)
}

/// The sampling seed of one row.
pub fn row_seed(task_seed: u64, prompt_id: i64, sample: usize) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"scir.generate.row.v1\0");
    h.update(&task_seed.to_le_bytes());
    h.update(&prompt_id.to_le_bytes());
    h.update(&(sample as u64).to_le_bytes());
    let bytes: [u8; 8] = h.finalize().as_bytes()[..8].try_into().unwrap_or([0; 8]);
    u64::from_le_bytes(bytes)
}

#[derive(Default)]
struct ResponseCols {
    response_id: Vec<i64>,
    prompt_id: Vec<i64>,
    sample_idx: Vec<i32>,
    prompt: Vec<String>,
    prompt_ids: Vec<Option<Vec<u32>>>,
    text: Vec<String>,
    token_ids: Vec<Option<Vec<u32>>>,
    length: Vec<i32>,
    finished: Vec<bool>,
}

impl ResponseCols {
    fn push(
        &mut self,
        row: &(i64, usize, String, Vec<u32>),
        n: usize,
        text: String,
        g: &crate::model::generate::Generated,
    ) {
        self.response_id.push(row.0 * n as i64 + row.1 as i64);
        self.prompt_id.push(row.0);
        self.sample_idx.push(row.1 as i32);
        self.prompt.push(row.2.clone());
        self.prompt_ids.push(Some(row.3.clone()));
        self.text.push(text);
        self.token_ids.push(Some(g.token_ids.clone()));
        self.length.push(g.token_ids.len() as i32);
        self.finished.push(g.stopped);
    }
    fn batch(self, k: u32) -> anyhow::Result<arrow::record_batch::RecordBatch> {
        common::batch(
            &responses_schema(),
            k,
            vec![
                common::arr_i64(self.response_id),
                common::arr_i64(self.prompt_id),
                common::arr_i32(self.sample_idx),
                common::arr_str(self.prompt),
                common::arr_ids(self.prompt_ids),
                common::arr_str(self.text),
                common::arr_ids(self.token_ids),
                common::arr_i32(self.length),
                common::arr_bool(self.finished),
            ],
        )
    }
}

#[derive(Default)]
struct PairCols {
    pair_id: Vec<i64>,
    prompt_id: Vec<i64>,
    r1: Vec<i64>,
    r2: Vec<i64>,
}

impl PairCols {
    fn batch(self, k: u32) -> anyhow::Result<arrow::record_batch::RecordBatch> {
        common::batch(
            &pairs_schema(),
            k,
            vec![
                common::arr_i64(self.pair_id),
                common::arr_i64(self.prompt_id),
                common::arr_i64(self.r1),
                common::arr_i64(self.r2),
            ],
        )
    }
}

/// Index pairs `(i, j)` of `n` samples for one prompt.
fn index_pairs(n: usize, mode: PairMode, seed: u64, prompt_id: i64) -> Vec<(usize, usize)> {
    match mode {
        PairMode::All => (0..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
            .collect(),
        PairMode::Disjoint => {
            let order = crate::model::train_state::epoch_order(n, seed, prompt_id as u64);
            order.chunks_exact(2).map(|c| (c[0], c[1])).collect()
        }
    }
}

fn form_pairs(
    prompts: &[(i64, String)],
    outs: &[crate::model::generate::Generated],
    n: usize,
    mode: PairMode,
    seed: u64,
) -> (PairCols, usize) {
    let mut cols = PairCols::default();
    let mut degenerate = 0;
    for (pi, (pid, _)) in prompts.iter().enumerate() {
        let idx = index_pairs(n, mode, seed, *pid);
        let per = idx.len() as i64;
        for (j, (a, b)) in idx.into_iter().enumerate() {
            let (ga, gb) = (&outs[pi * n + a], &outs[pi * n + b]);
            if ga.token_ids == gb.token_ids {
                degenerate += 1;
                continue;
            }
            cols.pair_id.push(pid * per + j as i64);
            cols.prompt_id.push(*pid);
            cols.r1.push(pid * n as i64 + a as i64);
            cols.r2.push(pid * n as i64 + b as i64);
        }
    }
    (cols, degenerate)
}

fn stats_batch(
    k: u32,
    prompts: &[(i64, String)],
    outs: &[crate::model::generate::Generated],
    pairs: &PairCols,
    degenerate: usize,
) -> anyhow::Result<arrow::record_batch::RecordBatch> {
    let n = outs.len().max(1) as f64;
    let finished = outs.iter().filter(|g| g.stopped).count() as f64 / n;
    let mean_len = outs.iter().map(|g| g.token_ids.len()).sum::<usize>() as f64 / n;
    common::batch(
        &stats_schema(),
        k,
        vec![
            common::arr_i64(vec![prompts.len() as i64]),
            common::arr_i64(vec![outs.len() as i64]),
            common::arr_i64(vec![pairs.pair_id.len() as i64]),
            common::arr_i64(vec![degenerate as i64]),
            common::arr_f64(vec![finished]),
            common::arr_f64(vec![mean_len]),
        ],
    )
}

pub fn responses_schema() -> arrow::datatypes::SchemaRef {
    common::schema(&[
        ("response_id", Col::I64, false),
        ("prompt_id", Col::I64, false),
        ("sample_idx", Col::I32, false),
        ("prompt", Col::Str, false),
        ("prompt_ids", Col::Ids, true),
        ("text", Col::Str, false),
        ("token_ids", Col::Ids, true),
        ("length", Col::I32, false),
        ("finished", Col::Bool, false),
    ])
}

pub fn pairs_schema() -> arrow::datatypes::SchemaRef {
    common::schema(&[
        ("pair_id", Col::I64, false),
        ("prompt_id", Col::I64, false),
        ("response_id_1", Col::I64, false),
        ("response_id_2", Col::I64, false),
    ])
}

fn stats_schema() -> arrow::datatypes::SchemaRef {
    common::schema(&[
        ("prompts", Col::I64, false),
        ("responses", Col::I64, false),
        ("pairs", Col::I64, false),
        ("degenerate_pairs", Col::I64, false),
        ("finished_rate", Col::F64, false),
        ("mean_length", Col::F64, false),
    ])
}
