//! The Hopper forward (sm_90a): FlashAttention's algorithm on warpgroup MMAs (`wgmma`).
//!
//! Per CTA (grid: query blocks x heads x batch), `BM / 64` warpgroups each own 64 query rows:
//! 1. Q (BM rows) and the first K and V blocks are copied to shared memory with `cp.async`, in
//!    the 128-byte swizzled layout of `smem_layout` (what `wgmma` descriptors read), K and V in
//!    separate commit groups; K and V are double-buffered (block j + 1 loads during block j).
//!    `cp.async` writes through the generic proxy and `wgmma` reads through the async proxy, so
//!    every thread runs `fence.proxy.async` after its copies land, before the CTA barrier.
//!    Every thread issues copies: tiles wholly inside the sequence with a fixed row step per
//!    thread (`copy_full_tile_sw128`, ~3 instructions a chunk), the others through the general
//!    loop (`copy_tile_sw128`, bounds tests and zero-fill).
//! 2. Per K/V block `j`: `S = Q K_j^T` as `D / 16` SS MMAs (m64nBNk16, both operands K-major),
//!    waited for at once; mask (blocks crossing the sequence end or the causal diagonal); online
//!    softmax on the accumulator registers (the m64nN accumulator is mma.sync's m16n8 layout per
//!    warp: lane `4 g + t` owns rows `g` and `g + 8` of its warp's 16, so row max / sum are quad
//!    shuffles; `exp2(s * scale_log2 - m * scale_log2)` as one FFMA + MUFU; NaN guard for rows
//!    that have seen no key); O rescaled; P converted to 16-bit in registers: two adjacent
//!    8-column accumulator chunks are exactly the A fragment of one k16 step; then
//!    `O += P V_j` as `BN / 16` RS MMAs with V MN-major (transpose flag).
//! 3. O / l is staged through this warp's own rows of the Q tile (same swizzle: conflict-free)
//!    and written with 16-byte stores; the LSE (natural log) once per row.
//!
//! Two main loops: `serial_loop` (the first version: no overlap of the softmax with the MMAs
//! inside a warpgroup) and `pipelined_loop` (FlashAttention-3's intra-warpgroup pipelining, what
//! `Auto` runs). The warpgroups of a CTA step together (one CTA barrier per block) and overlap
//! each other only as the scheduler interleaves them: no producer warp, no ping-pong.
//!
//! Register arrays are sized for the largest configuration and indexed only in loops with
//! constant bounds, which LLVM unrolls fully, so they live in registers.
use core::arch::nvptx::{_block_idx_x, _block_idx_y, _block_idx_z, _syncthreads, _thread_idx_x};

use crate::arch::sm80::{
    clock_lo, cp_async_cg_16, cp_async_commit_group, cp_async_wait_group, dynamic_smem_base, ex2, fma,
    ld_shared_v4_b32, lg2, prmt_b32, shfl_xor_f32, st_global_f32, st_global_v4_b32, st_shared_b32, syncwarp,
    thread_idx_x_reread, vote_any, warp_uniform_u32,
};
use crate::arch::sm90::{
    declare_max_registers, declare_max_threads, fence_proxy_async_shared, fence_regs_f32_prefix, fence_regs_u32,
    smem_desc, wgmma_commit_group, wgmma_fence, wgmma_wait_group, wgmma_wait_group_after, SWIZZLE_128B,
};
use crate::config::{WgmmaForwardConfig, BLOCK_MASK_SIZE};
use crate::element::WgmmaElement;
use crate::masking::{BlockMask, Dropout, ScoreRules, Sequence};
use crate::mma_tile::{copy_chunk_column, tile_inside};
use crate::params::{ForwardParams, Strides};
use crate::philox::{half_flags, pair_mask_selector};
use crate::smem_layout::{sw128_chunk_offset, sw128_k_major_strides, sw128_mn_major_strides};

pub(crate) const LN2: f32 = core::f32::consts::LN_2;
/// Register-array bounds: S accumulators (BN / 2), O accumulators (D / 2), k-steps of P V (BN / 16).
pub(crate) const MAX_S: usize = 64;
pub(crate) const MAX_O: usize = 128;
pub(crate) const MAX_KV: usize = 8;
/// Dropout drop-flag words of a block: two per 32 keys.
pub(crate) const MAX_FLAG_WORDS: usize = MAX_S / 16;

/// The dynamic shared memory base rounded up to a 1024-byte swizzle atom (the launch reserves
/// `WgmmaForwardConfig::ALIGN_SLACK` bytes for it).
#[inline(always)]
pub(crate) fn aligned_smem_base() -> u32 {
    (dynamic_smem_base() + 1023) & !1023
}

/// Issues the `cp.async` copies of `rows` rows x `D` columns of one head into a SW128 tile at
/// `smem` (1024-aligned). Rows past `valid_rows` and columns past `head_dim` are zero-filled by
/// the copy itself (source size 0), so no stale shared memory ever reaches an MMA.
#[inline(always)]
pub(crate) unsafe fn copy_tile_sw128<const D: usize>(
    src: u64,
    strides: &Strides,
    b: usize,
    h: usize,
    first_row: usize,
    valid_rows: usize,
    rows: usize,
    head_dim: usize,
    smem: u32,
    tid: usize,
    threads: usize,
) {
    let chunks = D / 8; // 16-byte chunks per row
    let mut idx = tid;
    // Consecutive lanes take consecutive chunks of a row: coalesced 16-byte global reads; the 8
    // chunks of a 128-byte row block land in 8 distinct 16-byte bank groups (the swizzle only
    // permutes them), so the shared-memory writes do not conflict.
    while idx < rows * chunks {
        let r = idx / chunks;
        let c = idx % chunks;
        let row = first_row + r;
        let valid = row < valid_rows && c * 8 < head_dim;
        let src_ptr = if valid {
            (src as *const u16).add((strides.offset(b, row, h) + (c * 8) as u64) as usize) as *const u8
        } else {
            src as *const u8 // not read (source size 0), but a valid address all the same
        };
        cp_async_cg_16(smem + sw128_chunk_offset(rows, r, c) as u32, src_ptr, if valid { 16 } else { 0 });
        idx += threads;
    }
}

/// [`copy_tile_sw128`] in about three instructions a chunk, for tiles wholly inside the sequence
/// with every column real (all but a sequence's last block); returns false, issuing nothing,
/// for any other tile. With `copiers` (the threads that copy) a multiple of the row's 16-byte
/// chunks, a thread copies the same chunk column of every `copiers / chunks`-th row, and with
/// that row step a multiple of 8 its swizzled chunk stays put inside the 1024-byte atoms: each
/// copy is the first one's source plus a multiple of a fixed stride and its shared address plus
/// a constant, where the general loop's 64-bit index arithmetic, bounds tests and swizzle take
/// over twenty instructions a chunk (the forward at d = 128 copies 16 chunks a thread per block:
/// ~370 of the ~1100 instructions a block cost a thread went to it). Consecutive lanes take
/// consecutive chunks of a row, as in the general loop: coalesced reads, conflict-free writes.
///
/// With three warpgroups, 128-row tiles of 64 columns have 1024 chunks, which 384 threads do not
/// divide: the first two warpgroups then copy them all. The conditions on the steps are constant
/// after inlining; `first_row <= valid_rows` rejects the wrapped rows of a shifted causal tile.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn copy_full_tile_sw128<const D: usize>(
    src: u64,
    strides: &Strides,
    b: usize,
    h: usize,
    first_row: usize,
    valid_rows: usize,
    rows: usize,
    head_dim: usize,
    smem: u32,
    tid: usize,
    threads: usize,
) -> bool {
    let chunks = D / 8;
    let uneven = rows * chunks % threads != 0;
    let copiers = if uneven && threads > 128 { threads - 128 } else { threads };
    let row_step = copiers / chunks;
    let fits = copiers % chunks == 0 && row_step % 8 == 0 && rows % row_step == 0;
    let inside = tile_inside(first_row, valid_rows, rows);
    if !(fits && head_dim == D && inside) {
        return false;
    }
    if tid < copiers {
        // (Rows of a column block are 128 bytes apart.)
        let chunk = (tid / chunks, tid % chunks);
        let chunk_addr = |r: usize, c: usize| smem + sw128_chunk_offset(rows, r, c) as u32;
        copy_chunk_column(src, strides, b, h, first_row, chunk, row_step, rows / row_step, chunk_addr, 128);
    }
    true
}

/// Descriptor offset (in the 16-byte units of the start-address field) of k-step `kk` of a
/// K-major SW128 operand whose tile has `rows` rows: column block `kk / 4`, then 32 bytes per
/// k-step inside the 128-byte row.
#[inline(always)]
pub(crate) const fn k_major_step(rows: usize, kk: usize) -> u64 {
    (((kk / 4) * rows * 128 + (kk % 4) * 32) >> 4) as u64
}

/// Descriptor offset of k-step `kk` (keys `16 kk .. 16 kk + 15`) of an MN-major SW128 operand:
/// 16 rows of 128 bytes = two 1024-byte atoms.
#[inline(always)]
pub(crate) const fn mn_major_step(kk: usize) -> u64 {
    ((kk * 16 * 128) >> 4) as u64
}

/// `d (+)= A B` over the first `N / 2` registers of `d` (N = 64 or 128), both operands K-major.
#[inline(always)]
pub(crate) unsafe fn wgmma_ss<E: WgmmaElement, const N: usize>(
    d: &mut [f32; 64],
    desc_a: u64,
    desc_b: u64,
    scale_d: u32,
) {
    if N == 64 {
        E::wgmma_ss_n64(&mut *(d.as_mut_ptr() as *mut [f32; 32]), desc_a, desc_b, scale_d)
    } else {
        E::wgmma_ss_n128(d, desc_a, desc_b, scale_d)
    }
}

/// `d (+)= A B` over the first `N / 2` registers of `d`, A from registers, B MN-major.
#[inline(always)]
pub(crate) unsafe fn wgmma_rs<E: WgmmaElement, const N: usize>(
    d: &mut [f32; 64],
    a: [u32; 4],
    desc_b: u64,
    scale_d: u32,
) {
    if N == 64 {
        E::wgmma_rs_n64_mn(&mut *(d.as_mut_ptr() as *mut [f32; 32]), a, desc_b, scale_d)
    } else {
        E::wgmma_rs_n128_mn(d, a, desc_b, scale_d)
    }
}

/// What every piece of one CTA's work needs to know (built once; all fields are registers).
pub(crate) struct Cta<'a> {
    pub(crate) p: &'a ForwardParams,
    pub(crate) tid: usize,
    pub(crate) threads: usize,
    pub(crate) b: usize,
    pub(crate) h_kv: usize,
    pub(crate) n_q: usize,
    pub(crate) n_k: usize,
    pub(crate) head_dim: usize,
    /// Lane position in its quad: rows g and g + 8 of its warp, columns 2 t, 2 t + 1 of each chunk.
    pub(crate) g: usize,
    pub(crate) t: usize,
    /// First sequence row of this thread's warp (16 rows per warp).
    pub(crate) warp_first_row: usize,
    /// Masked builds: where this sequence starts in the (packed) tensors, and its window.
    pub(crate) q_start: usize,
    pub(crate) k_start: usize,
    pub(crate) rules: ScoreRules,
    pub(crate) dropout: Dropout,
    pub(crate) scale_log2: f32,
    pub(crate) k_s: u32,
    pub(crate) v_s: u32,
    pub(crate) kv_bytes: usize,
    /// Whether the K / V copies reread the thread index (`load_kv_block`).
    pub(crate) reread_tid: bool,
    pub(crate) q_desc: u64,
    pub(crate) k_desc: u64,
    pub(crate) v_desc: u64,
}

/// Running state of this thread's rows g and g + 8: O accumulators, row max (raw score units),
/// this lane's partial row sum.
pub(crate) struct RowState {
    pub(crate) acc_o: [f32; MAX_O],
    pub(crate) row_max: [f32; 2],
    pub(crate) row_sum: [f32; 2],
}

impl Cta<'_> {
    /// Issues the copy of K block `j` into K stage `stage`.
    #[inline(always)]
    unsafe fn load_k<const D: usize, const BN: usize>(&self, j: usize, stage: usize) {
        self.load_kv_block::<D, BN>(self.p.k, &self.p.k_strides, self.k_s, j, stage);
    }

    /// Issues the copy of V block `j` into V stage `stage`.
    #[inline(always)]
    unsafe fn load_v<const D: usize, const BN: usize>(&self, j: usize, stage: usize) {
        self.load_kv_block::<D, BN>(self.p.v, &self.p.v_strides, self.v_s, j, stage);
    }

    /// Block `j` (keys `j BN ..` of this sequence) of K or V into stage `stage` of its tiles.
    #[inline(always)]
    unsafe fn load_kv_block<const D: usize, const BN: usize>(
        &self,
        src: u64,
        strides: &Strides,
        tiles: u32,
        j: usize,
        stage: usize,
    ) {
        let dst = tiles + (stage * self.kv_bytes) as u32;
        let rows = (self.k_start + j * BN, self.k_start + self.n_k);
        // (The thread index reread, so that the copy offsets are recomputed per block rather than
        // held in registers across the loop: without it the 192-row dropout tiles spill 68 B,
        // not 44. The d = 128 dropout build was 1-2% slower with it (call `s17c3`): not there.)
        let tid = if self.reread_tid { thread_idx_x_reread() as usize } else { self.tid };
        let (b, h, head_dim, threads) = (self.b, self.h_kv, self.head_dim, self.threads);
        if !copy_full_tile_sw128::<D>(src, strides, b, h, rows.0, rows.1, BN, head_dim, dst, tid, threads) {
            copy_tile_sw128::<D>(src, strides, b, h, rows.0, rows.1, BN, head_dim, dst, tid, threads);
        }
    }

    /// Issues (without waiting) `S = Q K_j^T`: D / 16 SS MMAs, the first ignoring the incoming
    /// accumulators (scale_d = 0). The caller fences registers before and commits after.
    #[inline(always)]
    pub(crate) unsafe fn issue_s<E: WgmmaElement, const D: usize, const BM: usize, const BN: usize>(
        &self,
        s: &mut [f32; MAX_S],
        stage: usize,
    ) {
        let k_stage = self.k_desc + ((stage * self.kv_bytes) >> 4) as u64;
        let mut kk = 0;
        while kk < D / 16 {
            wgmma_ss::<E, BN>(s, self.q_desc + k_major_step(BM, kk), k_stage + k_major_step(BN, kk), (kk > 0) as u32);
            kk += 1;
        }
    }

    /// Issues (without waiting) `O += P V_j`: BN / 16 RS MMAs.
    #[inline(always)]
    pub(crate) unsafe fn issue_pv<E: WgmmaElement, const D: usize, const BN: usize>(
        &self,
        acc_o: &mut [f32; MAX_O],
        p_frag: &[[u32; 4]; MAX_KV],
        stage: usize,
    ) {
        let v_stage = self.v_desc + ((stage * self.kv_bytes) >> 4) as u64;
        // (Pointer casts: the halves as the wrappers' arrays, no bounds-check panic path.)
        let lo = &mut *(acc_o.as_mut_ptr() as *mut [f32; 64]);
        let hi = &mut *(acc_o.as_mut_ptr().add(64) as *mut [f32; 64]);
        let mut kk = 0;
        while kk < BN / 16 {
            if D <= 128 {
                wgmma_rs::<E, D>(lo, p_frag[kk], v_stage + mn_major_step(kk), 1);
            } else {
                // D = 256: two n128 MMAs; columns 128.. (registers 64..) start at V's column
                // block 2, BN rows of 128 bytes per block further.
                wgmma_rs::<E, 128>(lo, p_frag[kk], v_stage + mn_major_step(kk), 1);
                wgmma_rs::<E, 128>(hi, p_frag[kk], v_stage + mn_major_step(kk) + ((2 * BN * 128) >> 4) as u64, 1);
            }
            kk += 1;
        }
    }

    /// Masks the scores of block `j` that this thread's rows must not see, only where the block
    /// crosses the sequence end or (causal) the diagonal of some row of this warp.
    /// `s[4 nt + e]`: row g + 8 (e / 2), column 8 nt + 2 t + e % 2 of the block.
    /// Masked builds: the window (and the sequence end), tested per element only in blocks not
    /// wholly visible to this warp's rows.
    #[inline(always)]
    pub(crate) fn mask<const BN: usize, const CAUSAL: bool, const MASKED: bool>(&self, s: &mut [f32; MAX_S], j: usize) {
        let (n_q, n_k, col0) = (self.n_q as i64, self.n_k, j * BN);
        if MASKED {
            let rows = (self.warp_first_row, self.warp_first_row + 16);
            if self.rules.all_visible(rows.0, rows.1, col0, col0 + BN) {
                return;
            }
            let mut half = 0;
            while half < 2 {
                let row = (self.warp_first_row + self.g + 8 * half) as i32;
                let mut nt = 0;
                while nt < BN / 8 {
                    let mut e = 0;
                    while e < 2 {
                        if !self.rules.visible(row, (col0 + nt * 8 + 2 * self.t + e) as i32) {
                            s[4 * nt + 2 * half + e] = f32::NEG_INFINITY;
                        }
                        e += 1;
                    }
                    nt += 1;
                }
                half += 1;
            }
            return;
        }
        let crosses_end = col0 + BN > n_k;
        let crosses_diag = CAUSAL && (col0 + BN - 1) as i64 > self.warp_first_row as i64 + n_k as i64 - n_q;
        if !(crosses_end || crosses_diag) {
            return;
        }
        let mut half = 0;
        while half < 2 {
            let last_key = (self.warp_first_row + self.g + 8 * half) as i64 + n_k as i64 - n_q;
            let mut nt = 0;
            while nt < BN / 8 {
                let mut e = 0;
                while e < 2 {
                    let col = col0 + nt * 8 + 2 * self.t + e;
                    if col >= n_k || (CAUSAL && col as i64 > last_key) {
                        s[4 * nt + 2 * half + e] = f32::NEG_INFINITY;
                    }
                    e += 1;
                }
                nt += 1;
            }
            half += 1;
        }
    }
}

impl Cta<'_> {
    /// Issues `S = Q K^T` from K stage `k_stage` and `O += P V` from V stage `v_stage` as two
    /// commit groups (S first, so `wgmma.wait_group 1` waits for S alone), every register operand
    /// fenced first. Returns S's accumulators, to be read after the wait.
    #[inline(always)]
    pub(crate) unsafe fn issue_s_and_pv<E: WgmmaElement, const D: usize, const BM: usize, const BN: usize>(
        &self,
        st: &mut RowState,
        p_frag: &mut [[u32; 4]; MAX_KV],
        k_stage: usize,
        v_stage: usize,
    ) -> [f32; MAX_S] {
        let mut s = [0.0f32; MAX_S];
        fence_regs_f32_prefix(&mut s, BN / 2);
        fence_regs_f32_prefix(&mut st.acc_o, D / 2);
        fence_p(p_frag, BN / 16);
        wgmma_fence();
        self.issue_s::<E, D, BM, BN>(&mut s, k_stage);
        wgmma_commit_group();
        self.issue_pv::<E, D, BN>(&mut st.acc_o, p_frag, v_stage);
        wgmma_commit_group();
        s
    }

    /// After the wait for the previous P V: O (fenced) rescaled by the block's `alpha`, and its
    /// softmaxed S packed into the next P (dropped elements cleared with `dropped`).
    #[inline(always)]
    pub(crate) fn next_p<E: WgmmaElement, const D: usize, const BN: usize, const DROPOUT: bool>(
        &self,
        st: &mut RowState,
        p_frag: &mut [[u32; 4]; MAX_KV],
        s: &[f32; MAX_S],
        (alpha, rescale): ([f32; 2], bool),
        dropped: &[[u32; 2]; MAX_FLAG_WORDS],
    ) {
        fence_regs_f32_prefix(&mut st.acc_o, D / 2);
        fence_p(p_frag, BN / 16);
        rescale_o::<D>(&mut st.acc_o, alpha, rescale);
        *p_frag = pack_p::<E, BN>(s);
        if DROPOUT {
            drop_packed::<BN, false, MAX_FLAG_WORDS>(p_frag, dropped, (self.g % 2) as u32);
        }
    }

    /// The last P V, from V stage `v_stage`, issued and waited for.
    #[inline(always)]
    pub(crate) unsafe fn last_pv<E: WgmmaElement, const D: usize, const BN: usize>(
        &self,
        st: &mut RowState,
        p_frag: &mut [[u32; 4]; MAX_KV],
        v_stage: usize,
    ) {
        fence_regs_f32_prefix(&mut st.acc_o, D / 2);
        fence_p(p_frag, BN / 16);
        wgmma_fence();
        self.issue_pv::<E, D, BN>(&mut st.acc_o, p_frag, v_stage);
        wgmma_commit_group();
        wgmma_wait_group::<0>();
        fence_regs_f32_prefix(&mut st.acc_o, D / 2);
    }

    /// Drop flags of block `j` for this thread's rows: one Philox call per lane per 32 keys
    /// (`Dropout::s_bits`), computed after the softmax's row maxima; ptxas interleaves the ten
    /// multiply rounds with the exponentials (see `pipelined_loop` for where that lands).
    /// `anchor` (zero at run time) is added to the rows: the rounds cannot start before it is
    /// known.
    #[inline(always)]
    pub(crate) unsafe fn drop_flags<const BN: usize>(&self, j: usize, anchor: u32) -> [[u32; 2]; MAX_FLAG_WORDS] {
        let mut dropped = [[0u32; 2]; MAX_FLAG_WORDS];
        let row16 = self.warp_first_row + anchor as usize;
        let mut kp = 0;
        while kp < BN / 32 {
            dropped[kp] = self.dropout.s_bits(row16, j * BN + 32 * kp, 4 * self.g + self.t);
            kp += 1;
        }
        dropped
    }
}

/// Online softmax of one block for this thread's rows (the 4 lanes of a quad share rows g and
/// g + 8): updates the row max and partial row sum, replaces each score by
/// `p = exp2(s * scale_log2 - m * scale_log2)` (one FFMA feeding MUFU.EX2), and returns the
/// factors `alpha = 2^(m_old - m_new)` O must be scaled by, and whether any is not 1.
#[inline(always)]
pub(crate) fn softmax<const BN: usize>(s: &mut [f32; MAX_S], st: &mut RowState, scale_log2: f32) -> ([f32; 2], bool) {
    let mut alpha = [1.0f32; 2];
    let mut rescale = false;
    let mut half = 0;
    while half < 2 {
        let mut mx = f32::NEG_INFINITY;
        let mut nt = 0;
        while nt < BN / 8 {
            mx = mx.max(s[4 * nt + 2 * half]).max(s[4 * nt + 2 * half + 1]);
            nt += 1;
        }
        mx = mx.max(unsafe { shfl_xor_f32(mx, 1) });
        mx = mx.max(unsafe { shfl_xor_f32(mx, 2) });
        let m_new = st.row_max[half].max(mx);
        // NaN guard: while every score of the row is masked, m_new is -inf and
        // (-inf) - (-inf) would be NaN; measure from 0 then (every p is 2^-inf = 0).
        let m_scaled = if m_new == f32::NEG_INFINITY { 0.0 } else { m_new * scale_log2 };
        let a = ex2(st.row_max[half] * scale_log2 - m_scaled);
        alpha[half] = a;
        rescale |= a != 1.0;
        st.row_max[half] = m_new;
        let mut sum = st.row_sum[half] * a;
        let mut nt = 0;
        while nt < BN / 8 {
            let p0 = ex2(fma(s[4 * nt + 2 * half], scale_log2, -m_scaled));
            let p1 = ex2(fma(s[4 * nt + 2 * half + 1], scale_log2, -m_scaled));
            s[4 * nt + 2 * half] = p0;
            s[4 * nt + 2 * half + 1] = p1;
            sum += p0 + p1;
            nt += 1;
        }
        st.row_sum[half] = sum;
        half += 1;
    }
    (alpha, rescale)
}

/// Bits that depend on every exponential of a block's softmax (through the row sums) and are
/// never all ones (the sums are non-negative): `wgmma_wait_group_after`'s argument.
#[inline(always)]
pub(crate) fn row_sums_done(st: &RowState) -> u32 {
    st.row_sum[0].to_bits() ^ st.row_sum[1].to_bits()
}

/// Bits that depend on every drop-flag word of a block and are never all ones at run time: the
/// words without their top bit, which is `dropout.zero_after(1) << 31` instead (zero at run time;
/// a constant zero would let ptxas prove the pin's predicate false and drop it):
/// `wgmma_wait_group_after`'s argument.
#[inline(always)]
fn flag_bits<const BN: usize>(dropped: &[[u32; 2]; MAX_FLAG_WORDS], dropout: &Dropout) -> u32 {
    let mut bits = 0;
    let mut kp = 0;
    while kp < BN / 32 {
        bits ^= dropped[kp][0] ^ dropped[kp][1];
        kp += 1;
    }
    (bits & 0x7fff_ffff) | (dropout.zero_after(1) << 31)
}

/// P (f32, accumulator layout) -> 16-bit A fragments of P V: k-step k takes 8-column chunk 2k
/// for a0 (row g) / a1 (row g + 8) and chunk 2k + 1 for a2 / a3. (The backward packs P^T and
/// dS^T the same way.)
#[inline(always)]
pub(crate) fn pack_p<E: WgmmaElement, const BN: usize>(s: &[f32; MAX_S]) -> [[u32; 4]; MAX_KV] {
    let mut p_frag = [[0u32; 4]; MAX_KV];
    let mut nt = 0;
    while nt < BN / 8 {
        p_frag[nt / 2][(nt % 2) * 2] = E::pack2(s[4 * nt], s[4 * nt + 1]);
        p_frag[nt / 2][(nt % 2) * 2 + 1] = E::pack2(s[4 * nt + 2], s[4 * nt + 3]);
        nt += 1;
    }
    p_frag
}

/// Dropout of a block's packed weights (after the softmax summed them): each packed pair (two
/// keys of one row, `pack_p`'s layout) is ANDed with the complement of a `prmt` of its two drop
/// flags (0xffff per dropped value): one `prmt` and one LOP3 per two weights, where a test and
/// an FSEL per weight cost four. `drop[kp]` holds the flags of keys `32 kp..`
/// ([`Dropout::s_bits`]; `TRANSPOSED`: of queries, [`Dropout::st_bits`], for the backward's
/// P^T); `odd = g % 2`. The 1 / keep-probability rescale is left to the caller (folded into the
/// output scale).
#[inline(always)]
pub(crate) fn drop_packed<const BN: usize, const TRANSPOSED: bool, const N: usize>(
    p_frag: &mut [[u32; 4]; MAX_KV],
    drop: &[[u32; 2]; N],
    odd: u32,
) {
    let mut nt = 0;
    while nt < BN / 8 {
        let (kp, upper, ntpar) = (nt / 4, (nt % 4) / 2 == 1, (nt % 2) as u32);
        let flags = [half_flags(drop[kp][0], odd, upper), half_flags(drop[kp][1], odd, upper)];
        let mut half = 0;
        while half < 2 {
            let byte = if TRANSPOSED { 2 * ntpar + half } else { 2 * half + ntpar };
            let dropped = prmt_b32(flags[0], flags[1], pair_mask_selector(byte));
            p_frag[nt / 2][(nt % 2) * 2 + half as usize] &= !dropped;
            half += 1;
        }
        nt += 1;
    }
}

/// O *= alpha, skipped when no row max of the warp moved (alpha is then exactly 1 on every lane,
/// so skipping changes no bit; after the first blocks the max rarely moves). The vote keeps the
/// branch warp-uniform.
#[inline(always)]
pub(crate) fn rescale_o<const D: usize>(acc_o: &mut [f32; MAX_O], alpha: [f32; 2], rescale: bool) {
    if unsafe { vote_any(rescale) } {
        let mut dt = 0;
        while dt < D / 8 {
            acc_o[4 * dt] *= alpha[0];
            acc_o[4 * dt + 1] *= alpha[0];
            acc_o[4 * dt + 2] *= alpha[1];
            acc_o[4 * dt + 3] *= alpha[1];
            dt += 1;
        }
    }
}

/// Register operands of an MMA batch pass through [`fence_regs_f32`] / [`fence_regs_u32`] before
/// its `wgmma.fence`, so LLVM keeps their last writes above it.
#[inline(always)]
pub(crate) fn fence_p(p_frag: &mut [[u32; 4]; MAX_KV], k_steps: usize) {
    let mut kk = 0;
    while kk < k_steps {
        fence_regs_u32(&mut p_frag[kk]);
        kk += 1;
    }
}

/// The forward; `PIPELINED` selects the main loop (see [`serial_loop`] and [`pipelined_loop`]).
#[inline(always)]
pub unsafe fn forward_wgmma<
    E: WgmmaElement,
    const D: usize,
    const BM: usize,
    const BN: usize,
    const PIPELINED: bool,
    const CAUSAL: bool,
    const MASKED: bool,
    const DROPOUT: bool,
>(
    p: &ForwardParams,
) {
    let cfg = WgmmaForwardConfig { head_dim: D, block_m: BM, block_n: BN, pipelined: PIPELINED };
    const {
        assert!(WgmmaForwardConfig { head_dim: D, block_m: BM, block_n: BN, pipelined: PIPELINED }.is_valid());
        assert!(BN / 2 <= MAX_S && D / 2 <= MAX_O && BN / 16 <= MAX_KV);
        // Masked builds (windows, block masks, packed batches): pipelined, causal as a window.
        // (Query tiles that do not divide the block-mask blocks, 192 rows, take no block mask:
        // the host runs those calls on other tiles, `WgmmaForwardConfig::takes_block_masks`.)
        assert!(!MASKED || (PIPELINED && !CAUSAL && BLOCK_MASK_SIZE % BN == 0));
        assert!(MASKED || !DROPOUT);
    };
    if MASKED && cfg.threads() == 384 {
        // Three warpgroups: ptxas must keep to 65536 / 384 = 168 registers, which the masked
        // builds (255 registers at two warpgroups) would otherwise exceed.
        declare_max_threads::<384>();
    }
    if BM == 64 && !MASKED {
        // The 64-row tiles (one warpgroup) are there to put three CTAs on an SM (72 KB of shared
        // memory each at d = 64): 65536 / (3 x 128) registers a thread. The full-tile copies took
        // the causal build from 168 to 191 (two CTAs per SM; causal N = 512 5% slower, `s17c1`).
        declare_max_registers::<168>();
    }
    let tid = _thread_idx_x() as usize;
    let wg = tid / 128; // warpgroup: query rows 64 wg .. 64 wg + 63 of the tile
    let warp = (tid % 128) / 32; // warp within the warpgroup: rows 16 warp .. 16 warp + 15 of those
    let lane = tid % 32;
    // Causal: the last query blocks see the most keys; launching them first keeps the heaviest
    // CTAs out of the tail wave.
    let m_block = if CAUSAL || MASKED { p.seqlen_q.div_ceil(BM as u32) - 1 - _block_idx_x() } else { _block_idx_x() };
    // Causal: the tiles end at the last row, so a partial tile is the first (rows from -shift:
    // padding rows, zero-filled, masked, never stored), where it sees the fewest keys, not the
    // last, which sees them all. Rows are then usize values that wrap below 0 (release
    // arithmetic wraps; every use either casts to i64 or compares against n_q, which a wrapped
    // row exceeds).
    let shift = if CAUSAL { p.seqlen_q.div_ceil(BM as u32) as usize * BM - p.seqlen_q as usize } else { 0 };
    let row0 = (m_block as usize * BM).wrapping_sub(shift);
    let h = _block_idx_y() as usize;
    let b = _block_idx_z() as usize;
    // heads_kv divides heads (validated on the host); max(1) keeps core's division panic out.
    let group = p.group();
    let seq = Sequence::for_build::<MASKED>(&p.mask, b, p.seqlen_q, p.seqlen_k);
    let (n_q, n_k) = (seq.n_q, seq.n_k);
    if MASKED && row0 >= n_q {
        return; // a shorter entry of a packed batch
    }

    let kv_bytes = cfg.tile_bytes(BN);
    let q_s = aligned_smem_base();
    let k_s = q_s + cfg.tile_bytes(BM) as u32;
    let v_s = k_s + (WgmmaForwardConfig::STAGES * kv_bytes) as u32;
    // Descriptors of k-step 0 of stage 0; k-steps and stages move the start address only.
    let (k_lbo, k_sbo) = sw128_k_major_strides();
    let (v_lbo, v_sbo) = sw128_mn_major_strides(BN);
    let cta = Cta {
        p,
        tid,
        threads: cfg.threads(),
        b,
        h_kv: h / group,
        n_q,
        n_k,
        head_dim: p.head_dim as usize,
        g: lane / 4,
        t: lane % 4,
        warp_first_row: row0 + wg * 64 + warp * 16,
        q_start: seq.q_start,
        k_start: seq.k_start,
        rules: ScoreRules::new(&p.mask, b, h, &seq),
        dropout: if DROPOUT { Dropout::new(&p.mask, b, h, p.heads) } else { Dropout::off() },
        scale_log2: p.scale_log2,
        k_s,
        v_s,
        kv_bytes,
        reread_tid: !(DROPOUT && D > 64),
        // This warpgroup's 64 rows of Q start at row 64 wg of column block 0 (8 atoms per 64 rows).
        q_desc: smem_desc(q_s + (wg * 64 * 128) as u32, k_lbo, k_sbo, SWIZZLE_128B),
        k_desc: smem_desc(k_s, k_lbo, k_sbo, SWIZZLE_128B),
        v_desc: smem_desc(v_s, v_lbo, v_sbo, SWIZZLE_128B),
    };

    // Bottom-right causal alignment: row i sees keys j <= i + n_k - n_q; the tile's last row
    // bounds what any row of it sees, so later blocks are never loaded.
    // Masked builds: the keys the window shows these rows, the blocks the block mask keeps.
    let (first_block, n_blocks) = if MASKED {
        let (lo, hi) = cta.rules.key_range(row0, (row0 + BM).min(n_q));
        (lo / BN, hi.div_ceil(BN))
    } else {
        let kv_end =
            if CAUSAL { ((row0 + BM) as i64 + n_k as i64 - n_q as i64).clamp(0, n_k as i64) as usize } else { n_k };
        (0, kv_end.div_ceil(BN))
    };
    let blocks = BlockMask::new(&p.mask, h);
    // The scan's answer is made warp-uniform to ptxas (`warp_uniform_u32`) in the builds without
    // dropout: it ends in a ballot, which ptxas takes as per-thread, so the loop's trip count was
    // divergent and every K / V stage descriptor was rebuilt in vector registers per MMA (d = 128
    // loop 1212 -> 1144 instructions; block-sparse forward 2.3-2.4% faster at densities 0.5 /
    // 0.25 / 0.1, call s19c2). The dropout builds keep the per-thread answer: uniform, their loop
    // is shorter too (1519 -> 1458) but the d = 128 one 8-9% slower (6.22 against 5.68 ms at N =
    // 16k, calls s19c3 / s19c4; why, not looked into). Without a block mask they skip the scan
    // instead (`dense_dropout` below).
    let kept_from = |j: usize| {
        if MASKED && cfg.takes_block_masks() {
            let kept = blocks.first_active_key_block(row0, j, n_blocks, BN, lane);
            if DROPOUT {
                kept
            } else {
                warp_uniform_u32(kept as u32) as usize
            }
        } else {
            j
        }
    };
    let first = kept_from(first_block);

    // Prologue: group 0 = Q + K_first, group 1 = V_first.
    let (q_row, q_end) = (seq.q_start + row0, seq.q_start + n_q);
    if !copy_full_tile_sw128::<D>(p.q, &p.q_strides, b, h, q_row, q_end, BM, cta.head_dim, q_s, tid, cta.threads) {
        copy_tile_sw128::<D>(p.q, &p.q_strides, b, h, q_row, q_end, BM, cta.head_dim, q_s, tid, cta.threads);
    }
    if first < n_blocks {
        cta.load_k::<D, BN>(first, 0);
    }
    cp_async_commit_group();
    if first < n_blocks {
        cta.load_v::<D, BN>(first, 0);
    }
    cp_async_commit_group();

    let mut st = RowState { acc_o: [0.0; MAX_O], row_max: [f32::NEG_INFINITY; 2], row_sum: [0.0; 2] };
    if PIPELINED {
        // A warpgroup with no row of the sequence (past its end in the last tile of a sequence
        // that does not fill it; causal: before its start) runs the loop's copies and barriers
        // only, leaving the tensor cores to the others. (The choice is made once, above the loop: a branch around the MMAs inside
        // it made ptxas serialise every wgmma.)
        // (Signed: a shifted causal tile's first rows are negative, see `shift`.)
        let wg_first = row0.wrapping_add(wg * 64) as isize;
        let next = |j: usize| kept_from(j + 1);
        // The dropout builds without a block mask (a CTA-uniform test of a parameter): the next
        // block is j + 1, the same on every lane to ptxas, in a loop of its own. With the scan's
        // per-thread answer the trip count was divergent, so the Q / K / V descriptors sat in 16
        // vector registers, each R2UR'd per MMA (loop 1513 -> 1419 instructions at d = 128).
        // Measured with cubins of both (calls s20c1, s20c2): the d = 128 dropout forward 1.6%
        // faster at N = 16k (5.61 against 5.70 ms), 0.5-1.4% at 1k / 4k, causal within +-1%;
        // unlike the redux.sync answer (above), which was 8-9% slower. The block-mask builds
        // keep `next` (both loops are correct for either; gpu_masks ran on this code).
        let dense_dropout = MASKED && DROPOUT && cfg.takes_block_masks() && blocks.is_none();
        if wg_first + 64 > 0 && wg_first < n_q as isize {
            if dense_dropout {
                let next_dense = |j: usize| j + 1;
                pipelined_loop::<E, D, BM, BN, CAUSAL, MASKED, DROPOUT, true>(
                    &cta, &mut st, first, n_blocks, next_dense,
                );
            } else {
                pipelined_loop::<E, D, BM, BN, CAUSAL, MASKED, DROPOUT, true>(&cta, &mut st, first, n_blocks, next);
            }
        } else {
            pipelined_loop::<E, D, BM, BN, CAUSAL, MASKED, DROPOUT, false>(&cta, &mut st, first, n_blocks, next);
        }
    } else {
        serial_loop::<E, D, BM, BN, CAUSAL>(&cta, &mut st, n_blocks);
    }
    // Every copy has landed (with no block at all, Q's copy may still be in flight, issued by
    // any thread): wait and barrier before its rows are reused. No other warp reads this warp's
    // rows after that (every MMA reading Q has completed): a warp barrier suffices in there.
    cp_async_wait_group::<0>();
    _syncthreads();
    write_output::<E, D, BM, MASKED, DROPOUT>(&cta, &st, q_s, row0, h, wg * 64 + warp * 16, lane, &seq);
}

/// The first schedule: per block, `S = Q K_j^T` and wait, softmax, `O += P V_j` and wait. Each
/// warpgroup's tensor cores idle during its softmax (the other warpgroup may fill the gap).
/// Two CTA barriers per block (K_j landed; V_j landed).
#[inline(always)]
unsafe fn serial_loop<E: WgmmaElement, const D: usize, const BM: usize, const BN: usize, const CAUSAL: bool>(
    cta: &Cta,
    st: &mut RowState,
    n_blocks: usize,
) {
    let mut j = 0;
    while j < n_blocks {
        cp_async_wait_group::<1>(); // K_j (and Q) have landed for this thread ...
        fence_proxy_async_shared(); // ... are visible to wgmma's async proxy ...
        _syncthreads(); // ... for every thread; every S and P V MMA of block j - 1 has completed.
        if j + 1 < n_blocks {
            cta.load_k::<D, BN>(j + 1, (j + 1) % 2); // into the stage K_{j-1} used
        }
        cp_async_commit_group();

        let mut s = [0.0f32; MAX_S];
        fence_regs_f32_prefix(&mut s, BN / 2);
        wgmma_fence();
        cta.issue_s::<E, D, BM, BN>(&mut s, j % 2);
        wgmma_commit_group();
        wgmma_wait_group::<0>();
        fence_regs_f32_prefix(&mut s, BN / 2);

        cta.mask::<BN, CAUSAL, false>(&mut s, j);
        let (alpha, rescale) = softmax::<BN>(&mut s, st, cta.scale_log2);
        let mut p_frag = pack_p::<E, BN>(&s);
        rescale_o::<D>(&mut st.acc_o, alpha, rescale);

        cp_async_wait_group::<1>(); // V_j has landed (K_{j+1} may still be in flight) ...
        fence_proxy_async_shared();
        _syncthreads(); // ... for every thread; V stage 1 - j%2 is no longer read.
        if j + 1 < n_blocks {
            cta.load_v::<D, BN>(j + 1, (j + 1) % 2);
        }
        cp_async_commit_group();

        fence_regs_f32_prefix(&mut st.acc_o, D / 2);
        fence_p(&mut p_frag, BN / 16);
        wgmma_fence();
        cta.issue_pv::<E, D, BN>(&mut st.acc_o, &p_frag, j % 2);
        wgmma_commit_group();
        wgmma_wait_group::<0>();
        fence_regs_f32_prefix(&mut st.acc_o, D / 2);
        j += 1;
    }
}

/// FlashAttention-3's intra-warpgroup pipelining: in iteration j, `S_j = Q K_j^T` and
/// `O += P_{j-1} V_{j-1}` are issued back to back; the softmax of S_j (exponentials in place, in
/// f32) runs while the P V MMAs are still executing; only then are O rescaled by alpha_j and
/// S_j packed into P_j (P_{j-1}'s registers are read by the in-flight MMAs until the wait).
/// The rescale is exact: `O_j = alpha_j (O_{j-1} + P_{j-1} V_{j-1})` whichever order.
///
/// Loads: K_{j+1} and V_j are issued at the top of iteration j (one CTA barrier per block):
/// K_{j+1} reuses K_{j-1}'s stage (S_{j-1} completed in iteration j - 1) and V_j reuses
/// V_{j-2}'s (P V_{j-2} completed in iteration j - 1).
///
/// Blocks run from `first` through `next(j)` while below `n_blocks` (plain builds: every block;
/// masked builds: the kept ones); stages alternate per processed block (`it`).
#[inline(always)]
unsafe fn pipelined_loop<
    E: WgmmaElement,
    const D: usize,
    const BM: usize,
    const BN: usize,
    const CAUSAL: bool,
    const MASKED: bool,
    const DROPOUT: bool,
    const COMPUTE: bool,
>(
    cta: &Cta,
    st: &mut RowState,
    first: usize,
    n_blocks: usize,
    next: impl Fn(usize) -> usize,
) {
    if first >= n_blocks {
        return;
    }
    // The first block: S alone. Groups in flight: [Q, K_first], [V_first].
    cp_async_wait_group::<1>(); // Q and K_first have landed for this thread ...
    fence_proxy_async_shared();
    _syncthreads(); // ... and for every thread.
    let second = next(first);
    if second < n_blocks {
        cta.load_k::<D, BN>(second, 1);
    }
    cp_async_commit_group(); // in flight: [V_first], [K_second]
    let mut p_frag = [[0u32; 4]; MAX_KV];
    if COMPUTE {
        let mut s = [0.0f32; MAX_S];
        fence_regs_f32_prefix(&mut s, BN / 2);
        wgmma_fence();
        cta.issue_s::<E, D, BM, BN>(&mut s, 0);
        wgmma_commit_group();
        // Dropout at d = 128: the first block's flags while its S is on the tensor cores
        // (nothing else is in flight yet), tied to a clock read after the issue so that ptxas
        // does not run the Philox rounds ahead of it, and the wait pinned after them. Causal
        // d = 128 at N = 1k / 4k 1.5-4% faster (call `s16c5`), others within noise; at d = 64
        // (192-row tiles, 4 B more of spills) N = 1k was 4% slower, so there the flags follow
        // the softmax as in every later block.
        let early_flags = DROPOUT && D > 64;
        let mut first_flags = [[0u32; 2]; MAX_FLAG_WORDS];
        if early_flags {
            first_flags = cta.drop_flags::<BN>(first, cta.dropout.zero_after(clock_lo()));
            wgmma_wait_group_after::<0>(flag_bits::<BN>(&first_flags, &cta.dropout), cta.k_s);
        } else {
            wgmma_wait_group::<0>();
        }
        fence_regs_f32_prefix(&mut s, BN / 2);
        cta.mask::<BN, CAUSAL, MASKED>(&mut s, first);
        // O is zero: alpha needs no application.
        let _ = softmax::<BN>(&mut s, st, cta.scale_log2);
        p_frag = pack_p::<E, BN>(&s);
        if DROPOUT {
            if !early_flags {
                first_flags = cta.drop_flags::<BN>(first, 0);
            }
            drop_packed::<BN, false, MAX_FLAG_WORDS>(&mut p_frag, &first_flags, (cta.g % 2) as u32);
        }
    }

    let mut j = second;
    let mut it = 1; // (plain builds: it == j, and only j is kept)
    while j < n_blocks {
        let it_now = if MASKED { it } else { j };
        // In flight: [V_prev], [K_j] (the last two groups): both are needed now.
        cp_async_wait_group::<0>();
        fence_proxy_async_shared();
        _syncthreads(); // every thread's copies are visible; S_prev and P V of the one before are complete
        let j_next = next(j);
        if j_next < n_blocks {
            cta.load_k::<D, BN>(j_next, (it_now + 1) % 2);
        }
        cp_async_commit_group();
        cta.load_v::<D, BN>(j, it_now % 2);
        cp_async_commit_group();

        if COMPUTE {
            let mut s = cta.issue_s_and_pv::<E, D, BM, BN>(st, &mut p_frag, it_now % 2, (it_now + 1) % 2);
            wgmma_wait_group::<1>(); // S_j is complete; the previous P V may still run
            fence_regs_f32_prefix(&mut s, BN / 2);
            cta.mask::<BN, CAUSAL, MASKED>(&mut s, j);
            let (alpha, rescale) = softmax::<BN>(&mut s, st, cta.scale_log2);
            // Dropout: block j's flags after its softmax. (ptxas hoists the wait below above both
            // in these builds, so they run after P V_{j-1} completes, the rounds interleaved with
            // the exponentials.) Before the wait for S_j (under both MMAs, the earlier place) the
            // Philox rounds ran ahead of the softmax, which the next block's MMAs wait for:
            // 1.26-1.32x plain there against 1.13-1.17x here at d = 128, 1.62-1.82x against
            // 1.47-1.66x at d = 64 (call `s9c6`, cubins of both; again in `s16c6`, the rounds
            // tied to a clock read after the issue as the first block's are: 7.6 against 6.3 ms
            // at d = 128, N = 16k). Block j + 1's flags computed here and carried spilled (40 B)
            // and gained nothing.
            let dropped = if DROPOUT { cta.drop_flags::<BN>(j, 0) } else { [[0; 2]; MAX_FLAG_WORDS] };
            // P V_{j-1} is complete: O and P_{j-1} are free. ptxas hoists this wait above the
            // softmax, so that nothing runs under P V_{j-1}, unless it is pinned after it
            // (`wgmma_wait_group_after`). Pinned, the plain forward is 2-6% faster at d = 128 and
            // 256 (calls `s16c1`, `s16c2`), the masked builds 3-5% (windows, packed batches), and
            // non-causal d = 64 0-4%; causal d = 64 lost 3-7%, and the dropout builds 5-8%
            // whether the Philox rounds ran before the wait (ptxas put them ahead of the
            // exponentials; tied to the exponentials, interleaved, still slower) or after it
            // (tied to O, `s16c3`), so those keep the hoisted wait. (Masked d = 64 unmeasured.)
            // Again in `s20c2`, pinned after the flags in the d = 128 dropout build with the
            // uniform trip count (255 registers, no spill, so not for want of registers): 11-12%
            // slower (6.32-6.39 against 5.60-5.72 ms at N = 16k).
            if !DROPOUT && (D > 64 || !CAUSAL && !MASKED) {
                wgmma_wait_group_after::<0>(row_sums_done(st), cta.k_s);
            } else {
                wgmma_wait_group::<0>();
            }
            cta.next_p::<E, D, BN, DROPOUT>(st, &mut p_frag, &s, (alpha, rescale), &dropped);
        }
        j = if MASKED { j_next } else { j + 1 };
        it += 1;
    }
    let last_stage = if MASKED { (it + 1) % 2 } else { (n_blocks + 1) % 2 };

    // The last P V. In flight: [K (empty)], [V_last].
    cp_async_wait_group::<0>();
    fence_proxy_async_shared();
    _syncthreads();
    if COMPUTE {
        cta.last_pv::<E, D, BN>(st, &mut p_frag, last_stage);
    }
}

/// Normalises O, stages it through this warp's own 16 rows of the Q tile (same swizzle:
/// conflict-free 4-byte writes), writes 16-byte chunks of the real columns, and the LSE (natural
/// log) once per row. `r_warp`: this warp's first row in the tile.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn write_output<
    E: WgmmaElement,
    const D: usize,
    const BM: usize,
    const MASKED: bool,
    const DROPOUT: bool,
>(
    cta: &Cta,
    st: &RowState,
    q_s: u32,
    row0: usize,
    h: usize,
    r_warp: usize,
    lane: usize,
    seq: &Sequence,
) {
    let p = cta.p;
    let (g, t, n_q) = (cta.g, cta.t, cta.n_q);
    let mut half = 0;
    while half < 2 {
        let mut l = st.row_sum[half];
        l += shfl_xor_f32(l, 1);
        l += shfl_xor_f32(l, 2);
        // A row with no visible key (causal, n_q > n_k) has l = 0: output 0, LSE -inf.
        let mut inv = if l > 0.0 { 1.0 / l } else { 0.0 };
        if DROPOUT {
            inv *= cta.dropout.scale; // 1 / keep probability, folded into the normalisation
        }
        let r_tile = r_warp + g + 8 * half;
        let mut dt = 0;
        while dt < D / 8 {
            let v = E::pack2(st.acc_o[4 * dt + 2 * half] * inv, st.acc_o[4 * dt + 2 * half + 1] * inv);
            st_shared_b32(q_s + (sw128_chunk_offset(BM, r_tile, dt) + 4 * t) as u32, v);
            dt += 1;
        }
        let row = row0 + r_tile;
        if t == 0 && row < n_q {
            let m = st.row_max[half];
            let lse = if l > 0.0 { LN2 * (m * cta.scale_log2 + lg2(l)) } else { f32::NEG_INFINITY };
            let index =
                if MASKED { seq.lse_index(&p.mask, cta.b, h, row) } else { (cta.b * p.heads as usize + h) * n_q + row };
            st_global_f32((p.lse as *mut f32).add(index), lse);
        }
        half += 1;
    }
    syncwarp();
    let chunks = cta.head_dim / 8; // only the real columns (head_dim is a multiple of 8)
    let mut idx = lane;
    while idx < 16 * chunks {
        let (r, c) = (idx / chunks, idx % chunks);
        let row = row0 + r_warp + r;
        if row < n_q {
            let v = ld_shared_v4_b32(q_s + sw128_chunk_offset(BM, r_warp + r, c) as u32);
            let dst =
                (p.o as *mut u16).add((p.o_strides.offset(cta.b, cta.q_start + row, h) + (c * 8) as u64) as usize);
            st_global_v4_b32(dst as *mut u8, v);
        }
        idx += 32;
    }
}
