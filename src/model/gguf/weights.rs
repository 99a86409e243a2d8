//! llama.cpp tensor names → Hugging Face names, dequantised to f32, Q/K rows un-permuted.
//!
//! llama.cpp's `convert_hf_to_gguf.py` permutes the rows of every Llama `q_proj`/`k_proj`
//! weight (and bias) so that its interleaved rotary (pairs `(2i, 2i+1)`) computes what
//! transformers' "rotate half" rotary (pairs `(i, i + d/2)`) computes on the original rows:
//! within each head of `d` rows, HF row `j·(d/2) + i` (`j ∈ {0,1}`) is stored at GGUF row
//! `2i + j`. [`unpermute_rows`] undoes it (transformers' GGUF loader does the same); `k` uses
//! the KV head count. Weights are `(out, in)` both in candle's reading of GGUF and in HF.
//!
//! A GGUF without `output.weight` ties the output projection to the embedding; the imported
//! config then says `tie_word_embeddings: true` and no `lm_head.weight` is written.

use candle_core::Tensor;

use super::file::{GgufFile, candle_msg};
use crate::user_err;

/// Per-layer tensors: GGUF suffix (after `blk.N.`) → HF suffix (after `model.layers.N.`).
const LAYER_NAMES: [(&str, &str); 9] = [
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];
/// Whole-model tensors: GGUF name stem → HF name stem.
const GLOBAL_NAMES: [(&str, &str); 3] = [
    ("token_embd", "model.embed_tokens"),
    ("output_norm", "model.norm"),
    ("output", "lm_head"),
];

/// The head counts the Q/K un-permutation needs.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub q: usize,
    pub kv: usize,
}

/// Which permutation a tensor needs undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Permuted {
    No,
    Query,
    Key,
}

/// The HF name of GGUF tensor `name` (`stem.weight` / `stem.bias`) and whether its rows are
/// permuted; `None` for names scir does not know.
fn hf_name(name: &str) -> Option<(String, Permuted)> {
    let (stem, kind) = name.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    if let Some((_, hf)) = GLOBAL_NAMES.iter().find(|(g, _)| *g == stem) {
        return Some((format!("{hf}.{kind}"), Permuted::No));
    }
    let rest = stem.strip_prefix("blk.")?;
    let (layer, suffix) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (_, hf) = LAYER_NAMES.iter().find(|(g, _)| *g == suffix)?;
    let permuted = match suffix {
        "attn_q" => Permuted::Query,
        "attn_k" => Permuted::Key,
        _ => Permuted::No,
    };
    Some((format!("model.layers.{layer}.{hf}.{kind}"), permuted))
}

/// Undo llama.cpp's rotary row permutation on `t` (`(heads·d, …)`, weight or bias).
pub fn unpermute_rows(t: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let dims = t.dims().to_vec();
    let rows = dims[0];
    if heads == 0 || !rows.is_multiple_of(2 * heads) {
        candle_core::bail!("{rows} rows do not split into {heads} heads of an even size");
    }
    let half = rows / heads / 2;
    let rest: Vec<usize> = dims[1..].to_vec();
    // GGUF row order within a head is (i, j) with j fastest; HF's is (j, i).
    let mut split = vec![heads, half, 2];
    split.extend(&rest);
    t.reshape(split)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)
}

/// All tensors of `file` under HF names, sorted by name, f32, Q/K un-permuted. Unknown
/// tensor names are a user error (scir would silently drop a part of the model otherwise).
pub fn read_weights(file: &mut GgufFile, heads: Heads) -> anyhow::Result<Vec<(String, Tensor)>> {
    let mut out = Vec::new();
    for name in file.tensor_names() {
        let Some((hf, permuted)) = hf_name(&name) else {
            return Err(user_err!(
                "{}: tensor {name:?} is not part of a Llama model scir can import (known: \
                 token_embd, output_norm, output, blk.N.{{{}}})",
                file.path().display(),
                LAYER_NAMES.map(|(g, _)| g).join(",")
            )
            .into());
        };
        let t = file.dequantize(&name)?;
        let t = match permuted {
            Permuted::No => Ok(t),
            Permuted::Query => unpermute_rows(&t, heads.q),
            Permuted::Key => unpermute_rows(&t, heads.kv),
        }
        .map_err(|e| {
            user_err!(
                "{}: tensor {name:?}: {}",
                file.path().display(),
                candle_msg(&e)
            )
        })?;
        out.push((hf, t));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// llama.cpp's `LlamaModel.permute` (convert_hf_to_gguf.py), written out row by row.
    fn llama_cpp_permute(rows: &[f32], heads: usize, width: usize) -> Vec<f32> {
        let n = rows.len() / width;
        let d = n / heads;
        let mut out = vec![0.0; rows.len()];
        for h in 0..heads {
            for j in 0..2 {
                for i in 0..d / 2 {
                    let hf_row = h * d + j * (d / 2) + i;
                    let gguf_row = h * d + 2 * i + j;
                    out[gguf_row * width..(gguf_row + 1) * width]
                        .copy_from_slice(&rows[hf_row * width..(hf_row + 1) * width]);
                }
            }
        }
        out
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        let (heads, d, width) = (3, 8, 5);
        let hf: Vec<f32> = (0..heads * d * width).map(|x| x as f32).collect();
        let gguf = llama_cpp_permute(&hf, heads, width);
        let t = Tensor::from_vec(gguf, (heads * d, width), &Device::Cpu).unwrap();
        let back = unpermute_rows(&t, heads).unwrap();
        assert_eq!(back.flatten_all().unwrap().to_vec1::<f32>().unwrap(), hf);
        let bias = Tensor::arange(0f32, (heads * d) as f32, &Device::Cpu).unwrap();
        let permuted = llama_cpp_permute(&bias.to_vec1::<f32>().unwrap(), heads, 1);
        let pt = Tensor::from_vec(permuted, heads * d, &Device::Cpu).unwrap();
        assert_eq!(
            unpermute_rows(&pt, heads)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            bias.to_vec1::<f32>().unwrap()
        );
    }

    #[test]
    fn names_map_to_hugging_face() {
        assert_eq!(
            hf_name("blk.12.attn_k.weight"),
            Some((
                "model.layers.12.self_attn.k_proj.weight".into(),
                Permuted::Key
            ))
        );
        assert_eq!(
            hf_name("token_embd.weight"),
            Some(("model.embed_tokens.weight".into(), Permuted::No))
        );
        assert_eq!(hf_name("rope_freqs.weight"), None);
        assert_eq!(hf_name("blk.x.attn_q.weight"), None);
    }
}
