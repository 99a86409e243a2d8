//! One GGUF file opened for reading: its header (metadata + tensor index, parsed by candle's
//! `gguf_file`), typed metadata getters, and tensors dequantised to f32.
//!
//! Every failure is a user error naming the file: not GGUF (the first four bytes are not
//! `GGUF`), truncated or corrupt (candle's reader ran out of bytes or met an impossible
//! count), a tensor type candle cannot dequantise (the message lists the supported ones), a
//! missing or mistyped metadata key.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::user_err;

/// The magic bytes a GGUF file starts with.
const GGUF_MAGIC: &[u8; 4] = b"GGUF";
/// The ggml tensor types scir can dequantise (all those candle reads).
pub const SUPPORTED_TYPES: &str =
    "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K";
/// candle's message for a tensor type id it does not know.
const CANDLE_UNKNOWN_DTYPE: &str = "unknown dtype for tensor";

/// An open GGUF file.
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    reader: BufReader<File>,
    /// The file's length in bytes (what tensor extents are checked against).
    len: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("tensors", &self.content.tensor_infos.len())
            .field("metadata", &self.content.metadata.len())
            .finish()
    }
}

/// candle's message without the backtrace it attaches when `RUST_BACKTRACE` is set.
pub(super) fn candle_msg(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => candle_msg(inner),
        e => e.to_string(),
    }
}

/// A user error for a header candle could not parse, with what to do about it.
fn header_error(path: &Path, e: &candle_core::Error) -> anyhow::Error {
    let msg = candle_msg(e);
    if let Some(rest) = msg.strip_prefix(CANDLE_UNKNOWN_DTYPE) {
        return user_err!(
            "{}: a tensor uses ggml type{rest}, which scir cannot dequantise; supported tensor \
             types: {SUPPORTED_TYPES} (re-quantise the model to one of them, e.g. with \
             llama.cpp's llama-quantize)",
            path.display()
        )
        .into();
    }
    user_err!(
        "{}: truncated or corrupt GGUF file ({msg}); download it again",
        path.display()
    )
    .into()
}

impl GgufFile {
    /// Open `path` and parse its header.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let mut file =
            File::open(path).map_err(|e| user_err!("{}: cannot open ({e})", path.display()))?;
        let mut magic = [0u8; 4];
        let n = read_up_to(&mut file, &mut magic)
            .and_then(|n| file.seek(SeekFrom::Start(0)).map(|_| n))
            .map_err(|e| user_err!("{}: cannot read ({e})", path.display()))?;
        let len = file
            .metadata()
            .map_err(|e| user_err!("{}: cannot read its size ({e})", path.display()))?
            .len();
        if &magic[..n] != GGUF_MAGIC {
            return Err(user_err!(
                "{}: not a GGUF file (it starts with {:?}, a GGUF file with \"GGUF\"); \
                 --gguf takes a llama.cpp GGUF model file",
                path.display(),
                String::from_utf8_lossy(&magic[..n])
            )
            .into());
        }
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).map_err(|e| header_error(path, &e))?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            content,
            reader,
            len,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, msg: String) -> anyhow::Error {
        user_err!("{}: {msg}", self.path.display()).into()
    }

    /// A metadata value, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn require(&self, key: &str) -> anyhow::Result<&Value> {
        self.get(key)
            .ok_or_else(|| self.err(format!("metadata key {key:?} is missing")))
    }

    /// An integer metadata value (any integer width), if present.
    pub fn opt_u64(&self, key: &str) -> anyhow::Result<Option<u64>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        as_u64(v)
            .map(Some)
            .ok_or_else(|| self.err(format!("metadata key {key:?} is {v:?}, not an integer")))
    }

    /// A required non-negative integer metadata value.
    pub fn usize(&self, key: &str) -> anyhow::Result<usize> {
        self.require(key)?;
        Ok(self.opt_u64(key)?.expect("checked present") as usize)
    }

    /// A float metadata value (f32 or f64), if present; f32 values widen exactly.
    pub fn opt_f64(&self, key: &str) -> anyhow::Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::F32(x)) => Ok(Some(f64::from(*x))),
            Some(Value::F64(x)) => Ok(Some(*x)),
            Some(v) => Err(self.err(format!("metadata key {key:?} is {v:?}, not a float"))),
        }
    }

    pub fn opt_bool(&self, key: &str) -> anyhow::Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.err(format!("metadata key {key:?} is {v:?}, not a bool"))),
        }
    }

    pub fn opt_str(&self, key: &str) -> anyhow::Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.err(format!("metadata key {key:?} is not a string"))),
        }
    }

    pub fn str(&self, key: &str) -> anyhow::Result<&str> {
        self.require(key)?;
        Ok(self.opt_str(key)?.expect("checked present"))
    }

    /// A string-array metadata value, if present.
    pub fn opt_strs(&self, key: &str) -> anyhow::Result<Option<Vec<&str>>> {
        self.opt_array(key, "strings", |x| match x {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// An integer-array metadata value, if present.
    pub fn opt_ints(&self, key: &str) -> anyhow::Result<Option<Vec<i64>>> {
        self.opt_array(key, "integers", as_i64)
    }

    /// An array metadata value whose items `item` converts, if present (`what`: the items
    /// in the error).
    fn opt_array<'a, T>(
        &'a self,
        key: &str,
        what: &str,
        item: impl Fn(&'a Value) -> Option<T>,
    ) -> anyhow::Result<Option<Vec<T>>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let bad = || self.err(format!("metadata key {key:?} is not an array of {what}"));
        let Value::Array(items) = v else {
            return Err(bad());
        };
        items
            .iter()
            .map(|x| item(x).ok_or_else(bad))
            .collect::<anyhow::Result<Vec<_>>>()
            .map(Some)
    }

    /// Tensor names, sorted (the file's index is a map).
    pub fn tensor_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.content.tensor_infos.keys().cloned().collect();
        names.sort();
        names
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// The stored type of tensor `name` (if present).
    pub fn tensor_type(&self, name: &str) -> Option<GgmlDType> {
        self.content.tensor_infos.get(name).map(|t| t.ggml_dtype)
    }

    /// Tensor `name` dequantised to f32, shape in row-major order (`(out, in)` for weights).
    pub fn dequantize(&mut self, name: &str) -> anyhow::Result<Tensor> {
        self.check_extent(name)?;
        let q: QTensor = self
            .content
            .tensor(&mut self.reader, name, &Device::Cpu)
            .map_err(|e| {
                user_err!(
                    "{}: tensor {name:?}: cannot read ({}); the file is truncated or corrupt",
                    self.path.display(),
                    candle_msg(&e)
                )
            })?;
        Ok(q.dequantize(&Device::Cpu)?)
    }
}

impl GgufFile {
    /// Tensor `name`'s data lies inside the file: its element count does not overflow, is
    /// whole blocks of its type, and the bytes that count needs end before the file does.
    /// Checked before reading, so a corrupt shape is an error, not a huge allocation.
    fn check_extent(&self, name: &str) -> anyhow::Result<()> {
        let corrupt = |what: String| -> anyhow::Error {
            user_err!(
                "{}: tensor {name:?}: {what}; the file is truncated or corrupt",
                self.path.display()
            )
            .into()
        };
        let Some(info) = self.content.tensor_infos.get(name) else {
            return Err(corrupt("not in the file".into()));
        };
        let dims = info.shape.dims();
        let dtype = info.ggml_dtype;
        let elems = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let bytes = elems
            .filter(|n| n % dtype.block_size() == 0)
            .and_then(|n| (n / dtype.block_size()).checked_mul(dtype.type_size()))
            .and_then(|b| u64::try_from(b).ok());
        let end = bytes.and_then(|b| {
            (self.content.tensor_data_offset)
                .checked_add(info.offset)?
                .checked_add(b)
        });
        let file_len = self.len;
        match end {
            Some(end) if end <= file_len => Ok(()),
            Some(end) => Err(corrupt(format!(
                "shape {dims:?} of {dtype:?} ends at byte {end}, the file has {file_len}"
            ))),
            None => Err(corrupt(format!(
                "shape {dims:?} is not a whole number of {dtype:?} blocks that fits in memory"
            ))),
        }
    }
}

/// Fill `buf` as far as the reader allows; the number of bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::U8(x) => Some(i64::from(*x)),
        Value::I8(x) => Some(i64::from(*x)),
        Value::U16(x) => Some(i64::from(*x)),
        Value::I16(x) => Some(i64::from(*x)),
        Value::U32(x) => Some(i64::from(*x)),
        Value::I32(x) => Some(i64::from(*x)),
        Value::U64(x) => i64::try_from(*x).ok(),
        Value::I64(x) => Some(*x),
        _ => None,
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    as_i64(v).and_then(|x| u64::try_from(x).ok())
}
