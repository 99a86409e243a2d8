//! `scir export --sft`: each arm's greedy answers (the `answers` stage's table, or `--table`
//! for another answers table of the public view) as TRL conversational SFT datasets.
//!
//! ```text
//! OUT/<arm>/iter-<k>.parquet   one split per iteration: iteration, messages ([{role: user,
//! OUT/<arm>/iter-<k>.jsonl     content: prompt}, {role: assistant, content: answer}], TRL's
//!                              conversational form), prompt_id, finished
//! ```
//!
//! The answer is the model's text trimmed of surrounding white space (the chat template adds
//! its own end of turn). An answer that ran out of `max_new_tokens` is kept with
//! `finished: false`; drop such rows with `dataset.filter(lambda r: r["finished"])` before
//! training on them. Where the answers stage was greedy (its default) the file is the same
//! bytes on every run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, ListBuilder, StringBuilder, StructBuilder,
};
use arrow::datatypes::{DataType, Field, Fields, Schema};
use arrow::record_batch::RecordBatch;

use super::{literal, write_parquet_atomic};
use crate::model::Message;

/// The answers table exported by default.
pub const DEFAULT_TABLE: &str = "answers";

crate::table! {
    /// One answer as the export reads it from the public view.
    pub struct AnswerTextRow in "answer_texts" {
        prompt_id: i64,
        prompt: String,
        text: String,
        finished: bool,
    }
}

/// One exported example: the conversation and scir's columns.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SftRecord {
    pub messages: Vec<Message>,
    pub iteration: i32,
    pub prompt_id: i64,
    pub finished: bool,
}

impl SftRecord {
    fn new(k: i32, r: &AnswerTextRow) -> Self {
        SftRecord {
            messages: vec![
                Message::user(r.prompt.clone()),
                Message::assistant(r.text.trim()),
            ],
            iteration: k,
            prompt_id: r.prompt_id,
            finished: r.finished,
        }
    }
}

/// `arm`'s answers in `table`, by iteration.
fn answers(
    artifacts: &Path,
    table: &str,
    arm: &str,
) -> anyhow::Result<BTreeMap<i32, Vec<AnswerTextRow>>> {
    let q = format!(
        "SELECT iteration, prompt_id, prompt, text, finished FROM \"{table}\" \
         WHERE arm = {} ORDER BY iteration, prompt_id",
        literal(arm)
    );
    let mut out: BTreeMap<i32, Vec<AnswerTextRow>> = BTreeMap::new();
    for (k, row) in crate::sql::query_rows::<AnswerTextRow>(artifacts, &q)? {
        out.entry(k).or_default().push(row);
    }
    Ok(out)
}

/// The JSON Lines text of `records`.
pub fn jsonl(records: &[SftRecord]) -> anyhow::Result<String> {
    let mut s = String::new();
    for r in records {
        s.push_str(&serde_json::to_string(r)?);
        s.push('\n');
    }
    Ok(s)
}

/// `records` as one Arrow batch: `messages` a list of `{role, content}` structs.
pub fn batch(records: &[SftRecord]) -> anyhow::Result<RecordBatch> {
    let message_fields = Fields::from(vec![
        Field::new("role", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
    ]);
    let item = Field::new("item", DataType::Struct(message_fields.clone()), false);
    let mut messages = ListBuilder::new(StructBuilder::from_fields(message_fields, 0))
        .with_field(Arc::new(item.clone()));
    for r in records {
        let s = messages.values();
        for m in &r.messages {
            for (i, v) in [&m.role, &m.content].into_iter().enumerate() {
                s.field_builder::<StringBuilder>(i)
                    .ok_or_else(|| crate::internal_err!("message field {i} is no string"))?
                    .append_value(v);
            }
            s.append(true);
        }
        messages.append(true);
    }
    let schema = Schema::new(vec![
        Field::new(crate::table::ITERATION_COLUMN, DataType::Int32, false),
        Field::new("messages", DataType::List(Arc::new(item)), false),
        Field::new("prompt_id", DataType::Int64, false),
        Field::new("finished", DataType::Boolean, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(
            records.iter().map(|r| r.iteration),
        )),
        Arc::new(messages.finish()),
        Arc::new(Int64Array::from_iter_values(
            records.iter().map(|r| r.prompt_id),
        )),
        Arc::new(BooleanArray::from_iter(
            records.iter().map(|r| Some(r.finished)),
        )),
    ];
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

/// Write every arm's (or `only`'s) answers of `table` under `out`; the files written.
pub fn export(
    artifacts: &Path,
    table: &str,
    only: Option<&str>,
    out: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    if table.is_empty() || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        anyhow::bail!(crate::user_err!(
            "--table {table:?}: a table name of the public view (letters, digits, '_'); \
             `scir sql \"SHOW TABLES\"` lists them"
        ));
    }
    let mut written = Vec::new();
    for arm in &super::arms(artifacts, table, only)? {
        for (k, rows) in answers(artifacts, table, arm)? {
            let records: Vec<SftRecord> = rows.iter().map(|r| SftRecord::new(k, r)).collect();
            let base = out.join(arm).join(format!("iter-{k}"));
            let jsonl_path = base.with_extension("jsonl");
            super::write_atomic(&jsonl_path, &jsonl(&records)?)?;
            let parquet_path = base.with_extension("parquet");
            write_parquet_atomic(&parquet_path, &batch(&records)?)?;
            written.extend([parquet_path, jsonl_path]);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, ListArray, StructArray};

    #[test]
    fn an_answer_becomes_a_user_and_an_assistant_message() {
        let row = AnswerTextRow {
            prompt_id: 7,
            prompt: "Say hi.".into(),
            text: " Hi!\n".into(),
            finished: true,
        };
        let r = SftRecord::new(2, &row);
        let line = jsonl(std::slice::from_ref(&r)).unwrap();
        assert_eq!(
            line,
            "{\"messages\":[{\"role\":\"user\",\"content\":\"Say hi.\"},{\"role\":\"assistant\",\
             \"content\":\"Hi!\"}],\"iteration\":2,\"prompt_id\":7,\"finished\":true}\n"
        );
        let b = batch(&[r.clone(), r]).unwrap();
        assert_eq!(b.num_rows(), 2);
        let list = b.column(1).as_any().downcast_ref::<ListArray>().unwrap();
        let first = list.value(0);
        let msgs = first.as_any().downcast_ref::<StructArray>().unwrap();
        assert_eq!(msgs.len(), 2);
        let msgs = RecordBatch::from(msgs.clone());
        let content =
            crate::table::typed_column::<arrow::array::StringArray>(&msgs, "content").unwrap();
        assert_eq!(content.value(1), "Hi!");
    }
}
