//! `score-grm@k`: the generative reward model — Mt as a judge of every pair.
//!
//! `pairwise` (default): the judge template renders `(x, A=y1, B=y2)`;
//! `P(A) = softmax(l_A, l_B)[0]` of the two verdict tokens at the answer
//! position. With `swap: true` the order `(A=y2, B=y1)` is judged too and
//! `p_grm = ½·[P(A|y1,y2) + 1 − P(A|y2,y1)]`; `position_flip` is true when the
//! judge picks the same letter in both orders (its preference follows the
//! position). `pointwise`: each response is judged alone; `s(y)` = expected
//! value over the score tokens; `p_grm = σ((s(y1) − s(y2))/τ)`.
//!
//! The judge prompt ids are stored (and reused by `train@k`); so are the
//! verdict/score token ids (`judge_tokens`). The template is a file named by
//! `template` (relative to the pipeline file, digested into the key) or the
//! built-in one of the mode (`stages/templates/`), or a built-in named
//! `builtin:<name>` ([`judge::BUILTIN`]). For real instruct models,
//! `template: builtin:mt-bench-pair` is MT-Bench's `pair-v2` judge rendered
//! through the model's chat template (system + user message) with the
//! assistant turn pre-filled up to the verdict (`[[`), so `P(A)` is read at
//! one position; the verdict strings must then be single tokens right after
//! the prefill ([`judge::check_seam`], a user error otherwise).
//!
//! ```text
//! grm_scores    iteration Int32, pair_id Int64, mode Utf8, p_a_12 Float64? (P(A|y1,y2)),
//!               p_a_21 Float64? (P(A|y2,y1)), score_1 Float64?, score_2 Float64?, tau Float64?,
//!               p_grm Float64, position_flip Boolean?, judge_ids_1 List<Int32> (order y1,y2 /
//!               y1 alone), judge_ids_2 List<Int32>? (order y2,y1 / y2 alone)
//! judge_tokens  iteration Int32, mode Utf8, token Utf8, token_id Int32, value Float64
//!               (pairwise: A = 1, B = 0; pointwise: the score level)
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::common::{self, Col};
use super::judge::{self, JudgeTemplate};
use crate::loss::bernoulli::sigmoid;
use crate::model::score::verdict_probs_vec;
use crate::model::{Adapters, Model, Weights};
use crate::stage::{Outputs, ParamError, Slot, SlotKind, Stage, TaskContext, resolve_typed};

/// Bump when the output changes for the same inputs and params.
pub const VERSION: u32 = 3;
pub const GRM_SCORES: &str = "grm_scores";
pub const JUDGE_TOKENS: &str = "judge_tokens";

/// How the model judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrmMode {
    Pairwise,
    Pointwise,
}

impl GrmMode {
    pub fn name(self) -> &'static str {
        match self {
            GrmMode::Pairwise => "pairwise",
            GrmMode::Pointwise => "pointwise",
        }
    }
}

/// Params of `score-grm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoreGrmParams {
    pub mode: GrmMode,
    /// Judge template file (relative to the pipeline file), or `builtin:<name>`;
    /// `null`: the world's built-in template of the mode.
    pub template: Option<PathBuf>,
    /// Pairwise: also judge the swapped order and average.
    pub swap: bool,
    /// Pairwise verdict strings `[A, B]` (one token each).
    pub verdicts: [String; 2],
    /// Pointwise score strings, worst first (one token each); values 1..=n.
    pub scores: Vec<String>,
    /// Pointwise temperature τ in `σ(Δs/τ)`.
    pub tau: f64,
    /// Judge prompts per forward pass (speed only).
    pub batch_size: usize,
}

impl Default for ScoreGrmParams {
    fn default() -> Self {
        ScoreGrmParams {
            mode: GrmMode::Pairwise,
            template: None,
            swap: true,
            verdicts: ["A".into(), "B".into()],
            scores: (1..=5).map(|i| i.to_string()).collect(),
            tau: 1.0,
            batch_size: 64,
        }
    }
}

/// The `score-grm` stage.
pub struct ScoreGrm;

const SLOTS: &[Slot] = &[
    Slot {
        name: "model",
        kind: SlotKind::Checkpoint,
    },
    Slot {
        name: "generation",
        kind: SlotKind::Tables,
    },
];

impl Stage for ScoreGrm {
    fn kind(&self) -> &'static str {
        "score-grm"
    }
    fn version(&self) -> u32 {
        VERSION
    }
    fn about(&self) -> &'static str {
        "generative reward: Mt judges each pair (pairwise swap-averaged, or pointwise)"
    }
    fn resolve_params(&self, raw: serde_json::Value) -> Result<serde_json::Value, ParamError> {
        let v = resolve_typed::<ScoreGrmParams>(raw)?;
        let p: ScoreGrmParams = serde_json::from_value(v.clone()).map_err(|e| ParamError {
            path: String::new(),
            message: e.to_string(),
        })?;
        if !(p.tau.is_finite() && p.tau > 0.0) {
            return Err(ParamError {
                path: "tau".into(),
                message: format!("must be a positive number, got {}", p.tau),
            });
        }
        if p.scores.len() < 2 {
            return Err(ParamError {
                path: "scores".into(),
                message: "needs at least two score strings".into(),
            });
        }
        Ok(v)
    }
    fn inputs(&self) -> &'static [Slot] {
        SLOTS
    }
    fn default_bindings(&self, _params: &serde_json::Value) -> Vec<(&'static str, String)> {
        vec![
            ("model", "model@k-1".into()),
            ("generation", "generate".into()),
        ]
    }
    fn outputs(&self, _params: &serde_json::Value) -> Outputs {
        Outputs {
            tables: vec![
                (GRM_SCORES.into(), scores_schema()),
                (JUDGE_TOKENS.into(), tokens_schema()),
            ],
            checkpoint: false,
        }
    }
    fn external_files(&self, params: &serde_json::Value) -> Vec<PathBuf> {
        serde_json::from_value::<ScoreGrmParams>(params.clone())
            .ok()
            .and_then(|p| judge::template_file(&p.template))
            .into_iter()
            .collect()
    }
    fn run(&self, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let p: ScoreGrmParams = ctx.params()?;
        let template = load_template(ctx, &p)?;
        let model = common::load_model(ctx.input("model")?, Weights::Frozen)?;
        let gen_input = ctx.input("generation")?;
        let responses = common::read_responses(gen_input)?;
        let pairs = common::read_pairs(gen_input)?;
        let mut cols = ScoreCols::default();
        let tokens = match p.mode {
            GrmMode::Pairwise => pairwise(&model, &template, &p, &responses, &pairs, &mut cols)?,
            GrmMode::Pointwise => pointwise(&model, &template, &p, &responses, &pairs, &mut cols)?,
        };
        let k = ctx.iteration;
        let flips = cols.flip.iter().filter(|f| **f == Some(true)).count();
        ctx.log(&format!(
            "{} pairs judged, {flips} position flips",
            pairs.len()
        ));
        let scores = cols.batch(k, p.mode)?;
        let n = tokens.len();
        let tok_batch = common::batch(
            &tokens_schema(),
            k,
            vec![
                common::arr_str(vec![p.mode.name().to_string(); n]),
                common::arr_str(tokens.iter().map(|t| t.0.clone()).collect()),
                common::arr_i32(tokens.iter().map(|t| t.1 as i32).collect()),
                common::arr_f64(tokens.iter().map(|t| t.2).collect()),
            ],
        )?;
        ctx.write_table(GRM_SCORES, &scores)?;
        ctx.write_table(JUDGE_TOKENS, &tok_batch)
    }
}

pub(crate) fn load_template(
    ctx: &TaskContext,
    p: &ScoreGrmParams,
) -> anyhow::Result<JudgeTemplate> {
    match &p.template {
        Some(rel) if judge::template_file(&p.template).is_none() => {
            let name = rel.to_string_lossy();
            let name = name.trim_start_matches(judge::BUILTIN_PREFIX);
            JudgeTemplate::new(judge::builtin(name)?, &format!("built-in {name}"))
        }
        Some(rel) => {
            let path = ctx.pipeline_dir.join(rel);
            let src = std::fs::read_to_string(&path).map_err(|e| {
                crate::user_err!("{}: cannot read the judge template ({e})", path.display())
            })?;
            let t = JudgeTemplate::new(&src, &path.display().to_string())?;
            t.check_shows_inputs(p.mode == GrmMode::Pairwise)?;
            Ok(t)
        }
        None => match p.mode {
            GrmMode::Pairwise => JudgeTemplate::new(judge::DEFAULT_PAIRWISE, "built-in pairwise"),
            GrmMode::Pointwise => {
                JudgeTemplate::new(judge::DEFAULT_POINTWISE, "built-in pointwise")
            }
        },
    }
}

pub(crate) type Responses = std::collections::BTreeMap<i64, common::Response>;

pub(crate) fn pairwise(
    model: &Model,
    template: &JudgeTemplate,
    p: &ScoreGrmParams,
    responses: &Responses,
    pairs: &[common::PairRow],
    cols: &mut ScoreCols,
) -> anyhow::Result<Vec<(String, u32, f64)>> {
    let a = judge::single_token(&model.text, &p.verdicts[0], "verdict")?;
    let b = judge::single_token(&model.text, &p.verdicts[1], "verdict")?;
    let (mut fwd, mut bwd) = (Vec::new(), Vec::new());
    for (i, &(pair, _, r1, r2)) in pairs.iter().enumerate() {
        let (y1, y2) = (
            common::response(responses, r1, pair)?,
            common::response(responses, r2, pair)?,
        );
        let t12 = template.pairwise(&y1.prompt, &y1.text, &y2.text)?;
        if i == 0 {
            judge::check_seam(&model.text, &t12, &p.verdicts[0], a)?;
            judge::check_seam(&model.text, &t12, &p.verdicts[1], b)?;
        }
        fwd.push(judge::encode(&model.text, &t12)?);
        if p.swap {
            let t21 = template.pairwise(&y1.prompt, &y2.text, &y1.text)?;
            bwd.push(judge::encode(&model.text, &t21)?);
        }
    }
    let pad = model.text.pad_id();
    let probs = |prompts: &[Vec<u32>]| {
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        verdict_probs_vec(
            &model.decoder,
            prompts,
            (a, b),
            pad,
            Adapters::On,
            p.batch_size,
        )
    };
    let p12 = probs(&fwd)?;
    let p21 = probs(&bwd)?;
    for (i, &(pair, ..)) in pairs.iter().enumerate() {
        let pa12 = f64::from(p12[i][0]);
        let (pa21, q, flip) = if p.swap {
            let pa21 = f64::from(p21[i][0]);
            let flip = (pa12 > 0.5) == (pa21 > 0.5);
            (Some(pa21), 0.5 * (pa12 + 1.0 - pa21), Some(flip))
        } else {
            (None, pa12, None)
        };
        cols.push_pair(
            pair,
            pa12,
            pa21,
            q,
            flip,
            fwd[i].clone(),
            bwd.get(i).cloned(),
        );
    }
    Ok(vec![
        (p.verdicts[0].clone(), a, 1.0),
        (p.verdicts[1].clone(), b, 0.0),
    ])
}

pub(crate) fn pointwise(
    model: &Model,
    template: &JudgeTemplate,
    p: &ScoreGrmParams,
    responses: &Responses,
    pairs: &[common::PairRow],
    cols: &mut ScoreCols,
) -> anyhow::Result<Vec<(String, u32, f64)>> {
    let ids: Vec<u32> = p
        .scores
        .iter()
        .map(|s| judge::single_token(&model.text, s, "score string"))
        .collect::<anyhow::Result<_>>()?;
    let values: Vec<f64> = (1..=ids.len()).map(|v| v as f64).collect();
    // Each response is judged once, whatever the number of pairs it is in.
    let mut prompts = std::collections::BTreeMap::new();
    for (i, r) in responses.iter().enumerate() {
        let t = template.pointwise(&r.1.prompt, &r.1.text)?;
        if i == 0 {
            for (s, &id) in p.scores.iter().zip(&ids) {
                judge::check_seam(&model.text, &t, s, id)?;
            }
        }
        prompts.insert(*r.0, judge::encode(&model.text, &t)?);
    }
    let order: Vec<i64> = prompts.keys().copied().collect();
    let all: Vec<Vec<u32>> = prompts.values().cloned().collect();
    let pad = model.text.pad_id();
    let mut scores = Vec::with_capacity(all.len());
    for chunk in all.chunks(p.batch_size.max(1)) {
        let s = judge::expected_scores(&model.decoder, chunk, &ids, &values, pad)?;
        scores.extend(s.detach().to_vec1::<f32>()?.into_iter().map(f64::from));
    }
    let score: std::collections::BTreeMap<i64, f64> = order.into_iter().zip(scores).collect();
    for &(pair, _, r1, r2) in pairs {
        let (s1, s2) = (score[&r1], score[&r2]);
        let q = sigmoid((s1 - s2) / p.tau);
        cols.push_point(
            pair,
            s1,
            s2,
            p.tau,
            q,
            prompts[&r1].clone(),
            prompts[&r2].clone(),
        );
    }
    Ok(p.scores
        .iter()
        .zip(&ids)
        .zip(&values)
        .map(|((s, &id), &v)| (s.clone(), id, v))
        .collect())
}

#[derive(Default)]
pub(crate) struct ScoreCols {
    pub(crate) pair_id: Vec<i64>,
    p_a_12: Vec<Option<f64>>,
    p_a_21: Vec<Option<f64>>,
    score_1: Vec<Option<f64>>,
    score_2: Vec<Option<f64>>,
    tau: Vec<Option<f64>>,
    pub(crate) p_grm: Vec<f64>,
    flip: Vec<Option<bool>>,
    ids_1: Vec<Option<Vec<u32>>>,
    ids_2: Vec<Option<Vec<u32>>>,
}

impl ScoreCols {
    #[allow(clippy::too_many_arguments)]
    fn push_pair(
        &mut self,
        pair: i64,
        pa12: f64,
        pa21: Option<f64>,
        q: f64,
        flip: Option<bool>,
        ids_1: Vec<u32>,
        ids_2: Option<Vec<u32>>,
    ) {
        self.pair_id.push(pair);
        self.p_a_12.push(Some(pa12));
        self.p_a_21.push(pa21);
        self.score_1.push(None);
        self.score_2.push(None);
        self.tau.push(None);
        self.p_grm.push(q);
        self.flip.push(flip);
        self.ids_1.push(Some(ids_1));
        self.ids_2.push(ids_2);
    }
    #[allow(clippy::too_many_arguments)]
    fn push_point(
        &mut self,
        pair: i64,
        s1: f64,
        s2: f64,
        tau: f64,
        q: f64,
        ids_1: Vec<u32>,
        ids_2: Vec<u32>,
    ) {
        self.pair_id.push(pair);
        self.p_a_12.push(None);
        self.p_a_21.push(None);
        self.score_1.push(Some(s1));
        self.score_2.push(Some(s2));
        self.tau.push(Some(tau));
        self.p_grm.push(q);
        self.flip.push(None);
        self.ids_1.push(Some(ids_1));
        self.ids_2.push(Some(ids_2));
    }
    fn batch(self, k: u32, mode: GrmMode) -> anyhow::Result<arrow::record_batch::RecordBatch> {
        let n = self.pair_id.len();
        common::batch(
            &scores_schema(),
            k,
            vec![
                common::arr_i64(self.pair_id),
                common::arr_str(vec![mode.name().to_string(); n]),
                common::arr_opt_f64(self.p_a_12),
                common::arr_opt_f64(self.p_a_21),
                common::arr_opt_f64(self.score_1),
                common::arr_opt_f64(self.score_2),
                common::arr_opt_f64(self.tau),
                common::arr_f64(self.p_grm),
                common::arr_opt_bool(self.flip),
                common::arr_ids(self.ids_1),
                common::arr_ids(self.ids_2),
            ],
        )
    }
}

fn scores_schema() -> arrow::datatypes::SchemaRef {
    common::schema(&[
        ("pair_id", Col::I64, false),
        ("mode", Col::Str, false),
        ("p_a_12", Col::F64, true),
        ("p_a_21", Col::F64, true),
        ("score_1", Col::F64, true),
        ("score_2", Col::F64, true),
        ("tau", Col::F64, true),
        ("p_grm", Col::F64, false),
        ("position_flip", Col::Bool, true),
        ("judge_ids_1", Col::Ids, true),
        ("judge_ids_2", Col::Ids, true),
    ])
}

fn tokens_schema() -> arrow::datatypes::SchemaRef {
    common::schema(&[
        ("mode", Col::Str, false),
        ("token", Col::Str, false),
        ("token_id", Col::I32, false),
        ("value", Col::F64, false),
    ])
}
