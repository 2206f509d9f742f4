//! The warp-specialized forward's bookkeeping (`forward_ws`): which query rows a CTA owns, which
//! stage a K / V block lands in, which mbarrier phase each side waits for, and how the two
//! consumer warpgroups pass the MMA turn. Pure functions, compiled for the host too: `tests/ws_schedule.rs` runs the
//! producer and both consumers as a model under random interleavings (mbarrier phases, TMA
//! completions, named barriers) and checks that no schedule deadlocks, overwrites a stage still
//! read, or reads a block before it landed.
//!
//! An mbarrier counts completed phases; a waiter names the phase it waits for by its parity
//! (`mbarrier.try_wait.parity P` succeeds once the phase of parity `P` is the last completed
//! one, i.e. while the current phase's parity differs from `P`). Block `j` uses stage `j % STAGES`
//! for the `j / STAGES`-th time (its "turn"): its copy completes the full barrier's phase `turn`,
//! and the consumers' release of it completes the empty barrier's phase `turn`.

/// K / V buffers per tensor.
pub const STAGES: usize = crate::config::WgmmaForwardConfig::STAGES;

/// The stage block `j` of K or V is copied into.
#[inline(always)]
pub const fn stage(j: usize) -> usize {
    j % STAGES
}

/// Parity of the full-barrier phase that block `j`'s copy completes (what the consumers wait
/// for before reading it).
#[inline(always)]
pub const fn full_parity(j: usize) -> u32 {
    ((j / STAGES) % 2) as u32
}

/// Parity of the empty-barrier phase the producer waits for before copying block `j` into its
/// stage (the release of block `j - STAGES`), or `None` for a stage's first use.
#[inline(always)]
pub const fn empty_wait_parity(j: usize) -> Option<u32> {
    let turn = j / STAGES;
    if turn == 0 {
        None
    } else {
        Some(((turn - 1) % 2) as u32)
    }
}

/// Whether the second consumer warpgroup (`second`) opens the first MMA turn to the first one
/// (a `bar.arrive` on the first one's barrier before anything else): with blocks to run only,
/// so that no arrival is left unwaited for.
#[inline(always)]
pub const fn opens_first_turn(second: bool, n_blocks: usize) -> bool {
    second && n_blocks > 0
}

/// Whether a consumer warpgroup hands the turn to the other after issuing block `j`'s MMAs. Each
/// issues `n_blocks` times, waiting on its own barrier each time; the first one's waits are
/// matched by the opening arrive and the second one's first `n_blocks - 1` hand-overs, so the
/// second skips its last.
#[inline(always)]
pub const fn hands_over(second: bool, j: usize, n_blocks: usize) -> bool {
    !second || j + 1 < n_blocks
}

/// The first query row of CTA `cta` (grid order) of `BM`-row tiles over `n_q` rows, wrapping
/// below 0 for a tile that starts before the sequence. Causal tiles run last tile first (the
/// longest key ranges start first) and end at the last row, so the partial tile is the first one
/// (it sees the fewest keys); with dropout they end at most 15 rows past it instead (the shift
/// rounded down to 16: those rows are zero-filled and never stored), because the keep bits come
/// one Philox call per aligned 16-row tile (`Dropout::s_bits` takes a warp's first row as a
/// multiple of 16) and an unaligned first row would give each row the bits of another.
#[inline(always)]
pub const fn tile_first_row<const BM: usize>(cta: usize, n_q: usize, causal: bool, dropout: bool) -> usize {
    let tiles = n_q.div_ceil(BM);
    if !causal {
        return cta * BM;
    }
    let shift = tiles * BM - n_q;
    let shift = if dropout { shift & !15 } else { shift };
    ((tiles - 1 - cta) * BM).wrapping_sub(shift)
}

/// One past the last key a causal tile from `row0` (wrapping, [`tile_first_row`]) sees, bottom-
/// right aligned (row `i` sees keys `<= i + n_k - n_q`); all `n_k` keys otherwise.
#[inline(always)]
pub const fn tile_key_end<const BM: usize>(row0: usize, n_q: usize, n_k: usize, causal: bool) -> usize {
    if !causal {
        return n_k;
    }
    let end = (row0.wrapping_add(BM)) as isize as i64 + n_k as i64 - n_q as i64;
    if end < 0 {
        0
    } else if end > n_k as i64 {
        n_k
    } else {
        end as usize
    }
}
