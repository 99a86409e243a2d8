//! Chat templates: the Jinja `chat_template` of `tokenizer_config.json`, rendered with
//! minijinja the way transformers' `apply_chat_template` renders it: `trim_blocks` and
//! `lstrip_blocks` on, Python string methods (`.strip()`, `.startswith()`, …) through
//! minijinja-contrib's pycompat, a `raise_exception(msg)` function, and the variables
//! `messages`, `add_generation_prompt`, `bos_token`, `eos_token`.

use std::collections::BTreeMap;

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, Error as JinjaError, ErrorKind, context};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Name the template is registered under.
const TEMPLATE_NAME: &str = "chat_template";

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: "user".into(),
            content: content.into(),
        }
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Message {
            role: "assistant".into(),
            content: content.into(),
        }
    }
}

/// A compiled chat template.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
}

/// Messages as minijinja maps (`message.role`, `message['content']`).
fn to_values(messages: &[Message]) -> Vec<minijinja::Value> {
    messages
        .iter()
        .map(|m| {
            let map: BTreeMap<String, minijinja::Value> = BTreeMap::from([
                ("role".to_string(), m.role.clone().into()),
                ("content".to_string(), m.content.clone().into()),
            ]);
            minijinja::Value::from(map)
        })
        .collect()
}

fn raise_exception(msg: String) -> Result<String, JinjaError> {
    Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
}

impl ChatTemplate {
    /// Compile `source`; the error is a message without the file name.
    pub fn new(source: &str) -> Result<Self, String> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| e.to_string())?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned(TEMPLATE_NAME, source.to_string())
            .map_err(|e| format!("chat_template does not compile: {e}"))?;
        Ok(ChatTemplate {
            env,
            source: source.to_string(),
        })
    }

    /// The template from a parsed `tokenizer_config.json` (a string, or a list of named
    /// templates of which `default` — else the first — is used); `Ok(None)` if it has none.
    pub fn from_tokenizer_config(cfg: &Value) -> Result<Option<Self>, String> {
        let source = match cfg.get("chat_template") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(named)) => {
                let pick = named
                    .iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                    .or(named.first());
                match pick.and_then(|t| t.get("template")).and_then(Value::as_str) {
                    Some(s) => s.to_string(),
                    None => {
                        return Err(
                            "chat_template list has no usable {name, template} entry".into()
                        );
                    }
                }
            }
            Some(_) => {
                return Err("chat_template must be a string or a list of {name, template}".into());
            }
        };
        Self::new(&source).map(Some)
    }

    /// The template's source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Render `messages`; the error is a message (a `raise_exception` text, an undefined
    /// method, …).
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
    ) -> Result<String, String> {
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| e.to_string())?;
        tmpl.render(context! {
            messages => to_values(messages),
            add_generation_prompt => add_generation_prompt,
            bos_token => bos_token.unwrap_or(""),
            eos_token => eos_token.unwrap_or(""),
        })
        .map_err(|e| format!("chat_template failed to render: {e:#}"))
    }
}
