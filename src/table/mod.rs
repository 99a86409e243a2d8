//! Byte-deterministic Parquet writing and reading.
//!
//! Same batches in, same bytes out, across runs and parquet-rs upgrades as far
//! as we control it: `created_by` is pinned to [`CREATED_BY`], compression is
//! pinned to Snappy, row groups are cut by row count only
//! ([`ROW_GROUP_ROWS`]), and rows are written in the order given. The BLAKE3
//! digest of the file is computed while writing (a hashing `Write` adapter),
//! so committed files are never re-read to be hashed.
//!
//! Typed tables sit on top: [`Column`] maps a Rust type to an Arrow column and back, and
//! [`table!`](crate::table!) defines a table once — its name, its row struct, and from those
//! its schema, writer and reader ([`Table`]). The tables the stages exchange are defined
//! that way in [`crate::tables`].

mod column;
mod typed;

pub use column::{Column, typed_column};
pub use typed::Table;

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

/// The `created_by` string written into every file scir writes.
pub const CREATED_BY: &str = "scir";
/// Rows per row group.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;
/// Name of the Int32 column every table carries first.
pub const ITERATION_COLUMN: &str = "iteration";
/// File extension of tables.
pub const EXTENSION: &str = "parquet";
const READ_CHUNK: usize = 1 << 16;

/// What writing a table produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteInfo {
    pub rows: u64,
    /// Hex BLAKE3 of the file's bytes.
    pub digest: String,
    pub bytes: u64,
}

/// `<name>.parquet`.
pub fn file_name(name: &str) -> String {
    format!("{name}.{EXTENSION}")
}

fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_created_by(CREATED_BY.to_string())
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_max_row_group_bytes(None)
        .build()
}

/// A `Write` adapter that hashes and counts what passes through.
struct HashingWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if crate::failpoint::check(crate::failpoint::site::PARQUET_WRITE) {
            // Crash test: leave a truncated file on disk, then stop.
            let _ = self.inner.write_all(&buf[..buf.len() / 2]);
            let _ = self.inner.flush();
            crate::failpoint::stop(crate::failpoint::site::PARQUET_WRITE);
        }
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Write `batches` (all with the same schema) to a new file at `path`, fsynced.
pub fn write(path: &Path, batches: &[RecordBatch]) -> anyhow::Result<WriteInfo> {
    if batches.is_empty() {
        anyhow::bail!("no batches to write to {}", path.display());
    }
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let (info, out) = write_to(BufWriter::new(file), batches)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(info)
}

/// What [`write`] would write for `batches`, without writing anything.
pub fn describe_write(batches: &[RecordBatch]) -> anyhow::Result<WriteInfo> {
    Ok(write_to(io::sink(), batches)?.0)
}

/// Write `batches` (at least one) through a hashing adapter into `inner`.
fn write_to<W: Write + Send>(inner: W, batches: &[RecordBatch]) -> anyhow::Result<(WriteInfo, W)> {
    let schema = batches
        .first()
        .map(|b| b.schema())
        .ok_or_else(|| anyhow::anyhow!("no batches to write"))?;
    let mut out = HashingWriter {
        inner,
        hasher: blake3::Hasher::new(),
        bytes: 0,
    };
    let mut rows = 0u64;
    {
        let mut writer = ArrowWriter::try_new(&mut out, schema, Some(writer_properties()))?;
        for batch in batches {
            writer.write(batch)?;
            rows += batch.num_rows() as u64;
        }
        writer.close()?;
    }
    out.flush()?;
    let info = WriteInfo {
        rows,
        digest: out.hasher.finalize().to_hex().to_string(),
        bytes: out.bytes,
    };
    Ok((info, out.inner))
}

/// Hex BLAKE3 of a file's bytes (streamed).
pub fn digest_file(path: &Path) -> anyhow::Result<String> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// Rows, digest and size of an existing Parquet file.
pub fn inspect(path: &Path) -> anyhow::Result<WriteInfo> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let builder = no_panic(path, || Ok(ParquetRecordBatchReaderBuilder::try_new(file)?))?;
    let rows = u64::try_from(builder.metadata().file_metadata().num_rows())?;
    let bytes = std::fs::metadata(path)?.len();
    Ok(WriteInfo {
        rows,
        digest: digest_file(path)?,
        bytes,
    })
}

/// Read every batch of a Parquet file.
pub fn read(path: &Path) -> anyhow::Result<Vec<RecordBatch>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    no_panic(path, || read_from(file)).with_context(|| format!("reading {}", path.display()))
}

/// Run a Parquet decoding step, turning a panic of the decoder into an error.
/// arrow-ipc 59 panics on some malformed embedded Arrow schemas (found by
/// `fuzz/`, regression test in `tests/reliability/fuzz_regressions.rs`).
fn no_panic<T>(path: &Path, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        anyhow::bail!(
            "{}: not a readable Parquet file (the decoder panicked)",
            path.display()
        )
    })
}

fn read_from<R: parquet::file::reader::ChunkReader + 'static>(
    source: R,
) -> anyhow::Result<Vec<RecordBatch>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(source)?.build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

/// Read a file whose bytes must have BLAKE3 `digest`; errors when they differ.
pub fn read_verified(path: &Path, digest: &str) -> anyhow::Result<Vec<RecordBatch>> {
    let actual = digest_file(path)?;
    if actual != digest {
        anyhow::bail!(
            "{} is corrupt: its digest is {actual}, its manifest says {digest}; run `scir verify`",
            path.display()
        );
    }
    read(path)
}

/// The schema of a file (without reading its rows).
pub fn schema_of(path: &Path) -> anyhow::Result<SchemaRef> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    no_panic(path, || {
        Ok(ParquetRecordBatchReaderBuilder::try_new(file)?
            .schema()
            .clone())
    })
}

/// Error unless `actual` has exactly the fields (names, types, nullability) of `declared`.
pub fn check_schema(name: &str, declared: &Schema, actual: &Schema) -> anyhow::Result<()> {
    let same = declared.fields().len() == actual.fields().len()
        && declared.fields().iter().zip(actual.fields()).all(|(d, a)| {
            d.name() == a.name()
                && d.data_type() == a.data_type()
                && d.is_nullable() == a.is_nullable()
        });
    if !same {
        anyhow::bail!(
            "table {name:?} has schema {} but the stage declares {}",
            describe(actual),
            describe(declared)
        );
    }
    Ok(())
}

fn describe(schema: &Schema) -> String {
    let fields: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect();
    format!("({})", fields.join(", "))
}

/// `batch` with a constant Utf8 column `name = value` appended.
pub fn with_constant_str(
    batch: &RecordBatch,
    name: &str,
    value: &str,
) -> anyhow::Result<RecordBatch> {
    let column: ArrayRef = Arc::new(StringArray::from(vec![value; batch.num_rows()]));
    append_column(batch, Field::new(name, DataType::Utf8, false), column)
}

fn append_column(
    batch: &RecordBatch,
    field: Field,
    column: ArrayRef,
) -> anyhow::Result<RecordBatch> {
    let schema = batch.schema();
    let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(field));
    let mut columns = batch.columns().to_vec();
    columns.push(column);
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    Ok(RecordBatch::try_new(schema, columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int32Array;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(vec![3, 1, 2]))]).unwrap()
    }

    #[test]
    fn same_batches_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
        let ia = write(&a, &[batch()]).unwrap();
        let ib = write(&b, &[batch()]).unwrap();
        assert_eq!(ia, ib);
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert_eq!(digest_file(&a).unwrap(), ia.digest);
        assert_eq!(read_verified(&a, &ia.digest).unwrap()[0], batch());
    }

    /// Catches accidental changes of `created_by`, compression or layout:
    /// each would change every digest and rerun every downstream task.
    #[test]
    fn golden_digest() {
        let dir = tempfile::tempdir().unwrap();
        let info = write(&dir.path().join("a.parquet"), &[batch()]).unwrap();
        assert_eq!(info.digest, GOLDEN_DIGEST);
    }

    const GOLDEN_DIGEST: &str = "f056164b92ac87d0ad92243ae91aaf448c3369f6c2f661cbeda1c0d377060546";

    #[test]
    fn created_by_is_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.parquet");
        write(&path, &[batch()]).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        assert_eq!(
            reader.metadata().file_metadata().created_by(),
            Some(CREATED_BY)
        );
    }
}
