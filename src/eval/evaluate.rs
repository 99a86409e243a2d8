//! One eval task: measure a model `Mt` against the baseline `M0` and the
//! IRM reference on the world's held-out sets, as rows of the `eval` tables.
//!
//! ```text
//! eval_prompts ─▶ Mt, M0 respond (greedy ×1, sampled ×samples) ─▶ gold score ─▶ gold_*, exact_*,
//!                                                                               length_*, win_rate_*
//! gold_pairs ──▶ IRM  p = σ(β[(lπ(a)−lref(a)) − (lπ(b)−lref(b))])             ─▶ irm_acc
//!            ──▶ GRM  P(A|a,b), P(A|b,a) → q_pairwise; s(a), s(b) → q_pointwise ─▶ grm_*_acc, flip
//!            ──▶ selection rule on (p, q[grm]) ─▶ consistency_rate, consistent_acc, inconsistent_*
//! ```
//!
//! The sampling seeds come from `params.seed`, the prompt id and the sample
//! index only, so every iteration and the baseline draw the same random
//! numbers (a paired comparison; `M0` measured inside `eval@k` gives exactly
//! the responses `eval@0` recorded).

use serde::{Deserialize, Serialize};

use super::measure::{self, Decoding, Response};
use super::metrics::{self, Mean};
use crate::loss::bernoulli::sigmoid;
use crate::model::Model;
use crate::tables::grm_scores::GrmMode;

/// Params of the `eval` stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalParams {
    /// Sampling temperature of the `sampled` decoding (the policy's own).
    pub temperature: f64,
    /// Nucleus of the `sampled` decoding.
    pub top_p: f64,
    /// Sampled responses per eval prompt.
    pub samples: u32,
    /// Longest response in tokens.
    pub max_new_tokens: usize,
    /// Seed of the sampling streams (fixed across iterations on purpose).
    pub seed: u64,
    /// β of the implicit reward.
    pub beta: f64,
    /// Score levels of the pointwise judge (the world's `score_levels`).
    pub score_levels: u32,
    /// The GRM the consistency metrics use.
    pub grm: GrmMode,
    /// τ of the pointwise GRM: `q = σ((s(y1) − s(y2))/τ)`.
    pub tau: f64,
    /// Margin δ of the selection rule.
    pub delta: f64,
    /// Rows per forward pass (does not change any number).
    pub batch_size: usize,
}

impl Default for EvalParams {
    fn default() -> Self {
        EvalParams {
            temperature: 1.0,
            top_p: 1.0,
            samples: 4,
            max_new_tokens: 48,
            seed: 0,
            beta: 0.1,
            score_levels: 5,
            grm: GrmMode::Pointwise,
            tau: 0.25,
            delta: 0.0,
            batch_size: 64,
        }
    }
}

/// A held-out gold pair.
#[derive(Debug, Clone)]
pub struct GoldPair {
    pub id: i64,
    pub prompt: String,
    pub a: String,
    pub b: String,
    /// Whether `a` is the better response.
    pub a_better: bool,
}

/// The judgements of one gold pair.
#[derive(Debug, Clone, PartialEq)]
pub struct PairScores {
    pub id: i64,
    pub a_better: bool,
    pub p_irm: f64,
    /// `P(A)` with `(a, b)` and with `(b, a)` shown.
    pub p_a_ab: f64,
    pub p_a_ba: f64,
    pub q_pairwise: f64,
    /// Expected score levels of `a` and `b`.
    pub score_a: f64,
    pub score_b: f64,
    pub q_pointwise: f64,
}

/// Everything one eval task produces.
#[derive(Debug, Clone)]
pub struct EvalOutput {
    /// `(metric, mean)` in a fixed order.
    pub metrics: Vec<(String, Mean)>,
    /// The model's responses, greedy first.
    pub responses: Vec<(Decoding, Response)>,
    pub pairs: Vec<PairScores>,
}

/// The models one eval task reads.
pub struct Models<'a> {
    pub model: &'a Model,
    /// `M0`; `None` when it is the model itself (`eval@0`).
    pub baseline: Option<&'a Model>,
    pub reference: &'a Model,
    /// An external reward model, measured next to the model's own IRM and GRM.
    pub reward_model: Option<&'a Model>,
}

/// Run every measurement of one eval task.
pub fn evaluate(
    p: &EvalParams,
    models: &Models,
    prompts: &[(i64, String)],
    pairs: &[GoldPair],
) -> anyhow::Result<EvalOutput> {
    let mut out = EvalOutput {
        metrics: Vec::new(),
        responses: Vec::new(),
        pairs: Vec::new(),
    };
    let sampled = Decoding::Sampled {
        temperature: p.temperature,
        top_p: p.top_p,
    };
    for (decoding, n) in [(Decoding::Greedy, 1), (sampled, p.samples)] {
        let knobs = (p.max_new_tokens, p.seed, p.batch_size);
        let ours = measure::respond(models.model, prompts, decoding, n, knobs)?;
        let theirs = match models.baseline {
            Some(m0) => measure::respond(m0, prompts, decoding, n, knobs)?,
            None => ours.clone(),
        };
        let d = decoding.name();
        let gold: Vec<f64> = ours.iter().map(|r| r.gold).collect();
        let base: Vec<f64> = theirs.iter().map(|r| r.gold).collect();
        let m = &mut out.metrics;
        m.push((format!("gold_{d}"), Mean::of(gold.iter().copied())));
        let exact = ours.iter().map(|r| f64::from(u8::from(r.gold >= 1.0)));
        m.push((format!("exact_{d}"), Mean::of(exact)));
        m.push((format!("win_rate_{d}"), metrics::win_rate(&gold, &base)));
        let wins: Vec<f64> = gold
            .iter()
            .zip(&base)
            .map(|(a, b)| metrics::win(*a, *b))
            .collect();
        let gaps: Vec<f64> = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| a.length as f64 - b.length as f64)
            .collect();
        let lc = metrics::length_controlled_win_rate(&wins, &gaps);
        m.push((format!("lc_win_rate_{d}"), lc));
        let length = ours.iter().map(|r| r.length as f64);
        m.push((format!("length_{d}"), Mean::of(length)));
        let finished = ours.iter().map(|r| f64::from(u8::from(r.finished)));
        m.push((format!("finished_{d}"), Mean::of(finished)));
        out.responses
            .extend(ours.into_iter().map(|r| (decoding, r)));
    }
    out.pairs = judge(p, models, pairs)?;
    out.metrics.extend(judge_metrics(p, &out.pairs));
    out.metrics
        .extend(own_sample_metrics(p, models, prompts, &out.responses)?);
    if let Some(rm) = models.reward_model {
        out.metrics
            .extend(reward_model_metrics(p, rm, pairs, prompts, &out.responses)?);
    }
    Ok(out)
}

/// `(prompt, a), (prompt, b)` of every gold pair, in order: what each model scores.
fn gold_items(pairs: &[GoldPair]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .flat_map(|g| {
            [
                (g.prompt.as_str(), g.a.as_str()),
                (g.prompt.as_str(), g.b.as_str()),
            ]
        })
        .collect()
}

/// IRM and GRM judgements of every pair (`models.baseline` is not used).
pub fn judge(
    p: &EvalParams,
    models: &Models,
    pairs: &[GoldPair],
) -> anyhow::Result<Vec<PairScores>> {
    let chunk = p.batch_size;
    let items = gold_items(pairs);
    let pi = measure::logprobs(models.model, &items, chunk)?;
    let reference = measure::logprobs(models.reference, &items, chunk)?;
    let scores = measure::pointwise(models.model, &items, p.score_levels, chunk)?;
    let shown: Vec<(&str, &str, &str)> = pairs
        .iter()
        .flat_map(|g| {
            let x = g.prompt.as_str();
            [
                (x, g.a.as_str(), g.b.as_str()),
                (x, g.b.as_str(), g.a.as_str()),
            ]
        })
        .collect();
    let verdicts = measure::pairwise(models.model, &shown, chunk)?;
    Ok(pairs
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let (a, b) = (2 * i, 2 * i + 1);
            let reward = |j: usize| p.beta * (pi[j] - reference[j]);
            let (p_a_ab, p_a_ba) = (verdicts[a], verdicts[b]);
            PairScores {
                id: g.id,
                a_better: g.a_better,
                p_irm: sigmoid(reward(a) - reward(b)),
                p_a_ab,
                p_a_ba,
                q_pairwise: metrics::swap_average(p_a_ab, p_a_ba),
                score_a: scores[a],
                score_b: scores[b],
                q_pointwise: sigmoid((scores[a] - scores[b]) / p.tau),
            }
        })
        .collect())
}

/// Every pair `(i, j)`, `i < j`, of one prompt's sampled responses with distinct gold scores.
fn own_pairs(sampled: &[&Response]) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    for i in 0..sampled.len() {
        for j in i + 1..sampled.len() {
            let (a, b) = (sampled[i], sampled[j]);
            if a.prompt_id == b.prompt_id && a.gold != b.gold {
                pairs.push((i, j));
            }
        }
    }
    pairs
}

/// The sampled responses of `responses` with their prompts' text, as `(prompt, response)`.
fn sampled_items<'a>(
    prompts: &'a [(i64, String)],
    responses: &'a [(Decoding, Response)],
) -> (Vec<&'a Response>, Vec<(&'a str, &'a str)>) {
    let text: std::collections::BTreeMap<i64, &str> =
        prompts.iter().map(|(id, t)| (*id, t.as_str())).collect();
    let sampled: Vec<&Response> = responses
        .iter()
        .filter(|(d, _)| *d != Decoding::Greedy)
        .map(|(_, r)| r)
        .collect();
    let items = sampled
        .iter()
        .map(|r| (text[&r.prompt_id], r.text.as_str()))
        .collect();
    (sampled, items)
}

/// An external reward model's accuracy: `rm_acc` on the held-out gold pairs, and
/// `sampled_rm_acc` on the pairs of the model's own sampled responses that
/// `sampled_grm_acc` uses (`σ(r(a) − r(b))` against gold).
fn reward_model_metrics(
    p: &EvalParams,
    rm: &Model,
    gold_pairs: &[GoldPair],
    prompts: &[(i64, String)],
    responses: &[(Decoding, Response)],
) -> anyhow::Result<Vec<(String, Mean)>> {
    let r = measure::rewards(rm, &gold_items(gold_pairs), p.batch_size)?;
    let q: Vec<f64> = r.chunks(2).map(|c| sigmoid(c[0] - c[1])).collect();
    let truth: Vec<bool> = gold_pairs.iter().map(|g| g.a_better).collect();
    let (sampled, items) = sampled_items(prompts, responses);
    let r = measure::rewards(rm, &items, p.batch_size)?;
    let pairs = own_pairs(&sampled);
    let own_q: Vec<f64> = pairs.iter().map(|&(i, j)| sigmoid(r[i] - r[j])).collect();
    let own_truth: Vec<bool> = pairs
        .iter()
        .map(|&(i, j)| sampled[i].gold > sampled[j].gold)
        .collect();
    Ok(vec![
        ("rm_acc".into(), metrics::accuracy(&q, &truth)),
        (
            "sampled_rm_acc".into(),
            metrics::accuracy(&own_q, &own_truth),
        ),
    ])
}

/// The model's reward models on pairs of its *own* sampled responses to the held-out prompts
/// (every pair of one prompt's samples with distinct gold scores, gold-labelled): what the
/// judge and the IRM face in the iterations, measured on held-out prompts. `sampled_grm_acc`
/// uses the judge `params.grm` names (pointwise `σ(Δ expected score / τ)`, or pairwise
/// swap-averaged), `sampled_irm_acc` the implicit
/// reward against `reference` (the response re-encoded from its text, EOS appended), and
/// `sampled_{grm,irm}_longer` how often each prefers the longer response of an
/// unequal-length pair (`sampled_gold_longer`: how often gold does).
fn own_sample_metrics(
    p: &EvalParams,
    models: &Models,
    prompts: &[(i64, String)],
    responses: &[(Decoding, Response)],
) -> anyhow::Result<Vec<(String, Mean)>> {
    let (sampled, items) = sampled_items(prompts, responses);
    let chunk = p.batch_size;
    let scores = match p.grm {
        GrmMode::Pointwise => measure::pointwise(models.model, &items, p.score_levels, chunk)?,
        GrmMode::Pairwise => Vec::new(),
    };
    let pi = measure::logprobs(models.model, &items, chunk)?;
    let reference = measure::logprobs(models.reference, &items, chunk)?;
    let pairs = own_pairs(&sampled);
    let q_all: Vec<f64> = match p.grm {
        GrmMode::Pointwise => pairs
            .iter()
            .map(|&(i, j)| sigmoid((scores[i] - scores[j]) / p.tau))
            .collect(),
        GrmMode::Pairwise => {
            let shown: Vec<(&str, &str, &str)> = pairs
                .iter()
                .flat_map(|&(i, j)| {
                    let (x, a, b) = (items[i].0, items[i].1, items[j].1);
                    [(x, a, b), (x, b, a)]
                })
                .collect();
            let v = measure::pairwise(models.model, &shown, chunk)?;
            v.chunks(2)
                .map(|c| metrics::swap_average(c[0], c[1]))
                .collect()
        }
    };
    let (mut q, mut irm, mut truth) = (Vec::new(), Vec::new(), Vec::new());
    let (mut longer, mut gold_longer) = ([Vec::new(), Vec::new()], Vec::new());
    for (&(i, j), &qi) in pairs.iter().zip(&q_all) {
        let (a, b) = (sampled[i], sampled[j]);
        let pi_ij = sigmoid(p.beta * ((pi[i] - reference[i]) - (pi[j] - reference[j])));
        if a.length != b.length {
            let a_longer = a.length > b.length;
            for (k, x) in [qi, pi_ij].into_iter().enumerate() {
                longer[k].push(metrics::credit(x, a_longer));
            }
            gold_longer.push(f64::from(u8::from((a.gold > b.gold) == a_longer)));
        }
        q.push(qi);
        irm.push(pi_ij);
        truth.push(a.gold > b.gold);
    }
    let [grm_longer, irm_longer] = longer;
    Ok(vec![
        ("sampled_grm_acc".into(), metrics::accuracy(&q, &truth)),
        ("sampled_irm_acc".into(), metrics::accuracy(&irm, &truth)),
        ("sampled_grm_longer".into(), Mean::of(grm_longer)),
        ("sampled_irm_longer".into(), Mean::of(irm_longer)),
        ("sampled_gold_longer".into(), Mean::of(gold_longer)),
    ])
}

/// The GRM preference `params.grm` names.
pub fn grm_q(p: &EvalParams, s: &PairScores) -> f64 {
    match p.grm {
        GrmMode::Pairwise => s.q_pairwise,
        GrmMode::Pointwise => s.q_pointwise,
    }
}

/// Judge accuracies, the position-flip rate and the Figure 3 split.
fn judge_metrics(p: &EvalParams, pairs: &[PairScores]) -> Vec<(String, Mean)> {
    let col = |f: fn(&PairScores) -> f64| pairs.iter().map(f).collect::<Vec<f64>>();
    let truth: Vec<bool> = pairs.iter().map(|s| s.a_better).collect();
    let p_irm = col(|s| s.p_irm);
    let q_pair = col(|s| s.q_pairwise);
    let q_point = col(|s| s.q_pointwise);
    let q = match p.grm {
        GrmMode::Pairwise => &q_pair,
        GrmMode::Pointwise => &q_point,
    };
    let split = metrics::agreement(&p_irm, q, &truth, p.delta);
    let flips = metrics::position_flip_rate(&col(|s| s.p_a_ab), &col(|s| s.p_a_ba));
    vec![
        ("irm_acc".into(), metrics::accuracy(&p_irm, &truth)),
        ("grm_acc".into(), metrics::accuracy(q, &truth)),
        (
            "grm_pairwise_acc".into(),
            metrics::accuracy(&q_pair, &truth),
        ),
        (
            "grm_pairwise_ab_acc".into(),
            metrics::accuracy(&col(|s| s.p_a_ab), &truth),
        ),
        (
            "grm_pointwise_acc".into(),
            metrics::accuracy(&q_point, &truth),
        ),
        ("grm_flip_rate".into(), flips),
        ("consistency_rate".into(), split.rate),
        ("consistent_acc".into(), split.consistent_acc),
        ("inconsistent_irm_acc".into(), split.inconsistent_irm_acc),
        ("inconsistent_grm_acc".into(), split.inconsistent_grm_acc),
    ]
}
