//! `x·Wᵀ` for a frozen weight `W`, with a backward that computes only the input's gradient.
//!
//! candle's `Matmul` backward always computes the gradients of both operands. Under LoRA the
//! base weights are plain tensors (no `Var`), yet every base projection downstream of an
//! adapter is part of the graph, so each backward spent a second matmul per projection and a
//! weight-sized buffer per use on gradients nobody reads (for SmolLM2-135M: ~540 MB for every
//! forward pass that enters the loss).
//!
//! [`frozen_matmul`] computes the product outside the graph and reattaches `x` with a custom
//! op whose forward copies the product and whose backward is `grad·W`, the very matmul candle
//! runs for the left operand (`grad · (Wᵀ)ᵀ`): values and gradients are bit-identical to
//! `x.matmul(&w.t())`.
//!
//! Shapes: `x: (rows, in)`, `w: (out, in)` → `(rows, out)`. CPU, f32 only; callers use the
//! plain matmul otherwise (see [`applies`]).

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

/// Whether [`frozen_matmul`] applies: `x` is in a graph, `w` is not, both f32 on the CPU.
pub fn applies(x: &Tensor, w: &Tensor) -> bool {
    x.track_op()
        && !w.track_op()
        && x.device().is_cpu()
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
}

/// `x·wᵀ` where only `x` receives a gradient. `x: (rows, in)`, `w: (out, in)`.
pub fn frozen_matmul(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let product = x.detach().matmul(&w.t()?)?;
    x.apply_op2(&product, Reattach { weight: w.clone() })
}

/// Forward: the precomputed product. Backward: `grad·w` for `x`, nothing for the product.
struct Reattach {
    weight: Tensor,
}

impl CustomOp2 for Reattach {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(
        &self,
        _x: &CpuStorage,
        _x_layout: &Layout,
        product: &CpuStorage,
        layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let data = product.as_slice::<f32>()?;
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("frozen-matmul: the product is not contiguous (internal error)");
        };
        Ok((
            CpuStorage::F32(data[start..end].to_vec()),
            layout.shape().clone(),
        ))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _product: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.matmul(&self.weight)?), None))
    }
}
