//! Judge prompts for the generative reward model (shared by `score-grm` and
//! `train`).
//!
//! A judge template is a minijinja text with `{{ prompt }}` and either
//! `{{ response_a }}`/`{{ response_b }}` (pairwise), `{{ response }}` (pointwise), or
//! `{{ response }}`, `{{ judgment_a }}`/`{{ judgment_b }}` (a meta-judge: which of two
//! judgments of a response is better, Meta-Rewarding's); one trailing newline of the file
//! is dropped. The rendered
//! text becomes one user message in the model's chat template (plain text
//! with special tokens when the model has none), and the next token is read:
//! a verdict token (pairwise) or a score token (pointwise). Each verdict or
//! score string must be exactly one token of the model's vocabulary.
//!
//! The built-in templates (`stages/templates/`) reproduce the world's judge
//! formats ([`crate::world::format`]) byte for byte, so M0 judges in the
//! format it was fine-tuned on.
//!
//! **Chat judge templates** (for real instruct models) define Jinja blocks
//! instead: `{% block system %}` (optional: a system message),
//! `{% block user %}` (the user message) and `{% block assistant %}` (the
//! start of the assistant's reply, pre-filled after the chat template's
//! generation prompt). The verdict token is read right after that prefill,
//! so one forward pass gives `P(A)`; [`check_seam`] makes sure that the
//! verdict string really is the next token there (BPE could merge it with
//! the prefill). An optional `{% block close %}` is what the judge writes after
//! its verdict or score (`]]`): the end of a judgment that is trained on
//! ([`answer_ids`]). A template without a `user` block is a plain one (above).
//! Built-in templates are named `builtin:<name>` ([`BUILTIN`]); the
//! default for real models is `builtin:mt-bench-pair`, MT-Bench's `pair-v2`
//! judge prompt with the assistant turn pre-filled up to `[[`; its pointwise
//! counterpart is `builtin:mt-bench-single` (`single-v1`, ratings 1–5 after
//! `Rating: [[`), and `builtin:meta-judge` the meta-judge of those ratings.

use candle_core::{D, Tensor};
use minijinja::{Environment, context};

use crate::model::{Adapters, Decoder, Message, Text};
use crate::user_err;

/// The built-in pairwise template.
pub const DEFAULT_PAIRWISE: &str = include_str!("../../../stages/templates/judge_pairwise.txt");
/// The built-in pointwise template.
pub const DEFAULT_POINTWISE: &str = include_str!("../../../stages/templates/judge_pointwise.txt");
/// The built-in meta-judge template (the world's meta-judge format).
pub const DEFAULT_META: &str = include_str!("../../../stages/templates/judge_meta.txt");
/// MT-Bench's `pair-v2` pairwise judge as a chat judge template (verdict after `[[`).
pub const MT_BENCH_PAIR: &str =
    include_str!("../../../stages/templates/judge_pairwise_mt_bench.txt");
/// MT-Bench's `single-v1` pointwise judge as a chat judge template (rating 1–5 after
/// `Rating: [[`).
pub const MT_BENCH_SINGLE: &str =
    include_str!("../../../stages/templates/judge_pointwise_mt_bench.txt");
/// The meta-judge of `MT_BENCH_SINGLE`'s ratings as a chat judge template.
pub const META_INSTRUCT: &str = include_str!("../../../stages/templates/judge_meta_instruct.txt");
/// The prefix of a built-in template's name in a `template` param.
pub const BUILTIN_PREFIX: &str = "builtin:";
/// Built-in templates by name (`template: builtin:<name>`).
pub const BUILTIN: [(&str, &str); 7] = [
    ("world-pairwise", DEFAULT_PAIRWISE),
    ("world-pointwise", DEFAULT_POINTWISE),
    ("world-meta", DEFAULT_META),
    (
        "instruct-pairwise",
        include_str!("../../../stages/templates/judge_pairwise_instruct.txt"),
    ),
    ("mt-bench-pair", MT_BENCH_PAIR),
    ("mt-bench-single", MT_BENCH_SINGLE),
    ("meta-judge", META_INSTRUCT),
];
const NAME: &str = "judge";
const SYSTEM_BLOCK: &str = "system";
const USER_BLOCK: &str = "user";
const ASSISTANT_BLOCK: &str = "assistant";
const CLOSE_BLOCK: &str = "close";

/// What a judge template judges, and so which inputs it must show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `prompt`, `response_a`, `response_b`: which response is better.
    Pairwise,
    /// `prompt`, `response`: a score of one response.
    Pointwise,
    /// `prompt`, `response`, `judgment_a`, `judgment_b`: which judgment is better.
    Meta,
}

impl Shape {
    /// The template variables of the shape.
    fn inputs(self) -> &'static [&'static str] {
        match self {
            Shape::Pairwise => &["prompt", "response_a", "response_b"],
            Shape::Pointwise => &["prompt", "response"],
            Shape::Meta => &["prompt", "response", "judgment_a", "judgment_b"],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Shape::Pairwise => "pairwise",
            Shape::Pointwise => "pointwise",
            Shape::Meta => "meta-judge",
        }
    }
}

/// The source of the built-in template `name` (`builtin:` stripped), or a user error
/// listing the names.
pub fn builtin(name: &str) -> anyhow::Result<&'static str> {
    BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, src)| *src)
        .ok_or_else(|| {
            let names: Vec<String> = BUILTIN
                .iter()
                .map(|(n, _)| format!("{BUILTIN_PREFIX}{n}"))
                .collect();
            user_err!(
                "unknown built-in judge template {BUILTIN_PREFIX}{name}; the built-in ones are {}",
                names.join(", ")
            )
            .into()
        })
}

/// A `template` param as a file to digest: `None` for a built-in name.
pub fn template_file(template: &Option<std::path::PathBuf>) -> Option<std::path::PathBuf> {
    template
        .as_ref()
        .filter(|p| !p.to_string_lossy().starts_with(BUILTIN_PREFIX))
        .cloned()
}

/// The template a `template` param names: `builtin:<name>`, or a file relative to the
/// pipeline's directory `dir` (then `true`: it came from a file).
pub fn load_named(
    dir: &std::path::Path,
    template: &std::path::Path,
) -> anyhow::Result<(JudgeTemplate, bool)> {
    let name = template.to_string_lossy();
    if let Some(name) = name.strip_prefix(BUILTIN_PREFIX) {
        return Ok((
            JudgeTemplate::new(builtin(name)?, &format!("built-in {name}"))?,
            false,
        ));
    }
    let path = dir.join(template);
    let src = std::fs::read_to_string(&path)
        .map_err(|e| user_err!("{}: cannot read the judge template ({e})", path.display()))?;
    Ok((JudgeTemplate::new(&src, &path.display().to_string())?, true))
}

/// The template `named` (`builtin:<name>`, or a file relative to `dir` that must show every
/// input of `shape`), else `default`'s source (and origin, for errors).
pub fn load_or(
    dir: &std::path::Path,
    named: &Option<std::path::PathBuf>,
    shape: Shape,
    (default, origin): (&str, &str),
) -> anyhow::Result<JudgeTemplate> {
    match named {
        Some(named) => {
            let (t, from_file) = load_named(dir, named)?;
            if from_file {
                t.check_shows_inputs(shape)?;
            }
            Ok(t)
        }
        None => JudgeTemplate::new(default, origin),
    }
}

/// One rendered judge prompt: the chat messages and the assistant prefill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgeText {
    /// A system message (chat judge templates only).
    pub system: Option<String>,
    /// The user message.
    pub user: String,
    /// The start of the assistant's reply (empty for plain templates).
    pub prefill: String,
    /// What the judge writes after its verdict or score (empty for plain templates).
    pub close: String,
}

impl JudgeText {
    fn plain(&self) -> bool {
        self.system.is_none() && self.prefill.is_empty()
    }
}

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

    fn render(&self, ctx: minijinja::Value) -> anyhow::Result<JudgeText> {
        let fail = |e: minijinja::Error| {
            user_err!(
                "{}: the judge template failed to render: {e:#}\nA pairwise template uses {{{{ \
                 prompt }}}}, {{{{ response_a }}}}, {{{{ response_b }}}}; a pointwise one {{{{ \
                 prompt }}}}, {{{{ response }}}}; a meta-judge one {{{{ prompt }}}}, {{{{ \
                 response }}}}, {{{{ judgment_a }}}}, {{{{ judgment_b }}}}.",
                self.origin
            )
        };
        let t = self.env.get_template(NAME)?;
        let mut captured = t.render_captured(ctx).map_err(fail)?;
        let mut block = |name: &str| -> anyhow::Result<Option<String>> {
            match captured.with_state_mut(|s| s.render_block(name)) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == minijinja::ErrorKind::UnknownBlock => Ok(None),
                Err(e) => Err(fail(e).into()),
            }
        };
        let Some(user) = block(USER_BLOCK)? else {
            return Ok(JudgeText {
                system: None,
                user: captured.into_output(),
                prefill: String::new(),
                close: String::new(),
            });
        };
        Ok(JudgeText {
            system: block(SYSTEM_BLOCK)?,
            user,
            prefill: block(ASSISTANT_BLOCK)?.unwrap_or_default(),
            close: block(CLOSE_BLOCK)?.unwrap_or_default(),
        })
    }

    /// The pairwise judge text for `(prompt, a, b)`.
    pub fn pairwise(&self, prompt: &str, a: &str, b: &str) -> anyhow::Result<JudgeText> {
        self.render(context! { prompt => prompt, response_a => a, response_b => b })
    }

    /// The pointwise judge text for `(prompt, response)`.
    pub fn pointwise(&self, prompt: &str, response: &str) -> anyhow::Result<JudgeText> {
        self.render(context! { prompt => prompt, response => response })
    }

    /// The meta-judge text for two judgments `a` and `b` of `(prompt, response)`.
    pub fn meta(
        &self,
        prompt: &str,
        response: &str,
        a: &str,
        b: &str,
    ) -> anyhow::Result<JudgeText> {
        self.render(context! {
            prompt => prompt, response => response, judgment_a => a, judgment_b => b
        })
    }

    /// The text the template renders for `shape` with the given inputs in order.
    fn render_shape(&self, shape: Shape, v: &[&str]) -> anyhow::Result<JudgeText> {
        match shape {
            Shape::Pairwise => self.pairwise(v[0], v[1], v[2]),
            Shape::Pointwise => self.pointwise(v[0], v[1]),
            Shape::Meta => self.meta(v[0], v[1], v[2], v[3]),
        }
    }

    /// A user error unless the template shows every input of `shape`: a
    /// pairwise template that never renders `response_b` would judge blind.
    pub fn check_shows_inputs(&self, shape: Shape) -> anyhow::Result<()> {
        let names = shape.inputs();
        let marks: Vec<String> = (0..names.len()).map(|i| format!("\u{1}{i}\u{1}")).collect();
        let marks: Vec<&str> = marks.iter().map(String::as_str).collect();
        let t = self.render_shape(shape, &marks)?;
        let text = format!(
            "{}{}{}",
            t.system.as_deref().unwrap_or_default(),
            t.user,
            t.prefill
        );
        let missing: Vec<&str> = names
            .iter()
            .zip(&marks)
            .filter(|(_, m)| !text.contains(*m))
            .map(|(n, _)| *n)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(user_err!(
            "{}: the judge template never shows {}; a {} template must render {}",
            self.origin,
            missing.join(", "),
            shape.name(),
            names.join(", ")
        )
        .into())
    }
}

/// The model's input text of a chat judge prompt: the messages through the chat
/// template (with the generation prompt), then the prefill.
fn render_chat(text: &Text, j: &JudgeText) -> anyhow::Result<String> {
    let mut messages: Vec<Message> = j
        .system
        .iter()
        .map(|s| Message {
            role: "system".into(),
            content: s.clone(),
        })
        .collect();
    messages.push(Message::user(j.user.clone()));
    let mut s = text.render_chat(&messages, true)?;
    if text.chat_template().is_none() && !j.prefill.is_empty() {
        s.push_str(RAW_PREFILL_SEPARATOR);
    }
    s.push_str(&j.prefill);
    Ok(s)
}

/// Separator before the prefill when the model has no chat template.
const RAW_PREFILL_SEPARATOR: &str = "\n\n";

/// Encode a rendered chat judge text (special tokens only when there is no chat template,
/// as [`Text::encode_chat_prompt`] does).
fn encode_rendered(text: &Text, s: &str) -> anyhow::Result<Vec<u32>> {
    let special = text.chat_template().is_none();
    let enc = text
        .tokenizer()
        .encode(s, special)
        .map_err(|e| anyhow::anyhow!("tokenizer failed on the judge prompt: {e}"))?;
    Ok(enc.get_ids().to_vec())
}

/// Judge text → prompt ids (chat template applied when the model has one).
pub fn encode(text: &Text, j: &JudgeText) -> anyhow::Result<Vec<u32>> {
    if j.plain() {
        return text.encode_chat_prompt(&[Message::user(j.user.clone())]);
    }
    encode_rendered(text, &render_chat(text, j)?)
}

/// For a chat judge prompt with a prefill: a user error unless the text followed by
/// `token` (the verdict or score string) encodes as the prompt's ids plus `id`, i.e. the
/// model would write exactly that token there. Plain templates are not checked.
pub fn check_seam(text: &Text, j: &JudgeText, token: &str, id: u32) -> anyhow::Result<()> {
    if j.plain() {
        return Ok(());
    }
    let rendered = render_chat(text, j)?;
    let prompt = encode_rendered(text, &rendered)?;
    let joined = encode_rendered(text, &format!("{rendered}{token}"))?;
    let tail = joined.strip_prefix(prompt.as_slice());
    if tail == Some(&[id][..]) {
        return Ok(());
    }
    let shown: String = j
        .prefill
        .chars()
        .rev()
        .take(20)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(user_err!(
        "the verdict {token:?} does not follow the judge template's prefill {shown:?} as one \
         token: the prefill encodes to ids ending {:?} and prefill+{token:?} to ids ending {:?} \
         (BPE merges them); end the template's assistant block where the verdict starts, or \
         choose other verdict strings in score-grm's params",
        &prompt[prompt.len().saturating_sub(3)..],
        &joined[joined.len().saturating_sub(4)..]
    )
    .into())
}

/// A judge's whole answer as trained on: the verdict or score token `id`, the template's
/// `close` text, then EOS.
pub fn answer_ids(text: &Text, j: &JudgeText, id: u32) -> anyhow::Result<Vec<u32>> {
    let eos = text
        .eos_id()
        .ok_or_else(|| anyhow::anyhow!("the judge model has no EOS token"))?;
    let mut ids = vec![id];
    if !j.close.is_empty() {
        ids.extend(text.encode_response(&j.close, false)?);
    }
    ids.push(eos);
    Ok(ids)
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

/// Expected score `Σ v_i·softmax(l)_i` from the score tokens' logits `(b, tokens)`, `(b,)`,
/// differentiable.
pub fn expected_scores_of(logits: &Tensor, values: &[f64]) -> anyhow::Result<Tensor> {
    let probs = candle_nn::ops::softmax(logits, D::Minus1)?;
    let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    let v = Tensor::from_vec(v, (values.len(), 1), logits.device())?;
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
        let j = pw.pairwise(&prompt, "bdeqw", "bdqew").unwrap();
        assert_eq!(j.user, format::judge_pairwise(&prompt, "bdeqw", "bdqew"));
        assert!(j.plain());
        let j = pt.pointwise(&prompt, "bdeqw").unwrap();
        assert_eq!(j.user, format::judge_pointwise(&prompt, "bdeqw"));
        assert!(j.plain());
        let meta = JudgeTemplate::new(DEFAULT_META, "built-in").unwrap();
        let j = meta.meta(&prompt, "bdeqw", "3", "5").unwrap();
        assert_eq!(j.user, format::judge_meta(&prompt, "bdeqw", "3", "5"));
        assert!(j.plain() && j.close.is_empty());
    }

    #[test]
    fn the_instruct_pointwise_and_meta_judges_show_ratings_and_close_them() {
        let single = JudgeTemplate::new(MT_BENCH_SINGLE, "built-in").unwrap();
        let j = single.pointwise("Q?", "an answer").unwrap();
        assert!(j.user.contains("scale of 1 to 5"), "{}", j.user);
        assert!(
            j.user.ends_with(
                "[The Start of Assistant's Answer]\nan answer\n[The End of Assistant's Answer]"
            ),
            "{:?}",
            j.user
        );
        assert_eq!((j.prefill.as_str(), j.close.as_str()), ("Rating: [[", "]]"));
        let meta = JudgeTemplate::new(META_INSTRUCT, "built-in").unwrap();
        let j = meta.meta("Q?", "an answer", "2", "4").unwrap();
        let a = j.user.find("[Judgment A]\nRating: [[2]]").unwrap();
        let b = j.user.find("[Judgment B]\nRating: [[4]]").unwrap();
        assert!(j.user.contains("an answer") && a < b, "{}", j.user);
        assert_eq!(j.prefill, "[[");
        for (shape, t) in [(Shape::Pointwise, &single), (Shape::Meta, &meta)] {
            t.check_shows_inputs(shape).unwrap();
        }
    }

    #[test]
    fn a_meta_template_that_hides_a_judgment_is_a_user_error() {
        let t =
            JudgeTemplate::new("{{ prompt }}{{ response }} A={{ judgment_a }}", "m.txt").unwrap();
        let err = t.check_shows_inputs(Shape::Meta).unwrap_err().to_string();
        assert!(
            err.contains("m.txt: the judge template never shows judgment_b"),
            "{err}"
        );
        // An undefined variable is a render error naming the meta-judge's inputs.
        let t = JudgeTemplate::new("{{ prompt }}{{ judgment }}", "m.txt").unwrap();
        let err = t.check_shows_inputs(Shape::Meta).unwrap_err().to_string();
        assert!(err.contains("a meta-judge one"), "{err}");
    }

    #[test]
    fn chat_judge_templates_render_their_blocks() {
        let t = JudgeTemplate::new(MT_BENCH_PAIR, "built-in").unwrap();
        let j = t.pairwise("Q?", "one", "two").unwrap();
        let system = j.system.as_deref().unwrap();
        assert!(
            system.starts_with("Please act as an impartial judge"),
            "{system}"
        );
        assert!(
            system.contains("\"[[A]]\" if assistant A is better"),
            "{system}"
        );
        assert!(
            j.user
                .starts_with("[User Question]\nQ?\n\n[The Start of Assistant A's Answer]\none\n")
        );
        assert!(
            j.user.ends_with("two\n[The End of Assistant B's Answer]"),
            "{:?}",
            j.user
        );
        assert_eq!(j.prefill, "[[");
        let swapped = t.pairwise("Q?", "two", "one").unwrap();
        assert_ne!(swapped.user, j.user);
        assert_eq!(swapped.system, j.system);
    }

    #[test]
    fn every_builtin_name_compiles_and_unknown_names_are_user_errors() {
        for (name, _) in BUILTIN {
            JudgeTemplate::new(builtin(name).unwrap(), name).unwrap();
        }
        let err = builtin("nope").unwrap_err().to_string();
        assert!(err.contains("builtin:mt-bench-pair"), "{err}");
        let f = |s: &str| template_file(&Some(s.into()));
        assert_eq!(f("builtin:mt-bench-pair"), None);
        assert_eq!(f("judge.txt"), Some("judge.txt".into()));
    }
}
