//! The block-sparse backward's key-block order: a kernel of one CTA per KV head, launched before
//! the preprocessing when a block mask is given, that writes `BackwardParams::key_block_order`
//! (the dK/dV CTAs of each head longest first, see [`crate::work_order`]).
//!
//! Its own kernel rather than a part of the preprocessing: the preprocessing needs all 64 warps
//! of an SM (32 registers) to keep HBM busy, and this code took it to 56 registers (or 136 B of
//! spills under launch bounds).
use core::arch::nvptx::{_block_dim_x, _block_idx_y, _syncthreads, _thread_idx_x};

use crate::arch::sm80::{dynamic_smem_base, ld_global_nc_v4_f32, ld_shared_b32, red_shared_add_u32, st_shared_b32};
use crate::config::BLOCK_MASK_SIZE;
use crate::masking::{BlockMask, ScoreRules, Sequence};
use crate::params::BackwardParams;
use crate::work_order::longest_first_rank;

/// Mask bytes a thread loads per round: one 16-byte load where aligned.
const BYTES: usize = 16;

/// Orders the dK/dV CTAs of KV head `blockIdx.y`. A key block's work is the count of (query head
/// of the group, mask block) pairs that the block mask keeps among the rows the window lets see
/// it (at the batch's longest lengths: one order serves every entry), which the dK/dV CTA's time
/// follows (beside a fixed cost, the same for all).
///
/// The counts are shared-memory atomics (`4 * dkdv_key_blocks` bytes of dynamic shared memory),
/// fed by the threads reading the head's mask in order, [`BYTES`] adjacent bytes per thread and
/// round, all loaded before any is looked at. (Chains of dependent loads were its cost: one
/// thread per key block reading down its column took 16 rounds of 8 loads at N = 16k, 10-15 us
/// by its SASS, and one byte per thread and round still took 14 us, ncu in call s13c2, against
/// the 35 us the order saves there, call s13c4; this version 7-13 us by ncu, cold caches and
/// idle clocks, call s13c3.) The ranks ([`longest_first_rank`]) then read the counts from shared
/// memory, each a broadcast. Grid: (1, heads_kv, 1), any block size.
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

    let group = p.group();
    let seq = Sequence { q_start: 0, n_q, k_start: 0, n_k };
    let rules = ScoreRules::new(&p.mask, 0, h_kv * group, &seq);
    let (rows, cols) = (n_q.div_ceil(BLOCK_MASK_SIZE) as u32, p.mask.block_mask_k_blocks.max(1));
    let per = BLOCK_MASK_SIZE / bn; // kernel key blocks per mask column (bn divides it)
    let total = rows * cols;
    let mut g = 0;
    while g < group {
        // The head's mask, row-major. BYTES adjacent mask bytes per thread and round, all loaded
        // before any is looked at: one load latency per round (16 KB of a head at N = 16k: one
        // round of 1024 threads).
        let mask = BlockMask::new(&p.mask, h_kv * group + g).column(0);
        let mut base = (tid * BYTES) as u32;
        while base < total {
            // The kept ones of the round's bytes as bits, visited in a data-dependent loop below
            // (not unrolled: the unrolled body took 65 registers, more than 1024 threads may
            // have).
            let chunk = mask.add(base as usize);
            let mut kept = 0u32;
            if base + BYTES as u32 <= total && chunk as usize % BYTES == 0 {
                // One 16-byte load (the usual case: heads of 16k mask blocks).
                let words = ld_global_nc_v4_f32(chunk as *const f32);
                let mut w = 0;
                while w < 4 {
                    let word = words[w].to_bits();
                    let mut b = 0;
                    while b < 4 {
                        kept |= ((word >> (8 * b) & 0xff != 0) as u32) << (4 * w + b);
                        b += 1;
                    }
                    w += 1;
                }
            } else {
                let mut e = 0;
                while e < BYTES {
                    let idx = base + e as u32;
                    kept |= ((idx < total && *chunk.add(e) != 0) as u32) << e;
                    e += 1;
                }
            }
            while kept != 0 {
                let idx = base + kept.trailing_zeros();
                kept &= kept - 1;
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
            base += (threads * BYTES) as u32;
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
