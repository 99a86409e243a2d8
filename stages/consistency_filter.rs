//! `consistency-filter@k`: joins the IRM and GRM preferences by `pair_id`
//! (never by position), measures their agreement at the start of the
//! iteration and writes the training set.
//!
//! A pair is `consistent` iff `(p_irm−½)(p_grm−½) > 0` and
//! `min(|p_irm−½|, |p_grm−½|) ≥ delta` (the selection rule of
//! [`crate::loss::select_pair`]); `agreed` is the direction both prefer.
//! Modes:
//! * `dynamic` (SCIR, default): every pair goes to training; selection
//!   happens per step with the current θ. `label` is the agreement now
//!   (informational).
//! * `static`: only pairs consistent now, labelled by that agreement.
//! * `grm_only` (SRLM): label = the GRM's verdict; pairs with
//!   `|p_grm − ½| < margin` are dropped.
//!
//! ```text
//! filter_pairs    iteration Int32, pair_id Int64, prompt_id Int64, response_id_1 Int64,
//!                 response_id_2 Int64, p_irm Float64, p_grm Float64, consistent Boolean,
//!                 agreed Utf8? ("y1"|"y2"), label Utf8? ("y1"|"y2": the training label of
//!                 static/grm_only, the agreement of dynamic), selected Boolean (goes to train)
//! filter_summary  iteration Int32, mode Utf8, pairs Int64, consistent Int64,
//!                 agreement Float64 (rate with δ = 0), consistency_rate Float64 (with δ),
//!                 selected Int64, trained_pairs Int64 (previous iteration's selected pairs;
//!                 0 at k = 1), trained_consistency_rate Float64? (their IRM/GRM agreement
//!                 under Mt, δ = 0; NULL at k = 1 or without pairs)
//! ```
//! The trained-pairs rate ([`super::trained_consistency`]) needs the slots
//! `previous` (`consistency-filter@k-1`) and `previous_generation`
//! (`generate@k-1`). They are *optional inputs*: the engine leaves them
//! unbound where `@k-1` is before the first iteration (k = 1), and the stage
//! then writes 0 / NULL. `model` (`model@k-1`, Mt) and `irm_ref` are the
//! checkpoints it is scored with; `irm_ref`'s default binding follows the
//! param `irm_reference` exactly as score-irm's does: the DAG is planned
//! before anything runs, so the filter needs the setting too, and it stops
//! with a user error when it differs from the one score-irm ran with. β and
//! the judge settings (template, mode, verdicts, swap, τ) are score-grm's and
//! score-irm's own, read from their inputs' params.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{self, Col};
use super::score_irm::IrmReference;
use super::trained_consistency::{TrainedConsistency, measure};
use crate::loss::{Preferred, select_pair};
use crate::stage::{Outputs, ParamError, Slot, SlotKind, Stage, TaskContext, resolve_typed};

/// Bump when the output changes for the same inputs and params.
pub const VERSION: u32 = 3;
pub const FILTER_PAIRS: &str = "filter_pairs";
pub const FILTER_SUMMARY: &str = "filter_summary";

/// Which pairs go to training, with which labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterMode {
    Dynamic,
    Static,
    GrmOnly,
}

impl FilterMode {
    fn name(self) -> &'static str {
        match self {
            FilterMode::Dynamic => "dynamic",
            FilterMode::Static => "static",
            FilterMode::GrmOnly => "grm_only",
        }
    }
}

/// Params of `consistency-filter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterParams {
    pub mode: FilterMode,
    /// δ of the consistency rule.
    pub delta: f64,
    /// `grm_only`: drop pairs with `|p_grm − ½| < margin`.
    pub margin: f64,
    /// As score-irm's `irm_reference`: the default binding of `irm_ref`.
    pub irm_reference: IrmReference,
}

impl Default for FilterParams {
    fn default() -> Self {
        FilterParams {
            mode: FilterMode::Dynamic,
            delta: 0.0,
            margin: 0.02,
            irm_reference: IrmReference::Initial,
        }
    }
}

/// The `consistency-filter` stage.
pub struct ConsistencyFilter;

const SLOTS: &[Slot] = &[
    Slot {
        name: "irm",
        kind: SlotKind::Tables,
    },
    Slot {
        name: "grm",
        kind: SlotKind::Tables,
    },
    Slot {
        name: "model",
        kind: SlotKind::Checkpoint,
    },
    Slot {
        name: "irm_ref",
        kind: SlotKind::Checkpoint,
    },
    Slot {
        name: "previous",
        kind: SlotKind::Tables,
    },
    Slot {
        name: "previous_generation",
        kind: SlotKind::Tables,
    },
];

/// Slots left unbound at k = 1.
const OPTIONAL: &[&str] = &["previous", "previous_generation"];

fn label(p: Option<Preferred>) -> Option<String> {
    p.map(|d| match d {
        Preferred::Y1 => "y1".to_string(),
        Preferred::Y2 => "y2".to_string(),
    })
}

impl Stage for ConsistencyFilter {
    fn kind(&self) -> &'static str {
        "consistency-filter"
    }
    fn version(&self) -> u32 {
        VERSION
    }
    fn about(&self) -> &'static str {
        "IRM/GRM agreement per pair and the training set (dynamic, static or grm_only)"
    }
    fn resolve_params(&self, raw: serde_json::Value) -> Result<serde_json::Value, ParamError> {
        let v = resolve_typed::<FilterParams>(raw)?;
        for (name, max) in [("delta", 0.5), ("margin", 0.5)] {
            let x = v[name].as_f64().unwrap_or(-1.0);
            if !(0.0..max).contains(&x) {
                return Err(ParamError {
                    path: name.into(),
                    message: format!("must be in [0, 0.5), got {x}"),
                });
            }
        }
        Ok(v)
    }
    fn inputs(&self) -> &'static [Slot] {
        SLOTS
    }
    fn default_bindings(&self, params: &serde_json::Value) -> Vec<(&'static str, String)> {
        vec![
            ("irm", "score-irm".into()),
            ("grm", "score-grm".into()),
            ("model", "model@k-1".into()),
            ("irm_ref", IrmReference::of_params(params).binding().into()),
            ("previous", "consistency-filter@k-1".into()),
            ("previous_generation", "generate@k-1".into()),
        ]
    }
    fn optional_inputs(&self) -> &'static [&'static str] {
        OPTIONAL
    }
    fn outputs(&self, _params: &serde_json::Value) -> Outputs {
        Outputs {
            tables: vec![
                (FILTER_PAIRS.into(), pairs_schema()),
                (FILTER_SUMMARY.into(), summary_schema()),
            ],
            checkpoint: false,
        }
    }
    fn run(&self, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let p: FilterParams = ctx.params()?;
        check_irm_reference(ctx, p.irm_reference)?;
        let irm = common::read_table(ctx.input("irm")?, super::score_irm::IRM_PAIRS)?;
        let grm = common::read_table(ctx.input("grm")?, super::score_grm::GRM_SCORES)?;
        let q_by_pair: BTreeMap<i64, f64> = common::col_i64(&grm, "pair_id")?
            .into_iter()
            .zip(common::col_f64(&grm, "p_grm")?)
            .map(|(id, q)| (id, q.unwrap_or(0.5)))
            .collect();
        let ids = common::col_i64(&irm, "pair_id")?;
        if ids.len() != q_by_pair.len() || ids.iter().any(|id| !q_by_pair.contains_key(id)) {
            anyhow::bail!(
                "{}: the IRM and GRM tables score different pairs ({} vs {})",
                ctx.task,
                ids.len(),
                q_by_pair.len()
            );
        }
        let p_irm: Vec<f64> = common::col_f64(&irm, "p_irm")?
            .into_iter()
            .map(|x| x.unwrap_or(0.5))
            .collect();
        let q: Vec<f64> = ids.iter().map(|id| q_by_pair[id]).collect();
        let mut out = Cols::default();
        for i in 0..ids.len() {
            let agreed = select_pair(p_irm[i], q[i], p.delta);
            let (lab, selected) = match p.mode {
                FilterMode::Dynamic => (agreed, true),
                FilterMode::Static => (agreed, agreed.is_some()),
                FilterMode::GrmOnly => {
                    let dir = if q[i] > 0.5 {
                        Preferred::Y1
                    } else {
                        Preferred::Y2
                    };
                    let keep = (q[i] - 0.5).abs() >= p.margin && q[i] != 0.5;
                    (keep.then_some(dir), keep)
                }
            };
            out.consistent.push(agreed.is_some());
            out.agree0.push(select_pair(p_irm[i], q[i], 0.0).is_some());
            out.agreed.push(label(agreed));
            out.label.push(label(lab));
            out.selected.push(selected);
        }
        let trained = match (
            ctx.try_input("previous"),
            ctx.try_input("previous_generation"),
        ) {
            (Some(prev), Some(generation)) => measure(ctx, prev, generation)?,
            _ => TrainedConsistency {
                pairs: 0,
                rate: None,
            },
        };
        let summary = out.summary(ctx.iteration, p.mode, &trained)?;
        ctx.log(&format!(
            "{} pairs, {} consistent, {} selected",
            ids.len(),
            out.consistent.iter().filter(|c| **c).count(),
            out.selected.iter().filter(|c| **c).count()
        ));
        let k = ctx.iteration;
        let batch = common::batch(
            &pairs_schema(),
            k,
            vec![
                common::arr_i64(ids),
                common::arr_i64(common::col_i64(&irm, "prompt_id")?),
                common::arr_i64(common::col_i64(&irm, "response_id_1")?),
                common::arr_i64(common::col_i64(&irm, "response_id_2")?),
                common::arr_f64(p_irm),
                common::arr_f64(q),
                common::arr_bool(out.consistent),
                common::arr_opt_str(out.agreed),
                common::arr_opt_str(out.label),
                common::arr_bool(out.selected),
            ],
        )?;
        ctx.write_table(FILTER_PAIRS, &batch)?;
        ctx.write_table(FILTER_SUMMARY, &summary)
    }
}

#[derive(Default)]
struct Cols {
    consistent: Vec<bool>,
    agree0: Vec<bool>,
    agreed: Vec<Option<String>>,
    label: Vec<Option<String>>,
    selected: Vec<bool>,
}

impl Cols {
    fn summary(
        &self,
        k: u32,
        mode: FilterMode,
        trained: &TrainedConsistency,
    ) -> anyhow::Result<arrow::record_batch::RecordBatch> {
        let n = self.consistent.len();
        let count = |v: &[bool]| v.iter().filter(|x| **x).count();
        let rate = |c: usize| if n == 0 { 0.0 } else { c as f64 / n as f64 };
        common::batch(
            &summary_schema(),
            k,
            vec![
                common::arr_str(vec![mode.name().to_string()]),
                common::arr_i64(vec![n as i64]),
                common::arr_i64(vec![count(&self.consistent) as i64]),
                common::arr_f64(vec![rate(count(&self.agree0))]),
                common::arr_f64(vec![rate(count(&self.consistent))]),
                common::arr_i64(vec![count(&self.selected) as i64]),
                common::arr_i64(vec![trained.pairs]),
                common::arr_opt_f64(vec![trained.rate]),
            ],
        )
    }
}

fn pairs_schema() -> arrow::datatypes::SchemaRef {
    common::schema(&[
        ("pair_id", Col::I64, false),
        ("prompt_id", Col::I64, false),
        ("response_id_1", Col::I64, false),
        ("response_id_2", Col::I64, false),
        ("p_irm", Col::F64, false),
        ("p_grm", Col::F64, false),
        ("consistent", Col::Bool, false),
        ("agreed", Col::Str, true),
        ("label", Col::Str, true),
        ("selected", Col::Bool, false),
    ])
}

fn summary_schema() -> arrow::datatypes::SchemaRef {
    common::schema(&[
        ("mode", Col::Str, false),
        ("pairs", Col::I64, false),
        ("consistent", Col::I64, false),
        ("agreement", Col::F64, false),
        ("consistency_rate", Col::F64, false),
        ("selected", Col::I64, false),
        ("trained_pairs", Col::I64, false),
        ("trained_consistency_rate", Col::F64, true),
    ])
}

/// The filter's `irm_reference` must be the one score-irm ran with: the trained-pairs rate
/// scores Mt against the filter's `irm_ref`, which must be score-irm's reference.
fn check_irm_reference(ctx: &TaskContext, own: IrmReference) -> anyhow::Result<()> {
    let irm = ctx.input("irm")?;
    let upstream = IrmReference::of_params(&irm.params);
    if upstream != own {
        anyhow::bail!(crate::user_err!(
            "consistency-filter has irm_reference: {} but {} ran with irm_reference: {}; set \
             the same value on both stages (the filter scores the previous trained pairs \
             against it)",
            own.name(),
            irm.task,
            upstream.name()
        ));
    }
    Ok(())
}
