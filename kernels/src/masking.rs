//! What the masked kernels (`MASKED = true` builds of `forward_mma`, `dkdv_mma`, `dq_mma`) read
//! from [`MaskParams`], as per-CTA values: the sequence of a (possibly packed) batch entry, the
//! score rules of a (batch, head) (window, softcap, ALiBi), the block mask and the dropout
//! stream. Every rule is off at its neutral value, so one build serves any mix; the plain builds
//! never touch these (their PTX is unchanged).
use crate::arch::sm80::{ex2, fma, opaque_u32, rcp, shfl_xor_b32, vote_ballot};
use crate::config::BLOCK_MASK_SIZE;
use crate::fast_div::divmod_u32;
use crate::params::MaskParams;
use crate::philox::{merge_flag_words, s_lane_call, s_own_send, st_lane_call, st_own_send, DropoutRng};

/// The `MODS` bits of a masked build: which per-element work it compiles in. Windows, block
/// masks and packed batches are in every masked build; builds without a bit run on larger tiles.
pub const MODS_SCORES: u32 = 1; // softcap and ALiBi
pub const MODS_DROPOUT: u32 = 2;

/// An unbounded window side: far beyond any distance of two positions below 2^30, and small
/// enough that sums of two stay in i32.
const UNBOUNDED: i32 = 1 << 30;

/// Batch entry `b`'s rows and keys: where they start in a packed tensor and how many.
#[derive(Clone, Copy)]
pub struct Sequence {
    pub q_start: usize,
    pub n_q: usize,
    pub k_start: usize,
    pub n_k: usize,
}

impl Sequence {
    /// Entry `b` of a packed batch (`cu_seqlens_*`), or of a dense one (`seqlen_*`, start 0).
    #[inline(always)]
    pub unsafe fn of(m: &MaskParams, b: usize, seqlen_q: u32, seqlen_k: u32) -> Self {
        let span = |cu: u64, dense: u32| {
            if cu == 0 {
                (0, dense as usize)
            } else {
                let cu = cu as *const i32;
                let start = *cu.add(b);
                (start as usize, (*cu.add(b + 1) - start).max(0) as usize)
            }
        };
        let (q_start, n_q) = span(m.cu_seqlens_q, seqlen_q);
        let (k_start, n_k) = span(m.cu_seqlens_k, seqlen_k);
        Sequence { q_start, n_q, k_start, n_k }
    }

    /// [`Sequence::of`] in masked builds; plain builds (`MASKED` false) never read the packed
    /// offsets, so their sequence is the dense one, constants the compiler folds away.
    #[inline(always)]
    pub unsafe fn for_build<const MASKED: bool>(m: &MaskParams, b: usize, seqlen_q: u32, seqlen_k: u32) -> Self {
        if MASKED {
            Self::of(m, b, seqlen_q, seqlen_k)
        } else {
            Sequence { q_start: 0, n_q: seqlen_q as usize, k_start: 0, n_k: seqlen_k as usize }
        }
    }

    /// Index of row `row` of head `h` in the LSE (dense `[batch, heads, seqlen_q]` or packed
    /// `[heads, total_q]`).
    #[inline(always)]
    pub fn lse_index(&self, m: &MaskParams, b: usize, h: usize, row: usize) -> usize {
        b * m.lse_batch_stride as usize + h * m.lse_head_stride as usize + self.q_start + row
    }
}

/// Which scores of a (batch, head) exist and how they are modified. Positions are relative to
/// the sequence; `off = n_k - n_q` aligns the window to the bottom-right corner (as causal).
#[derive(Clone, Copy)]
pub struct ScoreRules {
    left: i32,
    right: i32,
    off: i32,
    n_k: i32,
    softcap_in: f32,
    softcap_out: f32,
    /// `slope / softmax_scale`: the ALiBi bias per unit of distance in raw-score units; 0 = none.
    alibi: f32,
}

impl ScoreRules {
    #[inline(always)]
    pub unsafe fn new(m: &MaskParams, b: usize, h: usize, seq: &Sequence) -> Self {
        let side = |w: i32| if w < 0 { UNBOUNDED } else { w.min(UNBOUNDED) };
        let alibi = if m.alibi_slopes == 0 {
            0.0
        } else {
            *(m.alibi_slopes as *const f32).add(b * m.alibi_batch_stride as usize + h) * m.inv_scale
        };
        ScoreRules {
            left: side(m.window_left),
            right: side(m.window_right),
            off: seq.n_k as i32 - seq.n_q as i32,
            n_k: seq.n_k as i32,
            softcap_in: m.softcap_in,
            softcap_out: m.softcap_out,
            alibi,
        }
    }

    /// The keys `[start, end)` that any of rows `row_lo..row_hi` sees (`end <= start`: none).
    #[inline(always)]
    pub fn key_range(&self, row_lo: usize, row_hi: usize) -> (usize, usize) {
        let lo = (row_lo as i64 + self.off as i64 - self.left as i64).max(0);
        let hi = (row_hi as i64 + self.off as i64 + self.right as i64).min(self.n_k as i64);
        (lo as usize, hi.max(lo) as usize)
    }

    /// The rows `[start, end)` (of `n_q`) that see any of keys `key_lo..key_hi`.
    #[inline(always)]
    pub fn query_range(&self, key_lo: usize, key_hi: usize, n_q: usize) -> (usize, usize) {
        let lo = (key_lo as i64 - self.off as i64 - self.right as i64).max(0);
        let hi = (key_hi as i64 - self.off as i64 + self.left as i64).min(n_q as i64);
        (lo as usize, hi.max(lo) as usize)
    }

    /// Whether row `row` sees key `col` (window and sequence end; rows past the end are the
    /// caller's, whose statistics make them vanish).
    #[inline(always)]
    pub fn visible(&self, row: i32, col: i32) -> bool {
        let d = col - row - self.off;
        col < self.n_k && d >= -self.left && d <= self.right
    }

    /// Whether every score of rows `row_lo..row_hi` x keys `col_lo..col_hi` is visible (then no
    /// per-element test is needed).
    #[inline(always)]
    pub fn all_visible(&self, row_lo: usize, row_hi: usize, col_lo: usize, col_hi: usize) -> bool {
        let (row_lo, row_hi, col_lo, col_hi) = (row_lo as i64, row_hi as i64, col_lo as i64, col_hi as i64);
        col_hi <= self.n_k as i64
            && col_lo - (row_hi - 1) - self.off as i64 >= -(self.left as i64)
            && (col_hi - 1) - row_lo - self.off as i64 <= self.right as i64
    }

    /// Whether scores are modified (softcap or ALiBi) and not merely masked.
    #[inline(always)]
    pub fn modifies(&self) -> bool {
        self.softcap_in != 0.0 || self.alibi != 0.0
    }

    /// The modified raw score of `(row, col)` and `d score' / d score` (the softcap's `1 - tanh^2`;
    /// 1 without it). tanh through `ex2` and `rcp` (relative errors ~2^-22) rather than
    /// `tanh.approx` (~2^-11, as large as f16's rounding of a capped score).
    #[inline(always)]
    pub fn apply(&self, s: f32, row: i32, col: i32) -> (f32, f32) {
        let (mut s, mut slope) = (s, 1.0);
        if self.softcap_in != 0.0 {
            // tanh(x) = 1 - 2 / (e^(2x) + 1): exact limits +-1 when e^(2x) overflows or vanishes.
            let e = ex2(s * (self.softcap_in * 2.0 * core::f32::consts::LOG2_E));
            let t = fma(-2.0, rcp(e + 1.0), 1.0);
            s = self.softcap_out * t;
            slope = fma(-t, t, 1.0);
        }
        if self.alibi != 0.0 {
            let d = col - row - self.off;
            s = fma(-self.alibi, d.unsigned_abs() as f32, s);
        }
        (s, slope)
    }
}

/// The block mask of a head (see [`MaskParams::block_mask`]).
#[derive(Clone, Copy)]
pub struct BlockMask {
    head: *const u8,
    k_blocks: usize,
}

impl BlockMask {
    #[inline(always)]
    pub fn new(m: &MaskParams, h: usize) -> Self {
        let head = if m.block_mask == 0 {
            core::ptr::null()
        } else {
            (m.block_mask + h as u64 * m.block_mask_head_stride) as *const u8
        };
        BlockMask { head, k_blocks: m.block_mask_k_blocks as usize }
    }

    /// Whether the call has no block mask (every block is computed).
    #[inline(always)]
    pub fn is_none(&self) -> bool {
        self.head.is_null()
    }

    /// The mask bytes of key `col`'s column (mask row `r` at `r * k_blocks`), or null without a
    /// block mask.
    #[inline(always)]
    pub fn column(&self, col: usize) -> *const u8 {
        self.head.wrapping_add(col / BLOCK_MASK_SIZE)
    }

    /// Whether the kernel block holding score `(row, col)` (the kernels' blocks divide
    /// `BLOCK_MASK_SIZE`) is computed.
    #[inline(always)]
    pub unsafe fn active(&self, row: usize, col: usize) -> bool {
        self.head.is_null() || *self.head.add((row / BLOCK_MASK_SIZE) * self.k_blocks + col / BLOCK_MASK_SIZE) != 0
    }

    /// The first kernel block `j' >= j` (blocks of `bn` keys, rows from `row`) that is computed,
    /// or `end`. The warp reads 32 mask bytes at once and takes the first set lane (a ballot), so
    /// a sparse row costs one load latency per 32 mask blocks, not one per block. Whole warp.
    #[inline(always)]
    pub unsafe fn first_active_key_block(&self, row: usize, j: usize, end: usize, bn: usize, lane: usize) -> usize {
        if self.head.is_null() || j >= end {
            return j;
        }
        let per = BLOCK_MASK_SIZE / bn; // kernel blocks per mask block
        let mask_row = self.head.add((row / BLOCK_MASK_SIZE) * self.k_blocks);
        let mut mb = j / per;
        let mask_end = end.div_ceil(per);
        while mb < mask_end {
            let m = mb + lane;
            let set = vote_ballot(m < mask_end && *mask_row.add(m) != 0);
            if set != 0 {
                let first = mb + set.trailing_zeros() as usize;
                return (if first == j / per { j } else { first * per }).min(end);
            }
            mb += 32;
        }
        end
    }

    /// The first query block `i' >= i` (blocks of `bm` rows) whose mask block with key `key` is
    /// computed, or `end`: [`BlockMask::first_active_key_block`] down a mask column.
    #[inline(always)]
    pub unsafe fn first_active_query_block(&self, key: usize, i: usize, end: usize, bm: usize, lane: usize) -> usize {
        if self.head.is_null() || i >= end {
            return i;
        }
        let per = BLOCK_MASK_SIZE / bm;
        let mask_col = self.column(key);
        let mut mb = i / per;
        let mask_end = end.div_ceil(per);
        while mb < mask_end {
            let m = mb + lane;
            let set = vote_ballot(m < mask_end && *mask_col.add(m * self.k_blocks) != 0);
            if set != 0 {
                let first = mb + set.trailing_zeros() as usize;
                return (if first == i / per { i } else { first * per }).min(end);
            }
            mb += 32;
        }
        end
    }
}

/// The block-mask scan of a dK/dV CTA (one key block per CTA): iteration `it` is query block
/// `first_block + it % per_head` of query head `first_head + it / per_head` (the heads of a GQA
/// group outermost, `per_head = end_block - first_block`, `total` iterations, kernel blocks of
/// `bm` queries); the scan looks down the mask column of key `key`. Plain values of the CTA:
/// the mma.sync kernel builds it once, the wgmma kernel at each call (nothing of it kept in
/// registers across its loop). Its methods return the first iteration `>= it` whose block the
/// block mask keeps, or `total`. Without a block mask every block is kept, with no division and no scan (call `s5c8`: that
/// per-block division cost the masked wgmma backward ~7% with nothing masked). Divisions go
/// through a float reciprocal ([`divmod_u32`]). Whole warp.
#[derive(Clone, Copy)]
pub struct KeyColumnScan<'a> {
    pub m: &'a MaskParams,
    pub first_head: usize,
    pub key: usize,
    pub first_block: usize,
    pub end_block: usize,
    pub bm: usize,
    pub total: usize,
}

impl KeyColumnScan<'_> {
    /// A fresh warp-wide scan from `it` on ([`BlockMask::first_active_query_block`]).
    #[inline(always)]
    pub unsafe fn first_kept(&self, it: usize, lane: usize) -> usize {
        let KeyColumnScan { m, first_head, key, first_block, end_block, bm, total } = *self;
        if m.block_mask == 0 {
            return it.min(total);
        }
        let per = end_block.saturating_sub(first_block).max(1) as u32;
        let mut it = it;
        while it < total {
            let (q, r) = divmod_u32(it as u32, per, rcp(per as f32));
            let (gi, i) = (q as usize, first_block + r as usize);
            let kept = BlockMask::new(m, first_head + gi).first_active_query_block(key, i, end_block, bm, lane);
            if kept < end_block {
                return gi * per as usize + kept - first_block;
            }
            it = (gi + 1) * per as usize; // this head has no more: the next head's first block
        }
        total
    }

    /// [`Self::first_kept`] keeping a window across calls (`it` rising): the warp reads 32 mask
    /// blocks of the key's column at once and keeps their ballot in `window`, indexed by
    /// iteration; later calls answer from it until the loop leaves it, so a column costs one
    /// global load latency per 32 mask blocks, not one per block (call `s7c1`). A call inside the
    /// window is a handful of dependent operations (offset, shift, bit test); only leaving it
    /// divides `it` into (head of the group, block) again: that division, the window's naming and
    /// the spill reloads it needed were a ~60-operation dependent chain per block before the dS^T
    /// barrier, which cost the masked kernel with every block kept ~9% of its time (Nsight source
    /// counters, call `s8c1`). Not one method for both: the dropout and mma.sync builds keep the
    /// fresh scan, since this code made ptxas spill there and the dropout backward 3-7% slower
    /// (call `s7c3`).
    #[inline(always)]
    pub unsafe fn first_kept_windowed(&self, it: usize, lane: usize, window: &mut MaskWindow) -> usize {
        let KeyColumnScan { m, first_head, key, first_block, end_block, bm, total } = *self;
        if m.block_mask == 0 {
            return it.min(total);
        }
        let per = BLOCK_MASK_SIZE / bm; // kernel blocks per mask block (a power of two)

        // Inside the window: iteration it0 + o is mask block `o / per` of it (wrapping: it0 may
        // lie below the head's first iteration when the window starts before `first_block`).
        let off = (it as u32).wrapping_sub(window.it0);
        if off < window.len {
            let ahead = window.bits >> (off / per as u32);
            if ahead & 1 != 0 {
                return it;
            }
            if ahead != 0 {
                return window.it0.wrapping_add((off / per as u32 + ahead.trailing_zeros()) * per as u32) as usize;
            }
        }
        let per_head = end_block.saturating_sub(first_block).max(1) as u32;
        let mask_end = end_block.div_ceil(per);
        // Past the window (or none yet): from its end on, or from `it` if that is further.
        let mut it = if off < window.len { window.it0.wrapping_add(window.len) as usize } else { it };
        while it < total {
            let (gi, r) = divmod_u32(it as u32, per_head, rcp(per_head as f32));
            let i = first_block + r as usize;
            let mb = i / per;
            // Windows start at multiples of 32 mask blocks of a head and end at its end.
            let first = mb & !31;
            let head_start = gi as usize * per_head as usize;
            let it0 = (head_start + first * per).wrapping_sub(first_block) as u32;
            let head_end = (head_start + per_head as usize) as u32;
            let column = BlockMask::new(m, first_head + gi as usize).column(key);
            let k_blocks = m.block_mask_k_blocks as usize;
            let b = first + lane;
            *window = MaskWindow {
                it0,
                len: (32 * per as u32).min(head_end.wrapping_sub(it0)),
                bits: vote_ballot(b < mask_end && *column.add(b * k_blocks) != 0),
            };
            let ahead = window.bits >> (mb - first);
            if ahead != 0 {
                let kept = mb + ahead.trailing_zeros() as usize;
                let block = if kept == mb { i } else { kept * per };
                return head_start + block - first_block;
            }
            // Nothing kept in the rest of the window: its end (the next head's first block).
            it = window.it0.wrapping_add(window.len) as usize;
        }
        total
    }
}

/// 32 mask blocks of one column, as a warp's ballot ([`KeyColumnScan::first_kept_windowed`]):
/// iterations `it0 .. it0 + len` (wrapping) of the dK/dV loop lie in it, `per` iterations per mask
/// block; bit `k` of `bits` is its `k`-th block. Three registers across the dK/dV loop.
#[derive(Clone, Copy)]
pub struct MaskWindow {
    it0: u32,
    len: u32,
    bits: u32,
}

impl MaskWindow {
    /// No blocks yet: the first call loads.
    pub const EMPTY: MaskWindow = MaskWindow { it0: 0, len: 0, bits: 0 };
}

/// `x & (dropout_threshold >> 8)`: zero at run time in a build whose dropout is on (threshold
/// <= 255), but not to the compiler, so what adds it depends on `x` and cannot start before `x`
/// is known (a scheduling anchor, e.g. with `x` a clock read).
#[inline(always)]
pub fn zero_after(x: u32, dropout_threshold: u32) -> u32 {
    x & (dropout_threshold >> 8)
}

/// The dropout stream of a (batch, head), if dropout is on.
#[derive(Clone, Copy)]
pub struct Dropout {
    rng: DropoutRng,
    threshold: u32,
    /// 1 / keep probability, folded into the output (forward) or into dP (backward).
    pub scale: f32,
}

impl Dropout {
    #[inline(always)]
    pub fn new(m: &MaskParams, b: usize, h: usize, heads: u32) -> Self {
        let rng = DropoutRng::new(m.dropout_seed, m.dropout_offset, b as u32, h as u32, heads);
        Dropout { rng, threshold: m.dropout_threshold, scale: m.dropout_scale }
    }

    /// The same stream, its Philox round keys recomputed (uniform adds) wherever it is used
    /// instead of eighteen loop-invariant registers kept alive, or spilled, across a loop.
    #[inline(always)]
    pub fn with_keys_recomputed(self) -> Self {
        Dropout { rng: self.rng.map_key(opaque_u32), ..self }
    }

    /// No dropout: for builds without it (constants, so nothing of it stays in registers).
    #[inline(always)]
    pub fn off() -> Self {
        Dropout { rng: DropoutRng::new(0, 0, 0, 0, 0), threshold: 256, scale: 1.0 }
    }

    #[inline(always)]
    pub fn on(&self) -> bool {
        self.threshold <= 255
    }

    /// [`zero_after`] with this stream's threshold.
    #[inline(always)]
    pub fn zero_after(&self, x: u32) -> u32 {
        zero_after(x, self.threshold)
    }

    /// Drop flags (set: dropped) of this lane's elements of `S` (rows = queries) in the 16 rows
    /// from `row16` and the 32 keys from `col32` (multiples of 16 and 32), in the m16n8
    /// accumulator layout: element `e` (column parity) of row `g + 8 half`, key `16 sub + 8 ntpar +
    /// 2 t + e` is bit 7 of byte `2 half + ntpar` of [`half_flags`]`(words[e], g % 2, sub == 1)`.
    /// One Philox call per lane: lanes `g` and `g ^ 1` compute the calls of the two 16-key halves
    /// and swap the words the other needs (the row-parity pair; see the `philox` module), merged
    /// into one word per column parity ([`merge_flag_words`]). Whole warp.
    #[inline(always)]
    pub unsafe fn s_bits(&self, row16: usize, col32: usize, lane: usize) -> [u32; 2] {
        let m = self.rng.drop_flags(s_lane_call(row16 as u32, col32 as u32, lane as u32), self.threshold as u8);
        let (own, send) = s_own_send(m, (lane / 4) % 2 == 1);
        let other = [shfl_xor_b32(send[0], 4), shfl_xor_b32(send[1], 4)];
        [merge_flag_words(own[0], other[0]), merge_flag_words(own[1], other[1])]
    }

    /// Drop flags of this lane's elements of `S^T` (rows = keys) in the 16 keys from `key16` and
    /// the 32 queries from `q32`: element `e` (query parity) of key `g + 8 half`, query `16 sub +
    /// 8 ntpar + 2 t + e` is bit 7 of byte `2 ntpar + half` of [`half_flags`]`(words[e], g % 2,
    /// sub == 1)`. As [`Dropout::s_bits`], one call per lane (the column-parity pair).
    #[inline(always)]
    pub unsafe fn st_bits(&self, key16: usize, q32: usize, lane: usize) -> [u32; 2] {
        let m = self.rng.drop_flags(st_lane_call(key16 as u32, q32 as u32, lane as u32), self.threshold as u8);
        let (own, send) = st_own_send(m, (lane / 4) % 2 == 1);
        let other = [shfl_xor_b32(send[0], 4), shfl_xor_b32(send[1], 4)];
        [merge_flag_words(own[0], other[0]), merge_flag_words(own[1], other[1])]
    }
}
