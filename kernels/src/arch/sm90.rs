//! Instructions that exist only on sm_90a (Hopper): warpgroup MMA (`wgmma`), its fences, and the
//! proxy fence between ordinary shared-memory writes and `wgmma` reading them. Compiled only
//! into the sm_90a PTX (`cfg(flashattn_sm90a)` on the module), so the sm_80 PTX never holds them.
//!
//! # Warpgroup MMA in one paragraph
//! A warpgroup is 4 consecutive warps (128 threads, the first warp's index a multiple of 4).
//! `wgmma.mma_async.m64nNk16` computes `D (64 x N, f32) (+)= A (64 x 16) * B (16 x N)` for the
//! whole warpgroup, asynchronously: A comes from shared memory (a descriptor, "SS") or from
//! registers ("RS"), B always from shared memory. The sequence is
//! `wgmma.fence` (orders earlier register writes before the MMAs read them) -> MMAs ->
//! `wgmma.commit_group` -> `wgmma.wait_group N` (the accumulators may be read only after).
//!
//! # Register fragments (CUTLASS's `CLayout_64xN` / `ALayout_64x16`)
//! Thread `tid` of the warpgroup: warp `w = tid / 32`, `g = lane / 4`, `t = lane % 4`.
//! - Accumulator `d[i]` (N/2 f32 per thread), `i = 4 j + e` with `j` the 8-column chunk:
//!   row `16 w + g + 8 (e / 2)`, column `8 j + 2 t + (e % 2)`. That is mma.sync's m16n8 C layout
//!   repeated over N / 8 chunks, with warp `w` owning rows `16 w .. 16 w + 15`.
//! - A from registers (4 x u32, two 16-bit values each, low half = lower column):
//!   `a[0]` row `16 w + g`, columns `2 t, 2 t + 1`; `a[1]` row `+ 8`; `a[2]` row `16 w + g`,
//!   columns `2 t + 8, 2 t + 9`; `a[3]` row `+ 8`, columns `+ 8`. That is mma.sync's m16n8k16 A
//!   layout, so the accumulator of two adjacent 8-column chunks is the A fragment of one k-step.
use core::arch::asm;

/// Swizzle mode of a shared-memory matrix descriptor (bits 62-63): none.
pub const SWIZZLE_NONE: u64 = 0;
/// Swizzle mode: 128-byte (8 rows x 128 bytes atoms, 16-byte chunk `c` of row `r` stored at
/// chunk `c ^ (r % 8)`; the XOR is taken from address bits 7-9 into bits 4-6, so atoms must be
/// 1024-byte aligned: see `smem_layout`).
pub const SWIZZLE_128B: u64 = 1;
/// Swizzle mode: 64-byte.
pub const SWIZZLE_64B: u64 = 2;
/// Swizzle mode: 32-byte.
pub const SWIZZLE_32B: u64 = 3;

/// The 64-bit shared-memory matrix descriptor of `wgmma` (PTX ISA "Matrix Descriptor Format"):
///
/// | bits  | field                                                                     |
/// |-------|---------------------------------------------------------------------------|
/// | 0-13  | start address >> 4 (32-bit shared-window address, 16-byte aligned)       |
/// | 16-29 | leading dimension byte offset (LBO) >> 4                                  |
/// | 32-45 | stride dimension byte offset (SBO) >> 4                                   |
/// | 49-51 | base offset (0: every swizzle atom we use is 1024-byte aligned)            |
/// | 62-63 | swizzle mode: 0 none, 1 128B, 2 64B, 3 32B                               |
///
/// What LBO and SBO mean depends on the operand's major-ness (CUTLASS `make_gmma_desc`), for the
/// swizzled layouts (in units of 16-byte chunks, "8 rows" = the 8 rows of a swizzle atom):
/// - K-major (the 16 k-values of one MMA are contiguous, as Q and K stored `[row][dim]`):
///   SBO = distance between consecutive groups of 8 rows (M or N); LBO is unused (set to 1).
///   Advancing k by 16 elements inside a 128-byte row is done by moving the start address by
///   32 bytes: the swizzle XOR is applied on the final address bits, so it stays consistent.
/// - MN-major (the M or N values are contiguous, as V stored `[key][dim]` read as B = V with
///   N = dim, the transpose flag set): LBO = distance between consecutive 64-element (128-byte)
///   column blocks along N; SBO = distance between consecutive groups of 8 rows along K.
///
/// Adding `bytes >> 4` to a descriptor moves its start address (no carry out of the 14-bit field
/// while addresses stay below 256 KB, which every shared window does).
#[inline(always)]
pub const fn smem_desc(addr: u32, lbo_bytes: u32, sbo_bytes: u32, swizzle: u64) -> u64 {
    ((addr as u64 >> 4) & 0x3fff)
        | ((((lbo_bytes >> 4) & 0x3fff) as u64) << 16)
        | ((((sbo_bytes >> 4) & 0x3fff) as u64) << 32)
        | (swizzle << 62)
}

/// `wgmma.fence.sync.aligned`: orders this thread's earlier register accesses (accumulators,
/// register A fragments) before the `wgmma.mma_async` that follow. Needed before the first MMA
/// of a batch and whenever the accumulators or A registers were touched by other instructions.
#[inline(always)]
pub unsafe fn wgmma_fence() {
    asm!("wgmma.fence.sync.aligned;", options(nostack));
}

/// `wgmma.commit_group.sync.aligned`: closes the group of MMAs issued since the last commit.
#[inline(always)]
pub unsafe fn wgmma_commit_group() {
    asm!("wgmma.commit_group.sync.aligned;", options(nostack));
}

/// `wgmma.wait_group.sync.aligned N`: waits until at most `N` committed MMA groups are pending.
/// Their accumulators, and the shared memory they read, are then free to use.
#[inline(always)]
pub unsafe fn wgmma_wait_group<const N: u32>() {
    asm!("wgmma.wait_group.sync.aligned {n};", n = const N, options(nostack));
}

/// `wgmma.wait_group.sync.aligned N`, kept after the computation of `after`. ptxas moves a wait
/// up to the top of its basic block, ahead of the register work the program put before it (SASS,
/// session 16: the forward's wait for P V_{j-1} ran before the softmax meant to run under that
/// MMA, and the backward's wait for dP^T before P^T's exponentials), but not above a
/// shared-memory operation. So one goes first: `red.shared.add.u32 [smem], 0`, predicated on
/// `after == 0xffff_ffff`, a predicate ptxas cannot evaluate before `after` is known. Callers
/// pass bits that are never all ones (e.g. of non-negative floats, sign bit clear), so it never
/// runs; were it to, adding 0 changes nothing. `smem`: any shared address of the CTA.
#[inline(always)]
pub unsafe fn wgmma_wait_group_after<const N: u32>(after: u32, smem: u32) {
    asm!(
        "{{ .reg .pred %p_after; setp.eq.u32 %p_after, {a}, -1; @%p_after red.shared.add.u32 [{s}], 0; }}",
        "wgmma.wait_group.sync.aligned {n};",
        a = in(reg32) after,
        s = in(reg32) smem,
        n = const N,
        options(nostack)
    );
}

/// `fence.proxy.async.shared::cta`: makes this thread's earlier generic-proxy writes of shared
/// memory (`st.shared`, completed `cp.async`) visible to the async proxy, which `wgmma` reads
/// its descriptors' operands through. Each writer fences after its writes have landed, then a
/// barrier publishes them to the warpgroups that issue the MMAs.
#[inline(always)]
pub unsafe fn fence_proxy_async_shared() {
    asm!("fence.proxy.async.shared::cta;", options(nostack));
}

/// `fence.proxy.async.global`: orders this thread's view of global memory between the async
/// proxy (bulk copies and reductions it waited for) and the generic proxy (the release that
/// publishes them to other CTAs).
#[inline(always)]
pub unsafe fn fence_proxy_async_global() {
    asm!("fence.proxy.async.global;", options(nostack));
}

/// `griddepcontrol.launch_dependents`: the grid launched after this one with programmatic
/// stream serialization may start once every CTA of this grid has executed this (or exited);
/// the first execution in a CTA counts. It does not wait for, or publish, anything: a dependent
/// that reads this grid's results synchronises itself (flags, or `griddepcontrol.wait`).
/// Without such a dependent it does nothing.
#[inline(always)]
pub unsafe fn griddepcontrol_launch_dependents() {
    asm!("griddepcontrol.launch_dependents;", options(nostack));
}

/// Not an instruction: a PTX comment, `// flashattn.maxntid N`, that the build turns into the
/// kernel's `.maxntid N, 1, 1` directive (Rust cannot attach it to an entry). Without it ptxas
/// may allocate more registers than a block of `N` threads can have (and ignores `setmaxnreg`,
/// whose starting count it cannot know). Call it once, in kernels launched with exactly `N`
/// threads.
#[inline(always)]
pub unsafe fn declare_max_threads<const N: u32>() {
    asm!("// flashattn.maxntid {n}", n = const N, options(nomem, nostack, preserves_flags));
}

/// Not an instruction: a PTX comment, `// flashattn.maxnreg N`, that the build turns into the
/// kernel's `.maxnreg N` directive (as [`declare_max_threads`]): ptxas keeps to `N` registers a
/// thread, spilling if it must.
#[inline(always)]
pub unsafe fn declare_max_registers<const N: u32>() {
    asm!("// flashattn.maxnreg {n}", n = const N, options(nomem, nostack, preserves_flags));
}

/// `setmaxnreg.inc.sync.aligned.u32 N`: raise this warpgroup's register budget to `N` (a
/// multiple of 8 in 24..=256), taking registers released by other warpgroups of the CTA.
#[inline(always)]
pub unsafe fn setmaxnreg_inc<const N: u32>() {
    asm!("setmaxnreg.inc.sync.aligned.u32 {n};", n = const N, options(nostack));
}

/// `setmaxnreg.dec.sync.aligned.u32 N`: lower this warpgroup's register budget to `N`.
#[inline(always)]
pub unsafe fn setmaxnreg_dec<const N: u32>() {
    asm!("setmaxnreg.dec.sync.aligned.u32 {n};", n = const N, options(nostack));
}

/// Not an instruction: an empty `asm!` through which registers pass, so that LLVM cannot move
/// their reads above a `wgmma.wait_group` (or their writes below a `wgmma.fence`): the MMAs
/// update accumulators asynchronously, which LLVM does not know (CUTLASS's
/// `warpgroup_fence_operand`). Call it on accumulators right after a wait and on every register
/// operand right before the `wgmma.fence` of a batch.
#[inline(always)]
pub fn fence_regs_f32<const N: usize>(regs: &mut [f32; N]) {
    for r in regs.iter_mut() {
        unsafe { asm!("/* fence {0} */", inout(reg32) * r, options(nomem, nostack, preserves_flags)) };
    }
}

/// As [`fence_regs_f32`] for the first `n` registers only (`n` a constant after inlining): for
/// arrays sized for the largest configuration, fencing the unused tail would keep its values
/// alive in registers.
#[inline(always)]
pub fn fence_regs_f32_prefix<const N: usize>(regs: &mut [f32; N], n: usize) {
    let mut i = 0;
    while i < n && i < N {
        unsafe { asm!("/* fence {0} */", inout(reg32) regs[i], options(nomem, nostack, preserves_flags)) };
        i += 1;
    }
}

/// As [`fence_regs_f32`] for packed 16-bit pairs (register A fragments).
#[inline(always)]
pub fn fence_regs_u32<const N: usize>(regs: &mut [u32; N]) {
    for r in regs.iter_mut() {
        unsafe { asm!("/* fence {0} */", inout(reg32) * r, options(nomem, nostack, preserves_flags)) };
    }
}

/// Generates the SS form: `d (64 x N) (+)= A (desc) * B (desc)`. `scale_d == 0` ignores the
/// incoming accumulators (D = A B), anything else accumulates. `TRANS_A` / `TRANS_B`: 0 for a
/// K-major operand, 1 for MN-major (16-bit types only).
macro_rules! wgmma_ss {
    ($(#[$doc:meta])* $name:ident, $instr:literal, $regs:literal, [$first:tt $($i:tt)*]) => {
        $(#[$doc])*
        #[inline(always)]
        pub unsafe fn $name<const TRANS_A: u32, const TRANS_B: u32>(
            d: &mut [f32; $regs],
            desc_a: u64,
            desc_b: u64,
            scale_d: u32,
        ) {
            asm!(
                concat!(
                    "{{ .reg .pred p; setp.ne.b32 p, {sd}, 0; ", $instr, " {{",
                    "{", stringify!($first), "}", $(", {", stringify!($i), "}",)*
                    "}}, {da}, {db}, p, 1, 1, {ta}, {tb}; }}"
                ),
                inout(reg32) d[$first], $(inout(reg32) d[$i],)*
                da = in(reg64) desc_a,
                db = in(reg64) desc_b,
                sd = in(reg32) scale_d,
                ta = const TRANS_A,
                tb = const TRANS_B,
                options(nostack),
            );
        }
    };
}

/// Generates the RS form: `d (64 x N) (+)= A (registers, see the module doc) * B (desc)`.
/// A from registers is always K-major; `TRANS_B` as in the SS form.
macro_rules! wgmma_rs {
    ($(#[$doc:meta])* $name:ident, $instr:literal, $regs:literal, [$first:tt $($i:tt)*]) => {
        $(#[$doc])*
        #[inline(always)]
        pub unsafe fn $name<const TRANS_B: u32>(d: &mut [f32; $regs], a: [u32; 4], desc_b: u64, scale_d: u32) {
            asm!(
                concat!(
                    "{{ .reg .pred p; setp.ne.b32 p, {sd}, 0; ", $instr, " {{",
                    "{", stringify!($first), "}", $(", {", stringify!($i), "}",)*
                    "}}, {{{a0}, {a1}, {a2}, {a3}}}, {db}, p, 1, 1, {tb}; }}"
                ),
                inout(reg32) d[$first], $(inout(reg32) d[$i],)*
                a0 = in(reg32) a[0],
                a1 = in(reg32) a[1],
                a2 = in(reg32) a[2],
                a3 = in(reg32) a[3],
                db = in(reg64) desc_b,
                sd = in(reg32) scale_d,
                tb = const TRANS_B,
                options(nostack),
            );
        }
    };
}

/// Accumulator register indices of N = 64 (32 f32 per thread).
macro_rules! n64 {
    ($m:ident, $(#[$doc:meta])* $name:ident, $instr:literal) => {
        $m!($(#[$doc])* $name, $instr, 32,
            [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31]);
    };
}

/// Accumulator register indices of N = 128 (64 f32 per thread).
macro_rules! n128 {
    ($m:ident, $(#[$doc:meta])* $name:ident, $instr:literal) => {
        $m!($(#[$doc])* $name, $instr, 64,
            [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
             32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63]);
    };
}

n64!(wgmma_ss, /// `wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16`, A and B from shared memory.
    wgmma_m64n64k16_ss_bf16, "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16");
n64!(wgmma_ss, /// `wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16`, A and B from shared memory.
    wgmma_m64n64k16_ss_f16, "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16");
n128!(wgmma_ss, /// `wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16`, A and B from shared memory.
    wgmma_m64n128k16_ss_bf16, "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16");
n128!(wgmma_ss, /// `wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16`, A and B from shared memory.
    wgmma_m64n128k16_ss_f16, "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16");
n64!(wgmma_rs, /// `wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16`, A from registers.
    wgmma_m64n64k16_rs_bf16, "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16");
n64!(wgmma_rs, /// `wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16`, A from registers.
    wgmma_m64n64k16_rs_f16, "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16");
n128!(wgmma_rs, /// `wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16`, A from registers.
    wgmma_m64n128k16_rs_bf16, "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16");
n128!(wgmma_rs, /// `wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16`, A from registers.
    wgmma_m64n128k16_rs_f16, "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16");

/// `cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32`: the copy engine adds `bytes`
/// (a multiple of 16) of f32 from shared memory (16-byte aligned) into global memory (16-byte
/// aligned) atomically, element by element, without occupying the issuing threads. Ordering of
/// the additions with other atomics is unspecified (as `red.global.add`).
#[inline(always)]
pub unsafe fn cp_reduce_async_bulk_add_f32(dst: *mut f32, src_smem: u32, bytes: u32) {
    asm!("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [{0}], [{1}], {2};",
         in(reg64) dst, in(reg32) src_smem, in(reg32) bytes, options(nostack));
}

/// `cp.async.bulk.commit_group`: closes the group of bulk operations issued by this thread.
#[inline(always)]
pub unsafe fn cp_async_bulk_commit_group() {
    asm!("cp.async.bulk.commit_group;", options(nostack));
}

/// `cp.async.bulk.wait_group.read N`: waits until at most `N` of this thread's bulk groups still
/// read their shared-memory source (the source may then be overwritten).
#[inline(always)]
pub unsafe fn cp_async_bulk_wait_group_read<const N: u32>() {
    asm!("cp.async.bulk.wait_group.read {n};", n = const N, options(nostack));
}

/// `cp.async.bulk.wait_group N`: waits until at most `N` of this thread's bulk groups are
/// incomplete (their global writes done).
#[inline(always)]
pub unsafe fn cp_async_bulk_wait_group<const N: u32>() {
    asm!("cp.async.bulk.wait_group {n};", n = const N, options(nostack));
}

// --- Shared-memory barriers (`mbarrier`) and the tensor memory accelerator (TMA) ---
//
// An mbarrier is a 64-bit object in shared memory counting arrivals and, for TMA copies, bytes
// ("transaction count"). A phase completes when every expected thread has arrived and every
// expected byte has landed; waiters name the phase by its parity (phase k: parity k % 2), so a
// barrier reused once per pipeline stage turn flips parity each turn.

/// `mbarrier.init.shared::cta.b64`: a barrier at `bar` (8-byte aligned) expecting `count`
/// arrivals per phase. Publish with [`fence_mbarrier_init`] and a CTA barrier before any use.
#[inline(always)]
pub unsafe fn mbarrier_init(bar: u32, count: u32) {
    asm!("mbarrier.init.shared::cta.b64 [{0}], {1};", in(reg32) bar, in(reg32) count, options(nostack));
}

/// `fence.mbarrier_init.release.cluster`: orders this thread's `mbarrier.init`s before later
/// arrivals and TMA completions from other threads and the async proxy.
#[inline(always)]
pub unsafe fn fence_mbarrier_init() {
    asm!("fence.mbarrier_init.release.cluster;", options(nostack));
}

/// `mbarrier.arrive.shared::cta.b64`: counts this thread's arrival (release semantics: its
/// earlier memory operations, and the completion of the `wgmma`s it waited for, happen before
/// the phase completes for the waiters).
#[inline(always)]
pub unsafe fn mbarrier_arrive(bar: u32) {
    asm!("mbarrier.arrive.shared::cta.b64 _, [{0}];", in(reg32) bar, options(nostack));
}

/// `mbarrier.arrive.expect_tx.shared::cta.b64`: arrives and adds `bytes` to the phase's
/// expected transaction count (the bytes the TMA copies issued next will deliver).
#[inline(always)]
pub unsafe fn mbarrier_arrive_expect_tx(bar: u32, bytes: u32) {
    asm!("mbarrier.arrive.expect_tx.shared::cta.b64 _, [{0}], {1};", in(reg32) bar, in(reg32) bytes, options(nostack));
}

/// `mbarrier.try_wait.parity.shared::cta.b64`: whether the phase of parity `parity` has
/// completed (acquire semantics when it has); the hardware may suspend the thread a while before
/// answering false. The predicate lives inside the asm block (no predicate register class).
#[inline(always)]
pub unsafe fn mbarrier_try_wait_parity(bar: u32, parity: u32) -> bool {
    let done: u32;
    asm!("{{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [{1}], {2}; selp.u32 {0}, 1, 0, p; }}",
         out(reg32) done, in(reg32) bar, in(reg32) parity, options(nostack));
    done != 0
}

/// Spins on [`mbarrier_try_wait_parity`] until the phase of parity `parity` has completed.
#[inline(always)]
pub unsafe fn mbarrier_wait_parity(bar: u32, parity: u32) {
    while !mbarrier_try_wait_parity(bar, parity) {}
}

/// `fence.proxy.tensormap::generic.acquire.sys [map], 128`: orders this thread's later reads of
/// the descriptor at generic address `map` through the tensor-map proxy (the TMA's copies, the
/// prefetch) after the generic-proxy writes that made it: the host copies the descriptors to
/// device memory before each launch, possibly to an address an earlier launch's descriptors had,
/// and without the fence the copy unit may use what it cached then (the CUDA programming guide
/// asks for this fence, at `.sys` scope, once per CTA before a descriptor written by a host copy
/// is used). PTX ISA 8.3.
#[inline(always)]
pub unsafe fn fence_tensormap_acquire(map: u64) {
    asm!("fence.proxy.tensormap::generic.acquire.sys [{0}], 128;", in(reg64) map, options(nostack));
}

/// `prefetch.tensormap`: brings the TMA descriptor at generic address `map` into the cache the
/// copy unit reads it from.
#[inline(always)]
pub unsafe fn prefetch_tensormap(map: u64) {
    asm!("prefetch.tensormap [{0}];", in(reg64) map, options(nostack));
}

/// `cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes`: the TMA copies
/// the box at coordinates `coords` (innermost first) of the tensor that the descriptor at
/// generic address `map` (global memory, 64-byte aligned) describes into shared memory at `dst`
/// (laid out and swizzled as the descriptor says), zero-filling what lies outside the tensor,
/// and signals the box's bytes on barrier `bar`. One thread issues it; nothing waits here.
#[inline(always)]
pub unsafe fn tma_load_4d(dst: u32, map: u64, coords: [i32; 4], bar: u32) {
    asm!("cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [{0}], [{1}, {{{2}, {3}, {4}, {5}}}], [{6}];",
         in(reg32) dst, in(reg64) map, in(reg32) coords[0], in(reg32) coords[1], in(reg32) coords[2],
         in(reg32) coords[3], in(reg32) bar, options(nostack));
}
