//! Read-only views of a [`Decoder`]'s weights as `&[f32]`, for the duration of one call.
//!
//! The weights stay where candle keeps them (no copy: a 1 B model's 4.4 GB are not
//! duplicated); [`Locked`] holds candle's read guard of every tensor's storage, and
//! [`Weights`] borrows the slices from it. Tensors updated by an optimiser between calls are
//! seen by the next call. LoRA adapters that take part ([`Adapters::On`]) are locked with
//! their layer ([`LoraLin`]). A decoder the fast path cannot read (weights or adapters not f32
//! on the CPU, not contiguous) gives `None`: callers fall back to the differentiable path.
//!
//! [`Locked::trainable`] tells which weights are candle `Var`s: the training recorder
//! computes gradients for those only (under LoRA, the adapters; the base weights are plain
//! tensors and get none, as under candle's autograd).

use std::ops::Deref;

use candle_core::{CpuStorage, Device, Storage, Tensor};

use super::super::config::ModelConfig;
use super::super::decoder::Decoder;
use super::super::linear::{Adapters, Linear};
use super::super::lora::LoraAdapter;

/// candle's read guard of one tensor's storage.
type StorageGuard<'t> = Box<dyn Deref<Target = Storage> + 't>;

/// Read guards over a decoder's weight storages.
pub struct Locked<'t> {
    guards: Vec<(StorageGuard<'t>, usize, usize)>,
    tensors: Vec<&'t Tensor>,
    adapters: Adapters,
}

impl<'t> Locked<'t> {
    /// Lock `t`; its index, or `None` if it is not a contiguous f32 CPU tensor.
    fn lock(&mut self, t: &'t Tensor) -> Option<usize> {
        if !matches!(t.device(), Device::Cpu) {
            return None;
        }
        let (guard, layout) = t.storage_and_layout();
        let (start, end) = layout.contiguous_offsets()?;
        if !matches!(&*guard, Storage::Cpu(CpuStorage::F32(_))) {
            return None;
        }
        self.guards.push((Box::new(guard), start, end));
        self.tensors.push(t);
        Some(self.guards.len() - 1)
    }

    /// Every locked tensor with its slice (a tied weight appears twice).
    pub fn entries(&self) -> impl Iterator<Item = (&'t Tensor, &[f32])> + '_ {
        self.tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (*t, self.slice(i)))
    }

    /// The addresses of the slices of trainable tensors (candle `Var`s): the weights that
    /// get a gradient.
    pub fn trainable(&self) -> std::collections::HashSet<usize> {
        self.entries()
            .filter(|(t, _)| t.is_variable())
            .map(|(_, s)| s.as_ptr() as usize)
            .collect()
    }

    fn slice(&self, i: usize) -> &[f32] {
        let (guard, start, end) = &self.guards[i];
        match &***guard {
            Storage::Cpu(CpuStorage::F32(v)) => &v[*start..*end],
            _ => unreachable!("checked in lock"),
        }
    }
}

/// A linear layer: weight `(out, in)` row-major, optional bias and LoRA adapter.
#[derive(Clone, Copy)]
pub struct Lin<'a> {
    pub w: &'a [f32],
    pub b: Option<&'a [f32]>,
    pub lora: Option<LoraLin<'a>>,
}

/// A LoRA adapter taking part: `y += scale·(x·Aᵀ)·Bᵀ`, `A: (rank, in)`, `B: (out, rank)`.
#[derive(Clone, Copy)]
pub struct LoraLin<'a> {
    pub a: &'a [f32],
    pub b: &'a [f32],
    pub rank: usize,
    pub scale: f32,
}

/// One block's weights.
pub struct Layer<'a> {
    pub input_norm: &'a [f32],
    pub q: Lin<'a>,
    pub k: Lin<'a>,
    pub v: Lin<'a>,
    pub o: Lin<'a>,
    pub post_norm: &'a [f32],
    pub gate: Lin<'a>,
    pub up: Lin<'a>,
    pub down: Lin<'a>,
}

/// Every weight of the model as slices, with its config.
pub struct Weights<'a> {
    pub cfg: &'a ModelConfig,
    pub embed: &'a [f32],
    pub layers: Vec<Layer<'a>>,
    pub norm: &'a [f32],
    pub lm_head: &'a [f32],
}

/// Lock every weight of `dec` (see the module docs for when this is `None`), a language
/// model: the inference kernels read vocabulary logits off `lm_head`.
pub fn lock(dec: &Decoder, adapters: Adapters) -> Option<Locked<'_>> {
    if dec.config().head != crate::model::config::Head::Lm {
        return None;
    }
    lock_any_head(dec, adapters)
}

/// [`lock`] for a language model or a reward model: `lm_head` is then the `score` head's
/// `(1, hidden)` weight, which the training recorder reads as output 0 of `last_logits`.
pub fn lock_any_head(dec: &Decoder, adapters: Adapters) -> Option<Locked<'_>> {
    let mut locked = Locked {
        guards: Vec::new(),
        tensors: Vec::new(),
        adapters,
    };
    lock_all(dec, adapters, &mut locked)?;
    Some(locked)
}

fn lock_all<'t>(dec: &'t Decoder, adapters: Adapters, l: &mut Locked<'t>) -> Option<()> {
    l.lock(dec.embed_tokens())?;
    for layer in dec.layers() {
        l.lock(layer.input_layernorm.weight())?;
        let a = &layer.self_attn;
        for lin in [&a.q_proj, &a.k_proj, &a.v_proj, &a.o_proj] {
            lock_linear(lin, adapters, l)?;
        }
        l.lock(layer.post_attention_layernorm.weight())?;
        let m = &layer.mlp;
        for lin in [&m.gate_proj, &m.up_proj, &m.down_proj] {
            lock_linear(lin, adapters, l)?;
        }
    }
    l.lock(dec.final_norm().weight())?;
    if active_lora(dec.lm_head(), adapters).is_some() {
        // The kernels read vocabulary logits off the plain head.
        return None;
    }
    lock_linear(dec.lm_head(), adapters, l)
}

/// The adapter of `lin` when it takes part.
fn active_lora(lin: &Linear, adapters: Adapters) -> Option<&LoraAdapter> {
    lin.lora().filter(|_| adapters == Adapters::On)
}

/// Lock a linear layer's weight, bias, and active adapter's `A` and `B`, in that order.
fn lock_linear<'t>(lin: &'t Linear, adapters: Adapters, l: &mut Locked<'t>) -> Option<()> {
    l.lock(lin.weight())?;
    if let Some(b) = lin.bias() {
        l.lock(b)?;
    }
    if let Some(ad) = active_lora(lin, adapters) {
        l.lock(&ad.a)?;
        l.lock(&ad.b)?;
    }
    Some(())
}

impl<'a> Weights<'a> {
    /// Whether a LoRA adapter takes part.
    pub fn has_adapters(&self) -> bool {
        self.layers.iter().any(|l| {
            [l.q, l.k, l.v, l.o, l.gate, l.up, l.down]
                .iter()
                .any(|lin| lin.lora.is_some())
        })
    }

    /// Slices of `locked` (which [`lock`] filled in this order).
    pub fn new(dec: &'a Decoder, locked: &'a Locked<'a>) -> Self {
        let mut next = 0usize;
        let mut take = || {
            next += 1;
            locked.slice(next - 1)
        };
        let adapters = locked.adapters;
        let lin = |l: &'a Linear, take: &mut dyn FnMut() -> &'a [f32]| Lin {
            w: take(),
            b: l.bias().is_some().then(&mut *take),
            lora: active_lora(l, adapters).map(|ad| LoraLin {
                a: take(),
                b: take(),
                rank: ad.rank(),
                scale: ad.scale as f32,
            }),
        };
        let embed = take();
        let layers = dec
            .layers()
            .iter()
            .map(|layer| {
                let a = &layer.self_attn;
                let m = &layer.mlp;
                Layer {
                    input_norm: take(),
                    q: lin(&a.q_proj, &mut take),
                    k: lin(&a.k_proj, &mut take),
                    v: lin(&a.v_proj, &mut take),
                    o: lin(&a.o_proj, &mut take),
                    post_norm: take(),
                    gate: lin(&m.gate_proj, &mut take),
                    up: lin(&m.up_proj, &mut take),
                    down: lin(&m.down_proj, &mut take),
                }
            })
            .collect();
        let norm = take();
        let lm_head = take();
        Weights {
            cfg: dec.config(),
            embed,
            layers,
            norm,
            lm_head,
        }
    }
}
