//! The eval stage's tables (written per task, `iteration` first; the public
//! view adds `arm`) and the world tables it reads.
//!
//! ```text
//! eval            iteration, metric (Utf8), value (Float64, NaN = nothing to average), n (Int64)
//!                 long format: one row per metric, see `crate::report` for the names
//! eval_labels     the same columns as eval (written by the eval-labels stage)
//! eval_responses  iteration, prompt_id, decoding (greedy|sampled), sample, response, length,
//!                 finished, gold, exact
//! eval_pairs      iteration, pair_id, a_better, p_irm, p_a_ab, p_a_ba, q_pairwise, score_a,
//!                 score_b, q_pointwise
//! ```

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::evaluate::{EvalOutput, GoldPair};
use super::metrics::Mean;
use crate::table;

/// The metrics table.
pub const EVAL: &str = "eval";
/// The metrics of the iteration's own pairs ([`super::labels`]); same columns as `eval`.
pub const EVAL_LABELS: &str = "eval_labels";
/// The responses eval generated.
pub const EVAL_RESPONSES: &str = "eval_responses";
/// The judgements of the gold pairs.
pub const EVAL_PAIRS: &str = "eval_pairs";

fn f(name: &str, dt: DataType) -> Field {
    Field::new(name, dt, false)
}

/// Name and schema of every table the eval stage writes.
pub fn schemas() -> Vec<(String, SchemaRef)> {
    use DataType::{Boolean as B, Float64 as F, Int32 as I32, Int64 as I64, Utf8 as S};
    let table = |fields: Vec<Field>| {
        let mut all = vec![f("iteration", I32)];
        all.extend(fields);
        Arc::new(Schema::new(all))
    };
    vec![
        (
            EVAL.into(),
            table(vec![f("metric", S), f("value", F), f("n", I64)]),
        ),
        (
            EVAL_RESPONSES.into(),
            table(vec![
                f("prompt_id", I64),
                f("decoding", S),
                f("sample", I32),
                f("response", S),
                f("length", I32),
                f("finished", B),
                f("gold", F),
                f("exact", B),
            ]),
        ),
        (
            EVAL_PAIRS.into(),
            table(vec![
                f("pair_id", I64),
                f("a_better", B),
                f("p_irm", F),
                f("p_a_ab", F),
                f("p_a_ba", F),
                f("q_pairwise", F),
                f("score_a", F),
                f("score_b", F),
                f("q_pointwise", F),
            ]),
        ),
    ]
}

/// The long metrics schema of `eval` and `eval_labels`.
pub fn metrics_schema() -> SchemaRef {
    schema(EVAL)
}

/// A long metrics batch (`eval` or `eval_labels` layout) at iteration `k`.
pub fn metrics_batch(k: u32, m: &[(String, Mean)]) -> anyhow::Result<RecordBatch> {
    let k = i32::try_from(k)?;
    Ok(RecordBatch::try_new(
        metrics_schema(),
        vec![
            Arc::new(Int32Array::from(vec![k; m.len()])),
            Arc::new(StringArray::from_iter_values(m.iter().map(|(n, _)| n))),
            floats(m.iter().map(|(_, v)| v.value)),
            Arc::new(Int64Array::from_iter_values(
                m.iter().map(|(_, v)| v.n as i64),
            )),
        ],
    )?)
}

fn schema(name: &str) -> SchemaRef {
    schemas()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s)
        .expect("eval tables are declared in schemas()")
}

fn floats(xs: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(xs))
}

/// The three tables of one eval task at iteration `k`, in [`schemas`] order.
pub fn batches(k: u32, out: &EvalOutput) -> anyhow::Result<Vec<(String, RecordBatch)>> {
    let eval = metrics_batch(k, &out.metrics)?;
    let k = i32::try_from(k)?;
    let iter = |n: usize| -> ArrayRef { Arc::new(Int32Array::from(vec![k; n])) };
    let r = &out.responses;
    let responses = RecordBatch::try_new(
        schema(EVAL_RESPONSES),
        vec![
            iter(r.len()),
            Arc::new(Int64Array::from_iter_values(
                r.iter().map(|(_, x)| x.prompt_id),
            )),
            Arc::new(StringArray::from_iter_values(
                r.iter().map(|(d, _)| d.name()),
            )),
            Arc::new(Int32Array::from_iter_values(
                r.iter().map(|(_, x)| x.sample as i32),
            )),
            Arc::new(StringArray::from_iter_values(
                r.iter().map(|(_, x)| &x.text),
            )),
            Arc::new(Int32Array::from_iter_values(
                r.iter().map(|(_, x)| x.length as i32),
            )),
            Arc::new(BooleanArray::from_iter(
                r.iter().map(|(_, x)| Some(x.finished)),
            )),
            floats(r.iter().map(|(_, x)| x.gold)),
            Arc::new(BooleanArray::from_iter(
                r.iter().map(|(_, x)| Some(x.gold >= 1.0)),
            )),
        ],
    )?;
    let p = &out.pairs;
    let pairs = RecordBatch::try_new(
        schema(EVAL_PAIRS),
        vec![
            iter(p.len()),
            Arc::new(Int64Array::from_iter_values(p.iter().map(|x| x.id))),
            Arc::new(BooleanArray::from_iter(p.iter().map(|x| Some(x.a_better)))),
            floats(p.iter().map(|x| x.p_irm)),
            floats(p.iter().map(|x| x.p_a_ab)),
            floats(p.iter().map(|x| x.p_a_ba)),
            floats(p.iter().map(|x| x.q_pairwise)),
            floats(p.iter().map(|x| x.score_a)),
            floats(p.iter().map(|x| x.score_b)),
            floats(p.iter().map(|x| x.q_pointwise)),
        ],
    )?;
    Ok(vec![
        (EVAL.into(), eval),
        (EVAL_RESPONSES.into(), responses),
        (EVAL_PAIRS.into(), pairs),
    ])
}

fn column<'a, T: 'static>(
    batch: &'a RecordBatch,
    name: &str,
    file: &Path,
) -> anyhow::Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{}: no column {name:?} of the expected type (is it the world's table?)",
                file.display()
            )
        })
}

/// `(id, prompt)` of the world's `eval_prompts` table.
pub fn read_prompts(path: &Path) -> anyhow::Result<Vec<(i64, String)>> {
    let mut out = Vec::new();
    for batch in table::read(path)? {
        let ids = column::<Int64Array>(&batch, "id", path)?;
        let prompts = column::<StringArray>(&batch, "prompt", path)?;
        for i in 0..batch.num_rows() {
            out.push((ids.value(i), prompts.value(i).to_string()));
        }
    }
    Ok(out)
}

/// The world's `gold_pairs` table.
pub fn read_gold_pairs(path: &Path) -> anyhow::Result<Vec<GoldPair>> {
    let mut out = Vec::new();
    for batch in table::read(path)? {
        let ids = column::<Int64Array>(&batch, "id", path)?;
        let text = |n| column::<StringArray>(&batch, n, path);
        let (prompt, a, b, label) = (
            text("prompt")?,
            text("response_a")?,
            text("response_b")?,
            text("label")?,
        );
        for i in 0..batch.num_rows() {
            out.push(GoldPair {
                id: ids.value(i),
                prompt: prompt.value(i).to_string(),
                a: a.value(i).to_string(),
                b: b.value(i).to_string(),
                a_better: label.value(i) == crate::world::format::VERDICT_A,
            });
        }
    }
    Ok(out)
}
