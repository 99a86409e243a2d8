//! `demo-pairs`: preference pairs for an external reward model on real prompts — a
//! Self-Instruct task's demonstration (written by the task's author) chosen over a model's
//! own answer to the same task.
//!
//! This is SPIN's premise (Chen et al., 2024, "Self-Play Fine-Tuning Converts Weak Language
//! Models to Strong Language Models"): a human demonstration is preferred to the model's
//! sample. No human preference labels for real prompts are at hand here, so this is the
//! preference data scir can build honestly from what is: a reward model trained on it learns
//! "reads like the task's author", shortcuts included (a demonstration always ends; an answer
//! cut by `max_new_tokens` does not — give the answers room to finish).
//!
//! Input `answers`: an `answers` table (usually M0's, greedy) on tasks of the same file, e.g.
//! `instructions` with an `offset` that keeps them apart from the loop's prompts. An answer's
//! `prompt_id` is its task's line number ([`super::common::self_instruct`]); its prompt must
//! be that task's prompt, else the answers came from another file (a user error). A task
//! without a demonstration, or whose answer is its demonstration, gives no pair. The file
//! (relative to the pipeline file) is digested into the key.
//!
//! Writes [`preferences`](crate::tables::preferences).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::common::self_instruct::{Instruction, read_self_instruct};
use crate::engine::stage::{DeclaredTable, Slot, Stage, TaskContext};
use crate::table::Table;
use crate::tables::answers::AnswerRow;
use crate::tables::preferences::PreferenceRow;
use crate::user_err;

/// Params of `demo-pairs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoPairsParams {
    /// The Self-Instruct-style JSONL file the answers' prompts came from.
    pub path: PathBuf,
}

/// The `demo-pairs` stage.
pub struct DemoPairs;

impl Stage for DemoPairs {
    type Params = DemoPairsParams;
    /// Bump when the output changes for the same inputs and params.
    const VERSION: u32 = 1;
    const INPUTS: &'static [Slot] = &[Slot::tables("answers")];
    const TABLES: &'static [DeclaredTable] = &[PreferenceRow::declared];

    fn external_files(&self, p: &DemoPairsParams) -> Vec<PathBuf> {
        vec![p.path.clone()]
    }
    fn run(&self, p: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let path = ctx.pipeline_dir.join(&p.path);
        let tasks = read_self_instruct(&path)?;
        let answers: Vec<AnswerRow> = ctx.input("answers")?.rows()?;
        let n = answers.len();
        let mut rows = Vec::new();
        for answer in answers {
            let task = task_of(&tasks, &answer, &path)?;
            if let Some(row) = pair(task, answer) {
                rows.push(row);
            }
        }
        if rows.is_empty() {
            anyhow::bail!(user_err!(
                "{}: none of the {n} answers gives a pair (their tasks have no demonstration, \
                 or the answers equal them)",
                ctx.task
            ));
        }
        ctx.log(&format!("{} pairs from {n} answers", rows.len()));
        ctx.write_rows(rows)
    }
}

/// The task `answer` answers: the file's line `prompt_id`, with the same prompt.
fn task_of<'t>(
    tasks: &'t [Instruction],
    answer: &AnswerRow,
    path: &std::path::Path,
) -> anyhow::Result<&'t Instruction> {
    let id = answer.prompt_id;
    let task = usize::try_from(id).ok().and_then(|i| tasks.get(i));
    match task {
        Some(t) if t.prompt == answer.prompt => Ok(t),
        _ => Err(user_err!(
            "{}: the answer to prompt {id} does not answer line {id} of the file ({} tasks): \
             bind `answers` to answers of an `instructions` stage that reads this file",
            path.display(),
            tasks.len()
        )
        .into()),
    }
}

/// The pair of one answered task: its demonstration over the answer.
fn pair(task: &Instruction, answer: AnswerRow) -> Option<PreferenceRow> {
    let demonstration = task.demonstration.trim();
    if demonstration.is_empty() || demonstration == answer.text.trim() {
        return None;
    }
    Some(PreferenceRow {
        id: answer.prompt_id,
        prompt_id: answer.prompt_id,
        prompt: answer.prompt,
        chosen: demonstration.to_string(),
        rejected: answer.text,
        chosen_finished: true,
        rejected_finished: answer.finished,
        source: task.source_id.clone(),
    })
}
