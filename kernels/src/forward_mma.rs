//! The tensor-core forward (FlashAttention-2's algorithm on `mma.sync.m16n8k16`).
//!
//! Per CTA (grid: query blocks x heads x batch), `WARPS` warps each own `16 * MT` query rows:
//! 1. Q (BLOCK_M rows) and the first K and V blocks are copied to shared memory with `cp.async`,
//!    K and V in separate commit groups so that `S = Q K^T` starts while V is still in flight.
//!    `STAGES = 2` double-buffers K and V (prefetch one block ahead, as below); `STAGES = 1` is
//!    FlashAttention-2's single-buffer schedule (V_j loads during `Q K_j^T`, K_{j+1} during the
//!    softmax and `P V_j`), which halves K/V shared memory so more CTAs fit at large head dims.
//! 2. Per K/V block `j`: wait for K_j, prefetch K_{j+1} into the other stage, `S = Q K_j^T` in
//!    registers (ldmatrix fragments), mask (only blocks that cross the sequence end or the causal
//!    diagonal), online softmax on the accumulator registers (row max/sum across the 4 lanes of a
//!    quad with shuffles, `exp2(s * scale_log2 - m * scale_log2)` as one FFMA + MUFU), rescale O;
//!    wait for V_j, prefetch V_{j+1}, `O += P V_j` with P taken straight from the S registers
//!    (the m16n8 accumulator layout of two adjacent n-tiles is the A layout of one k16 step)
//!    and V fragments from `ldmatrix.trans`.
//! 3. O / l is staged through this warp's rows of the Q tile and written with 16-byte stores;
//!    the LSE is written once per row.
//!
//! Register arrays are sized for the largest configuration and indexed only in loops with
//! constant bounds, which LLVM unrolls fully (build.rs raises the unroll threshold), so they
//! live in registers; unused elements are removed.
use core::arch::nvptx::{_block_idx_x, _block_idx_y, _block_idx_z, _syncthreads, _thread_idx_x};

use crate::arch::sm80::ld_shared_b32;
use crate::arch::sm80::{
    cp_async_commit_group, cp_async_wait_group, dynamic_smem_base, ex2, fma, ld_shared_v4_b32, ldmatrix_x4,
    ldmatrix_x4_trans, lg2, shfl_xor_f32, st_global_f32, st_global_v4_b32, st_shared_b32, syncwarp, vote_any,
};
use crate::config::{MmaForwardConfig, BLOCK_MASK_SIZE};
use crate::element::Element;
use crate::masking::{BlockMask, Dropout, ScoreRules, Sequence, MODS_DROPOUT, MODS_SCORES};
use crate::mma_tile::{copy_tile_async, x4_offset_col_pairs, x4_offset_row_major};
use crate::params::ForwardParams;
use crate::philox::half_flags;

const LN2: f32 = core::f32::consts::LN_2;
/// Where O is rescaled by `2^(m_old - m_new)`: deferred (once per block after the softmax,
/// skipped when no row max of the warp moved; what the H100 numbers measure) or inline (right
/// where each row's factor is computed, as FlashAttention-2 does). sm_90a builds always defer.
/// sm_80 builds pick whichever ptxas allocates without spilling (checked by
/// tests/ptx_resources.rs): deferring keeps four factors alive across the softmax, which spills
/// 12 bytes at d = 128 (128 x 64 tiles), while inline spills 56 bytes at d = 64 (128 x 128).
const fn deferred_rescale(block_n: usize) -> bool {
    cfg!(flashattn_sm90a) || block_n >= 128
}
/// Register-array bounds: m-tiles per warp, n-tiles of S (block_n / 8), n-tiles of O (d / 8),
/// k-steps of Q K^T (d / 16).
const MAX_MT: usize = 2;
const MAX_NT: usize = 16;
const MAX_DT: usize = 32;
const MAX_KT: usize = 16;

#[inline(always)]
pub unsafe fn forward_mma<
    E: Element,
    const D: usize,
    const BM: usize,
    const BN: usize,
    const MT: usize,
    const Q_IN_REGS: bool,
    const STAGES: usize,
    const CAUSAL: bool,
    const MASKED: bool,
    const MODS: u32,
>(
    p: &ForwardParams,
) {
    let cfg =
        MmaForwardConfig { head_dim: D, block_m: BM, block_n: BN, m_tiles: MT, q_in_regs: Q_IN_REGS, stages: STAGES };
    let threads = cfg.threads();
    let pitch = cfg.smem_pitch();
    const {
        assert!(
            MT <= MAX_MT && BN / 8 <= MAX_NT && D / 8 <= MAX_DT && D / 16 <= MAX_KT && (STAGES == 1 || STAGES == 2)
        );
        // Masked builds: causal is a window, and block-mask blocks hold whole kernel blocks.
        assert!(
            (MASKED || MODS == 0)
                && (!MASKED || !CAUSAL && BLOCK_MASK_SIZE % BM == 0 && BLOCK_MASK_SIZE % BN == 0 && BN % 32 == 0)
        );
    };
    let nt_s = BN / 8; // n-tiles of S
    let dt_o = D / 8; // n-tiles of O
    let kt_q = D / 16; // k-steps of Q K^T
    let kt_v = BN / 16; // k-steps of P V

    let tid = _thread_idx_x() as usize;
    let warp = tid / 32;
    let lane = tid % 32;
    let (g, t) = (lane / 4, lane % 4); // quad (row) and lane within the quad
                                       // Causal: the last query blocks see the most keys; launching them first (the scheduler
                                       // hands out low block indices first) keeps the heaviest CTAs out of the tail wave.
                                       // (Masked builds: windows are causal-like, and without a window every block costs the same.)
    let m_block = if CAUSAL || MASKED { p.seqlen_q.div_ceil(BM as u32) - 1 - _block_idx_x() } else { _block_idx_x() };
    let row0 = m_block as usize * BM;
    let h = _block_idx_y() as usize;
    let b = _block_idx_z() as usize;
    // heads_kv divides heads (validated on the host); max(1) keeps core's division panic out.
    let group = p.group();
    let h_kv = h / group;
    // Masked builds: this entry of a packed batch (`seqlen_*` are then the maxima), whose rows
    // are `q_start + row` of the packed tensors (batch stride 0).
    let seq = Sequence::for_build::<MASKED>(&p.mask, b, p.seqlen_q, p.seqlen_k);
    let (n_q, n_k, head_dim) = (seq.n_q, seq.n_k, p.head_dim as usize);
    let (q_start, k_start) = (seq.q_start, seq.k_start);
    if MASKED && row0 >= n_q {
        return; // a shorter entry of a packed batch: the grid covers the longest
    }
    let rules = ScoreRules::new(&p.mask, b, h, &seq);
    let block_mask = BlockMask::new(&p.mask, h);
    let dropout = Dropout::new(&p.mask, b, h, p.heads);
    let scale_log2 = p.scale_log2;

    let q_s = dynamic_smem_base();
    let k_s = q_s + (BM * pitch) as u32;
    let v_s = k_s + (STAGES * BN * pitch) as u32;
    let stage_bytes = (BN * pitch) as u32;

    // Bottom-right causal alignment: row i sees keys j <= i + n_k - n_q; the tile's last row
    // bounds what any row of it sees, so later blocks are never loaded.
    // Masked builds: the keys the window shows these rows, and only the blocks the block mask
    // keeps (`next_block`).
    let (first_block, n_blocks) = if MASKED {
        let (lo, hi) = rules.key_range(row0, (row0 + BM).min(n_q));
        (lo / BN, hi.div_ceil(BN))
    } else {
        let kv_end =
            if CAUSAL { ((row0 + BM) as i64 + n_k as i64 - n_q as i64).clamp(0, n_k as i64) as usize } else { n_k };
        (0, kv_end.div_ceil(BN))
    };
    let lane_id = tid % 32;
    let next_block =
        |j: usize| if MASKED { block_mask.first_active_key_block(row0, j + 1, n_blocks, BN, lane_id) } else { j + 1 };
    let first =
        if MASKED { block_mask.first_active_key_block(row0, first_block, n_blocks, BN, lane_id) } else { first_block };
    let (q_end, k_end) = (q_start + n_q, k_start + n_k); // row bounds in the (packed) tensors

    // Prologue: group 0 = Q + K_first; with two stages, group 1 = V_first (one stage: V_j is
    // issued at the top of iteration j, once the previous P V has released the buffer).
    copy_tile_async::<D>(p.q, &p.q_strides, b, h, q_start + row0, q_end, BM, head_dim, q_s, pitch, tid, threads);
    let k0 = k_start + first * BN;
    if first < n_blocks {
        copy_tile_async::<D>(p.k, &p.k_strides, b, h_kv, k0, k_end, BN, head_dim, k_s, pitch, tid, threads);
    }
    cp_async_commit_group();
    if STAGES == 2 {
        if first < n_blocks {
            copy_tile_async::<D>(p.v, &p.v_strides, b, h_kv, k0, k_end, BN, head_dim, v_s, pitch, tid, threads);
        }
        cp_async_commit_group();
    }

    // This warp's first row inside the tile; lane-owned rows are warp_row + 16 mt + g (+ 8).
    let warp_row = warp * 16 * MT;
    // ldmatrix row addresses: lane l points at row l % 16 of the 16-row tile, column half l / 16
    // (A operand: matrices rows 0-7/8-15 x columns 0-7/8-15 in a0..a3 order).
    let a_lane_off = x4_offset_row_major(lane, pitch);
    // K (B operand of Q K^T, non-transposed): lane l -> key (l / 16) * 8 + l % 8, column half (l / 8) % 2.
    let k_lane_off = x4_offset_col_pairs(lane, pitch);
    // V (B operand of P V, transposed): lane l -> key l % 16, dim half l / 16.
    let v_lane_off = x4_offset_row_major(lane, pitch);

    let mut q_frag = [[0u32; 4]; MAX_MT * MAX_KT];
    let mut acc_o = [[[0.0f32; 4]; MAX_DT]; MAX_MT];
    // Running max (raw score units) and this lane's partial sum, for rows g and g + 8 of each m-tile.
    let mut row_max = [[f32::NEG_INFINITY; 2]; MAX_MT];
    let mut row_sum = [[0.0f32; 2]; MAX_MT];

    let mut j = first;
    let mut iteration = 0; // stages alternate per processed block
    while j < n_blocks {
        let parity = if MASKED { iteration } else { j }; // (plain builds: the same, one counter)
        let stage = if STAGES == 2 { (parity % 2) as u32 } else { 0 };
        let col0 = j * BN;
        // Masked builds scan the block mask for the next kept block once and park it in this
        // warp's scratch slot (read back where needed); plain builds recompute j + 1.
        let slot = q_s + (cfg.smem_bytes() + 4 * warp) as u32;
        if MASKED {
            st_shared_b32(slot, next_block(j) as u32);
        }
        let next_block = |j: usize| if MASKED { ld_shared_b32(slot) as usize } else { j + 1 };
        if STAGES == 2 {
            cp_async_wait_group::<1>(); // K_j (and Q) have landed for this thread ...
            _syncthreads(); // ... and for every thread; stage 1 - j%2 is no longer read.
            let next = next_block(j);
            if next < n_blocks {
                let dst = k_s + (1 - stage) * stage_bytes;
                copy_tile_async::<D>(
                    p.k,
                    &p.k_strides,
                    b,
                    h_kv,
                    k_start + next * BN,
                    k_end,
                    BN,
                    head_dim,
                    dst,
                    pitch,
                    tid,
                    threads,
                );
            }
        } else {
            cp_async_wait_group::<0>(); // K_j (and Q) have landed for this thread ...
            _syncthreads(); // ... and for every thread, which have all finished P V_{j-1}:
                            // the V buffer is free, so V_j loads while S = Q K_j^T computes.
            let kv_row = k_start + col0;
            copy_tile_async::<D>(p.v, &p.v_strides, b, h_kv, kv_row, k_end, BN, head_dim, v_s, pitch, tid, threads);
        }
        cp_async_commit_group();

        if Q_IN_REGS && parity == 0 {
            let mut mt = 0;
            while mt < MT {
                let base = q_s + ((warp_row + 16 * mt) * pitch) as u32 + a_lane_off;
                let mut kk = 0;
                while kk < kt_q {
                    q_frag[mt * MAX_KT + kk] = ldmatrix_x4(base + (kk * 32) as u32);
                    kk += 1;
                }
                mt += 1;
            }
        }

        // S = Q K_j^T
        let mut s = [[[0.0f32; 4]; MAX_NT]; MAX_MT];
        let k_stage = k_s + stage * stage_bytes + k_lane_off;
        let mut kk = 0;
        while kk < kt_q {
            let mut a = [[0u32; 4]; MAX_MT];
            let mut mt = 0;
            while mt < MT {
                a[mt] = if Q_IN_REGS {
                    q_frag[mt * MAX_KT + kk]
                } else {
                    ldmatrix_x4(q_s + ((warp_row + 16 * mt) * pitch) as u32 + a_lane_off + (kk * 32) as u32)
                };
                mt += 1;
            }
            let mut np = 0;
            while np < nt_s / 2 {
                // Two n-tiles (keys 16np .. 16np+15) x one k-step (16 columns).
                let kb = ldmatrix_x4(k_stage + (16 * np * pitch) as u32 + (kk * 32) as u32);
                let mut mt = 0;
                while mt < MT {
                    E::mma(&mut s[mt][2 * np], a[mt], [kb[0], kb[1]]);
                    E::mma(&mut s[mt][2 * np + 1], a[mt], [kb[2], kb[3]]);
                    mt += 1;
                }
                np += 1;
            }
            kk += 1;
        }

        // Mask, only where this block crosses the sequence end or (causal) the diagonal of
        // some row of this warp.
        let warp_first_row = row0 + warp_row;
        if MASKED {
            let warp_rows = (warp_first_row, warp_first_row + 16 * MT);
            let modifies = MODS & MODS_SCORES != 0 && rules.modifies();
            let masks = !rules.all_visible(warp_rows.0, warp_rows.1, col0, col0 + BN);
            if modifies || masks {
                let mut mt = 0;
                while mt < MT {
                    let mut half = 0;
                    while half < 2 {
                        let row = (warp_first_row + 16 * mt + g + 8 * half) as i32;
                        let mut nt = 0;
                        while nt < nt_s {
                            let mut e = 0;
                            while e < 2 {
                                let col = (col0 + nt * 8 + 2 * t + e) as i32;
                                let x = &mut s[mt][nt][2 * half + e];
                                if modifies {
                                    *x = rules.apply(*x, row, col).0;
                                }
                                if masks && !rules.visible(row, col) {
                                    *x = f32::NEG_INFINITY;
                                }
                                e += 1;
                            }
                            nt += 1;
                        }
                        half += 1;
                    }
                    mt += 1;
                }
            }
        }
        let crosses_end = !MASKED && col0 + BN > n_k;
        let crosses_diag = CAUSAL && (col0 + BN - 1) as i64 > warp_first_row as i64 + n_k as i64 - n_q as i64;
        if crosses_end || crosses_diag {
            let mut mt = 0;
            while mt < MT {
                let mut half = 0;
                while half < 2 {
                    let row = warp_first_row + 16 * mt + g + 8 * half;
                    let last_key = row as i64 + n_k as i64 - n_q as i64;
                    let mut nt = 0;
                    while nt < nt_s {
                        let mut e = 0;
                        while e < 2 {
                            let col = col0 + nt * 8 + 2 * t + e;
                            if col >= n_k || (CAUSAL && col as i64 > last_key) {
                                s[mt][nt][2 * half + e] = f32::NEG_INFINITY;
                            }
                            e += 1;
                        }
                        nt += 1;
                    }
                    half += 1;
                }
                mt += 1;
            }
        }

        // Online softmax per row (lanes of a quad share rows g and g + 8).
        let mut p_frag = [[[0u32; 4]; MAX_NT / 2]; MAX_MT];
        let mut alpha = [[1.0f32; 2]; MAX_MT];
        let mut rescale = false;
        let drop = MODS & MODS_DROPOUT != 0 && dropout.on();
        let mut mt = 0;
        while mt < MT {
            // Dropout drop flags of this m-tile's elements, two words per 32 keys (see `s_bits`).
            let mut dropped = [[0u32; 2]; MAX_NT / 4];
            if drop {
                let mut kp = 0;
                while kp < nt_s / 4 {
                    dropped[kp] = dropout.s_bits(warp_first_row + 16 * mt, col0 + 32 * kp, lane);
                    kp += 1;
                }
            }
            let mut half = 0;
            while half < 2 {
                let mut mx = f32::NEG_INFINITY;
                let mut nt = 0;
                while nt < nt_s {
                    mx = mx.max(s[mt][nt][2 * half]).max(s[mt][nt][2 * half + 1]);
                    nt += 1;
                }
                mx = mx.max(shfl_xor_f32(mx, 1));
                mx = mx.max(shfl_xor_f32(mx, 2));
                let m_new = row_max[mt][half].max(mx);
                // NaN guard: while every score of the row is masked, m_new is -inf and
                // (-inf) - (-inf) would be NaN; measure from 0 then (every p is 2^-inf = 0).
                let m_scaled = if m_new == f32::NEG_INFINITY { 0.0 } else { m_new * scale_log2 };
                let a = ex2(row_max[mt][half] * scale_log2 - m_scaled);
                alpha[mt][half] = a;
                rescale |= a != 1.0;
                row_max[mt][half] = m_new;
                let mut sum = row_sum[mt][half] * a;
                if !deferred_rescale(BN) {
                    let mut dt = 0;
                    while dt < dt_o {
                        acc_o[mt][dt][2 * half] *= a;
                        acc_o[mt][dt][2 * half + 1] *= a;
                        dt += 1;
                    }
                }
                let mut nt = 0;
                while nt < nt_s {
                    // exp2(s * scale_log2 - m * scale_log2): one FFMA feeding MUFU.EX2.
                    let mut p0 = ex2(fma(s[mt][nt][2 * half], scale_log2, -m_scaled));
                    let mut p1 = ex2(fma(s[mt][nt][2 * half + 1], scale_log2, -m_scaled));
                    sum += p0 + p1; // the softmax normaliser is of the undropped weights
                    if drop {
                        let (odd, upper, bit) = ((g % 2) as u32, nt % 4 >= 2, 8 * (2 * half + nt % 2) + 7);
                        p0 = if (half_flags(dropped[nt / 4][0], odd, upper) >> bit) & 1 == 0 { p0 } else { 0.0 };
                        p1 = if (half_flags(dropped[nt / 4][1], odd, upper) >> bit) & 1 == 0 { p1 } else { 0.0 };
                    }
                    // Accumulator layout -> A layout of P V's k-step nt / 2: n-tile 2k gives
                    // a0 (row g) / a1 (row g+8), n-tile 2k+1 gives a2 / a3.
                    p_frag[mt][nt / 2][(nt % 2) * 2 + half] = E::pack2(p0, p1);
                    nt += 1;
                }
                row_sum[mt][half] = sum;
                half += 1;
            }
            mt += 1;
        }

        // O *= alpha, skipped when no row max of the warp moved (alpha is then exactly 1 on
        // every lane, so skipping changes no bit): after the first blocks the max rarely moves,
        // and this saves d/4 multiplies per row-half per block. The vote keeps it warp-uniform.
        if deferred_rescale(BN) && vote_any(rescale) {
            let mut mt = 0;
            while mt < MT {
                let mut dt = 0;
                while dt < dt_o {
                    acc_o[mt][dt][0] *= alpha[mt][0];
                    acc_o[mt][dt][1] *= alpha[mt][0];
                    acc_o[mt][dt][2] *= alpha[mt][1];
                    acc_o[mt][dt][3] *= alpha[mt][1];
                    dt += 1;
                }
                mt += 1;
            }
        }

        if STAGES == 2 {
            cp_async_wait_group::<1>(); // V_j has landed (K_{j+1} may still be in flight) ...
            _syncthreads(); // ... for every thread; V stage 1 - j%2 is no longer read.
            let next = next_block(j);
            if next < n_blocks {
                let dst = v_s + (1 - stage) * stage_bytes;
                copy_tile_async::<D>(
                    p.v,
                    &p.v_strides,
                    b,
                    h_kv,
                    k_start + next * BN,
                    k_end,
                    BN,
                    head_dim,
                    dst,
                    pitch,
                    tid,
                    threads,
                );
            }
        } else {
            cp_async_wait_group::<0>(); // V_j has landed ...
            _syncthreads(); // ... for every thread, which have all finished Q K_j^T: K is free.
            let next = next_block(j);
            if next < n_blocks {
                copy_tile_async::<D>(
                    p.k,
                    &p.k_strides,
                    b,
                    h_kv,
                    k_start + next * BN,
                    k_end,
                    BN,
                    head_dim,
                    k_s,
                    pitch,
                    tid,
                    threads,
                );
            }
        }
        cp_async_commit_group();

        // O += P V_j
        let v_stage = v_s + stage * stage_bytes + v_lane_off;
        let mut kk = 0;
        while kk < kt_v {
            let mut dp = 0;
            while dp < dt_o / 2 {
                // Keys 16kk .. 16kk+15 x dims 16dp .. 16dp+15: B fragments of two O n-tiles.
                let vb = ldmatrix_x4_trans(v_stage + (16 * kk * pitch) as u32 + (dp * 32) as u32);
                let mut mt = 0;
                while mt < MT {
                    E::mma(&mut acc_o[mt][2 * dp], p_frag[mt][kk], [vb[0], vb[1]]);
                    E::mma(&mut acc_o[mt][2 * dp + 1], p_frag[mt][kk], [vb[2], vb[3]]);
                    mt += 1;
                }
                dp += 1;
            }
            kk += 1;
        }
        j = next_block(j);
        iteration += 1;
    }

    // Epilogue. Complete the row sums across the quad, normalise, stage O through this warp's
    // own rows of the Q tile, then write 16-byte chunks. The Q tile was copied by every thread of
    // the CTA, so its copies must have landed for all of them before a warp rewrites its rows: a
    // CTA barrier after each thread's wait (after a key block this is already so; with no key
    // block at all (causal with seqlen_q > seqlen_k, a window, an empty block-mask row, a packed
    // sequence without keys) the prologue's copies were never waited for: found by racecheck).
    cp_async_wait_group::<0>();
    _syncthreads();
    let mut mt = 0;
    while mt < MT {
        let mut half = 0;
        while half < 2 {
            let mut l = row_sum[mt][half];
            l += shfl_xor_f32(l, 1);
            l += shfl_xor_f32(l, 2);
            // A row with no visible key (causal, n_q > n_k) has l = 0: output 0, LSE -inf.
            let mut inv = if l > 0.0 { 1.0 / l } else { 0.0 };
            if MODS & MODS_DROPOUT != 0 && dropout.on() {
                inv *= dropout.scale; // 1 / keep probability, folded into the normalisation
            }
            let r_local = warp_row + 16 * mt + g + 8 * half;
            let dst = q_s + (r_local * pitch + 4 * t) as u32;
            let mut dt = 0;
            while dt < dt_o {
                let v = E::pack2(acc_o[mt][dt][2 * half] * inv, acc_o[mt][dt][2 * half + 1] * inv);
                st_shared_b32(dst + (dt * 16) as u32, v);
                dt += 1;
            }
            let row = row0 + r_local;
            if t == 0 && row < n_q {
                let lse = if l > 0.0 { LN2 * (row_max[mt][half] * scale_log2 + lg2(l)) } else { f32::NEG_INFINITY };
                let index =
                    if MASKED { seq.lse_index(&p.mask, b, h, row) } else { (b * p.heads as usize + h) * n_q + row };
                st_global_f32((p.lse as *mut f32).add(index), lse);
            }
            half += 1;
        }
        mt += 1;
    }
    syncwarp();
    let chunks = head_dim / 8; // only the real columns (head_dim is a multiple of 8)
    let mut idx = lane;
    while idx < 16 * MT * chunks {
        let r = idx / chunks;
        let c = idx % chunks;
        let row = row0 + warp_row + r;
        if row < n_q {
            let v = ld_shared_v4_b32(q_s + ((warp_row + r) * pitch + c * 16) as u32);
            let dst = (p.o as *mut u16).add((p.o_strides.offset(b, q_start + row, h) + (c * 8) as u64) as usize);
            st_global_v4_b32(dst as *mut u8, v);
        }
        idx += 32;
    }
}
