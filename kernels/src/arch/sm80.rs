//! Instructions available from sm_80 (Ampere) on; all of them also run on sm_90 (Hopper).
use core::arch::asm;

/// 32-bit shared-window address of the dynamic shared memory block `SMEM` (declared below).
/// Shared-memory instructions (`ld.shared`, `ldmatrix`, `cp.async`) take these 32-bit addresses.
#[inline(always)]
pub fn dynamic_smem_base() -> u32 {
    let a: u32;
    unsafe { asm!("mov.u32 {0}, SMEM;", out(reg32) a, options(pure, nomem, nostack)) };
    a
}

// `#[link_section = ".shared"]` is silently ignored by the NVPTX backend, so the dynamic shared
// block is declared in PTX directly; its size is the launch's dynamic shared-memory bytes.
core::arch::global_asm!(".extern .shared .align 128 .b8 SMEM[];");

/// `ld.shared.f32`
#[inline(always)]
pub unsafe fn ld_shared_f32(addr: u32) -> f32 {
    let v: f32;
    asm!("ld.shared.f32 {0}, [{1}];", out(reg32) v, in(reg32) addr, options(readonly, nostack));
    v
}

/// `ld.shared.v4.f32` (16-byte aligned address).
#[inline(always)]
pub unsafe fn ld_shared_v4_f32(addr: u32) -> [f32; 4] {
    let (a, b, c, d): (f32, f32, f32, f32);
    asm!("ld.shared.v4.f32 {{{0}, {1}, {2}, {3}}}, [{4}];",
         out(reg32) a, out(reg32) b, out(reg32) c, out(reg32) d, in(reg32) addr,
         options(readonly, nostack));
    [a, b, c, d]
}

/// `st.shared.f32`
#[inline(always)]
pub unsafe fn st_shared_f32(addr: u32, v: f32) {
    asm!("st.shared.f32 [{0}], {1};", in(reg32) addr, in(reg32) v, options(nostack));
}

/// `ld.global.nc.b32`: read-only path for inputs that no thread of the grid writes.
#[inline(always)]
pub unsafe fn ld_global_nc_b32(ptr: *const u32) -> u32 {
    let v: u32;
    asm!("ld.global.nc.b32 {0}, [{1}];", out(reg32) v, in(reg64) ptr, options(readonly, nostack));
    v
}

/// `st.global.b32`
#[inline(always)]
pub unsafe fn st_global_b32(ptr: *mut u32, v: u32) {
    asm!("st.global.b32 [{0}], {1};", in(reg64) ptr, in(reg32) v, options(nostack));
}

/// `st.global.f32`
#[inline(always)]
pub unsafe fn st_global_f32(ptr: *mut f32, v: f32) {
    asm!("st.global.f32 [{0}], {1};", in(reg64) ptr, in(reg32) v, options(nostack));
}

/// `fma.rn.f32`: a * b + c with one rounding. Rust never contracts `a * b + c` on its own (LLVM
/// then emits `mul.rn` + `add.rn`, which ptxas may not fuse), so hot loops call this. Through
/// the LLVM intrinsic rather than `asm!`, so LLVM can still schedule and fold it.
#[inline(always)]
pub fn fma(a: f32, b: f32, c: f32) -> f32 {
    core::intrinsics::fmaf32(a, b, c)
}

/// `ex2.approx.ftz.f32`: 2^x in one MUFU op (max rel. error ~2^-22; ex2(-inf) = +0).
#[inline(always)]
pub fn ex2(x: f32) -> f32 {
    let y: f32;
    unsafe { asm!("ex2.approx.ftz.f32 {0}, {1};", out(reg32) y, in(reg32) x, options(pure, nomem, nostack)) };
    y
}

/// `lg2.approx.ftz.f32`: log2(x) in one MUFU op.
#[inline(always)]
pub fn lg2(x: f32) -> f32 {
    let y: f32;
    unsafe { asm!("lg2.approx.ftz.f32 {0}, {1};", out(reg32) y, in(reg32) x, options(pure, nomem, nostack)) };
    y
}

/// `cvt.f32.f16`: one f16 (low 16 bits) to f32 (exact).
#[inline(always)]
pub fn cvt_f32_f16(h: u16) -> f32 {
    let y: f32;
    unsafe { asm!("cvt.f32.f16 {0}, {1};", out(reg32) y, in(reg16) h, options(pure, nomem, nostack)) };
    y
}

/// `cvt.rn.f16x2.f32`: two f32 to packed f16 (round to nearest even); `hi` goes to the upper half.
#[inline(always)]
pub fn cvt_rn_f16x2_f32(hi: f32, lo: f32) -> u32 {
    let y: u32;
    unsafe { asm!("cvt.rn.f16x2.f32 {0}, {1}, {2};", out(reg32) y, in(reg32) hi, in(reg32) lo, options(pure, nomem, nostack)) };
    y
}

/// `cvt.rn.bf16x2.f32`: two f32 to packed bf16 (round to nearest even); `hi` goes to the upper half.
#[inline(always)]
pub fn cvt_rn_bf16x2_f32(hi: f32, lo: f32) -> u32 {
    let y: u32;
    unsafe { asm!("cvt.rn.bf16x2.f32 {0}, {1}, {2};", out(reg32) y, in(reg32) hi, in(reg32) lo, options(pure, nomem, nostack)) };
    y
}
