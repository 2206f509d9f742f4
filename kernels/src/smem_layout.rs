//! Shared-memory tile layouts that the wgmma kernels and their tests agree on; compiled for the
//! host too, so CPU tests check the address functions and GPU tests build the same layouts.
//!
//! # The 128-byte swizzled tile (`SW128`)
//! A tile of `rows` rows x `cols` 16-bit elements (`cols` a multiple of 64) is stored as
//! `cols / 64` column blocks, one after the other; block `b` holds columns `64 b .. 64 b + 63` of
//! every row, 128 bytes per row. Inside a block, 16-byte chunk `c` (elements `8 c .. 8 c + 7`) of
//! row `r` is stored at chunk `c ^ (r % 8)`: this is the PTX "128-byte swizzle" (CuTe's
//! `Swizzle<3,4,3>`), which XORs address bits 7-9 (the row within an 8-row, 1024-byte atom) into
//! bits 4-6 (the chunk). The tile base must be 1024-byte aligned, because the hardware applies
//! the XOR to the final shared address.
//!
//! Why this layout: it is what a `wgmma` shared-memory descriptor with 128-byte swizzle reads
//! (K-major for Q and K, MN-major for V), and the 8 rows of an atom spread each column chunk over
//! all 32 banks, so the `cp.async` writes (8 lanes per 128-byte row) and the 4-byte epilogue
//! writes (8 rows x 4 lanes) are free of bank conflicts.

/// Bytes of one 8-row swizzle atom of a 128-byte-wide block (the descriptor's SBO for our tiles).
pub const SW128_ATOM_BYTES: u32 = 1024;

/// Byte offset, from the tile base, of 16-byte chunk `chunk` (elements `8 chunk .. 8 chunk + 7`)
/// of row `row` in a SW128 tile of `rows` rows.
#[inline(always)]
pub const fn sw128_chunk_offset(rows: usize, row: usize, chunk: usize) -> usize {
    (chunk / 8) * rows * 128 + row * 128 + ((chunk % 8) ^ (row % 8)) * 16
}

/// Byte offset of element (`row`, `col`) of a 16-bit SW128 tile of `rows` rows.
#[inline(always)]
pub const fn sw128_offset(rows: usize, row: usize, col: usize) -> usize {
    sw128_chunk_offset(rows, row, col / 8) + (col % 8) * 2
}

/// Descriptor strides (LBO, SBO) in bytes of a K-major operand read from a SW128 tile (Q as A,
/// K as B of `S = Q K^T`): consecutive 8-row groups are 1024 bytes apart; LBO is unused by the
/// swizzled K-major layouts (CUTLASS sets it to 1, i.e. 16 bytes).
pub const fn sw128_k_major_strides() -> (u32, u32) {
    (16, SW128_ATOM_BYTES)
}

/// Descriptor strides (LBO, SBO) in bytes of an MN-major operand read from a SW128 tile of
/// `rows` rows (V as B of `O = P V`: N = the head dim along the row, K = the keys): LBO = the
/// distance between 64-element column blocks (`rows * 128`), SBO = the distance between groups
/// of 8 keys (one atom, 1024 bytes).
pub const fn sw128_mn_major_strides(rows: usize) -> (u32, u32) {
    ((rows * 128) as u32, SW128_ATOM_BYTES)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::{vec, vec::Vec};

    /// The documented pattern: the unswizzled (row-major per 64-column block) byte address with
    /// bits 7-9 XORed into bits 4-6.
    fn swizzle_128b(linear: usize) -> usize {
        linear ^ ((linear >> 3) & 0x70)
    }

    #[test]
    fn sw128_matches_the_documented_xor_pattern() {
        for rows in [8, 64, 128] {
            for cols in [64, 128] {
                let mut seen = vec![false; rows * cols * 2];
                for r in 0..rows {
                    for c in 0..cols {
                        let linear = (c / 64) * rows * 128 + r * 128 + (c % 64) * 2;
                        let off = sw128_offset(rows, r, c);
                        assert_eq!(off, swizzle_128b(linear), "rows {rows} r {r} c {c}");
                        assert!(!seen[off], "two elements at byte {off}");
                        seen[off] = true;
                    }
                }
            }
        }
    }

    #[test]
    fn sw128_first_atom_by_hand() {
        // Row 0 is not permuted; row 1 swaps neighbouring chunks; row 7 reverses them.
        assert_eq!(sw128_chunk_offset(64, 0, 3), 3 * 16);
        assert_eq!(sw128_chunk_offset(64, 1, 0), 128 + 16);
        assert_eq!(sw128_chunk_offset(64, 1, 1), 128);
        assert_eq!(sw128_chunk_offset(64, 7, 0), 7 * 128 + 7 * 16);
        assert_eq!(sw128_chunk_offset(64, 9, 2), 9 * 128 + 3 * 16); // row 9 is row 1 of atom 1
        assert_eq!(sw128_chunk_offset(64, 0, 8), 64 * 128); // second column block
        assert_eq!(sw128_offset(64, 2, 17), 2 * 128 + (2 ^ 2) * 16 + 2);
    }

    /// Every 8 consecutive lanes of a cp.async pass write the 8 chunks of one row: one full
    /// 128-byte row (all 32 banks), whatever the row.
    #[test]
    fn sw128_rows_fill_whole_bank_lines() {
        for r in 0..16 {
            let mut chunks: Vec<usize> = (0..8).map(|c| sw128_chunk_offset(64, r, c) % 128 / 16).collect();
            chunks.sort();
            assert_eq!(chunks, (0..8).collect::<Vec<_>>());
        }
    }
}
