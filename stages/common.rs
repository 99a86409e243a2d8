//! Helpers shared by the SCIR stages: reading upstream tables by column name,
//! building Arrow columns, loading checkpoints, rendering judge prompts.
//!
//! Token-id columns are `List<Int32>` (Arrow's default `item` field); ids are
//! written once (by generate / score-grm) and read back as they are, never
//! re-tokenised.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, ListArray, StringArray,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use candle_core::Device;

use crate::model::{Model, Weights};
use crate::stage::{ITERATION_COLUMN, InputArtifact};
use crate::table;

/// Every stage runs on the CPU.
pub fn device() -> Device {
    Device::Cpu
}

/// Load the checkpoint of the input bound to `slot`.
pub fn load_model(input: &InputArtifact, weights: Weights) -> anyhow::Result<Model> {
    let dir = input
        .checkpoint
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("{} has no checkpoint", input.task))?;
    Model::load(dir, weights, &device()).with_context(|| format!("loading {}", input.task))
}

/// One upstream table as a single batch.
pub fn read_table(input: &InputArtifact, name: &str) -> anyhow::Result<RecordBatch> {
    read_path(input.table(name)?)
}

/// A Parquet file as a single batch.
pub fn read_path(path: &Path) -> anyhow::Result<RecordBatch> {
    let batches = table::read(path)?;
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => table::schema_of(path)?,
    };
    Ok(arrow::compute::concat_batches(&schema, &batches)?)
}

fn column<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> anyhow::Result<&'a T> {
    b.column_by_name(name)
        .ok_or_else(|| anyhow::anyhow!("table has no column {name:?}"))?
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| anyhow::anyhow!("column {name:?} has an unexpected type"))
}

/// A non-null Int64 column.
pub fn col_i64(b: &RecordBatch, name: &str) -> anyhow::Result<Vec<i64>> {
    Ok(column::<Int64Array>(b, name)?.values().to_vec())
}

/// A non-null Int32 column.
pub fn col_i32(b: &RecordBatch, name: &str) -> anyhow::Result<Vec<i32>> {
    Ok(column::<Int32Array>(b, name)?.values().to_vec())
}

/// A Float64 column (nulls as `None`).
pub fn col_f64(b: &RecordBatch, name: &str) -> anyhow::Result<Vec<Option<f64>>> {
    Ok(column::<Float64Array>(b, name)?.iter().collect())
}

/// A Boolean column (nulls as `None`).
pub fn col_bool(b: &RecordBatch, name: &str) -> anyhow::Result<Vec<Option<bool>>> {
    Ok(column::<BooleanArray>(b, name)?.iter().collect())
}

/// A Utf8 column (nulls as `None`).
pub fn col_str(b: &RecordBatch, name: &str) -> anyhow::Result<Vec<Option<String>>> {
    Ok(column::<StringArray>(b, name)?
        .iter()
        .map(|s| s.map(str::to_string))
        .collect())
}

/// A `List<Int32>` column of token ids (nulls as `None`).
pub fn col_ids(b: &RecordBatch, name: &str) -> anyhow::Result<Vec<Option<Vec<u32>>>> {
    let list = column::<ListArray>(b, name)?;
    (0..list.len())
        .map(|i| {
            if list.is_null(i) {
                return Ok(None);
            }
            let v = list.value(i);
            let ints = v
                .as_any()
                .downcast_ref::<Int32Array>()
                .ok_or_else(|| anyhow::anyhow!("column {name:?} is not a list of Int32"))?;
            Ok(Some(ints.values().iter().map(|&x| x as u32).collect()))
        })
        .collect()
}

/// The `List<Int32>` data type of token-id columns.
pub fn ids_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true)))
}

/// Column types of declared schemas.
#[derive(Debug, Clone, Copy)]
pub enum Col {
    I32,
    I64,
    F64,
    Bool,
    Str,
    Ids,
}

/// A schema with `iteration` first, then `(name, type, nullable)` fields.
pub fn schema(fields: &[(&str, Col, bool)]) -> SchemaRef {
    let mut out = vec![Field::new(ITERATION_COLUMN, DataType::Int32, false)];
    for &(name, col, nullable) in fields {
        let dt = match col {
            Col::I32 => DataType::Int32,
            Col::I64 => DataType::Int64,
            Col::F64 => DataType::Float64,
            Col::Bool => DataType::Boolean,
            Col::Str => DataType::Utf8,
            Col::Ids => ids_type(),
        };
        out.push(Field::new(name, dt, nullable));
    }
    Arc::new(Schema::new(out))
}

/// Arrow arrays from plain vectors.
pub fn arr_i32(v: Vec<i32>) -> ArrayRef {
    Arc::new(Int32Array::from(v))
}
pub fn arr_i64(v: Vec<i64>) -> ArrayRef {
    Arc::new(Int64Array::from(v))
}
pub fn arr_f64(v: Vec<f64>) -> ArrayRef {
    Arc::new(Float64Array::from(v))
}
pub fn arr_opt_f64(v: Vec<Option<f64>>) -> ArrayRef {
    Arc::new(Float64Array::from(v))
}
pub fn arr_bool(v: Vec<bool>) -> ArrayRef {
    Arc::new(BooleanArray::from(v))
}
pub fn arr_opt_bool(v: Vec<Option<bool>>) -> ArrayRef {
    Arc::new(BooleanArray::from(v))
}
pub fn arr_str(v: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}
pub fn arr_opt_str(v: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}
pub fn arr_ids(v: Vec<Option<Vec<u32>>>) -> ArrayRef {
    Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(
        v.into_iter()
            .map(|o| o.map(|ids| ids.into_iter().map(|x| Some(x as i32)).collect::<Vec<_>>())),
    ))
}

/// A batch of `schema` with `iteration = k` first, then `columns`.
pub fn batch(schema: &SchemaRef, k: u32, columns: Vec<ArrayRef>) -> anyhow::Result<RecordBatch> {
    let n = columns.first().map_or(0, |c| c.len());
    let mut all = vec![arr_i32(vec![i32::try_from(k)?; n])];
    all.extend(columns);
    Ok(RecordBatch::try_new(schema.clone(), all)?)
}

/// Fail with a clear message when a training loss is not finite.
pub fn check_finite(what: &str, value: f64, step: u64) -> anyhow::Result<()> {
    if value.is_finite() {
        return Ok(());
    }
    Err(crate::user_err!(
        "{what} is {value} at step {step}: training diverged and nothing was committed; lower \
         the learning rate (or beta) and run again"
    )
    .into())
}

/// One generated response, as `generate` stored it.
#[derive(Debug, Clone)]
pub struct Response {
    pub prompt_id: i64,
    pub prompt: String,
    pub prompt_ids: Vec<u32>,
    pub text: String,
    pub token_ids: Vec<u32>,
}

/// `responses` of a generate task by `response_id`.
pub fn read_responses(
    input: &InputArtifact,
) -> anyhow::Result<std::collections::BTreeMap<i64, Response>> {
    let b = read_table(input, super::generate::RESPONSES)?;
    let ids = col_i64(&b, "response_id")?;
    let pids = col_i64(&b, "prompt_id")?;
    let prompts = col_str(&b, "prompt")?;
    let prompt_ids = col_ids(&b, "prompt_ids")?;
    let texts = col_str(&b, "text")?;
    let tokens = col_ids(&b, "token_ids")?;
    let mut out = std::collections::BTreeMap::new();
    for i in 0..ids.len() {
        out.insert(
            ids[i],
            Response {
                prompt_id: pids[i],
                prompt: prompts[i].clone().unwrap_or_default(),
                prompt_ids: prompt_ids[i].clone().unwrap_or_default(),
                text: texts[i].clone().unwrap_or_default(),
                token_ids: tokens[i].clone().unwrap_or_default(),
            },
        );
    }
    Ok(out)
}

/// One unlabeled pair: `(pair_id, prompt_id, response_id_1, response_id_2)`.
pub type PairRow = (i64, i64, i64, i64);

/// `pairs` of a generate task, in table order.
pub fn read_pairs(input: &InputArtifact) -> anyhow::Result<Vec<PairRow>> {
    let b = read_table(input, super::generate::PAIRS)?;
    let ids = col_i64(&b, "pair_id")?;
    let pids = col_i64(&b, "prompt_id")?;
    let r1 = col_i64(&b, "response_id_1")?;
    let r2 = col_i64(&b, "response_id_2")?;
    Ok((0..ids.len())
        .map(|i| (ids[i], pids[i], r1[i], r2[i]))
        .collect())
}

/// The response `id`, or an error naming the pair.
pub fn response(
    map: &std::collections::BTreeMap<i64, Response>,
    id: i64,
    pair: i64,
) -> anyhow::Result<&Response> {
    map.get(&id)
        .ok_or_else(|| anyhow::anyhow!("pair {pair} names response {id}, which does not exist"))
}
