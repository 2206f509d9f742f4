//! The warp-specialized Hopper forward (sm_90a): FlashAttention-3's schedule on the wgmma
//! forward's pieces (`forward_wgmma`: the S and P V MMAs, mask, online softmax, dropout flags,
//! epilogue).
//!
//! Per CTA (128 query rows; grid: query blocks x heads x batch), three warpgroups:
//! - warpgroup 0, the producer, gives its registers away (`setmaxnreg.dec` to 24) and one of its
//!   threads issues every copy through the TMA (`cp.async.bulk.tensor`, descriptors built by the
//!   host: `host/tensor_map.rs`): Q once, then K_j and V_j into two stages each. A copy lands on
//!   its stage's "full" mbarrier (bytes counted by the hardware); the producer reuses a stage
//!   once both consumers have arrived on its "empty" mbarrier.
//! - warpgroups 1 and 2, the consumers (`setmaxnreg.inc` to 240), own 64 query rows each and run
//!   `pipelined_loop`'s per-block order (S_j and P V_{j-1} issued together, the softmax of S_j
//!   under P V_{j-1}). Their MMA issues alternate (ping-pong through named barriers 1 and 2), so
//!   one warpgroup's softmax runs while the other's MMAs occupy the tensor cores.
//!
//! Against `forward_wgmma`: no `cp.async` address arithmetic in the MMA warps (~75 instructions
//! a block and warp at d = 128), no CTA barrier per block (the warpgroups no longer step
//! together), and the softmax (and dropout's Philox rounds) of one warpgroup overlap the other's
//! MMAs. Dense attention only: causal (bottom-right aligned, as everywhere) and dropout, no
//! windows, block masks or packed batches.
use core::arch::nvptx::{_block_idx_x, _block_idx_y, _block_idx_z, _syncthreads, _thread_idx_x};

use crate::arch::sm80::{named_barrier_arrive, named_barrier_sync};
use crate::arch::sm90::{
    declare_max_threads, fence_mbarrier_init, fence_regs_f32_prefix, fence_tensormap_acquire, mbarrier_arrive,
    mbarrier_arrive_expect_tx, mbarrier_init, mbarrier_wait_parity, prefetch_tensormap, setmaxnreg_dec, setmaxnreg_inc,
    smem_desc, tma_load_4d, wgmma_commit_group, wgmma_fence, wgmma_wait_group, wgmma_wait_group_after, SWIZZLE_128B,
};
use crate::config::WgmmaForwardConfig;
use crate::element::WgmmaElement;
use crate::forward_wgmma::{
    aligned_smem_base, drop_packed, pack_p, row_sums_done, softmax, write_output, Cta, RowState, MAX_FLAG_WORDS,
    MAX_KV, MAX_O, MAX_S,
};
use crate::masking::{Dropout, ScoreRules, Sequence};
use crate::params::ForwardParams;
use crate::smem_layout::{sw128_k_major_strides, sw128_mn_major_strides};
use crate::ws_schedule;

/// The CTA's query rows: two consumer warpgroups of 64.
const BM: usize = WgmmaForwardConfig::WS_BLOCK_M;
const CONSUMER_REGISTERS: u32 = WgmmaForwardConfig::WS_CONSUMER_REGISTERS as u32;
const PRODUCER_REGISTERS: u32 = WgmmaForwardConfig::WS_PRODUCER_REGISTERS as u32;
/// Named barriers of the ping-pong (0 is `__syncthreads`'s): consumer `w` waits on `1 + w`.
const TURN_0: u32 = 1;
const TURN_1: u32 = 2;

/// The mbarriers, 8 bytes each after the K / V stages (`WgmmaForwardConfig::WS_BARRIER_BYTES`).
#[derive(Clone, Copy)]
struct Barriers {
    base: u32,
}

impl Barriers {
    /// Q has landed (one phase).
    fn q_full(self) -> u32 {
        self.base
    }
    /// Barrier `stage` of group `group` (0 K full, 1 V full, 2 K empty, 3 V empty; 4 the pin
    /// word), after Q's: `WgmmaForwardConfig::WS_BARRIER_BYTES` counts them from the same stage
    /// count.
    fn at(self, group: usize, stage: usize) -> u32 {
        self.base + (8 * (1 + group * ws_schedule::STAGES + stage)) as u32
    }
    /// K / V block of a stage has landed.
    fn k_full(self, stage: usize) -> u32 {
        self.at(0, stage)
    }
    fn v_full(self, stage: usize) -> u32 {
        self.at(1, stage)
    }
    /// Every consumer thread is done reading a stage (its MMAs completed).
    fn k_empty(self, stage: usize) -> u32 {
        self.at(2, stage)
    }
    fn v_empty(self, stage: usize) -> u32 {
        self.at(3, stage)
    }
    /// The word `wgmma_wait_group_after`'s never-taken `red.shared.add` names: one of its own, not
    /// a tile the TMA writes (a generic read-modify-write there would race the copy).
    fn pin_word(self) -> u32 {
        self.at(4, 0)
    }
}

/// The kernel. `p.tensor_maps`: three 128-byte TMA descriptors (Q, K, V), see the host's
/// `tensor_map` module.
#[inline(always)]
pub unsafe fn forward_ws<E: WgmmaElement, const D: usize, const BN: usize, const CAUSAL: bool, const DROPOUT: bool>(
    p: &ForwardParams,
) {
    let cfg = WgmmaForwardConfig { head_dim: D, block_m: BM, block_n: BN, pipelined: true };
    const {
        assert!(WgmmaForwardConfig { head_dim: D, block_m: BM, block_n: BN, pipelined: true }.is_valid());
        assert!(BN / 2 <= MAX_S && D / 2 <= MAX_O && BN / 16 <= MAX_KV && D <= 128);
    };
    declare_max_threads::<{ WgmmaForwardConfig::WS_THREADS as u32 }>();
    let tid = _thread_idx_x() as usize;
    let wg = tid / 128;
    let h = _block_idx_y() as usize;
    let b = _block_idx_z() as usize;
    let (n_q, n_k) = (p.seqlen_q as usize, p.seqlen_k as usize);
    let row0 = ws_schedule::tile_first_row::<BM>(_block_idx_x() as usize, n_q, CAUSAL, DROPOUT);
    let kv_end = ws_schedule::tile_key_end::<BM>(row0, n_q, n_k, CAUSAL);
    let n_blocks = kv_end.div_ceil(BN);

    let kv_bytes = cfg.tile_bytes(BN);
    let q_s = aligned_smem_base();
    let k_s = q_s + cfg.tile_bytes(BM) as u32;
    let v_s = k_s + (WgmmaForwardConfig::STAGES * kv_bytes) as u32;
    let bars = Barriers { base: v_s + (WgmmaForwardConfig::STAGES * kv_bytes) as u32 };
    if tid == 0 {
        mbarrier_init(bars.q_full(), 1);
        let mut s = 0;
        while s < ws_schedule::STAGES {
            mbarrier_init(bars.k_full(s), 1);
            mbarrier_init(bars.v_full(s), 1);
            mbarrier_init(bars.k_empty(s), 256);
            mbarrier_init(bars.v_empty(s), 256);
            s += 1;
        }
        fence_mbarrier_init();
    }
    _syncthreads();

    if wg == 0 {
        setmaxnreg_dec::<PRODUCER_REGISTERS>();
        if tid == 0 {
            produce::<D, BN>(p, bars, q_s, k_s, v_s, kv_bytes, row0, h, b, n_blocks);
        }
        // (ptxas honours setmaxnreg only where the paths do not rejoin: return here.)
        return;
    }
    setmaxnreg_inc::<CONSUMER_REGISTERS>();
    let w = wg - 1; // consumer warpgroup: query rows 64 w .. 64 w + 63 of the tile
    let ctid = tid - 128;
    let warp = (ctid % 128) / 32;
    let lane = tid % 32;
    let seq = Sequence::for_build::<false>(&p.mask, b, p.seqlen_q, p.seqlen_k);
    let (k_lbo, k_sbo) = sw128_k_major_strides();
    let (v_lbo, v_sbo) = sw128_mn_major_strides(BN);
    let cta = Cta {
        p,
        tid: ctid,
        threads: 256,
        b,
        h_kv: h / p.group(),
        n_q,
        n_k,
        head_dim: p.head_dim as usize,
        g: lane / 4,
        t: lane % 4,
        warp_first_row: row0 + w * 64 + warp * 16,
        q_start: 0,
        k_start: 0,
        rules: ScoreRules::new(&p.mask, b, h, &seq),
        dropout: if DROPOUT { Dropout::new(&p.mask, b, h, p.heads) } else { Dropout::off() },
        scale_log2: p.scale_log2,
        k_s,
        v_s,
        kv_bytes,
        reread_tid: false,
        q_desc: smem_desc(q_s + (w * 64 * 128) as u32, k_lbo, k_sbo, SWIZZLE_128B),
        k_desc: smem_desc(k_s, k_lbo, k_sbo, SWIZZLE_128B),
        v_desc: smem_desc(v_s, v_lbo, v_sbo, SWIZZLE_128B),
    };
    let mut st = RowState { acc_o: [0.0; MAX_O], row_max: [f32::NEG_INFINITY; 2], row_sum: [0.0; 2] };
    mbarrier_wait_parity(bars.q_full(), 0);
    if w == 0 {
        consume::<E, D, BN, CAUSAL, DROPOUT, TURN_0, TURN_1, false>(&cta, &mut st, bars, n_blocks);
    } else {
        consume::<E, D, BN, CAUSAL, DROPOUT, TURN_1, TURN_0, true>(&cta, &mut st, bars, n_blocks);
    }
    // Every MMA of this warpgroup has completed and read only its own 64 rows of Q: the
    // epilogue may stage O through them without a CTA barrier.
    write_output::<E, D, BM, false, DROPOUT>(&cta, &st, q_s, row0, h, w * 64 + warp * 16, lane, &seq);
}

/// The producer thread: Q, then K_j and V_j for every block into stage j % 2, each stage reused
/// after both consumer warpgroups released it (its empty barrier's phase j / 2 - 1).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn produce<const D: usize, const BN: usize>(
    p: &ForwardParams,
    bars: Barriers,
    q_s: u32,
    k_s: u32,
    v_s: u32,
    kv_bytes: usize,
    row0: usize,
    h: usize,
    b: usize,
    n_blocks: usize,
) {
    let (q_map, k_map, v_map) = (p.tensor_maps, p.tensor_maps + 128, p.tensor_maps + 256);
    // (This thread is the CTA's only reader of the descriptors: one fence each, before any use.)
    fence_tensormap_acquire(q_map);
    fence_tensormap_acquire(k_map);
    fence_tensormap_acquire(v_map);
    prefetch_tensormap(q_map);
    prefetch_tensormap(k_map);
    prefetch_tensormap(v_map);
    let h_kv = (h / p.group()) as i32;
    // Q: D / 64 boxes of 64 columns x BM rows (the SW128 tile's column blocks); rows past the
    // sequence (or before it: a shifted causal tile) are zero-filled.
    mbarrier_arrive_expect_tx(bars.q_full(), (BM * D * 2) as u32);
    let mut c = 0;
    while c < D / 64 {
        let dst = q_s + (c * BM * 128) as u32;
        tma_load_4d(dst, q_map, [(64 * c) as i32, row0 as isize as i32, h as i32, b as i32], bars.q_full());
        c += 1;
    }
    let mut j = 0;
    while j < n_blocks {
        let stage = ws_schedule::stage(j);
        if let Some(parity) = ws_schedule::empty_wait_parity(j) {
            mbarrier_wait_parity(bars.k_empty(stage), parity);
        }
        mbarrier_arrive_expect_tx(bars.k_full(stage), (BN * D * 2) as u32);
        load_kv_boxes::<D, BN>(k_map, k_s + (stage * kv_bytes) as u32, j, h_kv, b, bars.k_full(stage));
        if let Some(parity) = ws_schedule::empty_wait_parity(j) {
            mbarrier_wait_parity(bars.v_empty(stage), parity);
        }
        mbarrier_arrive_expect_tx(bars.v_full(stage), (BN * D * 2) as u32);
        load_kv_boxes::<D, BN>(v_map, v_s + (stage * kv_bytes) as u32, j, h_kv, b, bars.v_full(stage));
        j += 1;
    }
}

/// Block `j` of K or V: D / 64 boxes of 64 columns x BN keys into the stage at `dst`.
#[inline(always)]
unsafe fn load_kv_boxes<const D: usize, const BN: usize>(map: u64, dst: u32, j: usize, h_kv: i32, b: usize, bar: u32) {
    let mut c = 0;
    while c < D / 64 {
        tma_load_4d(dst + (c * BN * 128) as u32, map, [(64 * c) as i32, (j * BN) as i32, h_kv, b as i32], bar);
        c += 1;
    }
}

/// One consumer warpgroup's loop: `pipelined_loop`'s order with full / empty mbarriers in place
/// of the CTA barrier, and the MMA issues in turns: wait on barrier `MINE`, issue, arrive on
/// `OTHER` (`ws_schedule`: the second warpgroup, `SECOND`, opens the first turn and skips its
/// last hand-over, so that every arrival is waited for).
#[inline(always)]
unsafe fn consume<
    E: WgmmaElement,
    const D: usize,
    const BN: usize,
    const CAUSAL: bool,
    const DROPOUT: bool,
    const MINE: u32,
    const OTHER: u32,
    const SECOND: bool,
>(
    cta: &Cta,
    st: &mut RowState,
    bars: Barriers,
    n_blocks: usize,
) {
    if ws_schedule::opens_first_turn(SECOND, n_blocks) {
        named_barrier_arrive::<OTHER, 256>();
    }
    if n_blocks == 0 {
        return;
    }
    let hand_over = |j: usize| {
        if ws_schedule::hands_over(SECOND, j, n_blocks) {
            named_barrier_arrive::<OTHER, 256>();
        }
    };
    let odd = (cta.g % 2) as u32;
    // Block 0: S alone.
    mbarrier_wait_parity(bars.k_full(0), ws_schedule::full_parity(0));
    let mut s = [0.0f32; MAX_S];
    named_barrier_sync::<MINE, 256>();
    fence_regs_f32_prefix(&mut s, BN / 2);
    wgmma_fence();
    cta.issue_s::<E, D, BM, BN>(&mut s, 0);
    wgmma_commit_group();
    hand_over(0);
    wgmma_wait_group::<0>();
    fence_regs_f32_prefix(&mut s, BN / 2);
    mbarrier_arrive(bars.k_empty(0));
    cta.mask::<BN, CAUSAL, false>(&mut s, 0);
    let _ = softmax::<BN>(&mut s, st, cta.scale_log2); // O is zero: no rescale
    let mut p_frag = pack_p::<E, BN>(&s);
    if DROPOUT {
        let flags = cta.drop_flags::<BN>(0, 0);
        drop_packed::<BN, false, MAX_FLAG_WORDS>(&mut p_frag, &flags, odd);
    }

    let mut j = 1;
    while j < n_blocks {
        let (stage, prev) = (ws_schedule::stage(j), ws_schedule::stage(j - 1));
        mbarrier_wait_parity(bars.k_full(stage), ws_schedule::full_parity(j));
        mbarrier_wait_parity(bars.v_full(prev), ws_schedule::full_parity(j - 1));
        named_barrier_sync::<MINE, 256>();
        let mut s = cta.issue_s_and_pv::<E, D, BM, BN>(st, &mut p_frag, stage, prev);
        hand_over(j);
        wgmma_wait_group::<1>(); // S_j is complete; P V_{j-1} may still run
        fence_regs_f32_prefix(&mut s, BN / 2);
        mbarrier_arrive(bars.k_empty(stage));
        cta.mask::<BN, CAUSAL, false>(&mut s, j);
        let alpha = softmax::<BN>(&mut s, st, cta.scale_log2);
        let dropped = if DROPOUT { cta.drop_flags::<BN>(j, 0) } else { [[0; 2]; MAX_FLAG_WORDS] };
        // P V_{j-1} is complete: O, P_{j-1} and V's stage are free. Plain builds: pinned after
        // the softmax, which ptxas would otherwise let it overtake, so that the softmax runs
        // under P V_{j-1} (`wgmma_wait_group_after`), as `forward_wgmma`'s plain builds measured
        // faster (calls s16c1, s16c2). Dropout builds: where ptxas puts it, as `forward_wgmma`'s
        // dropout builds measured faster (pinned after the flags: 11-12% slower, s20c2). Both
        // choices are priors from the other kernel, to be measured on this one.
        if DROPOUT {
            wgmma_wait_group::<0>();
        } else {
            wgmma_wait_group_after::<0>(row_sums_done(st), bars.pin_word());
        }
        mbarrier_arrive(bars.v_empty(prev));
        cta.next_p::<E, D, BN, DROPOUT>(st, &mut p_frag, &s, alpha, &dropped);
        j += 1;
    }

    // The last P V (outside the turns: nothing of the other warpgroup waits for it).
    let last = ws_schedule::stage(n_blocks - 1);
    mbarrier_wait_parity(bars.v_full(last), ws_schedule::full_parity(n_blocks - 1));
    cta.last_pv::<E, D, BN>(st, &mut p_frag, last);
}
