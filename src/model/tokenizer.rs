//! Text ↔ token ids: the `tokenizers` tokenizer, special tokens from `tokenizer_config.json`
//! (falling back to `config.json` ids), and the prompt/response seam.
//!
//! The seam is TRL's: a prompt is encoded *with* special tokens (the tokenizer's
//! post-processor adds BOS where the model wants it), a response *without*, and the two id
//! lists are concatenated, never re-tokenised as one string; EOS is appended to a response
//! when asked (training and scoring). A chat-templated prompt is encoded without special
//! tokens, because the template writes them itself (transformers' `apply_chat_template`
//! does the same); with no template, the messages' contents joined by blank lines are
//! encoded as a plain prompt.
//!
//! The chat template comes from `chat_template.jinja` when that file exists (transformers 5),
//! else from `tokenizer_config.json`'s `chat_template`; saving writes it into the latter.

use std::path::Path;

use serde_json::Value;
use tokenizers::Tokenizer;

use super::chat::{ChatTemplate, Message};
use super::config::ModelConfig;
use crate::user_err;

/// Separator between message contents when there is no chat template.
const RAW_MESSAGE_SEPARATOR: &str = "\n\n";
/// transformers 5's separate chat-template file.
const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";

/// Text encoded once when a tokenizer is loaded (see [`parse_tokenizer`]).
const ENCODE_PROBE: &str = "a b";

/// Parse a `tokenizer.json` text and encode [`ENCODE_PROBE`] with special tokens once. The
/// `tokenizers` crate panics on some malformed files instead of returning an error (0.23: a
/// `decoder` that is neither tagged nor a known shape, at parse time; a post-processor
/// template naming a special token it does not define, at the first encode); such a panic
/// is caught here and becomes this error like any other parse failure.
pub fn parse_tokenizer(json: &str) -> Result<Tokenizer, String> {
    let parsed = std::panic::catch_unwind(|| -> tokenizers::Result<Tokenizer> {
        let tokenizer: Tokenizer = json.parse()?;
        tokenizer.encode(ENCODE_PROBE, true)?;
        Ok(tokenizer)
    });
    match parsed {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(panic) => Err(format!(
            "the tokenizers library gave up on it: {}",
            panic
                .downcast_ref::<&str>()
                .copied()
                .or(panic.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("a malformed component")
        )),
    }
}

/// Read and parse `path` as a `tokenizer.json` ([`parse_tokenizer`]); the error names the
/// file.
pub fn read_tokenizer(path: &Path) -> anyhow::Result<Tokenizer> {
    if !path.is_file() {
        let msg = "missing; a model directory needs tokenizer.json";
        return Err(user_err!("{}: {msg}", path.display()).into());
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| user_err!("{}: cannot read ({e})", path.display()))?;
    parse_tokenizer(&text)
        .map_err(|e| user_err!("{}: not a valid tokenizer ({e})", path.display()).into())
}

/// A tokenizer with the model's special tokens and chat template.
#[derive(Debug, Clone)]
pub struct Text {
    tokenizer: Tokenizer,
    tokenizer_config: Value,
    template: Option<ChatTemplate>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    eos_id: Option<u32>,
    stop_ids: Vec<u32>,
    pad_id: u32,
}

/// A special token in `tokenizer_config.json`: a string or an `AddedToken` object.
fn token_str(cfg: &Value, key: &str) -> Option<String> {
    match cfg.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

impl Text {
    /// Load `tokenizer.json` and (if present) `tokenizer_config.json` from `dir`, checking
    /// every token id fits the model's vocabulary.
    pub fn load(dir: &Path, cfg: &ModelConfig) -> anyhow::Result<Self> {
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = read_tokenizer(&tok_path)?;
        let cfg_path = dir.join("tokenizer_config.json");
        let mut tokenizer_config: Value = if cfg_path.is_file() {
            let s = std::fs::read_to_string(&cfg_path)
                .map_err(|e| user_err!("{}: cannot read ({e})", cfg_path.display()))?;
            serde_json::from_str(&s)
                .map_err(|e| user_err!("{}: not valid JSON ({e})", cfg_path.display()))?
        } else {
            Value::Object(Default::default())
        };
        // transformers 5 keeps the template in its own file, which wins over the JSON field.
        let jinja = dir.join(CHAT_TEMPLATE_FILE);
        if jinja.is_file() {
            let src = std::fs::read_to_string(&jinja)
                .map_err(|e| user_err!("{}: cannot read ({e})", jinja.display()))?;
            if let Some(obj) = tokenizer_config.as_object_mut() {
                obj.insert("chat_template".into(), Value::String(src));
            }
        }
        Self::new(tokenizer, tokenizer_config, cfg).map_err(|msg| {
            user_err!(
                "{} / {}: {msg}",
                tok_path.display(),
                dir.join("config.json").display()
            )
            .into()
        })
    }

    /// Assemble from parts; the error is a message without file names.
    pub fn new(
        tokenizer: Tokenizer,
        tokenizer_config: Value,
        cfg: &ModelConfig,
    ) -> Result<Self, String> {
        let max_id = tokenizer.get_vocab(true).into_values().max().unwrap_or(0);
        if max_id as usize >= cfg.vocab_size {
            return Err(format!(
                "tokenizer/model vocabulary mismatch: the tokenizer has token id {max_id}, the model's \
                 vocab_size is {}; use the tokenizer that belongs to these weights",
                cfg.vocab_size
            ));
        }
        let template = ChatTemplate::from_tokenizer_config(&tokenizer_config)?;
        let bos_token = token_str(&tokenizer_config, "bos_token")
            .or_else(|| cfg.bos_token_id.and_then(|id| tokenizer.id_to_token(id)));
        let eos_from_cfg = token_str(&tokenizer_config, "eos_token");
        let eos_id =
            match &eos_from_cfg {
                Some(s) => Some(tokenizer.token_to_id(s).ok_or_else(|| {
                    format!("eos_token {s:?} is not in the tokenizer's vocabulary")
                })?),
                None => cfg.eos_token_ids.first().copied(),
            };
        let eos_token = eos_from_cfg.or_else(|| eos_id.and_then(|id| tokenizer.id_to_token(id)));
        let mut stop_ids: Vec<u32> = eos_id
            .into_iter()
            .chain(cfg.eos_token_ids.iter().copied())
            .collect();
        stop_ids.sort_unstable();
        stop_ids.dedup();
        let pad_id = token_str(&tokenizer_config, "pad_token")
            .and_then(|s| tokenizer.token_to_id(&s))
            .or(eos_id)
            .unwrap_or(0);
        Ok(Text {
            tokenizer,
            tokenizer_config,
            template,
            bos_token,
            eos_token,
            eos_id,
            stop_ids,
            pad_id,
        })
    }

    /// The BOS token text, if the model has one.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The parsed `tokenizer_config.json` (an empty object when there was none).
    pub fn tokenizer_config(&self) -> &Value {
        &self.tokenizer_config
    }

    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.template.as_ref()
    }

    /// The id appended to responses (the tokenizer's EOS).
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// Generation stops at any of these ids.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// The id used for padding (never attended to).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    fn encode(&self, text: &str, special: bool) -> anyhow::Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, special)
            .map_err(|e| anyhow::anyhow!("tokenizer failed on {text:?}: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// A raw prompt, with special tokens.
    pub fn encode_prompt(&self, text: &str) -> anyhow::Result<Vec<u32>> {
        self.encode(text, true)
    }

    /// A response, without special tokens, plus EOS when `eos` (an error if there is none).
    pub fn encode_response(&self, text: &str, eos: bool) -> anyhow::Result<Vec<u32>> {
        let mut ids = self.encode(text, false)?;
        if eos {
            let id = self
                .eos_id
                .ok_or_else(|| user_err!("the model has no EOS token (tokenizer_config.json eos_token or config.json eos_token_id) to append"))?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// `messages` rendered with the chat template (plus the assistant header when
    /// `add_generation_prompt`), or the contents joined by blank lines without one.
    pub fn render_chat(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> anyhow::Result<String> {
        match &self.template {
            Some(t) => t
                .render(
                    messages,
                    add_generation_prompt,
                    self.bos_token.as_deref(),
                    self.eos_token.as_deref(),
                )
                .map_err(|msg| user_err!("tokenizer_config.json: {msg}").into()),
            None => Ok(messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join(RAW_MESSAGE_SEPARATOR)),
        }
    }

    /// A chat prompt ready for the assistant's reply (see the module docs).
    pub fn encode_chat_prompt(&self, messages: &[Message]) -> anyhow::Result<Vec<u32>> {
        let text = self.render_chat(messages, true)?;
        self.encode(&text, self.template.is_none())
    }

    /// The one token `text` encodes to (without special tokens), e.g. a judge's verdict
    /// letter; a user error naming the tokens when it is not exactly one.
    pub fn single_token_id(&self, text: &str) -> anyhow::Result<u32> {
        match self.encode(text, false)?.as_slice() {
            [id] => Ok(*id),
            ids => Err(user_err!(
                "{text:?} is {} tokens ({ids:?}) for this tokenizer, not one; choose a string that \
                 is a single token",
                ids.len()
            )
            .into()),
        }
    }

    /// Ids → text.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> anyhow::Result<String> {
        self.tokenizer
            .decode(ids, skip_special_tokens)
            .map_err(|e| anyhow::anyhow!("tokenizer failed to decode {ids:?}: {e}"))
    }
}
