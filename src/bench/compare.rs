//! `scir model bench-compare …` (hidden): the scir side of `bench/compare.sh`, which runs
//! the same workloads through PyTorch/transformers (`bench/torch_side.py`) on the same
//! checkpoint and reports the ratio. A benchmark, not a test: numbers depend on the machine.
//!
//! ```text
//! init    --size tiny|small30m --out DIR      random-weight checkpoint, synthetic vocabulary
//! run     --model DIR --workload W.json --task generate|score|judge|train|prefill|decode
//! matmul  --n 2048                            f32 (n×n)·(n×n) GFLOP/s through candle
//! mem1b                                       ~1 B-parameter random model: generate + score
//! ```
//!
//! The workload file (written by `torch_side.py workload`) holds the token ids both sides
//! use: `generate` {prompts, samples, new_tokens, temperature}, `score` {prompts, responses,
//! chunk}, `judge` {prompts (both orders), tokens [A, B], chunk}, `train` {prompts, chosen,
//! rejected, ref_chosen, ref_rejected, beta, lr}; `bench/llamacpp.sh` writes `generate`,
//! `prefill` {prompt} (one batch-1 forward over the prompt, like llama-bench's `pp`) and
//! `decode` {start, new_tokens} (batch-1 greedy tokens after a one-token prompt, no stop,
//! like llama-bench's `tg`); a task whose section is missing is an error. `run` does one
//! warm-up on a small slice (for `train`: one whole step), then one timed pass, and prints
//! one JSON line: `{task, seconds, count, rate, peak_rss_mib, threads}` (`rate` = count /
//! seconds; `count` is tokens, sequences, judge prompts (one per pair of orders) or steps;
//! prompt tokens for `prefill`). Peak RSS is the
//! process's `VmHWM` (warm-up and loading included), the same measure the torch side reads.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::{Args, Subcommand, ValueEnum};
use serde::Deserialize;
use serde_json::json;

use super::synthetic_tokenizer;
use crate::loss::dpo::dpo_sigmoid;
use crate::model::checkpoint::{Model, Weights};
use crate::model::config::{Arch, ModelConfig, Preset};
use crate::model::generate::{GenerateParams, Sampler, generate};
use crate::model::linear::Adapters;
use crate::model::optim::{AdamW, AdamWParams, clip_grad_norm};
use crate::model::score::{Pair, response_logprobs_vec, verdict_probs_vec};
use crate::model::trainer::{StepOutputs, varmap_vars};

/// Vocabulary of the tiny checkpoint (a character-level world).
const TINY_VOCAB: usize = 128;
/// Vocabulary of the ~30 M checkpoint.
const SMALL_VOCAB: usize = 8192;
/// Vocabulary of the ~1 B memory check (Llama-2 size).
const BIG_VOCAB: usize = 32_000;
/// Seed of the random weights.
const SEED: u64 = 1;
/// Rows, prompts or pairs in a warm-up slice.
const WARMUP_ROWS: usize = 4;
/// New tokens in the generation warm-up.
const WARMUP_NEW_TOKENS: usize = 4;
/// TRL's default `max_grad_norm`.
const MAX_GRAD_NORM: f64 = 1.0;
/// Timed matmul repetitions (the fastest counts).
const MATMUL_REPEATS: usize = 5;

#[derive(Debug, Args)]
pub struct CompareArgs {
    #[command(subcommand)]
    pub cmd: CompareCmd,
}

#[derive(Debug, Subcommand)]
pub enum CompareCmd {
    /// Write a random-weight checkpoint with a synthetic word-level vocabulary.
    Init {
        #[arg(long, value_enum)]
        size: Size,
        #[arg(long)]
        out: PathBuf,
    },
    /// Time one workload on a checkpoint.
    Run {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        workload: PathBuf,
        #[arg(long, value_enum)]
        task: Task,
    },
    /// f32 matmul throughput through candle.
    Matmul {
        #[arg(long, default_value_t = 2048)]
        n: usize,
    },
    /// A ~1 B-parameter random model generates and scores a little; prints peak RSS.
    Mem1b {
        #[arg(long, default_value_t = 8)]
        new_tokens: usize,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Size {
    Tiny,
    Small30m,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Task {
    Generate,
    Score,
    Judge,
    Train,
    Prefill,
    Decode,
}

#[derive(Debug, Deserialize)]
struct GenerateSpec {
    prompts: Vec<Vec<u32>>,
    samples: usize,
    new_tokens: usize,
    temperature: f64,
}

#[derive(Debug, Deserialize)]
struct ScoreSpec {
    prompts: Vec<Vec<u32>>,
    responses: Vec<Vec<u32>>,
    chunk: usize,
}

#[derive(Debug, Deserialize)]
struct JudgeSpec {
    prompts: Vec<Vec<u32>>,
    tokens: [u32; 2],
    chunk: usize,
}

#[derive(Debug, Deserialize)]
struct TrainSpec {
    prompts: Vec<Vec<u32>>,
    chosen: Vec<Vec<u32>>,
    rejected: Vec<Vec<u32>>,
    ref_chosen: Vec<f32>,
    ref_rejected: Vec<f32>,
    beta: f64,
    lr: f64,
}

#[derive(Debug, Deserialize)]
struct PrefillSpec {
    prompt: Vec<u32>,
}

#[derive(Debug, Deserialize)]
struct DecodeSpec {
    start: u32,
    new_tokens: usize,
}

/// One section per task; a file may hold only the sections its script runs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Workload {
    generate: Option<GenerateSpec>,
    score: Option<ScoreSpec>,
    judge: Option<JudgeSpec>,
    train: Option<TrainSpec>,
    prefill: Option<PrefillSpec>,
    decode: Option<DecodeSpec>,
}

/// The workload's section for `task`, or an error naming the file.
fn section<'a, T>(spec: &'a Option<T>, workload: &Path, task: Task) -> Result<&'a T> {
    let name = format!("{task:?}").to_lowercase();
    spec.as_ref().with_context(|| {
        format!(
            "{}: no `{name}` section (--task {name} needs one)",
            workload.display()
        )
    })
}

/// Entry point of `scir model bench-compare`.
pub fn run(a: &CompareArgs) -> Result<()> {
    match &a.cmd {
        CompareCmd::Init { size, out } => init(*size, out),
        CompareCmd::Run {
            model,
            workload,
            task,
        } => run_task(model, workload, *task),
        CompareCmd::Matmul { n } => matmul(*n),
        CompareCmd::Mem1b { new_tokens } => mem1b(*new_tokens),
    }
}

fn init(size: Size, out: &Path) -> Result<()> {
    let (preset, vocab) = match size {
        Size::Tiny => (Preset::Tiny, TINY_VOCAB),
        Size::Small30m => (Preset::Small30M, SMALL_VOCAB),
    };
    let m = Model::from_scratch(
        synthetic_tokenizer(vocab)?,
        json!({}),
        preset,
        SEED,
        &Device::Cpu,
    )?;
    m.save(out)?;
    println!("{}", json!({"parameters": m.param_count(), "out": out}));
    Ok(())
}

/// Peak resident set size of this process in MiB (`VmHWM`), if the kernel reports it.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn run_task(model: &Path, workload: &Path, task: Task) -> Result<()> {
    let text = std::fs::read_to_string(workload)
        .with_context(|| format!("{}: cannot read", workload.display()))?;
    let w: Workload = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a workload file", workload.display()))?;
    let weights = match task {
        Task::Train => Weights::Trainable,
        _ => Weights::Frozen,
    };
    let m = Model::load(model, weights, &Device::Cpu)?;
    let (seconds, count) = match task {
        Task::Generate => {
            let g = section(&w.generate, workload, task)?;
            let few = &g.prompts[..WARMUP_ROWS.min(g.prompts.len())];
            time_generate(&m, few, 1, WARMUP_NEW_TOKENS, g.temperature)?;
            time_generate(&m, &g.prompts, g.samples, g.new_tokens, g.temperature)?
        }
        Task::Score => time_score(&m, section(&w.score, workload, task)?)?,
        Task::Judge => time_judge(&m, section(&w.judge, workload, task)?)?,
        Task::Train => time_train(&m, section(&w.train, workload, task)?)?,
        Task::Prefill => time_prefill(&m, section(&w.prefill, workload, task)?)?,
        Task::Decode => time_decode(&m, section(&w.decode, workload, task)?)?,
    };
    println!(
        "{}",
        json!({
            "task": format!("{task:?}").to_lowercase(),
            "seconds": seconds,
            "count": count,
            "rate": count as f64 / seconds,
            "peak_rss_mib": peak_rss_mib(),
            "threads": rayon::current_num_threads(),
        })
    );
    Ok(())
}

/// Seconds and sequences of scoring every (prompt, response) pair, after a warm-up.
fn time_score(m: &Model, s: &ScoreSpec) -> Result<(f64, usize)> {
    let pairs: Vec<Pair> = s
        .prompts
        .iter()
        .zip(&s.responses)
        .map(|(p, r)| Pair {
            prompt: p.clone(),
            response: r.clone(),
        })
        .collect();
    let few = &pairs[..WARMUP_ROWS.min(pairs.len())];
    response_logprobs_vec(&m.decoder, few, 0, Adapters::On, s.chunk)?;
    let start = Instant::now();
    response_logprobs_vec(&m.decoder, &pairs, 0, Adapters::On, s.chunk)?;
    Ok((start.elapsed().as_secs_f64(), pairs.len()))
}

/// Seconds and judged prompts (both orders of one count once) of reading every verdict.
fn time_judge(m: &Model, j: &JudgeSpec) -> Result<(f64, usize)> {
    let toks = (j.tokens[0], j.tokens[1]);
    let few = &j.prompts[..WARMUP_ROWS.min(j.prompts.len())];
    verdict_probs_vec(&m.decoder, few, toks, 0, Adapters::On, j.chunk)?;
    let start = Instant::now();
    verdict_probs_vec(&m.decoder, &j.prompts, toks, 0, Adapters::On, j.chunk)?;
    Ok((start.elapsed().as_secs_f64(), j.prompts.len() / 2))
}

/// Greedy generation of `new_tokens` from each of `rows`, never stopping early.
fn greedy(m: &Model, rows: &[Vec<u32>], new_tokens: usize) -> Result<usize> {
    let params = GenerateParams {
        max_new_tokens: new_tokens,
        sampler: Sampler::Greedy,
        stop_ids: vec![],
        pad_id: 0,
    };
    let seeds = vec![0; rows.len()];
    let out = generate(&m.decoder, rows, &seeds, &params, Adapters::On)?;
    Ok(out.iter().map(|g| g.token_ids.len()).sum())
}

/// Seconds and prompt tokens of one batch-1 forward over the prompt (the prefill of a
/// one-token greedy generation), after a warm-up on the same prompt.
fn time_prefill(m: &Model, p: &PrefillSpec) -> Result<(f64, usize)> {
    let rows = [p.prompt.clone()];
    greedy(m, &rows, 1)?;
    let start = Instant::now();
    greedy(m, &rows, 1)?;
    Ok((start.elapsed().as_secs_f64(), p.prompt.len()))
}

/// Seconds and tokens of batch-1 greedy decoding after a one-token prompt, after a short
/// warm-up.
fn time_decode(m: &Model, d: &DecodeSpec) -> Result<(f64, usize)> {
    let rows = [vec![d.start]];
    greedy(m, &rows, WARMUP_NEW_TOKENS)?;
    let start = Instant::now();
    let n = greedy(m, &rows, d.new_tokens)?;
    Ok((start.elapsed().as_secs_f64(), n))
}

/// Seconds and generated tokens of one sampled generation (`samples` rows per prompt,
/// rows `i*samples..(i+1)*samples` from prompt `i`, row `r` seeded with `r`).
fn time_generate(
    m: &Model,
    prompts: &[Vec<u32>],
    samples: usize,
    new_tokens: usize,
    temperature: f64,
) -> Result<(f64, usize)> {
    let rows: Vec<Vec<u32>> = prompts
        .iter()
        .flat_map(|p| std::iter::repeat_n(p.clone(), samples))
        .collect();
    let seeds: Vec<u64> = (0..rows.len() as u64).collect();
    let params = GenerateParams {
        max_new_tokens: new_tokens,
        sampler: Sampler::Sample {
            temperature,
            top_p: 1.0,
        },
        stop_ids: vec![],
        pad_id: 0,
    };
    let start = Instant::now();
    let out = generate(&m.decoder, &rows, &seeds, &params, Adapters::On)?;
    let secs = start.elapsed().as_secs_f64();
    Ok((secs, out.iter().map(|g| g.token_ids.len()).sum()))
}

/// One DPO optimiser step (concatenated chosen+rejected forward, cached reference
/// log-probs, backward, clip to TRL's 1.0, AdamW) as a warm-up, then a timed one.
fn time_train(m: &Model, t: &TrainSpec) -> Result<(f64, usize)> {
    let n = t.prompts.len();
    let items: Vec<Pair> = [&t.chosen, &t.rejected]
        .into_iter()
        .flat_map(|side| {
            t.prompts.iter().zip(side.iter()).map(|(p, r)| Pair {
                prompt: p.clone(),
                response: r.clone(),
            })
        })
        .collect();
    let dev = Device::Cpu;
    let ref_c = Tensor::new(t.ref_chosen.as_slice(), &dev)?;
    let ref_r = Tensor::new(t.ref_rejected.as_slice(), &dev)?;
    let vars = varmap_vars(&m.varmap)?;
    let plain: Vec<_> = vars.iter().map(|(_, v)| v.clone()).collect();
    let params = AdamWParams {
        lr: t.lr,
        weight_decay: 0.0,
        ..AdamWParams::default()
    };
    let mut opt = AdamW::new(vars, params)?;
    let mut last = 0.0;
    for _ in 0..2 {
        let start = Instant::now();
        // The train stage's path: the fast recorder when it applies, else candle's autograd.
        let mut outputs = StepOutputs::new(&m.decoder, 0);
        let lp = outputs.response_logprobs(&items)?;
        let (pc, pr) = (lp.narrow(0, 0, n)?, lp.narrow(0, n, n)?);
        let loss = dpo_sigmoid(&pc, &pr, &ref_c, &ref_r, t.beta, 0.0)?
            .losses
            .mean_all()?;
        let mut grads = outputs.gradients(&loss)?;
        clip_grad_norm(&mut grads, &plain, MAX_GRAD_NORM)?;
        opt.step(&grads)?;
        last = start.elapsed().as_secs_f64();
    }
    Ok((last, 1))
}

fn matmul(n: usize) -> Result<()> {
    let dev = Device::Cpu;
    let a = Tensor::randn(0f32, 1.0, (n, n), &dev)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), &dev)?;
    a.matmul(&b)?; // warm-up
    let mut best = f64::INFINITY;
    for _ in 0..MATMUL_REPEATS {
        let start = Instant::now();
        let c = a.matmul(&b)?;
        best = best.min(start.elapsed().as_secs_f64());
        drop(c);
    }
    let gflops = 2.0 * (n as f64).powi(3) / best / 1e9;
    println!(
        "{}",
        json!({"n": n, "seconds": best, "gflops": gflops, "threads": rayon::current_num_threads()})
    );
    Ok(())
}

/// A TinyLlama-1.1B-shaped config (22 layers, hidden 2048, GQA 32/4, SwiGLU 5632).
fn config_1b() -> ModelConfig {
    let mut c = Preset::Tiny.config(BIG_VOCAB, None, vec![]);
    c.arch = Arch::Llama;
    c.hidden_size = 2048;
    c.intermediate_size = 5632;
    c.num_layers = 22;
    c.num_heads = 32;
    c.num_kv_heads = 4;
    c.head_dim = 64;
    c.tie_word_embeddings = false;
    c
}

fn mem1b(new_tokens: usize) -> Result<()> {
    let dev = Device::Cpu;
    let start = Instant::now();
    let m = Model::from_config(
        config_1b(),
        synthetic_tokenizer(BIG_VOCAB)?,
        json!({}),
        SEED,
        &dev,
    )?;
    let init_s = start.elapsed().as_secs_f64();
    let rss_init = peak_rss_mib();
    let prompts: Vec<Vec<u32>> = (0..4u32)
        .map(|r| (0..32).map(|i| 1 + (i * 31 + r * 7) % 1000).collect())
        .collect();
    let start = Instant::now();
    let (_, generated) = time_generate(&m, &prompts, 1, new_tokens, 1.0)?;
    let gen_s = start.elapsed().as_secs_f64();
    let rss_gen = peak_rss_mib();
    let pairs: Vec<Pair> = prompts
        .iter()
        .map(|p| Pair {
            prompt: p[..16].to_vec(),
            response: p[16..].to_vec(),
        })
        .collect();
    let start = Instant::now();
    let lp = response_logprobs_vec(&m.decoder, &pairs, 0, Adapters::On, 4)?;
    let score_s = start.elapsed().as_secs_f64();
    anyhow::ensure!(lp.iter().all(|x| x.is_finite()), "non-finite log-probs");
    println!(
        "{}",
        json!({
            "parameters": m.param_count(),
            "f32_weights_gib": m.param_count() as f64 * 4.0 / (1u64 << 30) as f64,
            "init_seconds": init_s, "peak_rss_mib_after_init": rss_init,
            "generate_rows": prompts.len(), "generated_tokens": generated,
            "generate_seconds": gen_s, "peak_rss_mib_after_generate": rss_gen,
            "score_rows": pairs.len(), "score_seconds": score_s,
            "peak_rss_mib": peak_rss_mib(),
            "dtype": format!("{:?}", DType::F32),
            "threads": rayon::current_num_threads(),
        })
    );
    Ok(())
}
