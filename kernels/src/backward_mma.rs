//! The tensor-core backward (FlashAttention-2's algorithm on `mma.sync.m16n8k16`).
//!
//! With `P = 2^(S * scale * log2 e - LSE * log2 e)` recomputed block by block (never stored) and
//! `D_i = rowsum(dO_i * O_i)` from the preprocessing (`backward_scalar::preprocess`):
//! `dV = P^T dO`, `dP = dO V^T`, `dS = P * (dP - D)`, `dK = scale * dS^T Q`, `dQ = scale * dS K`.
//!
//! - [`dkdv_mma`]: one CTA per block of keys (see `MmaBackwardConfig` for the warp layout). Q, dO
//!   and their LSE / D rows stream through double-buffered shared memory (`cp.async`, the next
//!   block loads while this one computes), over every query head of the GQA group, so dK and dV
//!   sum the group in registers. dQ: dS goes to shared memory, each warp computes a slice of
//!   `dS K` and adds it to an f32 buffer with `red.global.add` (FlashAttention-2's atomics).
//! - [`dq_mma`]: the deterministic alternative for dQ: one CTA per query block recomputes S and
//!   dP and accumulates dQ in registers (7 instead of 5 block products in all, but no atomics).
//! - [`dq_convert`]: `dq = scale * dq_accum` in the input type.
//!
//! Register arrays are sized for the largest configuration and indexed only in loops with
//! constant bounds (unrolled by LLVM), as in `forward_mma`.
use core::arch::nvptx::{_block_idx_x, _block_idx_y, _block_idx_z, _syncthreads, _thread_idx_x};

use crate::arch::sm80::ld_shared_b32;
#[cfg(not(flashattn_sm90a))]
use crate::arch::sm80::red_global_add_f32;
#[cfg(flashattn_sm90a)]
use crate::arch::sm80::st_shared_v2_f32;
use crate::arch::sm80::{block_idx_reread, thread_idx_x_reread};
use crate::arch::sm80::{
    cp_async_cg_16, cp_async_commit_group, cp_async_wait_group, dynamic_smem_base, ex2, fma, ld_acquire_gpu_u32,
    ld_global_nc_v2_f32, ld_global_nc_v4_f32, ld_global_v4_f32, ld_shared_v2_f32, ld_shared_v4_b32, ldmatrix_x4,
    ldmatrix_x4_trans, nanosleep, st_global_v4_b32, st_shared_b32, syncwarp,
};
#[cfg(flashattn_sm90a)]
use crate::arch::sm90::{
    cp_async_bulk_commit_group, cp_async_bulk_wait_group, cp_async_bulk_wait_group_read, cp_reduce_async_bulk_add_f32,
    fence_proxy_async_shared,
};
use crate::config::{
    dkdv_takes_key_block_order, dq_tiled_index, MmaBackwardConfig, MmaBackwardDqConfig, BLOCK_MASK_SIZE,
    DQ_CONVERT_THREADS,
};
use crate::element::Element;
use crate::masking::{BlockMask, Dropout, KeyColumnScan, ScoreRules, Sequence, MODS_DROPOUT, MODS_SCORES};
use crate::mma_tile::{copy_tile_async, copy_tile_async_general, x4_offset_col_pairs, x4_offset_row_major};
use crate::params::{BackwardParams, Strides};
use crate::philox::half_flags;

/// dkdv_mma: query columns of S^T handled at once (a block is processed in slices of it), and
/// the register-array bound of a warp's dK / dV / dQ n-tiles.
const SLICE_M: usize = 32;
const MAX_DT: usize = 16;
/// dq_mma: n-tiles of S over a key block, n-tiles of dQ.
const MAX_NT: usize = 16;
const MAX_DQT: usize = 32;

/// Copies `BM` f32 of a per-row statistic (LSE*log2 e or D) of query rows `row0..` into shared
/// memory. The arrays are padded to `stat_pitch` rows (a multiple of every block size), so whole
/// blocks are read with 16-byte copies and no bounds checks.
#[inline(always)]
pub(crate) unsafe fn copy_stats_async<const BM: usize>(src: u64, first: usize, smem: u32, threads: usize) {
    let mut idx = thread_idx_x_reread() as usize;
    while idx < BM / 4 {
        cp_async_cg_16(smem + 16 * idx as u32, (src as *const f32).add(first + 4 * idx) as *const u8, 16);
        idx += threads;
    }
}

/// Writes a `rows x head_dim` tile of 16-bit values staged in shared memory (pitch `pitch`) to
/// global rows `first_row..` (only those below `valid_rows`), 16 bytes per thread and step.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn store_tile(
    smem: u32,
    pitch: usize,
    rows: usize,
    dst: u64,
    strides: &Strides,
    b: usize,
    h: usize,
    first_row: usize,
    valid_rows: usize,
    head_dim: usize,
    first_thread: usize,
    threads: usize,
) {
    let chunks = head_dim / 8;
    let mut idx = first_thread;
    while idx < rows * chunks {
        let (r, c) = (idx / chunks, idx % chunks);
        let row = first_row + r;
        if row < valid_rows {
            let v = ld_shared_v4_b32(smem + (r * pitch + c * 16) as u32);
            let ptr = (dst as *mut u16).add((strides.offset(b, row, h) + (c * 8) as u64) as usize);
            st_global_v4_b32(ptr as *mut u8, v);
        }
        idx += threads;
    }
}

/// Adds this warp's slice of a query block's dQ (rows `row0..row0+16` of the block, n-tiles
/// `col_tile0..col_tile0+nt_w`, in the m16n8 accumulator layout) to the block's rows of
/// `dq_accum` (`block_rows`, `D` f32 per row). sm_80: `red.global.add` straight from registers.
#[cfg(not(flashattn_sm90a))]
#[inline(always)]
unsafe fn add_dq_block<const D: usize, const BM: usize>(
    acc: &[[f32; 4]; MAX_DT],
    nt_w: usize,
    block_rows: *mut f32,
    row0: usize,
    col_tile0: usize,
    lane: usize,
    _cfg: MmaBackwardConfig,
) {
    let (g, t) = (lane / 4, lane % 4);
    let row = block_rows.add((row0 + g) * D);
    let mut dt = 0;
    while dt < nt_w {
        let col = (col_tile0 + dt) * 8 + 2 * t;
        red_global_add_f32(row.add(col), acc[dt][0]);
        red_global_add_f32(row.add(col + 1), acc[dt][1]);
        red_global_add_f32(row.add(8 * D + col), acc[dt][2]);
        red_global_add_f32(row.add(8 * D + col + 1), acc[dt][3]);
        dt += 1;
    }
}

/// sm_90a: every warp writes its slice into the block's f32 staging tile; after a barrier, one
/// thread per row hands the row to the copy engine (`cp.reduce.async.bulk ... add.f32`): whole
/// 512-byte rows reduced in L2 instead of 32 scattered 4-byte atomics per thread. The staging
/// tile is rewritten only after `cp.async.bulk.wait_group.read` (next block, before its barrier).
#[cfg(flashattn_sm90a)]
#[inline(always)]
unsafe fn add_dq_block<const D: usize, const BM: usize>(
    acc: &[[f32; 4]; MAX_DT],
    nt_w: usize,
    block_rows: *mut f32,
    row0: usize,
    col_tile0: usize,
    lane: usize,
    cfg: MmaBackwardConfig,
) {
    let (g, t) = (lane / 4, lane % 4);
    let pitch = cfg.dq_stage_pitch();
    let stage = dynamic_smem_base() + cfg.dq_stage_offset() as u32;
    let mut dt = 0;
    while dt < nt_w {
        let col = (col_tile0 + dt) * 8 + 2 * t;
        st_shared_v2_f32(stage + ((row0 + g) * pitch + 4 * col) as u32, [acc[dt][0], acc[dt][1]]);
        st_shared_v2_f32(stage + ((row0 + g + 8) * pitch + 4 * col) as u32, [acc[dt][2], acc[dt][3]]);
        dt += 1;
    }
    fence_proxy_async_shared(); // these generic-proxy writes, visible to the copy engine ...
    _syncthreads(); // ... once every warp has written its slice
                    // Each warp issues BM / warps of the rows from its first lanes (bulk operations of one warp
                    // are issued one lane at a time, so spreading them over the warps keeps that short).
    if let Some(row) = dq_reduce_row(lane, cfg) {
        cp_reduce_async_bulk_add_f32(block_rows.add(row * D), stage + (row * pitch) as u32, (4 * D) as u32);
        cp_async_bulk_commit_group();
    }
}

/// The staging row whose bulk reduction this thread issues, if any (see `add_dq_block`).
#[cfg(flashattn_sm90a)]
#[inline(always)]
fn dq_reduce_row(lane: usize, cfg: MmaBackwardConfig) -> Option<usize> {
    let rows_per_warp = cfg.block_m / cfg.warps();
    let warp = thread_idx_x_reread() as usize / 32;
    (lane < rows_per_warp).then_some(warp * rows_per_warp + lane)
}

/// dK, dV (and dQ through atomics unless `p.dq_accum` is 0). Grid: (ceil(seqlen_k / BN), heads_kv, batch).
#[inline(always)]
pub unsafe fn dkdv_mma<
    E: Element,
    const D: usize,
    const BM: usize,
    const BN: usize,
    const DS: usize,
    const CAUSAL: bool,
    const MASKED: bool,
    const MODS: u32,
>(
    p: &BackwardParams,
) {
    let cfg = MmaBackwardConfig { head_dim: D, block_m: BM, block_n: BN, d_split: DS };
    const {
        assert!(BM % SLICE_M == 0 && D / 8 / DS <= MAX_DT && BN / 16 * DS * 32 <= 1024);
        assert!(
            (MASKED || MODS == 0) && (!MASKED || !CAUSAL && BLOCK_MASK_SIZE % BM == 0 && BLOCK_MASK_SIZE % BN == 0)
        );
    };
    let threads = cfg.threads();
    let pitch = cfg.smem_pitch();
    let ds_pitch = cfg.ds_pitch();
    let kt_d = D / 16; // k-steps over the head dim
    let dt_w = D / 8 / DS; // this warp's n-tiles of dK / dV

    let tid = _thread_idx_x() as usize;
    let (warp, lane) = (tid / 32, tid % 32);
    let (g, t) = (lane / 4, lane % 4);
    let warp_key = 16 * (warp % cfg.key_warps()); // first of this warp's 16 keys in the block
    let d_part = warp / cfg.key_warps(); // which 1/DS of the dK / dV columns

    // Block-sparse: the key blocks of a head longest first (`BackwardParams::key_block_order`),
    // in the builds that take the order (`dkdv_takes_key_block_order`).
    let key_block =
        |x: usize, h_kv: usize| if MASKED && dkdv_takes_key_block_order(MODS) { p.dkdv_key_block(x, h_kv) } else { x };
    let key0 = key_block(_block_idx_x() as usize, _block_idx_y() as usize) * BN;
    let h_kv = _block_idx_y() as usize;
    let b = _block_idx_z() as usize;
    let heads = p.heads as usize;
    let group = p.group();
    // Masked builds: entry b of a packed batch (rows `q_start + row`, keys `k_start + key`).
    let seq = Sequence::for_build::<MASKED>(&p.mask, b, p.seqlen_q, p.seqlen_k);
    let (n_q, n_k, head_dim) = (seq.n_q, seq.n_k, p.head_dim as usize);
    let (q_start, k_start) = (seq.q_start, seq.k_start);
    if MASKED && key0 >= n_k {
        return; // a shorter entry of a packed batch
    }
    let stat_pitch = p.stat_pitch as usize;
    let scale_log2 = p.scale_log2;
    let with_dq = p.dq_accum != 0;

    let smem = dynamic_smem_base();
    let k_s = smem + cfg.k_offset() as u32;
    let v_s = smem + cfg.v_offset() as u32;
    let q_s = smem + cfg.q_offset() as u32;
    let do_s = smem + cfg.do_offset() as u32;
    let lse_s = smem + cfg.lse_offset() as u32;
    let delta_s = smem + cfg.delta_offset() as u32;
    let ds_s = smem + cfg.ds_offset() as u32;
    let tile_bytes = (BM * pitch) as u32;
    let stat_bytes = (4 * BM) as u32;

    // Causal (bottom-right): key j is seen by rows i >= j + n_q - n_k; query blocks wholly
    // before the first row that sees key0 are skipped.
    // Masked builds: the rows the window shows these keys (ALiBi aside, the rules are the same for
    // every head), and only the blocks the block mask keeps (`next_it`).
    let (first_block, end_block) = if MASKED {
        let (lo, hi) = ScoreRules::new(&p.mask, b, h_kv * group, &seq).query_range(key0, (key0 + BN).min(n_k), n_q);
        (lo / BM, hi.div_ceil(BM))
    } else {
        let first_row = if CAUSAL { (key0 as i64 + n_q as i64 - n_k as i64).clamp(0, n_q as i64) as usize } else { 0 };
        (first_row / BM, n_q.div_ceil(BM))
    };
    let blocks_per_head = end_block.saturating_sub(first_block);
    let total = group * blocks_per_head;
    // Iteration `it` -> (query head, first row) of its block: heads of the group outermost.
    let block_of =
        |it: usize| (h_kv * group + it / blocks_per_head.max(1), (first_block + it % blocks_per_head.max(1)) * BM);
    // Masked builds: the first iteration >= it whose block the block mask keeps.
    let scan = KeyColumnScan { m: &p.mask, first_head: h_kv * group, key: key0, first_block, end_block, bm: BM, total };
    let first_kept = |it: usize| scan.first_kept(it, lane);
    let next_it = |it: usize| if MASKED { first_kept(it + 1) } else { it + 1 };
    let load_block = |it: usize, stage: u32| {
        // Re-read (opaque to LLVM), so that the per-thread copy offsets are recomputed at each
        // block instead of being hoisted out of the loop and kept alive in (scarce) registers.
        let copy_tid = thread_idx_x_reread() as usize;
        let (hq, row0) = block_of(it);
        let stat = (b * heads + hq) * stat_pitch + row0;
        copy_tile_async::<D>(
            p.q,
            &p.q_strides,
            b,
            hq,
            q_start + row0,
            q_start + n_q,
            BM,
            head_dim,
            q_s + stage * tile_bytes,
            pitch,
            copy_tid,
            threads,
        );
        copy_tile_async::<D>(
            p.d_o,
            &p.do_strides,
            b,
            hq,
            q_start + row0,
            q_start + n_q,
            BM,
            head_dim,
            do_s + stage * tile_bytes,
            pitch,
            copy_tid,
            threads,
        );
        copy_stats_async::<BM>(p.lse_log2, stat, lse_s + stage * stat_bytes, threads);
        copy_stats_async::<BM>(p.delta, stat, delta_s + stage * stat_bytes, threads);
    };

    let (kv_row, k_end) = (k_start + key0, k_start + n_k);
    copy_tile_async::<D>(p.k, &p.k_strides, b, h_kv, kv_row, k_end, BN, head_dim, k_s, pitch, tid, threads);
    copy_tile_async::<D>(p.v, &p.v_strides, b, h_kv, kv_row, k_end, BN, head_dim, v_s, pitch, tid, threads);
    let first = if MASKED { first_kept(0) } else { 0 };
    if first < total {
        load_block(first, 0);
    }
    cp_async_commit_group();

    let a_off = x4_offset_row_major(lane, pitch);
    let b_off = x4_offset_col_pairs(lane, pitch);
    let ds_a_off = x4_offset_col_pairs(lane, ds_pitch);
    let mut acc_dv = [[0.0f32; 4]; MAX_DT];
    let mut acc_dk = [[0.0f32; 4]; MAX_DT];

    let mut it = first;
    let mut iteration = 0; // stages alternate per processed block
    while it < total {
        let parity = if MASKED { iteration } else { it }; // (plain builds: the same, one counter)
        let stage = (parity % 2) as u32;
        let (hq, row0) = block_of(it);
        cp_async_wait_group::<0>(); // this block (and K, V) landed for this thread ...
        _syncthreads(); // ... and for all; every warp is done with the previous block's buffers.
                        // Plain builds evaluate `it + 1` here and again at the bottom rather than keep it alive
                        // across the loop body (one register fewer in a kernel at the 255 limit); masked builds
                        // scan the block mask once.
                        // (Masked builds park it in this warp's scratch slot past the tiles until the bottom.)
        let launch_smem = if cfg!(flashattn_sm90a) { cfg.smem_bytes_sm90() } else { cfg.smem_bytes() };
        let slot = smem + (launch_smem + 4 * warp) as u32;
        let next = if MASKED { next_it(it) } else { it + 1 };
        if MASKED {
            st_shared_b32(slot, next as u32);
        }
        if next < total {
            load_block(next, 1 - stage);
        }
        cp_async_commit_group();
        let q_st = q_s + stage * tile_bytes;
        let do_st = do_s + stage * tile_bytes;

        // Per 32-query slice of the block (bounds the registers of S^T, dP^T and their
        // fragments beside the dK, dV accumulators): S^T = K Q^T and dP^T = V dO^T for this
        // warp's 16 keys, then P^T and dS^T, then dV += P^T dO and dK += dS^T Q.
        let lse_st = lse_s + stage * stat_bytes;
        let delta_st = delta_s + stage * stat_bytes;
        let needs_mask =
            !MASKED && (key0 + BN > n_k || (CAUSAL && (key0 + BN - 1) as i64 > row0 as i64 + n_k as i64 - n_q as i64));
        // Masked builds: the rules of this query head (ALiBi slopes are per head), whether this
        // block needs the per-element window test, and the dropout stream of (b, hq).
        let rules = ScoreRules::new(&p.mask, b, hq, &seq);
        let modifies = MODS & MODS_SCORES != 0 && rules.modifies();
        let masks = MASKED && !rules.all_visible(row0, row0 + BM, key0, key0 + BN);
        let dropout = Dropout::new(&p.mask, b, hq, p.heads);
        let drop = MODS & MODS_DROPOUT != 0 && dropout.on();
        let write_ds = with_dq && d_part == 0; // warps of a d-split compute the same dS
        let mut slice = 0;
        while slice < BM / SLICE_M {
            let q0 = slice * SLICE_M;
            let mut st = [[0.0f32; 4]; SLICE_M / 8];
            let mut dpt = [[0.0f32; 4]; SLICE_M / 8];
            let mut kk = 0;
            while kk < kt_d {
                let ak = ldmatrix_x4(k_s + (warp_key * pitch) as u32 + a_off + (kk * 32) as u32);
                let av = ldmatrix_x4(v_s + (warp_key * pitch) as u32 + a_off + (kk * 32) as u32);
                let mut np = 0;
                while np < SLICE_M / 16 {
                    let off = ((q0 + 16 * np) * pitch + kk * 32) as u32 + b_off;
                    let qb = ldmatrix_x4(q_st + off);
                    E::mma(&mut st[2 * np], ak, [qb[0], qb[1]]);
                    E::mma(&mut st[2 * np + 1], ak, [qb[2], qb[3]]);
                    let ob = ldmatrix_x4(do_st + off);
                    E::mma(&mut dpt[2 * np], av, [ob[0], ob[1]]);
                    E::mma(&mut dpt[2 * np + 1], av, [ob[2], ob[3]]);
                    np += 1;
                }
                kk += 1;
            }

            // P^T and dS^T, packed straight into A fragments (keys are the rows). Padding rows
            // past seqlen_q have lse_log2 = +inf, so P = 2^-inf = 0 there; keys past seqlen_k
            // and (causal) keys after a row's diagonal are masked by select, only in blocks
            // that have any.
            let mut p_frag = [[0u32; 4]; SLICE_M / 16];
            let mut ds_frag = [[0u32; 4]; SLICE_M / 16];
            // Per row half (key g or g + 8 of the warp): the first query column of the block
            // that sees the key (causal: row >= key + n_q - n_k), or none past the sequence end.
            // One i32 per half, so the mask costs no registers per element.
            let mut first_visible = [0i32; 2];
            let mut half = 0;
            while half < 2 {
                let key = key0 + warp_key + g + 8 * half;
                first_visible[half] = if key >= n_k {
                    i32::MAX
                } else if CAUSAL {
                    key as i32 + n_q as i32 - n_k as i32 - row0 as i32
                } else {
                    i32::MIN
                };
                half += 1;
            }
            // Dropout drop flags of this warp's 16 keys x the slice's 32 queries (see `st_bits`).
            let dropped = if drop { dropout.st_bits(key0 + warp_key, row0 + q0, lane) } else { [0; 2] };
            let mut nt = 0;
            while nt < SLICE_M / 8 {
                let q_col = q0 + nt * 8 + 2 * t;
                let lse2 = ld_shared_v2_f32(lse_st + 4 * q_col as u32);
                let delta = ld_shared_v2_f32(delta_st + 4 * q_col as u32);
                let mut half = 0;
                while half < 2 {
                    let mut pv = [0.0f32; 2];
                    let mut dsv = [0.0f32; 2];
                    let mut e = 0;
                    while e < 2 {
                        let mut s = st[nt][2 * half + e];
                        let mut cap_slope = 1.0;
                        let (row, key) = ((row0 + q_col + e) as i32, (key0 + warp_key + g + 8 * half) as i32);
                        if modifies {
                            (s, cap_slope) = rules.apply(s, row, key);
                        }
                        let mut pe = ex2(fma(s, scale_log2, -lse2[e]));
                        // A row with no visible key has LSE = -inf, pe = +inf: always masked here.
                        // Without causal, one test per key (visible, or past the end), as in
                        // the wgmma kernel's `p_from_scores`.
                        let hidden = if CAUSAL {
                            ((q_col + e) as i32) < first_visible[half]
                        } else {
                            first_visible[half] == i32::MAX
                        };
                        if needs_mask && hidden {
                            pe = 0.0;
                        }
                        if masks && !rules.visible(row, key) {
                            pe = 0.0;
                        }
                        let mut dp = dpt[nt][2 * half + e];
                        pv[e] = pe;
                        if drop {
                            // dV takes the dropped, rescaled P; dS = P * (dP o Z / keep - D).
                            let flags = half_flags(dropped[e], (g % 2) as u32, nt >= 2);
                            let kept = (flags >> (8 * (2 * (nt % 2) + half) + 7)) & 1 == 0;
                            pv[e] = if kept { pe * dropout.scale } else { 0.0 };
                            dp = if kept { dp * dropout.scale } else { 0.0 };
                        }
                        dsv[e] = pe * (dp - delta[e]) * cap_slope;
                        e += 1;
                    }
                    // Accumulator layout -> A layout (as P in the forward): n-tile 2k gives
                    // a0 / a1, n-tile 2k+1 gives a2 / a3 of k-step k.
                    p_frag[nt / 2][(nt % 2) * 2 + half] = E::pack2(pv[0], pv[1]);
                    let ds_bits = E::pack2(dsv[0], dsv[1]);
                    ds_frag[nt / 2][(nt % 2) * 2 + half] = ds_bits;
                    if write_ds {
                        // sm_90a: the address from a re-read thread index (kept across the slice
                        // loop, these addresses were what that build spilled; the sm_80 build
                        // spills the other way round, so it keeps them).
                        let (key, col) = if cfg!(flashattn_sm90a) {
                            let lane_r = thread_idx_x_reread() as usize % 32;
                            let warp_r = thread_idx_x_reread() as usize / 32;
                            (16 * (warp_r % cfg.key_warps()) + lane_r / 4, q0 + nt * 8 + 2 * (lane_r % 4))
                        } else {
                            (warp_key + g, q_col)
                        };
                        st_shared_b32(ds_s + ((key + 8 * half) * ds_pitch + 2 * col) as u32, ds_bits);
                    }
                    half += 1;
                }
                nt += 1;
            }

            // dV += P^T dO and dK += dS^T Q over this warp's columns (B fragments by ldmatrix.trans).
            let col_byte0 = d_part * dt_w * 16;
            let mut kk = 0;
            while kk < SLICE_M / 16 {
                let mut dp = 0;
                while dp < dt_w / 2 {
                    let off = ((q0 + 16 * kk) * pitch + col_byte0 + dp * 32) as u32 + a_off;
                    let ob = ldmatrix_x4_trans(do_st + off);
                    E::mma(&mut acc_dv[2 * dp], p_frag[kk], [ob[0], ob[1]]);
                    E::mma(&mut acc_dv[2 * dp + 1], p_frag[kk], [ob[2], ob[3]]);
                    let qb = ldmatrix_x4_trans(q_st + off);
                    E::mma(&mut acc_dk[2 * dp], ds_frag[kk], [qb[0], qb[1]]);
                    E::mma(&mut acc_dk[2 * dp + 1], ds_frag[kk], [qb[2], qb[3]]);
                    dp += 1;
                }
                kk += 1;
            }
            slice += 1;
        }

        // dQ_block += dS K: warp w takes m-tile w % m_tiles of the block and 1 / col_split of
        // the columns; A = dS read transposed from its key-major tile.
        if with_dq {
            // sm_90a: the previous block's bulk reductions must have read their staging rows
            // before anyone writes the stage again (after the barrier).
            #[cfg(flashattn_sm90a)]
            if dq_reduce_row(lane, cfg).is_some() {
                cp_async_bulk_wait_group_read::<0>();
            }
            _syncthreads(); // dS of every warp is in shared memory
            let m_tile = warp % cfg.dq_m_tiles();
            let nt_w = D / 8 / cfg.dq_col_split();
            let col_tile0 = (warp / cfg.dq_m_tiles()) * nt_w;
            let mut acc = [[0.0f32; 4]; MAX_DT];
            let mut kk = 0;
            while kk < BN / 16 {
                let a = ldmatrix_x4_trans(ds_s + (16 * kk * ds_pitch + 32 * m_tile) as u32 + ds_a_off);
                let mut dp = 0;
                while dp < nt_w / 2 {
                    let kb = ldmatrix_x4_trans(k_s + (16 * kk * pitch + (col_tile0 + 2 * dp) * 16) as u32 + a_off);
                    E::mma(&mut acc[2 * dp], a, [kb[0], kb[1]]);
                    E::mma(&mut acc[2 * dp + 1], a, [kb[2], kb[3]]);
                    dp += 1;
                }
                kk += 1;
            }
            // Padding rows exist in dq_accum (stat_pitch), and their dS is 0: no bounds check.
            let block_rows = (p.dq_accum as *mut f32).add(((b * heads + hq) * stat_pitch + row0) * D);
            add_dq_block::<D, BM>(&acc, nt_w, block_rows, 16 * m_tile, col_tile0, lane, cfg);
        }
        it = if MASKED { ld_shared_b32(slot) as usize } else { it + 1 };
        iteration += 1;
    }

    // Epilogue: stage dV and scale * dK through the (now free) V and K tiles, then 16-byte stores.
    cp_async_wait_group::<0>(); // no copy may still land in the tiles (e.g. `total == 0`)
    #[cfg(flashattn_sm90a)]
    if with_dq && dq_reduce_row(tid % 32, cfg).is_some() {
        cp_async_bulk_wait_group::<0>(); // the dQ stage stays allocated until its reductions are done
    }
    _syncthreads(); // every warp is done reading K and V
                    // Indices re-read from the special registers (opaque to LLVM): values derived from them
                    // are recomputed here instead of being kept alive in registers across the whole loop.
    let tid = thread_idx_x_reread() as usize;
    let (warp, lane) = (tid / 32, tid % 32);
    let (g, t) = (lane / 4, lane % 4);
    let warp_key = 16 * (warp % cfg.key_warps());
    let d_part = warp / cfg.key_warps();
    let scale = p.scale;
    let mut dt = 0;
    while dt < dt_w {
        let mut half = 0;
        while half < 2 {
            let off = ((warp_key + g + 8 * half) * pitch + (d_part * dt_w + dt) * 16 + 4 * t) as u32;
            st_shared_b32(v_s + off, E::pack2(acc_dv[dt][2 * half], acc_dv[dt][2 * half + 1]));
            st_shared_b32(k_s + off, E::pack2(acc_dk[dt][2 * half] * scale, acc_dk[dt][2 * half + 1] * scale));
            half += 1;
        }
        dt += 1;
    }
    _syncthreads();
    let (x, h_kv, b) =
        (block_idx_reread::<0>() as usize, block_idx_reread::<1>() as usize, block_idx_reread::<2>() as usize);
    let key0 = key_block(x, h_kv) * BN;
    let (first_key, k_end) = (k_start + key0, k_start + n_k);
    store_tile(v_s, pitch, BN, p.dv, &p.dv_strides, b, h_kv, first_key, k_end, head_dim, tid, threads);
    store_tile(k_s, pitch, BN, p.dk, &p.dk_strides, b, h_kv, first_key, k_end, head_dim, tid, threads);
}

/// The dQ kernel's tile copies: [`copy_tile_async`], but the general loop at d = 64, where this
/// kernel (128 threads, 55 KB of shared memory) fits three CTAs on an SM only at <= 168
/// registers: the fixed-step pointers took the plain builds from 166-168 to 170 and the dropout
/// build from 168 to 248 (two CTAs per SM; the deterministic backward at d = 64 1-4% slower,
/// call `s17c10`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn copy_dq_tile<const D: usize>(
    src: u64,
    strides: &Strides,
    b: usize,
    h: usize,
    first_row: usize,
    valid_rows: usize,
    rows: usize,
    head_dim: usize,
    smem: u32,
    pitch: usize,
    tid: usize,
    threads: usize,
) {
    if D == 64 {
        copy_tile_async_general::<D>(
            src, strides, b, h, first_row, valid_rows, rows, head_dim, smem, pitch, tid, threads,
        );
    } else {
        copy_tile_async::<D>(src, strides, b, h, first_row, valid_rows, rows, head_dim, smem, pitch, tid, threads);
    }
}

/// Deterministic dQ: one CTA per `BM` query rows, 16 rows per warp, K/V blocks double-buffered.
/// Grid: (ceil(seqlen_q / BM), heads, batch).
#[inline(always)]
pub unsafe fn dq_mma<
    E: Element,
    const D: usize,
    const BM: usize,
    const BN: usize,
    const CAUSAL: bool,
    const MASKED: bool,
    const MODS: u32,
>(
    p: &BackwardParams,
) {
    let cfg = MmaBackwardDqConfig { head_dim: D, block_m: BM, block_n: BN };
    const {
        assert!(BN / 8 <= MAX_NT && D / 8 <= MAX_DQT);
        assert!(
            (MASKED || MODS == 0)
                && (!MASKED || !CAUSAL && BLOCK_MASK_SIZE % BM == 0 && BLOCK_MASK_SIZE % BN == 0 && BN % 32 == 0)
        );
    };
    let threads = cfg.threads();
    let pitch = cfg.smem_pitch();
    let nt_s = BN / 8;
    let dt_q = D / 8;
    let kt_d = D / 16;

    let tid = _thread_idx_x() as usize;
    let (warp, lane) = (tid / 32, tid % 32);
    let (g, t) = (lane / 4, lane % 4);
    // Causal: heaviest (last) query blocks first, as the forward.
    let m_block = if CAUSAL || MASKED { p.seqlen_q.div_ceil(BM as u32) - 1 - _block_idx_x() } else { _block_idx_x() };
    let row0 = m_block as usize * BM;
    let h = _block_idx_y() as usize;
    let b = _block_idx_z() as usize;
    let group = p.group();
    let h_kv = h / group;
    let seq = Sequence::for_build::<MASKED>(&p.mask, b, p.seqlen_q, p.seqlen_k);
    let (n_q, n_k, head_dim) = (seq.n_q, seq.n_k, p.head_dim as usize);
    let (q_start, k_start) = (seq.q_start, seq.k_start);
    let (q_end, k_end) = (q_start + n_q, k_start + n_k);
    if MASKED && row0 >= n_q {
        return;
    }
    let rules = ScoreRules::new(&p.mask, b, h, &seq);
    let block_mask = BlockMask::new(&p.mask, h);
    let dropout = Dropout::new(&p.mask, b, h, p.heads);
    let scale_log2 = p.scale_log2;

    let q_s = dynamic_smem_base();
    let do_s = q_s + (BM * pitch) as u32;
    let k_s = do_s + (BM * pitch) as u32;
    let v_s = k_s + (2 * BN * pitch) as u32;
    let stage_bytes = (BN * pitch) as u32;

    let (first_block, n_blocks) = if MASKED {
        let (lo, hi) = rules.key_range(row0, (row0 + BM).min(n_q));
        (lo / BN, hi.div_ceil(BN))
    } else {
        let kv_end =
            if CAUSAL { ((row0 + BM) as i64 + n_k as i64 - n_q as i64).clamp(0, n_k as i64) as usize } else { n_k };
        (0, kv_end.div_ceil(BN))
    };
    let next_block =
        |j: usize| if MASKED { block_mask.first_active_key_block(row0, j + 1, n_blocks, BN, lane) } else { j + 1 };
    let first =
        if MASKED { block_mask.first_active_key_block(row0, first_block, n_blocks, BN, lane) } else { first_block };
    let q_row = q_start + row0;
    copy_dq_tile::<D>(p.q, &p.q_strides, b, h, q_row, q_end, BM, head_dim, q_s, pitch, tid, threads);
    copy_dq_tile::<D>(p.d_o, &p.do_strides, b, h, q_row, q_end, BM, head_dim, do_s, pitch, tid, threads);
    if first < n_blocks {
        let kv_row = k_start + first * BN;
        copy_dq_tile::<D>(p.k, &p.k_strides, b, h_kv, kv_row, k_end, BN, head_dim, k_s, pitch, tid, threads);
        copy_dq_tile::<D>(p.v, &p.v_strides, b, h_kv, kv_row, k_end, BN, head_dim, v_s, pitch, tid, threads);
    }
    cp_async_commit_group();

    // This lane's rows (g and g + 8 of the warp's 16): statistics from the padded arrays.
    let warp_row = 16 * warp;
    let stat = (b * p.heads as usize + h) * p.stat_pitch as usize + row0 + warp_row + g;
    let lse2 = [*(p.lse_log2 as *const f32).add(stat), *(p.lse_log2 as *const f32).add(stat + 8)];
    let delta = [*(p.delta as *const f32).add(stat), *(p.delta as *const f32).add(stat + 8)];
    let a_off = x4_offset_row_major(lane, pitch);
    let b_off = x4_offset_col_pairs(lane, pitch);
    let mut acc = [[0.0f32; 4]; MAX_DQT];

    let mut j = first;
    let mut iteration = 0; // stages alternate per processed block
    while j < n_blocks {
        let parity = if MASKED { iteration } else { j }; // (plain builds: the same, one counter)
        let stage = (parity % 2) as u32;
        let col0 = j * BN;
        cp_async_wait_group::<0>();
        _syncthreads(); // K_j, V_j landed for all; the other stage is no longer read
        let next = next_block(j); // (masked builds: a warp-wide scan of the block mask)
        if next < n_blocks {
            let (ks, vs) = (k_s + (1 - stage) * stage_bytes, v_s + (1 - stage) * stage_bytes);
            let kv_row = k_start + next * BN;
            copy_dq_tile::<D>(p.k, &p.k_strides, b, h_kv, kv_row, k_end, BN, head_dim, ks, pitch, tid, threads);
            copy_dq_tile::<D>(p.v, &p.v_strides, b, h_kv, kv_row, k_end, BN, head_dim, vs, pitch, tid, threads);
        }
        cp_async_commit_group();
        let k_st = k_s + stage * stage_bytes;
        let v_st = v_s + stage * stage_bytes;

        // S = Q K_j^T and dP = dO V_j^T for this warp's 16 rows.
        let mut s = [[0.0f32; 4]; MAX_NT];
        let mut dpv = [[0.0f32; 4]; MAX_NT];
        let mut kk = 0;
        while kk < kt_d {
            let aq = ldmatrix_x4(q_s + (warp_row * pitch + kk * 32) as u32 + a_off);
            let ao = ldmatrix_x4(do_s + (warp_row * pitch + kk * 32) as u32 + a_off);
            let mut np = 0;
            while np < nt_s / 2 {
                let kb = ldmatrix_x4(k_st + (16 * np * pitch + kk * 32) as u32 + b_off);
                E::mma(&mut s[2 * np], aq, [kb[0], kb[1]]);
                E::mma(&mut s[2 * np + 1], aq, [kb[2], kb[3]]);
                let vb = ldmatrix_x4(v_st + (16 * np * pitch + kk * 32) as u32 + b_off);
                E::mma(&mut dpv[2 * np], ao, [vb[0], vb[1]]);
                E::mma(&mut dpv[2 * np + 1], ao, [vb[2], vb[3]]);
                np += 1;
            }
            kk += 1;
        }

        let first_row = row0 + warp_row;
        let needs_mask = !MASKED
            && (col0 + BN > n_k || (CAUSAL && (col0 + BN - 1) as i64 > first_row as i64 + n_k as i64 - n_q as i64));
        let modifies = MODS & MODS_SCORES != 0 && rules.modifies();
        let masks = MASKED && !rules.all_visible(first_row, first_row + 16, col0, col0 + BN);
        let drop = MODS & MODS_DROPOUT != 0 && dropout.on();
        // Dropout drop flags of this warp's 16 rows, two words per 32 keys (see `s_bits`).
        let mut dropped = [[0u32; 2]; MAX_NT / 4];
        if drop {
            let mut kp = 0;
            while kp < nt_s / 4 {
                dropped[kp] = dropout.s_bits(first_row, col0 + 32 * kp, lane);
                kp += 1;
            }
        }
        // Per row half: the last key column of the block the row sees (causal: col <= row +
        // n_k - n_q; always col < n_k), relative to col0. One i32 per half.
        let mut last_visible = [0i32; 2];
        let mut half = 0;
        while half < 2 {
            let end = n_k as i32 - 1 - col0 as i32;
            let diag = (first_row + g + 8 * half) as i32 + n_k as i32 - n_q as i32 - col0 as i32;
            last_visible[half] = if CAUSAL { end.min(diag) } else { end };
            half += 1;
        }
        let mut ds_frag = [[0u32; 4]; MAX_NT / 2];
        let mut nt = 0;
        while nt < nt_s {
            let mut half = 0;
            while half < 2 {
                let mut dsv = [0.0f32; 2];
                let mut e = 0;
                while e < 2 {
                    let mut score = s[nt][2 * half + e];
                    let mut cap_slope = 1.0;
                    let (row, col) = ((first_row + g + 8 * half) as i32, (col0 + nt * 8 + 2 * t + e) as i32);
                    if modifies {
                        (score, cap_slope) = rules.apply(score, row, col);
                    }
                    let mut pe = ex2(fma(score, scale_log2, -lse2[half]));
                    if needs_mask && (nt * 8 + 2 * t + e) as i32 > last_visible[half] {
                        pe = 0.0;
                    }
                    if masks && !rules.visible(row, col) {
                        pe = 0.0;
                    }
                    let mut dp = dpv[nt][2 * half + e];
                    if drop {
                        let flags = half_flags(dropped[nt / 4][e], (g % 2) as u32, nt % 4 >= 2);
                        let kept = (flags >> (8 * (2 * half + nt % 2) + 7)) & 1 == 0;
                        dp = if kept { dp * dropout.scale } else { 0.0 };
                    }
                    dsv[e] = pe * (dp - delta[half]) * cap_slope;
                    e += 1;
                }
                ds_frag[nt / 2][(nt % 2) * 2 + half] = E::pack2(dsv[0], dsv[1]);
                half += 1;
            }
            nt += 1;
        }

        // dQ += dS K_j (K as a [key][dim] B operand, read transposed).
        let mut kk = 0;
        while kk < nt_s / 2 {
            let mut dp = 0;
            while dp < dt_q / 2 {
                let kb = ldmatrix_x4_trans(k_st + (16 * kk * pitch + dp * 32) as u32 + a_off);
                E::mma(&mut acc[2 * dp], ds_frag[kk], [kb[0], kb[1]]);
                E::mma(&mut acc[2 * dp + 1], ds_frag[kk], [kb[2], kb[3]]);
                dp += 1;
            }
            kk += 1;
        }
        j = if MASKED { next } else { j + 1 };
        iteration += 1;
    }

    // Epilogue: scale, stage through this warp's own rows of the Q tile, 16-byte stores. Every
    // thread copied part of the Q tile: a CTA barrier after the waits, so that no copy lands in
    // these rows after they are rewritten (with no key block, nothing waited for them before).
    cp_async_wait_group::<0>();
    _syncthreads();
    let scale = p.scale;
    let mut dt = 0;
    while dt < dt_q {
        let mut half = 0;
        while half < 2 {
            let off = ((warp_row + g + 8 * half) * pitch + dt * 16 + 4 * t) as u32;
            st_shared_b32(q_s + off, E::pack2(acc[dt][2 * half] * scale, acc[dt][2 * half + 1] * scale));
            half += 1;
        }
        dt += 1;
    }
    syncwarp();
    store_tile(
        q_s + (warp_row * pitch) as u32,
        pitch,
        16,
        p.dq,
        &p.dq_strides,
        b,
        h,
        q_start + row0 + warp_row,
        q_end,
        head_dim,
        lane,
        32,
    );
}

/// `dq = scale * dq_accum` in the input type. Row-major `dq_accum`: 8 columns of a row per
/// thread (two 16-byte loads, one 16-byte store). `TILED` (the wgmma kernel's layout,
/// `config::dq_tiled_index`): 8 columns of the rows `r` and `r + 8` of a 16-row group per thread,
/// which are the 64 contiguous bytes at `16 * idx` floats of the head's rows, so four 16-byte
/// loads and two 16-byte stores (threads with 8-byte loads of one row each read the same sectors
/// with twice the load instructions). With `p.dq_done` set (the wgmma backward), the dK/dV grid
/// may still run: each CTA first waits for its (batch, KV head) to be done
/// (`BackwardParams::dq_done`).
/// Grid: (ceil(`dq_convert_threads`(seqlen_q, head_dim, TILED) / DQ_CONVERT_THREADS), heads, batch).
#[inline(always)]
pub unsafe fn dq_convert<E: Element, const TILED: bool>(p: &BackwardParams) {
    let idx = _block_idx_x() * DQ_CONVERT_THREADS as u32 + _thread_idx_x();
    let h = _block_idx_y() as usize;
    let b = _block_idx_z() as usize;
    let seq = Sequence::of(&p.mask, b, p.seqlen_q, p.seqlen_k); // packed batches: entry b
    if p.dq_done != 0 {
        // Launched to overlap the dK/dV kernel (programmatic stream serialization): that grid
        // may still run, so wait until each of its CTAs of this entry's keys and KV head has
        // published its sums. It cannot wait on this grid: this one starts only once all of its
        // CTAs are resident.
        if _thread_idx_x() == 0 {
            let group = p.group();
            let done = p.dq_done_counter(b, h / group);
            let target = (seq.n_k as u32).div_ceil(p.dkdv_block_n.max(1));
            while ld_acquire_gpu_u32(done) < target {
                nanosleep(500);
            }
        }
        _syncthreads(); // the acquire above orders every thread's loads below
    }
    // Coherent loads while the dK/dV grid may still run; after it (a plain launch), `.nc`.
    let load = |src: *const f32| if p.dq_done != 0 { ld_global_v4_f32(src) } else { ld_global_nc_v4_f32(src) };
    let acc_dim = p.acc_dim as usize;
    let head_rows = (p.dq_accum as *const f32).add((b * p.heads as usize + h) * p.stat_pitch as usize * acc_dim);
    let s = p.scale;
    let store = |row: usize, c: usize, x: [f32; 8]| {
        let v = [
            E::pack2(x[0] * s, x[1] * s),
            E::pack2(x[2] * s, x[3] * s),
            E::pack2(x[4] * s, x[5] * s),
            E::pack2(x[6] * s, x[7] * s),
        ];
        let dst = (p.dq as *mut u16).add((p.dq_strides.offset(b, seq.q_start + row, h) + (8 * c) as u64) as usize);
        st_global_v4_b32(dst as *mut u8, v);
    };
    // u32 divisions (a 64-bit one is a called subroutine); max: no division-by-zero panic path.
    if TILED {
        let per_group = p.head_dim.max(8); // 8 row pairs x head_dim / 8 column chunks
        let (group, pair) = ((idx / per_group) as usize, (idx % per_group) as usize);
        let (row, c) = (16 * group + pair % 8, pair / 8);
        if row >= seq.n_q {
            return;
        }
        // Chunk k: (row, 8 c + 2 k + e) at 4 k + e, (row + 8, ..) at 4 k + 2 + e. Rows up to the
        // 16-row group's end exist in dq_accum (stat_pitch), so the loads need no bound.
        let src = head_rows.add(dq_tiled_index(row, 8 * c, acc_dim));
        let q = [load(src), load(src.add(4)), load(src.add(8)), load(src.add(12))];
        store(row, c, [q[0][0], q[0][1], q[1][0], q[1][1], q[2][0], q[2][1], q[3][0], q[3][1]]);
        if row + 8 < seq.n_q {
            store(row + 8, c, [q[0][2], q[0][3], q[1][2], q[1][3], q[2][2], q[2][3], q[3][2], q[3][3]]);
        }
    } else {
        let chunks = (p.head_dim / 8).max(1);
        let (row, c) = ((idx / chunks) as usize, (idx % chunks) as usize);
        if row >= seq.n_q {
            return;
        }
        let src = head_rows.add(row * acc_dim + 8 * c);
        let (lo, hi) = (load(src), load(src.add(4)));
        store(row, c, [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]]);
    }
}
