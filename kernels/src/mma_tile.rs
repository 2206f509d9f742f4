//! Tile primitives shared by the tensor-core kernels: the `cp.async` tile copy and the
//! `ldmatrix` lane addressing patterns.
use crate::arch::sm80::{cp_async_cg_16, cp_async_cg_16_full};
use crate::params::Strides;

/// Byte offset of this lane's row address for an `ldmatrix.x4` of a 16 x 16 block of 16-bit
/// elements stored row-major with `pitch` bytes per row, matrices in the order (rows 0-7, cols
/// 0-7), (rows 8-15, cols 0-7), (rows 0-7, cols 8-15), (rows 8-15, cols 8-15): lane l points at
/// row l % 16, column half l / 16. Without `.trans` that is an mma A fragment (a0..a3) of a
/// row-major [m][k] tile; with `.trans`, the B fragments of two n-tiles ([b0, b1] for columns
/// 0-7, [b2, b3] for 8-15) of a [k][n] tile (V in `P V`, dO in `P^T dO`).
#[inline(always)]
pub fn x4_offset_row_major(lane: usize, pitch: usize) -> u32 {
    ((lane % 16) * pitch + (lane / 16) * 16) as u32
}

/// As [`x4_offset_row_major`] with the matrices in the order (rows 0-7, cols 0-7), (rows 0-7,
/// cols 8-15), (rows 8-15, cols 0-7), (rows 8-15, cols 8-15): lane l points at row
/// (l / 16) * 8 + l % 8, column half (l / 8) % 2. Without `.trans` these are the B fragments of
/// two n-tiles of an [n][k] tile (K in `Q K^T`); with `.trans`, the A fragment of the transpose
/// of a [k][m] tile (dS stored with keys as rows, read as rows of queries for `dQ = dS K`).
#[inline(always)]
pub fn x4_offset_col_pairs(lane: usize, pitch: usize) -> u32 {
    (((lane / 16) * 8 + lane % 8) * pitch + ((lane / 8) % 2) * 16) as u32
}

/// Thread `tid` of `threads` issues its share of the `cp.async` copies of `rows` rows x `D` columns of one head into shared memory
/// (pitch `pitch` bytes). Rows past `valid_rows` and columns past `head_dim` (padding up to the
/// instantiated `D`) are zero-filled by the copy itself (source size 0), so that no stale shared
/// memory, possibly NaN bits, ever reaches an MMA.
#[inline(always)]
pub unsafe fn copy_tile_async<const D: usize>(
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
    let chunks = D / 8; // 16-byte chunks per row

    // Tiles wholly inside the sequence with every column real (all but a sequence's last
    // block): with `threads` a multiple of the chunks per row, a thread copies one chunk column
    // of every `threads / chunks`-th row, so each copy is the first one's source plus a multiple
    // of a fixed stride and its shared address plus a constant (~3 instructions a chunk against
    // ~23 for the general loop below; `copy_full_tile_sw128` is the swizzled tiles' version).
    // The step conditions are constant after inlining. sm_90a only: in the sm_80 PTX the
    // pointers spill in the causal d = 128 forward (124 B) and the d = 64 dK/dV kernel (4 B),
    // and no sm_80 GPU is at hand to weigh that against the copies saved.
    let row_step = threads / chunks;
    let inside = tile_inside(first_row, valid_rows, rows);
    if cfg!(flashattn_sm90a) && threads % chunks == 0 && rows % row_step == 0 && head_dim == D && inside {
        let chunk = (tid / chunks, tid % chunks);
        let chunk_addr = |r: usize, c: usize| smem + (r * pitch + c * 16) as u32;
        copy_chunk_column(src, strides, b, h, first_row, chunk, row_step, rows / row_step, chunk_addr, pitch);
        return;
    }
    copy_tile_async_general::<D>(src, strides, b, h, first_row, valid_rows, rows, head_dim, smem, pitch, tid, threads);
}

/// Whether rows `first_row .. first_row + rows` all lie before `valid_rows` (in 32 bits: the
/// wrapped rows of a shifted causal tile, "negative", fail it): the tiles the fixed-step copies
/// ([`copy_chunk_column`]) take.
#[inline(always)]
pub fn tile_inside(first_row: usize, valid_rows: usize, rows: usize) -> bool {
    (first_row as u32) <= valid_rows as u32 && valid_rows as u32 - first_row as u32 >= rows as u32
}

/// The fixed-step tile copy of [`copy_tile_async`] and `copy_full_tile_sw128`: 16-byte chunk `c`
/// of rows `first_row + r`, `+ row_step`, ... (`steps` of them, all inside the sequence, every
/// column real) to `chunk_addr(r, c)`, `+ row_step * row_bytes`, ...: one source pointer advanced
/// by a fixed stride and constant shared offsets, ~3 instructions a chunk.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub unsafe fn copy_chunk_column(
    src: u64,
    strides: &Strides,
    b: usize,
    h: usize,
    first_row: usize,
    (r, c): (usize, usize),
    row_step: usize,
    steps: usize,
    chunk_addr: impl Fn(usize, usize) -> u32,
    row_bytes: usize,
) {
    let first = (src as *const u16).add((strides.offset(b, first_row + r, h) + (c * 8) as u64) as usize);
    let step = row_step * strides.row as usize; // elements
    let dst = chunk_addr(r, c);
    let mut k = 0;
    while k < steps {
        cp_async_cg_16_full(dst + (k * row_step * row_bytes) as u32, first.add(k * step) as *const u8);
        k += 1;
    }
}

/// [`copy_tile_async`] without its fixed-step path: the general loop for every tile (for kernels
/// whose registers the fixed-step pointers would push past an occupancy step).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub unsafe fn copy_tile_async_general<const D: usize>(
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
    let chunks = D / 8;
    let mut idx = tid; // this thread's first chunk (see the callers for how they read it)
                       // Consecutive lanes take consecutive chunks of a row: coalesced 16-byte global reads, and
                       // 8 lanes fill 128 contiguous bytes of shared memory (no bank conflicts).
    while idx < rows * chunks {
        let r = idx / chunks;
        let c = idx % chunks;
        let row = first_row + r;
        let valid = row < valid_rows && c * 8 < head_dim;
        let src_ptr = if valid {
            (src as *const u16).add((strides.offset(b, row, h) + (c * 8) as u64) as usize) as *const u8
        } else {
            src as *const u8 // not read (source size 0), but a valid address all the same
        };
        cp_async_cg_16(smem + (r * pitch + c * 16) as u32, src_ptr, if valid { 16 } else { 0 });
        idx += threads;
    }
}
