//! `scir model …`: inspect, score with and generate from a checkpoint, and benchmark.
//!
//! Token ids are `encode(prompt, special tokens) ++ encode(response, no special tokens)`
//! (+ EOS with `--eos`), with no chat template. `--json` prints one JSON object on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use candle_core::Device;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::bench::PresetArg;
use crate::model::config::ModelConfig;
use crate::model::generate::{GenerateParams, Sampler, generate};
use crate::model::score::{Pair, response_logprobs_vec};
use crate::model::{Adapters, Model, Preset, Weights};
use crate::user_err;

#[derive(Debug, Subcommand)]
pub enum ModelCmd {
    /// Architecture, parameter count, vocabulary and dtype of a checkpoint.
    Info(InfoArgs),
    /// Sum of the response tokens' log-probabilities given the prompt.
    Logprobs(LogprobsArgs),
    /// Generate a continuation of a prompt.
    Generate(GenerateArgs),
    /// Print generation tokens/s and training-step times for built-in sizes.
    Bench(crate::bench::BenchArgs),
    /// The scir side of bench/compare.sh (see BENCHMARKS.md).
    #[command(hide = true)]
    BenchCompare(crate::bench::compare::CompareArgs),
    /// Make a model from scratch (random, seeded) for a tokenizer directory.
    Init(InitArgs),
    /// Load a checkpoint (f32/f16/bf16, sharded or not) and save it as one f32 file.
    Convert(ConvertArgs),
    /// Import a llama.cpp GGUF file as a Hugging Face directory (f32).
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The GGUF file (Llama architecture, byte-level BPE tokenizer).
    #[arg(long)]
    pub gguf: PathBuf,
    /// Output directory; must not exist (or be empty). Written atomically.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// A directory with tokenizer.json (and optionally tokenizer_config.json).
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// Model size.
    #[arg(long, value_enum, default_value_t = PresetArg::Tiny)]
    pub preset: PresetArg,
    /// A Hugging Face config.json (Llama, Mistral or Qwen2) giving the size instead of a
    /// preset, e.g. a real model's config with other widths for a random model of that shape.
    #[arg(long, conflicts_with = "preset")]
    pub config: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory (Hugging Face layout).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    #[arg(long)]
    pub model: PathBuf,
    /// Output directory (Hugging Face layout, f32).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// A Hugging Face model directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogprobsArgs {
    #[arg(long)]
    pub model: PathBuf,
    /// The prompt (encoded with special tokens).
    #[arg(long)]
    pub prompt: String,
    /// The response (encoded without special tokens).
    #[arg(long)]
    pub response: String,
    /// Append the EOS token to the response.
    #[arg(long)]
    pub eos: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[arg(long)]
    pub model: PathBuf,
    /// The prompt (encoded with special tokens).
    #[arg(long)]
    pub prompt: String,
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Always take the most likely token.
    #[arg(long, conflicts_with_all = ["temperature", "top_p"])]
    pub greedy: bool,
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Seed of the sampling RNG.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: &ModelCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ModelCmd::Info(a) => info(a),
        ModelCmd::Logprobs(a) => logprobs(a),
        ModelCmd::Generate(a) => gen_cmd(a),
        ModelCmd::Bench(a) => crate::bench::run(a),
        ModelCmd::BenchCompare(a) => crate::bench::compare::run(a),
        ModelCmd::Init(a) => init(a),
        ModelCmd::Convert(a) => Model::load(&a.model, Weights::Frozen, &Device::Cpu)?.save(&a.out),
        ModelCmd::Import(a) => import(a),
    }
    .map(|()| ExitCode::SUCCESS)
}

fn init(a: &InitArgs) -> anyhow::Result<()> {
    let tok_path = a.tokenizer.join("tokenizer.json");
    let tokenizer = crate::model::tokenizer::read_tokenizer(&tok_path)?;
    let cfg_path = a.tokenizer.join("tokenizer_config.json");
    let tokenizer_config = if cfg_path.is_file() {
        let text = std::fs::read_to_string(&cfg_path)
            .map_err(|e| user_err!("{}: cannot read ({e})", cfg_path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| user_err!("{}: not valid JSON ({e})", cfg_path.display()))?
    } else {
        json!({})
    };
    let m = match &a.config {
        Some(path) => {
            let cfg = ModelConfig::from_file(path)?;
            let vocab = tokenizer.get_vocab_size(true);
            if cfg.vocab_size < vocab {
                return Err(user_err!(
                    "{}: vocab_size {} is smaller than the tokenizer's {vocab} tokens",
                    path.display(),
                    cfg.vocab_size
                )
                .into());
            }
            Model::from_config(cfg, tokenizer, tokenizer_config, a.seed, &Device::Cpu)?
        }
        None => Model::from_scratch(
            tokenizer,
            tokenizer_config,
            Preset::from(a.preset),
            a.seed,
            &Device::Cpu,
        )?,
    };
    m.save(&a.out)?;
    println!(
        "{} parameters written to {}",
        m.param_count(),
        a.out.display()
    );
    Ok(())
}

fn import(a: &ImportArgs) -> anyhow::Result<()> {
    let r = crate::model::gguf::import(&a.gguf, &a.out)?;
    let types: Vec<String> = r
        .source_types
        .iter()
        .map(|(t, n)| format!("{n} {t}"))
        .collect();
    println!(
        "imported {} tensors ({}; {} parameters, vocabulary {}) into {} in {:.1} s",
        r.tensors,
        types.join(", "),
        r.parameters,
        r.vocab_size,
        r.out.display(),
        r.seconds
    );
    Ok(())
}

fn info(a: &InfoArgs) -> anyhow::Result<()> {
    let m = Model::load(&a.model, Weights::Frozen, &Device::Cpu)?;
    let c = m.config();
    let v = json!({
        "architecture": c.arch.class_name(c.head),
        "model_type": c.arch.model_type(),
        "parameters": m.param_count(),
        "vocab_size": c.vocab_size,
        "tokenizer_vocab_size": m.text.tokenizer().get_vocab_size(true),
        "dtype": m.source_dtype,
        "hidden_size": c.hidden_size,
        "layers": c.num_layers,
        "heads": c.num_heads,
        "kv_heads": c.num_kv_heads,
        "head_dim": c.head_dim,
        "tied_embeddings": c.tie_word_embeddings,
        "chat_template": m.text.chat_template().is_some(),
    });
    if a.json {
        println!("{v}");
    } else {
        for (k, val) in v.as_object().expect("an object literal") {
            println!("{k:<22}{val}");
        }
    }
    Ok(())
}

fn logprobs(a: &LogprobsArgs) -> anyhow::Result<()> {
    let m = Model::load(&a.model, Weights::Frozen, &Device::Cpu)?;
    let pair = Pair {
        prompt: m.text.encode_prompt(&a.prompt)?,
        response: m.text.encode_response(&a.response, a.eos)?,
    };
    let tokens = pair.response.len();
    let lp = response_logprobs_vec(&m.decoder, &[pair], m.text.pad_id(), Adapters::On, 1)?[0];
    if a.json {
        println!("{}", json!({"logprob": lp, "tokens": tokens}));
    } else {
        println!("logprob {lp} over {tokens} response tokens");
    }
    Ok(())
}

fn gen_cmd(a: &GenerateArgs) -> anyhow::Result<()> {
    let m = Model::load(&a.model, Weights::Frozen, &Device::Cpu)?;
    let temperature = if a.greedy { 0.0 } else { a.temperature };
    let sampler = Sampler::at(temperature, a.top_p);
    let params = GenerateParams::for_text(&m.text, a.max_new_tokens, sampler);
    let prompt = m.text.encode_prompt(&a.prompt)?;
    let out = generate(&m.decoder, &[prompt], &[a.seed], &params, Adapters::On)?.remove(0);
    let text = m.text.decode(&out.token_ids, true)?;
    if a.json {
        println!("{}", json!({"text": text, "token_ids": out.token_ids}));
    } else {
        println!("{text}");
    }
    Ok(())
}
