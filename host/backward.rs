//! `backward`: gradients dQ, dK, dV of attention from Q, K, V, O, dO and the forward's LSE,
//! recomputing the attention matrix block by block (never stored).
use cudarc::driver::{DevicePtr, DevicePtrMut};

use crate::error::{Error, Result};
use crate::forward::{check_layout, validate_inputs, AttentionOptions, ForwardKernel};
use crate::launch::{launch, strides_of, ParamBlock};
use crate::shape::Shape;
use crate::tensor::{Element, Tensor};
use flashattn_kernels::config::{Dtype, ScalarBackwardConfig};
use flashattn_kernels::params::BackwardParams;

/// Attention backward. `q`, `k`, `v` as for [`crate::forward()`]; `o` and `lse` are what the
/// forward returned for them; `d_o` is the gradient of the loss with respect to `o` (same shape).
/// Returns `(dq, dk, dv)`, contiguous, shaped like `q`, `k`, `v`. With GQA/MQA, `dk` and `dv`
/// sum over the query heads that share a K/V head.
///
/// The kernel today is the scalar (CUDA-core) reference path, head dims 32, 64 and 128. It uses
/// no atomics, so its results are bit-identical from run to run.
pub fn backward<T: Element>(
    q: &Tensor<T>,
    k: &Tensor<T>,
    v: &Tensor<T>,
    o: &Tensor<T>,
    lse: &Tensor<f32>,
    d_o: &Tensor<T>,
    opts: &AttentionOptions,
) -> Result<(Tensor<T>, Tensor<T>, Tensor<T>)> {
    let dims = validate_backward(q, k, v, o, lse, d_o, opts)?;
    let dev = q.device();
    let mut dq = dev.alloc::<T>(q.shape())?;
    let mut dk = dev.alloc::<T>(k.shape())?;
    let mut dv = dev.alloc::<T>(k.shape())?;
    let mut delta = dev.alloc::<f32>(&[dims.batch, dims.heads, dims.seqlen_q])?;
    launch_backward(q, k, v, o, lse, d_o, &mut delta, &mut dq, &mut dk, &mut dv, dims, opts)?;
    Ok((dq, dk, dv))
}

/// Everything [`crate::forward::validate_inputs`] checks, plus `o` and `d_o` shaped like `q`,
/// `lse` a contiguous `[batch, heads, seqlen_q]` f32 tensor, all on one device, and a backward
/// kernel for the head dim.
pub fn validate_backward<T: Element>(
    q: &Tensor<T>,
    k: &Tensor<T>,
    v: &Tensor<T>,
    o: &Tensor<T>,
    lse: &Tensor<f32>,
    d_o: &Tensor<T>,
    opts: &AttentionOptions,
) -> Result<Shape> {
    // The forward's checks, for any forward kernel: the backward picks its own.
    let dims = validate_inputs(q, k, v, &AttentionOptions { kernel: ForwardKernel::Auto, ..*opts })?;
    for (name, t) in [("o", o), ("d_o", d_o)] {
        check_layout(name, t)?;
        if t.shape() != q.shape() {
            return Err(Error::invalid(name, format!("shape {:?} differs from q's {:?}", t.shape(), q.shape())));
        }
        if t.device() != q.device() {
            return Err(Error::DeviceMismatch { a: "q", b: name });
        }
    }
    let lse_shape = [dims.batch, dims.heads, dims.seqlen_q];
    if lse.shape() != lse_shape || !lse.is_contiguous() {
        return Err(Error::invalid(
            "lse",
            format!("must be a contiguous [batch, heads, seqlen_q] = {lse_shape:?} tensor, got {lse:?}"),
        ));
    }
    if lse.device() != q.device() {
        return Err(Error::DeviceMismatch { a: "q", b: "lse" });
    }
    match opts.kernel {
        ForwardKernel::Auto | ForwardKernel::Scalar => {}
        other => {
            return Err(Error::invalid("kernel", format!("{other:?} has no backward yet; use Auto or Scalar")));
        }
    }
    if !ScalarBackwardConfig::HEAD_DIMS.contains(&dims.head_dim) {
        return Err(Error::UnsupportedHeadDim {
            head_dim: dims.head_dim,
            kernel: "scalar backward",
            supported: ScalarBackwardConfig::HEAD_DIMS.to_vec(),
        });
    }
    Ok(dims)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Dq,
    Dk,
    Dv,
}

/// The scalar backward kernel of a part (see `flashattn_kernels::for_each_scalar_backward_kernel!`).
fn scalar_kernel_name(part: Part, dtype: Dtype, head_dim: usize, causal: bool) -> Option<&'static str> {
    let mut found = None;
    macro_rules! row {
        ($name:ident, $part:ident, $dtype:ident, $d:literal, $causal:literal) => {
            if found.is_none() && Part::$part == part && Dtype::$dtype == dtype && $d == head_dim && $causal == causal {
                found = Some(stringify!($name));
            }
        };
    }
    flashattn_kernels::for_each_scalar_backward_kernel!(row);
    found
}

fn preprocess_kernel_name(dtype: Dtype) -> &'static str {
    let mut found = "";
    macro_rules! row {
        ($name:ident, $dtype:ident) => {
            if Dtype::$dtype == dtype {
                found = stringify!($name);
            }
        };
    }
    flashattn_kernels::for_each_backward_preprocess_kernel!(row);
    found
}

#[allow(clippy::too_many_arguments)]
fn launch_backward<T: Element>(
    q: &Tensor<T>,
    k: &Tensor<T>,
    v: &Tensor<T>,
    o: &Tensor<T>,
    lse: &Tensor<f32>,
    d_o: &Tensor<T>,
    delta: &mut Tensor<f32>,
    dq: &mut Tensor<T>,
    dk: &mut Tensor<T>,
    dv: &mut Tensor<T>,
    dims: Shape,
    opts: &AttentionOptions,
) -> Result<()> {
    let dtype = T::DTYPE.expect("validated");
    let scale = opts.softmax_scale.unwrap_or(1.0 / (dims.head_dim as f32).sqrt());
    let dev = q.device().clone();
    let stream = dev.stream().clone();
    let strides = [strides_of(q), strides_of(k), strides_of(v), strides_of(o), strides_of(d_o)];
    let grad_strides = [strides_of(dq), strides_of(dk), strides_of(dv)];
    let (q_ptr, _g1) = q.data().device_ptr(&stream);
    let (k_ptr, _g2) = k.data().device_ptr(&stream);
    let (v_ptr, _g3) = v.data().device_ptr(&stream);
    let (o_ptr, _g4) = o.data().device_ptr(&stream);
    let (do_ptr, _g5) = d_o.data().device_ptr(&stream);
    let (lse_ptr, _g6) = lse.data().device_ptr(&stream);
    let (delta_ptr, _g7) = delta.data_mut().device_ptr_mut(&stream);
    let (dq_ptr, _g8) = dq.data_mut().device_ptr_mut(&stream);
    let (dk_ptr, _g9) = dk.data_mut().device_ptr_mut(&stream);
    let (dv_ptr, _g10) = dv.data_mut().device_ptr_mut(&stream);
    let params = ParamBlock(BackwardParams {
        q: q_ptr,
        k: k_ptr,
        v: v_ptr,
        o: o_ptr,
        d_o: do_ptr,
        lse: lse_ptr,
        delta: delta_ptr,
        dq: dq_ptr,
        dk: dk_ptr,
        dv: dv_ptr,
        q_strides: strides[0],
        k_strides: strides[1],
        v_strides: strides[2],
        o_strides: strides[3],
        do_strides: strides[4],
        dq_strides: grad_strides[0],
        dk_strides: grad_strides[1],
        dv_strides: grad_strides[2],
        batch: dims.batch as u32,
        heads: dims.heads as u32,
        heads_kv: dims.heads_kv as u32,
        seqlen_q: dims.seqlen_q as u32,
        seqlen_k: dims.seqlen_k as u32,
        head_dim: dims.head_dim as u32,
        scale_log2: scale * std::f32::consts::LOG2_E,
        scale,
    });
    let (b, h, hkv) = (dims.batch as u32, dims.heads as u32, dims.heads_kv as u32);
    let warps = ScalarBackwardConfig::PREPROCESS_WARPS;
    let smem = ScalarBackwardConfig::new(dims.head_dim).smem_bytes();
    let bm = ScalarBackwardConfig::BLOCK_M;
    let threads = ScalarBackwardConfig::THREADS;
    let name = |part| {
        scalar_kernel_name(part, dtype, dims.head_dim, opts.causal).ok_or(Error::UnsupportedHeadDim {
            head_dim: dims.head_dim,
            kernel: "scalar backward",
            supported: ScalarBackwardConfig::HEAD_DIMS.to_vec(),
        })
    };
    let q_blocks = dims.seqlen_q.div_ceil(bm) as u32;
    let k_blocks = dims.seqlen_k.div_ceil(bm) as u32;
    // SAFETY: one parameter block for all four kernels, matching their signature; every pointer
    // is a live allocation of the validated shape and strides: the preprocessing writes `delta`
    // (B x H x N_q) before the other three read it (same stream, in order); dQ writes rows of dq,
    // dK/dV rows of dk/dv, each row by exactly one thread, and nothing past seqlen or head_dim.
    unsafe {
        launch(
            &dev,
            preprocess_kernel_name(dtype),
            0,
            (dims.seqlen_q.div_ceil(warps) as u32, h, b),
            32 * warps,
            &params,
        )?;
        launch(&dev, name(Part::Dq)?, smem, (q_blocks, h, b), threads, &params)?;
        launch(&dev, name(Part::Dv)?, smem, (k_blocks, hkv, b), threads, &params)?;
        launch(&dev, name(Part::Dk)?, smem, (k_blocks, hkv, b), threads, &params)?;
    }
    Ok(())
}
