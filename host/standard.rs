//! The standard-attention baseline of the FlashAttention paper: the `N x N` score and
//! probability matrices are materialised in device memory (that is the point: memory quadratic
//! in N, against the flash kernels' linear memory), for the benchmarks' comparison.
//!
//! Forward, per batch (one strided-batched GEMM over the heads per product):
//! 1. `S = scale * Q K^T` (cuBLAS, f32 out),
//! 2. `P = softmax(S)` with the causal mask, in the input type, and the LSE (our row kernel),
//! 3. `O = P V` (cuBLAS).
//!
//! Backward, from Q, K, V, O, dO and the forward's LSE, as [`crate::backward()`] takes them:
//! 1. `S = scale * Q K^T` (f32),
//! 2. `P = exp(S - LSE)` (row kernel),
//! 3. `dV = P^T dO`,
//! 4. `dP = dO V^T` (f32, into S's buffer),
//! 5. `dS = P * (dP - rowsum(dO * O))` in place over P (row kernel),
//! 6. `dQ = scale * dS K`, `dK = scale * dS^T Q`.
//!
//! Every GEMM takes f16/bf16 inputs with f32 accumulation (`CUBLAS_COMPUTE_32F`, tensor cores
//! used by cuBLAS's default algorithm); S and dP are written in f32, P, dS and the outputs in the
//! input type. Memory beyond the inputs and outputs: `B * H * N_q * N_k * (4 + 2)` bytes (S or
//! dP in f32 + P or dS), plus cuBLAS's own workspace (allocated by cuBLAS, not counted by
//! [`Device::peak_bytes`]).
//!
//! cuBLAS is loaded at run time: without it both functions return [`Error::NoCublas`]. GQA/MQA
//! (`heads_kv < heads`) is not implemented here and is rejected.
use std::mem::size_of;

use cudarc::cublas::result::gemm_strided_batched_ex;
use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType};
use cudarc::driver::{DevicePtr, DevicePtrMut};
use flashattn_kernels::config::{Dtype, StandardConfig};
use flashattn_kernels::params::{StandardParams, Strides};

use crate::backward::validate_backward;
use crate::error::{Error, Result};
use crate::forward::{validate_inputs, AttentionOptions, ForwardKernel};
use crate::launch::{launch, strides_of, ParamBlock};
use crate::runtime::Device;
use crate::shape::Shape;
use crate::tensor::{Element, Tensor};

/// The buffers a GEMM of the plan reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Buf {
    Q,
    K,
    V,
    DO,
    O,
    DQ,
    DK,
    DV,
    /// f32 `[batch, heads, seqlen_q, seqlen_k]`: S, then dP in the backward.
    S,
    /// Input type, same shape: P, then dS in the backward.
    P,
}

impl Buf {
    fn is_f32(self) -> bool {
        self == Buf::S
    }
}

/// One GEMM operand: element offset of batch `b`'s first matrix, leading dimension, and the
/// stride between the matrices of consecutive heads (all in elements).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Operand {
    pub buf: Buf,
    pub offset: usize,
    pub ld: usize,
    pub head_stride: usize,
}

/// One strided-batched GEMM over the heads of one batch, in cuBLAS's column-major terms:
/// `C = alpha * op(A) op(B)` (`C` is `m x n`, `op(A)` `m x k`), for `heads` matrices.
/// A row-major `rows x cols` matrix with row stride `ld` is a column-major `cols x rows` one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Gemm {
    pub trans_a: bool,
    pub trans_b: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub alpha: f32,
    pub a: Operand,
    pub b: Operand,
    pub c: Operand,
    pub heads: usize,
}

/// Strides of the tensors of a call (row-major `[batch, seqlen, heads, head_dim]`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub dims: Shape,
    pub scale: f32,
    pub q: Strides,
    pub k: Strides,
    pub v: Strides,
    pub o: Strides,
    pub d_o: Strides,
    pub dq: Strides,
    pub dk: Strides,
    pub dv: Strides,
}

impl Layout {
    fn op(&self, buf: Buf, b: usize) -> Operand {
        let nn = self.dims.seqlen_q * self.dims.seqlen_k;
        let t = match buf {
            Buf::Q => self.q,
            Buf::K => self.k,
            Buf::V => self.v,
            Buf::O => self.o,
            Buf::DO => self.d_o,
            Buf::DQ => self.dq,
            Buf::DK => self.dk,
            Buf::DV => self.dv,
            Buf::S | Buf::P => {
                return Operand { buf, offset: b * self.dims.heads * nn, ld: self.dims.seqlen_k, head_stride: nn }
            }
        };
        Operand { buf, offset: b * t.batch as usize, ld: t.row as usize, head_stride: t.head as usize }
    }

    /// `S = scale * Q K^T`: row-major `S [n_q, n_k]` is column-major `S^T = K Q^T`.
    pub fn scores(&self, b: usize) -> Gemm {
        let d = self.dims;
        Gemm {
            trans_a: true,
            trans_b: false,
            m: d.seqlen_k,
            n: d.seqlen_q,
            k: d.head_dim,
            alpha: self.scale,
            a: self.op(Buf::K, b),
            b: self.op(Buf::Q, b),
            c: self.op(Buf::S, b),
            heads: d.heads,
        }
    }

    /// `O = P V`: column-major `O^T = V^T P^T`.
    pub fn output(&self, b: usize) -> Gemm {
        let d = self.dims;
        Gemm {
            trans_a: false,
            trans_b: false,
            m: d.head_dim,
            n: d.seqlen_q,
            k: d.seqlen_k,
            alpha: 1.0,
            a: self.op(Buf::V, b),
            b: self.op(Buf::P, b),
            c: self.op(Buf::O, b),
            heads: d.heads,
        }
    }

    /// `dV = P^T dO`: column-major `dV^T = dO^T P`.
    pub fn grad_v(&self, b: usize) -> Gemm {
        let d = self.dims;
        Gemm {
            trans_a: false,
            trans_b: true,
            m: d.head_dim,
            n: d.seqlen_k,
            k: d.seqlen_q,
            alpha: 1.0,
            a: self.op(Buf::DO, b),
            b: self.op(Buf::P, b),
            c: self.op(Buf::DV, b),
            heads: d.heads,
        }
    }

    /// `dP = dO V^T` (into S's buffer): column-major `dP^T = V dO^T`.
    pub fn grad_p(&self, b: usize) -> Gemm {
        let d = self.dims;
        Gemm {
            trans_a: true,
            trans_b: false,
            m: d.seqlen_k,
            n: d.seqlen_q,
            k: d.head_dim,
            alpha: 1.0,
            a: self.op(Buf::V, b),
            b: self.op(Buf::DO, b),
            c: self.op(Buf::S, b),
            heads: d.heads,
        }
    }

    /// `dQ = scale * dS K` (dS in P's buffer): column-major `dQ^T = K^T dS^T`.
    pub fn grad_q(&self, b: usize) -> Gemm {
        let d = self.dims;
        Gemm {
            trans_a: false,
            trans_b: false,
            m: d.head_dim,
            n: d.seqlen_q,
            k: d.seqlen_k,
            alpha: self.scale,
            a: self.op(Buf::K, b),
            b: self.op(Buf::P, b),
            c: self.op(Buf::DQ, b),
            heads: d.heads,
        }
    }

    /// `dK = scale * dS^T Q`: column-major `dK^T = Q^T dS`.
    pub fn grad_k(&self, b: usize) -> Gemm {
        let d = self.dims;
        Gemm {
            trans_a: false,
            trans_b: true,
            m: d.head_dim,
            n: d.seqlen_k,
            k: d.seqlen_q,
            alpha: self.scale,
            a: self.op(Buf::Q, b),
            b: self.op(Buf::P, b),
            c: self.op(Buf::DK, b),
            heads: d.heads,
        }
    }
}

/// Standard-attention forward: the same inputs, options and outputs as [`crate::forward()`]
/// (`opts.kernel` is ignored), computed with the `N x N` matrices in device memory.
pub fn standard_forward<T: Element>(
    q: &Tensor<T>,
    k: &Tensor<T>,
    v: &Tensor<T>,
    opts: &AttentionOptions,
) -> Result<(Tensor<T>, Tensor<f32>)> {
    let dims = validate_inputs(q, k, v, &AttentionOptions { kernel: ForwardKernel::Auto, ..*opts })?;
    check_standard(&dims)?;
    let dev = q.device();
    let blas = dev.cublas()?;
    let mut o = dev.alloc::<T>(&[dims.batch, dims.seqlen_q, dims.heads, dims.head_dim])?;
    let mut lse = dev.alloc::<f32>(&[dims.batch, dims.heads, dims.seqlen_q])?;
    let nn = [dims.batch, dims.heads, dims.seqlen_q, dims.seqlen_k];
    let mut s = dev.alloc::<f32>(&nn)?;
    let mut p = dev.alloc::<T>(&nn)?;
    let layout = Layout {
        dims,
        scale: scale_of(opts, &dims),
        q: strides_of(q),
        k: strides_of(k),
        v: strides_of(v),
        o: strides_of(&o),
        d_o: Strides::default(),
        dq: Strides::default(),
        dk: Strides::default(),
        dv: Strides::default(),
    };
    {
        let stream = dev.stream().clone();
        let (q_ptr, _g1) = q.data().device_ptr(&stream);
        let (k_ptr, _g2) = k.data().device_ptr(&stream);
        let (v_ptr, _g3) = v.data().device_ptr(&stream);
        let (o_ptr, _g4) = o.data_mut().device_ptr_mut(&stream);
        let (lse_ptr, _g5) = lse.data_mut().device_ptr_mut(&stream);
        let (s_ptr, _g6) = s.data_mut().device_ptr_mut(&stream);
        let (p_ptr, _g7) = p.data_mut().device_ptr_mut(&stream);
        let ptr = |buf: Buf| match buf {
            Buf::Q => q_ptr,
            Buf::K => k_ptr,
            Buf::V => v_ptr,
            Buf::O => o_ptr,
            Buf::S => s_ptr,
            Buf::P => p_ptr,
            _ => unreachable!("the forward plan uses q, k, v, o, s, p"),
        };
        let params = row_params(&dims, s_ptr, p_ptr, lse_ptr, 0, 0, Strides::default(), Strides::default());
        dev.context().bind_to_thread()?;
        // SAFETY: every operand of the plan lies inside its allocation (the plan's shapes and
        // strides are those of the validated tensors; S and P hold batch * heads * n_q * n_k
        // elements); all work is ordered on the device's one stream.
        unsafe {
            for b in 0..dims.batch {
                run_gemm::<T>(&blas, &layout.scores(b), &ptr)?;
            }
            launch_rows::<T>(dev, if opts.causal { Kind::SoftmaxCausal } else { Kind::Softmax }, &dims, &params)?;
            for b in 0..dims.batch {
                run_gemm::<T>(&blas, &layout.output(b), &ptr)?;
            }
        }
    }
    drop((s, p));
    Ok((o, lse))
}

/// Standard-attention backward: the same inputs, options and outputs as [`crate::backward()`]
/// (`opts.kernel` and `opts.deterministic` are ignored: the GEMMs are deterministic), with the
/// `N x N` matrices recomputed from Q, K and the LSE into device memory.
pub fn standard_backward<T: Element>(
    q: &Tensor<T>,
    k: &Tensor<T>,
    v: &Tensor<T>,
    o: &Tensor<T>,
    lse: &Tensor<f32>,
    d_o: &Tensor<T>,
    opts: &AttentionOptions,
) -> Result<(Tensor<T>, Tensor<T>, Tensor<T>)> {
    let opts = AttentionOptions { kernel: ForwardKernel::Auto, ..*opts };
    let dims = validate_backward(q, k, v, o, lse, d_o, &opts)?;
    check_standard(&dims)?;
    let dev = q.device();
    let blas = dev.cublas()?;
    let mut dq = dev.alloc::<T>(q.shape())?;
    let mut dk = dev.alloc::<T>(k.shape())?;
    let mut dv = dev.alloc::<T>(v.shape())?;
    let nn = [dims.batch, dims.heads, dims.seqlen_q, dims.seqlen_k];
    let mut s = dev.alloc::<f32>(&nn)?;
    let mut p = dev.alloc::<T>(&nn)?;
    let layout = Layout {
        dims,
        scale: scale_of(&opts, &dims),
        q: strides_of(q),
        k: strides_of(k),
        v: strides_of(v),
        o: strides_of(o),
        d_o: strides_of(d_o),
        dq: strides_of(&dq),
        dk: strides_of(&dk),
        dv: strides_of(&dv),
    };
    {
        let stream = dev.stream().clone();
        let (q_ptr, _g1) = q.data().device_ptr(&stream);
        let (k_ptr, _g2) = k.data().device_ptr(&stream);
        let (v_ptr, _g3) = v.data().device_ptr(&stream);
        let (o_ptr, _g4) = o.data().device_ptr(&stream);
        let (do_ptr, _g5) = d_o.data().device_ptr(&stream);
        let (lse_ptr, _g6) = lse.data().device_ptr(&stream);
        let (dq_ptr, _g7) = dq.data_mut().device_ptr_mut(&stream);
        let (dk_ptr, _g8) = dk.data_mut().device_ptr_mut(&stream);
        let (dv_ptr, _g9) = dv.data_mut().device_ptr_mut(&stream);
        let (s_ptr, _g10) = s.data_mut().device_ptr_mut(&stream);
        let (p_ptr, _g11) = p.data_mut().device_ptr_mut(&stream);
        let ptr = |buf: Buf| match buf {
            Buf::Q => q_ptr,
            Buf::K => k_ptr,
            Buf::V => v_ptr,
            Buf::O => o_ptr,
            Buf::DO => do_ptr,
            Buf::DQ => dq_ptr,
            Buf::DK => dk_ptr,
            Buf::DV => dv_ptr,
            Buf::S => s_ptr,
            Buf::P => p_ptr,
        };
        let params = row_params(&dims, s_ptr, p_ptr, lse_ptr, o_ptr, do_ptr, layout.o, layout.d_o);
        dev.context().bind_to_thread()?;
        // SAFETY (GEMMs and row kernels): every operand of the plan lies inside its allocation (the
        // plan's shapes and strides are those of the validated tensors, and S and P hold
        // batch * heads * n_q * n_k elements); all work is ordered on the device's one stream.
        unsafe {
            for b in 0..dims.batch {
                run_gemm::<T>(&blas, &layout.scores(b), &ptr)?;
            }
            launch_rows::<T>(dev, if opts.causal { Kind::ProbsCausal } else { Kind::Probs }, &dims, &params)?;
            for b in 0..dims.batch {
                run_gemm::<T>(&blas, &layout.grad_v(b), &ptr)?;
                run_gemm::<T>(&blas, &layout.grad_p(b), &ptr)?;
            }
            launch_rows::<T>(dev, Kind::Ds, &dims, &params)?;
            for b in 0..dims.batch {
                run_gemm::<T>(&blas, &layout.grad_q(b), &ptr)?;
                run_gemm::<T>(&blas, &layout.grad_k(b), &ptr)?;
            }
        }
    }
    drop((s, p));
    Ok((dq, dk, dv))
}

fn scale_of(opts: &AttentionOptions, dims: &Shape) -> f32 {
    opts.softmax_scale.unwrap_or(1.0 / (dims.head_dim as f32).sqrt())
}

/// What the baseline does not take: GQA/MQA, and matrices too large to index.
fn check_standard(dims: &Shape) -> Result<()> {
    if dims.heads != dims.heads_kv {
        return Err(Error::invalid(
            "k",
            format!(
                "the standard-attention baseline does not implement GQA/MQA: k/v have {} heads, q {} (use equal heads)",
                dims.heads_kv, dims.heads
            ),
        ));
    }
    let elems =
        [dims.batch, dims.heads, dims.seqlen_q, dims.seqlen_k].iter().try_fold(1usize, |a, &x| a.checked_mul(x));
    match elems.and_then(|e| e.checked_mul(size_of::<f32>())) {
        Some(_) => Ok(()),
        None => Err(Error::invalid("q", "the N x N matrices of standard attention would not be addressable")),
    }
}

#[allow(clippy::too_many_arguments)]
fn row_params(
    dims: &Shape,
    s: u64,
    p: u64,
    lse: u64,
    o: u64,
    d_o: u64,
    o_strides: Strides,
    do_strides: Strides,
) -> ParamBlock<StandardParams> {
    ParamBlock(StandardParams {
        s,
        p,
        lse,
        o,
        d_o,
        o_strides,
        do_strides,
        batch: dims.batch as u32,
        heads: dims.heads as u32,
        seqlen_q: dims.seqlen_q as u32,
        seqlen_k: dims.seqlen_k as u32,
        head_dim: dims.head_dim as u32,
    })
}

/// The row kernels of the table `for_each_standard_kernel!`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Softmax,
    SoftmaxCausal,
    Probs,
    ProbsCausal,
    Ds,
}

fn row_kernel_name(kind: Kind, dtype: Dtype) -> &'static str {
    let mut found = "";
    macro_rules! row {
        ($name:ident, Softmax, $dtype:ident, $causal:literal) => {
            if Dtype::$dtype == dtype && kind == if $causal { Kind::SoftmaxCausal } else { Kind::Softmax } {
                found = stringify!($name);
            }
        };
        ($name:ident, Probs, $dtype:ident, $causal:literal) => {
            if Dtype::$dtype == dtype && kind == if $causal { Kind::ProbsCausal } else { Kind::Probs } {
                found = stringify!($name);
            }
        };
        ($name:ident, Ds, $dtype:ident, $causal:literal) => {
            if Dtype::$dtype == dtype && kind == Kind::Ds {
                found = stringify!($name);
            }
        };
    }
    flashattn_kernels::for_each_standard_kernel!(row);
    found
}

/// # Safety
/// The pointers of `params` must be live allocations of the shapes the kernel reads and writes.
unsafe fn launch_rows<T: Element>(
    dev: &Device,
    kind: Kind,
    dims: &Shape,
    params: &ParamBlock<StandardParams>,
) -> Result<()> {
    let name = row_kernel_name(kind, T::DTYPE.expect("validated"));
    let grid = (dims.seqlen_q.div_ceil(StandardConfig::WARPS) as u32, dims.heads as u32, dims.batch as u32);
    launch(dev, name, 0, grid, StandardConfig::THREADS, params)
}

fn data_type<T: Element>(buf: Buf) -> cudaDataType {
    if buf.is_f32() {
        return cudaDataType::CUDA_R_32F;
    }
    match T::DTYPE.expect("validated") {
        Dtype::F16 => cudaDataType::CUDA_R_16F,
        Dtype::Bf16 => cudaDataType::CUDA_R_16BF,
    }
}

fn elem_bytes<T: Element>(buf: Buf) -> u64 {
    if buf.is_f32() {
        4
    } else {
        size_of::<T>() as u64
    }
}

/// One strided-batched GEMM of the plan: f16/bf16 (or f32 for S and dP) operands, f32
/// accumulation and f32 alpha/beta (`CUBLAS_COMPUTE_32F`), cuBLAS's default algorithm.
///
/// # Safety
/// `ptr(buf)` must be the base device address of a live allocation that holds every element the
/// GEMM addresses.
unsafe fn run_gemm<T: Element>(blas: &cudarc::cublas::CudaBlas, g: &Gemm, ptr: &impl Fn(Buf) -> u64) -> Result<()> {
    let addr = |o: &Operand| ptr(o.buf) + o.offset as u64 * elem_bytes::<T>(o.buf);
    let op = |t: bool| if t { cublasOperation_t::CUBLAS_OP_T } else { cublasOperation_t::CUBLAS_OP_N };
    let (alpha, beta) = (g.alpha, 0.0f32);
    gemm_strided_batched_ex(
        *blas.handle(),
        op(g.trans_a),
        op(g.trans_b),
        g.m as i32,
        g.n as i32,
        g.k as i32,
        &alpha as *const f32 as *const _,
        addr(&g.a) as *const _,
        data_type::<T>(g.a.buf),
        g.a.ld as i32,
        g.a.head_stride as i64,
        addr(&g.b) as *const _,
        data_type::<T>(g.b.buf),
        g.b.ld as i32,
        g.b.head_stride as i64,
        &beta as *const f32 as *const _,
        addr(&g.c) as *mut _,
        data_type::<T>(g.c.buf),
        g.c.ld as i32,
        g.c.head_stride as i64,
        g.heads as i32,
        cublasComputeType_t::CUBLAS_COMPUTE_32F,
        cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The GEMM plan checked on the CPU: the same column-major products in f64, with an f64
    //! softmax between them, against the f64 reference (no GPU needed). This pins down the
    //! transposes, leading dimensions and strides the GPU path hands to cuBLAS.
    use std::collections::HashMap;

    use super::*;
    use crate::reference::{self, RefOptions};
    use crate::tensor::contiguous_strides;

    fn strides(shape: [usize; 4]) -> Strides {
        let s = contiguous_strides(&shape);
        Strides { batch: s[0] as u64, row: s[1] as u64, head: s[2] as u64 }
    }

    /// Column-major `C = alpha op(A) op(B)` for each head, as cuBLAS computes it.
    fn gemm_cpu(g: &Gemm, bufs: &mut HashMap<Buf, Vec<f64>>) {
        let at = |o: &Operand, h: usize, r: usize, c: usize, t: bool| {
            let (r, c) = if t { (c, r) } else { (r, c) };
            o.offset + h * o.head_stride + r + c * o.ld
        };
        for h in 0..g.heads {
            for i in 0..g.m {
                for j in 0..g.n {
                    let mut acc = 0.0;
                    for l in 0..g.k {
                        acc +=
                            bufs[&g.a.buf][at(&g.a, h, i, l, g.trans_a)] * bufs[&g.b.buf][at(&g.b, h, l, j, g.trans_b)];
                    }
                    let idx = at(&g.c, h, i, j, false);
                    bufs.get_mut(&g.c.buf).unwrap()[idx] = g.alpha as f64 * acc;
                }
            }
        }
    }

    fn visible(s: &Shape, causal: bool, i: usize, j: usize) -> bool {
        !causal || j as i64 <= i as i64 + s.seqlen_k as i64 - s.seqlen_q as i64
    }

    fn layout(s: &Shape, scale: f32) -> Layout {
        let q = strides([s.batch, s.seqlen_q, s.heads, s.head_dim]);
        let k = strides([s.batch, s.seqlen_k, s.heads, s.head_dim]);
        Layout { dims: *s, scale, q, k, v: k, o: q, d_o: q, dq: q, dk: k, dv: k }
    }

    /// Forward and backward through the plan; returns o, lse, dq, dk, dv.
    fn run_plan(s: &Shape, causal: bool, q: &[f64], k: &[f64], v: &[f64], d_o: &[f64]) -> [Vec<f64>; 5] {
        let scale = 1.0 / (s.head_dim as f32).sqrt();
        let l = layout(s, scale);
        let nn = s.batch * s.heads * s.seqlen_q * s.seqlen_k;
        let mut bufs: HashMap<Buf, Vec<f64>> = HashMap::new();
        for (buf, data) in [(Buf::Q, q), (Buf::K, k), (Buf::V, v), (Buf::DO, d_o)] {
            bufs.insert(buf, data.to_vec());
        }
        for (buf, len) in [
            (Buf::O, s.q_len()),
            (Buf::DQ, s.q_len()),
            (Buf::DK, s.kv_len()),
            (Buf::DV, s.kv_len()),
            (Buf::S, nn),
            (Buf::P, nn),
        ] {
            bufs.insert(buf, vec![f64::NAN; len]);
        }
        let rows = s.batch * s.heads * s.seqlen_q;
        let mut lse = vec![0.0; rows];
        for b in 0..s.batch {
            gemm_cpu(&l.scores(b), &mut bufs);
        }
        // The softmax kernel, in f64.
        for r in 0..rows {
            let i = r % s.seqlen_q;
            let row: Vec<f64> = bufs[&Buf::S][r * s.seqlen_k..][..s.seqlen_k].to_vec();
            let m =
                (0..s.seqlen_k).filter(|&j| visible(s, causal, i, j)).map(|j| row[j]).fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = (0..s.seqlen_k).filter(|&j| visible(s, causal, i, j)).map(|j| (row[j] - m).exp()).sum();
            lse[r] = if sum > 0.0 { m + sum.ln() } else { f64::NEG_INFINITY };
            for (j, x) in row.iter().enumerate() {
                bufs.get_mut(&Buf::P).unwrap()[r * s.seqlen_k + j] =
                    if visible(s, causal, i, j) { (x - lse[r]).exp() } else { 0.0 };
            }
        }
        for b in 0..s.batch {
            gemm_cpu(&l.output(b), &mut bufs);
        }
        for b in 0..s.batch {
            gemm_cpu(&l.grad_v(b), &mut bufs);
            gemm_cpu(&l.grad_p(b), &mut bufs);
        }
        // The dS kernel, in f64 (o and d_o contiguous [b, n, h, d]).
        for r in 0..rows {
            let (bh, i) = (r / s.seqlen_q, r % s.seqlen_q);
            let (b, h) = (bh / s.heads, bh % s.heads);
            let at = ((b * s.seqlen_q + i) * s.heads + h) * s.head_dim;
            let delta: f64 = (0..s.head_dim).map(|c| bufs[&Buf::O][at + c] * d_o[at + c]).sum();
            for j in 0..s.seqlen_k {
                let x = bufs[&Buf::P][r * s.seqlen_k + j] * (bufs[&Buf::S][r * s.seqlen_k + j] - delta);
                bufs.get_mut(&Buf::P).unwrap()[r * s.seqlen_k + j] = x;
            }
        }
        for b in 0..s.batch {
            gemm_cpu(&l.grad_q(b), &mut bufs);
            gemm_cpu(&l.grad_k(b), &mut bufs);
        }
        let mut take = |b: Buf| bufs.remove(&b).unwrap();
        [take(Buf::O), lse, take(Buf::DQ), take(Buf::DK), take(Buf::DV)]
    }

    #[test]
    fn gemm_plan_matches_the_reference() {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
        let cases = [
            (Shape { batch: 2, seqlen_q: 7, seqlen_k: 7, heads: 3, heads_kv: 3, head_dim: 8 }, false),
            (Shape { batch: 2, seqlen_q: 7, seqlen_k: 7, heads: 3, heads_kv: 3, head_dim: 8 }, true),
            (Shape { batch: 1, seqlen_q: 9, seqlen_k: 5, heads: 2, heads_kv: 2, head_dim: 16 }, true),
            (Shape { batch: 2, seqlen_q: 4, seqlen_k: 11, heads: 2, heads_kv: 2, head_dim: 8 }, true),
        ];
        for (s, causal) in cases {
            let mut randn = |n| -> Vec<f64> { crate::accuracy::to_f64(&crate::accuracy::randn::<f32>(n, &mut rng)) };
            let (q, k, v, d_o) = (randn(s.q_len()), randn(s.kv_len()), randn(s.kv_len()), randn(s.q_len()));
            let [o, lse, dq, dk, dv] = run_plan(&s, causal, &q, &k, &v, &d_o);
            let opts = RefOptions { causal, ..RefOptions::new(s.head_dim) };
            let f = reference::forward(&q, &k, &v, &s, &opts);
            let g = reference::backward(&q, &k, &v, &d_o, &s, &opts);
            let close = |a: &[f64], b: &[f64], what: &str| {
                assert_eq!(a.len(), b.len());
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    let ok = (x - y).abs() <= 1e-6 * (1.0 + y.abs()) || (x == y);
                    assert!(ok, "{what}[{i}]: plan {x} vs reference {y} ({s:?}, causal {causal})");
                }
            };
            close(&o, &f.o, "o");
            close(&lse, &f.lse, "lse");
            close(&dq, &g.dq, "dq");
            close(&dk, &g.dk, "dk");
            close(&dv, &g.dv, "dv");
        }
    }

    #[test]
    fn every_row_kernel_is_in_the_table() {
        for dtype in [Dtype::F16, Dtype::Bf16] {
            for kind in [Kind::Softmax, Kind::SoftmaxCausal, Kind::Probs, Kind::ProbsCausal, Kind::Ds] {
                assert!(!row_kernel_name(kind, dtype).is_empty(), "{kind:?} {dtype:?}");
            }
        }
    }

    #[test]
    fn gqa_is_rejected_with_a_clear_error() {
        let s = Shape { batch: 1, seqlen_q: 8, seqlen_k: 8, heads: 4, heads_kv: 2, head_dim: 64 };
        let e = check_standard(&s).unwrap_err().to_string();
        assert!(e.contains("GQA"), "{e}");
    }
}
