//! Self-Instruct-style JSONL files: `{"id", "instruction", "instances": [{"input", "output"},
//! …], …}` per line, as Self-Instruct's seed tasks and user-oriented instructions hold them.
//! The prompt of a task is its instruction, followed by a blank line and the first instance's
//! input when that input is not empty (the way the Self-Instruct authors show a task to a
//! model); the first instance's output is the task's demonstration. `instructions` reads the
//! prompts only; `demo-pairs` reads the demonstrations too.

use std::path::Path;

use serde::Deserialize;

use crate::user_err;

/// Between the instruction and the instance input.
const INPUT_SEPARATOR: &str = "\n\n";

/// One task of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// Line number in the file (0-based, blank lines not counted).
    pub line: usize,
    /// The task's `id` field.
    pub source_id: String,
    /// Instruction, plus the first instance's input when it has one.
    pub prompt: String,
    /// The first instance's output: the task author's demonstration (`""` when none).
    pub demonstration: String,
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
    #[serde(default)]
    output: String,
}

/// Every task of a Self-Instruct-style JSONL file, in file order.
pub fn read_self_instruct(path: &Path) -> anyhow::Result<Vec<Instruction>> {
    let shown = path.display();
    let expected = "a JSON object with an \"instruction\" string and optional \"instances\": [{\"input\": …, \"output\": …}]";
    let mut out = Vec::new();
    for (_, task) in crate::jsonl::read::<RawTask>(path, "a Self-Instruct task", expected)? {
        let first = task.instances.first();
        let input = first.map(|i| i.input.trim()).unwrap_or("");
        let demonstration = first
            .map(|i| i.output.trim().to_string())
            .unwrap_or_default();
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
            demonstration,
        });
    }
    if out.is_empty() {
        anyhow::bail!(user_err!("{shown}: no tasks in the file"));
    }
    Ok(out)
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
        assert_eq!(
            (t[0].demonstration.as_str(), t[1].demonstration.as_str()),
            ("hi", "3")
        );
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
