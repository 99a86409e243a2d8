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

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use super::*;

    #[test]
    fn same_values_and_input_gradient_without_a_weight_gradient() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 7), &dev).unwrap()).unwrap();
        let w = Tensor::randn(0f32, 1.0, (3, 7), &dev).unwrap();
        let c = Tensor::randn(0f32, 1.0, (5, 3), &dev).unwrap();
        assert!(applies(x.as_tensor(), &w));
        assert!(
            !applies(&x.as_tensor().detach(), &w),
            "no graph: the plain matmul"
        );
        let plain = x.as_tensor().matmul(&w.t().unwrap()).unwrap();
        let frozen = frozen_matmul(x.as_tensor(), &w).unwrap();
        let bits = |t: &Tensor| -> Vec<u32> {
            let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            v.iter().map(|f| f.to_bits()).collect()
        };
        assert_eq!(bits(&plain), bits(&frozen));
        let g_plain = (plain * &c).unwrap().sum_all().unwrap().backward().unwrap();
        let g_frozen = (frozen * &c)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert_eq!(
            bits(g_plain.get(x.as_tensor()).unwrap()),
            bits(g_frozen.get(x.as_tensor()).unwrap())
        );
        // candle's matmul backward also stores a gradient for the weight operand; ours not.
        let ids = |g: &candle_core::backprop::GradStore| g.get_ids().count();
        assert_eq!(
            ids(&g_frozen) + 1,
            ids(&g_plain),
            "one store fewer: no weight grad"
        );
    }
}
