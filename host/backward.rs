//! `backward`: gradients dQ, dK, dV of attention from Q, K, V, O, dO and the forward's LSE,
//! recomputing the attention matrix block by block (never stored).
use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, SyncOnDrop};

use crate::error::{Error, Result};
use crate::forward::{check_layout, validate_inputs, AttentionOptions, ForwardKernel};
use crate::launch::{launch, launch_overlapping, strides_of, ParamBlock};
use crate::masks::{self, MaskInputs, VarlenBatch, VarlenDevice};
use crate::shape::Shape;
use crate::tensor::{Element, Tensor};
use flashattn_kernels::config::{
    dkdv_takes_key_block_order, dq_convert_threads, Dtype, MmaBackwardConfig, MmaBackwardDqConfig, MmaForwardConfig,
    ScalarBackwardConfig, WgmmaBackwardConfig, WgmmaForwardConfig, DQ_CONVERT_THREADS, MASKED_SCRATCH_BYTES,
};
use flashattn_kernels::params::BackwardParams;

/// Attention backward. `q`, `k`, `v` as for [`crate::forward()`]; `o` and `lse` are what the
/// forward returned for them; `d_o` is the gradient of the loss with respect to `o` (same shape).
/// Returns `(dq, dk, dv)`, contiguous, shaped like `q`, `k`, `v`. With GQA/MQA, `dk` and `dv`
/// sum over the query heads that share a K/V head.
///
/// `opts.kernel` `Auto`: on compute capability 9.0, the wgmma dK/dV kernel for head dims 33..=64
/// and 97..=128 (with windows, block masks, packed batches and dropout too; softcap and ALiBi
/// run mma.sync), else the mma.sync one (every head dim of the forward);
/// `TensorCore`: always mma.sync; `Wgmma`: the wgmma kernel or an error. dQ is summed with f32
/// atomics unless `opts.deterministic` (then its own kernel, mma.sync). `Scalar`: the CUDA-core reference
/// path (head dims 32, 64, 128; deterministic). Memory: dq, dk, dv, two f32 rows per query row
/// and, for the atomic dQ, an f32 copy of dq.
pub fn backward<T: Element>(
    q: &Tensor<T>,
    k: &Tensor<T>,
    v: &Tensor<T>,
    o: &Tensor<T>,
    lse: &Tensor<f32>,
    d_o: &Tensor<T>,
    opts: &AttentionOptions,
) -> Result<(Tensor<T>, Tensor<T>, Tensor<T>)> {
    backward_masked(q, k, v, o, lse, d_o, &MaskInputs::default(), opts)
}

/// [`backward()`] of [`crate::forward_masked`]: the same `inputs` and options as the forward.
#[allow(clippy::too_many_arguments)]
pub fn backward_masked<T: Element>(
    q: &Tensor<T>,
    k: &Tensor<T>,
    v: &Tensor<T>,
    o: &Tensor<T>,
    lse: &Tensor<f32>,
    d_o: &Tensor<T>,
    inputs: &MaskInputs,
    opts: &AttentionOptions,
) -> Result<(Tensor<T>, Tensor<T>, Tensor<T>)> {
    let dims = validate_backward(q, k, v, o, lse, d_o, opts)?;
    crate::forward::check_masked_kernel(opts, masks::needs_masks(opts, inputs, false))?;
    run_backward(q, k, v, o, lse, d_o, dims, inputs, None, opts)
}

/// [`backward()`] of [`crate::forward_varlen`]: packed `[total, heads, head_dim]` tensors, `lse`
/// f32 `[heads, total_q]` as the forward returned it.
#[allow(clippy::too_many_arguments)]
pub fn backward_varlen<T: Element>(
    q: &Tensor<T>,
    k: &Tensor<T>,
    v: &Tensor<T>,
    o: &Tensor<T>,
    lse: &Tensor<f32>,
    d_o: &Tensor<T>,
    batch: &VarlenBatch,
    inputs: &MaskInputs,
    opts: &AttentionOptions,
) -> Result<(Tensor<T>, Tensor<T>, Tensor<T>)> {
    let dims = crate::forward::validate_packed(q, k, v, batch, opts)?;
    for (name, t) in [("o", o), ("d_o", d_o)] {
        if t.shape() != q.shape() || t.strides()[2] != 1 || t.strides()[..2].iter().any(|s| s % 8 != 0) {
            return Err(Error::invalid(
                name,
                format!("must be shaped like q {:?} (last dim contiguous), got {t:?}", q.shape()),
            ));
        }
        if t.device() != q.device() {
            return Err(Error::DeviceMismatch { a: "q", b: name });
        }
    }
    if lse.shape() != [dims.heads, batch.total_q()] || !lse.is_contiguous() {
        return Err(Error::invalid("lse", format!("must be a contiguous [heads, total_q] tensor, got {lse:?}")));
    }
    if lse.device() != q.device() {
        return Err(Error::DeviceMismatch { a: "q", b: "lse" });
    }
    let cu = VarlenDevice::upload(q.device(), batch)?;
    run_backward(q, k, v, o, lse, d_o, dims, inputs, Some(&cu), opts)
}

/// Allocates the outputs and the workspace, and runs the kernels.
#[allow(clippy::too_many_arguments)]
fn run_backward<T: Element>(
    q: &Tensor<T>,
    k: &Tensor<T>,
    v: &Tensor<T>,
    o: &Tensor<T>,
    lse: &Tensor<f32>,
    d_o: &Tensor<T>,
    dims: Shape,
    inputs: &MaskInputs,
    varlen: Option<&VarlenDevice>,
    opts: &AttentionOptions,
) -> Result<(Tensor<T>, Tensor<T>, Tensor<T>)> {
    let dev = q.device();
    let mut grads =
        Gradients { dq: dev.alloc::<T>(q.shape())?, dk: dev.alloc::<T>(k.shape())?, dv: dev.alloc::<T>(k.shape())? };
    // Per (batch, head): the longest sequence's rows, rounded up (packed batches too).
    let stat_pitch = dims.seqlen_q.next_multiple_of(MmaBackwardConfig::STAT_ROW_ALIGN);
    let mut stats = dev.alloc::<f32>(&[2, dims.batch, dims.heads, stat_pitch])?;
    // The atomic dQ accumulates into zeros, [batch, heads, stat_pitch, padded head dim], which
    // the preprocessing kernel writes (no separate memset pass).
    let masked = masks::needs_masks(opts, inputs, varlen.is_some());
    let atomic_dq = uses_tensor_cores(opts) && !opts.deterministic;
    let mods = masks::mods_build(opts, inputs);
    let acc_dim = backward_head_dim(T::DTYPE.expect("validated"), dims.head_dim, opts.causal && !masked, masked, mods);
    let mut dq_accum =
        if atomic_dq { Some(dev.alloc::<f32>(&[dims.batch, dims.heads, stat_pitch, acc_dim])?) } else { None };
    // The wgmma dK/dV kernel's per-(batch, KV head) counts of CTAs done with dq_accum, which the
    // overlapped dQ conversion waits on (zeroed by the preprocessing; u32 on the device).
    let mut dq_done = if atomic_dq { Some(dev.alloc::<i32>(&[dims.batch, dims.heads_kv])?) } else { None };
    let work =
        Workspace { stats: &mut stats, dq_accum: dq_accum.as_mut(), dq_done: dq_done.as_mut(), stat_pitch, acc_dim };
    launch_backward(q, k, v, o, lse, d_o, work, &mut grads, dims, opts, inputs, varlen)?;
    Ok((grads.dq, grads.dk, grads.dv))
}

/// The backward's f32 scratch: D and LSE*log2(e) per row, and the atomic dQ accumulator.
struct Workspace<'a> {
    stats: &'a mut Tensor<f32>,
    dq_accum: Option<&'a mut Tensor<f32>>,
    dq_done: Option<&'a mut Tensor<i32>>,
    stat_pitch: usize,
    acc_dim: usize,
}

/// The three outputs of a backward call.
struct Gradients<T: Element> {
    dq: Tensor<T>,
    dk: Tensor<T>,
    dv: Tensor<T>,
}

fn uses_tensor_cores(opts: &AttentionOptions) -> bool {
    !matches!(opts.kernel, ForwardKernel::Scalar)
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
        ForwardKernel::Auto | ForwardKernel::TensorCore => {
            // Every head dim the forward takes (multiples of 8 up to 256) has a row.
            mma_backward_kernel(T::DTYPE.expect("validated"), dims.head_dim, opts.causal)
                .ok_or_else(|| unsupported_mma(dims.head_dim))?;
            return Ok(dims);
        }
        ForwardKernel::Wgmma => {
            wgmma_backward_kernel(T::DTYPE.expect("validated"), dims.head_dim, opts.causal, false).ok_or_else(
                || Error::UnsupportedHeadDim {
                    head_dim: dims.head_dim,
                    kernel: "wgmma backward",
                    supported: (40..=64).chain(104..=128).step_by(8).collect(),
                },
            )?;
            return Ok(dims);
        }
        ForwardKernel::Scalar => {}
        other => {
            return Err(Error::invalid(
                "kernel",
                format!("{other:?} selects forward tiles; the backward takes Auto, TensorCore, Wgmma or Scalar"),
            ));
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

/// The block-sparse backward's key-block order kernel (one CTA per KV head), its threads, and
/// the most shared memory its counts may take (the default limit of a launch).
const KEY_BLOCK_ORDER_KERNEL: &str = {
    macro_rules! row {
        ($name:ident) => {
            stringify!($name)
        };
    }
    flashattn_kernels::for_each_backward_key_block_order_kernel!(row)
};
const KEY_BLOCK_ORDER_THREADS: usize = 1024;
const KEY_BLOCK_ORDER_MAX_SMEM: usize = 48 * 1024;

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

/// The head dim the tensor-core backward is instantiated for (the row of `dq_accum`).
fn backward_head_dim(dtype: Dtype, head_dim: usize, causal: bool, masked: bool, mods: u32) -> usize {
    let kernel = if masked {
        mma_backward_masked_kernel(dtype, head_dim, mods)
    } else {
        mma_backward_kernel(dtype, head_dim, causal)
    };
    kernel.map_or(head_dim, |(_, c)| c.head_dim)
}

/// The masked dK/dV kernel (window, softcap, ALiBi, block mask, dropout, packed batches; causal
/// as a window) for a head dim and its tiles.
fn mma_backward_masked_kernel(dtype: Dtype, head_dim: usize, mods: u32) -> Option<(&'static str, MmaBackwardConfig)> {
    if head_dim == 0 || head_dim % 8 != 0 {
        return None;
    }
    let mut found: Option<(&'static str, MmaBackwardConfig)> = None;
    macro_rules! row {
        ($name:ident, $dtype:ident, $d:literal, $bm:literal, $bn:literal, $ds:literal, $mods:literal) => {
            if Dtype::$dtype == dtype && $mods == mods && $d >= head_dim && found.is_none_or(|(_, c)| $d < c.head_dim) {
                found = Some((
                    stringify!($name),
                    MmaBackwardConfig { head_dim: $d, block_m: $bm, block_n: $bn, d_split: $ds },
                ));
            }
        };
    }
    flashattn_kernels::for_each_mma_backward_masked_kernel!(row);
    found
}

/// The masked deterministic dQ kernel for a head dim and its tiles.
fn mma_backward_dq_masked_kernel(
    dtype: Dtype,
    head_dim: usize,
    mods: u32,
) -> Option<(&'static str, MmaBackwardDqConfig)> {
    let mut found: Option<(&'static str, MmaBackwardDqConfig)> = None;
    macro_rules! row {
        ($name:ident, $dtype:ident, $d:literal, $bm:literal, $bn:literal, $mods:literal) => {
            if Dtype::$dtype == dtype && $mods == mods && $d >= head_dim && found.is_none_or(|(_, c)| $d < c.head_dim) {
                found = Some((stringify!($name), MmaBackwardDqConfig { head_dim: $d, block_m: $bm, block_n: $bn }));
            }
        };
    }
    flashattn_kernels::for_each_mma_backward_dq_masked_kernel!(row);
    found
}

fn unsupported_mma(head_dim: usize) -> Error {
    Error::UnsupportedHeadDim {
        head_dim,
        kernel: "tensor-core backward",
        supported: (8..=MmaForwardConfig::MAX_HEAD_DIM).step_by(8).collect(),
    }
}

/// The tensor-core dK/dV kernel for a head dim (padded up to its instantiation) and its tiles.
fn mma_backward_kernel(dtype: Dtype, head_dim: usize, causal: bool) -> Option<(&'static str, MmaBackwardConfig)> {
    if head_dim == 0 || head_dim % 8 != 0 {
        return None;
    }
    // The smallest instantiated head dim that holds this one (columns past it are zero-filled).
    let mut found: Option<(&'static str, MmaBackwardConfig)> = None;
    macro_rules! row {
        ($name:ident, $dtype:ident, $d:literal, $bm:literal, $bn:literal, $ds:literal, $causal:literal) => {
            if Dtype::$dtype == dtype
                && $d >= head_dim
                && $causal == causal
                && found.is_none_or(|(_, c)| $d < c.head_dim)
            {
                let config = MmaBackwardConfig { head_dim: $d, block_m: $bm, block_n: $bn, d_split: $ds };
                debug_assert!(config.is_valid());
                found = Some((stringify!($name), config));
            }
        };
    }
    flashattn_kernels::for_each_mma_backward_kernel!(row);
    found
}

/// The wgmma dK/dV kernel for a head dim, if it has one: only where its instantiated head dim is
/// the mma.sync row's (so `dq_accum` and the deterministic dQ kernel are the same).
fn wgmma_backward_kernel(
    dtype: Dtype,
    head_dim: usize,
    causal: bool,
    dropout: bool,
) -> Option<(&'static str, WgmmaBackwardConfig)> {
    let padded = WgmmaForwardConfig::padded_head_dim(head_dim)?;
    if mma_backward_kernel(dtype, head_dim, causal)?.1.head_dim != padded {
        return None;
    }
    let mut found = None;
    macro_rules! row {
        ($name:ident, $dtype:ident, $d:literal, $bm:literal, $bn:literal, $causal:literal, $dropout:literal) => {
            if Dtype::$dtype == dtype && $d == padded && $causal == causal && $dropout == dropout {
                let config = WgmmaBackwardConfig { head_dim: $d, block_m: $bm, block_n: $bn };
                debug_assert!(config.is_valid());
                found = Some((stringify!($name), config));
            }
        };
    }
    flashattn_kernels::for_each_wgmma_backward_kernel!(row);
    found
}

/// The masked wgmma dK/dV kernel (windows, block masks, packed batches; `mods` 0, or 2 with
/// dropout: not softcap / ALiBi) for a head dim, under the same head-dim rule as
/// [`wgmma_backward_kernel`].
fn wgmma_backward_masked_kernel(
    dtype: Dtype,
    head_dim: usize,
    mods: u32,
) -> Option<(&'static str, WgmmaBackwardConfig)> {
    let padded = WgmmaForwardConfig::padded_head_dim(head_dim)?;
    if !(mods == 0 || mods == 2) || mma_backward_masked_kernel(dtype, head_dim, mods)?.1.head_dim != padded {
        return None;
    }
    let dropout = mods == 2;
    let mut found = None;
    macro_rules! row {
        ($name:ident, $dtype:ident, $d:literal, $bm:literal, $bn:literal, $dropout:literal) => {
            if Dtype::$dtype == dtype && $d == padded && $dropout == dropout {
                found = Some((stringify!($name), WgmmaBackwardConfig { head_dim: $d, block_m: $bm, block_n: $bn }));
            }
        };
    }
    flashattn_kernels::for_each_wgmma_backward_masked_kernel!(row);
    found
}

/// The dK/dV kernel a backward call runs: its name, grid width (keys per CTA), threads and
/// dynamic shared memory.
struct DkdvLaunch {
    name: &'static str,
    /// The wgmma kernel: `dq_accum` in its tile layout (`config::dq_tiled_index`).
    dq_tiled: bool,
    block_n: usize,
    threads: usize,
    smem: usize,
}

/// Picks the dK/dV kernel (see [`backward`] for the rules).
#[allow(clippy::too_many_arguments)]
fn dkdv_launch(
    dtype: Dtype,
    dims: &Shape,
    opts: &AttentionOptions,
    masked: bool,
    mods: u32,
    dropout_only: bool,
    compute_capability: (i32, i32),
) -> Result<DkdvLaunch> {
    let hopper = compute_capability == (9, 0);
    let wants_wgmma = matches!(opts.kernel, ForwardKernel::Auto | ForwardKernel::Wgmma);
    if wants_wgmma && hopper {
        // Dropout with at most causal: the plain kernel's dropout build where it has one
        // (non-causal, and causal at d = 128: see the kernel table) and the masked one exists
        // (the same head dims, so `dq_accum` and the masked deterministic dQ kernel match it);
        // else the masked build.
        let plain_dropout = wgmma_backward_masked_kernel(dtype, dims.head_dim, mods)
            .filter(|_| dropout_only)
            .and_then(|_| wgmma_backward_kernel(dtype, dims.head_dim, opts.causal, true));
        let wgmma = plain_dropout.or_else(|| {
            if masked {
                wgmma_backward_masked_kernel(dtype, dims.head_dim, mods)
            } else {
                wgmma_backward_kernel(dtype, dims.head_dim, opts.causal, false)
            }
        });
        if let Some((name, cfg)) = wgmma {
            let smem = cfg.smem_bytes();
            return Ok(DkdvLaunch { name, dq_tiled: true, block_n: cfg.block_n, threads: cfg.threads(), smem });
        }
    }
    if opts.kernel == ForwardKernel::Wgmma {
        return Err(Error::invalid(
            "kernel",
            format!(
                "the wgmma backward needs compute capability 9.0 (this device: {compute_capability:?}), \
                 no masks, and head dims 40..=64 or 104..=128"
            ),
        ));
    }
    let (name, cfg) = if masked {
        mma_backward_masked_kernel(dtype, dims.head_dim, mods)
    } else {
        mma_backward_kernel(dtype, dims.head_dim, opts.causal)
    }
    .ok_or_else(|| unsupported_mma(dims.head_dim))?;
    // The sm_90a PTX (compute capability 9.0) stages dQ in shared memory for bulk reductions;
    // masked builds park a block index per warp past the tiles.
    let smem = if hopper { cfg.smem_bytes_sm90() } else { cfg.smem_bytes() };
    let smem = if masked { smem + MASKED_SCRATCH_BYTES } else { smem };
    Ok(DkdvLaunch { name, dq_tiled: false, block_n: cfg.block_n, threads: cfg.threads(), smem })
}

/// The deterministic dQ kernel for a head dim and its tiles.
fn mma_backward_dq_kernel(dtype: Dtype, head_dim: usize, causal: bool) -> Option<(&'static str, MmaBackwardDqConfig)> {
    let mut found: Option<(&'static str, MmaBackwardDqConfig)> = None;
    macro_rules! row {
        ($name:ident, $dtype:ident, $d:literal, $bm:literal, $bn:literal, $causal:literal) => {
            if Dtype::$dtype == dtype
                && $d >= head_dim
                && $causal == causal
                && found.is_none_or(|(_, c)| $d < c.head_dim)
            {
                let config = MmaBackwardDqConfig { head_dim: $d, block_m: $bm, block_n: $bn };
                debug_assert!(config.is_valid());
                found = Some((stringify!($name), config));
            }
        };
    }
    flashattn_kernels::for_each_mma_backward_dq_kernel!(row);
    found
}

/// The dQ conversion kernel; `tiled`: `dq_accum` in the wgmma kernel's tile layout.
fn dq_convert_kernel_name(dtype: Dtype, tiled: bool) -> &'static str {
    let mut found = "";
    macro_rules! row {
        ($name:ident, $dtype:ident, $tiled:literal) => {
            if Dtype::$dtype == dtype && $tiled == tiled {
                found = stringify!($name);
            }
        };
    }
    flashattn_kernels::for_each_backward_dq_convert_kernel!(row);
    found
}

/// The device address of an optional workspace tensor (0 without one, which the kernels read as
/// "absent") and the guard that orders the stream with it while it is in use.
fn optional_ptr_mut<'a, U: Element>(
    t: Option<&'a mut Tensor<U>>,
    stream: &'a CudaStream,
) -> (u64, Option<SyncOnDrop<'a>>) {
    t.map_or((0, None), |t| {
        let (ptr, guard) = t.data_mut().device_ptr_mut(stream);
        (ptr, Some(guard))
    })
}

#[allow(clippy::too_many_arguments)]
fn launch_backward<T: Element>(
    q: &Tensor<T>,
    k: &Tensor<T>,
    v: &Tensor<T>,
    o: &Tensor<T>,
    lse: &Tensor<f32>,
    d_o: &Tensor<T>,
    work: Workspace,
    grads: &mut Gradients<T>,
    dims: Shape,
    opts: &AttentionOptions,
    inputs: &MaskInputs,
    varlen: Option<&VarlenDevice>,
) -> Result<()> {
    let Workspace { stats, dq_accum, dq_done, stat_pitch, acc_dim } = work;
    let masked = masks::needs_masks(opts, inputs, varlen.is_some());
    let mods = masks::mods_build(opts, inputs);
    let dtype = T::DTYPE.expect("validated");
    let scale = opts.softmax_scale.unwrap_or(1.0 / (dims.head_dim as f32).sqrt());
    let dev = q.device().clone();
    let stream = dev.stream().clone();
    let strides = [strides_of(q), strides_of(k), strides_of(v), strides_of(o), strides_of(d_o)];
    let grad_strides = [strides_of(&grads.dq), strides_of(&grads.dk), strides_of(&grads.dv)];
    let (q_ptr, _g1) = q.data().device_ptr(&stream);
    let (k_ptr, _g2) = k.data().device_ptr(&stream);
    let (v_ptr, _g3) = v.data().device_ptr(&stream);
    let (o_ptr, _g4) = o.data().device_ptr(&stream);
    let (do_ptr, _g5) = d_o.data().device_ptr(&stream);
    let (lse_ptr, _g6) = lse.data().device_ptr(&stream);
    // `stats` holds D, then LSE * log2(e): [2][batch][heads][stat_pitch].
    let stat_bytes = (dims.batch * dims.heads * stat_pitch * 4) as u64;
    let (delta_ptr, _g7) = stats.data_mut().device_ptr_mut(&stream);
    let (dq_ptr, _g8) = grads.dq.data_mut().device_ptr_mut(&stream);
    let (dk_ptr, _g9) = grads.dk.data_mut().device_ptr_mut(&stream);
    let (dv_ptr, _g10) = grads.dv.data_mut().device_ptr_mut(&stream);
    let (dq_accum_ptr, _g11) = optional_ptr_mut(dq_accum, &stream);
    let (dq_done_ptr, _g12) = optional_ptr_mut(dq_done, &stream);
    let setup = masks::setup(&stream, &dev, &dims, scale, opts, inputs, varlen)?;
    let mut params = ParamBlock(BackwardParams {
        q: q_ptr,
        k: k_ptr,
        v: v_ptr,
        o: o_ptr,
        d_o: do_ptr,
        lse: lse_ptr,
        delta: delta_ptr,
        lse_log2: delta_ptr + stat_bytes,
        dq_accum: dq_accum_ptr,
        dq_done: 0, // these three set below, once the dK/dV kernel is chosen
        key_block_order: 0,
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
        stat_pitch: stat_pitch as u32,
        acc_dim: acc_dim as u32,
        dkdv_block_n: 0,
        _pad: 0,
        mask: setup.params,
    });
    let (b, h, hkv) = (dims.batch as u32, dims.heads as u32, dims.heads_kv as u32);
    // Chosen before anything is launched, so that a call it rejects leaves the stream untouched.
    let dkdv = if uses_tensor_cores(opts) {
        let dropout_only = masks::dropout_only(opts, inputs, varlen.is_some());
        Some(dkdv_launch(dtype, &dims, opts, masked, mods, dropout_only, dev.compute_capability())?)
    } else {
        None
    };
    // The wgmma dK/dV kernel with atomic dQ publishes its CTAs' completion per (batch, KV head),
    // so its tiled dQ conversion can run on the SMs its last CTAs leave idle (see below).
    // (`dq_done` is allocated exactly with `dq_accum`, for the atomic dQ.)
    let overlapped = dkdv.as_ref().filter(|k| k.dq_tiled && dq_done_ptr != 0);
    if overlapped.is_some() {
        params.0.dq_done = dq_done_ptr;
    }
    params.0.dkdv_block_n = dkdv.as_ref().map_or(0, |k| k.block_n as u32);
    // Block-sparse: a kernel of its own orders each KV head's dK/dV CTAs longest first, so that
    // the grid does not end in a long CTA started last (`BackwardParams::key_block_order`; the
    // builds with softcap, ALiBi or dropout keep grid order, `dkdv_takes_key_block_order`, as do
    // key blocks too many for the order kernel's shared-memory counts: past N = 1.5M at 128 keys
    // per CTA).
    let key_blocks = params.0.dkdv_key_blocks();
    let order_smem = 4 * key_blocks; // a u32 count per key block
    let ordered = inputs.block_mask.is_some() && dkdv.is_some() && dkdv_takes_key_block_order(mods);
    let mut key_order = if ordered && order_smem <= KEY_BLOCK_ORDER_MAX_SMEM {
        Some(dev.alloc::<i32>(&[dims.heads_kv, key_blocks])?)
    } else {
        None
    };
    let (key_order_ptr, _g13) = optional_ptr_mut(key_order.as_mut(), &stream);
    params.0.key_block_order = key_order_ptr;
    let overlapped_dq = overlapped.is_some();
    let warps = ScalarBackwardConfig::PREPROCESS_WARPS;
    // SAFETY (all launches below): one parameter block for every backward kernel, matching their
    // signature; every pointer is a live allocation of the validated shape and strides. The
    // preprocessing writes D and LSE*log2(e) for all `stat_pitch` rows, and zeroes all of
    // `dq_accum` ([batch, heads, stat_pitch, acc_dim]), before the others read them (same
    // stream, in order); each output row is written by exactly one CTA, nothing past seqlen or
    // head_dim; `dq_accum` is then only touched by the atomic dK/dV kernel and the conversion.
    unsafe {
        if key_order_ptr != 0 {
            // Writes all of `key_order` before the dK/dV kernel reads it.
            launch(&dev, KEY_BLOCK_ORDER_KERNEL, order_smem, (1, hkv, 1), KEY_BLOCK_ORDER_THREADS, &params)?;
        }
        launch(&dev, preprocess_kernel_name(dtype), 0, (stat_pitch.div_ceil(warps) as u32, h, b), 32 * warps, &params)?;
    }
    if !uses_tensor_cores(opts) && masked {
        return Err(Error::invalid("kernel", "the scalar backward has no masks; use Auto or TensorCore"));
    }
    if !uses_tensor_cores(opts) {
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
        unsafe {
            launch(&dev, name(Part::Dq)?, smem, (q_blocks, h, b), threads, &params)?;
            launch(&dev, name(Part::Dv)?, smem, (k_blocks, hkv, b), threads, &params)?;
            launch(&dev, name(Part::Dk)?, smem, (k_blocks, hkv, b), threads, &params)?;
        }
        return Ok(());
    }
    let dkdv = dkdv.expect("chosen above for the tensor-core paths");
    let k_blocks = dims.seqlen_k.div_ceil(dkdv.block_n) as u32;
    unsafe { launch(&dev, dkdv.name, dkdv.smem, (k_blocks, hkv, b), dkdv.threads, &params)? };
    if dq_accum_ptr != 0 {
        let threads = dq_convert_threads(dims.seqlen_q, dims.head_dim, dkdv.dq_tiled);
        let grid = (threads.div_ceil(DQ_CONVERT_THREADS) as u32, h, b);
        let name = dq_convert_kernel_name(dtype, dkdv.dq_tiled);
        if overlapped_dq {
            // Programmatic stream serialization: the conversion's CTAs may start once every
            // dK/dV CTA is resident (each signals it at its start), on the SMs that the
            // shortest ones free, and convert each head as soon as its counter is full (the
            // tail of a block-sparse backward, where CTAs differ in length, is ~5% idle SMs).
            unsafe { launch_overlapping(&dev, name, 0, grid, DQ_CONVERT_THREADS, &params)? };
        } else {
            unsafe { launch(&dev, name, 0, grid, DQ_CONVERT_THREADS, &params)? };
        }
    } else {
        let (name, cfg) = if masked {
            mma_backward_dq_masked_kernel(dtype, dims.head_dim, mods)
        } else {
            mma_backward_dq_kernel(dtype, dims.head_dim, opts.causal)
        }
        .ok_or_else(|| unsupported_mma(dims.head_dim))?;
        let q_blocks = dims.seqlen_q.div_ceil(cfg.block_m) as u32;
        unsafe { launch(&dev, name, cfg.smem_bytes(), (q_blocks, h, b), cfg.threads(), &params)? };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every head dim the forward takes has a valid tensor-core backward row (dK/dV and the
    /// deterministic dQ), in both dtypes, causal and not.
    #[test]
    fn every_head_dim_has_valid_backward_tiles() {
        for dtype in [Dtype::F16, Dtype::Bf16] {
            for causal in [false, true] {
                for d in (8..=256).step_by(8) {
                    let (_, cfg) =
                        mma_backward_kernel(dtype, d, causal).unwrap_or_else(|| panic!("no dK/dV row for d={d}"));
                    assert!(cfg.is_valid() && cfg.head_dim >= d, "{cfg:?}");
                    assert!(cfg.smem_bytes() <= 227 * 1024, "{cfg:?}");
                    let (_, dq) =
                        mma_backward_dq_kernel(dtype, d, causal).unwrap_or_else(|| panic!("no dQ row for d={d}"));
                    assert!(dq.is_valid() && dq.head_dim == cfg.head_dim, "{dq:?}");
                }
                assert!(mma_backward_kernel(dtype, 12, causal).is_none());
                assert!(mma_backward_kernel(dtype, 264, causal).is_none());
            }
            assert!(!dq_convert_kernel_name(dtype, false).is_empty());
            assert!(!dq_convert_kernel_name(dtype, true).is_empty());
            // The masked wgmma rows: the same head dims, masks only (no softcap / ALiBi / dropout).
            for d in (8..=256).step_by(8) {
                let expected = (40..=64).contains(&d) || (104..=128).contains(&d);
                assert_eq!(wgmma_backward_masked_kernel(dtype, d, 0).is_some(), expected, "masked d={d}");
                assert_eq!(wgmma_backward_masked_kernel(dtype, d, 2).is_some(), expected, "dropout d={d}");
                assert!(wgmma_backward_masked_kernel(dtype, d, 3).is_none());
            }
            // The wgmma rows: exactly the head dims whose mma.sync row is instantiated at 64 or 128.
            for causal in [false, true] {
                for d in (8..=256).step_by(8) {
                    let wgmma = wgmma_backward_kernel(dtype, d, causal, false);
                    let expected = (40..=64).contains(&d) || (104..=128).contains(&d);
                    assert_eq!(wgmma.is_some(), expected, "d={d}");
                    // The dropout builds: non-causal, and causal at d = 128, on the same tiles.
                    let dropout = wgmma_backward_kernel(dtype, d, causal, true);
                    let expected = expected && (!causal || (104..=128).contains(&d));
                    assert_eq!(dropout.is_some(), expected, "dropout d={d} causal={causal}");
                    if let Some((name, c)) = dropout {
                        assert!(name.contains("_dropout_") && Some(c) == wgmma.map(|(_, c)| c), "{name}");
                    }
                    if let Some((_, cfg)) = wgmma {
                        assert!(
                            cfg.is_valid() && cfg.head_dim == mma_backward_kernel(dtype, d, causal).unwrap().1.head_dim
                        );
                    }
                }
            }
        }
    }
}
