//! `pipeline.yaml`: strict parsing, then validation into a runtime [`Pipeline`].
//!
//! Two phases (ripgrep's LowArgs → HiArgs): [`PipelineFile`] mirrors the YAML
//! (serde-saphyr with strict booleans, duplicate keys rejected,
//! `deny_unknown_fields` everywhere, source spans kept); [`Pipeline`] is what
//! the engine runs: every stage's kind known, its params typed and resolved
//! per arm (arm overrides deep-merged first), every input slot bound to a
//! parsed reference, every external file present. Reference resolution per
//! iteration and cycle detection happen when the DAG is unrolled
//! ([`crate::engine::dag`]). Every error names `file:line:col` and what to do; loading
//! never writes anything.
//!
//! ```yaml
//! iterations: 3          # each_iteration stages run for k = 1..=iterations
//! seed: 1                # every task derives its seed from this, its stage and k
//! models:                # the model chain: model@0 = start, model@k = step@k,
//!   initial: init        #   model@-1 and below (and model@initial) = initial
//!   start: sft
//!   step: train
//!   irm_reference: initial  # model@irm_ref = model@initial | model@k-2 | model@k-1
//!   judge: current          # model@judge = model@k-1 (current) | model@0 (start)
//!                           #   | model@reward_model (reward_model)
//!   reward_model: train-rm  # model@reward_model: a run-once stage's reward model
//! stages:
//!   world: { kind: world, params: { … } }      # kind defaults to the name
//!   generate:
//!     each_iteration: true
//!     inputs: { model: model@k-1, prompts: world }
//!     shards: 4                                # optional: 4 shard tasks and a merge
//!     resources: { cpus: 8, mem: 32G }         # optional: a Slurm job's sbatch options
//! arms:                  # optional; default one arm named `main`
//!   scir: {}
//!   srlm: { train: { method: srlm } }          # per-stage param overrides
//!   ref-start: { models: { irm_reference: iteration_start } }
//!   frozen-judge: { models: { judge: start } }
//!   external-rm: { models: { judge: reward_model } }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::engine::stage::{Outputs, Registry, ResolvedParams, StageKind};
use crate::user_err;

mod placement;
mod refs;
mod resolve;
pub use placement::Resources;
pub use refs::{At, Reference};
pub use resolve::deep_merge;
use resolve::resolve_stage;

/// The arm of a pipeline that declares none.
pub const DEFAULT_ARM: &str = "main";
/// The reserved name of the model chain in references.
pub const MODEL: &str = "model";
const DEFAULT_ITERATIONS: u32 = 1;

// ---------------------------------------------------------------- the file

/// `pipeline.yaml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    #[serde(default)]
    pub iterations: Option<Spanned<i64>>,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub models: Option<Spanned<ModelsFile>>,
    #[serde(default)]
    pub stages: BTreeMap<String, Spanned<StageFile>>,
    #[serde(default)]
    pub arms: Option<Spanned<BTreeMap<String, Spanned<ArmFile>>>>,
}

/// The `models:` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsFile {
    #[serde(default)]
    pub initial: Option<Spanned<String>>,
    pub start: Spanned<String>,
    pub step: Spanned<String>,
    /// What `model@irm_ref` names (default `initial`); an arm may override it.
    #[serde(default)]
    pub irm_reference: Option<IrmReference>,
    /// What `model@judge` names (default `current`); an arm may override it.
    #[serde(default)]
    pub judge: Option<JudgeModel>,
    /// The stage (run once) whose checkpoint `model@reward_model` names.
    #[serde(default)]
    pub reward_model: Option<Spanned<String>>,
}

/// The model the implicit reward of iteration k is measured against: what `model@irm_ref`
/// names, for every stage that binds it (score-irm, consistency-filter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IrmReference {
    /// `model@initial`: the model before SFT, fixed for all iterations (the stable choice).
    #[default]
    Initial,
    /// `model@k-2`: the model Mt was trained against (M_{t−1}).
    PreviousIteration,
    /// `model@k-1`: Mt itself (p = ½ at the start of training).
    IterationStart,
}

impl IrmReference {
    /// The model chain offset from iteration k (`None`: `model@initial`).
    pub fn offset(self) -> Option<i64> {
        match self {
            IrmReference::Initial => None,
            IrmReference::PreviousIteration => Some(-2),
            IrmReference::IterationStart => Some(-1),
        }
    }
}

/// The judge (GRM) of iteration k: what `model@judge` names, for every stage that binds it
/// (score-grm).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgeModel {
    /// `model@k-1`: Mt judges its own responses (self-rewarding).
    #[default]
    Current,
    /// `model@0`: M0 judges in every iteration (the frozen-judge baseline).
    Start,
    /// `model@reward_model`: an external reward model judges in every iteration.
    RewardModel,
}

impl JudgeModel {
    /// The model chain reference it stands for.
    pub fn at(self) -> At {
        match self {
            JudgeModel::Current => At::Rel(-1),
            JudgeModel::Start => At::Abs(0),
            JudgeModel::RewardModel => At::RewardModel,
        }
    }
}

/// The `models:` overrides an arm may set (under the reserved key `models`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArmModelsFile {
    #[serde(default)]
    pub irm_reference: Option<IrmReference>,
    #[serde(default)]
    pub judge: Option<JudgeModel>,
}

/// One entry of `stages:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageFile {
    #[serde(default)]
    pub kind: Option<Spanned<String>>,
    #[serde(default)]
    pub each_iteration: bool,
    #[serde(default)]
    pub inputs: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub params: Option<Spanned<Value>>,
    /// Split each task into this many shard tasks and a merge (shardable kinds only).
    #[serde(default)]
    pub shards: Option<Spanned<i64>>,
    /// What a Slurm job of this stage asks for.
    #[serde(default)]
    pub resources: Option<Spanned<Resources>>,
}

/// One arm: stage name → params overrides, and `models: { irm_reference, judge }`.
pub type ArmFile = Option<BTreeMap<String, Spanned<Value>>>;
/// The key of an arm's model-chain overrides (a reserved stage name).
pub const ARM_MODELS: &str = "models";

// ---------------------------------------------------------------- the plan

/// A place in the pipeline file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loc {
    pub line: u64,
    pub col: u64,
}

impl Loc {
    fn of<T>(s: &Spanned<T>) -> Loc {
        Loc {
            line: s.referenced.line(),
            col: s.referenced.column(),
        }
    }
}

/// A validated pipeline.
#[derive(Debug)]
pub struct Pipeline {
    /// The file as given on the command line.
    pub path: PathBuf,
    /// Its directory (external files are relative to it).
    pub dir: PathBuf,
    /// BLAKE3 of the file's bytes (recorded in run records, not in keys).
    pub digest: String,
    pub iterations: u32,
    pub seed: u64,
    pub models: Option<ModelChain>,
    /// The arms in name order (one named `main` when none are declared).
    pub arms: Vec<ArmPlan>,
}

/// The model chain: which stage produces model@k.
#[derive(Debug, Clone)]
pub struct ModelChain {
    pub initial: Option<String>,
    pub start: String,
    pub step: String,
    /// `model@reward_model` (an external reward model), when declared.
    pub reward_model: Option<String>,
}

/// All stages of one arm, params resolved with the arm's overrides.
#[derive(Debug)]
pub struct ArmPlan {
    pub name: String,
    pub stages: BTreeMap<String, ResolvedStage>,
    /// What `model@irm_ref` names in this arm.
    pub irm_reference: IrmReference,
    /// What `model@judge` names in this arm.
    pub judge: JudgeModel,
}

/// One stage with typed, resolved params and bound inputs.
#[derive(Debug, Clone)]
pub struct ResolvedStage {
    pub name: String,
    pub stage: StageKind,
    pub each_iteration: bool,
    pub loc: Loc,
    pub params: ResolvedParams,
    /// Slot → reference.
    pub bindings: BTreeMap<String, Binding>,
    pub outputs: Outputs,
    /// External files as named in params → absolute-or-relative path to read.
    pub externals: BTreeMap<String, PathBuf>,
    /// Shard tasks per task (1: unsharded); not part of any key.
    pub shards: u32,
    /// What a Slurm job of this stage asks for; not part of any key.
    pub resources: Resources,
}

/// An input reference as written (or defaulted) and parsed.
#[derive(Debug, Clone)]
pub struct Binding {
    pub text: String,
    pub reference: Reference,
    /// Where it was written (the stage's place for default bindings).
    pub loc: Loc,
    /// Whether the stage kind supplied it (the YAML left the slot unbound).
    pub default: bool,
}

impl Pipeline {
    /// Render `loc` as `file:line:col`.
    pub fn at(&self, loc: Loc) -> String {
        format!("{}:{}:{}", self.path.display(), loc.line, loc.col)
    }
}

// ---------------------------------------------------------------- loading

/// Read, parse and validate a pipeline file against `registry`.
pub fn load(path: &Path, registry: &Registry) -> anyhow::Result<Pipeline> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        user_err!(
            "cannot read pipeline file {}: {e}\nPass the path of a pipeline.yaml.",
            path.display()
        )
    })?;
    let file = parse(path, &text)?;
    validate(path, &text, file, registry)
}

/// Parse the YAML strictly into [`PipelineFile`].
pub fn parse(path: &Path, text: &str) -> anyhow::Result<PipelineFile> {
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(user_err!(
            "{}:1:1: the pipeline file is empty\nDeclare at least `stages:` (see the README's \
             pipeline.yaml section).",
            path.display()
        )
        .into());
    }
    let options = serde_saphyr::options! { strict_booleans: true };
    serde_saphyr::from_str_with_options(text, options).map_err(|e| yaml_error(path, &e))
}

/// `file:line:col: message` plus the library's source snippet, user-worded.
fn yaml_error(path: &Path, e: &serde_saphyr::Error) -> anyhow::Error {
    let (line, col) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
    let name = path.display().to_string();
    let rendered = e.render_with_options(serde_saphyr::render_options! {
        formatter: &serde_saphyr::UserMessageFormatter,
        source_name: Some(&name),
    });
    user_err!(
        "{name}:{line}:{col}: {}\nFix the pipeline file at that place (`scir run --help` and the \
         README describe pipeline.yaml).",
        rendered
            .trim_end()
            .trim_start_matches("error: ")
            .trim_start_matches(&format!("line {line} column {col}: "))
            .replace(DUPLICATE_KEY_HINT, "")
    )
    .into()
}

const DUPLICATE_KEY_HINT: &str = ", set DuplicateKeyPolicy in Options if acceptable";

fn validate(
    path: &Path,
    text: &str,
    file: PipelineFile,
    registry: &Registry,
) -> anyhow::Result<Pipeline> {
    let p = path.display();
    let iterations = match &file.iterations {
        None => DEFAULT_ITERATIONS,
        Some(s) if s.value >= 1 && s.value <= i64::from(u32::MAX) => s.value as u32,
        Some(s) => {
            let l = Loc::of(s);
            return Err(user_err!(
                "{p}:{}:{}: iterations is {}, but it must be at least 1\nSet `iterations:` to a \
                 positive count.",
                l.line,
                l.col,
                s.value
            )
            .into());
        }
    };
    if file.stages.is_empty() {
        return Err(user_err!(
            "{p}:1:1: the pipeline declares no stages\nAdd a `stages:` mapping with at least one \
             stage."
        )
        .into());
    }
    for (name, spec) in &file.stages {
        check_name(path, "stage", name, Loc::of(spec))?;
    }
    let models = validate_models(path, &file)?;
    let arms = arm_overrides(path, &file)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    let mut plans = Vec::new();
    let chain = file.models.as_ref().map(|m| &m.value);
    let default_reference = chain.and_then(|m| m.irm_reference).unwrap_or_default();
    let default_judge = chain.and_then(|m| m.judge).unwrap_or_default();
    for (arm, (overrides, models)) in &arms {
        let mut stages = BTreeMap::new();
        for (name, spec) in &file.stages {
            let over = overrides.get(name.as_str());
            let rs = resolve_stage(path, &dir, registry, name, spec, over, arm)?;
            stages.insert(name.clone(), rs);
        }
        plans.push(ArmPlan {
            name: arm.clone(),
            stages,
            irm_reference: models.irm_reference.unwrap_or(default_reference),
            judge: models.judge.unwrap_or(default_judge),
        });
    }
    Ok(Pipeline {
        path: path.to_path_buf(),
        dir,
        digest: blake3::hash(text.as_bytes()).to_hex().to_string(),
        iterations,
        seed: file.seed,
        models,
        arms: plans,
    })
}

/// Names become file names and task names: letters, digits, `_` and `-`.
fn check_name(path: &Path, what: &str, name: &str, loc: Loc) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name != MODEL
        && name != ARM_MODELS;
    if ok {
        return Ok(());
    }
    Err(user_err!(
        "{}:{}:{}: {what} name {name:?} is not allowed\nUse letters, digits, `_` and `-` only \
         (and not `{MODEL}` or `{ARM_MODELS}`, which name the model chain).",
        path.display(),
        loc.line,
        loc.col
    )
    .into())
}

fn validate_models(path: &Path, file: &PipelineFile) -> anyhow::Result<Option<ModelChain>> {
    let Some(models) = &file.models else {
        return Ok(None);
    };
    let m = &models.value;
    let mut names = vec![("start", &m.start, false), ("step", &m.step, true)];
    if let Some(init) = &m.initial {
        names.push(("initial", init, false));
    }
    if let Some(rm) = &m.reward_model {
        names.push(("reward_model", rm, false));
    }
    for (role, stage, each) in names {
        let loc = Loc::of(stage);
        let Some(spec) = file.stages.get(&stage.value) else {
            return Err(user_err!(
                "{}:{}:{}: models.{role} names stage {:?}, which is not declared\nName one of: {}.",
                path.display(),
                loc.line,
                loc.col,
                stage.value,
                stage_list(file)
            )
            .into());
        };
        if spec.value.each_iteration != each {
            let want = if each {
                "an each_iteration stage"
            } else {
                "a stage that runs once"
            };
            return Err(user_err!(
                "{}:{}:{}: models.{role} must be {want}, and {:?} is not\nSet `each_iteration: \
                 {each}` on it or name another stage.",
                path.display(),
                loc.line,
                loc.col,
                stage.value
            )
            .into());
        }
    }
    Ok(Some(ModelChain {
        initial: m.initial.as_ref().map(|s| s.value.clone()),
        start: m.start.value.clone(),
        step: m.step.value.clone(),
        reward_model: m.reward_model.as_ref().map(|s| s.value.clone()),
    }))
}

fn stage_list(file: &PipelineFile) -> String {
    file.stages
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

type Overrides<'a> = BTreeMap<&'a str, &'a Spanned<Value>>;
/// An arm's params overrides and the `models:` entries it sets.
type ArmOverrides<'a> = (Overrides<'a>, ArmModelsFile);

fn arm_overrides<'a>(
    path: &Path,
    file: &'a PipelineFile,
) -> anyhow::Result<BTreeMap<String, ArmOverrides<'a>>> {
    let mut out = BTreeMap::new();
    let Some(arms) = &file.arms else {
        out.insert(
            DEFAULT_ARM.to_string(),
            (BTreeMap::new(), ArmModelsFile::default()),
        );
        return Ok(out);
    };
    if arms.value.is_empty() {
        let l = Loc::of(arms);
        return Err(user_err!(
            "{}:{}:{}: `arms:` is empty\nDeclare at least one arm, or remove `arms:` to get one \
             arm named `{DEFAULT_ARM}`.",
            path.display(),
            l.line,
            l.col
        )
        .into());
    }
    for (arm, spec) in &arms.value {
        check_name(path, "arm", arm, Loc::of(spec))?;
        let mut over = BTreeMap::new();
        let mut models = ArmModelsFile::default();
        for (stage, value) in spec.value.iter().flatten() {
            if stage == ARM_MODELS {
                models = arm_models(path, arm, value)?;
                continue;
            }
            if !file.stages.contains_key(stage) {
                let l = Loc::of(value);
                return Err(user_err!(
                    "{}:{}:{}: arm {arm:?} overrides params of stage {stage:?}, which is not \
                     declared\nName one of: {}.",
                    path.display(),
                    l.line,
                    l.col,
                    stage_list(file)
                )
                .into());
            }
            over.insert(stage.as_str(), value);
        }
        out.insert(arm.clone(), (over, models));
    }
    Ok(out)
}

/// An arm's `models: { irm_reference: …, judge: … }`.
fn arm_models(path: &Path, arm: &str, value: &Spanned<Value>) -> anyhow::Result<ArmModelsFile> {
    let l = Loc::of(value);
    serde_json::from_value::<ArmModelsFile>(value.value.clone()).map_err(|e| {
        user_err!(
            "{}:{}:{}: arm {arm:?}, models: {e}\nAn arm may set `models: {{ irm_reference: \
                 initial | previous_iteration | iteration_start, judge: current | start | \
                 reward_model }}`.",
            path.display(),
            l.line,
            l.col
        )
        .into()
    })
}
