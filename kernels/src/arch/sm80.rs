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

/// `ld.global.nc.v2.b32` (8-byte aligned): read-only path.
#[inline(always)]
pub unsafe fn ld_global_nc_v2_b32(ptr: *const u32) -> [u32; 2] {
    let (a, b): (u32, u32);
    asm!("ld.global.nc.v2.b32 {{{0}, {1}}}, [{2}];", out(reg32) a, out(reg32) b, in(reg64) ptr, options(readonly, nostack));
    [a, b]
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
    unsafe {
        asm!("cvt.rn.f16x2.f32 {0}, {1}, {2};", out(reg32) y, in(reg32) hi, in(reg32) lo, options(pure, nomem, nostack))
    };
    y
}

/// `cvt.rn.bf16x2.f32`: two f32 to packed bf16 (round to nearest even); `hi` goes to the upper half.
#[inline(always)]
pub fn cvt_rn_bf16x2_f32(hi: f32, lo: f32) -> u32 {
    let y: u32;
    unsafe {
        asm!("cvt.rn.bf16x2.f32 {0}, {1}, {2};", out(reg32) y, in(reg32) hi, in(reg32) lo, options(pure, nomem, nostack))
    };
    y
}

/// `cp.async.cg.shared.global` 16 bytes, with `src_bytes` (0 or 16) read from global and the
/// rest zero-filled: rows past the sequence end become zeros without a branch around the copy.
/// `.cg` caches in L2 only: each tile is read once per CTA, so L1 would only be polluted.
#[inline(always)]
pub unsafe fn cp_async_cg_16(dst_smem: u32, src: *const u8, src_bytes: u32) {
    asm!("cp.async.cg.shared.global [{0}], [{1}], 16, {2};",
         in(reg32) dst_smem, in(reg64) src, in(reg32) src_bytes, options(nostack));
}

/// `cp.async.cg.shared.global` of 16 bytes, all of them read (no source size: no zero-fill
/// predicate for ptxas to compute).
#[inline(always)]
pub unsafe fn cp_async_cg_16_full(dst_smem: u32, src: *const u8) {
    asm!("cp.async.cg.shared.global [{0}], [{1}], 16;", in(reg32) dst_smem, in(reg64) src, options(nostack));
}

/// `cp.async.commit_group`: closes the group of copies issued since the last commit.
#[inline(always)]
pub unsafe fn cp_async_commit_group() {
    asm!("cp.async.commit_group;", options(nostack));
}

/// `cp.async.wait_group N`: waits until at most `N` committed groups are still in flight.
#[inline(always)]
pub unsafe fn cp_async_wait_group<const N: u32>() {
    asm!("cp.async.wait_group {n};", n = const N, options(nostack));
}

/// `ldmatrix.sync.aligned.m8n8.x4.shared.b16`: four 8x8 b16 matrices. Lanes 8i..8i+7 give the
/// row addresses of matrix i; lane l receives, in register i, row l/4, columns 2(l%4) and
/// 2(l%4)+1 of matrix i (low half first): exactly an mma A/B fragment.
#[inline(always)]
pub unsafe fn ldmatrix_x4(addr: u32) -> [u32; 4] {
    let (a, b, c, d): (u32, u32, u32, u32);
    asm!("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {{{0}, {1}, {2}, {3}}}, [{4}];",
         out(reg32) a, out(reg32) b, out(reg32) c, out(reg32) d, in(reg32) addr, options(nostack));
    [a, b, c, d]
}

/// `ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16`: as [`ldmatrix_x4`] but each matrix is
/// transposed: lane l receives rows 2(l%4) and 2(l%4)+1 of column l/4.
#[inline(always)]
pub unsafe fn ldmatrix_x4_trans(addr: u32) -> [u32; 4] {
    let (a, b, c, d): (u32, u32, u32, u32);
    asm!("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {{{0}, {1}, {2}, {3}}}, [{4}];",
         out(reg32) a, out(reg32) b, out(reg32) c, out(reg32) d, in(reg32) addr, options(nostack));
    [a, b, c, d]
}

/// `mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32`: D = A B + C for one warp.
/// Lane l (g = l/4, t = l%4) holds A rows g / g+8, columns 2t.. / 2t+8.. in a0..a3; B columns
/// (k) 2t.. / 2t+8.. of row (n) g in b0, b1; C/D rows g (c0, c1) and g+8 (c2, c3), columns 2t, 2t+1.
#[inline(always)]
pub unsafe fn mma_m16n8k16_bf16(c: &mut [f32; 4], a: [u32; 4], b: [u32; 2]) {
    asm!("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {{{0}, {1}, {2}, {3}}}, {{{4}, {5}, {6}, {7}}}, {{{8}, {9}}}, {{{0}, {1}, {2}, {3}}};",
         inout(reg32) c[0], inout(reg32) c[1], inout(reg32) c[2], inout(reg32) c[3],
         in(reg32) a[0], in(reg32) a[1], in(reg32) a[2], in(reg32) a[3], in(reg32) b[0], in(reg32) b[1],
         options(nostack, nomem));
}

/// `mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32`: as [`mma_m16n8k16_bf16`] for f16.
#[inline(always)]
pub unsafe fn mma_m16n8k16_f16(c: &mut [f32; 4], a: [u32; 4], b: [u32; 2]) {
    asm!("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {{{0}, {1}, {2}, {3}}}, {{{4}, {5}, {6}, {7}}}, {{{8}, {9}}}, {{{0}, {1}, {2}, {3}}};",
         inout(reg32) c[0], inout(reg32) c[1], inout(reg32) c[2], inout(reg32) c[3],
         in(reg32) a[0], in(reg32) a[1], in(reg32) a[2], in(reg32) a[3], in(reg32) b[0], in(reg32) b[1],
         options(nostack, nomem));
}

/// `shfl.sync.bfly.b32` over the full warp: the value of lane `lane ^ mask`.
#[inline(always)]
pub unsafe fn shfl_xor_f32(v: f32, mask: u32) -> f32 {
    let r: f32;
    asm!("shfl.sync.bfly.b32 {0}, {1}, {2}, 0x1f, 0xffffffff;", out(reg32) r, in(reg32) v, in(reg32) mask, options(nostack, nomem));
    r
}

/// `shfl.sync.bfly.b32` of an integer (all 32 lanes).
#[inline(always)]
pub unsafe fn shfl_xor_b32(v: u32, mask: u32) -> u32 {
    let r: u32;
    asm!("shfl.sync.bfly.b32 {0}, {1}, {2}, 0x1f, 0xffffffff;", out(reg32) r, in(reg32) v, in(reg32) mask, options(nostack, nomem));
    r
}

/// `rcp.approx.ftz.f32`: 1 / x in one MUFU op (max rel. error ~2^-23).
#[inline(always)]
pub fn rcp(x: f32) -> f32 {
    let r: f32;
    unsafe { asm!("rcp.approx.ftz.f32 {0}, {1};", out(reg32) r, in(reg32) x, options(pure, nomem, nostack)) };
    r
}

/// `ld.shared.b32`
#[inline(always)]
pub unsafe fn ld_shared_b32(addr: u32) -> u32 {
    let r: u32;
    asm!("ld.shared.b32 {0}, [{1}];", out(reg32) r, in(reg32) addr, options(nostack, readonly));
    r
}

/// `st.shared.b32`
#[inline(always)]
pub unsafe fn st_shared_b32(addr: u32, v: u32) {
    asm!("st.shared.b32 [{0}], {1};", in(reg32) addr, in(reg32) v, options(nostack));
}

/// `ld.shared.v4.b32` (16-byte aligned).
#[inline(always)]
pub unsafe fn ld_shared_v4_b32(addr: u32) -> [u32; 4] {
    let (a, b, c, d): (u32, u32, u32, u32);
    asm!("ld.shared.v4.b32 {{{0}, {1}, {2}, {3}}}, [{4}];",
         out(reg32) a, out(reg32) b, out(reg32) c, out(reg32) d, in(reg32) addr, options(readonly, nostack));
    [a, b, c, d]
}

/// `st.global.v4.b32` (16-byte aligned).
#[inline(always)]
pub unsafe fn st_global_v4_b32(ptr: *mut u8, v: [u32; 4]) {
    asm!("st.global.v4.b32 [{0}], {{{1}, {2}, {3}, {4}}};",
         in(reg64) ptr, in(reg32) v[0], in(reg32) v[1], in(reg32) v[2], in(reg32) v[3], options(nostack));
}

/// `bar.warp.sync 0xffffffff`: orders shared-memory accesses among the lanes of one warp.
#[inline(always)]
pub unsafe fn syncwarp() {
    asm!("bar.warp.sync 0xffffffff;", options(nostack));
}

/// `bar.sync ID, THREADS`: named barrier `ID` (1..=15; 0 is `__syncthreads`'s): waits until
/// `THREADS` threads (a multiple of 32) have arrived at it, this one included.
#[inline(always)]
pub unsafe fn named_barrier_sync<const ID: u32, const THREADS: u32>() {
    asm!("bar.sync {id}, {n};", id = const ID, n = const THREADS, options(nostack));
}

/// `bar.arrive ID, THREADS`: counts this thread at named barrier `ID` without waiting (the
/// producer side of a producer / consumer pair whose consumers call [`named_barrier_sync`]).
#[inline(always)]
pub unsafe fn named_barrier_arrive<const ID: u32, const THREADS: u32>() {
    asm!("bar.arrive {id}, {n};", id = const ID, n = const THREADS, options(nostack));
}

/// `vote.sync.any.pred` over the full warp: whether `pred` holds on any lane. (The predicate
/// lives inside the asm block: NVPTX `asm!` has no predicate register class.)
#[inline(always)]
pub unsafe fn vote_any(pred: bool) -> bool {
    let r: u32;
    asm!("{{ .reg .pred p, q; setp.ne.u32 p, {1}, 0; vote.sync.any.pred q, p, 0xffffffff; selp.u32 {0}, 1, 0, q; }}",
         out(reg32) r, in(reg32) pred as u32, options(nostack, nomem));
    r != 0
}

/// `redux.sync.min.u32` over the full warp, for a value every lane already holds the same: its
/// result lands in a uniform register, so ptxas knows it is warp-uniform (a ballot's result it
/// does not: a loop whose trip count comes from one is divergent to ptxas, and every value
/// carried through it, wgmma descriptors included, leaves the uniform datapath).
#[inline(always)]
pub unsafe fn warp_uniform_u32(x: u32) -> u32 {
    let r: u32;
    asm!("redux.sync.min.u32 {0}, {1}, 0xffffffff;", out(reg32) r, in(reg32) x, options(nostack, nomem));
    r
}

/// `vote.sync.ballot.b32` over all 32 lanes: bit `l` is lane `l`'s predicate.
#[inline(always)]
pub unsafe fn vote_ballot(pred: bool) -> u32 {
    let r: u32;
    asm!("{{ .reg .pred p; setp.ne.u32 p, {1}, 0; vote.sync.ballot.b32 {0}, p, 0xffffffff; }}",
         out(reg32) r, in(reg32) pred as u32, options(nostack, nomem));
    r
}

/// `ld.shared.v2.f32` (8-byte aligned address).
#[inline(always)]
pub unsafe fn ld_shared_v2_f32(addr: u32) -> [f32; 2] {
    let (a, b): (f32, f32);
    asm!("ld.shared.v2.f32 {{{0}, {1}}}, [{2}];", out(reg32) a, out(reg32) b, in(reg32) addr, options(readonly, nostack));
    [a, b]
}

/// `red.global.add.f32`: `*ptr += v` atomically, without returning the old value (so the SM
/// does not wait for it). The order of concurrent additions is unspecified: sums of f32 may
/// then differ in the last bits from run to run (the deterministic backward avoids it).
#[inline(always)]
pub unsafe fn red_global_add_f32(ptr: *mut f32, v: f32) {
    asm!("red.global.add.f32 [{0}], {1};", in(reg64) ptr, in(reg32) v, options(nostack));
}

/// `ld.global.v4.f32` (16-byte aligned): the ordinary, coherent path, for data that another
/// grid still running may have written (the `.nc` path is only for data read-only for the
/// whole kernel). Ordered after an acquire ([`ld_acquire_gpu_u32`]) that a barrier publishes.
#[inline(always)]
pub unsafe fn ld_global_v4_f32(ptr: *const f32) -> [f32; 4] {
    let (a, b, c, d): (f32, f32, f32, f32);
    asm!("ld.global.v4.f32 {{{0}, {1}, {2}, {3}}}, [{4}];",
         out(reg32) a, out(reg32) b, out(reg32) c, out(reg32) d, in(reg64) ptr, options(readonly, nostack));
    [a, b, c, d]
}

/// `ld.acquire.gpu.global.u32`: reads a flag another CTA (of any grid) publishes with a release
/// ([`red_release_gpu_add_u32`]); what was written before that release is visible to this
/// thread's later accesses (and to the CTA's, after a barrier).
#[inline(always)]
pub unsafe fn ld_acquire_gpu_u32(ptr: *const u32) -> u32 {
    let v: u32;
    asm!("ld.acquire.gpu.global.u32 {0}, [{1}];", out(reg32) v, in(reg64) ptr, options(nostack));
    v
}

/// `red.release.gpu.global.add.u32`: `*ptr += v` atomically, after everything this thread has
/// written or observed (a release is cumulative: also what a barrier showed it of its CTA).
#[inline(always)]
pub unsafe fn red_release_gpu_add_u32(ptr: *mut u32, v: u32) {
    asm!("red.release.gpu.global.add.u32 [{0}], {1};", in(reg64) ptr, in(reg32) v, options(nostack));
}

/// `red.shared.add.u32`: `[addr] += v` atomically in shared memory (no result returned).
#[inline(always)]
pub unsafe fn red_shared_add_u32(addr: u32, v: u32) {
    asm!("red.shared.add.u32 [{0}], {1};", in(reg32) addr, in(reg32) v, options(nostack));
}

/// `nanosleep.u32`: suspends the warp for about `ns` nanoseconds (up to twice as long), so a
/// polling loop leaves the memory system and the SM's issue slots to others.
#[inline(always)]
pub unsafe fn nanosleep(ns: u32) {
    asm!("nanosleep.u32 {0};", in(reg32) ns, options(nostack));
}

/// `ld.global.nc.v4.f32` (16-byte aligned): read-only path.
#[inline(always)]
pub unsafe fn ld_global_nc_v4_f32(ptr: *const f32) -> [f32; 4] {
    let (a, b, c, d): (f32, f32, f32, f32);
    asm!("ld.global.nc.v4.f32 {{{0}, {1}, {2}, {3}}}, [{4}];",
         out(reg32) a, out(reg32) b, out(reg32) c, out(reg32) d, in(reg64) ptr, options(readonly, nostack));
    [a, b, c, d]
}

/// `ld.global.nc.v2.f32` (8-byte aligned): read-only path.
#[inline(always)]
pub unsafe fn ld_global_nc_v2_f32(ptr: *const f32) -> [f32; 2] {
    let (a, b): (f32, f32);
    asm!("ld.global.nc.v2.f32 {{{0}, {1}}}, [{2}];", out(reg32) a, out(reg32) b, in(reg64) ptr, options(readonly, nostack));
    [a, b]
}

/// `st.shared.v4.f32` (16-byte aligned).
#[inline(always)]
pub unsafe fn st_shared_v4_f32(addr: u32, v: [f32; 4]) {
    asm!("st.shared.v4.f32 [{0}], {{{1}, {2}, {3}, {4}}};",
         in(reg32) addr, in(reg32) v[0], in(reg32) v[1], in(reg32) v[2], in(reg32) v[3], options(nostack));
}

/// `st.shared.v2.f32` (8-byte aligned).
#[inline(always)]
pub unsafe fn st_shared_v2_f32(addr: u32, v: [f32; 2]) {
    asm!("st.shared.v2.f32 [{0}], {{{1}, {2}}};", in(reg32) addr, in(reg32) v[0], in(reg32) v[1], options(nostack));
}

/// `mov.u32 %tid.x` as an opaque (volatile) read: LLVM cannot reuse an earlier read, so values
/// derived from it are recomputed where this is called rather than kept in registers.
#[inline(always)]
pub fn thread_idx_x_reread() -> u32 {
    let r: u32;
    unsafe { asm!("mov.u32 {0}, %tid.x;", out(reg32) r, options(nomem, nostack)) };
    r
}

/// `prmt.b32 d, a, b, sel` (default mode): byte `i` of `d` is the byte of `{b, a}` (bytes 0-3 of
/// `a`, 4-7 of `b`) that bits 0-2 of nibble `i` of `sel` pick; with the nibble's bit 3 set, that
/// byte's sign bit replicated to all 8 bits (how a flag at bit 7 becomes a 0x00 / 0xff mask).
#[inline(always)]
pub fn prmt_b32(a: u32, b: u32, sel: u32) -> u32 {
    let d: u32;
    unsafe {
        asm!("prmt.b32 {0}, {1}, {2}, {3};", out(reg32) d, in(reg32) a, in(reg32) b, in(reg32) sel,
             options(pure, nomem, nostack))
    };
    d
}

/// As [`opaque_u32`] for a 64-bit value.
#[inline(always)]
pub fn opaque_u64(x: u64) -> u64 {
    let mut r = x;
    unsafe { asm!("mov.b64 {0}, {0};", inout(reg64) r, options(nomem, nostack)) };
    r
}

/// `%clock` (the SM's cycle counter, low 32 bits), read where the call stands. ptxas keeps a clock
/// read where the PTX has it relative to the `wgmma` instructions around it (seen in the dK/dV
/// kernel's SASS, session 15), so `clock_lo() & zero` (a zero the compiler cannot see) is a value
/// that code can be made to depend on, to start no earlier than that point.
#[inline(always)]
pub fn clock_lo() -> u32 {
    let r: u32;
    unsafe { asm!("mov.u32 {0}, %clock;", out(reg32) r, options(nostack)) };
    r
}

/// `x` through an opaque (volatile) move: LLVM can neither hoist what is derived from it out of
/// the loop that calls this nor fold it into a constant.
#[inline(always)]
pub fn opaque_u32(x: u32) -> u32 {
    let mut r = x;
    unsafe { asm!("mov.b32 {0}, {0};", inout(reg32) r, options(nomem, nostack)) };
    r
}

/// `mov.u32 %ctaid.{x,y,z}` (`AXIS` 0, 1, 2) as an opaque read, as [`thread_idx_x_reread`].
#[inline(always)]
pub fn block_idx_reread<const AXIS: u32>() -> u32 {
    let r: u32;
    unsafe {
        match AXIS {
            0 => asm!("mov.u32 {0}, %ctaid.x;", out(reg32) r, options(nomem, nostack)),
            1 => asm!("mov.u32 {0}, %ctaid.y;", out(reg32) r, options(nomem, nostack)),
            _ => asm!("mov.u32 {0}, %ctaid.z;", out(reg32) r, options(nomem, nostack)),
        }
    };
    r
}
