//! The tables the stages exchange: one module per table, each the one typed definition
//! (name, columns, schema, row) that its writer and every reader share.
//!
//! ```text
//! table              written by              read by
//! prompts            prompts, instructions,  generate, answers
//!                    world
//! responses          generate                score-irm, score-grm, consistency-filter, train,
//!                                            eval-labels
//! pairs              generate                score-irm, score-grm
//! generate_stats     generate                (SQL, report)
//! response_logps     score-irm               train
//! irm_pairs          score-irm               consistency-filter
//! grm_scores         score-grm               consistency-filter, train
//! judge_tokens       score-grm               train
//! judge_pairs        score-grm (meta)        train (`judge_pairs: true`)
//! filter_pairs       consistency-filter      train, consistency-filter@k+1, eval-labels
//! filter_summary     consistency-filter      (SQL, report)
//! cream_rewards,     consistency-filter      train (`method: cream`)
//!   cream_prompts
//! train_metrics      train                   (SQL, report)
//! sft_examples       sft-data                sft (its `data` input)
//! sft_metrics        sft                     (SQL)
//! rm_metrics,        train-rm                (SQL)
//!   rm_summary
//! answers            answers                 grm-winrate, export
//! grm_winrate_pairs  grm-winrate             (SQL)
//! grm_winrate        grm-winrate             (SQL, report)
//! ift, eft,          world                   sft; judge-data (judge_prompts)
//!   judge_prompts
//! judge_examples,    judge-data              sft (its `judge` input), train-rm
//!   meta_examples
//! preferences        demo-pairs,             train-rm, sft (their `judge` input)
//!                    preference-data
//! eval_prompts,      heldout                 eval
//!   gold_pairs
//! eval, eval_labels, eval, eval-labels       scir report
//!   eval_label_pairs,
//!   eval_responses,
//!   eval_pairs
//! ```
//!
//! A stage writes rows with [`crate::engine::stage::TaskContext::write_rows`] and reads an upstream
//! table with [`crate::engine::stage::InputArtifact::rows`]. Settings of the upstream stage (β, the
//! judge's mode and τ) are read from its params ([`crate::engine::stage::InputArtifact::params_as`]),
//! not from columns: the columns that repeat them (`irm_pairs.beta`, `grm_scores.tau`) are
//! there for SQL.
//!
//! Every table has `iteration Int32` first (not part of the row structs) and, in the public
//! view, an `arm` column added by the store.

pub mod answers;
pub mod cream;
pub mod eval;
pub mod filter_pairs;
pub mod filter_summary;
pub mod generate_stats;
pub mod grm_scores;
pub mod grm_winrate;
pub mod irm_pairs;
pub mod judge_examples;
pub mod judge_pairs;
pub mod judge_tokens;
pub mod pairs;
pub mod preferences;
pub mod prompts;
pub mod response_logps;
pub mod responses;
pub mod reward_model;
pub mod sft_examples;
pub mod sft_metrics;
pub mod train_metrics;
pub mod world;

/// `rows` by `key` (a later row replaces an earlier one with the same key).
pub fn keyed<T, K: Ord>(rows: Vec<T>, key: impl Fn(&T) -> K) -> std::collections::BTreeMap<K, T> {
    rows.into_iter().map(|r| (key(&r), r)).collect()
}
