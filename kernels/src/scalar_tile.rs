//! Tiles of one head converted to f32 in shared memory, and the row operations on them, for the
//! scalar (CUDA-core) kernels.
use core::arch::nvptx::_thread_idx_x;

use crate::arch::sm80::{fma, ld_global_nc_b32, ld_shared_f32, ld_shared_v4_f32, st_shared_f32};
use crate::element::Element;
use crate::params::Strides;

/// Loads `rows` rows (from `first_row`) of one head into shared memory as f32 times `mul`,
/// row stride `smem_stride` words; rows past `valid_rows` are zero-filled so that no
/// uninitialised shared memory (possibly NaN bits) ever reaches an FMA.
#[inline(always)]
pub unsafe fn load_tile_f32<E: Element, const D: usize>(
    src: u64,
    strides: &Strides,
    b: usize,
    h: usize,
    first_row: usize,
    valid_rows: usize,
    rows: usize,
    smem: u32,
    smem_stride: usize,
    mul: f32,
    threads: usize,
) {
    let pairs_per_row = D / 2;
    let mut idx = _thread_idx_x() as usize;
    // Consecutive threads take consecutive pairs of one row: 4-byte loads, coalesced.
    while idx < rows * pairs_per_row {
        let r = idx / pairs_per_row;
        let c = 2 * (idx % pairs_per_row);
        let row = first_row + r;
        let (lo, hi) = if row < valid_rows {
            let p = (src as *const u16).add(strides.offset(b, row, h) as usize + c) as *const u32;
            E::unpack2(ld_global_nc_b32(p))
        } else {
            (0.0, 0.0)
        };
        let dst = smem + 4 * (r * smem_stride + c) as u32;
        st_shared_f32(dst, lo * mul);
        st_shared_f32(dst + 4, hi * mul);
        idx += threads;
    }
}

/// Dot product of two shared-memory rows of `D` f32 (`b` 16-byte aligned), four partial sums.
#[inline(always)]
pub unsafe fn dot<const D: usize>(a: u32, b: u32) -> f32 {
    let mut s = [0.0f32; 4];
    let mut c = 0;
    while c < D {
        let bb = ld_shared_v4_f32(b + 4 * c as u32);
        let mut u = 0;
        while u < 4 {
            s[u] = fma(ld_shared_f32(a + 4 * (c + u) as u32), bb[u], s[u]);
            u += 1;
        }
        c += 4;
    }
    (s[0] + s[1]) + (s[2] + s[3])
}

/// `acc += x * row` for a shared-memory row of `D` f32 (16-byte aligned).
#[inline(always)]
pub unsafe fn axpy<const D: usize>(acc: &mut [f32; D], x: f32, row: u32) {
    let mut c = 0;
    while c < D {
        let r = ld_shared_v4_f32(row + 4 * c as u32);
        acc[c] = fma(x, r[0], acc[c]);
        acc[c + 1] = fma(x, r[1], acc[c + 1]);
        acc[c + 2] = fma(x, r[2], acc[c + 2]);
        acc[c + 3] = fma(x, r[3], acc[c + 3]);
        c += 4;
    }
}
