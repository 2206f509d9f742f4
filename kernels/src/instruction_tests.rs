//! One-warp test kernels, one per instruction wrapper (launched by `tests/gpu_instructions.rs`
//! with 32 threads): each writes what every lane holds, so the host can check the documented
//! lane <-> element mapping, not just a final product.
use core::arch::nvptx::{_syncthreads, _thread_idx_x};

use crate::philox::{philox4x32_10, DropoutRng};

use crate::arch::sm80::{
    cp_async_cg_16, cp_async_commit_group, cp_async_wait_group, dynamic_smem_base, ldmatrix_x4, ldmatrix_x4_trans,
    mma_m16n8k16_bf16, mma_m16n8k16_f16, prmt_b32, shfl_xor_f32, warp_uniform_u32,
};

/// Copies a 32 x 8 matrix of b16 (4 stacked 8x8 matrices) to shared memory with `cp.async`,
/// rows listed in `zero_rows_mask` zero-filled (source size 0), pitch 16 bytes.
unsafe fn stage_32x8(src: *const u16, zero_rows_mask: u32) {
    let lane = _thread_idx_x();
    let smem = dynamic_smem_base();
    let keep = (zero_rows_mask >> lane) & 1 == 0;
    cp_async_cg_16(smem + 16 * lane, src.add(8 * lane as usize) as *const u8, if keep { 16 } else { 0 });
    cp_async_commit_group();
    cp_async_wait_group::<0>();
    _syncthreads();
}

/// out[lane * 4 + i] = register i of lane after `ldmatrix.x4` with lane l pointing at row l.
#[no_mangle]
pub unsafe extern "ptx-kernel" fn test_ldmatrix_x4(src: *const u16, zero_rows_mask: u32, out: *mut u32) {
    stage_32x8(src, zero_rows_mask);
    let lane = _thread_idx_x();
    let r = ldmatrix_x4(dynamic_smem_base() + 16 * lane);
    for (i, v) in r.iter().enumerate() {
        *out.add(lane as usize * 4 + i) = *v;
    }
}

/// As `test_ldmatrix_x4` with `.trans`.
#[no_mangle]
pub unsafe extern "ptx-kernel" fn test_ldmatrix_x4_trans(src: *const u16, out: *mut u32) {
    stage_32x8(src, 0);
    let lane = _thread_idx_x();
    let r = ldmatrix_x4_trans(dynamic_smem_base() + 16 * lane);
    for (i, v) in r.iter().enumerate() {
        *out.add(lane as usize * 4 + i) = *v;
    }
}

/// One m16n8k16 MMA with per-lane fragments given as-is: `a` 32 x 4 u32, `b` 32 x 2, `c` 32 x 4
/// f32 (in and out), in lane-major order. `is_bf16` picks the bf16 or f16 instruction.
#[no_mangle]
pub unsafe extern "ptx-kernel" fn test_mma_m16n8k16(a: *const u32, b: *const u32, c: *mut f32, is_bf16: u32) {
    let l = _thread_idx_x() as usize;
    let af = [*a.add(4 * l), *a.add(4 * l + 1), *a.add(4 * l + 2), *a.add(4 * l + 3)];
    let bf = [*b.add(2 * l), *b.add(2 * l + 1)];
    let mut cf = [*c.add(4 * l), *c.add(4 * l + 1), *c.add(4 * l + 2), *c.add(4 * l + 3)];
    if is_bf16 != 0 {
        mma_m16n8k16_bf16(&mut cf, af, bf);
    } else {
        mma_m16n8k16_f16(&mut cf, af, bf);
    }
    for (i, v) in cf.iter().enumerate() {
        *c.add(4 * l + i) = *v;
    }
}

/// out[lane] = the value (lane * 10) of lane ^ mask.
#[no_mangle]
pub unsafe extern "ptx-kernel" fn test_shfl_xor(mask: u32, out: *mut f32) {
    let lane = _thread_idx_x();
    *out.add(lane as usize) = shfl_xor_f32(lane as f32 * 10.0, mask);
}

/// out[lane] = `prmt.b32` of `a + lane`, `b ^ lane` with selector `sel[lane]`.
#[no_mangle]
pub unsafe extern "ptx-kernel" fn test_prmt(a: u32, b: u32, sel: *const u32, out: *mut u32) {
    let lane = _thread_idx_x();
    *out.add(lane as usize) = prmt_b32(a.wrapping_add(lane), b ^ lane, *sel.add(lane as usize));
}

/// `out[32 k + lane]` = `warp_uniform_u32` of `vals[32 k + lane]`, for `k < patterns`: every
/// lane should read the minimum of the warp's 32 values (`redux.sync.min.u32`).
#[no_mangle]
pub unsafe extern "ptx-kernel" fn test_warp_uniform_u32(vals: *const u32, patterns: u32, out: *mut u32) {
    let lane = _thread_idx_x() as usize;
    let mut k = 0;
    while k < patterns as usize {
        *out.add(32 * k + lane) = warp_uniform_u32(*vals.add(32 * k + lane));
        k += 1;
    }
}

/// Philox and the dropout keep bits on the device, for comparison with the host's:
/// `out[4 * lane + i]` = word `i` of `philox4x32_10([lane, c1, c2, c3], [k0, k1])`, and
/// `keep[lane]` = the keep bits of call `lane % 4 + 4` (the lane's columns of keys 64..128) of
/// row `lane / 4` in the stream of (b, h) = (1, 2) of 3 heads.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "ptx-kernel" fn test_philox(
    c1: u32,
    c2: u32,
    c3: u32,
    k0: u32,
    k1: u32,
    seed: u64,
    offset: u64,
    threshold: u32,
    out: *mut u32,
    keep: *mut u32,
) {
    let lane = _thread_idx_x();
    let r = philox4x32_10([lane, c1, c2, c3], [k0, k1]);
    for (i, v) in r.iter().enumerate() {
        *out.add(lane as usize * 4 + i) = *v;
    }
    let rng = DropoutRng::new(seed, offset, 1, 2, 3);
    *keep.add(lane as usize) = rng.keep_bits([lane % 4 + 4, lane / 4], threshold as u8) as u32;
}
