//! `preference-data`: a user's preference file in TRL's conventions as a `preferences`
//! table: judge seed data for `sft` (each pair becomes two pairwise judge examples, rendered
//! through the judge template with the verdict naming `chosen`), and training pairs for
//! `train-rm`.
//!
//! The file (relative to the pipeline file, digested into the key) is JSON Lines, Parquet or
//! CSV ([`common::records`]); each record is TRL's preference form with an explicit prompt
//! (extra fields are ignored):
//!
//! ```text
//! standard        {"prompt": "…", "chosen": "…", "rejected": "…"}
//! conversational  {"prompt": [{"role": "user", "content": …}],
//!                  "chosen": [{"role": "assistant", …}], "rejected": [{"role": "assistant", …}]}
//! ```
//!
//! A conversational prompt must be one user message (a judge is shown one question), and
//! each reply one assistant message. Both replies count as finished (EOS follows them when
//! `train-rm` encodes them). A pair whose replies are equal is a user error.
//!
//! Writes [`preferences`](crate::tables::preferences).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::common::records::{self, Record};
use super::common::trl::Turns;
use crate::engine::stage::{DeclaredTable, Stage, TaskContext};
use crate::table::Table;
use crate::tables::preferences::PreferenceRow;
use crate::user_err;

/// Params of `preference-data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreferenceDataParams {
    /// The preference file.
    pub path: PathBuf,
}

/// The `preference-data` stage.
pub struct PreferenceData;

impl Stage for PreferenceData {
    type Params = PreferenceDataParams;
    /// Bump when the output changes for the same file and params.
    const VERSION: u32 = 1;
    const TABLES: &'static [DeclaredTable] = &[PreferenceRow::declared];

    fn external_files(&self, p: &PreferenceDataParams) -> Vec<PathBuf> {
        vec![p.path.clone()]
    }
    fn run(&self, p: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let path = ctx.pipeline_dir.join(&p.path);
        let rows = records::read(&path)?
            .iter()
            .enumerate()
            .map(|(i, r)| pair(i as i64, r))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if rows.is_empty() {
            anyhow::bail!(user_err!(
                "{}: no preference pair in the file; add records {{\"prompt\", \"chosen\", \"rejected\"}}",
                path.display()
            ));
        }
        ctx.log(&format!("{} pairs from {}", rows.len(), path.display()));
        ctx.write_rows(rows)
    }
}

/// A TRL preference record (extra fields ignored).
#[derive(Deserialize)]
struct TrlPair {
    prompt: Turns,
    chosen: Turns,
    rejected: Turns,
}

const EXPECTED: &str = "{\"prompt\", \"chosen\", \"rejected\"}: three strings, or a user \
                        message and two assistant messages";

/// The preference row of record `i`.
fn pair(i: i64, r: &Record) -> anyhow::Result<PreferenceRow> {
    let at = r.at.as_str();
    let rec: TrlPair = serde_json::from_value(r.value.clone())
        .map_err(|e| user_err!("{at}: not a TRL preference record ({e}); expected {EXPECTED}"))?;
    let prompt = rec.prompt.single(at, "prompt", "user")?;
    let chosen = rec.chosen.single(at, "chosen", "assistant")?;
    let rejected = rec.rejected.single(at, "rejected", "assistant")?;
    if prompt.trim().is_empty() {
        anyhow::bail!(user_err!("{at}: the prompt is empty"));
    }
    if chosen == rejected {
        anyhow::bail!(user_err!(
            "{at}: chosen and rejected are the same text; a pair must differ"
        ));
    }
    Ok(PreferenceRow {
        id: i,
        prompt_id: i,
        prompt,
        chosen,
        rejected,
        chosen_finished: true,
        rejected_finished: true,
        source: at.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: serde_json::Value) -> Record {
        Record {
            at: "p.jsonl:4".into(),
            value: v,
        }
    }

    #[test]
    fn standard_and_conversational_pairs_read_alike() {
        let std = rec(serde_json::json!({ "prompt": "2+2?", "chosen": "4", "rejected": "5" }));
        let conv = rec(serde_json::json!({
            "prompt": [{ "role": "user", "content": "2+2?" }],
            "chosen": [{ "role": "assistant", "content": "4" }],
            "rejected": [{ "role": "assistant", "content": "5" }],
            "score_chosen": 9.0,
        }));
        let (a, b) = (pair(3, &std).unwrap(), pair(3, &conv).unwrap());
        assert_eq!(a, b);
        assert_eq!((a.id, a.source.as_str()), (3, "p.jsonl:4"));
    }

    #[test]
    fn bad_pairs_are_user_errors_that_say_where() {
        let cases = [
            (
                serde_json::json!({ "prompt": "q", "chosen": "a" }),
                "missing field `rejected`",
            ),
            (
                serde_json::json!({ "prompt": "q", "chosen": "a", "rejected": "a" }),
                "the same text",
            ),
            (
                serde_json::json!({
                    "prompt": [{ "role": "system", "content": "s" }, { "role": "user", "content": "q" }],
                    "chosen": "a", "rejected": "b",
                }),
                "\"prompt\" must be one user message",
            ),
        ];
        for (v, want) in cases {
            let err = pair(0, &rec(v)).unwrap_err().to_string();
            assert!(err.contains("p.jsonl:4") && err.contains(want), "{err}");
        }
    }
}
