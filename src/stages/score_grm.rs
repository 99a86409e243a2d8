//! `score-grm@k`: the generative reward model — Mt as a judge of every pair
//! ([`common::grm`]: pairwise swap-averaged, or pointwise). Its `model` slot binds
//! `model@judge`: Mt, or M0 in every iteration when the arm sets `models: { judge: start }`
//! (the frozen-judge baseline), or an external reward model (`judge: reward_model`),
//! which scores each response ([`common::grm`]).
//!
//! The judge prompt ids are stored (and reused by `train@k`); so are the
//! verdict/score token ids (`judge_tokens`). The template is a file named by
//! `template` (relative to the pipeline file, digested into the key) or the
//! built-in one of the mode (`stages/templates/`), or a built-in named
//! `builtin:<name>` ([`judge::BUILTIN`]). For real instruct models,
//! `template: builtin:mt-bench-pair` is MT-Bench's `pair-v2` judge rendered
//! through the model's chat template (system + user message) with the
//! assistant turn pre-filled up to the verdict (`[[`), so `P(A)` is read at
//! one position; the verdict strings must then be single tokens right after
//! the prefill ([`judge::check_seam`], a user error otherwise).
//!
//! `meta: { judgments, temperature, template }` (Meta-Rewarding; pointwise) also samples
//! judgments of every response and has the model meta-judge them ([`common::meta_judge`])
//! into [`judge_pairs`](crate::tables::judge_pairs), which train takes with
//! `judge_pairs: true`. The meta-judge template is the world's format by default; a real
//! instruct model judged with `template: builtin:mt-bench-single` is meta-judged with
//! `meta: { template: builtin:meta-judge }`.
//!
//! Writes [`grm_scores`](crate::tables::grm_scores),
//! [`judge_tokens`](crate::tables::judge_tokens) and `judge_pairs` (empty without `meta`).

use std::path::PathBuf;

use super::common::grm::{self, ScoreGrmParams};
use super::common::{self, judge, meta_judge};
use super::common::{sharding, slots};
use crate::engine::stage::{DeclaredTable, ParamError, Slot, Stage, TaskContext};
use crate::model::Weights;
use crate::model::config::Head;
use crate::table::Table;
use crate::tables::grm_scores::GrmMode;
use crate::tables::grm_scores::GrmScoreRow;
use crate::tables::judge_pairs::JudgePairRow;
use crate::tables::judge_tokens::JudgeTokenRow;
use crate::tables::pairs::PairRow;
use crate::tables::responses;

/// The `score-grm` stage.
pub struct ScoreGrm;

impl Stage for ScoreGrm {
    type Params = ScoreGrmParams;
    /// Bump when the output changes for the same inputs and params.
    const VERSION: u32 = 4;
    const INPUTS: &'static [Slot] = &[slots::JUDGE, slots::GENERATION];
    const TABLES: &'static [DeclaredTable] = &[
        GrmScoreRow::declared,
        JudgeTokenRow::declared,
        JudgePairRow::declared,
    ];
    /// A shard judges a slice of the prompts' pairs (each judge prompt scored on its own);
    /// not with `meta`, whose sampled judgments are drawn across responses.
    const SHARDABLE: bool = true;

    fn validate(&self, p: &ScoreGrmParams) -> Result<(), ParamError> {
        if !(p.tau.is_finite() && p.tau > 0.0) {
            return Err(ParamError::at(
                "tau",
                format!("must be a positive number, got {}", p.tau),
            ));
        }
        if p.scores.len() < 2 {
            return Err(ParamError::at("scores", "needs at least two score strings"));
        }
        match &p.meta {
            Some(_) if p.mode != GrmMode::Pointwise => Err(ParamError::at(
                "meta",
                "the meta-judge compares sampled scores: it needs mode pointwise",
            )),
            Some(m) if m.judgments < 2 || !(m.temperature > 0.0 && m.temperature.is_finite()) => {
                Err(ParamError::at(
                    "meta",
                    "judgments must be at least 2 and temperature positive",
                ))
            }
            _ => Ok(()),
        }
    }
    fn external_files(&self, p: &ScoreGrmParams) -> Vec<PathBuf> {
        let meta = p
            .meta
            .as_ref()
            .and_then(|m| judge::template_file(&m.template));
        judge::template_file(&p.template)
            .into_iter()
            .chain(meta)
            .collect()
    }
    fn run(&self, p: &ScoreGrmParams, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let template = grm::load_template(ctx, p)?;
        let meta = match &p.meta {
            Some(m) => Some((m, grm::load_meta_template(ctx, m)?)),
            None => None,
        };
        let model = common::load_model(ctx.input("model")?, Weights::Frozen)?;
        if p.meta.is_some() && model.config().head != Head::Lm {
            anyhow::bail!(crate::user_err!(
                "{}: `meta` samples judgments from a judge that writes them, and this arm's \
                 judge is a reward model; remove `meta` or judge with the model \
                 (`models: {{ judge: current }}`)",
                ctx.task
            ));
        }
        if ctx.shard.is_some() && p.meta.is_some() {
            anyhow::bail!(crate::user_err!(
                "{}: `meta` (Meta-Rewarding) cannot be sharded; remove `shards:` from this stage",
                ctx.task
            ));
        }
        let generation = ctx.input("generation")?;
        let mut responses = responses::by_id(generation)?;
        let mut pairs: Vec<PairRow> = generation.rows()?;
        sharding::keep_shard(ctx, &mut responses, &mut pairs);
        let judged = grm::judge_pairs(&model, &template, p, &responses, &pairs)?;
        let flips = judged
            .scores
            .iter()
            .filter(|s| s.position_flip == Some(true))
            .count();
        ctx.log(&format!(
            "{} pairs judged, {flips} position flips",
            pairs.len()
        ));
        let judge_pairs = match &meta {
            Some((meta, meta_template)) => {
                let judges = meta_judge::Judges {
                    model: &model,
                    pointwise: &template,
                    meta: meta_template,
                };
                let (seed, pointwise) = (ctx.seed, &judged.pointwise);
                let rows = meta_judge::judge_pairs(&judges, p, meta, &responses, pointwise, seed)?;
                ctx.log(&format!("{} judge pairs", rows.len()));
                rows
            }
            None => Vec::new(),
        };
        ctx.write_rows(judged.scores)?;
        ctx.write_rows(judged.tokens)?;
        ctx.write_rows(judge_pairs)
    }
    /// Scores in the generation's pair order; the judge tokens, which every shard reads
    /// alike, once; no judge pairs (a sharded task has no `meta`).
    fn merge(&self, _p: &ScoreGrmParams, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let pair_ids = sharding::pair_order(ctx)?;
        let scores = sharding::merged(ctx, |r: &GrmScoreRow| r.pair_id, &pair_ids)?;
        let mut tokens: Vec<Vec<JudgeTokenRow>> = Vec::new();
        for part in &ctx.parts {
            tokens.push(part.rows()?);
        }
        let first = tokens.first().cloned().unwrap_or_default();
        if tokens.iter().any(|t| *t != first) {
            anyhow::bail!(crate::internal_err!(
                "{}: shards read different judge tokens",
                ctx.task
            ));
        }
        ctx.write_rows(scores)?;
        ctx.write_rows(first)?;
        ctx.write_rows(Vec::<JudgePairRow>::new())
    }
}
