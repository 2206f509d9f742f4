//! Kernel parameter blocks, passed by value to every launch (`#[repr(C)]`: the host writes the
//! bytes, the kernel reads them as `.param` space). One struct per kernel family.

/// Everything a forward launch needs. Pointers are raw device addresses; strides are in
/// elements, for the `[batch, seqlen, heads, head_dim]` layout (the last dimension contiguous).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ForwardParams {
    pub q: u64,
    pub k: u64,
    pub v: u64,
    pub o: u64,
    /// f32 `[batch, heads, seqlen_q]`, natural-log log-sum-exp of the scaled scores per row.
    pub lse: u64,
    pub q_strides: Strides,
    pub k_strides: Strides,
    pub v_strides: Strides,
    pub o_strides: Strides,
    pub batch: u32,
    pub heads: u32,
    /// K/V heads; `heads` is a multiple of it (MQA/GQA: query head h reads K/V head h / (heads / heads_kv)).
    pub heads_kv: u32,
    pub seqlen_q: u32,
    pub seqlen_k: u32,
    /// The real head dim (the tensor-core kernels are instantiated for it rounded up to a
    /// multiple of 32, and zero-fill the columns past it).
    pub head_dim: u32,
    /// `softmax_scale * log2(e)`: scores are kept in the log2 domain so that exp becomes one
    /// `ex2.approx` after a single FFMA (FlashAttention-2's trick).
    pub scale_log2: f32,
}

/// Strides in elements of a `[batch, seqlen, heads, head_dim]` tensor whose last dimension is contiguous.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Strides {
    pub batch: u64,
    pub row: u64,
    pub head: u64,
}

impl Strides {
    /// Element offset of (batch `b`, row `row`, head `h`, column 0).
    #[inline(always)]
    pub fn offset(&self, b: usize, row: usize, h: usize) -> u64 {
        b as u64 * self.batch + row as u64 * self.row + h as u64 * self.head
    }
}

/// Everything a backward launch needs (preprocessing, dQ and dK/dV kernels share it).
/// Pointers are raw device addresses; strides in elements as in [`ForwardParams`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BackwardParams {
    pub q: u64,
    pub k: u64,
    pub v: u64,
    pub o: u64,
    pub d_o: u64,
    /// f32 `[batch, heads, seqlen_q]`: the forward's log-sum-exp (natural log).
    pub lse: u64,
    /// f32 `[batch, heads, stat_pitch]`: `D_i = rowsum(dO_i * O_i)`, written by the preprocessing
    /// (0 in the padding rows past `seqlen_q`).
    pub delta: u64,
    /// f32 `[batch, heads, stat_pitch]`: `LSE_i * log2(e)`, written by the preprocessing, `+inf`
    /// in the padding rows, so that `2^(s - lse_log2)` is exactly 0 there without a mask.
    pub lse_log2: u64,
    /// f32 `[batch, heads, stat_pitch, acc_dim]`: dQ accumulated by the tensor-core dK/dV kernel
    /// with atomics (zeroed before it runs), unscaled; converted to dq by the dQ conversion.
    pub dq_accum: u64,
    pub dq: u64,
    pub dk: u64,
    pub dv: u64,
    pub q_strides: Strides,
    pub k_strides: Strides,
    pub v_strides: Strides,
    pub o_strides: Strides,
    pub do_strides: Strides,
    pub dq_strides: Strides,
    pub dk_strides: Strides,
    pub dv_strides: Strides,
    pub batch: u32,
    pub heads: u32,
    pub heads_kv: u32,
    pub seqlen_q: u32,
    pub seqlen_k: u32,
    pub head_dim: u32,
    /// `softmax_scale * log2(e)`.
    pub scale_log2: f32,
    /// `softmax_scale`.
    pub scale: f32,
    /// Rows of the per-row statistics and of `dq_accum` per (batch, head): `seqlen_q` rounded up
    /// to [`crate::config::MmaBackwardConfig::STAT_ROW_ALIGN`], so that whole query blocks can be
    /// read with 16-byte copies and no bounds checks.
    pub stat_pitch: u32,
    /// Columns of a `dq_accum` row: the instantiated (padded) head dim of the kernel.
    pub acc_dim: u32,
}

/// The row kernels of the standard-attention baseline (`flashattn::standard`): the `N x N`
/// matrices are contiguous `[batch, heads, seqlen_q, seqlen_k]`, written and read by cuBLAS GEMMs
/// around these kernels.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StandardParams {
    /// f32 `[batch, heads, seqlen_q, seqlen_k]`: the scaled scores `S = scale * Q K^T`
    /// (softmax and probabilities kernels), or `dP = dO V^T` (dS kernel).
    pub s: u64,
    /// Input type `[batch, heads, seqlen_q, seqlen_k]`: `P` (written by the softmax and
    /// probabilities kernels; read and overwritten in place by `dS = P * (dP - D)`).
    pub p: u64,
    /// f32 `[batch, heads, seqlen_q]`: the natural-log log-sum-exp of each row (written by the
    /// softmax, read by the probabilities kernel).
    pub lse: u64,
    /// `o` and `d_o` (dS kernel only: `D_i = rowsum(dO_i * O_i)`), `[batch, seqlen, heads, head_dim]`.
    pub o: u64,
    pub d_o: u64,
    pub o_strides: Strides,
    pub do_strides: Strides,
    pub batch: u32,
    pub heads: u32,
    pub seqlen_q: u32,
    pub seqlen_k: u32,
    pub head_dim: u32,
}
