//! The Hopper forward (sm_90a): FlashAttention's algorithm on warpgroup MMAs (`wgmma`).
//!
//! Per CTA (grid: query blocks x heads x batch), `BM / 64` warpgroups each own 64 query rows:
//! 1. Q (BM rows) and the first K and V blocks are copied to shared memory with `cp.async`, in
//!    the 128-byte swizzled layout of `smem_layout` (what `wgmma` descriptors read), K and V in
//!    separate commit groups; K and V are double-buffered (block j + 1 loads during block j).
//!    `cp.async` writes through the generic proxy and `wgmma` reads through the async proxy, so
//!    every thread runs `fence.proxy.async` after its copies land, before the CTA barrier.
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
//! This first version does not overlap the softmax with the MMAs inside a warpgroup; the two
//! warpgroups overlap each other only as the scheduler interleaves them.
//!
//! Register arrays are sized for the largest configuration and indexed only in loops with
//! constant bounds, which LLVM unrolls fully, so they live in registers.
use core::arch::nvptx::{_block_idx_x, _block_idx_y, _block_idx_z, _syncthreads, _thread_idx_x};

use crate::arch::sm80::{
    cp_async_cg_16, cp_async_commit_group, cp_async_wait_group, dynamic_smem_base, ex2, fma, ld_shared_v4_b32, lg2,
    shfl_xor_f32, st_global_f32, st_global_v4_b32, st_shared_b32, syncwarp, vote_any,
};
use crate::arch::sm90::{
    fence_proxy_async_shared, fence_regs_f32, fence_regs_u32, smem_desc, wgmma_commit_group, wgmma_fence,
    wgmma_wait_group, SWIZZLE_128B,
};
use crate::config::WgmmaForwardConfig;
use crate::element::WgmmaElement;
use crate::params::{ForwardParams, Strides};
use crate::smem_layout::{sw128_chunk_offset, sw128_k_major_strides, sw128_mn_major_strides};

const LN2: f32 = core::f32::consts::LN_2;
/// Register-array bounds: S accumulators (BN / 2), O accumulators (D / 2), k-steps of P V (BN / 16).
const MAX_S: usize = 64;
const MAX_O: usize = 64;
const MAX_KV: usize = 8;

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

#[inline(always)]
pub unsafe fn forward_wgmma<E: WgmmaElement, const D: usize, const BM: usize, const BN: usize, const CAUSAL: bool>(
    p: &ForwardParams,
) {
    let cfg = WgmmaForwardConfig { head_dim: D, block_m: BM, block_n: BN };
    const {
        assert!(WgmmaForwardConfig { head_dim: D, block_m: BM, block_n: BN }.is_valid());
        assert!(BN / 2 <= MAX_S && D / 2 <= MAX_O && BN / 16 <= MAX_KV);
    };
    let threads = cfg.threads();
    let kt_q = D / 16; // k-steps of Q K^T
    let kt_v = BN / 16; // k-steps of P V
    let nt_s = BN / 8; // 8-column chunks of S
    let dt_o = D / 8; // 8-column chunks of O

    let tid = _thread_idx_x() as usize;
    let wg = tid / 128; // warpgroup: query rows 64 wg .. 64 wg + 63 of the tile
    let warp = (tid % 128) / 32; // warp within the warpgroup: rows 16 warp .. 16 warp + 15 of those
    let lane = tid % 32;
    let (g, t) = (lane / 4, lane % 4);
    // Causal: the last query blocks see the most keys; launching them first keeps the heaviest
    // CTAs out of the tail wave.
    let m_block = if CAUSAL { p.seqlen_q.div_ceil(BM as u32) - 1 - _block_idx_x() } else { _block_idx_x() };
    let row0 = m_block as usize * BM;
    let h = _block_idx_y() as usize;
    let b = _block_idx_z() as usize;
    // heads_kv divides heads (validated on the host); max(1) keeps core's division panic out.
    let group = (p.heads / p.heads_kv.max(1)).max(1) as usize;
    let h_kv = h / group;
    let (n_q, n_k, head_dim) = (p.seqlen_q as usize, p.seqlen_k as usize, p.head_dim as usize);
    let scale_log2 = p.scale_log2;

    let kv_bytes = cfg.tile_bytes(BN);
    let q_s = aligned_smem_base();
    let k_s = q_s + cfg.tile_bytes(BM) as u32;
    let v_s = k_s + (WgmmaForwardConfig::STAGES * kv_bytes) as u32;

    // Bottom-right causal alignment: row i sees keys j <= i + n_k - n_q; the tile's last row
    // bounds what any row of it sees, so later blocks are never loaded.
    let kv_end =
        if CAUSAL { ((row0 + BM) as i64 + n_k as i64 - n_q as i64).clamp(0, n_k as i64) as usize } else { n_k };
    let n_blocks = kv_end.div_ceil(BN);

    // Prologue: group 0 = Q + K_0, group 1 = V_0.
    copy_tile_sw128::<D>(p.q, &p.q_strides, b, h, row0, n_q, BM, head_dim, q_s, tid, threads);
    if n_blocks > 0 {
        copy_tile_sw128::<D>(p.k, &p.k_strides, b, h_kv, 0, n_k, BN, head_dim, k_s, tid, threads);
    }
    cp_async_commit_group();
    if n_blocks > 0 {
        copy_tile_sw128::<D>(p.v, &p.v_strides, b, h_kv, 0, n_k, BN, head_dim, v_s, tid, threads);
    }
    cp_async_commit_group();

    // Descriptors of k-step 0 of stage 0; k-steps and stages move the start address only.
    let (k_lbo, k_sbo) = sw128_k_major_strides();
    let (v_lbo, v_sbo) = sw128_mn_major_strides(BN);
    // This warpgroup's 64 rows of Q start at row 64 wg of column block 0 (8 atoms per 64 rows).
    let q_desc = smem_desc(q_s + (wg * 64 * 128) as u32, k_lbo, k_sbo, SWIZZLE_128B);
    let k_desc = smem_desc(k_s, k_lbo, k_sbo, SWIZZLE_128B);
    let v_desc = smem_desc(v_s, v_lbo, v_sbo, SWIZZLE_128B);
    let stage_step = (kv_bytes >> 4) as u64;

    let mut acc_o = [0.0f32; MAX_O];
    // Running max (raw score units) and this lane's partial sum, for rows g and g + 8.
    let mut row_max = [f32::NEG_INFINITY; 2];
    let mut row_sum = [0.0f32; 2];
    // This warp's first row in the sequence.
    let warp_first_row = row0 + wg * 64 + warp * 16;

    let mut j = 0;
    while j < n_blocks {
        let stage = j % 2;
        let col0 = j * BN;
        cp_async_wait_group::<1>(); // K_j (and Q) have landed for this thread ...
        fence_proxy_async_shared(); // ... are visible to wgmma's async proxy ...
        _syncthreads(); // ... for every thread; every S and P V MMA of block j - 1 has completed.
        if j + 1 < n_blocks {
            let dst = k_s + ((1 - stage) * kv_bytes) as u32;
            copy_tile_sw128::<D>(p.k, &p.k_strides, b, h_kv, col0 + BN, n_k, BN, head_dim, dst, tid, threads);
        }
        cp_async_commit_group();

        // S = Q K_j^T. The first MMA ignores the incoming accumulators (scale_d = 0).
        let mut s = [0.0f32; MAX_S];
        let k_stage = k_desc + stage as u64 * stage_step;
        fence_regs_f32(&mut s);
        wgmma_fence();
        let mut kk = 0;
        while kk < kt_q {
            wgmma_ss::<E, BN>(&mut s, q_desc + k_major_step(BM, kk), k_stage + k_major_step(BN, kk), (kk > 0) as u32);
            kk += 1;
        }
        wgmma_commit_group();
        wgmma_wait_group::<0>();
        fence_regs_f32(&mut s);

        // Mask, only where this block crosses the sequence end or (causal) the diagonal of
        // some row of this warp. s[4 nt + e]: row g + 8 (e / 2), column 8 nt + 2 t + e % 2.
        let crosses_end = col0 + BN > n_k;
        let crosses_diag = CAUSAL && (col0 + BN - 1) as i64 > warp_first_row as i64 + n_k as i64 - n_q as i64;
        if crosses_end || crosses_diag {
            let mut half = 0;
            while half < 2 {
                let row = warp_first_row + g + 8 * half;
                let last_key = row as i64 + n_k as i64 - n_q as i64;
                let mut nt = 0;
                while nt < nt_s {
                    let mut e = 0;
                    while e < 2 {
                        let col = col0 + nt * 8 + 2 * t + e;
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

        // Online softmax per row (the 4 lanes of a quad share rows g and g + 8).
        let mut p_frag = [[0u32; 4]; MAX_KV];
        let mut alpha = [1.0f32; 2];
        let mut rescale = false;
        let mut half = 0;
        while half < 2 {
            let mut mx = f32::NEG_INFINITY;
            let mut nt = 0;
            while nt < nt_s {
                mx = mx.max(s[4 * nt + 2 * half]).max(s[4 * nt + 2 * half + 1]);
                nt += 1;
            }
            mx = mx.max(shfl_xor_f32(mx, 1));
            mx = mx.max(shfl_xor_f32(mx, 2));
            let m_new = row_max[half].max(mx);
            // NaN guard: while every score of the row is masked, m_new is -inf and
            // (-inf) - (-inf) would be NaN; measure from 0 then (every p is 2^-inf = 0).
            let m_scaled = if m_new == f32::NEG_INFINITY { 0.0 } else { m_new * scale_log2 };
            let a = ex2(row_max[half] * scale_log2 - m_scaled);
            alpha[half] = a;
            rescale |= a != 1.0;
            row_max[half] = m_new;
            let mut sum = row_sum[half] * a;
            let mut nt = 0;
            while nt < nt_s {
                // exp2(s * scale_log2 - m * scale_log2): one FFMA feeding MUFU.EX2.
                let p0 = ex2(fma(s[4 * nt + 2 * half], scale_log2, -m_scaled));
                let p1 = ex2(fma(s[4 * nt + 2 * half + 1], scale_log2, -m_scaled));
                sum += p0 + p1;
                // Accumulator layout -> A layout of P V's k-step nt / 2: chunk 2k gives a0 (row g)
                // / a1 (row g + 8), chunk 2k + 1 gives a2 / a3.
                p_frag[nt / 2][(nt % 2) * 2 + half] = E::pack2(p0, p1);
                nt += 1;
            }
            row_sum[half] = sum;
            half += 1;
        }

        // O *= alpha, skipped when no row max of the warp moved (alpha is then exactly 1 on
        // every lane, so skipping changes no bit). The vote keeps the branch warp-uniform.
        if vote_any(rescale) {
            let mut dt = 0;
            while dt < dt_o {
                acc_o[4 * dt] *= alpha[0];
                acc_o[4 * dt + 1] *= alpha[0];
                acc_o[4 * dt + 2] *= alpha[1];
                acc_o[4 * dt + 3] *= alpha[1];
                dt += 1;
            }
        }

        cp_async_wait_group::<1>(); // V_j has landed (K_{j+1} may still be in flight) ...
        fence_proxy_async_shared();
        _syncthreads(); // ... for every thread; V stage 1 - j%2 is no longer read.
        if j + 1 < n_blocks {
            let dst = v_s + ((1 - stage) * kv_bytes) as u32;
            copy_tile_sw128::<D>(p.v, &p.v_strides, b, h_kv, col0 + BN, n_k, BN, head_dim, dst, tid, threads);
        }
        cp_async_commit_group();

        // O += P V_j
        let v_stage = v_desc + stage as u64 * stage_step;
        fence_regs_f32(&mut acc_o);
        let mut kk = 0;
        while kk < kt_v {
            fence_regs_u32(&mut p_frag[kk]);
            kk += 1;
        }
        wgmma_fence();
        let mut kk = 0;
        while kk < kt_v {
            wgmma_rs::<E, D>(&mut acc_o, p_frag[kk], v_stage + mn_major_step(kk), 1);
            kk += 1;
        }
        wgmma_commit_group();
        wgmma_wait_group::<0>();
        fence_regs_f32(&mut acc_o);
        j += 1;
    }

    // Epilogue. Every copy has landed (with no block at all, Q's copy may still be in flight,
    // issued by any thread: wait and barrier before its rows are reused for staging O).
    cp_async_wait_group::<0>();
    _syncthreads();
    // Complete the row sums across the quad, normalise, stage O through this warp's own rows of
    // the Q tile (no other warp reads them: a warp barrier suffices), then 16-byte stores.
    let mut half = 0;
    while half < 2 {
        let mut l = row_sum[half];
        l += shfl_xor_f32(l, 1);
        l += shfl_xor_f32(l, 2);
        // A row with no visible key (causal, n_q > n_k) has l = 0: output 0, LSE -inf.
        let inv = if l > 0.0 { 1.0 / l } else { 0.0 };
        let r_tile = wg * 64 + warp * 16 + g + 8 * half;
        let mut dt = 0;
        while dt < dt_o {
            let v = E::pack2(acc_o[4 * dt + 2 * half] * inv, acc_o[4 * dt + 2 * half + 1] * inv);
            st_shared_b32(q_s + (sw128_chunk_offset(BM, r_tile, dt) + 4 * t) as u32, v);
            dt += 1;
        }
        let row = row0 + r_tile;
        if t == 0 && row < n_q {
            let lse = if l > 0.0 { LN2 * (row_max[half] * scale_log2 + lg2(l)) } else { f32::NEG_INFINITY };
            st_global_f32((p.lse as *mut f32).add((b * p.heads as usize + h) * n_q + row), lse);
        }
        half += 1;
    }
    syncwarp();
    let chunks = head_dim / 8; // only the real columns (head_dim is a multiple of 8)
    let mut idx = lane;
    while idx < 16 * chunks {
        let r = idx / chunks;
        let c = idx % chunks;
        let r_tile = wg * 64 + warp * 16 + r;
        let row = row0 + r_tile;
        if row < n_q {
            let v = ld_shared_v4_b32(q_s + sw128_chunk_offset(BM, r_tile, c) as u32);
            let dst = (p.o as *mut u16).add((p.o_strides.offset(b, row, h) + (c * 8) as u64) as usize);
            st_global_v4_b32(dst as *mut u8, v);
        }
        idx += 32;
    }
}
