//! Judge prompts for the generative reward model (shared by `score-grm` and
//! `train`).
//!
//! A judge template is a minijinja text with `{{ prompt }}` and either
//! `{{ response_a }}`/`{{ response_b }}` (pairwise) or `{{ response }}`
//! (pointwise); one trailing newline of the file is dropped. The rendered
//! text becomes one user message in the model's chat template (plain text
//! with special tokens when the model has none), and the next token is read:
//! a verdict token (pairwise) or a score token (pointwise). Each verdict or
//! score string must be exactly one token of the model's vocabulary.
//!
//! The built-in templates (`stages/templates/`) reproduce the world's judge
//! formats ([`crate::world::format`]) byte for byte, so M0 judges in the
//! format it was fine-tuned on.

use candle_core::{D, Tensor};
use minijinja::{Environment, context};

use crate::model::{Adapters, Decoder, Message, Text};
use crate::user_err;

/// The built-in pairwise template.
pub const DEFAULT_PAIRWISE: &str = include_str!("templates/judge_pairwise.txt");
/// The built-in pointwise template.
pub const DEFAULT_POINTWISE: &str = include_str!("templates/judge_pointwise.txt");
const NAME: &str = "judge";

/// A compiled judge template.
pub struct JudgeTemplate {
    env: Environment<'static>,
    origin: String,
}

impl JudgeTemplate {
    /// Compile `source`; `origin` names it in errors (a file path or "built-in").
    pub fn new(source: &str, origin: &str) -> anyhow::Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| user_err!("{origin}: the judge template does not compile: {e}"))?;
        Ok(JudgeTemplate {
            env,
            origin: origin.to_string(),
        })
    }

    fn render(&self, ctx: minijinja::Value) -> anyhow::Result<String> {
        let t = self.env.get_template(NAME)?;
        Ok(t.render(ctx).map_err(|e| {
            user_err!(
                "{}: the judge template failed to render: {e:#}\nA pairwise template uses {{{{ \
                 prompt }}}}, {{{{ response_a }}}}, {{{{ response_b }}}}; a pointwise one {{{{ \
                 prompt }}}}, {{{{ response }}}}.",
                self.origin
            )
        })?)
    }

    /// The pairwise judge text for `(prompt, a, b)`.
    pub fn pairwise(&self, prompt: &str, a: &str, b: &str) -> anyhow::Result<String> {
        self.render(context! { prompt => prompt, response_a => a, response_b => b })
    }

    /// The pointwise judge text for `(prompt, response)`.
    pub fn pointwise(&self, prompt: &str, response: &str) -> anyhow::Result<String> {
        self.render(context! { prompt => prompt, response => response })
    }

    /// A user error unless the template shows every input of its mode: a
    /// pairwise template that never renders `response_b` would judge blind.
    pub fn check_shows_inputs(&self, pairwise: bool) -> anyhow::Result<()> {
        const MARK: [&str; 3] = ["\u{1}p\u{1}", "\u{1}a\u{1}", "\u{1}b\u{1}"];
        let (text, names) = if pairwise {
            let t = self.pairwise(MARK[0], MARK[1], MARK[2])?;
            (t, &["prompt", "response_a", "response_b"][..])
        } else {
            (
                self.pointwise(MARK[0], MARK[1])?,
                &["prompt", "response"][..],
            )
        };
        let missing: Vec<&str> = names
            .iter()
            .zip(MARK)
            .filter(|(_, m)| !text.contains(m))
            .map(|(n, _)| *n)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(user_err!(
            "{}: the judge template never shows {}; a {} template must render {}",
            self.origin,
            missing.join(", "),
            if pairwise { "pairwise" } else { "pointwise" },
            names.join(", ")
        )
        .into())
    }
}

/// Judge text → prompt ids (chat template applied when the model has one).
pub fn encode(text: &Text, judge_text: &str) -> anyhow::Result<Vec<u32>> {
    text.encode_chat_prompt(&[Message::user(judge_text.to_string())])
}

/// The single token id of `s`, or a user error saying it is not one token.
pub fn single_token(text: &Text, s: &str, what: &str) -> anyhow::Result<u32> {
    let ids = text.encode_response(s, false)?;
    match ids.as_slice() {
        [id] => Ok(*id),
        _ => Err(user_err!(
            "the {what} {s:?} is {} tokens in this model's vocabulary ({ids:?}); every verdict \
             and score string must be exactly one token: choose other strings in score-grm's \
             params",
            ids.len()
        )
        .into()),
    }
}

/// Logits of `tokens` at each prompt's last position, `(b, tokens.len())`, differentiable.
pub fn last_logits(
    dec: &Decoder,
    prompts: &[Vec<u32>],
    tokens: &[u32],
    pad: u32,
) -> anyhow::Result<Tensor> {
    crate::model::score::token_logits_at_last(dec, prompts, tokens, pad, Adapters::On)
}

/// Expected score `Σ v_i·softmax(l)_i` over the score tokens, `(b,)`, differentiable.
pub fn expected_scores(
    dec: &Decoder,
    prompts: &[Vec<u32>],
    tokens: &[u32],
    values: &[f64],
    pad: u32,
) -> anyhow::Result<Tensor> {
    let logits = last_logits(dec, prompts, tokens, pad)?;
    let probs = candle_nn::ops::softmax(&logits, D::Minus1)?;
    let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    let v = Tensor::from_vec(v, (values.len(), 1), dec.device())?;
    Ok(probs.matmul(&v)?.squeeze(1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::format;

    #[test]
    fn built_in_templates_match_the_world_formats() {
        let pw = JudgeTemplate::new(DEFAULT_PAIRWISE, "built-in").unwrap();
        let pt = JudgeTemplate::new(DEFAULT_POINTWISE, "built-in").unwrap();
        let prompt = format::prompt(crate::world::TaskKind::Sort, "qwdbe");
        assert_eq!(
            pw.pairwise(&prompt, "bdeqw", "bdqew").unwrap(),
            format::judge_pairwise(&prompt, "bdeqw", "bdqew")
        );
        assert_eq!(
            pt.pointwise(&prompt, "bdeqw").unwrap(),
            format::judge_pointwise(&prompt, "bdeqw")
        );
    }
}
