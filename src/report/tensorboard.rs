//! `artifacts/tensorboard/`: every training task's metrics as TensorBoard scalars, so
//! `tensorboard --logdir artifacts/tensorboard` shows every arm's runs.
//!
//! ```text
//! artifacts/tensorboard/<arm>/<task>/events.out.tfevents.scir   one file per task and arm
//! ```
//!
//! The tasks are those the arm's refs show (`refs.json`) whose object has a metrics table
//! ([`METRIC_TABLES`]: train's `train_metrics`, sft's `sft_metrics`, train-rm's
//! `rm_metrics`). Each numeric column but `step`/`epoch`/`iteration` becomes tag
//! `train/<column>` — TRL's names as the Hugging Face Trainer's TensorBoard callback writes
//! them (`train/loss`, `train/rewards/chosen`, `train/grad_norm`, …) — at the row's `step`.
//! The tables keep no clock, so an event's wall time is its step (seconds after the epoch):
//! the same tables give the same bytes. Like the public tables, this is a view: rebuilt
//! after a run under the global lock, each file written under a temporary name and
//! renamed; directories of tasks no longer in the refs are removed.
//!
//! The file format, written here (no maintained Rust crate writes it): TFRecord framing —
//! `u64` length (little-endian), masked CRC32C of those 8 bytes, the data, masked CRC32C of
//! the data; mask = `((crc >> 15) | (crc << 17)) + 0xa282ead8` — around `Event` protobufs:
//! `wall_time` (1, double), `step` (2, int64), `file_version` (3, string: `brain.Event:2`,
//! the first event), `summary` (5) holding `value` (1) messages of `tag` (1, string) and
//! `simple_value` (2, float). [`read_events`] reads them back (the tests use it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::{Array, Float64Array};
use arrow::datatypes::DataType;

use crate::engine::lock;
use crate::engine::store::Store;

/// Tables whose rows are training steps.
pub const METRIC_TABLES: [&str; 3] = ["train_metrics", "sft_metrics", "rm_metrics"];
/// The event file's name (TensorBoard reads files whose name contains `tfevents`).
pub const FILE: &str = "events.out.tfevents.scir";
/// Prefix of every tag.
pub const TAG_PREFIX: &str = "train/";
const FILE_VERSION: &str = "brain.Event:2";
/// Columns that index a row rather than measure it.
const INDEX_COLUMNS: [&str; 3] = ["iteration", "step", "epoch"];
const MASK_DELTA: u32 = 0xa282_ead8;

/// One scalar event.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub step: i64,
    pub tag: String,
    pub value: f32,
}

/// Rebuild `artifacts/tensorboard/` from the refs; the event files written.
pub fn refresh(artifacts: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let store = Store::new(artifacts);
    // Under the global lock, as the public view: a concurrent run's refresh must not prune
    // a directory this one is writing.
    let _g = lock::hold(
        &store.layout.global_lock(),
        "tensorboard",
        "writing tensorboard/",
    )?;
    let root = store.layout.tensorboard_dir();
    std::fs::create_dir_all(&root)?;
    let mut wanted: BTreeMap<PathBuf, Vec<Scalar>> = BTreeMap::new();
    for (arm, tasks) in store.read_refs()? {
        for (task, key) in tasks {
            let Some(m) = store.manifest(&key) else {
                continue;
            };
            for name in METRIC_TABLES {
                if let Some(entry) = m.tables.get(name) {
                    let file = store.layout.object_dir(&key).join(&entry.file);
                    let dir = root.join(&arm).join(&task);
                    wanted.entry(dir).or_default().extend(scalars(&file)?);
                }
            }
        }
    }
    prune(&root, &wanted)?;
    let mut written = Vec::new();
    for (dir, events) in &wanted {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE);
        super::markdown::write_atomic(&path, &event_file(events))?;
        written.push(path);
    }
    Ok(written)
}

/// Remove task directories under `root` that are not `wanted` (and arms left empty).
fn prune(root: &Path, wanted: &BTreeMap<PathBuf, Vec<Scalar>>) -> anyhow::Result<()> {
    let Ok(arms) = std::fs::read_dir(root) else {
        return Ok(());
    };
    for arm in arms {
        let arm = arm?.path();
        for task in std::fs::read_dir(&arm)? {
            let task = task?.path();
            if !wanted.contains_key(&task) {
                std::fs::remove_dir_all(&task)?;
            }
        }
        if std::fs::read_dir(&arm)?.next().is_none() {
            std::fs::remove_dir(&arm)?;
        }
    }
    Ok(())
}

/// The scalars of a metrics table file, row by row.
fn scalars(file: &Path) -> anyhow::Result<Vec<Scalar>> {
    let mut out = Vec::new();
    for b in crate::table::read(file)? {
        let step = arrow::compute::cast(
            b.column_by_name("step")
                .ok_or_else(|| crate::internal_err!("{}: no step column", file.display()))?,
            &DataType::Int64,
        )?;
        let step = step
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .ok_or_else(|| crate::internal_err!("step cast to Int64"))?;
        let schema = b.schema();
        let measured: Vec<(String, Float64Array)> = schema
            .fields()
            .iter()
            .zip(b.columns())
            .filter(|(f, _)| {
                f.data_type().is_numeric() && !INDEX_COLUMNS.contains(&f.name().as_str())
            })
            .map(|(f, col)| {
                let v = arrow::compute::cast(col, &DataType::Float64)?;
                let v = v
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .ok_or_else(|| crate::internal_err!("cast to Float64"))?
                    .clone();
                Ok((format!("{TAG_PREFIX}{}", f.name()), v))
            })
            .collect::<anyhow::Result<_>>()?;
        for row in 0..b.num_rows() {
            for (tag, v) in &measured {
                if v.is_valid(row) && v.value(row).is_finite() {
                    out.push(Scalar {
                        step: step.value(row),
                        tag: tag.clone(),
                        value: v.value(row) as f32,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The bytes of an event file: the version event, then one event per scalar.
pub fn event_file(scalars: &[Scalar]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut version = Vec::new();
    field_f64(&mut version, 1, 0.0);
    field_bytes(&mut version, 3, FILE_VERSION.as_bytes());
    record(&mut out, &version);
    for s in scalars {
        let mut value = Vec::new();
        field_bytes(&mut value, 1, s.tag.as_bytes());
        key(&mut value, 2, 5);
        value.extend_from_slice(&s.value.to_le_bytes());
        let mut summary = Vec::new();
        field_bytes(&mut summary, 1, &value);
        let mut event = Vec::new();
        field_f64(&mut event, 1, s.step as f64);
        key(&mut event, 2, 0);
        varint(&mut event, s.step as u64);
        field_bytes(&mut event, 5, &summary);
        record(&mut out, &event);
    }
    out
}

fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

fn record(out: &mut Vec<u8>, data: &[u8]) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A field key: number and wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32).
fn key(out: &mut Vec<u8>, field: u64, wire: u64) {
    varint(out, (field << 3) | wire);
}

fn field_f64(out: &mut Vec<u8>, field: u64, v: f64) {
    key(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

fn field_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    key(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The scalars of an event file, checking every record's CRCs (a reader for the tests and
/// for anyone debugging a file).
pub fn read_events(bytes: &[u8]) -> anyhow::Result<Vec<Scalar>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let take = |n: usize, at: usize| {
            bytes
                .get(at..at + n)
                .ok_or_else(|| anyhow::anyhow!("event file cut at byte {at}"))
        };
        let len_bytes = take(8, at)?;
        let len = u64::from_le_bytes(len_bytes.try_into()?) as usize;
        let crc = u32::from_le_bytes(take(4, at + 8)?.try_into()?);
        anyhow::ensure!(crc == masked_crc(len_bytes), "bad length CRC at byte {at}");
        let data = take(len, at + 12)?;
        let crc = u32::from_le_bytes(take(4, at + 12 + len)?.try_into()?);
        anyhow::ensure!(crc == masked_crc(data), "bad data CRC at byte {at}");
        out.extend(event_scalars(data)?);
        at += 16 + len;
    }
    Ok(out)
}

/// The fields of one protobuf message: (field number, varint value or bytes).
fn fields(mut data: &[u8]) -> anyhow::Result<Vec<(u64, Field<'_>)>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let (k, rest) = read_varint(data)?;
        data = rest;
        let value = match k & 7 {
            0 => {
                let (v, rest) = read_varint(data)?;
                data = rest;
                Field::Varint(v)
            }
            1 | 5 => {
                let n = if k & 7 == 1 { 8 } else { 4 };
                anyhow::ensure!(data.len() >= n, "fixed field cut");
                let (v, rest) = data.split_at(n);
                data = rest;
                Field::Fixed(v)
            }
            2 => {
                let (n, rest) = read_varint(data)?;
                anyhow::ensure!(rest.len() >= n as usize, "bytes field cut");
                let (v, rest) = rest.split_at(n as usize);
                data = rest;
                Field::Bytes(v)
            }
            w => anyhow::bail!("unknown wire type {w}"),
        };
        out.push((k >> 3, value));
    }
    Ok(out)
}

enum Field<'a> {
    Varint(u64),
    Fixed(&'a [u8]),
    Bytes(&'a [u8]),
}

fn read_varint(data: &[u8]) -> anyhow::Result<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, b) in data.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((v, &data[i + 1..]));
        }
    }
    anyhow::bail!("bad varint")
}

fn event_scalars(event: &[u8]) -> anyhow::Result<Vec<Scalar>> {
    let mut step = 0i64;
    let mut summaries = Vec::new();
    for (n, f) in fields(event)? {
        match (n, f) {
            (2, Field::Varint(v)) => step = v as i64,
            (5, Field::Bytes(b)) => summaries.push(b),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for summary in summaries {
        for (n, f) in fields(summary)? {
            let (1, Field::Bytes(value)) = (n, f) else {
                continue;
            };
            let (mut tag, mut v) = (String::new(), None);
            for (n, f) in fields(value)? {
                match (n, f) {
                    (1, Field::Bytes(t)) => tag = String::from_utf8(t.to_vec())?,
                    (2, Field::Fixed(x)) => v = Some(f32::from_le_bytes(x.try_into()?)),
                    _ => {}
                }
            }
            if let Some(value) = v {
                out.push(Scalar { step, tag, value });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_back_with_their_tags_steps_and_values() {
        let scalars = vec![
            Scalar {
                step: 1,
                tag: "train/loss".into(),
                value: 0.693,
            },
            Scalar {
                step: 300,
                tag: "train/rewards/chosen".into(),
                value: -1.5,
            },
        ];
        let bytes = event_file(&scalars);
        assert_eq!(read_events(&bytes).unwrap(), scalars);
        // TFRecord framing: the first record's length, then its masked CRC.
        let len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        assert_eq!(&bytes[12..12 + len as usize][9..11], &[0x1a, 13]);
        let mut bad = bytes.clone();
        let last = bad.len() - 6;
        bad[last] ^= 1;
        assert!(read_events(&bad).is_err());
    }

    /// The masked CRC32C of TFRecord: CRC32C("123456789") = 0xE3069283 (the standard
    /// check value), masked as TensorFlow's `crc32c::Mask` does (`((c >> 15) | (c << 17)) +
    /// 0xa282ead8`, worked out by hand: 0xC78AB0E5).
    #[test]
    fn the_crc_is_crc32c_masked() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(masked_crc(b"123456789"), 0xC78A_B0E5);
    }
}
