//! Longest-first order of a block-sparse grid's CTAs.
//!
//! The GPU starts a grid's CTAs in index order, each on the first SM that frees up. When CTAs
//! differ in length, as the dK/dV CTAs of a block-sparse backward do (one key block each, as many
//! query blocks as its mask column keeps), what decides the grid's end is which CTAs come last:
//! a long one started late leaves the other SMs idle until it ends. Starting the CTAs of each KV
//! head longest first (LPT scheduling) puts the short ones at the end of every head, so the last
//! head ends in its shortest CTAs. Heads keep their order, so the dQ conversion that follows a
//! finished head (`BackwardParams::dq_done`) still finds the heads done in turn. (At N = 16k,
//! density 0.1, d = 128: a simulation of the 2048 CTAs on 132 SMs left 74 us of the machine idle
//! after the last start in grid order, 21 us longest first per head, 26 us longest first over the
//! whole grid; measured, call s13c4: 35 us, 2.2%, saved.) Compiled for the host too, where
//! `tests/work_order.rs` checks it.

/// Where item `j` of `n` goes when the items are sorted by descending `work`, ties by index: the
/// number of items with more work, plus those with as much work and a smaller index. Over
/// `j = 0..n` this is a permutation of `0..n`. O(n) per item: one thread per item ranks a head's
/// few hundred key blocks in microseconds, with no sort network and no shared memory.
#[inline(always)]
pub fn longest_first_rank(work: impl Fn(usize) -> u32, j: usize, n: usize) -> usize {
    let w = work(j);
    let mut rank = 0;
    let mut i = 0;
    while i < n {
        let wi = work(i);
        rank += (wi > w || (wi == w && i < j)) as usize;
        i += 1;
    }
    rank
}
