//! Helpers: a character-level tokenizer and small random models of each family.

use candle_core::Device;
use scir::model::config::{Arch, ModelConfig, Preset};
use scir::model::{Model, Text};
use serde_json::{Value, json};
use tokenizers::Tokenizer;

/// Characters of the test vocabulary (after `<s>`, `</s>`, `<unk>`).
pub const CHARS: &str = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.,:!?0123456789\n";

/// `tokenizer.json` text of a char-level tokenizer whose post-processor adds `<s>`.
pub fn char_tokenizer_json() -> String {
    let mut vocab = serde_json::Map::new();
    for (i, t) in ["<s>", "</s>", "<unk>"].iter().enumerate() {
        vocab.insert(t.to_string(), json!(i));
    }
    for (i, c) in CHARS.chars().enumerate() {
        vocab.insert(c.to_string(), json!(i + 3));
    }
    let special = |id: u32, s: &str| {
        json!({"id": id, "content": s, "single_word": false, "lstrip": false, "rstrip": false,
               "normalized": false, "special": true})
    };
    json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [special(0, "<s>"), special(1, "</s>"), special(2, "<unk>")],
        "normalizer": null,
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "."}, "behavior": "Isolated", "invert": false},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]}}
        },
        "decoder": {"type": "Fuse"},
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    })
    .to_string()
}

pub fn char_tokenizer() -> Tokenizer {
    char_tokenizer_json()
        .parse()
        .expect("the test tokenizer parses")
}

/// A `tokenizer_config.json` with BOS/EOS and a small chat template.
pub fn tokenizer_config() -> Value {
    json!({
        "bos_token": "<s>",
        "eos_token": {"content": "</s>", "special": true},
        "chat_template": "{{ bos_token }}{% for m in messages %}{% if m.role not in ['user', 'assistant'] %}{{ raise_exception('bad role ' + m.role) }}{% endif %}{{ m.role }}: {{ m.content.strip() }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
    })
}

pub fn vocab() -> usize {
    CHARS.chars().count() + 3
}

/// The tiny preset with the test tokenizer.
pub fn tiny(seed: u64) -> Model {
    Model::from_scratch(
        char_tokenizer(),
        tokenizer_config(),
        Preset::Tiny,
        seed,
        &Device::Cpu,
    )
    .expect("tiny model")
}

/// A small config of `arch`: Qwen2 (q/k/v bias, untied head), GQA, or tied.
pub fn small_config(arch: Arch, tied: bool, kv_heads: usize) -> ModelConfig {
    let mut cfg = Preset::Tiny.config(vocab(), Some(0), vec![1]);
    cfg.arch = arch;
    cfg.tie_word_embeddings = tied;
    cfg.qkv_bias = arch == Arch::Qwen2;
    cfg.num_kv_heads = kv_heads;
    cfg.hidden_size = 32;
    cfg.head_dim = 8;
    cfg.intermediate_size = 48;
    cfg.rope_theta = 1e4;
    cfg
}

pub fn model_of(cfg: ModelConfig, seed: u64) -> Model {
    Model::from_config(
        cfg,
        char_tokenizer(),
        tokenizer_config(),
        seed,
        &Device::Cpu,
    )
    .expect("model")
}

/// Every family we support, one small random model each.
pub fn family(seed: u64) -> Vec<Model> {
    vec![
        model_of(small_config(Arch::Llama, true, 4), seed),
        model_of(small_config(Arch::Qwen2, false, 2), seed),
        model_of(small_config(Arch::Mistral, false, 1), seed),
    ]
}

/// The text side of a model, for encoding.
pub fn enc(text: &Text, s: &str) -> Vec<u32> {
    text.encode_prompt(s).expect("encodes")
}

/// Summed response log-probs on the candle path (the reference the fast path must match),
/// pad id 0, in chunks of 8 items.
pub fn reference_logprobs(
    dec: &scir::model::Decoder,
    items: &[scir::model::score::Pair],
    adapters: scir::model::Adapters,
) -> Vec<f32> {
    scir::model::score::in_chunks(items, 8, |part| {
        Ok(scir::model::score::response_logprobs(dec, part, 0, adapters)?.to_vec1::<f32>()?)
    })
    .unwrap()
}

/// Max difference `|a-b| / (1 + |b|)` over two vectors (relative for large values,
/// absolute near zero).
pub fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f32::max)
}

/// The user-facing message of an error, asserting it is a `scir::Error::User`.
pub fn user_msg(err: anyhow::Error) -> String {
    let user = err
        .chain()
        .find_map(|e| match e.downcast_ref::<scir::Error>() {
            Some(scir::Error::User(m)) => Some(m.clone()),
            _ => None,
        });
    user.unwrap_or_else(|| panic!("expected a user error, got: {err:#}"))
}

/// `tests/fixtures/models/<name>`: a checkpoint `scripts/make*_fixtures.py` wrote.
fn fixture_dir(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

/// The fixture checkpoint `name` (frozen) and its `reference.json` (transformers' numbers).
pub fn load_fixture(name: &str) -> (Model, Value) {
    let dir = fixture_dir(name);
    let m = Model::load(&dir, scir::model::Weights::Frozen, &Device::Cpu).unwrap();
    let text = std::fs::read_to_string(dir.join("reference.json")).unwrap();
    (m, serde_json::from_str(&text).unwrap())
}

/// The gradient of `var` in `g`, flat (panics naming `name` when there is none).
pub fn grad_of(
    g: &candle_core::backprop::GradStore,
    var: &candle_core::Var,
    name: &str,
) -> Vec<f32> {
    let t = g
        .get(var.as_tensor())
        .unwrap_or_else(|| panic!("no gradient for {name}"));
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Every var has the same gradient in `want` (candle) and `got` (the fast path): max
/// difference below 1e-4 of the largest |gradient| in `want` (at least `floor`, for tensors
/// whose gradients are all near zero).
pub fn assert_same_gradients(
    vars: &[(String, candle_core::Var)],
    want: &candle_core::backprop::GradStore,
    got: &candle_core::backprop::GradStore,
    floor: f32,
) {
    for (name, var) in vars {
        let (a, b) = (grad_of(want, var, name), grad_of(got, var, name));
        let scale = a.iter().fold(0f32, |s, x| s.max(x.abs())).max(floor);
        let worst = a
            .iter()
            .zip(&b)
            .fold(0f32, |s, (x, y)| s.max((x - y).abs()));
        assert!(
            worst / scale < 1e-4,
            "{name}: max diff {worst} vs max |grad| {scale}"
        );
    }
}

/// Sets every `lora_B` of `set` (zero after attaching) to seeded normal noise with standard
/// deviation `std`, so that every adapter takes part; the same draw on every run.
pub fn seeded_lora_b(set: &scir::model::lora::LoraSet, seed: u64, std: f32) {
    use rand_core::SeedableRng;
    use rand_distr::{Distribution, Normal};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0f32, std).unwrap();
    for (name, var) in set.named_vars() {
        if name.contains("lora_B") {
            let b: Vec<f32> = (0..var.elem_count())
                .map(|_| normal.sample(&mut rng))
                .collect();
            let b = candle_core::Tensor::from_vec(b, var.shape(), var.device()).unwrap();
            var.set(&b).unwrap();
        }
    }
}
