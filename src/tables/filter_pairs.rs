//! `filter_pairs` (consistency-filter@k): IRM/GRM agreement per pair and the training set;
//! [`FilterMode`].
//!
//! `consistent` iff `(p_irm − ½)(p_grm − ½) > 0` and both are at least δ from ½; `agreed`
//! is the direction both prefer; `label` is the training label of `static`/`grm_only` and
//! the agreement of `dynamic`; `selected` pairs go to train (`cream`: the prompt's pair,
//! labelled by Mt's implicit reward).

use serde::{Deserialize, Serialize};

use crate::loss::Preferred;

/// Which pairs go to training, with which labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterMode {
    /// Every pair; train selects per step with the current θ (SCIR).
    Dynamic,
    /// Only the pairs consistent now, labelled by that agreement.
    Static,
    /// The GRM's verdict as the label, pairs near ½ dropped (SRLM).
    GrmOnly,
    /// One pair per prompt, Mt's best and worst response by its implicit reward, trained
    /// with the consistency of Mt's and the previous model's rankings (CREAM).
    Cream,
}

impl FilterMode {
    /// The name as written in a pipeline file and in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterMode::Dynamic => "dynamic",
            FilterMode::Static => "static",
            FilterMode::GrmOnly => "grm_only",
            FilterMode::Cream => "cream",
        }
    }
    /// Inverse of [`FilterMode::as_str`].
    pub fn parse(s: &str) -> Option<FilterMode> {
        [
            FilterMode::Dynamic,
            FilterMode::Static,
            FilterMode::GrmOnly,
            FilterMode::Cream,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

crate::text_column!(FilterMode);
crate::text_column!(Preferred);

crate::table! {
    /// One pair as the filter saw it.
    pub struct FilterPairRow in "filter_pairs" {
        pair_id: i64,
        prompt_id: i64,
        response_id_1: i64,
        response_id_2: i64,
        p_irm: f64,
        p_grm: f64,
        consistent: bool,
        /// The direction both prefer (`y1` | `y2`), when consistent.
        agreed: Option<Preferred>,
        /// The training label (`y1` | `y2`).
        label: Option<Preferred>,
        /// Goes to train.
        selected: bool,
        /// `label` is fixed by a length control (`unfinished: lose`): train keeps it, also
        /// under SCIR's per-step selection.
        forced: bool,
    }
}
