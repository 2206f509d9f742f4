//! The scalar (CUDA-core) backward: the reference path of the backward, with no atomics, so its
//! results are bit-identical from run to run.
//!
//! With `P = exp(S - LSE)` recomputed from Q, K and the forward's LSE (never stored):
//! - preprocessing: `D_i = rowsum(dO_i * O_i)` and `LSE_i * log2(e)` (one warp per query row;
//!   shared with the tensor-core backward);
//! - dQ kernel, one thread per query row: `dQ_i = scale * sum_j P_ij (dO_i . V_j - D_i) K_j`;
//! - dK/dV kernel, one thread per key row, one pass per output (one D-float accumulator per
//!   thread): `dV_j = sum_i P_ij dO_i`, `dK_j = scale * sum_i P_ij (dO_i . V_j - D_i) Q_i`,
//!   summed over the query heads that share the K/V head (GQA), in a fixed order.
//! Scores stay in the log2 domain: `P = 2^(S * scale * log2 e - LSE * log2 e)`.
use core::arch::nvptx::{_block_idx_x, _block_idx_y, _block_idx_z, _syncthreads, _thread_idx_x};

use crate::arch::sm80::{
    dynamic_smem_base, ex2, fma, ld_global_nc_v2_b32, ld_shared_f32, shfl_xor_f32, st_global_b32, st_global_f32,
    st_global_v4_b32, st_shared_f32,
};
use crate::config::ScalarBackwardConfig as Cfg;
use crate::element::Element;
use crate::masking::Sequence;
use crate::params::BackwardParams;
use crate::scalar_tile::{axpy, dot, load_tile_f32};

const BM: usize = Cfg::BLOCK_M;
const BN: usize = Cfg::BLOCK_N;
const THREADS: usize = Cfg::THREADS;
const LOG2E: f32 = core::f32::consts::LOG2_E;

/// `D_i = rowsum(dO_i * O_i)` in f32; one warp per row (lanes take 4 adjacent columns, 8-byte
/// loads, 128 columns apart, then a butterfly sum). Grid: (ceil(stat_pitch / warps), heads,
/// batch): padding rows are written too. With `p.dq_accum` set it also zeroes the atomic dQ
/// accumulator, `acc_dim` f32 per row (whatever its layout, the rows' chunks cover it), so no
/// separate memset pass over it; with `p.dq_done` set, the dK/dV kernel's counters too.
#[inline(always)]
pub unsafe fn preprocess<E: Element>(p: &BackwardParams) {
    let tid = _thread_idx_x() as usize;
    let (warp, lane) = (tid / 32, tid % 32);
    let row = _block_idx_x() as usize * Cfg::PREPROCESS_WARPS + warp;
    let h = _block_idx_y() as usize;
    let b = _block_idx_z() as usize;
    // Packed batches: entry b's rows (its statistics still take `stat_pitch` rows per head).
    let seq = Sequence::of(&p.mask, b, p.seqlen_q, p.seqlen_k);
    let n_q = seq.n_q;
    let stat = (b * p.heads as usize + h) * p.stat_pitch as usize + row;
    if p.dq_done != 0 && tid == 0 && _block_idx_x() == 0 && h < p.heads_kv as usize {
        // The dK/dV CTAs of (b, h) count up from here (see `BackwardParams::dq_done`).
        *p.dq_done_counter(b, h) = 0;
    }
    if p.dq_accum != 0 && row < p.stat_pitch as usize {
        let chunk = (p.dq_accum as *mut f32).add(stat * p.acc_dim as usize);
        let mut c = 4 * lane;
        while c < p.acc_dim as usize {
            st_global_v4_b32(chunk.add(c) as *mut u8, [0; 4]);
            c += 128;
        }
    }
    if row >= n_q {
        // Padding rows up to stat_pitch: D = 0 and LSE*log2(e) = +inf make P exactly 0 there
        // in the tensor-core backward. (The whole warp leaves together, so the shuffles below
        // stay full-warp.)
        if row < p.stat_pitch as usize && lane == 0 {
            st_global_f32((p.delta as *mut f32).add(stat), 0.0);
            st_global_f32((p.lse_log2 as *mut f32).add(stat), f32::INFINITY);
        }
        return;
    }
    let o = (p.o as *const u16).add(p.o_strides.offset(b, seq.q_start + row, h) as usize);
    let d_o = (p.d_o as *const u16).add(p.do_strides.offset(b, seq.q_start + row, h) as usize);
    let mut acc = 0.0f32;
    let mut c = 4 * lane; // head_dim and the row strides are multiples of 8: 8-byte aligned
    while c < p.head_dim as usize {
        let ov = ld_global_nc_v2_b32(o.add(c) as *const u32);
        let dv = ld_global_nc_v2_b32(d_o.add(c) as *const u32);
        let mut i = 0;
        while i < 2 {
            let ((o0, o1), (d0, d1)) = (E::unpack2(ov[i]), E::unpack2(dv[i]));
            acc = fma(o0, d0, fma(o1, d1, acc));
            i += 1;
        }
        c += 128;
    }
    let mut m = 16;
    while m > 0 {
        acc += shfl_xor_f32(acc, m);
        m /= 2;
    }
    if lane == 0 {
        st_global_f32((p.delta as *mut f32).add(stat), acc);
        let lse = *(p.lse as *const f32).add(seq.lse_index(&p.mask, b, h, row));
        // A row that sees no key (LSE -inf) gets +inf, as the padding: P = 2^-inf = 0 on it
        // without relying on the kernels' masks (which skip e.g. windowed blocks unmasked).
        let lse_log2 = if lse == f32::NEG_INFINITY { f32::INFINITY } else { lse * LOG2E };
        st_global_f32((p.lse_log2 as *mut f32).add(stat), lse_log2);
    }
}

/// Writes `acc * mul` as one row of `E` at element offset `offset` of `base`.
#[inline(always)]
unsafe fn store_row<E: Element, const D: usize>(base: u64, offset: u64, acc: &[f32; D], mul: f32) {
    let dst = (base as *mut u16).add(offset as usize) as *mut u32;
    let mut c = 0;
    while c < D {
        st_global_b32(dst.add(c / 2), E::pack2(acc[c] * mul, acc[c + 1] * mul));
        c += 2;
    }
}

/// dQ, one thread per query row. Grid: (ceil(seqlen_q / BLOCK_M), heads, batch).
#[inline(always)]
pub unsafe fn dq<E: Element, const D: usize, const CAUSAL: bool>(p: &BackwardParams) {
    let tid = _thread_idx_x() as usize;
    let row0 = _block_idx_x() as usize * BM;
    let h = _block_idx_y() as usize;
    let b = _block_idx_z() as usize;
    let group = p.group();
    let h_kv = h / group;
    let (n_q, n_k) = (p.seqlen_q as usize, p.seqlen_k as usize);

    let q_s = dynamic_smem_base(); // own rows, stride D + 1 (conflict-free)
    let do_s = q_s + 4 * (BM * (D + 1)) as u32;
    let k_s = do_s + 4 * (BM * (D + 1)) as u32; // streamed, read as broadcasts
    let v_s = k_s + 4 * (BN * D) as u32;
    let x_s = v_s + 4 * (BN * D) as u32; // per-thread coefficients of a block, stride BN + 1

    // Q pre-multiplied by scale * log2(e): its dot with K is the log2-domain score.
    load_tile_f32::<E, D>(p.q, &p.q_strides, b, h, row0, n_q, BM, q_s, D + 1, p.scale_log2, THREADS);
    load_tile_f32::<E, D>(p.d_o, &p.do_strides, b, h, row0, n_q, BM, do_s, D + 1, 1.0, THREADS);
    let my_row = row0 + tid;
    let valid = my_row < n_q;
    let stat = (b * p.heads as usize + h) * n_q + my_row;
    let lse2 = if valid { *(p.lse as *const f32).add(stat) * LOG2E } else { 0.0 };
    let delta = if valid {
        *(p.delta as *const f32).add((b * p.heads as usize + h) * p.stat_pitch as usize + my_row)
    } else {
        0.0
    };
    let my_last_key = my_row as i64 + n_k as i64 - n_q as i64; // causal, bottom-right
    let kv_end =
        if CAUSAL { ((row0 + BM) as i64 + n_k as i64 - n_q as i64).clamp(0, n_k as i64) as usize } else { n_k };
    let q_row = q_s + 4 * (tid * (D + 1)) as u32;
    let do_row = do_s + 4 * (tid * (D + 1)) as u32;
    let x_row = x_s + 4 * (tid * (BN + 1)) as u32;

    let mut acc = [0.0f32; D];
    let mut col0 = 0;
    while col0 < kv_end {
        _syncthreads(); // the previous K/V tiles are no longer read
        load_tile_f32::<E, D>(p.k, &p.k_strides, b, h_kv, col0, n_k, BN, k_s, D, 1.0, THREADS);
        load_tile_f32::<E, D>(p.v, &p.v_strides, b, h_kv, col0, n_k, BN, v_s, D, 1.0, THREADS);
        _syncthreads();
        // Two loops, as the forward: the dot products of the block first (coefficients to
        // shared memory), then the accumulation; fused, ptxas spills at d >= 64.
        let mut j = 0;
        while j < BN {
            let col = col0 + j;
            let allowed = valid && col < n_k && (!CAUSAL || col as i64 <= my_last_key);
            let s2 = dot::<D>(q_row, k_s + 4 * (j * D) as u32);
            let dp = dot::<D>(do_row, v_s + 4 * (j * D) as u32);
            // A masked pair contributes exactly 0 (select, so ex2's value there never matters).
            let pij = if allowed { ex2(s2 - lse2) } else { 0.0 };
            st_shared_f32(x_row + 4 * j as u32, pij * (dp - delta));
            j += 1;
        }
        let mut j = 0;
        while j < BN {
            axpy::<D>(&mut acc, ld_shared_f32(x_row + 4 * j as u32), k_s + 4 * (j * D) as u32);
            j += 1;
        }
        col0 += BN;
    }
    if valid {
        store_row::<E, D>(p.dq, p.dq_strides.offset(b, my_row, h), &acc, p.scale);
    }
}

/// dK (`DK`) or dV (`!DK`), one thread per key row. Grid: (ceil(seqlen_k / BLOCK_M), heads_kv, batch).
#[inline(always)]
pub unsafe fn dkdv<E: Element, const D: usize, const CAUSAL: bool, const DK: bool>(p: &BackwardParams) {
    let tid = _thread_idx_x() as usize;
    let key0 = _block_idx_x() as usize * BM;
    let h_kv = _block_idx_y() as usize;
    let b = _block_idx_z() as usize;
    let group = p.group();
    let (n_q, n_k) = (p.seqlen_q as usize, p.seqlen_k as usize);

    let k_s = dynamic_smem_base(); // own rows, stride D + 1
    let v_s = k_s + 4 * (BM * (D + 1)) as u32;
    let q_t = v_s + 4 * (BM * (D + 1)) as u32; // streamed tiles, broadcasts
    let do_t = q_t + 4 * (BN * D) as u32;
    let lse_t = do_t + 4 * (BN * D) as u32;
    let delta_t = lse_t + 4 * BN as u32;
    let x_s = delta_t + 4 * BN as u32; // per-thread coefficients of a block, stride BN + 1

    // K pre-multiplied by scale * log2(e): its dot with Q is the log2-domain score.
    load_tile_f32::<E, D>(p.k, &p.k_strides, b, h_kv, key0, n_k, BM, k_s, D + 1, p.scale_log2, THREADS);
    load_tile_f32::<E, D>(p.v, &p.v_strides, b, h_kv, key0, n_k, BM, v_s, D + 1, 1.0, THREADS);
    let my_key = key0 + tid;
    let valid = my_key < n_k;
    let k_row = k_s + 4 * (tid * (D + 1)) as u32;
    let v_row = v_s + 4 * (tid * (D + 1)) as u32;
    let x_row = x_s + 4 * (tid * (BN + 1)) as u32;
    // Causal: key j is seen by rows i >= j + n_q - n_k; skip the query blocks before the
    // tile's first key's first row.
    let first_row = if CAUSAL { (key0 as i64 + n_q as i64 - n_k as i64).clamp(0, n_q as i64) as usize } else { 0 };

    let mut acc = [0.0f32; D];
    let mut hq = h_kv * group;
    while hq < (h_kv + 1) * group {
        let mut row0 = first_row - first_row % BN;
        while row0 < n_q {
            _syncthreads(); // the previous tiles are no longer read
            load_tile_f32::<E, D>(p.q, &p.q_strides, b, hq, row0, n_q, BN, q_t, D, 1.0, THREADS);
            load_tile_f32::<E, D>(p.d_o, &p.do_strides, b, hq, row0, n_q, BN, do_t, D, 1.0, THREADS);
            if tid < BN {
                let row = row0 + tid;
                let stat = (b * p.heads as usize + hq) * n_q + row;
                let (l, d) = if row < n_q {
                    let delta_at = (b * p.heads as usize + hq) * p.stat_pitch as usize + row;
                    (*(p.lse as *const f32).add(stat) * LOG2E, *(p.delta as *const f32).add(delta_at))
                } else {
                    (0.0, 0.0)
                };
                st_shared_f32(lse_t + 4 * tid as u32, l);
                st_shared_f32(delta_t + 4 * tid as u32, d);
            }
            _syncthreads();
            // Coefficients of the block first (dV: P_ij; dK: dS_ij), then the accumulation
            // over Q (dK) or dO (dV) rows, in two loops as the forward.
            // dK: dP_ij = dO_i . V_j first, in its own loop (with both dot products in one
            // loop body, ptxas spills at d = 128).
            if DK {
                let mut i = 0;
                while i < BN {
                    st_shared_f32(x_row + 4 * i as u32, dot::<D>(v_row, do_t + 4 * (i * D) as u32));
                    i += 1;
                }
            }
            let mut i = 0;
            while i < BN {
                let row = row0 + i;
                let allowed = valid && row < n_q && (!CAUSAL || my_key as i64 <= row as i64 + n_k as i64 - n_q as i64);
                let s2 = dot::<D>(k_row, q_t + 4 * (i * D) as u32);
                let pij = if allowed { ex2(s2 - ld_shared_f32(lse_t + 4 * i as u32)) } else { 0.0 };
                let x = if DK {
                    pij * (ld_shared_f32(x_row + 4 * i as u32) - ld_shared_f32(delta_t + 4 * i as u32))
                } else {
                    pij
                };
                st_shared_f32(x_row + 4 * i as u32, x);
                i += 1;
            }
            let src = if DK { q_t } else { do_t };
            let mut i = 0;
            while i < BN {
                axpy::<D>(&mut acc, ld_shared_f32(x_row + 4 * i as u32), src + 4 * (i * D) as u32);
                i += 1;
            }
            row0 += BN;
        }
        hq += 1;
    }
    if valid {
        if DK {
            store_row::<E, D>(p.dk, p.dk_strides.offset(b, my_key, h_kv), &acc, p.scale);
        } else {
            store_row::<E, D>(p.dv, p.dv_strides.offset(b, my_key, h_kv), &acc, 1.0);
        }
    }
}
