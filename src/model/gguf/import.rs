//! `import(gguf, out)`: everything written into a staging directory next to `out`, checked,
//! then renamed into place, so a failure leaves no `out` (and no staging directory).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Tensor;
use serde_json::Value;
use tokenizers::Tokenizer;

use super::file::GgufFile;
use super::hf_config::hf_config;
use super::vocab::tokenizer_files;
use super::weights::{Heads, read_weights};
use crate::model::config::ModelConfig;
use crate::model::params::param_specs;
use crate::model::tokenizer::{Text, parse_tokenizer};
use crate::user_err;

/// What an import wrote.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub out: PathBuf,
    pub tensors: usize,
    pub parameters: usize,
    /// Stored tensor types and how many tensors had each, e.g. `{"Q4_1": 210, …}`.
    pub source_types: BTreeMap<String, usize>,
    pub vocab_size: usize,
    pub seconds: f64,
}

/// A staging directory removed on drop unless [`Staging::commit`] renamed it into place.
struct Staging {
    dir: PathBuf,
    done: bool,
}

impl Staging {
    fn new(out: &Path) -> anyhow::Result<Self> {
        let name = out
            .file_name()
            .ok_or_else(|| user_err!("{}: --out needs a directory name", out.display()))?;
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(user_err!(
                "{}: the parent directory {} does not exist",
                out.display(),
                parent.display()
            )
            .into());
        }
        let dir = parent.join(format!(
            ".{}.import-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| {
                user_err!(
                    "{}: cannot remove a stale staging directory ({e})",
                    dir.display()
                )
            })?;
        }
        std::fs::create_dir(&dir)
            .map_err(|e| user_err!("{}: cannot create ({e})", dir.display()))?;
        Ok(Staging { dir, done: false })
    }

    fn write(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let p = self.dir.join(name);
        std::fs::write(&p, bytes).map_err(|e| user_err!("{}: cannot write ({e})", p.display()))?;
        Ok(())
    }

    /// The four files of a Hugging Face directory (weights streamed to disk, f32, sorted).
    fn write_model(
        &self,
        config: &Value,
        tensors: &[(String, Tensor)],
        tokenizer: &str,
        tokenizer_config: &Value,
    ) -> anyhow::Result<()> {
        self.write(
            "config.json",
            serde_json::to_string_pretty(config)?.as_bytes(),
        )?;
        let named: BTreeMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        let weights = self.dir.join("model.safetensors");
        safetensors::serialize_to_file(named, Some(meta), &weights)
            .map_err(|e| user_err!("{}: cannot write ({e})", weights.display()))?;
        self.write("tokenizer.json", tokenizer.as_bytes())?;
        let tc = serde_json::to_string_pretty(tokenizer_config)?;
        self.write("tokenizer_config.json", tc.as_bytes())
    }

    fn commit(mut self, out: &Path) -> anyhow::Result<()> {
        std::fs::rename(&self.dir, out)
            .map_err(|e| user_err!("{}: cannot move the import into place ({e})", out.display()))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `out` must not exist, or be an empty directory (which the import replaces).
fn check_out(out: &Path) -> anyhow::Result<()> {
    if !out.exists() {
        return Ok(());
    }
    let empty = out.is_dir()
        && std::fs::read_dir(out)
            .map_err(|e| user_err!("{}: cannot read ({e})", out.display()))?
            .next()
            .is_none();
    if !empty {
        return Err(user_err!(
            "{}: already exists and is not empty; remove it or choose another --out",
            out.display()
        )
        .into());
    }
    Ok(())
}

/// Check the tensors against the shapes `config` implies (every one present, none extra).
fn check_shapes(
    path: &Path,
    cfg: &ModelConfig,
    tensors: &[(String, Tensor)],
) -> anyhow::Result<()> {
    let got: HashMap<&str, &[usize]> = tensors
        .iter()
        .map(|(n, t)| (n.as_str(), t.dims()))
        .collect();
    let specs = param_specs(cfg);
    for s in &specs {
        match got.get(s.name.as_str()) {
            Some(d) if *d == s.shape.as_slice() => {}
            Some(d) => {
                return Err(user_err!(
                    "{}: tensor {} has shape {d:?}, the metadata implies {:?}",
                    path.display(),
                    s.name,
                    s.shape
                )
                .into());
            }
            None => {
                return Err(
                    user_err!("{}: tensor for {} is missing", path.display(), s.name).into(),
                );
            }
        }
    }
    if tensors.len() != specs.len() {
        return Err(user_err!(
            "{}: {} tensors, a model with this metadata has {}",
            path.display(),
            tensors.len(),
            specs.len()
        )
        .into());
    }
    Ok(())
}

/// Import `gguf` into a new Hugging Face directory `out` (see the module docs of `gguf`).
pub fn import(gguf: &Path, out: &Path) -> anyhow::Result<ImportReport> {
    let start = Instant::now();
    check_out(out)?;
    let mut file = GgufFile::open(gguf)?;
    let config = hf_config(&file)?;
    let cfg = ModelConfig::from_json(&config).map_err(|m| {
        user_err!(
            "{}: the metadata gives an invalid model config: {m}",
            gguf.display()
        )
    })?;
    let (tok_json, tok_config) = tokenizer_files(&file)?;
    let tok_str = serde_json::to_string(&tok_json)?;
    let tokenizer: Tokenizer = parse_tokenizer(&tok_str).map_err(|e| {
        user_err!(
            "{}: the tokenizer built from the metadata does not load ({e})",
            gguf.display()
        )
    })?;
    Text::new(tokenizer, tok_config.clone(), &cfg)
        .map_err(|m| user_err!("{}: {m}", gguf.display()))?;
    let mut source_types = BTreeMap::new();
    for name in file.tensor_names() {
        let ty = format!("{:?}", file.tensor_type(&name).expect("a listed tensor"));
        *source_types.entry(ty).or_insert(0) += 1;
    }
    let heads = Heads {
        q: cfg.num_heads,
        kv: cfg.num_kv_heads,
    };
    let tensors = read_weights(&mut file, heads)?;
    check_shapes(gguf, &cfg, &tensors)?;
    let staging = Staging::new(out)?;
    staging.write_model(&config, &tensors, &tok_str, &tok_config)?;
    staging.commit(out)?;
    Ok(ImportReport {
        out: out.to_path_buf(),
        tensors: tensors.len(),
        parameters: tensors.iter().map(|(_, t)| t.elem_count()).sum(),
        source_types,
        vocab_size: cfg.vocab_size,
        seconds: start.elapsed().as_secs_f64(),
    })
}
