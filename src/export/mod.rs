//! Model answers for external judges: FastChat's MT-Bench and AlpacaEval; what the arms
//! trained on as TRL preference datasets ([`preferences`]); and the arms' greedy answers as
//! TRL conversational SFT datasets ([`sft`]).
//!
//! A model (one iteration of one arm, or any Hugging Face directory) answers
//! a benchmark's questions — greedy by default, so the file is the same
//! bytes on every run — and the answers are written in the format the
//! benchmark's own tools read:
//!
//! ```text
//! mt-bench     OUT/model_answer/<model_id>.jsonl, one line per question, in file order:
//!              {"question_id": <as in question.jsonl>, "answer_id": "<22 hex, BLAKE3 of the
//!               content>", "model_id": "<model_id>", "choices": [{"index": 0, "turns": [a1, a2]}]}
//!              FastChat (fastchat/llm_judge/common.py `load_model_answers`) takes the model
//!              name from the file name, keys answers by "question_id", and its judges read
//!              answer["choices"][0]["turns"][0] and [1]. Turn 2 is answered with the
//!              question's turn 1 and the model's own answer to it in context, as FastChat's
//!              gen_model_answer.py does. No "tstamp" (it would change every run; nothing
//!              that reads answers uses it).
//! alpaca-eval  OUT/<model_id>/model_outputs.json, a JSON list in file order:
//!              [{"instruction": …, "output": …, "generator": "<model_id>", "dataset": …}]
//!              AlpacaEval (alpaca_eval/main.py `evaluate`) reads a JSON list of records
//!              with pandas; the judge prompt uses "instruction" and "output", the model's
//!              name comes from "generator". Compare two exports with
//!              `alpaca_eval --model_outputs Mt.json --reference_outputs M0.json`.
//! ```
//!
//! Questions: MT-Bench's `question.jsonl` (`question_id`, `category`, `turns`); for
//! AlpacaEval any Self-Instruct-style file (default: the 252 user-oriented instructions;
//! the instruction includes the first instance's input, as the `instructions` stage
//! builds it). Files are written atomically (a temporary file renamed into place).

pub mod preferences;
pub mod sft;

use std::path::{Path, PathBuf};

use arrow::array::{Int32Array, StringArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::model::{Message, Model};
use crate::stages::common::answering::{AnswerSettings, answer_chats};
use crate::stages::common::self_instruct::Instruction;
use crate::user_err;

/// Characters of `answer_id` (as long as FastChat's shortuuid ids).
const ANSWER_ID_CHARS: usize = 22;
/// AlpacaEval's `dataset` value for exported Self-Instruct-style instructions.
pub const ALPACA_DATASET: &str = "self-instruct-user-oriented";

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// FastChat MT-Bench: model_answer/<model_id>.jsonl.
    MtBench,
    /// AlpacaEval: <model_id>/model_outputs.json.
    AlpacaEval,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::MtBench => "mt-bench",
            Format::AlpacaEval => "alpaca-eval",
        }
    }
}

/// One MT-Bench question.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MtBenchQuestion {
    /// Kept as written (an integer in MT-Bench).
    pub question_id: serde_json::Value,
    #[serde(default)]
    pub category: Option<String>,
    pub turns: Vec<String>,
}

/// Every question of an MT-Bench `question.jsonl`, in file order.
pub fn read_mt_bench(path: &Path) -> anyhow::Result<Vec<MtBenchQuestion>> {
    let shown = path.display();
    let expected = "a JSON object with \"question_id\" and \"turns\": [..]";
    let mut out = Vec::new();
    for (line, q) in crate::jsonl::read::<MtBenchQuestion>(path, "an MT-Bench question", expected)?
    {
        if q.turns.is_empty() {
            anyhow::bail!(user_err!("{shown}:{line}: \"turns\" is empty"));
        }
        out.push(q);
    }
    if out.is_empty() {
        anyhow::bail!(user_err!("{shown}: no questions in the file"));
    }
    Ok(out)
}

/// Answer every turn of every question; turn j sees turns < j and the model's answers.
/// `progress` counts answered turns.
pub fn answer_mt_bench(
    model: &Model,
    questions: &[MtBenchQuestion],
    s: &AnswerSettings,
    progress: &mut dyn FnMut(u64),
) -> anyhow::Result<Vec<Vec<String>>> {
    let mut answers: Vec<Vec<String>> = vec![Vec::new(); questions.len()];
    let max_turns = questions.iter().map(|q| q.turns.len()).max().unwrap_or(0);
    for turn in 0..max_turns {
        let open: Vec<usize> = (0..questions.len())
            .filter(|&i| questions[i].turns.len() > turn)
            .collect();
        let chats: Vec<Vec<Message>> = open
            .iter()
            .map(|&i| conversation(&questions[i].turns[..=turn], &answers[i]))
            .collect();
        // Row seeds (sampling only) differ per question and turn.
        let ids: Vec<i64> = open
            .iter()
            .map(|&i| (i * max_turns + turn) as i64)
            .collect();
        let out = answer_chats(model, &chats, &ids, s, progress)?;
        for (&i, a) in open.iter().zip(out) {
            answers[i].push(a.text.trim().to_string());
        }
    }
    Ok(answers)
}

/// User turns interleaved with the assistant's earlier answers (one fewer than turns).
fn conversation(turns: &[String], answers: &[String]) -> Vec<Message> {
    let mut m = Vec::with_capacity(2 * turns.len());
    for (j, t) in turns.iter().enumerate() {
        m.push(Message::user(t.clone()));
        if let Some(a) = answers.get(j).filter(|_| j + 1 < turns.len()) {
            m.push(Message::assistant(a.clone()));
        }
    }
    m
}

/// Answer each instruction once; `progress` counts answers.
pub fn answer_instructions(
    model: &Model,
    instructions: &[Instruction],
    s: &AnswerSettings,
    progress: &mut dyn FnMut(u64),
) -> anyhow::Result<Vec<String>> {
    let chats: Vec<Vec<Message>> = instructions
        .iter()
        .map(|t| vec![Message::user(t.prompt.clone())])
        .collect();
    let ids: Vec<i64> = instructions.iter().map(|t| t.line as i64).collect();
    Ok(answer_chats(model, &chats, &ids, s, progress)?
        .into_iter()
        .map(|a| a.text.trim().to_string())
        .collect())
}

/// One line of FastChat's `model_answer/<model_id>.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MtBenchAnswer {
    pub question_id: serde_json::Value,
    pub answer_id: String,
    pub model_id: String,
    pub choices: Vec<MtBenchChoice>,
}

/// One choice (scir writes one, index 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MtBenchChoice {
    pub index: u32,
    pub turns: Vec<String>,
}

/// One record of AlpacaEval's `model_outputs.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlpacaOutput {
    pub instruction: String,
    pub output: String,
    pub generator: String,
    pub dataset: String,
}

/// The JSONL text of an MT-Bench answer file.
pub fn mt_bench_jsonl(
    model_id: &str,
    questions: &[MtBenchQuestion],
    answers: &[Vec<String>],
) -> anyhow::Result<String> {
    let mut out = String::new();
    for (q, turns) in questions.iter().zip(answers) {
        let mut h = blake3::Hasher::new();
        h.update(b"scir.export.mt-bench.v1\0");
        h.update(model_id.as_bytes());
        h.update(b"\0");
        h.update(q.question_id.to_string().as_bytes());
        for t in turns {
            h.update(b"\0");
            h.update(t.as_bytes());
        }
        let line = MtBenchAnswer {
            question_id: q.question_id.clone(),
            answer_id: h.finalize().to_hex()[..ANSWER_ID_CHARS].to_string(),
            model_id: model_id.to_string(),
            choices: vec![MtBenchChoice {
                index: 0,
                turns: turns.clone(),
            }],
        };
        out.push_str(&serde_json::to_string(&line)?);
        out.push('\n');
    }
    Ok(out)
}

/// The JSON text of an AlpacaEval `model_outputs.json`.
pub fn alpaca_eval_json(
    model_id: &str,
    instructions: &[Instruction],
    outputs: &[String],
) -> anyhow::Result<String> {
    let records: Vec<AlpacaOutput> = instructions
        .iter()
        .zip(outputs)
        .map(|(t, o)| AlpacaOutput {
            instruction: t.prompt.clone(),
            output: o.clone(),
            generator: model_id.to_string(),
            dataset: ALPACA_DATASET.to_string(),
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&records)?;
    s.push('\n');
    Ok(s)
}

/// Where a format's file goes under `out`.
pub fn output_path(format: Format, out: &Path, model_id: &str) -> PathBuf {
    match format {
        Format::MtBench => out.join("model_answer").join(format!("{model_id}.jsonl")),
        Format::AlpacaEval => out.join(model_id).join("model_outputs.json"),
    }
}

/// Write `text` to `path` atomically (parent directories created).
pub fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| user_err!("{}: not a file path", path.display()))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| user_err!("{}: cannot create ({e})", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        user_err!("{}: cannot write ({e})", path.display())
    })?;
    Ok(())
}

/// `s` as an SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The arms of `table` in the public view of `artifacts` (only `only`, when given: a user
/// error unless the table has it).
fn arms(artifacts: &Path, table: &str, only: Option<&str>) -> anyhow::Result<Vec<String>> {
    let q = format!("SELECT DISTINCT arm FROM \"{table}\" ORDER BY arm");
    let (batches, _) = crate::sql::query(artifacts, &q).map_err(|e| {
        user_err!(
            "{}: no {table} table to export from: {e:#}",
            artifacts.display()
        )
    })?;
    let mut all = Vec::new();
    for b in &batches {
        let col = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
        let col = col
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| crate::internal_err!("arm cast to Utf8 is no string array"))?;
        all.extend(col.iter().flatten().map(str::to_string));
    }
    match only {
        Some(a) if all.iter().any(|x| x == a) => Ok(vec![a.to_string()]),
        Some(a) => Err(user_err!(
            "--arm {a:?}: {}'s {table} has arms {} only",
            artifacts.display(),
            all.join(", ")
        )
        .into()),
        None => Ok(all),
    }
}

/// The iterations of `arm` in `table` of the public view, ascending.
fn iterations(artifacts: &Path, table: &str, arm: &str) -> anyhow::Result<Vec<i32>> {
    let q = format!(
        "SELECT DISTINCT iteration FROM \"{table}\" WHERE arm = {} ORDER BY 1",
        literal(arm)
    );
    let mut out = Vec::new();
    for b in &crate::sql::query(artifacts, &q)?.0 {
        let ks = crate::table::typed_column::<Int32Array>(b, crate::table::ITERATION_COLUMN)?;
        out.extend(ks.values().iter().copied());
    }
    Ok(out)
}

/// [`crate::table::write`] into a temporary file renamed to `path` (parent directories
/// created).
fn write_parquet_atomic(path: &Path, batch: &RecordBatch) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| user_err!("{}: cannot create ({e})", dir.display()))?;
    }
    let tmp = path.with_extension(format!("parquet.tmp-{}", std::process::id()));
    let result = crate::table::write(&tmp, std::slice::from_ref(batch))
        .and_then(|_| Ok(std::fs::rename(&tmp, path)?));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| user_err!("{}: cannot write ({e:#})", path.display()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_two_sees_turn_one_and_its_answer() {
        let turns = vec!["q1".to_string(), "q2".to_string()];
        let m = conversation(&turns, &["a1".to_string()]);
        let roles: Vec<(&str, &str)> = m
            .iter()
            .map(|m| (m.role.as_str(), m.content.as_str()))
            .collect();
        assert_eq!(roles, [("user", "q1"), ("assistant", "a1"), ("user", "q2")]);
        assert_eq!(conversation(&turns[..1], &[]).len(), 1);
    }
}
