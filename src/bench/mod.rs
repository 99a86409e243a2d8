//! `scir model bench`: generation tokens/s and forward+backward time of one training step,
//! for the tiny and built-in-world presets (128-token vocabulary) and a ~30 M-parameter
//! preset (8192-token vocabulary), on random weights and a synthetic word-level tokenizer.
//! A benchmark, not a test: numbers depend on the machine.
//!
//! Generation is greedy over `batch` prompts of `seq_len` tokens; `generate tok/s` counts
//! the whole call (prefill included), `decode tok/s` only the steps after the prefill.
//! The training step is the SFT stage's step: summed response log-probs of `batch`
//! sequences of `seq_len` tokens (the last `response_len` tokens are the response; all but
//! the first when 0), divided by the response tokens, backward through every weight, then
//! the optimiser update (accumulate → clip → AdamW, [`Stepper`]). Forward, backward and
//! optimiser times are reported separately.
//!
//! `--digest` adds BLAKE3 digests (first 16 hex digits) of the bits of the forward logits of
//! the prompts, of the greedy tokens, and of every weight after the training steps: equal
//! digests before and after a change to the model code mean bit-identical results.

pub mod compare;

use std::collections::HashMap;
use std::time::Instant;

use candle_core::Device;
use clap::Args;
use serde_json::{Value, json};
use tokenizers::Tokenizer;
use tokenizers::models::wordlevel::WordLevel;

use crate::model::batch::{Batch, Padding};
use crate::model::checkpoint::Model;
use crate::model::config::Preset;
use crate::model::generate::{GenerateParams, Sampler, generate};
use crate::model::linear::Adapters;
use crate::model::optim::AdamWParams;
use crate::model::schedule::{LrSchedule, ScheduleKind};
use crate::model::score::{Pair, response_logprobs};
use crate::model::trainer::{Stepper, varmap_vars};

/// Vocabulary of the tiny benchmark (a character-level world).
const TINY_VOCAB: usize = 128;
/// Vocabulary of the ~30 M benchmark (about 4 M of its parameters are the embedding).
const SMALL_VOCAB: usize = 8192;
/// Seed of the random weights and inputs.
const BENCH_SEED: u64 = 1;
/// Generation runs per measurement (the fastest counts).
const GEN_REPEATS: usize = 3;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Rows per generation batch and per training step.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Prompt length for generation; sequence length for the training step.
    #[arg(long, default_value_t = 64)]
    pub seq_len: usize,
    /// New tokens per row (greedy, no early stop).
    #[arg(long, default_value_t = 32)]
    pub new_tokens: usize,
    /// Timed training steps (after one warm-up step).
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// Response tokens per training row (the rest is the masked prompt); 0: all but the first.
    #[arg(long, default_value_t = 0)]
    pub response_len: usize,
    /// Only this preset (default: tiny, world and small30m).
    #[arg(long, value_enum)]
    pub preset: Option<PresetArg>,
    /// Add digests of the logits, greedy tokens and trained weights (see the module docs).
    #[arg(long)]
    pub digest: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// A [`Preset`] on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PresetArg {
    Tiny,
    World,
    Small30m,
}

impl From<PresetArg> for Preset {
    fn from(p: PresetArg) -> Preset {
        match p {
            PresetArg::Tiny => Preset::Tiny,
            PresetArg::World => Preset::World,
            PresetArg::Small30m => Preset::Small30M,
        }
    }
}

/// A word-level tokenizer with ids `0..vocab` (`t0`, `t1`, …), for benchmarks and tests.
pub fn synthetic_tokenizer(vocab: usize) -> anyhow::Result<Tokenizer> {
    let map: HashMap<String, u32> = (0..vocab as u32).map(|i| (format!("t{i}"), i)).collect();
    let model = WordLevel::builder()
        .vocab(map.into_iter().collect())
        .unk_token("t0".into())
        .build()
        .map_err(|e| anyhow::anyhow!("word-level tokenizer: {e}"))?;
    Ok(Tokenizer::new(model))
}

/// Deterministic pseudo-random ids in `1..vocab` (no RNG state shared with anything).
fn ids(n: usize, vocab: usize, salt: usize) -> Vec<u32> {
    (0..n)
        .map(|i| (1 + (i * 7919 + salt * 104_729) % (vocab - 1)) as u32)
        .collect()
}

/// Best-of-`GEN_REPEATS` seconds and the generated tokens of one greedy generation.
fn time_generation(
    m: &Model,
    prompts: &[Vec<u32>],
    n: usize,
) -> anyhow::Result<(f64, Vec<Vec<u32>>)> {
    let params = GenerateParams {
        max_new_tokens: n,
        sampler: Sampler::Greedy,
        stop_ids: vec![],
        pad_id: 0,
    };
    let seeds = vec![0; prompts.len()];
    let mut best = (f64::INFINITY, vec![]);
    for _ in 0..GEN_REPEATS {
        let start = Instant::now();
        let out = generate(&m.decoder, prompts, &seeds, &params, Adapters::On)?;
        let secs = start.elapsed().as_secs_f64();
        if secs < best.0 {
            best = (secs, out.into_iter().map(|g| g.token_ids).collect());
        }
    }
    Ok(best)
}

/// Mean milliseconds of one training step's parts.
struct StepTimes {
    forward: f64,
    backward: f64,
    optimizer: f64,
}

/// Mean [`StepTimes`] over `steps` SFT-style steps after one warm-up.
fn time_training(m: &Model, prompts: &[Vec<u32>], a: &BenchArgs) -> anyhow::Result<StepTimes> {
    let split = match a.response_len {
        0 => 1,
        n => a.seq_len.saturating_sub(n).max(1),
    };
    let items: Vec<Pair> = prompts
        .iter()
        .map(|p| Pair {
            prompt: p[..split].to_vec(),
            response: p[split..].to_vec(),
        })
        .collect();
    let tokens: usize = items.iter().map(|p| p.response.len()).sum();
    let schedule = LrSchedule::new(ScheduleKind::Constant, 1e-3, 0, 1 + a.steps as u64)?;
    let mut stepper = Stepper::new(
        varmap_vars(&m.varmap)?,
        AdamWParams::default(),
        schedule,
        Some(1.0),
    )?;
    let mut t = StepTimes {
        forward: 0.0,
        backward: 0.0,
        optimizer: 0.0,
    };
    for step in 0..=a.steps {
        let start = Instant::now();
        let loss = (response_logprobs(&m.decoder, &items, 0, Adapters::On)?
            .sum_all()?
            .neg()?
            / tokens.max(1) as f64)?;
        loss.to_scalar::<f32>()?;
        let forward_s = start.elapsed().as_secs_f64();
        let grads = loss.backward()?;
        anyhow::ensure!(
            grads.get(m.tensors()[0].1.as_ref()).is_some(),
            "no gradient reached the embeddings"
        );
        let backward_s = start.elapsed().as_secs_f64();
        stepper.accumulate(&grads)?;
        stepper.step()?;
        if step > 0 {
            t.forward += forward_s;
            t.backward += backward_s - forward_s;
            t.optimizer += start.elapsed().as_secs_f64() - backward_s;
        }
    }
    let n = a.steps.max(1) as f64 / 1000.0;
    Ok(StepTimes {
        forward: t.forward / n,
        backward: t.backward / n,
        optimizer: t.optimizer / n,
    })
}

fn bench_one(preset: Preset, a: &BenchArgs) -> anyhow::Result<Value> {
    let vocab = match preset {
        Preset::Tiny | Preset::World => TINY_VOCAB,
        Preset::Small30M => SMALL_VOCAB,
    };
    let tok = synthetic_tokenizer(vocab)?;
    let m = Model::from_scratch(tok, json!({}), preset, BENCH_SEED, &Device::Cpu)?;
    let prompts: Vec<Vec<u32>> = (0..a.batch).map(|r| ids(a.seq_len, vocab, r)).collect();
    // Prefill (+ the first token), then the whole run: the difference is pure decoding.
    let (prefill_s, _) = time_generation(&m, &prompts, 1)?;
    let (gen_s, greedy) = time_generation(&m, &prompts, a.new_tokens.max(2))?;
    let generated: usize = greedy.iter().map(Vec::len).sum();
    let digests = if a.digest {
        let batch = Batch::padded(&prompts, 0, Padding::Right)?;
        let logits = m.decoder.forward(&batch, None, Adapters::On)?;
        let tokens: Vec<u32> = greedy.concat();
        json!({"logits": digest_f32(&[logits])?, "greedy": digest_u32(&tokens)})
    } else {
        Value::Null
    };
    let decode_s = gen_s - prefill_s;
    let decode_tok_s = if decode_s > 0.0 {
        json!((generated - a.batch) as f64 / decode_s)
    } else {
        Value::Null
    };
    let t = time_training(&m, &prompts, a)?;
    let digests = match digests {
        Value::Object(mut d) => {
            let weights: Vec<_> = m.tensors().iter().map(|(_, t)| t.clone()).collect();
            d.insert("trained".into(), json!(digest_f32(&weights)?));
            Value::Object(d)
        }
        other => other,
    };
    Ok(json!({
        "preset": format!("{preset:?}"),
        "parameters": m.param_count(),
        "generate_tokens_per_s": generated as f64 / gen_s,
        "decode_tokens_per_s": decode_tok_s,
        "prefill_ms": 1000.0 * prefill_s,
        "train_step_ms": t.forward + t.backward + t.optimizer,
        "train_forward_ms": t.forward,
        "train_backward_ms": t.backward,
        "train_optimizer_ms": t.optimizer,
        "batch": a.batch,
        "seq_len": a.seq_len,
        "new_tokens": a.new_tokens,
        "digests": digests,
    }))
}

/// First 16 hex digits of BLAKE3 over the bits of `tensors` (flattened, in order).
fn digest_f32(tensors: &[candle_core::Tensor]) -> anyhow::Result<String> {
    let mut h = blake3::Hasher::new();
    for t in tensors {
        for x in t.flatten_all()?.to_vec1::<f32>()? {
            h.update(&x.to_bits().to_le_bytes());
        }
    }
    Ok(h.finalize().to_hex()[..16].to_string())
}

/// First 16 hex digits of BLAKE3 over `ids`.
fn digest_u32(ids: &[u32]) -> String {
    let mut h = blake3::Hasher::new();
    for x in ids {
        h.update(&x.to_le_bytes());
    }
    h.finalize().to_hex()[..16].to_string()
}

/// Run the benchmark for both presets and print the results.
pub fn run(a: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.batch > 0 && a.seq_len > 1,
        "--batch must be ≥ 1 and --seq-len ≥ 2"
    );
    let presets = match a.preset {
        Some(p) => vec![Preset::from(p)],
        None => vec![Preset::Tiny, Preset::World, Preset::Small30M],
    };
    let results = presets
        .into_iter()
        .map(|p| bench_one(p, a))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if a.json {
        println!(
            "{}",
            json!({ "threads": rayon::current_num_threads(), "results": results })
        );
        return Ok(());
    }
    for r in &results {
        println!(
            "{:<9} {:>9} params  generate {:>7.1} tok/s (decode {:>7.1} tok/s, prefill {:>7.1} ms)  \
             train step ({}x{}) {:>8.1} ms (fwd {:>7.1}, bwd {:>7.1}, opt {:>6.1} ms)",
            r["preset"].as_str().unwrap_or("?"),
            r["parameters"],
            r["generate_tokens_per_s"].as_f64().unwrap_or(0.0),
            r["decode_tokens_per_s"].as_f64().unwrap_or(f64::NAN),
            r["prefill_ms"].as_f64().unwrap_or(0.0),
            a.batch,
            a.seq_len,
            r["train_step_ms"].as_f64().unwrap_or(0.0),
            r["train_forward_ms"].as_f64().unwrap_or(0.0),
            r["train_backward_ms"].as_f64().unwrap_or(0.0),
            r["train_optimizer_ms"].as_f64().unwrap_or(0.0),
        );
        if a.digest {
            println!("          digests {}", r["digests"]);
        }
    }
    Ok(())
}
