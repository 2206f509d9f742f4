//! The row kernels of the standard-attention baseline ("standard attention" of the
//! FlashAttention paper, which materialises the `N x N` matrices in device memory). The matrix
//! products around them are cuBLAS GEMMs on the host side (`flashattn::standard`); these kernels
//! do the elementwise and row-wise steps, one warp per row of a contiguous
//! `[batch, heads, seqlen_q, seqlen_k]` matrix, f32 math. They are meant to be simple and
//! correct, not fast: the baseline is memory-bound on the `N x N` traffic anyway.
//!
//! Causal masking is bottom-right aligned, as in the flash kernels: row `i` sees keys
//! `j <= i + seqlen_k - seqlen_q`. Masked entries of P are written as exact zeros; a row that
//! sees no key gets P = 0 and LSE = -inf.
use core::arch::nvptx::{_block_idx_x, _block_idx_y, _block_idx_z, _thread_idx_x};

use crate::arch::sm80::{ex2, fma, lg2, shfl_xor_f32};
use crate::config::StandardConfig as Cfg;
use crate::element::Element;
use crate::params::StandardParams;

const LOG2E: f32 = core::f32::consts::LOG2_E;

/// The row a warp works on: (batch * heads + head, row), or None past seqlen_q (the whole warp
/// leaves together, so the shuffles stay full-warp).
#[inline(always)]
unsafe fn warp_row(p: &StandardParams) -> Option<(usize, usize, usize, usize)> {
    let tid = _thread_idx_x() as usize;
    let row = _block_idx_x() as usize * Cfg::WARPS + tid / 32;
    let (h, b) = (_block_idx_y() as usize, _block_idx_z() as usize);
    if row >= p.seqlen_q as usize {
        return None;
    }
    Some((b * p.heads as usize + h, row, b, h))
}

/// Number of keys row `row` sees (all of them, or up to the bottom-right causal diagonal).
#[inline(always)]
fn visible_keys<const CAUSAL: bool>(p: &StandardParams, row: usize) -> usize {
    let n_k = p.seqlen_k as i64;
    if CAUSAL {
        (row as i64 + n_k - p.seqlen_q as i64 + 1).clamp(0, n_k) as usize
    } else {
        n_k as usize
    }
}

#[inline(always)]
unsafe fn warp_sum(mut x: f32) -> f32 {
    let mut m = 16;
    while m > 0 {
        x += shfl_xor_f32(x, m);
        m /= 2;
    }
    x
}

#[inline(always)]
unsafe fn warp_max(mut x: f32) -> f32 {
    let mut m = 16;
    while m > 0 {
        x = x.max(shfl_xor_f32(x, m));
        m /= 2;
    }
    x
}

/// One element of type `E` as its 16 bits (round to nearest even).
#[inline(always)]
fn to_bits<E: Element>(x: f32) -> u16 {
    E::pack2(x, 0.0) as u16
}

#[inline(always)]
fn from_bits<E: Element>(bits: u16) -> f32 {
    E::unpack2(bits as u32).0
}

/// `P = softmax(S)` row by row (`FROM_LSE` false: three passes, max, sum, write; the LSE is
/// written), or `P = exp(S - LSE)` from a given LSE (`FROM_LSE` true, the backward's
/// recomputation). S holds the already scaled scores in f32; P is written in the input type.
/// Grid: (ceil(seqlen_q / WARPS), heads, batch), `THREADS` threads.
#[inline(always)]
pub unsafe fn softmax<E: Element, const CAUSAL: bool, const FROM_LSE: bool>(p: &StandardParams) {
    let Some((bh, row, _, _)) = warp_row(p) else { return };
    let lane = _thread_idx_x() as usize % 32;
    let (n_q, n_k) = (p.seqlen_q as usize, p.seqlen_k as usize);
    let at = (bh * n_q + row) * n_k; // 64-bit: B*H*N*N exceeds 2^32 at long N
    let s = (p.s as *const f32).add(at);
    let out = (p.p as *mut u16).add(at);
    let lse_at = (p.lse as *mut f32).add(bh * n_q + row);
    let end = visible_keys::<CAUSAL>(p, row);
    // Everything in the log2 domain: exp(x) = 2^(x log2 e), one FFMA and one ex2 per element.
    let lse2 = if FROM_LSE {
        *lse_at * LOG2E
    } else {
        let mut m = f32::NEG_INFINITY;
        let mut j = lane;
        while j < end {
            m = m.max(*s.add(j));
            j += 32;
        }
        let m2 = warp_max(m) * LOG2E;
        let mut sum = 0.0f32;
        let mut j = lane;
        while j < end {
            sum += ex2(fma(*s.add(j), LOG2E, -m2));
            j += 32;
        }
        let sum = warp_sum(sum);
        let lse2 = if end == 0 { f32::NEG_INFINITY } else { m2 + lg2(sum) };
        if lane == 0 {
            *lse_at = lse2 * core::f32::consts::LN_2;
        }
        lse2
    };
    let mut j = lane;
    while j < n_k {
        // A masked entry is an exact 0 (select: ex2's value there, maybe inf, never matters).
        let x = if j < end { ex2(fma(*s.add(j), LOG2E, -lse2)) } else { 0.0 };
        *out.add(j) = to_bits::<E>(x);
        j += 32;
    }
}

/// `dS = P * (dP - D)` with `D_i = rowsum(dO_i * O_i)` (f32), written in place over P (each
/// element is read and then written by the same thread). `s` holds `dP = dO V^T` in f32.
/// Masked entries have P = 0, so dS = 0 there without a mask. Grid as [`softmax`].
#[inline(always)]
pub unsafe fn ds<E: Element>(p: &StandardParams) {
    let Some((bh, row, b, h)) = warp_row(p) else { return };
    let lane = _thread_idx_x() as usize % 32;
    let (n_q, n_k) = (p.seqlen_q as usize, p.seqlen_k as usize);
    let o = (p.o as *const u16).add(p.o_strides.offset(b, row, h) as usize);
    let d_o = (p.d_o as *const u16).add(p.do_strides.offset(b, row, h) as usize);
    let mut acc = 0.0f32;
    let mut c = lane;
    while c < p.head_dim as usize {
        acc = fma(from_bits::<E>(*o.add(c)), from_bits::<E>(*d_o.add(c)), acc);
        c += 32;
    }
    let delta = warp_sum(acc);
    let at = (bh * n_q + row) * n_k;
    let dp = (p.s as *const f32).add(at);
    let pd = (p.p as *mut u16).add(at);
    let mut j = lane;
    while j < n_k {
        let x = from_bits::<E>(*pd.add(j)) * (*dp.add(j) - delta);
        *pd.add(j) = to_bits::<E>(x);
        j += 32;
    }
}
