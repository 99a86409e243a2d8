//! TRL's dataset conventions, shared by `sft-data` and `preference-data`: a field holds plain
//! text (TRL's "standard" form) or a list of `{role, content}` messages (its
//! "conversational" form). Fields other than `role` and `content` are ignored, as TRL does.

use serde::Deserialize;

use crate::user_err;

/// One message of a conversational field.
#[derive(Debug, Clone, Deserialize)]
pub struct TrlMessage {
    pub role: String,
    pub content: String,
}

/// A field in either form.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Turns {
    Text(String),
    Messages(Vec<TrlMessage>),
}

impl Turns {
    /// The text of a standard field, or of a conversational one that is exactly one `role`
    /// message; a user error at `at` (naming `field`) otherwise.
    pub fn single(self, at: &str, field: &str, role: &str) -> anyhow::Result<String> {
        match self {
            Turns::Text(t) => Ok(t),
            Turns::Messages(m) => match m.as_slice() {
                [one] if one.role == role => Ok(one.content.clone()),
                _ => Err(user_err!(
                    "{at}: {field:?} must be one {role} message (or a string); it has {} \
                     message(s)",
                    m.len()
                )
                .into()),
            },
        }
    }
}
