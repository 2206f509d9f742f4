//! The block-sparse forward's query-block order: a kernel of one CTA per head of the block mask
//! (one CTA for a mask shared by every head), launched before the masked wgmma forward when a
//! block mask is given, that writes `ForwardParams::query_block_order`: each head's rows of mask
//! blocks longest first (see [`crate::work_order`]). A forward CTA's time follows the kept mask
//! blocks of its row that its window shows (beside a fixed cost, the same for all).
use core::arch::nvptx::{_block_dim_x, _block_idx_y, _syncthreads, _thread_idx_x};

use crate::arch::sm80::{dynamic_smem_base, ld_global_nc_v4_f32, ld_shared_b32, st_shared_b32};
use crate::config::BLOCK_MASK_SIZE;
use crate::masking::{BlockMask, ScoreRules, Sequence};
use crate::params::ForwardParams;
use crate::work_order::{longest_first_rank, nonzero_bytes};

/// How many of the 16 mask bytes of a 16-byte load are not zero.
#[inline(always)]
fn kept_in_chunk(chunk: [f32; 4]) -> u32 {
    chunk.iter().map(|w| nonzero_bytes(w.to_bits())).sum()
}

/// How many of the mask bytes `row[lo..hi]` are not zero: 16-byte loads from the first aligned
/// byte on, four issued before any is counted so that their latencies overlap (a row of 128
/// mask blocks, N = 16k, is two rounds), single bytes before it and after the last whole round.
/// (The four as named values: an array of them went to local memory.)
#[inline(always)]
unsafe fn kept_blocks(row: *const u8, lo: usize, hi: usize) -> u32 {
    let mut count = 0;
    let mut c = lo;
    while c < hi && (row as usize + c) % 16 != 0 {
        count += (*row.add(c) != 0) as u32;
        c += 1;
    }
    while c + 64 <= hi {
        let chunk = |i: usize| ld_global_nc_v4_f32(row.add(c + 16 * i) as *const f32);
        let (a, b, d, e) = (chunk(0), chunk(1), chunk(2), chunk(3));
        count += kept_in_chunk(a) + kept_in_chunk(b) + kept_in_chunk(d) + kept_in_chunk(e);
        c += 64;
    }
    while c < hi {
        count += (*row.add(c) != 0) as u32;
        c += 1;
    }
    count
}

/// Orders the mask rows of mask head `blockIdx.y`: counts each row's kept blocks among the keys
/// the window shows its rows (at the batch's longest lengths: one order serves every entry of a
/// packed batch), a u32 per row in `4 * query_mask_rows` bytes of dynamic shared memory, then
/// ranks them ([`longest_first_rank`], each count a shared-memory broadcast). Grid: (1,
/// mask_heads, 1), any block size.
#[inline(always)]
pub unsafe fn query_block_order(p: &ForwardParams) {
    let (h, tid, threads) = (_block_idx_y() as usize, _thread_idx_x() as usize, _block_dim_x() as usize);
    let (n_q, n_k) = (p.seqlen_q as usize, p.seqlen_k as usize);
    let rows = p.query_mask_rows();
    let counts = dynamic_smem_base();
    let seq = Sequence { q_start: 0, n_q, k_start: 0, n_k };
    let rules = ScoreRules::new(&p.mask, 0, h, &seq);
    let mask = BlockMask::new(&p.mask, h).column(0);
    let k_blocks = p.mask.block_mask_k_blocks as usize;
    let mut r = tid;
    while r < rows {
        let (lo, hi) = rules.key_range(r * BLOCK_MASK_SIZE, ((r + 1) * BLOCK_MASK_SIZE).min(n_q));
        let count = if hi > lo {
            kept_blocks(mask.add(r * k_blocks), lo / BLOCK_MASK_SIZE, hi.div_ceil(BLOCK_MASK_SIZE))
        } else {
            0
        };
        st_shared_b32(counts + 4 * r as u32, count);
        r += threads;
    }
    _syncthreads();

    let order = p.query_block_order_row(h);
    let mut r = tid;
    while r < rows {
        *order.add(longest_first_rank(|i| ld_shared_b32(counts + 4 * i as u32), r, rows)) = r as u32;
        r += threads;
    }
}
