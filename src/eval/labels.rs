//! Eval of what an arm trained on: the iteration's own generated pairs,
//! gold-labelled here (and only here), against the IRM/GRM preferences and
//! the labels the consistency filter wrote.
//!
//! Reads [`responses`](crate::tables::responses) (generate@k) and
//! [`filter_pairs`](crate::tables::filter_pairs) (consistency-filter@k).
//!
//! Writes table `eval_label_pairs` (each pair's `gold_1`, `gold_2` and `gold_label`: `y1`,
//! `y2` or `tie`; the report's pair browser shows it) and table `eval_labels` (same long
//! format as `eval`: iteration, metric, value, n):
//!
//! ```text
//! own_gold_tie_rate          pairs whose two responses have the same gold score (left out below)
//! own_irm_acc, own_grm_acc   accuracy of p_irm / p_grm against the gold label
//! own_consistency_rate       fraction of pairs the filter marked consistent
//! own_consistent_acc         accuracy of the agreed direction on consistent pairs
//! own_inconsistent_{irm,grm}_acc
//! selected_frac              fraction of pairs that went to training
//! label_acc                  accuracy of `label` on the selected pairs (the labels trained on;
//!                            for `dynamic`, the agreement at the start of the iteration)
//! trained_consistency_before fraction of the selected pairs the filter found consistent (Mt−1)
//! trained_consistency_after  the same pairs under Mt (IRM vs Mt's reference, GRM per params)
//! trained_{irm,grm}_acc      Mt's accuracy on the pairs it trained on (Figure 2 analogue)
//! own_{gold,irm,grm}_longer  length bias: on pairs of unequal length, how often gold / the IRM /
//! label_longer               the GRM / the training label prefer the longer response
//! judge_pair_acc             Meta-Rewarding's judge pairs (score-grm's `judge_pairs`): how often
//!                            the chosen judgment is nearer the response's gold level than the
//!                            rejected one (equally near: ½); absent without judge pairs
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use super::evaluate::{EvalParams, GoldPair, Models, grm_q, judge};
use super::metrics::{Mean, credit};
use crate::loss::{Preferred, select_pair};
use crate::model::Model;
use crate::table::Table;
use crate::tables::eval::EvalLabelPairRow;
use crate::tables::filter_pairs::FilterPairRow;
use crate::tables::judge_pairs::JudgePairRow;
use crate::tables::responses::ResponseRow;

/// One generated pair as the filter saw it, with both responses' gold scores.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnPair {
    pub pair_id: i64,
    pub prompt: String,
    pub text_1: String,
    pub text_2: String,
    pub gold_1: f64,
    pub gold_2: f64,
    pub p_irm: f64,
    pub p_grm: f64,
    pub consistent: bool,
    /// The training label (`None`: no label).
    pub label: Option<Preferred>,
    pub selected: bool,
}

/// `(prompt, text, gold score)` of every response, by response id.
pub type GoldResponses = BTreeMap<i64, (String, String, f64)>;

/// The responses of a `responses` file, gold-scored ([`GoldResponses`]).
pub fn read_gold(responses: &Path) -> anyhow::Result<GoldResponses> {
    ResponseRow::read_path(responses)?
        .into_iter()
        .map(|r| {
            let gold = crate::world::gold::score(&r.prompt, &r.text)?;
            Ok((r.response_id, (r.prompt, r.text, gold)))
        })
        .collect()
}

/// `judge_pair_acc` (see the module docs) of `pairs`, each response's gold score from
/// `gold`, at `levels` score levels.
pub fn judge_pair_metrics(
    pairs: &[JudgePairRow],
    gold: &GoldResponses,
    levels: u32,
) -> anyhow::Result<Vec<(String, Mean)>> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let credits = pairs
        .iter()
        .map(|p| {
            let (_, _, g) = *gold.get(&p.response_id).ok_or_else(|| {
                anyhow::anyhow!(
                    "judge pair of response {}, which does not exist",
                    p.response_id
                )
            })?;
            let truth = crate::world::gold::level(g, levels);
            let off = |s: &str| -> anyhow::Result<u32> { Ok(s.parse::<u32>()?.abs_diff(truth)) };
            let (c, r) = (off(&p.chosen)?, off(&p.rejected)?);
            Ok(match c.cmp(&r) {
                std::cmp::Ordering::Less => 1.0,
                std::cmp::Ordering::Equal => 0.5,
                std::cmp::Ordering::Greater => 0.0,
            })
        })
        .collect::<anyhow::Result<Vec<f64>>>()?;
    Ok(vec![("judge_pair_acc".into(), Mean::of(credits))])
}

/// Length bias: over pairs whose responses differ in length (characters), how often each
/// preference picks the longer response (gold on decided pairs; the label on the selected,
/// labelled pairs; p_irm and p_grm with ½ scoring ½).
pub fn length_metrics(pairs: &[OwnPair]) -> Vec<(String, Mean)> {
    let flag = |b: bool| f64::from(u8::from(b));
    let uneven: Vec<(&OwnPair, bool)> = pairs
        .iter()
        .map(|p| (p, p.text_1.chars().count(), p.text_2.chars().count()))
        .filter(|(_, a, b)| a != b)
        .map(|(p, a, b)| (p, a > b))
        .collect();
    let of = |f: &dyn Fn(&OwnPair, bool) -> Option<f64>| {
        Mean::of(uneven.iter().filter_map(|(p, y1_longer)| f(p, *y1_longer)))
    };
    vec![
        (
            "own_gold_longer".into(),
            of(&|p, l| (p.gold_1 != p.gold_2).then(|| flag((p.gold_1 > p.gold_2) == l))),
        ),
        (
            "own_irm_longer".into(),
            of(&|p, l| Some(credit(p.p_irm, l))),
        ),
        (
            "own_grm_longer".into(),
            of(&|p, l| Some(credit(p.p_grm, l))),
        ),
        (
            "label_longer".into(),
            of(&|p, l| match (p.selected, p.label) {
                (true, Some(label)) => Some(flag((label == Preferred::Y1) == l)),
                _ => None,
            }),
        ),
    ]
}

/// The `eval_labels` metrics of one iteration's pairs, in a fixed order.
pub fn label_metrics(pairs: &[OwnPair]) -> Vec<(String, Mean)> {
    let flag = |b: bool| f64::from(u8::from(b));
    let decided: Vec<(&OwnPair, bool)> = pairs
        .iter()
        .filter(|p| p.gold_1 != p.gold_2)
        .map(|p| (p, p.gold_1 > p.gold_2))
        .collect();
    let of = |f: &dyn Fn(&OwnPair, bool) -> Option<f64>| {
        Mean::of(decided.iter().filter_map(|(p, t)| f(p, *t)))
    };
    vec![
        (
            "own_gold_tie_rate".into(),
            Mean::of(pairs.iter().map(|p| flag(p.gold_1 == p.gold_2))),
        ),
        ("own_irm_acc".into(), of(&|p, t| Some(credit(p.p_irm, t)))),
        ("own_grm_acc".into(), of(&|p, t| Some(credit(p.p_grm, t)))),
        (
            "own_consistency_rate".into(),
            Mean::of(pairs.iter().map(|p| flag(p.consistent))),
        ),
        (
            "own_consistent_acc".into(),
            of(&|p, t| p.consistent.then(|| credit(p.p_irm, t))),
        ),
        (
            "own_inconsistent_irm_acc".into(),
            of(&|p, t| (!p.consistent).then(|| credit(p.p_irm, t))),
        ),
        (
            "own_inconsistent_grm_acc".into(),
            of(&|p, t| (!p.consistent).then(|| credit(p.p_grm, t))),
        ),
        (
            "selected_frac".into(),
            Mean::of(pairs.iter().map(|p| flag(p.selected))),
        ),
        (
            "label_acc".into(),
            of(&|p, t| match (p.selected, p.label) {
                (true, Some(label)) => Some(flag((label == Preferred::Y1) == t)),
                _ => None,
            }),
        ),
    ]
}

/// Read `responses` and `filter_pairs` files into gold-scored [`OwnPair`]s.
pub fn read_own_pairs(responses: &Path, filter: &Path) -> anyhow::Result<Vec<OwnPair>> {
    own_pairs(&read_gold(responses)?, responses, filter)
}

/// The `filter_pairs` file's pairs with their responses' texts and gold scores from `gold`
/// (read from the `responses` file, named in errors).
pub fn own_pairs(
    gold: &GoldResponses,
    responses: &Path,
    filter: &Path,
) -> anyhow::Result<Vec<OwnPair>> {
    FilterPairRow::read_path(filter)?
        .into_iter()
        .map(|f| {
            let get = |id: i64| {
                gold.get(&id).ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: response {id} is not in {}",
                        filter.display(),
                        responses.display()
                    )
                })
            };
            let ((prompt, text_1, gold_1), (_, text_2, gold_2)) =
                (get(f.response_id_1)?, get(f.response_id_2)?);
            Ok(OwnPair {
                pair_id: f.pair_id,
                prompt: prompt.clone(),
                text_1: text_1.clone(),
                text_2: text_2.clone(),
                gold_1: *gold_1,
                gold_2: *gold_2,
                p_irm: f.p_irm,
                p_grm: f.p_grm,
                consistent: f.consistent,
                label: f.label,
                selected: f.selected,
            })
        })
        .collect()
}

/// Each pair's gold scores and gold label, in pair order.
pub fn gold_rows(pairs: &[OwnPair]) -> Vec<EvalLabelPairRow> {
    pairs
        .iter()
        .map(|p| EvalLabelPairRow {
            pair_id: p.pair_id,
            gold_1: p.gold_1,
            gold_2: p.gold_2,
            gold_label: match p.gold_1.total_cmp(&p.gold_2) {
                std::cmp::Ordering::Greater => "y1",
                std::cmp::Ordering::Less => "y2",
                std::cmp::Ordering::Equal => "tie",
            }
            .into(),
        })
        .collect()
}

/// Mt on the pairs it was just trained on (the selected pairs of its own
/// iteration): consistency before (the filter's flag, under Mt−1) and after
/// (the selection rule on Mt's p and q), and Mt's IRM/GRM accuracy there.
pub fn trained_metrics(
    p: &EvalParams,
    model: &Model,
    reference: &Model,
    pairs: &[OwnPair],
) -> anyhow::Result<Vec<(String, Mean)>> {
    let flag = |b: bool| f64::from(u8::from(b));
    let trained: Vec<&OwnPair> = pairs.iter().filter(|x| x.selected).collect();
    let gold: Vec<GoldPair> = trained
        .iter()
        .zip(0..)
        .map(|(x, id)| GoldPair {
            id,
            prompt: x.prompt.clone(),
            a: x.text_1.clone(),
            b: x.text_2.clone(),
            a_better: x.gold_1 > x.gold_2,
        })
        .collect();
    let models = Models {
        model,
        baseline: None,
        reference,
        reward_model: None,
    };
    let scores = judge(p, &models, &gold)?;
    let decided = || {
        trained
            .iter()
            .zip(&scores)
            .filter(|(x, _)| x.gold_1 != x.gold_2)
    };
    Ok(vec![
        (
            "trained_consistency_before".into(),
            Mean::of(trained.iter().map(|x| flag(x.consistent))),
        ),
        (
            "trained_consistency_after".into(),
            Mean::of(
                scores
                    .iter()
                    .map(|s| flag(select_pair(s.p_irm, grm_q(p, s), p.delta).is_some())),
            ),
        ),
        (
            "trained_irm_acc".into(),
            Mean::of(decided().map(|(_, s)| credit(s.p_irm, s.a_better))),
        ),
        (
            "trained_grm_acc".into(),
            Mean::of(decided().map(|(_, s)| credit(grm_q(p, s), s.a_better))),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(g: (f64, f64), p: f64, q: f64, consistent: bool, label: Option<bool>) -> OwnPair {
        OwnPair {
            pair_id: 0,
            prompt: String::new(),
            text_1: String::new(),
            text_2: String::new(),
            gold_1: g.0,
            gold_2: g.1,
            p_irm: p,
            p_grm: q,
            consistent,
            label: label.map(|y1| if y1 { Preferred::Y1 } else { Preferred::Y2 }),
            selected: label.is_some(),
        }
    }

    #[test]
    fn label_metrics_leave_gold_ties_out_and_score_the_trained_labels() {
        let pairs = [
            pair((1.0, 0.5), 0.8, 0.7, true, Some(true)), // right
            pair((0.2, 0.9), 0.6, 0.9, true, Some(true)), // wrong label
            pair((0.4, 0.3), 0.3, 0.6, false, None),      // IRM wrong, GRM right
            pair((0.5, 0.5), 0.9, 0.9, true, Some(true)), // gold tie: left out
        ];
        let m: BTreeMap<String, Mean> = label_metrics(&pairs).into_iter().collect();
        assert_eq!(m["own_gold_tie_rate"].value, 0.25);
        assert_eq!(m["own_consistency_rate"].value, 0.75);
        assert_eq!((m["label_acc"].value, m["label_acc"].n), (0.5, 2));
        assert_eq!(m["own_inconsistent_grm_acc"].value, 1.0);
        assert_eq!(m["own_inconsistent_irm_acc"].value, 0.0);
        assert_eq!((m["own_irm_acc"].value, m["own_irm_acc"].n), (1.0 / 3.0, 3));
        assert_eq!(m["selected_frac"].value, 0.75);
    }

    #[test]
    fn length_metrics_count_only_pairs_of_unequal_length() {
        let with = |t1: &str, t2: &str, mut p: OwnPair| {
            (p.text_1, p.text_2) = (t1.into(), t2.into());
            p
        };
        let pairs = [
            // y1 longer; gold prefers y2 (shorter); IRM and GRM and label pick y1 (longer).
            with("abcd", "abc", pair((0.5, 0.9), 0.8, 0.7, true, Some(true))),
            // y2 longer; gold prefers y2 (longer); IRM y1, GRM exactly ½, label y2.
            with("ab", "abc", pair((0.5, 0.9), 0.8, 0.5, false, Some(false))),
            // Equal lengths: left out of everything.
            with("abc", "abd", pair((0.1, 0.9), 0.9, 0.9, true, Some(true))),
        ];
        let m: BTreeMap<String, Mean> = length_metrics(&pairs).into_iter().collect();
        assert_eq!(
            (m["own_gold_longer"].value, m["own_gold_longer"].n),
            (0.5, 2)
        );
        assert_eq!(m["own_irm_longer"].value, 0.5);
        assert_eq!(m["own_grm_longer"].value, 0.75);
        assert_eq!((m["label_longer"].value, m["label_longer"].n), (1.0, 2));
    }

    /// Gold 1.0 is level 5 of 5. (4 ≻ 2): 4 is nearer, credit 1; (1 ≻ 5): 0; (4 ≻ 5): 0.
    /// Mean 1/3.
    #[test]
    fn judge_pairs_are_right_when_the_chosen_score_is_nearer_gold() {
        let pair = |id: i64, chosen: &str, rejected: &str| JudgePairRow {
            response_id: id,
            prompt_id: 0,
            judgments: 2,
            chosen: chosen.into(),
            rejected: rejected.into(),
            chosen_strength: 0.6,
            rejected_strength: 0.4,
            judge_ids: vec![],
            chosen_ids: vec![],
            rejected_ids: vec![],
        };
        let pairs = [pair(1, "4", "2"), pair(2, "1", "5"), pair(3, "4", "5")];
        let scored = |id: i64| (id, (String::new(), String::new(), 1.0));
        let gold = BTreeMap::from([scored(1), scored(2), scored(3)]);
        let m = judge_pair_metrics(&pairs, &gold, 5).unwrap();
        assert_eq!(m[0].0, "judge_pair_acc");
        assert!((m[0].1.value - 1.0 / 3.0).abs() < 1e-12 && m[0].1.n == 3);
        assert!(judge_pair_metrics(&[], &gold, 5).unwrap().is_empty());
    }
}
