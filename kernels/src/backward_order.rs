//! The block-sparse backward's key-block order: a kernel of one CTA per KV head, launched before
//! the preprocessing when a block mask is given, that writes `BackwardParams::key_block_order`
//! (the dK/dV CTAs of each head longest first, see [`crate::work_order`]).
//!
//! Its own kernel rather than a part of the preprocessing: the preprocessing needs all 64 warps
//! of an SM (32 registers) to keep HBM busy, and this code took it to 56 registers (or 136 B of
//! spills under launch bounds).
use core::arch::nvptx::{_block_dim_x, _block_idx_y, _syncthreads, _thread_idx_x};

use crate::arch::sm80::{dynamic_smem_base, ld_shared_b32, red_shared_add_u32, st_shared_b32};
use crate::config::BLOCK_MASK_SIZE;
use crate::masking::{BlockMask, ScoreRules, Sequence};
use crate::params::BackwardParams;
use crate::work_order::longest_first_rank;

/// Orders the dK/dV CTAs of KV head `blockIdx.y`. A key block's work is the count of (query head
/// of the group, mask block) pairs that the block mask keeps among the rows the window lets see
/// it (at the batch's longest lengths: one order serves every entry), which the dK/dV CTA's time
/// follows (beside a fixed cost, the same for all).
///
/// The counts are shared-memory atomics (`4 * dkdv_key_blocks` bytes of dynamic shared memory),
/// fed by the threads reading the head's mask in order, so that a warp's loads are 32 adjacent
/// bytes and a thread reads `rows x columns / threads` of them (a first version, one thread per
/// key block reading down its column, waited on 16 dependent rounds of 8 loads at N = 16k, some
/// 10-15 us by its SASS, while the order saved ~30 us in call s13c1). The ranks ([`longest_first_rank`]) then read
/// the counts from shared memory, each a broadcast. Grid: (1, heads_kv, 1), any block size.
#[inline(always)]
pub unsafe fn key_block_order(p: &BackwardParams) {
    let (h_kv, tid, threads) = (_block_idx_y() as usize, _thread_idx_x() as usize, _block_dim_x() as usize);
    let (n_q, n_k, bn) = (p.seqlen_q as usize, p.seqlen_k as usize, p.dkdv_block_n.max(1) as usize);
    let n_blocks = p.dkdv_key_blocks();
    let counts = dynamic_smem_base();
    let mut j = tid;
    while j < n_blocks {
        st_shared_b32(counts + 4 * j as u32, 0);
        j += threads;
    }
    _syncthreads();

    let group = (p.heads / p.heads_kv.max(1)).max(1) as usize;
    let seq = Sequence { q_start: 0, n_q, k_start: 0, n_k };
    let rules = ScoreRules::new(&p.mask, 0, h_kv * group, &seq);
    let (rows, cols) = (n_q.div_ceil(BLOCK_MASK_SIZE) as u32, p.mask.block_mask_k_blocks.max(1));
    let per = BLOCK_MASK_SIZE / bn; // kernel key blocks per mask column (bn divides it)
    let mut g = 0;
    while g < group {
        let mask = BlockMask::new(&p.mask, h_kv * group + g).column(0);
        let mut idx = tid as u32;
        while idx < rows * cols {
            if *mask.add(idx as usize) != 0 {
                let (r, c) = ((idx / cols) as usize, (idx % cols) as usize);
                let mut s = 0;
                while s < per {
                    // Kernel key block j of this column, if the window shows it any row of r.
                    let j = c * per + s;
                    let key0 = j * bn;
                    if j < n_blocks {
                        let (lo, hi) = rules.query_range(key0, (key0 + bn).min(n_k), n_q);
                        if r * BLOCK_MASK_SIZE < hi && (r + 1) * BLOCK_MASK_SIZE > lo {
                            red_shared_add_u32(counts + 4 * j as u32, 1);
                        }
                    }
                    s += 1;
                }
            }
            idx += threads as u32;
        }
        g += 1;
    }
    _syncthreads();

    let order = p.key_block_order_row(h_kv);
    let mut j = tid;
    while j < n_blocks {
        *order.add(longest_first_rank(|i| ld_shared_b32(counts + 4 * i as u32), j, n_blocks)) = j as u32;
        j += threads;
    }
}
