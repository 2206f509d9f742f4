//! `forward`: validated attention forward, dispatched to a kernel of the kernel table.
use cudarc::driver::{DevicePtr, DevicePtrMut};

use crate::launch::{launch, strides_of, ParamBlock};
use crate::masks::{self, MaskInputs, VarlenBatch, VarlenDevice};

use crate::error::{Error, Result};
use crate::shape::Shape;
use crate::tensor::{Element, Tensor};
use crate::tensor_map::{self, TiledTensor, TENSOR_MAP_BYTES};
use flashattn_kernels::config::{
    Dtype, MmaForwardConfig, ScalarForwardConfig, WgmmaForwardConfig, BLOCK_MASK_SIZE, MASKED_SCRATCH_BYTES,
};
use flashattn_kernels::params::ForwardParams;

/// Options of an attention call (the names follow flash-attn and PyTorch SDPA).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionOptions {
    /// Causal mask, aligned to the bottom-right corner when `seqlen_q != seqlen_k` (as
    /// flash-attn >= 2.1): query row `i` sees keys `j <= i + seqlen_k - seqlen_q`. Rows that see no
    /// key (possible when `seqlen_q > seqlen_k`) output zeros and an LSE of `-inf`.
    pub causal: bool,
    /// Multiplies `Q K^T` before the softmax (finite and positive); `None` means `1 / sqrt(head_dim)`.
    pub softmax_scale: Option<f32>,
    /// Which forward kernel runs (the backward follows it: `Auto` and `TensorCore` select the
    /// tensor-core backward, `Scalar` the scalar one).
    pub kernel: ForwardKernel,
    /// Backward only: gradients bit-identical from run to run. The tensor-core backward then
    /// computes dQ in its own kernel (one CTA per query block, no atomics; about 1.4x the
    /// backward's work) instead of adding it up with f32 atomics in unspecified order.
    /// The scalar backward is always deterministic.
    pub deterministic: bool,
    /// Sliding window (flash-attn's `window_size`): query `i` sees keys `j` with `i' - left <= j
    /// <= i' + right`, `i' = i + seqlen_k - seqlen_q` (bottom-right aligned, as causal); `None`
    /// is unbounded on that side. Combines with `causal` (which caps `right` at 0). Blocks
    /// outside the window are skipped.
    pub window_left: Option<usize>,
    pub window_right: Option<usize>,
    /// Softcap `c`: scaled scores `s` become `c * tanh(s / c)` before the softmax (Gemma-2,
    /// Grok); 0 = off.
    pub softcap: f32,
    /// Dropout probability of the attention weights, `0 <= p < 1` (0: none). Element `(b, h, i,
    /// j)` is kept iff its Philox4x32-10 byte (seed, offset, b, h, i, j) is at most
    /// `keep_threshold(p)`, so `p` resolves to a multiple of 1/256; kept weights are scaled by
    /// `1 / keep probability`. The backward regenerates the same mask; the CPU builds it with
    /// [`crate::dropout::dropout_mask`].
    pub dropout_p: f32,
    /// Seed of the dropout mask (the Philox key).
    pub dropout_seed: u64,
    /// Offset of the dropout mask in the Philox counter stream: a call uses `batch * heads`
    /// subsequences from here (as PyTorch's Philox offset).
    pub dropout_offset: u64,
}

impl Default for AttentionOptions {
    fn default() -> Self {
        Self {
            causal: false,
            softmax_scale: None,
            kernel: ForwardKernel::Auto,
            deterministic: false,
            window_left: None,
            window_right: None,
            softcap: 0.0,
            dropout_p: 0.0,
            dropout_seed: 0,
            dropout_offset: 0,
        }
    }
}

impl AttentionOptions {
    /// Checks the mask options: windows at most 2^30, softcap finite and >= 0, `dropout_p` in
    /// `[0, 1)`.
    pub fn check_masks(&self) -> Result<()> {
        masks::check_options(self)
    }
}

/// The forward kernels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardKernel {
    /// The fastest kernel that supports the call.
    #[default]
    Auto,
    /// Tensor cores (mma.sync m16n8k16, sm_80+): head dims that are multiples of 8 up to 256.
    TensorCore,
    /// One thread per query row on CUDA cores: the simple reference path (head dims 32, 64, 128).
    Scalar,
    /// The tensor-core kernel with explicit tiles (for tuning): `block_m` query rows per CTA,
    /// `block_n` keys per block, `m_tiles` 16-row tiles per warp, `stages` K/V buffers. Only the tiles in the kernel
    /// table exist.
    TensorCoreTiles { block_m: u16, block_n: u16, m_tiles: u8, stages: u8 },
    /// Hopper warpgroup MMAs (`wgmma`, compute capability 9.0 only): head dims that are
    /// multiples of 8 up to 256 (padded to 64, 128 or 256 inside the kernel). `Auto` picks it on
    /// compute capability 9.0 for head dims 72..=128 and 200..=256, and its 192-row tiles for
    /// head dims up to 64, where it is the fastest (see `select_kernel`).
    Wgmma,
    /// The wgmma kernel with explicit tiles and schedule (for tuning and tests): `pipelined`
    /// false is the serial schedule. Only the configurations in the kernel table exist.
    WgmmaConfig { block_m: u16, block_n: u16, pipelined: bool },
    /// The warp-specialized wgmma forward (compute capability 9.0 only): FlashAttention-3's
    /// schedule, a producer warpgroup copying Q, K and V through the TMA and two consumer
    /// warpgroups (64 query rows each) whose MMAs alternate. Head dims that pad to 64 or 128;
    /// dense attention, causal and dropout (no windows, softcap, ALiBi, block masks or packed
    /// batches); Q, K and V 16-byte aligned.
    WarpSpecialized,
}

/// Attention forward: returns `O` (`[batch, seqlen_q, heads, head_dim]`, contiguous) and the
/// log-sum-exp of each row of scaled scores (`[batch, heads, seqlen_q]`, f32, natural log).
///
/// `q` is `[batch, seqlen_q, heads, head_dim]`; `k` and `v` are `[batch, seqlen_k, heads_kv,
/// head_dim]` with `heads` a multiple of `heads_kv` (MQA/GQA). f16 or bf16; the last dimension
/// contiguous, the other strides multiples of 8 elements.
pub fn forward<T: Element>(
    q: &Tensor<T>,
    k: &Tensor<T>,
    v: &Tensor<T>,
    opts: &AttentionOptions,
) -> Result<(Tensor<T>, Tensor<f32>)> {
    forward_masked(q, k, v, &MaskInputs::default(), opts)
}

/// [`forward()`] with ALiBi slopes and/or a block-sparse mask (see [`crate::masks`]).
pub fn forward_masked<T: Element>(
    q: &Tensor<T>,
    k: &Tensor<T>,
    v: &Tensor<T>,
    inputs: &MaskInputs,
    opts: &AttentionOptions,
) -> Result<(Tensor<T>, Tensor<f32>)> {
    let dims = validate_inputs(q, k, v, opts)?;
    check_masked_kernel(opts, masks::needs_masks(opts, inputs, false))?;
    let dev = q.device();
    let mut o = dev.alloc::<T>(&[dims.batch, dims.seqlen_q, dims.heads, dims.head_dim])?;
    let mut lse = dev.alloc::<f32>(&[dims.batch, dims.heads, dims.seqlen_q])?;
    launch_forward(q, k, v, &mut o, &mut lse, dims, opts, inputs, None)?;
    Ok((o, lse))
}

/// Attention over a packed variable-length batch (flash-attn's `flash_attn_varlen_func`): `q`
/// is `[total_q, heads, head_dim]`, `k` and `v` `[total_k, heads_kv, head_dim]`, sequence `b`
/// being the rows `batch.sequence(b)` of each. Returns `o` (`[total_q, heads, head_dim]`) and
/// the LSE, f32 `[heads, total_q]`. Every option and mask applies per sequence (causal and
/// windows align each sequence's own corner).
pub fn forward_varlen<T: Element>(
    q: &Tensor<T>,
    k: &Tensor<T>,
    v: &Tensor<T>,
    batch: &VarlenBatch,
    inputs: &MaskInputs,
    opts: &AttentionOptions,
) -> Result<(Tensor<T>, Tensor<f32>)> {
    let dims = validate_packed(q, k, v, batch, opts)?;
    let dev = q.device();
    let mut o = dev.alloc::<T>(q.shape())?;
    let mut lse = dev.alloc::<f32>(&[dims.heads, batch.total_q()])?;
    let cu = VarlenDevice::upload(dev, batch)?;
    launch_forward(q, k, v, &mut o, &mut lse, dims, opts, inputs, Some(&cu))?;
    Ok((o, lse))
}

/// Packed `[total, heads, head_dim]` q, k, v matching `batch`; returns the problem with the
/// longest sequences as its lengths.
pub(crate) fn validate_packed<T: Element>(
    q: &Tensor<T>,
    k: &Tensor<T>,
    v: &Tensor<T>,
    batch: &VarlenBatch,
    opts: &AttentionOptions,
) -> Result<Shape> {
    if T::DTYPE.is_none() {
        return Err(Error::invalid("q", format!("dtype {} is not supported; use f16 or bf16", T::NAME)));
    }
    for (name, t, total) in [("q", q, batch.total_q()), ("k", k, batch.total_k()), ("v", v, batch.total_k())] {
        let (shape, strides) = (t.shape(), t.strides());
        if shape.len() != 3 || shape[0] != total {
            return Err(Error::invalid(
                name,
                format!("must be a packed [total = {total}, heads, head_dim] tensor, got shape {shape:?}"),
            ));
        }
        if strides[2] != 1 || strides[..2].iter().any(|s| s % 8 != 0) {
            return Err(Error::invalid(
                name,
                format!("strides {strides:?}: the last dimension must be contiguous, the others multiples of 8"),
            ));
        }
        if t.device() != q.device() {
            return Err(Error::DeviceMismatch { a: "q", b: name });
        }
    }
    let (qs, ks) = (q.shape(), k.shape());
    if k.shape() != v.shape() {
        return Err(Error::invalid("v", format!("shape {:?} differs from k's {ks:?}", v.shape())));
    }
    if ks[2] != qs[2] {
        return Err(Error::invalid("k", format!("head_dim {} differs from q's head_dim {}", ks[2], qs[2])));
    }
    if qs[1] % ks[1] != 0 || qs[1] > 65535 {
        return Err(Error::invalid(
            "k",
            format!("q's {} heads must be a multiple of k/v's {} heads and at most 65535", qs[1], ks[1]),
        ));
    }
    if let Some(s) = opts.softmax_scale {
        if !(s.is_finite() && s > 0.0) {
            return Err(Error::invalid("softmax_scale", format!("{s} must be finite and positive")));
        }
    }
    check_masked_kernel(opts, true)?;
    if !tensor_core_supports(qs[2]) {
        return Err(Error::UnsupportedHeadDim {
            head_dim: qs[2],
            kernel: "masked tensor-core forward",
            supported: (8..=MmaForwardConfig::MAX_HEAD_DIM).step_by(8).collect(),
        });
    }
    Ok(Shape {
        batch: batch.batch(),
        seqlen_q: batch.max_seqlen_q(),
        seqlen_k: batch.max_seqlen_k(),
        heads: qs[1],
        heads_kv: ks[1],
        head_dim: qs[2],
    })
}

/// Masks run on the masked tensor-core kernels only: `Auto`, `TensorCore`, or `WgmmaConfig` naming
/// the tiles of a masked wgmma build.
pub(crate) fn check_masked_kernel(opts: &AttentionOptions, masked: bool) -> Result<()> {
    // (WgmmaConfig: the masked wgmma rows with those tiles, checked at launch.)
    if !masked
        || matches!(opts.kernel, ForwardKernel::Auto | ForwardKernel::TensorCore | ForwardKernel::WgmmaConfig { .. })
    {
        return Ok(());
    }
    // The warp-specialized forward takes dropout among the options (its ALiBi, block-mask and
    // packed-batch refusals are at launch, where the inputs are known).
    if opts.kernel == ForwardKernel::WarpSpecialized {
        if opts.window_left.is_some() || opts.window_right.is_some() || opts.softcap != 0.0 {
            return Err(Error::invalid(
                "kernel",
                "ForwardKernel::WarpSpecialized runs dense attention, causal and dropout only: windows and softcap \
                 run on ForwardKernel::Auto, TensorCore, or WgmmaConfig with the tiles of a masked wgmma build",
            ));
        }
        return Ok(());
    }
    Err(Error::invalid(
        "kernel",
        format!(
            "{:?} has no masked build: windows, softcap, ALiBi, block masks, dropout and packed batches \
             run on ForwardKernel::Auto, TensorCore, or WgmmaConfig with the tiles of a masked wgmma build",
            opts.kernel
        ),
    ))
}

/// [`forward()`] writing into caller-owned `o` (same shape as `q`, last dimension contiguous) and
/// `lse` (contiguous `[batch, heads, seqlen_q]`).
pub fn forward_into<T: Element>(
    q: &Tensor<T>,
    k: &Tensor<T>,
    v: &Tensor<T>,
    o: &mut Tensor<T>,
    lse: &mut Tensor<f32>,
    opts: &AttentionOptions,
) -> Result<()> {
    let dims = validate_inputs(q, k, v, opts)?;
    check_layout("o", o)?;
    if o.shape() != q.shape() {
        return Err(Error::invalid("o", format!("shape {:?} differs from q's {:?}", o.shape(), q.shape())));
    }
    let lse_shape = [dims.batch, dims.heads, dims.seqlen_q];
    if lse.shape() != lse_shape || !lse.is_contiguous() {
        return Err(Error::invalid(
            "lse",
            format!("must be a contiguous [batch, heads, seqlen_q] = {lse_shape:?} tensor, got {:?}", lse),
        ));
    }
    for (name, dev) in [("o", o.device()), ("lse", lse.device())] {
        if dev != q.device() {
            return Err(Error::DeviceMismatch { a: "q", b: name });
        }
    }
    launch_forward(q, k, v, o, lse, dims, opts, &MaskInputs::default(), None)
}

/// Checks everything about q, k, v and the options, and reads off the dimensions.
pub fn validate_inputs<T: Element>(
    q: &Tensor<T>,
    k: &Tensor<T>,
    v: &Tensor<T>,
    opts: &AttentionOptions,
) -> Result<Shape> {
    if T::DTYPE.is_none() {
        return Err(Error::invalid("q", format!("dtype {} is not supported; use f16 or bf16", T::NAME)));
    }
    for (name, t) in [("q", q), ("k", k), ("v", v)] {
        check_layout(name, t)?;
    }
    let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
    if ks != vs {
        return Err(Error::invalid("v", format!("shape {vs:?} differs from k's {ks:?}")));
    }
    if ks[0] != qs[0] {
        return Err(Error::invalid("k", format!("batch {} differs from q's batch {}", ks[0], qs[0])));
    }
    if ks[3] != qs[3] {
        return Err(Error::invalid("k", format!("head_dim {} differs from q's head_dim {}", ks[3], qs[3])));
    }
    if qs[2] % ks[2] != 0 {
        return Err(Error::invalid(
            "k",
            format!(
                "q's {} heads are not a multiple of k/v's {} heads (GQA needs heads % heads_kv == 0)",
                qs[2], ks[2]
            ),
        ));
    }
    for (name, t) in [("k", k), ("v", v)] {
        if t.device() != q.device() {
            return Err(Error::DeviceMismatch { a: "q", b: name });
        }
    }
    let dims = Shape { batch: qs[0], seqlen_q: qs[1], seqlen_k: ks[1], heads: qs[2], heads_kv: ks[2], head_dim: qs[3] };
    if dims.batch > 65535 || dims.heads > 65535 {
        return Err(Error::invalid(
            "q",
            format!("batch {} and heads {} must each be at most 65535", dims.batch, dims.heads),
        ));
    }
    if dims.seqlen_q > i32::MAX as usize || dims.seqlen_k > i32::MAX as usize {
        return Err(Error::invalid("q", "sequence lengths must be below 2^31"));
    }
    if let Some(s) = opts.softmax_scale {
        // The kernels take row maxima of the raw scores, which are the maxima of the scaled
        // scores only for a positive scale.
        if !(s.is_finite() && s > 0.0) {
            return Err(Error::invalid("softmax_scale", format!("{s} must be finite and positive")));
        }
    }
    opts.check_masks()?;
    check_masked_kernel(opts, masks::options_need_masks(opts))?;
    let cc = q.device().compute_capability();
    if matches!(
        select_kernel(opts.kernel, dims.head_dim, few_rows(opts, dims.seqlen_q), false, Some(cc))?,
        ForwardKernel::Wgmma | ForwardKernel::WgmmaConfig { .. } | ForwardKernel::WarpSpecialized
    ) {
        let (major, minor) = cc;
        if (major, minor) != (9, 0) {
            return Err(Error::invalid(
                "kernel",
                format!("ForwardKernel::Wgmma needs compute capability 9.0 (sm_90a); this GPU is {major}.{minor}"),
            ));
        }
    }
    Ok(dims)
}

/// Rank 4, non-empty, last dimension contiguous, other strides multiples of 8 elements (16-byte
/// aligned rows, which the vector loads of the kernels rely on).
pub(crate) fn check_layout<T: Element>(name: &'static str, t: &Tensor<T>) -> Result<()> {
    let (shape, strides) = (t.shape(), t.strides());
    if shape.len() != 4 {
        return Err(Error::invalid(
            name,
            format!("must have rank 4 [batch, seqlen, heads, head_dim], got shape {shape:?}"),
        ));
    }
    if shape.iter().any(|&s| s == 0) {
        return Err(Error::invalid(name, format!("is empty (shape {shape:?})")));
    }
    if strides[3] != 1 {
        return Err(Error::invalid(name, format!("the last dimension must be contiguous (strides {strides:?})")));
    }
    if strides[..3].iter().any(|s| s % 8 != 0) {
        return Err(Error::invalid(
            name,
            format!("strides {strides:?} must be multiples of 8 elements except the last"),
        ));
    }
    Ok(())
}

/// Head dims the tensor-core kernel takes: multiples of 8 up to 256 (padded up to the next
/// multiple of 32 inside the kernel).
pub fn tensor_core_supports(head_dim: usize) -> bool {
    head_dim % 8 == 0 && (8..=MmaForwardConfig::MAX_HEAD_DIM).contains(&head_dim)
}

/// Few query rows for the 192-row wgmma tiles at d <= 64: causal up to 1k rows, otherwise up
/// to 512. There `Auto` runs 64-row wgmma tiles (one warpgroup, 128 threads, 73 KB of shared
/// memory: three CTAs per SM, which hide each other's prologue, where one 384-thread CTA of the
/// 192-row tiles hides nothing). Call `s6c6` (d = 64, bf16): causal N = 1k 0.306 ms against
/// 0.323-0.325 on mma.sync (1.05x against 0.99x FA2), N = 512 0.200 against 0.211; non-causal
/// N = 512 0.251-0.255 against 0.275-0.277 on the 192-row tiles; level at causal 2k and
/// non-causal 1k, behind from there (e.g. causal 4k 0.94 against 0.88 ms).
fn few_rows(opts: &AttentionOptions, seqlen_q: usize) -> bool {
    seqlen_q <= if opts.causal { 1024 } else { 512 }
}

/// The kernel family that runs a call. What `Auto` runs, per device (H100, bf16, peers in the
/// same device call): on compute capability 9.0, the wgmma kernel for head dims that pad to 128
/// (1.04-1.23x PyTorch's FA2 from N = 1k, against 0.92-0.98x for the mma.sync kernel) and, for
/// head dims up to 64, its 192-row tiles (non-causal: 1.02-1.30x FA2 from N = 1k, against
/// 0.97-1.04x for mma.sync; the 128-row wgmma tiles lose at d = 64: 0.80-0.97x), or its 64-row
/// tiles for few query rows (see [`few_rows`]); for head dims 200..=256 the wgmma d = 256 build
/// (1.07-1.56x FA2, call `s5c7`); the mma.sync kernel everywhere else.
/// `compute_capability` None: a shape-only check, which any of them passes.
/// `few_rows`: see [`few_rows`].
/// `masked`: the call needs the masked builds, which only the mma.sync kernel has.
fn select_kernel(
    choice: ForwardKernel,
    head_dim: usize,
    few_rows: bool,
    masked: bool,
    compute_capability: Option<(i32, i32)>,
) -> Result<ForwardKernel> {
    let scalar_ok = ScalarForwardConfig::HEAD_DIMS.contains(&head_dim);
    let hopper = compute_capability == Some((9, 0)) && !masked;
    match choice {
        ForwardKernel::Auto if hopper && WgmmaForwardConfig::padded_head_dim(head_dim) == Some(128) => {
            Ok(ForwardKernel::Wgmma)
        }
        ForwardKernel::Auto if hopper && WgmmaForwardConfig::padded_head_dim(head_dim) == Some(64) => {
            let block_m = if few_rows { 64 } else { 192 };
            Ok(ForwardKernel::WgmmaConfig { block_m, block_n: 128, pipelined: true })
        }
        // Head dims 200..=256: padding to 256 costs at most 28% more MMA work (below that the
        // mma.sync d160 / d192 builds pad less).
        ForwardKernel::Auto
            if hopper && head_dim > 192 && WgmmaForwardConfig::padded_head_dim(head_dim) == Some(256) =>
        {
            Ok(ForwardKernel::Wgmma)
        }
        ForwardKernel::Auto | ForwardKernel::TensorCore if tensor_core_supports(head_dim) => {
            Ok(ForwardKernel::TensorCore)
        }
        ForwardKernel::Scalar if scalar_ok => Ok(ForwardKernel::Scalar),
        ForwardKernel::TensorCoreTiles { .. } if tensor_core_supports(head_dim) => Ok(choice),
        ForwardKernel::Wgmma | ForwardKernel::WgmmaConfig { .. }
            if WgmmaForwardConfig::padded_head_dim(head_dim).is_some() =>
        {
            Ok(choice)
        }
        ForwardKernel::WarpSpecialized
            if matches!(WgmmaForwardConfig::padded_head_dim(head_dim), Some(64) | Some(128)) =>
        {
            Ok(choice)
        }
        ForwardKernel::WarpSpecialized => Err(Error::UnsupportedHeadDim {
            head_dim,
            kernel: "warp-specialized forward",
            supported: (8..=128).step_by(8).collect(),
        }),
        ForwardKernel::Wgmma | ForwardKernel::WgmmaConfig { .. } => Err(Error::UnsupportedHeadDim {
            head_dim,
            kernel: "wgmma forward",
            supported: (8..=256).step_by(8).collect(),
        }),
        ForwardKernel::Scalar => Err(Error::UnsupportedHeadDim {
            head_dim,
            kernel: "scalar forward",
            supported: ScalarForwardConfig::HEAD_DIMS.to_vec(),
        }),
        _ => Err(Error::UnsupportedHeadDim {
            head_dim,
            kernel: "tensor-core forward",
            supported: (8..=MmaForwardConfig::MAX_HEAD_DIM).step_by(8).collect(),
        }),
    }
}

/// The scalar forward kernel of (dtype, head dim, causal), from
/// `flashattn_kernels::for_each_scalar_forward_kernel!`.
fn scalar_kernel_name(dtype: Dtype, head_dim: usize, causal: bool) -> Option<&'static str> {
    let mut found = None;
    macro_rules! row {
        ($name:ident, $dtype:ident, $d:literal, $causal:literal) => {
            if found.is_none() && Dtype::$dtype == dtype && $d == head_dim && $causal == causal {
                found = Some(stringify!($name));
            }
        };
    }
    flashattn_kernels::for_each_scalar_forward_kernel!(row);
    found
}

/// One row of the tensor-core kernel table (`flashattn_kernels::for_each_mma_forward_kernel!`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmaKernelRow {
    pub name: &'static str,
    pub dtype: Dtype,
    pub causal: bool,
    pub config: MmaForwardConfig,
}

impl MmaKernelRow {
    /// The options that select exactly this row.
    pub fn kernel_choice(&self) -> ForwardKernel {
        let c = self.config;
        ForwardKernel::TensorCoreTiles {
            block_m: c.block_m as u16,
            block_n: c.block_n as u16,
            m_tiles: c.m_tiles as u8,
            stages: c.stages as u8,
        }
    }
}

/// Every compiled tensor-core forward kernel, in table order (the first row of a head dim,
/// dtype and causality is its default).
pub fn mma_kernel_rows() -> &'static [MmaKernelRow] {
    static ROWS: std::sync::OnceLock<Vec<MmaKernelRow>> = std::sync::OnceLock::new();
    ROWS.get_or_init(|| {
        let mut rows = Vec::new();
        macro_rules! row {
            ($name:ident, $dtype:ident, $d:literal, $bm:literal, $bn:literal, $mt:literal, $qr:literal, $st:literal, $causal:literal) => {
                let config = MmaForwardConfig {
                    head_dim: $d,
                    block_m: $bm,
                    block_n: $bn,
                    m_tiles: $mt,
                    q_in_regs: $qr,
                    stages: $st,
                };
                debug_assert!(config.is_valid(), "{config:?}");
                rows.push(MmaKernelRow { name: stringify!($name), dtype: Dtype::$dtype, causal: $causal, config });
            };
        }
        flashattn_kernels::for_each_mma_forward_kernel!(row);
        rows
    })
}

/// The tensor-core kernel of a call. `tiles`: (block_m, block_n, m_tiles, stages), or None for
/// the default.
fn mma_kernel(
    dtype: Dtype,
    head_dim: usize,
    causal: bool,
    tiles: Option<(usize, usize, usize, usize)>,
) -> Option<MmaKernelRow> {
    let padded = MmaForwardConfig::padded_head_dim(head_dim);
    mma_kernel_rows().iter().copied().find(|r| {
        let c = r.config;
        r.dtype == dtype
            && r.causal == causal
            && c.head_dim == padded
            && tiles.is_none_or(|t| t == (c.block_m, c.block_n, c.m_tiles, c.stages))
    })
}

/// One row of the Hopper kernel table (`flashattn_kernels::for_each_wgmma_forward_kernel!`).
/// These kernels exist only in the sm_90a PTX.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WgmmaKernelRow {
    pub name: &'static str,
    pub dtype: Dtype,
    pub causal: bool,
    pub config: WgmmaForwardConfig,
}

/// Every compiled wgmma forward kernel, in table order.
pub fn wgmma_kernel_rows() -> &'static [WgmmaKernelRow] {
    static ROWS: std::sync::OnceLock<Vec<WgmmaKernelRow>> = std::sync::OnceLock::new();
    ROWS.get_or_init(|| {
        let mut rows = Vec::new();
        macro_rules! row {
            ($name:ident, $dtype:ident, $d:literal, $bm:literal, $bn:literal, $pipe:literal, $causal:literal) => {
                let config = WgmmaForwardConfig { head_dim: $d, block_m: $bm, block_n: $bn, pipelined: $pipe };
                debug_assert!(config.is_valid(), "{config:?}");
                rows.push(WgmmaKernelRow { name: stringify!($name), dtype: Dtype::$dtype, causal: $causal, config });
            };
        }
        flashattn_kernels::for_each_wgmma_forward_kernel!(row);
        rows
    })
}

impl WgmmaKernelRow {
    /// The options that select exactly this row.
    pub fn kernel_choice(&self) -> ForwardKernel {
        let c = self.config;
        ForwardKernel::WgmmaConfig { block_m: c.block_m as u16, block_n: c.block_n as u16, pipelined: c.pipelined }
    }
}

/// The wgmma kernel of a call: the first table row of its padded head dim, dtype and causality,
/// or the row with these tiles and schedule.
fn wgmma_kernel(
    dtype: Dtype,
    head_dim: usize,
    causal: bool,
    config: Option<(usize, usize, bool)>,
) -> Option<WgmmaKernelRow> {
    let padded = WgmmaForwardConfig::padded_head_dim(head_dim)?;
    wgmma_kernel_rows().iter().copied().find(|r| {
        let c = r.config;
        r.dtype == dtype
            && r.causal == causal
            && c.head_dim == padded
            && config.is_none_or(|x| x == (c.block_m, c.block_n, c.pipelined))
    })
}

/// The masked tensor-core forward for a head dim (padded up to its instantiation) and its tiles;
/// `mods`: the build (0 masks only, 2 with dropout, 3 with softcap, ALiBi and dropout).
pub fn mma_masked_kernel(dtype: Dtype, head_dim: usize, mods: u32) -> Option<(&'static str, MmaForwardConfig)> {
    let padded = MmaForwardConfig::padded_head_dim(head_dim);
    let mut found = None;
    macro_rules! row {
        ($name:ident, $dtype:ident, $d:literal, $bm:literal, $bn:literal, $mt:literal, $qr:literal, $st:literal, $mods:literal) => {
            if found.is_none() && Dtype::$dtype == dtype && $d == padded && $mods == mods {
                let config = MmaForwardConfig {
                    head_dim: $d,
                    block_m: $bm,
                    block_n: $bn,
                    m_tiles: $mt,
                    q_in_regs: $qr,
                    stages: $st,
                };
                found = Some((stringify!($name), config));
            }
        };
    }
    flashattn_kernels::for_each_mma_forward_masked_kernel!(row);
    found
}

/// The warp-specialized forward of a call (`for_each_wgmma_forward_ws_kernel!`): its name and
/// tiles.
fn ws_kernel(dtype: Dtype, head_dim: usize, causal: bool, dropout: bool) -> Option<(&'static str, WgmmaForwardConfig)> {
    let padded = WgmmaForwardConfig::padded_head_dim(head_dim)?;
    let mut found = None;
    macro_rules! row {
        ($name:ident, $dtype:ident, $d:literal, $bn:literal, $causal:literal, $dropout:literal) => {
            if found.is_none() && Dtype::$dtype == dtype && $d == padded && $causal == causal && $dropout == dropout {
                let config = WgmmaForwardConfig {
                    head_dim: $d,
                    block_m: WgmmaForwardConfig::WS_BLOCK_M,
                    block_n: $bn,
                    pipelined: true,
                };
                found = Some((stringify!($name), config));
            }
        };
    }
    flashattn_kernels::for_each_wgmma_forward_ws_kernel!(row);
    found
}

/// Whether `Auto` runs the warp-specialized forward (compute capability 9.0, dense attention:
/// no windows, softcap, ALiBi, block masks or packed batches): where it measured faster than the
/// other wgmma forwards (call `s22c1`, H100, bf16, N = 1k / 4k / 16k: head dims that pad to 128
/// 1.25-1.42x, causal 1.22-1.36x, with dropout 1.03-1.06x; pad to 64 1.00-1.09x, with dropout
/// 1.04-1.11x), not where it measured slower or mixed (causal with dropout at d = 128: 0.93-1.09x;
/// causal at d = 64: 0.85-1.12x).
fn auto_takes_ws(opts: &AttentionOptions, inputs: &MaskInputs, dims: &Shape, varlen: bool, cc: (i32, i32)) -> bool {
    let dense = !varlen
        && inputs.alibi_slopes.is_none()
        && inputs.block_mask.is_none()
        && opts.window_left.is_none()
        && opts.window_right.is_none()
        && opts.softcap == 0.0;
    let dropout = opts.dropout_p > 0.0;
    cc == (9, 0)
        && dense
        && match WgmmaForwardConfig::padded_head_dim(dims.head_dim) {
            Some(128) => !(opts.causal && dropout),
            Some(64) => !opts.causal,
            _ => false,
        }
}

/// Tensor `t` (`[batch, seqlen, heads, head_dim]` or a view of it, of a validated dtype) as the
/// TMA copies it, in boxes of `box_rows` rows: what `Auto` checks and what the descriptors encode.
fn tiled_tensor<T: Element>(t: &Tensor<T>, batch: usize, seqlen: usize, heads: usize, box_rows: usize) -> TiledTensor {
    let stream = t.device().stream().clone();
    let (ptr, _guard) = t.data().device_ptr(&stream);
    TiledTensor {
        ptr,
        dtype: T::DTYPE.expect("validated"),
        batch,
        seqlen,
        heads,
        head_dim: t.shape()[t.shape().len() - 1],
        strides: strides_of(t),
        box_rows,
    }
}

/// Whether `Auto` runs a masked call on the wgmma kernel: compute capability 9.0, no softcap or
/// ALiBi (mma.sync builds only), and a wgmma masked row for the padded head dim and dropout.
fn wgmma_masked_applies(opts: &AttentionOptions, inputs: &MaskInputs, head_dim: usize, cc: (i32, i32)) -> bool {
    let build = masks::mods_build(opts, inputs);
    cc == (9, 0)
        && build != 3
        && wgmma_masked_kernel(Dtype::Bf16, head_dim, build == 2, inputs.block_mask.is_some(), None).is_some()
}

/// The masked wgmma forward for a head dim (padded to 64 or 128) with or without dropout, and
/// its configuration: with `tiles` (block_m, block_n) the row with those tiles, else the first
/// row (the one `Auto` runs); with `block_mask`, only rows whose tiles take block masks
/// (`WgmmaForwardConfig::takes_block_masks`).
fn wgmma_masked_kernel(
    dtype: Dtype,
    head_dim: usize,
    dropout: bool,
    block_mask: bool,
    tiles: Option<(usize, usize)>,
) -> Option<(&'static str, WgmmaForwardConfig)> {
    let padded = WgmmaForwardConfig::padded_head_dim(head_dim)?;
    let mut found = None;
    macro_rules! row {
        ($name:ident, $dtype:ident, $d:literal, $bm:literal, $bn:literal, $dropout:literal) => {
            let config = WgmmaForwardConfig { head_dim: $d, block_m: $bm, block_n: $bn, pipelined: true };
            if found.is_none()
                && Dtype::$dtype == dtype
                && $d == padded
                && $dropout == dropout
                && tiles.map_or(true, |t| t == ($bm, $bn))
                && (!block_mask || config.takes_block_masks())
            {
                found = Some((stringify!($name), config));
            }
        };
    }
    flashattn_kernels::for_each_wgmma_forward_masked_kernel!(row);
    found
}

#[allow(clippy::too_many_arguments)]
fn launch_forward<T: Element>(
    q: &Tensor<T>,
    k: &Tensor<T>,
    v: &Tensor<T>,
    o: &mut Tensor<T>,
    lse: &mut Tensor<f32>,
    dims: Shape,
    opts: &AttentionOptions,
    inputs: &MaskInputs,
    varlen: Option<&VarlenDevice>,
) -> Result<()> {
    let dtype = T::DTYPE.expect("validated");
    let scale = opts.softmax_scale.unwrap_or(1.0 / (dims.head_dim as f32).sqrt());
    let unsupported = || Error::UnsupportedHeadDim { head_dim: dims.head_dim, kernel: "forward", supported: vec![] };
    let masked = masks::needs_masks(opts, inputs, varlen.is_some());
    let cc = q.device().compute_capability();
    // The warp-specialized forward: asked for, or `Auto`'s choice where it measured faster
    // ([`auto_takes_ws`]) and the TMA can copy the tensors (else `Auto` runs the others).
    let use_ws = opts.kernel == ForwardKernel::WarpSpecialized
        || (opts.kernel == ForwardKernel::Auto
            && auto_takes_ws(opts, inputs, &dims, varlen.is_some(), cc)
            && [(q, dims.seqlen_q, dims.heads), (k, dims.seqlen_k, dims.heads_kv), (v, dims.seqlen_k, dims.heads_kv)]
                .into_iter()
                .all(|(t, seqlen, heads)| {
                    tensor_map::tma_compatible(&tiled_tensor(
                        t,
                        dims.batch,
                        seqlen,
                        heads,
                        WgmmaForwardConfig::WS_BLOCK_M,
                    ))
                }));
    // Its row (its tiles size the TMA boxes).
    let ws = use_ws.then(|| ws_kernel(dtype, dims.head_dim, opts.causal, opts.dropout_p > 0.0)).flatten();
    let choice = if use_ws {
        ForwardKernel::WarpSpecialized
    } else {
        select_kernel(opts.kernel, dims.head_dim, few_rows(opts, dims.seqlen_q), masked, Some(cc))?
    };
    // (kernel name, threads per CTA, query rows per CTA, dynamic shared memory)
    let (name, threads, block_m, smem) = match choice {
        // Explicit tiles for a masked call: the masked wgmma row with them (no softcap / ALiBi).
        ForwardKernel::WgmmaConfig { block_m, block_n, .. } if masked => {
            let build = masks::mods_build(opts, inputs);
            let tiles = (block_m as usize, block_n as usize);
            let row = if build == 3 {
                None
            } else {
                wgmma_masked_kernel(dtype, dims.head_dim, build == 2, inputs.block_mask.is_some(), Some(tiles))
            };
            let (name, cfg) = row.ok_or_else(|| {
                Error::invalid(
                    "kernel",
                    format!(
                        "no masked wgmma build with {block_m} x {block_n} tiles for head dim {} (dropout: {}; \
                             softcap and ALiBi run on Auto or TensorCore{})",
                        dims.head_dim,
                        build == 2,
                        if inputs.block_mask.is_some() {
                            format!("; a block mask needs query tiles that divide {BLOCK_MASK_SIZE}")
                        } else {
                            String::new()
                        }
                    ),
                )
            })?;
            (name, cfg.threads(), cfg.block_m, cfg.smem_bytes())
        }
        // (select_kernel maps Auto to TensorCore for masked calls; the wgmma masked build is
        // Auto's choice only.)
        ForwardKernel::TensorCore
            if masked
                && opts.kernel == ForwardKernel::Auto
                && wgmma_masked_applies(opts, inputs, dims.head_dim, cc) =>
        {
            let dropout = masks::mods_build(opts, inputs) == 2;
            let (name, cfg) = wgmma_masked_kernel(dtype, dims.head_dim, dropout, inputs.block_mask.is_some(), None)
                .ok_or_else(unsupported)?;
            (name, cfg.threads(), cfg.block_m, cfg.smem_bytes())
        }
        ForwardKernel::TensorCore | ForwardKernel::Auto if masked => {
            let mods = masks::mods_build(opts, inputs);
            let (name, cfg) = mma_masked_kernel(dtype, dims.head_dim, mods).ok_or_else(unsupported)?;
            (name, cfg.threads(), cfg.block_m, cfg.smem_bytes() + MASKED_SCRATCH_BYTES)
        }
        ForwardKernel::Scalar => {
            let name = scalar_kernel_name(dtype, dims.head_dim, opts.causal).ok_or_else(unsupported)?;
            let cfg = ScalarForwardConfig::new(dims.head_dim);
            (name, ScalarForwardConfig::THREADS, ScalarForwardConfig::BLOCK_M, cfg.smem_bytes())
        }
        k @ (ForwardKernel::TensorCore | ForwardKernel::Auto | ForwardKernel::TensorCoreTiles { .. }) => {
            let tiles = match k {
                ForwardKernel::TensorCoreTiles { block_m, block_n, m_tiles, stages } => {
                    Some((block_m as usize, block_n as usize, m_tiles as usize, stages as usize))
                }
                _ => None,
            };
            let row = mma_kernel(dtype, dims.head_dim, opts.causal, tiles).ok_or_else(unsupported)?;
            let (name, cfg) = (row.name, row.config);
            (name, cfg.threads(), cfg.block_m, cfg.smem_bytes())
        }
        ForwardKernel::WarpSpecialized => {
            if inputs.alibi_slopes.is_some() || inputs.block_mask.is_some() || varlen.is_some() {
                return Err(Error::invalid(
                    "kernel",
                    "ForwardKernel::WarpSpecialized runs dense attention (causal, dropout): ALiBi, block masks \
                         and packed batches run on Auto or TensorCore",
                ));
            }
            let (name, cfg) = ws.ok_or_else(unsupported)?;
            (name, WgmmaForwardConfig::WS_THREADS, WgmmaForwardConfig::WS_BLOCK_M, cfg.ws_smem_bytes())
        }
        k @ (ForwardKernel::Wgmma | ForwardKernel::WgmmaConfig { .. }) => {
            // validate_inputs checked that the device is sm_90, whose PTX holds these kernels.
            let config = match k {
                ForwardKernel::WgmmaConfig { block_m, block_n, pipelined } => {
                    Some((block_m as usize, block_n as usize, pipelined))
                }
                _ => None,
            };
            let row = wgmma_kernel(dtype, dims.head_dim, opts.causal, config).ok_or_else(unsupported)?;
            (row.name, row.config.threads(), row.config.block_m, row.config.smem_bytes())
        }
    };
    let dev = q.device().clone();
    let stream = dev.stream().clone();
    let (o_strides, q_strides, k_strides, v_strides) = (strides_of(o), strides_of(q), strides_of(k), strides_of(v));
    let (q_ptr, _gq) = q.data().device_ptr(&stream);
    let (k_ptr, _gk) = k.data().device_ptr(&stream);
    let (v_ptr, _gv) = v.data().device_ptr(&stream);
    let (o_ptr, _go) = o.data_mut().device_ptr_mut(&stream);
    let (lse_ptr, _gl) = lse.data_mut().device_ptr_mut(&stream);
    let setup = masks::setup(&stream, &dev, &dims, scale, opts, inputs, varlen)?;
    // The warp-specialized kernel reads its TMA descriptors (one per tensor) from device memory.
    let tensor_maps = match ws {
        Some((_, cfg)) => {
            let mut bytes = Vec::with_capacity(3 * TENSOR_MAP_BYTES);
            for t in [
                tiled_tensor(q, dims.batch, dims.seqlen_q, dims.heads, WgmmaForwardConfig::WS_BLOCK_M),
                tiled_tensor(k, dims.batch, dims.seqlen_k, dims.heads_kv, cfg.block_n),
                tiled_tensor(v, dims.batch, dims.seqlen_k, dims.heads_kv, cfg.block_n),
            ] {
                bytes.extend_from_slice(&tensor_map::encode(&t)?);
            }
            Some(bytes)
        }
        None => None,
    };
    let params = ForwardParams {
        q: q_ptr,
        k: k_ptr,
        v: v_ptr,
        o: o_ptr,
        lse: lse_ptr,
        q_strides,
        k_strides,
        v_strides,
        o_strides,
        batch: dims.batch as u32,
        heads: dims.heads as u32,
        heads_kv: dims.heads_kv as u32,
        seqlen_q: dims.seqlen_q as u32,
        seqlen_k: dims.seqlen_k as u32,
        head_dim: dims.head_dim as u32,
        scale_log2: scale * std::f32::consts::LOG2_E,
        mask: setup.params,
        tensor_maps: 0,
    };
    let grid = (dims.seqlen_q.div_ceil(block_m) as u32, dims.heads as u32, dims.batch as u32);
    // SAFETY: the parameter block matches the kernel's signature; every pointer is a live
    // allocation of the validated shape and strides, which bound every access the kernel makes
    // (rows past seqlen and columns past head_dim are never read or written); the descriptors
    // describe those same tensors.
    match tensor_maps {
        Some(bytes) => dev.with_tensor_maps(&bytes, |tensor_maps| unsafe {
            launch(&dev, name, smem, grid, threads, &ParamBlock(ForwardParams { tensor_maps, ..params }))
        }),
        None => unsafe { launch(&dev, name, smem, grid, threads, &ParamBlock(params)) },
    }
}

/// FLOPs of a forward as FlashAttention's benchmarks count them: two GEMMs, `4 * B * H * N_q *
/// N_k * d`, halved for causal.
pub fn forward_flops(dims: &Shape, causal: bool) -> f64 {
    let f = 4.0 * (dims.batch * dims.heads) as f64 * dims.seqlen_q as f64 * dims.seqlen_k as f64 * dims.head_dim as f64;
    if causal {
        f / 2.0
    } else {
        f
    }
}

/// Whether a forward of this q shape and options has a kernel (used to skip shapes in sweeps).
pub fn check_supported<T: Element>(q_shape: &[usize], opts: &AttentionOptions) -> Result<()> {
    if T::DTYPE.is_none() {
        return Err(Error::invalid("q", format!("dtype {} is not supported; use f16 or bf16", T::NAME)));
    }
    opts.check_masks()?;
    check_masked_kernel(opts, masks::options_need_masks(opts))?;
    select_kernel(opts.kernel, q_shape[3], few_rows(opts, q_shape[1]), masks::options_need_masks(opts), None)
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_kernel_lookup_finds_each_row_and_only_those() {
        for dtype in [Dtype::F16, Dtype::Bf16] {
            for causal in [false, true] {
                for d in ScalarForwardConfig::HEAD_DIMS {
                    let name = scalar_kernel_name(dtype, d, causal).expect("a row per supported head dim");
                    assert!(name.contains(&format!("_d{d}")) && name.ends_with("_causal") == causal, "{name}");
                }
                assert_eq!(scalar_kernel_name(dtype, 96, causal), None);
            }
        }
    }

    #[test]
    fn auto_picks_wgmma_only_on_sm90() {
        let hopper = Some((9, 0));
        let pick = |d, few_rows, cc| select_kernel(ForwardKernel::Auto, d, few_rows, false, cc).unwrap();
        assert_eq!(pick(128, true, hopper), ForwardKernel::Wgmma);
        // d <= 64: the 192-row tiles, the 64-row ones for few query rows (see `few_rows`).
        assert_eq!(pick(64, false, hopper), ForwardKernel::WgmmaConfig { block_m: 192, block_n: 128, pipelined: true });
        assert_eq!(pick(40, false, hopper), ForwardKernel::WgmmaConfig { block_m: 192, block_n: 128, pipelined: true });
        assert_eq!(pick(64, true, hopper), ForwardKernel::WgmmaConfig { block_m: 64, block_n: 128, pipelined: true });
        let causal = AttentionOptions { causal: true, ..Default::default() };
        let plain = AttentionOptions::default();
        assert!(few_rows(&causal, 1024) && !few_rows(&causal, 1025) && few_rows(&plain, 512) && !few_rows(&plain, 513));
        assert_eq!(pick(64, true, Some((8, 0))), ForwardKernel::TensorCore);
        assert_eq!(pick(256, false, hopper), ForwardKernel::Wgmma);
        assert_eq!(pick(200, true, hopper), ForwardKernel::Wgmma);
        assert_eq!(pick(192, false, hopper), ForwardKernel::TensorCore);
        assert_eq!(pick(256, false, Some((8, 0))), ForwardKernel::TensorCore);
        assert_eq!(pick(128, false, Some((8, 0))), ForwardKernel::TensorCore);
        assert_eq!(pick(128, false, None), ForwardKernel::TensorCore);
        // Masks run on the masked mma.sync builds, whatever the device.
        assert_eq!(select_kernel(ForwardKernel::Auto, 128, false, true, hopper).unwrap(), ForwardKernel::TensorCore);
    }

    #[test]
    fn masked_wgmma_rows_with_a_block_mask_take_block_masks() {
        for dtype in [Dtype::F16, Dtype::Bf16] {
            for d in (8..=128).step_by(8) {
                for dropout in [false, true] {
                    if let Some((name, c)) = wgmma_masked_kernel(dtype, d, dropout, true, None) {
                        assert!(c.takes_block_masks(), "{name} {c:?}");
                    }
                }
            }
        }
        // d = 64 dropout: 192-row tiles without a block mask, 128-row ones with one.
        let pick = |block_mask| wgmma_masked_kernel(Dtype::Bf16, 64, true, block_mask, None).unwrap().1.block_m;
        assert_eq!((pick(false), pick(true)), (192, 128));
        assert!(wgmma_masked_kernel(Dtype::Bf16, 64, true, true, Some((192, 128))).is_none());
    }

    #[test]
    fn every_head_dim_has_a_masked_forward_whose_blocks_divide_the_mask_blocks() {
        use flashattn_kernels::config::BLOCK_MASK_SIZE;
        for dtype in [Dtype::F16, Dtype::Bf16] {
            for d in (8..=256).step_by(8) {
                for mods in [0, 2, 3] {
                    let (name, c) =
                        mma_masked_kernel(dtype, d, mods).unwrap_or_else(|| panic!("no masked row for d={d}"));
                    assert!(c.is_valid() && c.head_dim >= d && name.contains("masked"), "{name} {c:?}");
                    assert_eq!(name.contains("_mods_"), mods == 3, "{name}");
                    assert_eq!(name.contains("_dropout_"), mods == 2, "{name}");
                    assert!(BLOCK_MASK_SIZE % c.block_m == 0 && BLOCK_MASK_SIZE % c.block_n == 0, "{c:?}");
                }
            }
        }
    }

    /// The warp-specialized forward: a row for every (dtype, head dim up to 128, causal,
    /// dropout), none above 128; windows and softcap refused before any launch, dropout taken.
    #[test]
    fn warp_specialized_rows_and_options() {
        for dtype in [Dtype::F16, Dtype::Bf16] {
            for d in (8..=128).step_by(8) {
                for causal in [false, true] {
                    for dropout in [false, true] {
                        let (name, c) = ws_kernel(dtype, d, causal, dropout).unwrap_or_else(|| panic!("d={d}"));
                        assert!(c.is_valid() && c.head_dim >= d && c.block_m == WgmmaForwardConfig::WS_BLOCK_M);
                        assert!(c.ws_smem_bytes() <= 227 * 1024, "{name}");
                        assert_eq!(name.contains("_causal"), causal, "{name}");
                        assert_eq!(name.contains("_dropout_"), dropout, "{name}");
                    }
                }
            }
            assert!(ws_kernel(dtype, 136, false, false).is_none());
        }
        let ws = AttentionOptions { kernel: ForwardKernel::WarpSpecialized, ..Default::default() };
        assert!(check_supported::<half::bf16>(&[1, 256, 4, 128], &ws).is_ok());
        let dropout = AttentionOptions { dropout_p: 0.1, causal: true, ..ws };
        assert!(check_supported::<half::bf16>(&[1, 256, 4, 64], &dropout).is_ok());
        assert!(matches!(
            check_supported::<half::bf16>(&[1, 256, 4, 136], &ws),
            Err(Error::UnsupportedHeadDim { head_dim: 136, .. })
        ));
        for masked in [AttentionOptions { window_left: Some(16), ..ws }, AttentionOptions { softcap: 30.0, ..ws }] {
            assert!(check_supported::<half::bf16>(&[1, 256, 4, 128], &masked).is_err(), "{masked:?}");
        }
    }
}
