//! Eval: what the `eval` and `eval-labels` stages measure, on held-out data only (the
//! gold scorer and the held-out tables are read here and nowhere in training).
//!
//! ```text
//! metrics   pure metric math (win rate and accuracy with ½ for ties, flip rate, Figure 3 split)
//! measure   model calls: responses with per-row seeds, log-probs, judge verdicts
//! evaluate  one eval task: params, the measurements, the metric list
//! labels    eval_labels: the iteration's own pairs gold-labelled (needs the SCIR stages' tables)
//! tables    the eval tables' rows (crate::tables::eval) from the measurements; reading the
//!           world's held-out tables
//! ```
//!
//! Metric names in the `eval` table (long format: `iteration, metric, value, n`, plus `arm`
//! in the public view; `value` is NaN when there was nothing to average):
//!
//! ```text
//! gold_{greedy,sampled}       mean gold score on eval_prompts (graded, in [0, 1])
//! exact_{greedy,sampled}      fraction of exact answers
//! win_rate_{greedy,sampled}   gold win rate of the model over M0, ties ½ (0.5 for M0 itself)
//! lc_win_rate_{greedy,sampled} length-controlled win rate (AlpacaEval 2.0: a logistic model of
//!                             the win on tanh(Δlen / sd(Δlen)), evaluated at Δlen = 0)
//! sampled_{grm,irm}_acc       the model's pointwise judge and IRM on pairs of its own sampled
//!                             responses to the held-out prompts (gold-labelled; what they face
//!                             in the iterations); sampled_{grm,irm,gold}_longer: how often
//!                             each prefers the longer of an unequal-length pair
//! length_{greedy,sampled}     mean response length in tokens (stop token excluded)
//! finished_{greedy,sampled}   fraction of responses that ended with EOS
//! irm_acc                     IRM accuracy on gold_pairs (p = ½ scores ½)
//! grm_acc                     accuracy of the GRM named by params.grm (pointwise default)
//! grm_pairwise_acc            pairwise judge, swap-averaged q
//! grm_pairwise_ab_acc         pairwise judge, one order only (a shown as A)
//! grm_pointwise_acc           pointwise judge, q = σ(Δ expected score / τ)
//! grm_flip_rate               pairwise verdict names the same position in both orders
//! consistency_rate            fraction of gold pairs the selection rule keeps (IRM vs grm)
//! consistent_acc              accuracy of the agreed label on those pairs
//! inconsistent_{irm,grm}_acc  accuracy of each reward model on the other pairs
//! ```
//!
//! `eval_labels` (stage `eval-labels@k`, optional) adds the metrics of [`labels`]: `own_*` and
//! `label_acc` at iteration k describe iteration k's generated pairs as the filter saw them
//! (judged by Mt−1); `trained_*` describe Mt on the pairs it was trained on. The report shows
//! both tables together.
//!

pub mod evaluate;
pub mod labels;
pub mod measure;
pub mod metrics;
pub mod tables;
