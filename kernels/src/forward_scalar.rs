//! The first tiled forward: FlashAttention's algorithm on CUDA cores (scalar FMA), one thread per
//! query row. Kept as the simple reference path beside the tensor-core kernels.
//!
//! Per CTA (grid: query blocks x heads x batch):
//! 1. the Q tile (BLOCK_M rows) is loaded once, pre-multiplied by `softmax_scale * log2(e)`, into
//!    shared memory as f32;
//! 2. K/V blocks of BLOCK_N rows stream through shared memory (f32); each thread computes its
//!    row's BLOCK_N scores, the block's row max, rescales its running output and sum once by
//!    `2^(m_old - m_new)`, then adds `2^(s - m_new) * V`;
//! 3. O = acc / l and LSE = ln 2 * (m + log2 l) are written once.
//! Causal (bottom-right aligned) stops the K/V loop at the last block any row of the tile can see.
use core::arch::nvptx::{_block_idx_x, _block_idx_y, _block_idx_z, _syncthreads, _thread_idx_x};

use crate::arch::sm80::{
    dynamic_smem_base, ex2, fma, ld_shared_f32, ld_shared_v4_f32, lg2, st_global_b32, st_global_f32, st_shared_f32,
};
use crate::config::ScalarForwardConfig as Cfg;
use crate::element::Element;
use crate::params::ForwardParams;
use crate::scalar_tile::load_tile_f32;

const BM: usize = Cfg::BLOCK_M;
const BN: usize = Cfg::BLOCK_N;
const THREADS: usize = Cfg::THREADS;
const LN2: f32 = core::f32::consts::LN_2;

#[inline(always)]
pub unsafe fn forward_scalar<E: Element, const D: usize, const CAUSAL: bool>(p: &ForwardParams) {
    let cfg = Cfg::new(D);
    let tid = _thread_idx_x() as usize;
    let row0 = _block_idx_x() as usize * BM;
    let h = _block_idx_y() as usize;
    let b = _block_idx_z() as usize;
    // heads_kv divides heads (validated on the host); the zero check keeps core's panic out.
    let group = p.group();
    let h_kv = h / group;
    let (n_q, n_k) = (p.seqlen_q as usize, p.seqlen_k as usize);

    let q_s = dynamic_smem_base();
    let k_s = q_s + 4 * cfg.q_smem_words() as u32;
    let v_s = k_s + 4 * cfg.kv_smem_words() as u32;
    let s_s = v_s + 4 * cfg.kv_smem_words() as u32;

    load_tile_f32::<E, D>(p.q, &p.q_strides, b, h, row0, n_q, BM, q_s, D + 1, p.scale_log2, THREADS);

    // Bottom-right causal alignment: row i sees keys j <= i + n_k - n_q. The tile's last row
    // bounds the keys any of its rows can see, so later K/V blocks are never loaded.
    let kv_end = if CAUSAL {
        let last = (row0 + BM) as i64 + n_k as i64 - n_q as i64;
        last.clamp(0, n_k as i64) as usize
    } else {
        n_k
    };
    let my_row = row0 + tid;
    let my_last_key = my_row as i64 + n_k as i64 - n_q as i64; // causal: last visible key

    let mut acc = [0.0f32; D];
    let mut m_i = f32::NEG_INFINITY; // running max of the log2-domain scores
    let mut l_i = 0.0f32; // running sum of 2^(s - m_i)
    let q_row = q_s + 4 * (tid * (D + 1)) as u32;
    let s_row = s_s + 4 * (tid * (BN + 1)) as u32;

    let mut col0 = 0;
    while col0 < kv_end {
        _syncthreads(); // the previous block's K/V tiles are no longer read
        load_tile_f32::<E, D>(p.k, &p.k_strides, b, h_kv, col0, n_k, BN, k_s, D, 1.0, THREADS);
        load_tile_f32::<E, D>(p.v, &p.v_strides, b, h_kv, col0, n_k, BN, v_s, D, 1.0, THREADS);
        _syncthreads();

        // Scores of this block (log2 domain), kept in this thread's padded shared-memory row.
        let mut block_max = f32::NEG_INFINITY;
        let mut j = 0;
        while j < BN {
            let col = col0 + j;
            let k_row = k_s + 4 * (j * D) as u32;
            // Four partial sums: four independent FMA chains instead of one long one.
            let mut dot = [0.0f32; 4];
            let mut c = 0;
            while c < D {
                let kk = ld_shared_v4_f32(k_row + 4 * c as u32); // same address for the warp: broadcast
                let mut u = 0;
                while u < 4 {
                    dot[u] = fma(ld_shared_f32(q_row + 4 * (c + u) as u32), kk[u], dot[u]);
                    u += 1;
                }
                c += 4;
            }
            let allowed = col < n_k && (!CAUSAL || (col as i64) <= my_last_key);
            let s = if allowed { (dot[0] + dot[1]) + (dot[2] + dot[3]) } else { f32::NEG_INFINITY };
            st_shared_f32(s_row + 4 * j as u32, s);
            block_max = block_max.max(s);
            j += 1;
        }

        let m_new = m_i.max(block_max);
        // NaN guard: while every score seen so far is masked, m_new is -inf and
        // 2^(-inf - -inf) would be NaN; measure from 0 instead (every p is then 2^-inf = 0).
        let m_ref = if m_new == f32::NEG_INFINITY { 0.0 } else { m_new };
        let alpha = ex2(m_i - m_ref);
        l_i *= alpha;
        let mut c = 0;
        while c < D {
            acc[c] *= alpha;
            c += 1;
        }
        let mut j = 0;
        while j < BN {
            let pj = ex2(ld_shared_f32(s_row + 4 * j as u32) - m_ref);
            l_i += pj;
            let v_row = v_s + 4 * (j * D) as u32;
            let mut c = 0;
            while c < D {
                let vv = ld_shared_v4_f32(v_row + 4 * c as u32);
                acc[c] = fma(pj, vv[0], acc[c]);
                acc[c + 1] = fma(pj, vv[1], acc[c + 1]);
                acc[c + 2] = fma(pj, vv[2], acc[c + 2]);
                acc[c + 3] = fma(pj, vv[3], acc[c + 3]);
                c += 4;
            }
            j += 1;
        }
        m_i = m_new;
        col0 += BN;
    }

    if my_row < n_q {
        // A row with no visible key (causal, n_q > n_k) has l = 0: its output is 0 and its LSE -inf.
        let inv_l = if l_i > 0.0 { 1.0 / l_i } else { 0.0 };
        let o = (p.o as *mut u16).add(p.o_strides.offset(b, my_row, h) as usize) as *mut u32;
        let mut c = 0;
        while c < D {
            st_global_b32(o.add(c / 2), E::pack2(acc[c] * inv_l, acc[c + 1] * inv_l));
            c += 2;
        }
        let lse = if l_i > 0.0 { LN2 * (m_i + lg2(l_i)) } else { f32::NEG_INFINITY };
        let lse_idx = ((b * p.heads as usize + h) * n_q + my_row) as usize;
        st_global_f32((p.lse as *mut f32).add(lse_idx), lse);
    }
}
