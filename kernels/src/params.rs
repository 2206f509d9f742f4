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
    /// Read by the masked kernels only (`forward_mma` with `MASKED`); see [`MaskParams`].
    pub mask: MaskParams,
    /// The warp-specialized forward only: device address of three 128-byte TMA descriptors
    /// (Q, K, V; 64-byte aligned) that the host encoded for this call; 0 for the others.
    pub tensor_maps: u64,
}

/// Query heads per K/V head (MQA/GQA; 1 without): query head `h` reads K/V head `h / group`.
/// (heads_kv divides heads, validated on the host; the `max(1)`s keep core's division panic out.)
#[inline(always)]
fn query_group(heads: u32, heads_kv: u32) -> usize {
    (heads / heads_kv.max(1)).max(1) as usize
}

impl ForwardParams {
    /// See [`query_group`].
    #[inline(always)]
    pub fn group(&self) -> usize {
        query_group(self.heads, self.heads_kv)
    }
}

/// What the masked kernels add to plain (or causal) attention: a sliding window, softcap, ALiBi,
/// a block mask, dropout and variable-length batches, each off at its neutral value (what
/// [`MaskParams::default`]'s host counterpart writes), so one kernel build serves any mix.
/// Scores inside the kernels are raw dot products `q . k` (the softmax scale is folded into the
/// exponent), so the score modifications are expressed in raw units here.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaskParams {
    /// flash-attn's `window_size`: query row `i` sees key `j` iff `-window_left <= j - (i +
    /// seqlen_k - seqlen_q) <= window_right`; a negative value is unbounded. Causal is
    /// `window_right = 0`.
    pub window_left: i32,
    pub window_right: i32,
    /// Softcap `c * tanh(s / c)` of the scaled score `s`, in raw units: `raw' = softcap_out *
    /// tanh(raw * softcap_in)` with `softcap_in = scale / c`, `softcap_out = c / scale`; 0 = off.
    pub softcap_in: f32,
    pub softcap_out: f32,
    /// f32 ALiBi slopes `[batch, heads]` (batch stride 0: one slope per head), 0 = none. The bias
    /// `-slope * |j - (i + seqlen_k - seqlen_q)|` is added to the scaled (and capped) score.
    pub alibi_slopes: u64,
    pub alibi_batch_stride: u32,
    /// `1 / softmax_scale`: converts the ALiBi bias to raw units.
    pub inv_scale: f32,
    /// u8 block mask `[mask_heads, q_blocks, k_blocks]` over blocks of
    /// [`crate::config::BLOCK_MASK_SIZE`] x `BLOCK_MASK_SIZE` scores: blocks marked 0 are skipped;
    /// 0 = none. Head stride 0: one mask shared by every head.
    pub block_mask: u64,
    pub block_mask_head_stride: u64,
    pub block_mask_k_blocks: u32,
    /// Dropout: an element is kept iff its Philox byte is `<= dropout_threshold`; above 255 = no
    /// dropout. Kept elements are scaled by `dropout_scale` (1 / keep probability).
    pub dropout_threshold: u32,
    pub dropout_scale: f32,
    pub dropout_seed: u64,
    pub dropout_offset: u64,
    /// i32 `[batch + 1]` prefix sums of the sequence lengths of a packed variable-length batch
    /// (flash-attn's `cu_seqlens_q` / `cu_seqlens_k`), 0 = a dense batch. Packed tensors are
    /// `[total, heads, head_dim]` with batch stride 0; `seqlen_q` / `seqlen_k` are then the maxima.
    pub cu_seqlens_q: u64,
    pub cu_seqlens_k: u64,
    /// Element strides of the LSE: dense `[batch, heads, seqlen_q]` is (heads * seqlen_q,
    /// seqlen_q); packed `[heads, total_q]` is (0, total_q), rows offset by `cu_seqlens_q[b]`.
    pub lse_batch_stride: u64,
    pub lse_head_stride: u64,
}

impl MaskParams {
    /// Every rule off (LSE strides 0: set them when a kernel writes or reads the LSE this way).
    pub const NONE: MaskParams = MaskParams {
        window_left: -1,
        window_right: -1,
        softcap_in: 0.0,
        softcap_out: 0.0,
        alibi_slopes: 0,
        alibi_batch_stride: 0,
        inv_scale: 1.0,
        block_mask: 0,
        block_mask_head_stride: 0,
        block_mask_k_blocks: 0,
        dropout_threshold: 256,
        dropout_scale: 1.0,
        dropout_seed: 0,
        dropout_offset: 0,
        cu_seqlens_q: 0,
        cu_seqlens_k: 0,
        lse_batch_stride: 0,
        lse_head_stride: 0,
    };
}

impl Default for MaskParams {
    fn default() -> Self {
        Self::NONE
    }
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
    /// u32 `[batch, heads_kv]`, or 0: the dK/dV CTAs of each (batch, KV head) that are done
    /// adding into `dq_accum` (the wgmma dK/dV kernel publishes each with a release; the
    /// preprocessing zeroes them). The tiled dQ conversion, launched to overlap the dK/dV
    /// kernel's last CTAs, converts a head once its count covers the entry's key blocks.
    pub dq_done: u64,
    /// u32 `[heads_kv, ceil(seqlen_k / dkdv_block_n)]`, or 0 (grid order): which key block each
    /// dK/dV CTA of a KV head takes, longest first (see [`crate::work_order`]). Written by the
    /// key-block order kernel before the preprocessing when a block mask is given (one order for
    /// the whole batch: the block mask has no batch index) without softcap, ALiBi or dropout (the
    /// masked dK/dV builds with `MODS` take grid order).
    pub key_block_order: u64,
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
    /// The dK/dV kernel's key block (`block_n`), when `dq_done` or `key_block_order` is set:
    /// entry `b` of the batch is done once `ceil(n_k(b) / dkdv_block_n)` CTAs have counted
    /// themselves, and the order has `ceil(seqlen_k / dkdv_block_n)` key blocks per KV head.
    pub dkdv_block_n: u32,
    /// (Explicit padding: `mask` is 8-byte aligned.)
    pub _pad: u32,
    /// Read by the masked kernels, the preprocessing and the dQ conversion; see [`MaskParams`].
    pub mask: MaskParams,
}

impl BackwardParams {
    /// See [`query_group`].
    #[inline(always)]
    pub fn group(&self) -> usize {
        query_group(self.heads, self.heads_kv)
    }

    /// The `dq_done` counter of (batch `b`, KV head `h_kv`): zeroed by the preprocessing, counted
    /// up by the wgmma dK/dV kernel, waited on by the dQ conversion.
    #[inline(always)]
    pub fn dq_done_counter(&self, b: usize, h_kv: usize) -> *mut u32 {
        (self.dq_done as *mut u32).wrapping_add(b * self.heads_kv as usize + h_kv)
    }

    /// Key blocks per KV head of the dK/dV grid (its width).
    #[inline(always)]
    pub fn dkdv_key_blocks(&self) -> usize {
        self.seqlen_k.div_ceil(self.dkdv_block_n.max(1)) as usize // (u32: a u64 division is a call)
    }

    /// The row of KV head `h_kv` in `key_block_order`.
    #[inline(always)]
    pub fn key_block_order_row(&self, h_kv: usize) -> *mut u32 {
        (self.key_block_order as *mut u32).wrapping_add(h_kv * self.dkdv_key_blocks())
    }

    /// The key block that dK/dV CTA `x` of KV head `h_kv` takes: `x` itself in grid order, else
    /// its entry of the longest-first order (written by the key-block order kernel, launched
    /// before).
    ///
    /// # Safety
    /// With `key_block_order` set, it must hold the order of this launch's shape.
    #[inline(always)]
    pub unsafe fn dkdv_key_block(&self, x: usize, h_kv: usize) -> usize {
        if self.key_block_order == 0 {
            x
        } else {
            *self.key_block_order_row(h_kv).add(x) as usize
        }
    }
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
