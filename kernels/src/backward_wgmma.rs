//! The Hopper backward (sm_90a), dK/dV kernel with atomic dQ: FlashAttention's backward on
//! warpgroup MMAs (`wgmma`). See `WgmmaBackwardConfig` for the tiles and why.
//!
//! Per CTA (grid: key blocks x KV heads x batch), warpgroup `wg` owns keys `64 wg ..` of the
//! `BN`-key block; K and V stay in shared memory for the whole kernel. Per query block `i` (of
//! every query head of the GQA group, so dK and dV sum the group in registers):
//! 1. Q_i, dO_i (SW128 tiles) and their LSE*log2(e) and D rows land (`cp.async`, issued one block
//!    ahead into the other stage; `fence.proxy.async` before the barrier, as in the forward).
//! 2. `S^T = K Q_i^T` and `dP^T = V dO_i^T`: D / 16 SS MMAs each (m64 x BM, K-major operands),
//!    committed as two groups: P^T = 2^(S^T scale log2 e - LSE log2 e) is computed while the
//!    dP^T MMAs still run. Keys are the accumulator rows: lane `4 g + t` of warp `w` holds keys
//!    `16 w + g (+ 8)` and queries `8 j + 2 t (+ 1)`, so the LSE and D of a thread's columns
//!    are 8-byte shared loads.
//! 3. dS^T = P^T (dP^T - D). Both are packed to 16 bits in registers, where two adjacent 8-query
//!    accumulator chunks are exactly the A fragment of one k16 step: `dV += P^T dO_i` and
//!    `dK += dS^T Q_i` are RS MMAs with dO and Q read MN-major from the same tiles.
//! 4. dQ (unless deterministic): dS^T goes to a SW128 tile (conflict-free 4-byte stores, as the
//!    forward's epilogue); after a barrier, `dQ_i = dS K` as SS MMAs with both operands MN-major
//!    (dS^T and K are stored key-major), overlapping the dV / dK MMAs still in flight; the f32
//!    tile is staged in shared memory and added to `dq_accum` by the copy engine
//!    (`cp.reduce.async.bulk`, one 4 D-byte row per thread of the first lanes of each warp).
//! 5. Epilogue: once its dQ reductions have completed, the CTA counts itself done for its (batch,
//!    KV head) (`publish_dq_done`), which the dQ conversion, launched to overlap this grid's last
//!    CTAs, waits for; dV and `scale * dK` staged through the V and K tiles, 16-byte stores.
//!
//! Builds: plain and causal; `MASKED` (windows, block masks, packed batches; causal as a
//! window: the query blocks a key block sees, the kept ones, the per-element window test only in
//! partially visible blocks); `DROPOUT` on top (`drop_ds`), of the masked builds and of the
//! plain ones, non-causal and causal at d = 128 (see the kernel table). Softcap and ALiBi run
//! mma.sync.
//!
//! Register arrays are sized for the largest configuration and indexed only in loops with
//! constant bounds (unrolled by LLVM), as in `forward_wgmma`.
use core::arch::nvptx::{_block_idx_x, _block_idx_y, _block_idx_z, _syncthreads, _thread_idx_x};

use crate::arch::sm80::{
    clock_lo, cp_async_commit_group, cp_async_wait_group, ex2, fma, ld_shared_v2_f32, ld_shared_v4_b32,
    named_barrier_arrive, named_barrier_sync, opaque_u64, rcp, red_release_gpu_add_u32, st_global_v4_b32,
    st_shared_b32, st_shared_v4_f32, syncwarp, thread_idx_x_reread,
};
use crate::arch::sm90::{
    cp_async_bulk_commit_group, cp_async_bulk_wait_group, cp_async_bulk_wait_group_read, cp_reduce_async_bulk_add_f32,
    fence_proxy_async_global, fence_proxy_async_shared, fence_regs_f32, fence_regs_f32_prefix,
    griddepcontrol_launch_dependents, smem_desc, wgmma_commit_group, wgmma_fence, wgmma_wait_group, SWIZZLE_128B,
};
use crate::backward_mma::copy_stats_async;
use crate::config::{dkdv_takes_key_block_order, WgmmaBackwardConfig, BLOCK_MASK_SIZE, DQ_TILE_FLOATS};
use crate::element::WgmmaElement;
use crate::forward_wgmma::{
    aligned_smem_base, copy_full_tile_sw128, copy_tile_sw128, drop_packed, fence_p, k_major_step, mn_major_step,
    pack_p, wgmma_rs, wgmma_ss, MAX_KV, MAX_S,
};
use crate::masking::{zero_after, Dropout, KeyColumnScan, MaskWindow, ScoreRules, Sequence, MODS_DROPOUT};
use crate::params::{BackwardParams, Strides};
use crate::philox::half_flags;
use crate::smem_layout::{sw128_chunk_offset, sw128_k_major_strides, sw128_mn_major_strides};

/// Register-array bounds: S^T / dP^T accumulators (BM / 2) and k-steps over a query block
/// (BM / 16) are the forward's S and P V bounds (the A-fragment helpers are shared); dK / dV
/// accumulators (D / 2), dQ accumulators (m64n64: 32).
const MAX_ACC: usize = 64;
const MAX_KQ: usize = MAX_KV;
const DQ_REGS: usize = 32;
/// Dropout drop-flag words: two per 32 queries of a block (BM / 32).
const MAX_SLICES: usize = MAX_S / 16;

/// Shared-memory descriptors of k-step 0 (stage 0 where staged); k-steps and stages move the
/// start address only.
struct Descriptors {
    /// A of `S^T` / `dP^T`: this warpgroup's 64 keys of K / V, K-major.
    k: u64,
    v: u64,
    /// B of `S^T` / `dP^T`: Q / dO K-major; B of `dK` / `dV`: the same tiles MN-major.
    q_k: u64,
    do_k: u64,
    q_mn: u64,
    do_mn: u64,
    /// A and B of `dQ = dS K`: this warpgroup's query rows of dS^T and its columns of K, MN-major.
    ds_mn: u64,
    k_mn: u64,
}

/// `d (+)= A B` for every k-step of a query block: `BM / 16` RS MMAs, B MN-major.
#[inline(always)]
unsafe fn issue_rs<E: WgmmaElement, const D: usize, const BM: usize>(
    acc: &mut [f32; MAX_ACC],
    frags: &[[u32; 4]; MAX_KQ],
    desc_b: u64,
) {
    let mut kk = 0;
    while kk < BM / 16 {
        wgmma_rs::<E, D>(acc, frags[kk], desc_b + mn_major_step(kk), 1);
        kk += 1;
    }
}

/// `s = A B^T` over the head dim: `D / 16` SS MMAs, both K-major, A with `BN` rows, B with `BM`.
#[inline(always)]
unsafe fn issue_ss<E: WgmmaElement, const D: usize, const BM: usize, const BN: usize>(
    s: &mut [f32; MAX_S],
    desc_a: u64,
    desc_b: u64,
) {
    let mut kk = 0;
    while kk < D / 16 {
        wgmma_ss::<E, BM>(s, desc_a + k_major_step(BN, kk), desc_b + k_major_step(BM, kk), (kk > 0) as u32);
        kk += 1;
    }
}

/// This thread's place: (warpgroup, warp in it, g = lane / 4, t = lane % 4), from an opaque
/// re-read of `%tid.x`: what is derived from it (shared addresses of the dS^T, dQ and stats
/// accesses) is recomputed at each use instead of being hoisted out of the loop and kept alive
/// (spilled) in registers that the accumulators need.
#[inline(always)]
fn thread_place() -> (usize, usize, usize, usize) {
    let tid = thread_idx_x_reread() as usize;
    let lane = tid % 32;
    (tid / 128, (tid % 128) / 32, lane / 4, lane % 4)
}

/// Drop flags of this warp's 16 keys (from `key16`) x the block's `BM` queries (from `row0`):
/// one Philox call per lane per 32 queries (`Dropout::st_bits`). Where (`flags_after_p` in
/// `dkdv_wgmma`): at d = 128 after P^T, while the dP^T MMAs run, so the chain of ten multiply
/// rounds costs issue slots the tensor cores do not wait for; at d = 64 at the block's start.
/// (Issued after the block's own S^T / dP^T MMAs, ptxas moved it above them.)
#[inline(always)]
unsafe fn drop_flags<const BM: usize>(
    dropout: &Dropout,
    key16: usize,
    row0: usize,
    lane: usize,
) -> [[u32; 2]; MAX_SLICES] {
    let mut dropped = [[0u32; 2]; MAX_SLICES];
    let mut slice = 0;
    while slice < BM / 32 {
        dropped[slice] = dropout.st_bits(key16, row0 + 32 * slice, lane);
        slice += 1;
    }
    dropped
}

/// dS^T with dropout: with Z the keep mask (`drop_flags` negated), `dS = P (dP Z / keep - D)`; one
/// select and one FFMA more per element than without. (dV's operand `P Z / keep` is P^T packed
/// and ANDed with the flags, `drop_packed`, its 1 / keep folded into dV's epilogue.) The S^T
/// accumulator is mma.sync's m16n8 layout per warp with keys as rows, so element `4 j + 2 half +
/// e` (query `8 j + 2 t + e`, key `g + 8 half`) is dropped iff bit 7 of byte `2 (nt % 2) + half`
/// of `half_flags(dropped[j / 4][e], g % 2, nt >= 2)` is set, `nt = j % 4`.
#[inline(always)]
unsafe fn drop_ds<const BM: usize>(
    s: &[f32; MAX_S],
    dp: &mut [f32; MAX_S],
    dropped: &[[u32; 2]; MAX_SLICES],
    scale: f32,
    delta_st: u32,
    odd: u32,
    t: usize,
) {
    let mut j = 0;
    while j < BM / 8 {
        let (slice, nt) = (j / 4, j % 4);
        let flags = [half_flags(dropped[slice][0], odd, nt >= 2), half_flags(dropped[slice][1], odd, nt >= 2)];
        let delta = ld_shared_v2_f32(delta_st + 4 * (8 * j + 2 * t) as u32);
        let mut e4 = 0;
        while e4 < 4 {
            let (half, e) = (e4 / 2, e4 % 2);
            let kept = (flags[e] >> (8 * (2 * (nt % 2) + half) + 7)) & 1 == 0;
            let dpk = if kept { dp[4 * j + e4] } else { 0.0 };
            dp[4 * j + e4] = s[4 * j + e4] * fma(dpk, scale, -delta[e]);
            e4 += 1;
        }
        j += 1;
    }
}

/// P^T = 2^(S^T scale log2 e - LSE log2 e) of this thread's elements; `needs_mask`: zero those
/// before `first_visible` of their key (key past the end, causal); `WINDOW`: zero those
/// `visible(col, half)` rejects (masked builds, blocks not wholly visible).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn p_from_scores<const BM: usize, const CAUSAL: bool, const WINDOW: bool>(
    s: &mut [f32; MAX_S],
    lse_st: u32,
    scale_log2: f32,
    needs_mask: bool,
    first_visible: &[i32; 2],
    t: usize,
    visible: impl Fn(usize, usize) -> bool,
) {
    let mut j = 0;
    while j < BM / 8 {
        let col = 8 * j + 2 * t;
        let lse2 = ld_shared_v2_f32(lse_st + 4 * col as u32);
        let mut e = 0;
        while e < 4 {
            let (half, c) = (e / 2, e % 2);
            let mut pe = ex2(fma(s[4 * j + e], scale_log2, -lse2[c]));
            // Without causal a key is wholly visible or wholly past the end (`i32::MAX`): one
            // test per key, not per element. (ptxas if-converts the per-element compare and packs
            // its 64 predicates into registers: 68 / 116 more instructions per block in the plain
            // d = 128 / 64 loops, ~200 in the dropout one.)
            let hidden =
                if CAUSAL { ((col + c) as i32) < first_visible[half] } else { first_visible[half] == i32::MAX };
            if needs_mask && hidden {
                pe = 0.0;
            }
            if WINDOW && !visible(col + c, half) {
                pe = 0.0;
            }
            s[4 * j + e] = pe;
            e += 1;
        }
        j += 1;
    }
}

/// The dS^T tile is shared: each warpgroup writes its keys' rows and the dQ MMAs of both read
/// all of them. Before a warpgroup overwrites its rows for the next block, the other one's dQ
/// MMAs of this block must be done: named barrier `1 + wg` pairs warpgroup `1 - wg`'s arrival
/// (after its dQ wait) with warpgroup `wg`'s sync (before its dS^T stores), without holding
/// either back otherwise (FlashAttention-3's producer / consumer barriers). One arrival before
/// the loop pairs with the first sync; the last block arrives at nothing.
struct DsTileFree;

impl DsTileFree {
    /// Warpgroup `wg` may write dS^T once the other has released it.
    #[inline(always)]
    unsafe fn acquire(wg: usize) {
        if wg == 0 {
            named_barrier_sync::<1, 256>();
        } else {
            named_barrier_sync::<2, 256>();
        }
    }
    /// Warpgroup `wg` is done reading dS^T: the other may write.
    #[inline(always)]
    unsafe fn release(wg: usize) {
        if wg == 0 {
            named_barrier_arrive::<2, 256>();
        } else {
            named_barrier_arrive::<1, 256>();
        }
    }
}

/// Adds this warp's 16 rows x 64 columns of a block's dQ to `dq_accum` (`tile`: where that
/// tile starts, in the tiled layout of `config::dq_tile_index`): staged as 8 conflict-free
/// 16-byte stores per lane (32 lanes write 512 contiguous bytes at once) into this warp's 4 KB of
/// the staging tile, then one 4 KB `cp.reduce.async.bulk` from lane 0, so no CTA barrier. The
/// stage is rewritten only after lane 0's previous reduction has read it.
#[inline(always)]
unsafe fn add_dq_tile(dq: &[f32; DQ_REGS], stage: u32, tile: *mut f32, lane: usize) {
    if lane == 0 {
        cp_async_bulk_wait_group_read::<0>();
    }
    syncwarp();
    let mut j = 0;
    while j < 8 {
        let v = [dq[4 * j], dq[4 * j + 1], dq[4 * j + 2], dq[4 * j + 3]];
        st_shared_v4_f32(stage + (16 * (32 * j + lane)) as u32, v);
        j += 1;
    }
    fence_proxy_async_shared(); // these generic-proxy writes, visible to the copy engine ...
    syncwarp(); // ... once every lane has written
    if lane == 0 {
        cp_reduce_async_bulk_add_f32(tile, stage, (4 * DQ_TILE_FLOATS) as u32);
        cp_async_bulk_commit_group();
    }
}

/// dK, dV (and dQ through bulk reductions unless `p.dq_accum` is 0) for plain and causal
/// attention, and (`MASKED`) for windows, block masks and packed batches (causal as a window),
/// with (`DROPOUT`, masked or plain) dropout; no softcap or ALiBi (those run the mma.sync masked
/// builds).
/// Grid: (ceil(seqlen_k / BN), heads_kv, batch); `cfg.threads()` threads.
#[inline(always)]
pub unsafe fn dkdv_wgmma<
    E: WgmmaElement,
    const D: usize,
    const BM: usize,
    const BN: usize,
    const CAUSAL: bool,
    const MASKED: bool,
    const DROPOUT: bool,
>(
    p: &BackwardParams,
) {
    let cfg = WgmmaBackwardConfig { head_dim: D, block_m: BM, block_n: BN };
    const {
        assert!(WgmmaBackwardConfig { head_dim: D, block_m: BM, block_n: BN }.is_valid());
        assert!(BM / 2 <= MAX_S && D / 2 <= MAX_ACC && BM / 16 <= MAX_KQ);
        assert!(!MASKED || !CAUSAL && BLOCK_MASK_SIZE % BM == 0 && BLOCK_MASK_SIZE % BN == 0);
        assert!(dkdv_takes_key_block_order(0) && !dkdv_takes_key_block_order(MODS_DROPOUT));
    };
    let threads = cfg.threads();
    let tid = _thread_idx_x() as usize;
    let wg = tid / 128;
    // Block-sparse: the key blocks of a head longest first (`BackwardParams::key_block_order`),
    // in the builds that take the order: `!DROPOUT` is `dkdv_takes_key_block_order` of this
    // kernel's builds (asserted above; spelt out here, since the call reshaped the PTX).
    let x = _block_idx_x() as usize;
    let key0 = if MASKED && !DROPOUT { p.dkdv_key_block(x, _block_idx_y() as usize) } else { x } * BN;
    let h_kv = _block_idx_y() as usize;
    let b = _block_idx_z() as usize;
    let heads = p.heads as usize;
    let group = p.group();
    // Masked builds: entry b of a packed batch (rows `q_start + row`, keys `k_start + key`).
    let seq = Sequence::for_build::<MASKED>(&p.mask, b, p.seqlen_q, p.seqlen_k);
    let (n_q, n_k, head_dim) = (seq.n_q, seq.n_k, p.head_dim as usize);
    // The dQ conversion launched after this grid may start as soon as every CTA is resident; it
    // waits per (batch, KV head) for `publish_dq_done` (see `BackwardParams::dq_done`).
    griddepcontrol_launch_dependents();
    if MASKED && key0 >= n_k {
        // A shorter entry of a packed batch (the whole CTA, before any barrier). It adds nothing
        // to dQ and is not counted: the conversion expects the entry's own key blocks. (Counting
        // it here made ptxas spill 40-80 B more in the masked builds.)
        return;
    }
    let stat_pitch = p.stat_pitch as usize;
    let with_dq = p.dq_accum != 0;

    let base = aligned_smem_base();
    let k_s = base + cfg.k_offset() as u32;
    let v_s = base + cfg.v_offset() as u32;
    let q_s = base + cfg.q_offset() as u32;
    let do_s = base + cfg.do_offset() as u32;
    let ds_s = base + cfg.ds_offset() as u32;
    let dq_s = base + cfg.dq_stage_offset() as u32;
    let lse_s = base + cfg.lse_offset() as u32;
    let delta_s = base + cfg.delta_offset() as u32;
    let q_bytes = cfg.tile_bytes(BM);
    let stat_bytes = 4 * BM;

    let (k_lbo, k_sbo) = sw128_k_major_strides();
    let (m_lbo, m_sbo) = sw128_mn_major_strides(BM);
    let (n_lbo, n_sbo) = sw128_mn_major_strides(BN);
    // dQ: warpgroup `wg` takes query rows 64 (wg % m_parts) .. and 64-column block wg / m_parts.
    let m_parts = BM / 64;
    let wg_keys = (wg * 64 * 128) as u32; // row 64 wg of column block 0
    let desc = Descriptors {
        k: smem_desc(k_s + wg_keys, k_lbo, k_sbo, SWIZZLE_128B),
        v: smem_desc(v_s + wg_keys, k_lbo, k_sbo, SWIZZLE_128B),
        q_k: smem_desc(q_s, k_lbo, k_sbo, SWIZZLE_128B),
        do_k: smem_desc(do_s, k_lbo, k_sbo, SWIZZLE_128B),
        q_mn: smem_desc(q_s, m_lbo, m_sbo, SWIZZLE_128B),
        do_mn: smem_desc(do_s, m_lbo, m_sbo, SWIZZLE_128B),
        ds_mn: smem_desc(ds_s + ((wg % m_parts) * BN * 128) as u32, n_lbo, n_sbo, SWIZZLE_128B),
        k_mn: smem_desc(k_s + ((wg / m_parts) * BN * 128) as u32, n_lbo, n_sbo, SWIZZLE_128B),
    };

    // Causal (bottom-right): key j is seen by rows i >= j + n_q - n_k; query blocks wholly
    // before the first row that sees key0 are skipped.
    // Masked builds: the rows the window shows these keys (the rules are the same for every
    // head: no ALiBi here), and only the blocks the block mask keeps (`next_it`).
    let rules = ScoreRules::new(&p.mask, b, h_kv * group, &seq);
    let (first_block, end_block) = if MASKED {
        let (lo, hi) = rules.query_range(key0, (key0 + BN).min(n_k), n_q);
        (lo / BM, hi.div_ceil(BM))
    } else {
        let first_row = if CAUSAL { (key0 as i64 + n_q as i64 - n_k as i64).clamp(0, n_q as i64) as usize } else { 0 };
        (first_row / BM, n_q.div_ceil(BM))
    };
    let per_head = end_block.saturating_sub(first_block);
    let total = group * per_head;
    // Iteration `it` -> (query head, first row) of its block: heads of the group outermost.
    // (u32 division: a 64-bit one is a called subroutine.)
    let block_of = |it: usize| {
        let (it, per) = (it as u32, (per_head as u32).max(1));
        let (q, r) = (it / per, it % per);
        (h_kv * group + q as usize, (first_block + r as usize) * BM)
    };
    // Masked builds: the first iteration >= it whose block the block mask keeps; plain: every one.
    // (The dropout builds scan afresh per block: see `KeyColumnScan::first_kept_windowed`.)
    let mut window = MaskWindow::EMPTY;
    let mut first_kept = |it: usize| {
        let lane = (thread_idx_x_reread() % 32) as usize;
        let scan =
            KeyColumnScan { m: &p.mask, first_head: h_kv * group, key: key0, first_block, end_block, bm: BM, total };
        if DROPOUT {
            scan.first_kept(it, lane)
        } else {
            scan.first_kept_windowed(it, lane, &mut window)
        }
    };
    let (q_first, q_end) = (seq.q_start, seq.q_start + n_q);
    // Q and dO tiles wholly inside the sequence copied with a fixed step per thread
    // (`copy_full_tile_sw128`), but Q's in the non-causal plain dropout builds: at 255 registers
    // already, the step pointers of both tiles spill there (d = 128: 128 B, 30 local loads and
    // stores in the loop; d = 64: 24 B), those of dO alone do not. (The masked dropout builds
    // take both: d = 128 16 B against 8 B before, within their spill budget; d = 64 none.)
    let full_q_copies = !DROPOUT || CAUSAL || MASKED;
    let load_block = |it: usize, stage: usize| {
        let (hq, row0) = block_of(it);
        let stat = (b * heads + hq) * stat_pitch + row0;
        let q_st = q_s + (stage * q_bytes) as u32;
        let do_st = do_s + (stage * q_bytes) as u32;
        let tid = thread_idx_x_reread() as usize; // (copy offsets recomputed per block, as above)
        let row = q_first + row0;
        if !(full_q_copies
            && copy_full_tile_sw128::<D>(p.q, &p.q_strides, b, hq, row, q_end, BM, head_dim, q_st, tid, threads))
        {
            copy_tile_sw128::<D>(p.q, &p.q_strides, b, hq, row, q_end, BM, head_dim, q_st, tid, threads);
        }
        if !copy_full_tile_sw128::<D>(p.d_o, &p.do_strides, b, hq, row, q_end, BM, head_dim, do_st, tid, threads) {
            copy_tile_sw128::<D>(p.d_o, &p.do_strides, b, hq, row, q_end, BM, head_dim, do_st, tid, threads);
        }
        copy_stats_async::<BM>(p.lse_log2, stat, lse_s + (stage * stat_bytes) as u32, threads);
        copy_stats_async::<BM>(p.delta, stat, delta_s + (stage * stat_bytes) as u32, threads);
    };

    // Prologue: group 0 = K, V and block 0; group 1 = block 1 (maybe empty). Block 0 is
    // published by the barrier below, every later block by the barrier of the block before it.
    let (k_row, k_end) = (seq.k_start + key0, seq.k_start + n_k);
    copy_tile_sw128::<D>(p.k, &p.k_strides, b, h_kv, k_row, k_end, BN, head_dim, k_s, tid, threads);
    copy_tile_sw128::<D>(p.v, &p.v_strides, b, h_kv, k_row, k_end, BN, head_dim, v_s, tid, threads);
    let first = if MASKED { first_kept(0) } else { 0 };
    let second = if first >= total {
        total
    } else if MASKED {
        first_kept(first + 1)
    } else {
        first + 1
    };
    if first < total {
        load_block(first, 0);
    }
    cp_async_commit_group();
    if second < total {
        load_block(second, 1);
    }
    cp_async_commit_group();
    cp_async_wait_group::<1>();
    fence_proxy_async_shared();
    _syncthreads();
    if with_dq && first < total {
        // The dS^T tile is free for the other warpgroup's first block (see `DsTileFree`).
        DsTileFree::release(wg);
    }

    // Dropout: the drop flags of a block. At d = 128 they are computed after P^T, under the
    // dP^T MMAs (call `s9c8`, cubins: 1.17-1.24x plain, against 1.21-1.28x computed during the
    // block before under its dV / dK MMAs, where they held up the dS^T barrier, and 1.59-1.79x
    // between dP^T and dV / dK in `s5c3`); at d = 64, where S^T and dP^T take twice the
    // registers, both placements spill (44-60 B) and ran slower (1.29-1.42x against 1.20-1.26x),
    // so there they are computed at the block's start.
    let flags_after_p = D > 64;
    // The plain non-causal dropout build at d = 128: there ptxas ran the block's Philox rounds
    // before issuing the S^T / dP^T MMAs, the tensor cores idle meanwhile (call `s15c1`:
    // 1.13-1.18x plain). Tied to a clock read after S^T's issue (`anchor`: `clock_lo() & 0`, which
    // ptxas cannot fold) they run between dP^T's MMA issues, under both (`s15c2`: 1.10-1.16x).
    // Its K / V descriptors are re-derived per block (`opaque_u64`): with the rounds there, ptxas
    // kept every k-step's descriptor across the loop and spilled 72 B. (At d = 64 the anchor was
    // no faster than the rounds at the block's start; causal builds schedule well without it.)
    let anchored = DROPOUT && !MASKED && !CAUSAL && flags_after_p;
    let drop_flags_of = |it: usize, anchor: u32| {
        let (hq, row0) = block_of(it);
        let row0 = row0 + anchor as usize;
        let (wg, warp, g, t) = thread_place();
        let dropout = Dropout::new(&p.mask, b, hq, p.heads).with_keys_recomputed();
        drop_flags::<BM>(&dropout, key0 + wg * 64 + warp * 16, row0, 4 * g + t)
    };
    let mut acc_dv = [0.0f32; MAX_ACC];
    let mut acc_dk = [0.0f32; MAX_ACC];

    // Blocks run from `first` through `next_it`; masked builds carry the next kept block (loaded
    // one block ahead) and count processed blocks (`done`) for the stages, plain builds derive
    // both from `it` (it + 1, it).
    let mut it = first;
    let mut next = second;
    let mut done = 0;
    while it < total {
        let stage = if MASKED { done } else { it } % WgmmaBackwardConfig::STAGES;
        let (hq, row0) = block_of(it);
        let q_off = ((stage * q_bytes) >> 4) as u64;
        let lse_st = lse_s + (stage * stat_bytes) as u32;
        let delta_st = delta_s + (stage * stat_bytes) as u32;
        let mut dropped = [[0u32; 2]; MAX_SLICES];
        if DROPOUT && !flags_after_p {
            dropped = drop_flags_of(it, 0);
        }

        // S^T and dP^T, two groups: P^T is computed while dP^T is still on the tensor cores.
        let mut s = [0.0f32; MAX_S];
        let mut dp = [0.0f32; MAX_S];
        fence_regs_f32_prefix(&mut s, BM / 2);
        fence_regs_f32_prefix(&mut dp, BM / 2);
        wgmma_fence();
        let (k_desc, v_desc) = if anchored { (opaque_u64(desc.k), opaque_u64(desc.v)) } else { (desc.k, desc.v) };
        issue_ss::<E, D, BM, BN>(&mut s, k_desc, desc.q_k + q_off);
        wgmma_commit_group();
        // Zero at run time (dropout builds run with dropout on).
        let anchor = if anchored { zero_after(clock_lo(), p.mask.dropout_threshold) } else { 0 };
        issue_ss::<E, D, BM, BN>(&mut dp, v_desc, desc.do_k + q_off);
        wgmma_commit_group();
        wgmma_wait_group::<1>();
        fence_regs_f32_prefix(&mut s, BM / 2);

        // P^T. Padding rows past seqlen_q have lse_log2 = +inf, so P = 2^-inf = 0 there; keys past
        // seqlen_k and (causal) keys after a row's diagonal are masked by select, only in blocks
        // that have any.
        let needs_mask =
            !MASKED && (key0 + BN > n_k || (CAUSAL && (key0 + BN - 1) as i64 > row0 as i64 + n_k as i64 - n_q as i64));
        // Masked builds: the per-element window test, only in blocks not wholly visible.
        let masks = MASKED && !rules.all_visible(row0, row0 + BM, key0, key0 + BN);
        // Per row half (key g or g + 8 of the warp): the first query column of the block that
        // sees the key (causal: row >= key + n_q - n_k), none past the sequence end.
        let (wg, warp, g, t) = thread_place();
        let warp_key = key0 + wg * 64 + warp * 16;
        let mut first_visible = [i32::MIN; 2];
        let mut half = 0;
        while half < 2 {
            let key = warp_key + g + 8 * half;
            if key >= n_k {
                first_visible[half] = i32::MAX;
            } else if CAUSAL {
                first_visible[half] = key as i32 + n_q as i32 - n_k as i32 - row0 as i32;
            }
            half += 1;
        }
        // Two copies of the loop: with the per-element test behind a branch in one loop, every
        // element became its own basic block, and ptxas no longer interleaved the exponentials
        // of wholly visible blocks with the rest.
        if masks {
            p_from_scores::<BM, CAUSAL, true>(
                &mut s,
                lse_st,
                p.scale_log2,
                needs_mask,
                &first_visible,
                t,
                |col, half| rules.visible((row0 + col) as i32, (warp_key + g + 8 * half) as i32),
            );
        } else {
            p_from_scores::<BM, CAUSAL, false>(&mut s, lse_st, p.scale_log2, needs_mask, &first_visible, t, |_, _| {
                true
            });
        }

        if DROPOUT && flags_after_p {
            dropped = drop_flags_of(it, anchor);
        }
        wgmma_wait_group::<0>();
        fence_regs_f32_prefix(&mut dp, BM / 2);
        let (_, _, g, t) = thread_place();
        if DROPOUT {
            drop_ds::<BM>(&s, &mut dp, &dropped, p.mask.dropout_scale, delta_st, (g % 2) as u32, t);
        } else {
            let mut j = 0;
            while j < BM / 8 {
                let delta = ld_shared_v2_f32(delta_st + 4 * (8 * j + 2 * t) as u32);
                let mut e = 0;
                while e < 4 {
                    dp[4 * j + e] = s[4 * j + e] * (dp[4 * j + e] - delta[e % 2]);
                    e += 1;
                }
                j += 1;
            }
        }
        // Packed only now: P^T in f32 feeds dS^T (packing first would keep both alive).
        let mut p_frags = pack_p::<E, BM>(&s);
        let mut ds_frags = pack_p::<E, BM>(&dp);
        if DROPOUT {
            drop_packed::<BM, true, MAX_SLICES>(&mut p_frags, &dropped, (g % 2) as u32);
        }

        // dV += P^T dO and dK += dS^T Q (one group; waited for with dQ's or below).
        fence_regs_f32_prefix(&mut acc_dv, D / 2);
        fence_regs_f32_prefix(&mut acc_dk, D / 2);
        fence_p(&mut p_frags, BM / 16);
        fence_p(&mut ds_frags, BM / 16);
        wgmma_fence();
        issue_rs::<E, D, BM>(&mut acc_dv, &p_frags, desc.do_mn + q_off);
        issue_rs::<E, D, BM>(&mut acc_dk, &ds_frags, desc.q_mn + q_off);
        wgmma_commit_group();
        // The block after that (masked builds: the block-mask scan, whose global loads wait
        // here, under the MMAs, rather than after the barrier before dQ).
        let after_next = if MASKED {
            if next < total {
                first_kept(next + 1)
            } else {
                total
            }
        } else {
            it + 2
        };

        if with_dq {
            // dS^T into its tile: key row 64 wg + 16 w + g (+ 8), 16-byte chunk j of the queries,
            // once the other warpgroup's dQ MMAs of the previous block no longer read it.
            let (wg, warp, g, t) = thread_place();
            DsTileFree::acquire(wg);
            let mut j = 0;
            while j < BM / 8 {
                let mut half = 0;
                while half < 2 {
                    let row = wg * 64 + warp * 16 + g + 8 * half;
                    let bits = ds_frags[j / 2][(j % 2) * 2 + half];
                    st_shared_b32(ds_s + (sw128_chunk_offset(BN, row, j) + 4 * t) as u32, bits);
                    half += 1;
                }
                j += 1;
            }
            fence_proxy_async_shared(); // the dS^T stores, visible to the dQ MMAs
        }
        // The one CTA barrier per block: dS^T of both warpgroups is in its tile, and block
        // it + 1 (loaded during the previous block) has landed for every thread. Every warpgroup
        // is past the previous block's MMAs, so its stage is free for block it + 2.
        cp_async_wait_group::<0>();
        fence_proxy_async_shared();
        _syncthreads();
        if after_next < total {
            load_block(after_next, if MASKED { done + 2 } else { after_next } % WgmmaBackwardConfig::STAGES);
        }
        cp_async_commit_group();
        let more = if MASKED { next < total } else { it + 1 < total };

        if with_dq {
            let mut dq = [0.0f32; DQ_REGS];
            fence_regs_f32(&mut dq);
            wgmma_fence();
            let mut kk = 0;
            while kk < BN / 16 {
                E::wgmma_ss_n64_mn(
                    &mut dq,
                    desc.ds_mn + mn_major_step(kk),
                    desc.k_mn + mn_major_step(kk),
                    (kk > 0) as u32,
                );
                kk += 1;
            }
            wgmma_commit_group();
            wgmma_wait_group::<0>();
            fence_regs_f32(&mut dq);
            let (wg, warp, g, t) = thread_place();
            if more {
                DsTileFree::release(wg); // this warpgroup's dQ MMAs are done with dS^T
            }
            // This warp's tile: rows 64 (wg % m_parts) + 16 warp .., columns 64 (wg / m_parts) ..
            // (padding rows exist in dq_accum, stat_pitch, and their dS is 0: no bounds check).
            let m_parts = BM / 64;
            let first_row = (b * heads + hq) * stat_pitch + row0 + (wg % m_parts) * 64 + warp * 16;
            let tile = (p.dq_accum as *mut f32).add(first_row * D + (wg / m_parts) * DQ_TILE_FLOATS);
            let stage = dq_s + ((4 * wg + warp) * 4 * DQ_TILE_FLOATS) as u32;
            add_dq_tile(&dq, stage, tile, 4 * g + t);
        } else {
            wgmma_wait_group::<0>();
        }
        fence_regs_f32_prefix(&mut acc_dv, D / 2);
        fence_regs_f32_prefix(&mut acc_dk, D / 2);
        if MASKED {
            (it, next) = (next, after_next);
            done += 1;
        } else {
            it += 1;
        }
    }

    // Epilogue: dV and scale * dK through the (now free) V and K tiles, SW128 as loaded.
    cp_async_wait_group::<0>(); // no copy may still land in the tiles (e.g. `total == 0`)
    let tid = thread_idx_x_reread() as usize;
    if with_dq && tid % 32 == 0 {
        // The staging tile stays allocated until the reductions are done, and the dQ conversion
        // may read this CTA's sums once they are: performed, then ordered before the release.
        cp_async_bulk_wait_group::<0>();
        fence_proxy_async_global();
    }
    _syncthreads(); // every warpgroup is done reading K and V (and its dQ reductions are done)
    if tid == 0 {
        publish_dq_done(p, b, h_kv);
    }
    let scale = p.scale;
    // Dropout: dV summed P Z (`drop_packed`); its 1 / keep probability is applied once here.
    let dv_scale = if DROPOUT { p.mask.dropout_scale } else { 1.0 };
    let (wg, warp, g, t) = thread_place();
    let lane = tid % 32;
    let row_w = wg * 64 + warp * 16; // this warp's 16 keys in the block
    let mut j = 0;
    while j < D / 8 {
        let mut half = 0;
        while half < 2 {
            let off = (sw128_chunk_offset(BN, row_w + g + 8 * half, j) + 4 * t) as u32;
            let (i0, i1) = (4 * j + 2 * half, 4 * j + 2 * half + 1);
            st_shared_b32(v_s + off, E::pack2(acc_dv[i0] * dv_scale, acc_dv[i1] * dv_scale));
            st_shared_b32(k_s + off, E::pack2(acc_dk[i0] * scale, acc_dk[i1] * scale));
            half += 1;
        }
        j += 1;
    }
    syncwarp(); // each warp reads back only its own rows
    let (k_row, k_end) = (seq.k_start + key0, seq.k_start + n_k);
    store_rows::<BN>(v_s, row_w, p.dv, &p.dv_strides, b, h_kv, k_row, k_end, head_dim, lane);
    store_rows::<BN>(k_s, row_w, p.dk, &p.dk_strides, b, h_kv, k_row, k_end, head_dim, lane);
}

/// Counts this CTA as done adding into `dq_accum` for (batch `b`, KV head `h_kv`) (the CTAs of
/// key blocks within the entry's keys count), once every warp's reductions have completed (a
/// barrier after their waits): a release, so the dQ conversion that acquires the count reads the
/// sums. One thread; nothing without `dq_done`.
#[inline(always)]
unsafe fn publish_dq_done(p: &BackwardParams, b: usize, h_kv: usize) {
    if p.dq_done != 0 {
        red_release_gpu_add_u32(p.dq_done_counter(b, h_kv), 1);
    }
}

/// Writes 16 rows (`row_w..`) of a SW128 tile of `ROWS` rows to global rows `first_key + row`
/// below `n_k`, only the real columns, 16 bytes per lane and step.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn store_rows<const ROWS: usize>(
    tile: u32,
    row_w: usize,
    dst: u64,
    strides: &Strides,
    b: usize,
    h: usize,
    first_key: usize,
    n_k: usize,
    head_dim: usize,
    lane: usize,
) {
    let chunks = head_dim / 8;
    let mut idx = lane;
    while idx < 16 * chunks {
        let (r, c) = (idx / chunks, idx % chunks);
        let key = first_key + row_w + r;
        if key < n_k {
            let v = ld_shared_v4_b32(tile + sw128_chunk_offset(ROWS, row_w + r, c) as u32);
            let ptr = (dst as *mut u16).add((strides.offset(b, key, h) + (c * 8) as u64) as usize);
            st_global_v4_b32(ptr as *mut u8, v);
        }
        idx += 32;
    }
}
