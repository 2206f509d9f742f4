//! Attention beyond plain and causal: sliding windows, softcap, ALiBi, block-sparse masks, dropout
//! and packed variable-length batches, as flash-attn offers them. The scalar settings live in
//! [`AttentionOptions`] (`window_left`, `window_right`, `softcap`, `dropout_p`, ...); tensors
//! (ALiBi slopes, block masks) in [`MaskInputs`]; packed batches in [`VarlenBatch`]. Any of them
//! selects the masked builds of the tensor-core kernels (`MASKED = true`), which serve every mix;
//! plain and causal calls keep their own kernels, and so does the Hopper backward of dropout
//! alone (non-causal, and causal at d = 128: the plain dK/dV kernel's dropout builds,
//! `dropout_only`).
//!
//! Semantics (the f64 reference, `crate::reference`, implements the same):
//! `s = scale * q.k`; softcap `s = c * tanh(s / c)`; ALiBi `s -= slope * |j - (i + n_k - n_q)|`;
//! keys outside the window or in a zero block are excluded from the softmax; the LSE is of these
//! scores; dropout then zeroes weights and scales the kept ones by `1 / keep probability`. A row
//! that sees no key outputs zeros, with LSE `-inf`, and has zero gradients.
use cudarc::driver::{CudaStream, DevicePtr, SyncOnDrop};

use crate::dropout::{keep_probability, keep_threshold};
use crate::error::{Error, Result};
use crate::forward::AttentionOptions;
use crate::runtime::Device;
use crate::shape::Shape;
use crate::tensor::Tensor;
pub use flashattn_kernels::config::BLOCK_MASK_SIZE;
use flashattn_kernels::params::MaskParams;

/// Tensor inputs of masked attention (see the module docs). All on the device of `q`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MaskInputs<'a> {
    /// ALiBi slopes, f32 `[heads]` (one per query head) or `[batch, heads]`, contiguous: the
    /// scaled score of query `i`, key `j` gets `-slope * |j - (i + seqlen_k - seqlen_q)|`.
    pub alibi_slopes: Option<&'a Tensor<f32>>,
    /// Block-sparse mask, u8 `[1 or heads, ceil(seqlen_q / 128), ceil(seqlen_k / 128)]`,
    /// contiguous: block `(h, m, n)` covers queries `128 m ..` and keys `128 n ..` (128 =
    /// [`BLOCK_MASK_SIZE`], which every kernel block size divides); 0 skips the block in forward
    /// and backward (its scores are excluded, not merely zeroed), anything else computes it. One
    /// leading entry: shared by every head. Packed batches use the longest sequence's counts,
    /// with positions relative to each sequence.
    pub block_mask: Option<&'a Tensor<u8>>,
}

/// A packed variable-length batch (flash-attn's `cu_seqlens_q`, `cu_seqlens_k`): sequence `b`
/// holds the query rows `cu_seqlens_q[b] .. cu_seqlens_q[b + 1]` of a `[total_q, heads,
/// head_dim]` tensor and the keys `cu_seqlens_k[b] .. cu_seqlens_k[b + 1]` of `[total_k,
/// heads_kv, head_dim]` tensors. No padding is computed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VarlenBatch {
    cu_seqlens_q: Vec<i32>,
    cu_seqlens_k: Vec<i32>,
    max_seqlen_q: usize,
    max_seqlen_k: usize,
}

impl VarlenBatch {
    /// From the offsets: each starts at 0, never decreases, and has `batch + 1` entries.
    pub fn new(cu_seqlens_q: &[i32], cu_seqlens_k: &[i32]) -> Result<Self> {
        let max_q = check_offsets("cu_seqlens_q", cu_seqlens_q)?;
        let max_k = check_offsets("cu_seqlens_k", cu_seqlens_k)?;
        if cu_seqlens_q.len() != cu_seqlens_k.len() {
            return Err(Error::invalid(
                "cu_seqlens_k",
                format!("{} entries, but cu_seqlens_q has {}", cu_seqlens_k.len(), cu_seqlens_q.len()),
            ));
        }
        Ok(VarlenBatch {
            cu_seqlens_q: cu_seqlens_q.to_vec(),
            cu_seqlens_k: cu_seqlens_k.to_vec(),
            max_seqlen_q: max_q,
            max_seqlen_k: max_k,
        })
    }

    /// From the sequence lengths (queries and keys of each entry).
    pub fn from_lengths(seqlens_q: &[usize], seqlens_k: &[usize]) -> Result<Self> {
        let offsets = |lens: &[usize]| -> Result<Vec<i32>> {
            let mut cu = vec![0i32];
            for &n in lens {
                let next = *cu.last().unwrap() as i64 + n as i64;
                if next > i32::MAX as i64 {
                    return Err(Error::invalid("seqlens", "the total length must be below 2^31"));
                }
                cu.push(next as i32);
            }
            Ok(cu)
        };
        Self::new(&offsets(seqlens_q)?, &offsets(seqlens_k)?)
    }

    pub fn batch(&self) -> usize {
        self.cu_seqlens_q.len() - 1
    }
    pub fn total_q(&self) -> usize {
        *self.cu_seqlens_q.last().unwrap() as usize
    }
    pub fn total_k(&self) -> usize {
        *self.cu_seqlens_k.last().unwrap() as usize
    }
    pub fn max_seqlen_q(&self) -> usize {
        self.max_seqlen_q
    }
    pub fn max_seqlen_k(&self) -> usize {
        self.max_seqlen_k
    }
    pub fn cu_seqlens_q(&self) -> &[i32] {
        &self.cu_seqlens_q
    }
    pub fn cu_seqlens_k(&self) -> &[i32] {
        &self.cu_seqlens_k
    }
    /// Query rows and keys of entry `b`: `(q_start, n_q, k_start, n_k)`.
    pub fn sequence(&self, b: usize) -> (usize, usize, usize, usize) {
        let (q0, q1) = (self.cu_seqlens_q[b] as usize, self.cu_seqlens_q[b + 1] as usize);
        let (k0, k1) = (self.cu_seqlens_k[b] as usize, self.cu_seqlens_k[b + 1] as usize);
        (q0, q1 - q0, k0, k1 - k0)
    }
}

/// Offsets start at 0, never decrease, have at least 2 entries; returns the longest sequence.
fn check_offsets(name: &'static str, cu: &[i32]) -> Result<usize> {
    if cu.len() < 2 || cu[0] != 0 {
        return Err(Error::invalid(name, format!("must start at 0 and hold batch + 1 >= 2 offsets, got {cu:?}")));
    }
    if cu.len() - 1 > 65535 {
        return Err(Error::invalid(name, "at most 65535 sequences"));
    }
    let mut longest = 0;
    for w in cu.windows(2) {
        if w[1] < w[0] {
            return Err(Error::invalid(name, format!("offsets must not decrease ({} after {})", w[1], w[0])));
        }
        longest = longest.max((w[1] - w[0]) as usize);
    }
    if longest == 0 {
        return Err(Error::invalid(name, "every sequence is empty"));
    }
    Ok(longest)
}

/// Whether the options alone need the masked kernels (a window beyond causal, softcap, dropout).
pub(crate) fn options_need_masks(opts: &AttentionOptions) -> bool {
    opts.window_left.is_some() || opts.window_right.is_some() || opts.softcap != 0.0 || opts.dropout_p > 0.0
}

/// Whether a call runs the masked kernels.
pub(crate) fn needs_masks(opts: &AttentionOptions, inputs: &MaskInputs, varlen: bool) -> bool {
    options_need_masks(opts) || inputs.alibi_slopes.is_some() || inputs.block_mask.is_some() || varlen
}

/// Whether dropout is a call's only mask beside causal (no window, softcap, ALiBi, block mask
/// or packed batch): on Hopper the backward of such calls runs the plain wgmma dK/dV kernel's
/// dropout build where it has one (non-causal, and causal at d = 128), which carries none of the
/// masked build's window and block-mask work.
pub(crate) fn dropout_only(opts: &AttentionOptions, inputs: &MaskInputs, varlen: bool) -> bool {
    // Without its dropout the call would run the plain kernels.
    opts.dropout_p > 0.0 && !needs_masks(&AttentionOptions { dropout_p: 0.0, ..*opts }, inputs, varlen)
}

/// The masked build (`MODS` bits of the kernel tables) that runs a call: 0 for windows, block
/// masks and packed batches alone; 2 (`MODS_DROPOUT`) adds dropout on nearly the same tiles; 3
/// adds softcap and ALiBi (smaller tiles; softcap or ALiBi without dropout run it too).
pub(crate) fn mods_build(opts: &AttentionOptions, inputs: &MaskInputs) -> u32 {
    let scores = opts.softcap != 0.0 || inputs.alibi_slopes.is_some();
    match (scores, opts.dropout_p > 0.0) {
        (false, false) => 0,
        (false, true) => 2,
        (true, _) => 3,
    }
}

/// Checks the scalar mask options (windows, softcap, dropout probability).
pub(crate) fn check_options(opts: &AttentionOptions) -> Result<()> {
    for (name, w) in [("window_left", opts.window_left), ("window_right", opts.window_right)] {
        if w.is_some_and(|w| w > (1 << 30)) {
            return Err(Error::invalid(name, "must be at most 2^30 (None is unbounded)"));
        }
    }
    if !(opts.softcap.is_finite() && opts.softcap >= 0.0) {
        return Err(Error::invalid("softcap", format!("{} must be finite and >= 0 (0 = off)", opts.softcap)));
    }
    let p = opts.dropout_p;
    if !(0.0..1.0).contains(&p) {
        return Err(Error::invalid("dropout_p", format!("{p} must be in [0, 1)")));
    }
    Ok(())
}

/// The kernel parameters of a masked call, and the guards of the device buffers they point to.
pub(crate) struct MaskSetup<'a> {
    pub params: MaskParams,
    _guards: Vec<SyncOnDrop<'a>>,
}

/// The packed-batch offsets on the device.
pub(crate) struct VarlenDevice {
    pub batch: VarlenBatch,
    pub cu_q: Tensor<i32>,
    pub cu_k: Tensor<i32>,
}

impl VarlenDevice {
    pub fn upload(dev: &Device, batch: &VarlenBatch) -> Result<Self> {
        let n = batch.batch() + 1;
        Ok(VarlenDevice {
            batch: batch.clone(),
            cu_q: dev.upload(batch.cu_seqlens_q(), &[n])?,
            cu_k: dev.upload(batch.cu_seqlens_k(), &[n])?,
        })
    }
}

/// Validates the tensor inputs against the problem (`dims`: for packed batches, the longest
/// sequences) and writes the kernel parameters. `varlen`: packed batches (LSE `[heads, total_q]`).
pub(crate) fn setup<'a>(
    stream: &'a std::sync::Arc<CudaStream>,
    dev: &Device,
    dims: &Shape,
    scale: f32,
    opts: &AttentionOptions,
    inputs: &MaskInputs<'a>,
    varlen: Option<&'a VarlenDevice>,
) -> Result<MaskSetup<'a>> {
    check_options(opts)?;
    let mut guards = Vec::new();
    let mut m = MaskParams::NONE;
    let side = |w: Option<usize>| w.map_or(-1, |w| w as i32);
    m.window_left = side(opts.window_left);
    m.window_right = side(opts.window_right);
    if opts.causal {
        m.window_right = 0; // causal is the window's right side at the diagonal
    }
    if opts.softcap > 0.0 {
        m.softcap_in = scale / opts.softcap;
        m.softcap_out = opts.softcap / scale;
    }
    m.inv_scale = 1.0 / scale;
    if let Some(slopes) = inputs.alibi_slopes {
        let shape = slopes.shape();
        let ok = shape == [dims.heads] || shape == [dims.batch, dims.heads];
        if !ok || !slopes.is_contiguous() {
            return Err(Error::invalid(
                "alibi_slopes",
                format!(
                    "must be a contiguous f32 [heads] or [batch, heads] tensor ({} heads), got {slopes:?}",
                    dims.heads
                ),
            ));
        }
        if slopes.device() != dev {
            return Err(Error::DeviceMismatch { a: "q", b: "alibi_slopes" });
        }
        let (ptr, guard) = slopes.data().device_ptr(stream);
        guards.push(guard);
        m.alibi_slopes = ptr;
        m.alibi_batch_stride = if shape.len() == 2 { dims.heads as u32 } else { 0 };
    }
    if let Some(mask) = inputs.block_mask {
        let (qb, kb) = (dims.seqlen_q.div_ceil(BLOCK_MASK_SIZE), dims.seqlen_k.div_ceil(BLOCK_MASK_SIZE));
        let shape = mask.shape();
        let ok = shape.len() == 3 && (shape[0] == 1 || shape[0] == dims.heads) && shape[1..] == [qb, kb];
        if !ok || !mask.is_contiguous() {
            return Err(Error::invalid(
                "block_mask",
                format!(
                    "must be a contiguous u8 [1 or {}, {qb}, {kb}] tensor (blocks of {BLOCK_MASK_SIZE} queries x \
                     {BLOCK_MASK_SIZE} keys), got {mask:?}",
                    dims.heads
                ),
            ));
        }
        if mask.device() != dev {
            return Err(Error::DeviceMismatch { a: "q", b: "block_mask" });
        }
        let (ptr, guard) = mask.data().device_ptr(stream);
        guards.push(guard);
        m.block_mask = ptr;
        m.block_mask_head_stride = if shape[0] == 1 { 0 } else { (qb * kb) as u64 };
        m.block_mask_k_blocks = kb as u32;
    }
    if opts.dropout_p > 0.0 {
        let threshold = keep_threshold(opts.dropout_p);
        m.dropout_threshold = threshold as u32;
        m.dropout_scale = 1.0 / keep_probability(threshold);
        m.dropout_seed = opts.dropout_seed;
        m.dropout_offset = opts.dropout_offset;
    }
    match varlen {
        Some(v) => {
            let (q, gq) = v.cu_q.data().device_ptr(stream);
            let (k, gk) = v.cu_k.data().device_ptr(stream);
            guards.extend([gq, gk]);
            (m.cu_seqlens_q, m.cu_seqlens_k) = (q, k);
            (m.lse_batch_stride, m.lse_head_stride) = (0, v.batch.total_q() as u64);
        }
        None => (m.lse_batch_stride, m.lse_head_stride) = ((dims.heads * dims.seqlen_q) as u64, dims.seqlen_q as u64),
    }
    Ok(MaskSetup { params: m, _guards: guards })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropout_only_means_dropout_with_at_most_causal() {
        let inputs = MaskInputs::default();
        let p = AttentionOptions { dropout_p: 0.1, ..Default::default() };
        assert!(dropout_only(&p, &inputs, false));
        assert!(dropout_only(&AttentionOptions { causal: true, ..p }, &inputs, false));
        assert!(!dropout_only(&p, &inputs, true), "packed batches run the masked builds");
        assert!(!dropout_only(&AttentionOptions { window_left: Some(8), ..p }, &inputs, false));
        assert!(!dropout_only(&AttentionOptions { window_right: Some(0), ..p }, &inputs, false));
        assert!(!dropout_only(&AttentionOptions { softcap: 5.0, ..p }, &inputs, false));
        assert!(!dropout_only(&AttentionOptions::default(), &inputs, false), "no dropout");
    }
}
