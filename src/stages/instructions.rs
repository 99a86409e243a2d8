//! `instructions`: a Self-Instruct-style JSONL file as a prompts table.
//!
//! Self-Instruct's seed tasks (`seed_tasks.jsonl`) and its user-oriented
//! instructions (`user_oriented_instructions.jsonl`) hold one task per line:
//! `{"id", "instruction", "instances": [{"input", "output"}, …], …}`. The
//! prompt of a task is its instruction, followed by a blank line and the
//! first instance's input when that input is not empty (the way the
//! Self-Instruct authors show a task to a model). Demonstration outputs are
//! never read: nothing here trains on them.
//!
//! `offset` and `limit` pick a contiguous range of tasks in file order; the
//! picked rows are split into `iterations` contiguous slices (`iteration`
//! 1..=N, as the `prompts` stage does), so `generate@k` takes slice k. The
//! file (relative to the pipeline file) is digested into the key.
//!
//! Writes [`prompts`](crate::tables::prompts) ([`InstructionRow`]: `id` is the 0-based line
//! number, `source_id` the task's `"id"`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::stage::{DeclaredTable, ParamError, Stage, TaskContext};
use crate::table::Table;
use crate::tables::prompts::InstructionRow;
use crate::user_err;
/// Between the instruction and the instance input.
const INPUT_SEPARATOR: &str = "\n\n";

/// Params of `instructions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstructionsParams {
    /// The JSONL file.
    pub path: PathBuf,
    /// Tasks skipped at the start of the file.
    #[serde(default)]
    pub offset: usize,
    /// At most this many tasks after `offset` (`null`: all).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Number of slices (the pipeline's iterations).
    #[serde(default = "one")]
    pub iterations: usize,
}

fn one() -> usize {
    1
}

/// One task of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// Line number in the file (0-based, blank lines not counted).
    pub line: usize,
    /// The task's `id` field.
    pub source_id: String,
    /// Instruction, plus the first instance's input when it has one.
    pub prompt: String,
}

#[derive(Deserialize)]
struct RawTask {
    id: Option<serde_json::Value>,
    instruction: String,
    #[serde(default)]
    instances: Vec<RawInstance>,
}

#[derive(Deserialize)]
struct RawInstance {
    #[serde(default)]
    input: String,
}

/// Every task of a Self-Instruct-style JSONL file, in file order.
pub fn read_self_instruct(path: &Path) -> anyhow::Result<Vec<Instruction>> {
    let shown = path.display();
    let expected =
        "a JSON object with an \"instruction\" string and optional \"instances\": [{\"input\": …}]";
    let mut out = Vec::new();
    for (_, task) in crate::jsonl::read::<RawTask>(path, "a Self-Instruct task", expected)? {
        let input = task.instances.first().map(|i| i.input.trim()).unwrap_or("");
        let instruction = task.instruction.trim();
        let prompt = if input.is_empty() {
            instruction.to_string()
        } else {
            format!("{instruction}{INPUT_SEPARATOR}{input}")
        };
        let source_id = match task.id {
            Some(serde_json::Value::String(s)) => s,
            Some(v) => v.to_string(),
            None => out.len().to_string(),
        };
        out.push(Instruction {
            line: out.len(),
            source_id,
            prompt,
        });
    }
    if out.is_empty() {
        anyhow::bail!(user_err!("{shown}: no tasks in the file"));
    }
    Ok(out)
}

/// The `instructions` stage.
pub struct Instructions;

impl Stage for Instructions {
    type Params = InstructionsParams;
    /// Bump when the output changes for the same file and params.
    const VERSION: u32 = 1;
    const TABLES: &'static [DeclaredTable] = &[InstructionRow::declared];

    fn validate(&self, p: &InstructionsParams) -> Result<(), ParamError> {
        if p.iterations == 0 {
            return Err(ParamError::at("iterations", "must be at least 1"));
        }
        if p.limit == Some(0) {
            return Err(ParamError::at(
                "limit",
                "must be at least 1 (or null for all)",
            ));
        }
        Ok(())
    }
    fn external_files(&self, p: &InstructionsParams) -> Vec<PathBuf> {
        vec![p.path.clone()]
    }
    fn run(&self, p: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let path = ctx.pipeline_dir.join(&p.path);
        let all = read_self_instruct(&path)?;
        let total = all.len();
        let picked: Vec<Instruction> = all
            .into_iter()
            .skip(p.offset)
            .take(p.limit.unwrap_or(usize::MAX))
            .collect();
        let n = picked.len();
        if n < p.iterations {
            anyhow::bail!(user_err!(
                "{}: {n} tasks (of {total}, offset {}) cannot fill {} iterations; lower `offset` \
                 or `iterations`, or raise `limit`",
                path.display(),
                p.offset,
                p.iterations
            ));
        }
        let per = n.div_ceil(p.iterations);
        let iterations = (0..n).map(|i| (i / per) as i32 + 1).collect();
        let rows = picked
            .into_iter()
            .map(|t| InstructionRow {
                id: t.line as i64,
                prompt: t.prompt,
                source_id: t.source_id,
            })
            .collect();
        let batch = InstructionRow::batch_at(iterations, rows)?;
        ctx.log(&format!(
            "{n} of {total} tasks from {} in {} slices",
            path.display(),
            p.iterations
        ));
        ctx.write_table(InstructionRow::NAME, &batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruction_and_first_input_make_the_prompt() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.jsonl");
        std::fs::write(
            &f,
            concat!(
                r#"{"id": "a", "instruction": "Say hi.", "instances": [{"input": "", "output": "hi"}]}"#,
                "\n\n",
                r#"{"id": "b", "instruction": " Add: ", "instances": [{"input": "1 + 2", "output": "3"}, {"input": "x"}]}"#,
                "\n"
            ),
        )
        .unwrap();
        let t = read_self_instruct(&f).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].line, t[0].source_id.as_str(), t[0].prompt.as_str()),
            (0, "a", "Say hi.")
        );
        assert_eq!((t[1].line, t[1].prompt.as_str()), (1, "Add:\n\n1 + 2"));
    }

    #[test]
    fn a_bad_line_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.jsonl");
        std::fs::write(&f, "{\"instruction\": \"ok\"}\n{\"prompt\": 1}\n").unwrap();
        let err = read_self_instruct(&f).unwrap_err().to_string();
        assert!(err.contains("t.jsonl:2:"), "{err}");
    }
}
