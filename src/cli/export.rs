//! `scir export --model-answers FORMAT`: answers of one model for an external judge
//! (formats and fields in [`crate::export`]); `scir export --preferences`: what the arms
//! trained on, as TRL preference datasets ([`crate::export::preferences`]).
//!
//! The model is `--model DIR`, or model@`--iter` of `--arm` of the pipeline's artifacts:
//! iteration 0 is `models.start`, iteration k the `models.step` stage's checkpoint
//! (`artifacts/models/<arm>/<stage>@<k>`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::{PipelineArg, StoreArgs};
use crate::engine::layout::Layout;
use crate::engine::stage::Registry;
use crate::export::{self, Format};
use crate::model::generate::Sampler;
use crate::model::{Model, Weights};
use crate::stages::common::answering::AnswerSettings;
use crate::user_err;

const AFTER_HELP: &str = "\
Formats (fields checked against the readers of FastChat and AlpacaEval):
  mt-bench     OUT/model_answer/<model_id>.jsonl: question_id, answer_id, model_id,
               choices[0].turns (turn 2 answered with turn 1 and its answer in context);
               copy it to FastChat's data/mt_bench/model_answer/ and run gen_judgment.py
  alpaca-eval  OUT/<model_id>/model_outputs.json: [{instruction, output, generator, dataset}];
               alpaca_eval --model_outputs OUT/<Mt>/model_outputs.json \\
                           --reference_outputs OUT/<M0>/model_outputs.json

Defaults: greedy decoding (the same bytes on every run), questions from ../shared/data
(mt-bench/question.jsonl; self-instruct/user_oriented_instructions.jsonl), OUT =
<artifacts>/exports/<format>, model_id = <pipeline>-<arm>-m<k>.

--preferences writes OUT/<arm>/iter-<k>.parquet and .jsonl (OUT = <artifacts>/exports/
preferences): each iteration's selected, labelled pairs as TRL preference data (prompt,
chosen, rejected) with scir's p_irm, p_grm, consistent, label; load them with
datasets.load_dataset(\"parquet\", data_files={\"iter_1\": \"OUT/scir/iter-1.parquet\"}).

--sft writes OUT/<arm>/iter-<k>.parquet and .jsonl (OUT = <artifacts>/exports/sft): each
iteration's greedy answers (the `answers` table, or --table NAME, e.g. answers_m0_answers) as
TRL conversational SFT data: messages [{role: user, ..}, {role: assistant, ..}], prompt_id,
finished (false: the answer ran out of max_new_tokens).

Examples:
  scir export --preferences --artifacts artifacts
  scir export --sft --artifacts artifacts-smollm2 --arm scir
  scir export --model-answers mt-bench examples/smollm2.yaml --arm scir --iter 2
  scir export --model-answers alpaca-eval examples/smollm2.yaml --arm srlm --iter 0
  scir export --model-answers mt-bench --model examples/smollm2/model --model-id smollm2";

/// `--preferences` writes under `<artifacts>/exports/` here by default.
const PREFERENCES_DIR: &str = "preferences";
/// `--sft` writes under `<artifacts>/exports/` here by default.
const SFT_DIR: &str = "sft";

/// Default question files, relative to the current directory.
const MT_BENCH_QUESTIONS: &str = "../shared/data/mt-bench/question.jsonl";
const ALPACA_QUESTIONS: &str = "../shared/data/self-instruct/user_oriented_instructions.jsonl";

/// Answer a benchmark's questions with one model and write them for an external judge.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["model_answers", "preferences", "sft"])))]
pub struct ExportArgs {
    /// The answer format.
    #[arg(long, value_name = "FORMAT", value_enum)]
    pub model_answers: Option<Format>,
    /// Instead of answers: every arm's (or --arm's) trained pairs per iteration as TRL
    /// preference data, OUT/<arm>/iter-<k>.parquet and .jsonl (read from the artifacts).
    #[arg(long, conflicts_with_all = ["model", "iter"])]
    pub preferences: bool,
    /// Instead of answers: every arm's (or --arm's) greedy answers per iteration as TRL
    /// conversational SFT data, OUT/<arm>/iter-<k>.parquet and .jsonl (read from the
    /// artifacts).
    #[arg(long, conflicts_with_all = ["model", "iter"])]
    pub sft: bool,
    /// With --sft: the answers table of the public view to export.
    #[arg(long, value_name = "NAME", requires = "sft", default_value = export::sft::DEFAULT_TABLE)]
    pub table: String,
    /// The pipeline file whose model is exported (with --arm/--iter).
    #[arg(value_name = "PIPELINE", default_value = "pipeline.yaml")]
    pub pipeline: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
    /// The arm whose model answers (default: the only arm).
    #[arg(long)]
    pub arm: Option<String>,
    /// The iteration whose model answers: 0 = M0, k = after k iterations (default: the last).
    #[arg(long)]
    pub iter: Option<u32>,
    /// A Hugging Face model directory instead of a pipeline's model.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["arm", "iter"])]
    pub model: Option<PathBuf>,
    /// The name written into the file (and its file name).
    #[arg(long)]
    pub model_id: Option<String>,
    /// The question file (MT-Bench question.jsonl, or Self-Instruct-style JSONL).
    #[arg(long, value_name = "FILE")]
    pub questions: Option<PathBuf>,
    /// Answer only the first N questions.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Where to write (default: <artifacts>/exports/<format>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Most new tokens per answer (per turn).
    #[arg(long, default_value_t = 512)]
    pub max_new_tokens: usize,
    /// Sample at this temperature instead of greedy decoding (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Seed of the sampling (with --temperature).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Conversations generated together (speed only).
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
}

pub fn run(args: &ExportArgs, registry: &Registry) -> anyhow::Result<ExitCode> {
    let Some(format) = args.model_answers else {
        return from_artifacts(args);
    };
    if args.max_new_tokens == 0 {
        anyhow::bail!(user_err!("--max-new-tokens must be at least 1"));
    }
    if !(args.temperature >= 0.0 && args.temperature.is_finite()) {
        anyhow::bail!(user_err!("--temperature must be 0 (greedy) or positive"));
    }
    let (dir, default_id) = resolve_model(args, registry)?;
    let model_id = args.model_id.clone().unwrap_or(default_id);
    if model_id.is_empty() || model_id.contains(['/', '\\']) || model_id.starts_with('.') {
        anyhow::bail!(user_err!(
            "--model-id {model_id:?}: must be a plain file name (no '/', not starting with '.')"
        ));
    }
    let questions = args.questions.clone().unwrap_or_else(|| {
        PathBuf::from(match format {
            Format::MtBench => MT_BENCH_QUESTIONS,
            Format::AlpacaEval => ALPACA_QUESTIONS,
        })
    });
    let out_dir = args.out.clone().unwrap_or_else(|| {
        Layout::new(&args.store.artifacts)
            .exports_dir()
            .join(format.name())
    });
    let settings = AnswerSettings {
        max_new_tokens: args.max_new_tokens,
        sampler: Sampler::at(args.temperature, 1.0),
        batch_size: args.batch_size.max(1),
        seed: args.seed,
    };
    let model = Model::load(&dir, Weights::Frozen, &crate::stages::common::device())?;
    let text = match format {
        Format::MtBench => {
            let mut qs = export::read_mt_bench(&questions)?;
            qs.truncate(args.limit.unwrap_or(usize::MAX));
            let turns: usize = qs.iter().map(|q| q.turns.len()).sum();
            let bar = progress(turns as u64, "turns");
            let answers = export::answer_mt_bench(&model, &qs, &settings, &mut |n| bar.inc(n))?;
            bar.finish_and_clear();
            export::mt_bench_jsonl(&model_id, &qs, &answers)?
        }
        Format::AlpacaEval => {
            let mut tasks = crate::stages::common::self_instruct::read_self_instruct(&questions)?;
            tasks.truncate(args.limit.unwrap_or(usize::MAX));
            let bar = progress(tasks.len() as u64, "instructions");
            let outputs =
                export::answer_instructions(&model, &tasks, &settings, &mut |n| bar.inc(n))?;
            bar.finish_and_clear();
            export::alpaca_eval_json(&model_id, &tasks, &outputs)?
        }
    };
    let path = export::output_path(format, &out_dir, &model_id);
    export::write_atomic(&path, &text)?;
    outln!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// `--preferences` or `--sft`: the trained pairs or the answers of the artifacts' arms.
fn from_artifacts(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let artifacts = &args.store.artifacts;
    let dir = if args.sft { SFT_DIR } else { PREFERENCES_DIR };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| Layout::new(artifacts).exports_dir().join(dir));
    let arm = args.arm.as_deref();
    let written = if args.sft {
        export::sft::export(artifacts, &args.table, arm, &out)?
    } else {
        export::preferences::export(artifacts, arm, &out)?
    };
    for path in written {
        outln!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "export {{bar:30}} {{pos}}/{{len}} {what} {{elapsed}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// The model directory and the default model id.
fn resolve_model(args: &ExportArgs, registry: &Registry) -> anyhow::Result<(PathBuf, String)> {
    if let Some(dir) = &args.model {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty() && n != "model")
            .unwrap_or_else(|| "scir-model".into());
        return Ok((dir.clone(), name));
    }
    let path = &args.pipeline;
    let arg = PipelineArg {
        pipeline: path.clone(),
        seed: None,
    };
    let (pipeline, _) = super::load(&arg, registry)?;
    let chain = pipeline.models.as_ref().ok_or_else(|| {
        user_err!(
            "{}: has no `models:` section, so it makes no models to export; pass --model DIR",
            path.display()
        )
    })?;
    let arms: Vec<&str> = pipeline.arms.iter().map(|a| a.name.as_str()).collect();
    let arm = match (&args.arm, arms.as_slice()) {
        (Some(a), _) if arms.contains(&a.as_str()) => a.clone(),
        (None, [only]) => only.to_string(),
        (a, _) => {
            anyhow::bail!(user_err!(
                "{}: {}; the arms are {}: pass --arm NAME",
                path.display(),
                a.as_ref()
                    .map_or("several arms".to_string(), |a| format!("no arm {a:?}")),
                arms.join(", ")
            ))
        }
    };
    let k = args.iter.unwrap_or(pipeline.iterations);
    if k > pipeline.iterations {
        anyhow::bail!(user_err!(
            "--iter {k}: {} has {} iterations",
            path.display(),
            pipeline.iterations
        ));
    }
    let stage = if k == 0 { &chain.start } else { &chain.step };
    let dir = model_link(&args.store.artifacts, &arm, stage, k);
    if !dir.join("config.json").is_file() {
        anyhow::bail!(user_err!(
            "{}: no model there; run the pipeline first (scir run {} --artifacts {})",
            dir.display(),
            path.display(),
            args.store.artifacts.display()
        ));
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scir".into());
    Ok((dir, format!("{stem}-{arm}-m{k}")))
}

/// The public view's link to the checkpoint of `stage@k` in `arm`.
fn model_link(artifacts: &Path, arm: &str, stage: &str, k: u32) -> PathBuf {
    artifacts.join(Layout::model_link(arm, stage, k))
}
