//! `score-irm@k`: the implicit reward model. Log-probs of every response
//! under Mt and under the IRM reference, and `p_irm` per pair:
//! `p = σ(β·[(logπ_Mt(y1) − logπ_ref(y1)) − (logπ_Mt(y2) − logπ_ref(y2))])`.
//!
//! The Mt log-probs are also the DPO reference log-probs of `train@k`, which
//! never recomputes them. `irm_reference` (`initial` | `previous_iteration` |
//! `iteration_start`, default `initial`) picks the default binding of the
//! `irm_ref` slot: `model@initial`, `model@k-2` or `model@k-1`. When the
//! reference is Mt itself its log-probs are copied, not recomputed (p = ½).
//! `logπ(y|x)` sums the response tokens' log-probs (the stored ids: EOS
//! included when generated) given the stored prompt ids.
//!
//! ```text
//! response_logps  iteration Int32, response_id Int64, logp_policy Float64 (Mt, the DPO
//!                 reference), logp_irm_ref Float64, length Int32
//! irm_pairs       iteration Int32, pair_id Int64, prompt_id Int64, response_id_1 Int64,
//!                 response_id_2 Int64, beta Float64, irm_logit Float64 (β·Δ), p_irm Float64
//! ```

use serde::{Deserialize, Serialize};

use super::common::{self, Col};
use crate::loss::bernoulli::sigmoid;
use crate::model::score::{Pair, response_logprobs_vec};
use crate::model::{Adapters, Weights};
use crate::stage::{Outputs, ParamError, Slot, SlotKind, Stage, TaskContext, resolve_typed};

/// Bump when the output changes for the same inputs and params.
pub const VERSION: u32 = 3;
pub const RESPONSE_LOGPS: &str = "response_logps";
pub const IRM_PAIRS: &str = "irm_pairs";

/// Which model the implicit reward is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IrmReference {
    /// The model before SFT, fixed for all iterations (DESIGN §5: the stable choice).
    Initial,
    /// The model Mt was trained against (M_{t−1}).
    PreviousIteration,
    /// Mt itself (p = ½ at the start of training).
    IterationStart,
}

impl IrmReference {
    /// The default binding of the `irm_ref` slot.
    pub fn binding(self) -> &'static str {
        match self {
            IrmReference::Initial => "model@initial",
            IrmReference::PreviousIteration => "model@k-2",
            IrmReference::IterationStart => "model@k-1",
        }
    }

    /// The `irm_reference` of a stage's raw params; `initial` when absent. An invalid value
    /// also gives `initial` here: the stage's own params parsing reports it.
    pub fn of_params(params: &serde_json::Value) -> IrmReference {
        params
            .get("irm_reference")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or(IrmReference::Initial)
    }

    /// The name as written in a pipeline file.
    pub fn name(self) -> &'static str {
        match self {
            IrmReference::Initial => "initial",
            IrmReference::PreviousIteration => "previous_iteration",
            IrmReference::IterationStart => "iteration_start",
        }
    }
}

/// Params of `score-irm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoreIrmParams {
    /// β of the implicit reward (train@k uses it for p too).
    pub beta: f64,
    /// Default binding of the `irm_ref` slot.
    pub irm_reference: IrmReference,
    /// Responses scored per forward pass (speed only).
    pub batch_size: usize,
}

impl Default for ScoreIrmParams {
    fn default() -> Self {
        ScoreIrmParams {
            beta: 0.1,
            irm_reference: IrmReference::Initial,
            batch_size: 64,
        }
    }
}

/// The `score-irm` stage.
pub struct ScoreIrm;

const SLOTS: &[Slot] = &[
    Slot {
        name: "model",
        kind: SlotKind::Checkpoint,
    },
    Slot {
        name: "irm_ref",
        kind: SlotKind::Checkpoint,
    },
    Slot {
        name: "generation",
        kind: SlotKind::Tables,
    },
];

impl Stage for ScoreIrm {
    fn kind(&self) -> &'static str {
        "score-irm"
    }
    fn version(&self) -> u32 {
        VERSION
    }
    fn about(&self) -> &'static str {
        "implicit reward: response log-probs under Mt and the IRM reference, p_irm per pair"
    }
    fn resolve_params(&self, raw: serde_json::Value) -> Result<serde_json::Value, ParamError> {
        let v = resolve_typed::<ScoreIrmParams>(raw)?;
        let beta = v["beta"].as_f64().unwrap_or(0.0);
        if !(beta.is_finite() && beta > 0.0) {
            return Err(ParamError {
                path: "beta".into(),
                message: format!("must be a positive number, got {beta}"),
            });
        }
        Ok(v)
    }
    fn inputs(&self) -> &'static [Slot] {
        SLOTS
    }
    fn default_bindings(&self, params: &serde_json::Value) -> Vec<(&'static str, String)> {
        vec![
            ("model", "model@k-1".into()),
            ("irm_ref", IrmReference::of_params(params).binding().into()),
            ("generation", "generate".into()),
        ]
    }
    fn outputs(&self, _params: &serde_json::Value) -> Outputs {
        Outputs {
            tables: vec![
                (RESPONSE_LOGPS.into(), logps_schema()),
                (IRM_PAIRS.into(), pairs_schema()),
            ],
            checkpoint: false,
        }
    }
    fn run(&self, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let p: ScoreIrmParams = ctx.params()?;
        let gen_input = ctx.input("generation")?;
        let responses = common::read_responses(gen_input)?;
        let pairs = common::read_pairs(gen_input)?;
        let items: Vec<Pair> = responses
            .values()
            .map(|r| Pair {
                prompt: r.prompt_ids.clone(),
                response: r.token_ids.clone(),
            })
            .collect();
        let policy = score(ctx.input("model")?, &items, p.batch_size)?;
        let same = ctx.input("model")?.checkpoint == ctx.input("irm_ref")?.checkpoint;
        let reference = if same {
            policy.clone()
        } else {
            score(ctx.input("irm_ref")?, &items, p.batch_size)?
        };
        let ids: Vec<i64> = responses.keys().copied().collect();
        let lengths: Vec<i32> = responses
            .values()
            .map(|r| r.token_ids.len() as i32)
            .collect();
        let by_id: std::collections::BTreeMap<i64, (f64, f64)> = ids
            .iter()
            .zip(policy.iter().zip(&reference))
            .map(|(&id, (&a, &b))| (id, (a, b)))
            .collect();
        let k = ctx.iteration;
        let logps = common::batch(
            &logps_schema(),
            k,
            vec![
                common::arr_i64(ids),
                common::arr_f64(policy),
                common::arr_f64(reference),
                common::arr_i32(lengths),
            ],
        )?;
        let pair_batch = pair_batch(k, &pairs, &by_id, p.beta)?;
        ctx.write_table(RESPONSE_LOGPS, &logps)?;
        ctx.write_table(IRM_PAIRS, &pair_batch)
    }
}

pub(crate) fn score(
    input: &crate::stage::InputArtifact,
    items: &[Pair],
    batch: usize,
) -> anyhow::Result<Vec<f64>> {
    score_with(&common::load_model(input, Weights::Frozen)?, items, batch)
}

/// [`score`] with a model already loaded: `log π(response | prompt)` per item.
pub(crate) fn score_with(
    model: &crate::model::Model,
    items: &[Pair],
    batch: usize,
) -> anyhow::Result<Vec<f64>> {
    let v = response_logprobs_vec(
        &model.decoder,
        items,
        model.text.pad_id(),
        Adapters::On,
        batch,
    )?;
    Ok(v.into_iter().map(f64::from).collect())
}

fn pair_batch(
    k: u32,
    pairs: &[common::PairRow],
    by_id: &std::collections::BTreeMap<i64, (f64, f64)>,
    beta: f64,
) -> anyhow::Result<arrow::record_batch::RecordBatch> {
    let (mut logit, mut prob) = (Vec::new(), Vec::new());
    for &(pair, _, r1, r2) in pairs {
        let get = |r: i64| {
            by_id.get(&r).copied().ok_or_else(|| {
                anyhow::anyhow!("pair {pair} names response {r}, which does not exist")
            })
        };
        let ((p1, ref1), (p2, ref2)) = (get(r1)?, get(r2)?);
        let z = beta * ((p1 - ref1) - (p2 - ref2));
        logit.push(z);
        prob.push(sigmoid(z));
    }
    common::batch(
        &pairs_schema(),
        k,
        vec![
            common::arr_i64(pairs.iter().map(|p| p.0).collect()),
            common::arr_i64(pairs.iter().map(|p| p.1).collect()),
            common::arr_i64(pairs.iter().map(|p| p.2).collect()),
            common::arr_i64(pairs.iter().map(|p| p.3).collect()),
            common::arr_f64(vec![beta; pairs.len()]),
            common::arr_f64(logit),
            common::arr_f64(prob),
        ],
    )
}

fn logps_schema() -> arrow::datatypes::SchemaRef {
    common::schema(&[
        ("response_id", Col::I64, false),
        ("logp_policy", Col::F64, false),
        ("logp_irm_ref", Col::F64, false),
        ("length", Col::I32, false),
    ])
}

fn pairs_schema() -> arrow::datatypes::SchemaRef {
    common::schema(&[
        ("pair_id", Col::I64, false),
        ("prompt_id", Col::I64, false),
        ("response_id_1", Col::I64, false),
        ("response_id_2", Col::I64, false),
        ("beta", Col::F64, false),
        ("irm_logit", Col::F64, false),
        ("p_irm", Col::F64, false),
    ])
}
