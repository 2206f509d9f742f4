//! The block-sparse backward's key-block order: a kernel of one CTA per KV head, launched before
//! the preprocessing when a block mask is given, that writes `BackwardParams::key_block_order`
//! (the dK/dV CTAs of each head longest first, see [`crate::work_order`]).
//!
//! Its own kernel rather than a part of the preprocessing: the preprocessing needs all 64 warps
//! of an SM (32 registers) to keep HBM busy, and this code took it to 56 registers, or 136 B of
//! spills under launch bounds. Here it costs a launch of a few microseconds instead.
use core::arch::nvptx::{_block_dim_x, _block_idx_y, _syncthreads, _thread_idx_x};

use crate::config::BLOCK_MASK_SIZE;
use crate::masking::{BlockMask, ScoreRules, Sequence};
use crate::params::BackwardParams;
use crate::work_order::longest_first_rank;

/// Orders the dK/dV CTAs of KV head `blockIdx.y`. A key block's work is the count of (query head
/// of the group, mask block) pairs that the block mask keeps among the rows the window lets see
/// it (at the batch's longest lengths: one order serves every entry), which the dK/dV CTA's time
/// follows (beside a fixed cost, the same for all). The counts go to row 1 of the head, and are
/// ranked after the barrier into row 0 ([`longest_first_rank`]: O(n) per key block, no shared
/// memory, so any length). Grid: (1, heads_kv, 1), any block size.
#[inline(always)]
pub unsafe fn key_block_order(p: &BackwardParams) {
    let (h_kv, tid, threads) = (_block_idx_y() as usize, _thread_idx_x() as usize, _block_dim_x() as usize);
    let (n_q, n_k, bn) = (p.seqlen_q as usize, p.seqlen_k as usize, p.dkdv_block_n as usize);
    let n_blocks = p.dkdv_key_blocks();
    let (order, work) = (p.key_block_order_row(0, h_kv), p.key_block_order_row(1, h_kv));
    let group = (p.heads / p.heads_kv.max(1)).max(1) as usize;
    let seq = Sequence { q_start: 0, n_q, k_start: 0, n_k };
    let rules = ScoreRules::new(&p.mask, 0, h_kv * group, &seq);
    let k_blocks = p.mask.block_mask_k_blocks as usize;
    let mut j = tid;
    while j < n_blocks {
        let key0 = j * bn;
        let (lo, hi) = rules.query_range(key0, (key0 + bn).min(n_k), n_q);
        let mut kept = 0u32;
        let mut g = 0;
        while g < group {
            // Down the mask column of key0 (the threads of a warp read adjacent bytes).
            let column = BlockMask::new(&p.mask, h_kv * group + g).column(key0);
            let mut mb = lo / BLOCK_MASK_SIZE;
            while mb < hi.div_ceil(BLOCK_MASK_SIZE) {
                kept += (*column.add(mb * k_blocks) != 0) as u32;
                mb += 1;
            }
            g += 1;
        }
        *work.add(j) = kept;
        j += threads;
    }
    _syncthreads(); // the counts other threads wrote above (bar.sync orders memory in the CTA)
    let mut j = tid;
    while j < n_blocks {
        *order.add(longest_first_rank(|i| *work.add(i), j, n_blocks)) = j as u32;
        j += threads;
    }
}
