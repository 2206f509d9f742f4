//! One-warpgroup test kernels of the `wgmma` wrappers (sm_90a PTX only), launched with 128
//! threads by `tests/gpu_wgmma.rs`. Operands go through exactly the path of the forward kernel:
//! `copy_tile_sw128` into the 128-byte swizzled layout, the same descriptors and k-step offsets,
//! the same `wgmma_ss` / `wgmma_rs` dispatch. Each thread writes its accumulator registers
//! as-is (thread-major), so the host checks the documented register layout element by element,
//! not only a product.
//!
//! The descriptor strides (LBO, SBO) are kernel arguments: the host passes the ones the forward
//! uses (`smem_layout::sw128_*_strides`) and, when the product is wrong, retries with other
//! candidates to say which one the hardware wanted.
//!
//! `test_tma_box_sw128` isolates the warp-specialized forward's copy path (TMA descriptor,
//! mbarrier with transaction bytes, 128-byte swizzle) from its MMAs and barriers.
use core::arch::nvptx::{_syncthreads, _thread_idx_x};

use crate::arch::sm80::{cp_async_commit_group, cp_async_wait_group, ld_shared_v4_b32, st_global_v4_b32};
use crate::arch::sm90::{
    fence_mbarrier_init, fence_proxy_async_shared, fence_regs_f32, fence_regs_u32, fence_tensormap_acquire,
    mbarrier_arrive_expect_tx, mbarrier_init, mbarrier_wait_parity, smem_desc, tma_load_4d, wgmma_commit_group,
    wgmma_fence, wgmma_wait_group, SWIZZLE_128B,
};
use crate::element::{Bf16, WgmmaElement, F16};
use crate::forward_wgmma::{aligned_smem_base, copy_tile_sw128, k_major_step, mn_major_step, wgmma_rs, wgmma_ss};
use crate::params::Strides;
use crate::smem_layout::sw128_chunk_offset;

/// Copies a contiguous `rows` x `COLS` matrix of 16-bit values into a SW128 tile at `smem`.
unsafe fn stage<const COLS: usize>(src: *const u16, rows: usize, smem: u32) {
    let strides = Strides { batch: 0, row: COLS as u64, head: 0 };
    copy_tile_sw128::<COLS>(src as u64, &strides, 0, 0, 0, rows, rows, COLS, smem, _thread_idx_x() as usize, 128);
}

/// `S (64 x N) = A (64 x K) B^T` with B given `[N][K]` (as K is stored), both K-major from
/// shared memory, K / 16 SS MMAs, the first with `scale_d = 0` over NaN-filled accumulators.
/// `out[tid * N / 2 + i]` = accumulator register `i` of thread `tid`.
unsafe fn qk<E: WgmmaElement, const N: usize, const K: usize>(
    a: *const u16,
    b: *const u16,
    out: *mut f32,
    lbo: u32,
    sbo: u32,
) {
    let a_s = aligned_smem_base();
    let b_s = a_s + (64 * K * 2) as u32;
    stage::<K>(a, 64, a_s);
    stage::<K>(b, N, b_s);
    cp_async_commit_group();
    cp_async_wait_group::<0>();
    fence_proxy_async_shared();
    _syncthreads();
    let (da, db) = (smem_desc(a_s, lbo, sbo, SWIZZLE_128B), smem_desc(b_s, lbo, sbo, SWIZZLE_128B));
    let mut s = [f32::NAN; 64];
    fence_regs_f32(&mut s);
    wgmma_fence();
    let mut kk = 0;
    while kk < K / 16 {
        wgmma_ss::<E, N>(&mut s, da + k_major_step(64, kk), db + k_major_step(N, kk), (kk > 0) as u32);
        kk += 1;
    }
    wgmma_commit_group();
    wgmma_wait_group::<0>();
    fence_regs_f32(&mut s);
    let tid = _thread_idx_x() as usize;
    let mut i = 0;
    while i < N / 2 {
        *out.add(tid * (N / 2) + i) = s[i];
        i += 1;
    }
}

/// `O (64 x N) = C + P (64 x K) V (K x N)`: P as per-thread A fragments given as-is
/// (`p[(tid * K / 16 + kk) * 4 + r]`, register r of k-step kk), V `[K][N]` (as V is stored)
/// read MN-major with the transpose flag, K / 16 RS MMAs. `c` and `out` thread-major as in `qk`.
unsafe fn pv<E: WgmmaElement, const N: usize, const K: usize>(
    p: *const u32,
    v: *const u16,
    c: *const f32,
    out: *mut f32,
    lbo: u32,
    sbo: u32,
) {
    let v_s = aligned_smem_base();
    stage::<N>(v, K, v_s);
    cp_async_commit_group();
    cp_async_wait_group::<0>();
    fence_proxy_async_shared();
    _syncthreads();
    let tid = _thread_idx_x() as usize;
    let dv = smem_desc(v_s, lbo, sbo, SWIZZLE_128B);
    let mut o = [0.0f32; 64];
    let mut i = 0;
    while i < N / 2 {
        o[i] = *c.add(tid * (N / 2) + i);
        i += 1;
    }
    let mut frag = [[0u32; 4]; 8];
    let mut kk = 0;
    while kk < K / 16 {
        let mut r = 0;
        while r < 4 {
            frag[kk][r] = *p.add((tid * (K / 16) + kk) * 4 + r);
            r += 1;
        }
        fence_regs_u32(&mut frag[kk]);
        kk += 1;
    }
    fence_regs_f32(&mut o);
    wgmma_fence();
    let mut kk = 0;
    while kk < K / 16 {
        wgmma_rs::<E, N>(&mut o, frag[kk], dv + mn_major_step(kk), 1);
        kk += 1;
    }
    wgmma_commit_group();
    wgmma_wait_group::<0>();
    fence_regs_f32(&mut o);
    let mut i = 0;
    while i < N / 2 {
        *out.add(tid * (N / 2) + i) = o[i];
        i += 1;
    }
}

macro_rules! qk_test {
    ($name:ident, $e:ty, $n:literal, $k:literal) => {
        /// See [`qk`].
        #[no_mangle]
        pub unsafe extern "ptx-kernel" fn $name(a: *const u16, b: *const u16, out: *mut f32, lbo: u32, sbo: u32) {
            qk::<$e, $n, $k>(a, b, out, lbo, sbo)
        }
    };
}
qk_test!(test_wgmma_ss_bf16_n64_k64, Bf16, 64, 64);
qk_test!(test_wgmma_ss_f16_n64_k64, F16, 64, 64);
qk_test!(test_wgmma_ss_bf16_n128_k128, Bf16, 128, 128);
qk_test!(test_wgmma_ss_f16_n128_k128, F16, 128, 128);

macro_rules! pv_test {
    ($name:ident, $e:ty, $n:literal, $k:literal) => {
        /// See [`pv`].
        #[no_mangle]
        pub unsafe extern "ptx-kernel" fn $name(
            p: *const u32,
            v: *const u16,
            c: *const f32,
            out: *mut f32,
            lbo: u32,
            sbo: u32,
        ) {
            pv::<$e, $n, $k>(p, v, c, out, lbo, sbo)
        }
    };
}
pv_test!(test_wgmma_rs_bf16_n64_k128, Bf16, 64, 128);
pv_test!(test_wgmma_rs_f16_n64_k128, F16, 64, 128);
pv_test!(test_wgmma_rs_bf16_n128_k64, Bf16, 128, 64);
pv_test!(test_wgmma_rs_f16_n128_k64, F16, 128, 64);

/// One TMA box as the warp-specialized forward copies it: thread 0 fences the descriptor at
/// `map` (device memory, written by a host copy), arms an mbarrier with the box's bytes and
/// issues the 4-d copy of the box at (`col`, `row`, `head`, `batch`) (innermost first) into a
/// SW128 tile of `rows` rows; every thread waits for the barrier's phase 0, then reads the tile
/// back 16-byte chunk by chunk through `sw128_chunk_offset` (the layout the MMA descriptors
/// assume) and writes it row-major, `rows` x 64 values, to `out`. 128 threads; dynamic shared
/// memory `1024 + rows * 128 + 8`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "ptx-kernel" fn test_tma_box_sw128(
    map: u64,
    out: *mut u16,
    col: i32,
    row: i32,
    head: i32,
    batch: i32,
    rows: u32,
) {
    let tid = _thread_idx_x() as usize;
    let rows = rows as usize;
    let tile = aligned_smem_base();
    let bar = tile + (rows * 128) as u32;
    if tid == 0 {
        mbarrier_init(bar, 1);
        fence_mbarrier_init();
    }
    _syncthreads();
    if tid == 0 {
        fence_tensormap_acquire(map);
        mbarrier_arrive_expect_tx(bar, (rows * 128) as u32);
        tma_load_4d(tile, map, [col, row, head, batch], bar);
    }
    mbarrier_wait_parity(bar, 0);
    let mut idx = tid;
    while idx < rows * 8 {
        let (r, chunk) = (idx / 8, idx % 8);
        let v = ld_shared_v4_b32(tile + sw128_chunk_offset(rows, r, chunk) as u32);
        st_global_v4_b32(out.add(r * 64 + chunk * 8) as *mut u8, v);
        idx += 128;
    }
}
