//! `sft-data`: a user's SFT data file as `sft`'s examples, in TRL's dataset conventions.
//!
//! The file (relative to the pipeline file, digested into the key) is JSON Lines, Parquet or
//! CSV ([`common::records`]). With `format: trl` (the default) each record is one of TRL's
//! SFT forms (extra fields are ignored):
//!
//! ```text
//! conversational  {"messages": [{"role": "system"|"user"|"assistant", "content": …}, …]}
//!                 one example per assistant message: the conversation before it is the
//!                 prompt, the message the completion
//! prompt-completion, conversational
//!                 {"prompt": [messages…], "completion": [{"role": "assistant", …}]}
//! prompt-completion, standard
//!                 {"prompt": "…", "completion": "…"}   plain text, no chat template
//! ```
//!
//! `format: self-instruct` reads a Self-Instruct-style file instead
//! ([`common::self_instruct`]): each task's prompt as the user message, its demonstration as
//! the completion (tasks without one are skipped).
//!
//! `sft` renders conversational examples through the model's chat template and trains on the
//! completion's tokens only: TRL's default for prompt-completion data. For `messages`, TRL's
//! default loss covers the whole conversation and its `assistant_only_loss` the assistant
//! turns; scir trains the assistant turns (one example per turn, with the turns before it as
//! context: the same tokens `assistant_only_loss` trains), never the user's words.
//!
//! Writes [`sft_examples`](crate::tables::sft_examples).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::common::records::{self, Record};
use super::common::self_instruct::read_self_instruct;
use super::common::trl::{TrlMessage, Turns};
use crate::engine::stage::{DeclaredTable, Stage, TaskContext};
use crate::model::Message;
use crate::table::Table;
use crate::tables::sft_examples::SftExampleRow;
use crate::user_err;

/// What the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SftFormat {
    /// TRL's SFT dataset forms (`messages`, or `prompt` + `completion`).
    #[default]
    Trl,
    /// Self-Instruct tasks: prompt → the task's demonstration.
    SelfInstruct,
}

/// Params of `sft-data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftDataParams {
    /// The data file.
    pub path: PathBuf,
    /// What the file holds.
    #[serde(default)]
    pub format: SftFormat,
}

/// The `sft-data` stage.
pub struct SftData;

impl Stage for SftData {
    type Params = SftDataParams;
    /// Bump when the output changes for the same file and params.
    const VERSION: u32 = 1;
    const TABLES: &'static [DeclaredTable] = &[SftExampleRow::declared];

    fn external_files(&self, p: &SftDataParams) -> Vec<PathBuf> {
        vec![p.path.clone()]
    }
    fn run(&self, p: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let path = ctx.pipeline_dir.join(&p.path);
        let examples = match p.format {
            SftFormat::Trl => trl_examples(&records::read(&path)?)?,
            SftFormat::SelfInstruct => self_instruct_examples(&path)?,
        };
        if examples.is_empty() {
            anyhow::bail!(user_err!(
                "{}: no SFT example in the file; with `format: trl` each record holds \
                 `messages` or `prompt` and `completion`, with `format: self-instruct` each \
                 task an instance with an `output`",
                path.display()
            ));
        }
        ctx.log(&format!(
            "{} examples from {}",
            examples.len(),
            path.display()
        ));
        let rows = examples
            .into_iter()
            .enumerate()
            .map(|(i, e)| e.row(i as i64))
            .collect::<anyhow::Result<Vec<_>>>()?;
        ctx.write_rows(rows)
    }
}

/// One example before it gets its id.
struct Example {
    record: i64,
    turn: i32,
    prompt: Prompt,
    completion: String,
}

enum Prompt {
    Messages(Vec<Message>),
    Text(String),
}

impl Example {
    fn row(self, id: i64) -> anyhow::Result<SftExampleRow> {
        let (conversational, prompt) = match self.prompt {
            Prompt::Messages(m) => (true, serde_json::to_string(&m)?),
            Prompt::Text(t) => (false, t),
        };
        Ok(SftExampleRow {
            id,
            record: self.record,
            turn: self.turn,
            conversational,
            prompt,
            completion: self.completion,
        })
    }
}

/// A TRL record (extra fields ignored).
#[derive(Deserialize)]
struct TrlRecord {
    messages: Option<Vec<TrlMessage>>,
    prompt: Option<Turns>,
    completion: Option<Turns>,
}

const ROLES: [&str; 3] = ["system", "user", "assistant"];
const ASSISTANT: &str = "assistant";
const EXPECTED: &str = "{\"messages\": [{\"role\", \"content\"}, …]}, or {\"prompt\", \
                        \"completion\"} (both text, or both lists of messages)";

/// The examples of TRL records, in file order.
fn trl_examples(records: &[Record]) -> anyhow::Result<Vec<Example>> {
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let rec: TrlRecord = serde_json::from_value(r.value.clone())
            .map_err(|e| user_err!("{}: not a TRL SFT record ({e}); expected {EXPECTED}", r.at))?;
        let record = i as i64;
        match (rec.messages, rec.prompt, rec.completion) {
            (Some(m), None, None) => out.extend(conversation(&r.at, record, m)?),
            (None, Some(Turns::Text(prompt)), Some(Turns::Text(completion))) => out.push(Example {
                record,
                turn: 0,
                prompt: Prompt::Text(prompt),
                completion: nonempty(&r.at, completion)?,
            }),
            (None, Some(Turns::Messages(prompt)), Some(Turns::Messages(completion))) => {
                out.push(prompt_completion(&r.at, record, prompt, completion)?)
            }
            _ => anyhow::bail!(user_err!("{}: expected {EXPECTED}", r.at)),
        }
    }
    Ok(out)
}

/// One example per assistant message of a `messages` record.
fn conversation(at: &str, record: i64, m: Vec<TrlMessage>) -> anyhow::Result<Vec<Example>> {
    let messages = checked(at, m)?;
    let mut out = Vec::new();
    for (i, msg) in messages.iter().enumerate() {
        if msg.role != ASSISTANT {
            continue;
        }
        if i == 0 {
            anyhow::bail!(user_err!(
                "{at}: the conversation opens with an assistant message; a reply needs a \
                 message before it"
            ));
        }
        out.push(Example {
            record,
            turn: out.len() as i32,
            prompt: Prompt::Messages(messages[..i].to_vec()),
            completion: nonempty(at, msg.content.clone())?,
        });
    }
    if out.is_empty() {
        anyhow::bail!(user_err!(
            "{at}: the conversation has no assistant message to train on"
        ));
    }
    Ok(out)
}

/// A conversational prompt-completion record: the completion is one assistant message.
fn prompt_completion(
    at: &str,
    record: i64,
    prompt: Vec<TrlMessage>,
    completion: Vec<TrlMessage>,
) -> anyhow::Result<Example> {
    let prompt = checked(at, prompt)?;
    let reply = match checked(at, completion)?.as_slice() {
        [m] if m.role == ASSISTANT => m.content.clone(),
        _ => anyhow::bail!(user_err!(
            "{at}: \"completion\" must be one assistant message"
        )),
    };
    if prompt.is_empty() {
        anyhow::bail!(user_err!("{at}: \"prompt\" has no message"));
    }
    Ok(Example {
        record,
        turn: 0,
        prompt: Prompt::Messages(prompt),
        completion: nonempty(at, reply)?,
    })
}

/// Messages with known roles.
fn checked(at: &str, m: Vec<TrlMessage>) -> anyhow::Result<Vec<Message>> {
    m.into_iter()
        .map(|m| {
            if !ROLES.contains(&m.role.as_str()) {
                anyhow::bail!(user_err!(
                    "{at}: unknown role {:?}; roles are {}",
                    m.role,
                    ROLES.join(", ")
                ));
            }
            Ok(Message {
                role: m.role,
                content: m.content,
            })
        })
        .collect()
}

fn nonempty(at: &str, completion: String) -> anyhow::Result<String> {
    if completion.trim().is_empty() {
        anyhow::bail!(user_err!("{at}: the completion is empty"));
    }
    Ok(completion)
}

/// A Self-Instruct file's tasks with a demonstration, as conversational examples.
fn self_instruct_examples(path: &Path) -> anyhow::Result<Vec<Example>> {
    Ok(read_self_instruct(path)?
        .into_iter()
        .filter(|t| !t.demonstration.is_empty())
        .map(|t| Example {
            record: t.line as i64,
            turn: 0,
            prompt: Prompt::Messages(vec![Message::user(t.prompt)]),
            completion: t.demonstration,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: serde_json::Value) -> Record {
        Record {
            at: "d.jsonl:1".into(),
            value: v,
        }
    }

    #[test]
    fn each_assistant_turn_is_one_example_with_the_turns_before_it() {
        let r = rec(serde_json::json!({ "messages": [
            { "role": "system", "content": "Be brief." },
            { "role": "user", "content": "Hi" },
            { "role": "assistant", "content": "Hello." },
            { "role": "user", "content": "Bye" },
            { "role": "assistant", "content": "Bye." },
        ], "source": "extra fields are fine" }));
        let ex = trl_examples(&[r]).unwrap();
        assert_eq!(ex.len(), 2);
        let rows: Vec<SftExampleRow> = ex
            .into_iter()
            .enumerate()
            .map(|(i, e)| e.row(i as i64).unwrap())
            .collect();
        assert_eq!((rows[1].turn, rows[1].completion.as_str()), (1, "Bye."));
        let prompt: Vec<Message> = serde_json::from_str(&rows[1].prompt).unwrap();
        assert_eq!(prompt.len(), 4);
        assert!(rows.iter().all(|r| r.conversational));
    }

    #[test]
    fn standard_and_conversational_prompt_completion() {
        let std = rec(serde_json::json!({ "prompt": "2+2=", "completion": "4" }));
        let conv = rec(serde_json::json!({
            "prompt": [{ "role": "user", "content": "2+2?" }],
            "completion": [{ "role": "assistant", "content": "4" }],
        }));
        let rows: Vec<SftExampleRow> = trl_examples(&[std, conv])
            .unwrap()
            .into_iter()
            .enumerate()
            .map(|(i, e)| e.row(i as i64).unwrap())
            .collect();
        assert_eq!(
            (rows[0].conversational, rows[0].prompt.as_str()),
            (false, "2+2=")
        );
        assert!(rows[1].conversational);
        assert_eq!(rows[1].record, 1);
    }

    #[test]
    fn malformed_records_are_user_errors_that_say_where() {
        let cases = [
            (serde_json::json!({ "text": "x" }), "expected {\"messages\""),
            (
                serde_json::json!({ "prompt": "x", "completion": [{ "role": "assistant", "content": "y" }] }),
                "both text, or both lists",
            ),
            (
                serde_json::json!({ "messages": [{ "role": "user", "content": "x" }] }),
                "no assistant message",
            ),
            (
                serde_json::json!({ "messages": [{ "role": "bot", "content": "x" }] }),
                "unknown role \"bot\"",
            ),
            (
                serde_json::json!({ "prompt": "x", "completion": " " }),
                "the completion is empty",
            ),
        ];
        for (v, want) in cases {
            let err = trl_examples(&[rec(v)]).err().unwrap().to_string();
            assert!(err.contains("d.jsonl:1") && err.contains(want), "{err}");
        }
    }
}
