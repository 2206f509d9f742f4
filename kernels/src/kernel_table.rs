//! The tables of kernel entry points: one instantiation per (head dim, dtype, causal), as
//! FlashAttention-2 does, to keep compile time and PTX size in check.
//!
//! `for_each_*_kernel!(callback)` calls `callback!(name, Dtype, ...)` once per entry point. The
//! device side generates the `extern "ptx-kernel"` functions from it; the host builds its lookup
//! table from it, so the two always agree on names and tile sizes.

/// `callback!(name, Dtype, head_dim, causal)`
#[macro_export]
macro_rules! for_each_scalar_forward_kernel {
    ($m:ident) => {
        $m!(flash_fwd_scalar_f16_d32, F16, 32, false);
        $m!(flash_fwd_scalar_f16_d32_causal, F16, 32, true);
        $m!(flash_fwd_scalar_f16_d64, F16, 64, false);
        $m!(flash_fwd_scalar_f16_d64_causal, F16, 64, true);
        $m!(flash_fwd_scalar_f16_d128, F16, 128, false);
        $m!(flash_fwd_scalar_f16_d128_causal, F16, 128, true);
        $m!(flash_fwd_scalar_bf16_d32, Bf16, 32, false);
        $m!(flash_fwd_scalar_bf16_d32_causal, Bf16, 32, true);
        $m!(flash_fwd_scalar_bf16_d64, Bf16, 64, false);
        $m!(flash_fwd_scalar_bf16_d64_causal, Bf16, 64, true);
        $m!(flash_fwd_scalar_bf16_d128, Bf16, 128, false);
        $m!(flash_fwd_scalar_bf16_d128_causal, Bf16, 128, true);
    };
}

/// The tensor-core forward: `callback!(name, Dtype, head_dim, block_m, block_n, m_tiles,
/// q_in_regs, stages, causal)`. Real head dims are padded up to the next instantiated one (multiples of
/// 32). `ForwardKernel::TensorCoreTiles` selects a row by its tiles; candidates under test are
/// added as extra rows (the first row of a head dim is the default).
///
/// Why these tiles (H100, bf16, B*N = 16k, H*d = 2048, N = 4096, non-causal, one device call):
/// - d = 64: 128 x 128 tiles, 4 warps of 2 m-tiles, K/V double-buffered: at d = 64 a block's
///   softmax and barriers are amortised over twice the MMAs. Third call, N = 4096: 300 TFLOPS
///   against 272 for 128x64x2 (-9%) and 303 for 128x128x2 single-buffered (equal within noise;
///   its causal build spills 4 bytes, so not kept). Needs unroll threshold 3000 (build.rs).
/// - d <= 128 otherwise: 128 x 64 tiles, 4 warps of 2 m-tiles each (32 query rows per warp). Every K/V
///   fragment read from shared memory feeds two MMAs, halving shared-memory traffic per FLOP,
///   which limits the 1-m-tile variants; Q is re-read from shared memory (no room for it in
///   registers beside 2 x (O + S) accumulators: 253 registers at d = 128, no spills).
///   d = 128 losers: 128x64x1 -25% (251 vs 334 TFLOPS), 64x64x1 -24%, 128x128x1 -21%,
///   128x32x1 -31%, 64x32x1 -23%. d = 64 losers: 128x64x1 -1%, 64x64x1 -7%, 128x128x1 -22%; 128x128x2 is
///   not unrolled by LLVM at unroll threshold 1000 (1.8 KB of local memory): the reason the
///   threshold is 3000.
/// - d = 160 .. 224: 128 x 64 tiles, 8 warps of 1 m-tile (O alone takes d/2 registers),
///   K/V double-buffered. Not tuned yet: d = 256's winner below is the first thing to try.
/// - d = 256: 64 x 64 tiles, 4 warps of 1 m-tile, one K/V buffer (FlashAttention-2's schedule):
///   (64 + 2 x 64) rows x 528 B = 101 KB of shared memory, so two CTAs share an SM. Second call,
///   N = 4096: 285 TFLOPS. Losers: 128x64x1 double-buffered -7% (264; 135 KB, one CTA per SM),
///   128x64x1 single-buffered -7% (266); first call: 128x32x1 -15% against 128x64x1, 64x32x1 -7%,
///   64x64x1 double-buffered -21%.
/// - Single-buffered K/V at d = 64 and 128 (128x64x2x1) measured within noise of double-buffered
///   (d = 128, N = 4096: 336 vs 333 TFLOPS; N = 512 causal: 166 vs 184), so not kept.
#[macro_export]
macro_rules! for_each_mma_forward_kernel {
    ($m:ident) => {
        $m!(flash_fwd_mma_f16_d32, F16, 32, 128, 64, 2, false, 2, false);
        $m!(flash_fwd_mma_f16_d32_causal, F16, 32, 128, 64, 2, false, 2, true);
        $m!(flash_fwd_mma_bf16_d32, Bf16, 32, 128, 64, 2, false, 2, false);
        $m!(flash_fwd_mma_bf16_d32_causal, Bf16, 32, 128, 64, 2, false, 2, true);
        $m!(flash_fwd_mma_f16_d64, F16, 64, 128, 128, 2, false, 2, false);
        $m!(flash_fwd_mma_f16_d64_causal, F16, 64, 128, 128, 2, false, 2, true);
        $m!(flash_fwd_mma_bf16_d64, Bf16, 64, 128, 128, 2, false, 2, false);
        $m!(flash_fwd_mma_bf16_d64_causal, Bf16, 64, 128, 128, 2, false, 2, true);
        $m!(flash_fwd_mma_f16_d96, F16, 96, 128, 64, 2, false, 2, false);
        $m!(flash_fwd_mma_f16_d96_causal, F16, 96, 128, 64, 2, false, 2, true);
        $m!(flash_fwd_mma_bf16_d96, Bf16, 96, 128, 64, 2, false, 2, false);
        $m!(flash_fwd_mma_bf16_d96_causal, Bf16, 96, 128, 64, 2, false, 2, true);
        $m!(flash_fwd_mma_f16_d128, F16, 128, 128, 64, 2, false, 2, false);
        $m!(flash_fwd_mma_f16_d128_causal, F16, 128, 128, 64, 2, false, 2, true);
        $m!(flash_fwd_mma_bf16_d128, Bf16, 128, 128, 64, 2, false, 2, false);
        $m!(flash_fwd_mma_bf16_d128_causal, Bf16, 128, 128, 64, 2, false, 2, true);
        $m!(flash_fwd_mma_f16_d160, F16, 160, 128, 64, 1, false, 2, false);
        $m!(flash_fwd_mma_f16_d160_causal, F16, 160, 128, 64, 1, false, 2, true);
        $m!(flash_fwd_mma_bf16_d160, Bf16, 160, 128, 64, 1, false, 2, false);
        $m!(flash_fwd_mma_bf16_d160_causal, Bf16, 160, 128, 64, 1, false, 2, true);
        $m!(flash_fwd_mma_f16_d192, F16, 192, 128, 64, 1, false, 2, false);
        $m!(flash_fwd_mma_f16_d192_causal, F16, 192, 128, 64, 1, false, 2, true);
        $m!(flash_fwd_mma_bf16_d192, Bf16, 192, 128, 64, 1, false, 2, false);
        $m!(flash_fwd_mma_bf16_d192_causal, Bf16, 192, 128, 64, 1, false, 2, true);
        $m!(flash_fwd_mma_f16_d224, F16, 224, 128, 64, 1, false, 2, false);
        $m!(flash_fwd_mma_f16_d224_causal, F16, 224, 128, 64, 1, false, 2, true);
        $m!(flash_fwd_mma_bf16_d224, Bf16, 224, 128, 64, 1, false, 2, false);
        $m!(flash_fwd_mma_bf16_d224_causal, Bf16, 224, 128, 64, 1, false, 2, true);
        $m!(flash_fwd_mma_f16_d256, F16, 256, 64, 64, 1, false, 1, false);
        $m!(flash_fwd_mma_f16_d256_causal, F16, 256, 64, 64, 1, false, 1, true);
        $m!(flash_fwd_mma_bf16_d256, Bf16, 256, 64, 64, 1, false, 1, false);
        $m!(flash_fwd_mma_bf16_d256_causal, Bf16, 256, 64, 64, 1, false, 1, true);
    };
}

/// The masked tensor-core forward: `callback!(name, Dtype, head_dim, block_m, block_n, m_tiles,
/// q_in_regs, stages, mods)`. `mods` false: windows (causal is one), block masks and packed
/// batches, on the plain kernels' non-causal tiles; `mods` true adds softcap, ALiBi and dropout,
/// whose per-element work needs smaller tiles to stay clear of spills. Block sizes divide
/// `BLOCK_MASK_SIZE`. One row per head dim, dtype and `mods`.
#[macro_export]
macro_rules! for_each_mma_forward_masked_kernel {
    ($m:ident) => {
        $m!(flash_fwd_mma_masked_f16_d32, F16, 32, 128, 64, 2, false, 2, 0);
        $m!(flash_fwd_mma_masked_bf16_d32, Bf16, 32, 128, 64, 2, false, 2, 0);
        $m!(flash_fwd_mma_masked_f16_d64, F16, 64, 128, 128, 2, false, 2, 0);
        $m!(flash_fwd_mma_masked_bf16_d64, Bf16, 64, 128, 128, 2, false, 2, 0);
        $m!(flash_fwd_mma_masked_f16_d96, F16, 96, 128, 64, 2, false, 2, 0);
        $m!(flash_fwd_mma_masked_bf16_d96, Bf16, 96, 128, 64, 2, false, 2, 0);
        $m!(flash_fwd_mma_masked_f16_d128, F16, 128, 128, 64, 2, false, 2, 0);
        $m!(flash_fwd_mma_masked_bf16_d128, Bf16, 128, 128, 64, 2, false, 2, 0);
        $m!(flash_fwd_mma_masked_f16_d160, F16, 160, 128, 64, 1, false, 2, 0);
        $m!(flash_fwd_mma_masked_bf16_d160, Bf16, 160, 128, 64, 1, false, 2, 0);
        $m!(flash_fwd_mma_masked_f16_d192, F16, 192, 128, 64, 1, false, 2, 0);
        $m!(flash_fwd_mma_masked_bf16_d192, Bf16, 192, 128, 64, 1, false, 2, 0);
        $m!(flash_fwd_mma_masked_f16_d224, F16, 224, 128, 64, 1, false, 2, 0);
        $m!(flash_fwd_mma_masked_bf16_d224, Bf16, 224, 128, 64, 1, false, 2, 0);
        $m!(flash_fwd_mma_masked_f16_d256, F16, 256, 64, 64, 1, false, 1, 0);
        $m!(flash_fwd_mma_masked_bf16_d256, Bf16, 256, 64, 64, 1, false, 1, 0);
        $m!(flash_fwd_mma_masked_dropout_f16_d32, F16, 32, 128, 64, 2, false, 2, 2);
        $m!(flash_fwd_mma_masked_dropout_bf16_d32, Bf16, 32, 128, 64, 2, false, 2, 2);
        $m!(flash_fwd_mma_masked_dropout_f16_d64, F16, 64, 128, 64, 2, false, 2, 2);
        $m!(flash_fwd_mma_masked_dropout_bf16_d64, Bf16, 64, 128, 64, 2, false, 2, 2);
        $m!(flash_fwd_mma_masked_dropout_f16_d96, F16, 96, 128, 64, 2, false, 2, 2);
        $m!(flash_fwd_mma_masked_dropout_bf16_d96, Bf16, 96, 128, 64, 2, false, 2, 2);
        $m!(flash_fwd_mma_masked_dropout_f16_d128, F16, 128, 128, 64, 2, false, 2, 2);
        $m!(flash_fwd_mma_masked_dropout_bf16_d128, Bf16, 128, 128, 64, 2, false, 2, 2);
        $m!(flash_fwd_mma_masked_dropout_f16_d160, F16, 160, 128, 64, 1, false, 2, 2);
        $m!(flash_fwd_mma_masked_dropout_bf16_d160, Bf16, 160, 128, 64, 1, false, 2, 2);
        $m!(flash_fwd_mma_masked_dropout_f16_d192, F16, 192, 128, 64, 1, false, 2, 2);
        $m!(flash_fwd_mma_masked_dropout_bf16_d192, Bf16, 192, 128, 64, 1, false, 2, 2);
        $m!(flash_fwd_mma_masked_dropout_f16_d224, F16, 224, 128, 64, 1, false, 2, 2);
        $m!(flash_fwd_mma_masked_dropout_bf16_d224, Bf16, 224, 128, 64, 1, false, 2, 2);
        $m!(flash_fwd_mma_masked_dropout_f16_d256, F16, 256, 64, 64, 1, false, 1, 2);
        $m!(flash_fwd_mma_masked_dropout_bf16_d256, Bf16, 256, 64, 64, 1, false, 1, 2);
        $m!(flash_fwd_mma_masked_mods_f16_d32, F16, 32, 128, 64, 2, false, 2, 3);
        $m!(flash_fwd_mma_masked_mods_bf16_d32, Bf16, 32, 128, 64, 2, false, 2, 3);
        $m!(flash_fwd_mma_masked_mods_f16_d64, F16, 64, 128, 64, 2, false, 2, 3);
        $m!(flash_fwd_mma_masked_mods_bf16_d64, Bf16, 64, 128, 64, 2, false, 2, 3);
        $m!(flash_fwd_mma_masked_mods_f16_d96, F16, 96, 128, 64, 2, false, 2, 3);
        $m!(flash_fwd_mma_masked_mods_bf16_d96, Bf16, 96, 128, 64, 2, false, 2, 3);
        $m!(flash_fwd_mma_masked_mods_f16_d128, F16, 128, 128, 64, 1, false, 2, 3);
        $m!(flash_fwd_mma_masked_mods_bf16_d128, Bf16, 128, 128, 64, 1, false, 2, 3);
        $m!(flash_fwd_mma_masked_mods_f16_d160, F16, 160, 128, 64, 1, false, 2, 3);
        $m!(flash_fwd_mma_masked_mods_bf16_d160, Bf16, 160, 128, 64, 1, false, 2, 3);
        $m!(flash_fwd_mma_masked_mods_f16_d192, F16, 192, 128, 64, 1, false, 2, 3);
        $m!(flash_fwd_mma_masked_mods_bf16_d192, Bf16, 192, 128, 64, 1, false, 2, 3);
        $m!(flash_fwd_mma_masked_mods_f16_d224, F16, 224, 128, 64, 1, false, 2, 3);
        $m!(flash_fwd_mma_masked_mods_bf16_d224, Bf16, 224, 128, 64, 1, false, 2, 3);
        $m!(flash_fwd_mma_masked_mods_f16_d256, F16, 256, 64, 64, 1, false, 1, 3);
        $m!(flash_fwd_mma_masked_mods_bf16_d256, Bf16, 256, 64, 64, 1, false, 1, 3);
    };
}

/// The Hopper forward (`wgmma`, sm_90a PTX only): `callback!(name, Dtype, head_dim, block_m,
/// block_n, pipelined, causal)`. `block_m / 64` warpgroups; see `WgmmaForwardConfig`. Only the
/// sm_90a PTX contains these entry points: the host selects them on compute capability 9.0 only.
/// The first row of a head dim, dtype and causality is the default (`ForwardKernel::Wgmma`);
/// the `_serial` rows (no intra-warpgroup overlap, the simplest schedule) are selected with
/// `ForwardKernel::WgmmaConfig`.
///
/// Why these tiles (FlashAttention-3's choices as the starting point, then measured): 128 x 128
/// with 2 warpgroups at d = 128 (S (64 f32) + O (64 f32) + P (32 u32) per thread need ~200
/// registers: 2 warpgroups leave 255 each, 3 would leave 168; 161 KB of shared memory, one CTA
/// per SM). At d = 64 `Auto` runs the 192 x 128 rows (3 warpgroups, FlashAttention-3's tiles)
/// and, for few query rows, the 64 x 128 rows (see their comments); the 128 x 128 rows lose
/// there (0.80-0.97x FA2, session 4).
#[macro_export]
macro_rules! for_each_wgmma_forward_kernel {
    ($m:ident) => {
        $m!(flash_fwd_wgmma_f16_d64, F16, 64, 128, 128, true, false);
        $m!(flash_fwd_wgmma_f16_d64_causal, F16, 64, 128, 128, true, true);
        $m!(flash_fwd_wgmma_bf16_d64, Bf16, 64, 128, 128, true, false);
        $m!(flash_fwd_wgmma_bf16_d64_causal, Bf16, 64, 128, 128, true, true);
        $m!(flash_fwd_wgmma_f16_d128, F16, 128, 128, 128, true, false);
        $m!(flash_fwd_wgmma_f16_d128_causal, F16, 128, 128, 128, true, true);
        $m!(flash_fwd_wgmma_bf16_d128, Bf16, 128, 128, 128, true, false);
        $m!(flash_fwd_wgmma_bf16_d128_causal, Bf16, 128, 128, 128, true, true);
        // d = 256: O takes 128 registers per thread, so 64-key blocks (S 32, P 16); shared
        // memory 193 KB (Q 64 KB, two stages of K and V at 32 KB each).
        $m!(flash_fwd_wgmma_f16_d256, F16, 256, 128, 64, true, false);
        $m!(flash_fwd_wgmma_f16_d256_causal, F16, 256, 128, 64, true, true);
        $m!(flash_fwd_wgmma_bf16_d256, Bf16, 256, 128, 64, true, false);
        $m!(flash_fwd_wgmma_bf16_d256_causal, Bf16, 256, 128, 64, true, true);
        // d = 64 with 3 warpgroups (FlashAttention-3's 192 x 128, what `Auto` runs at d <= 64):
        // 384 threads, so at most 168 registers per thread (tests/ptx_resources.rs checks; the
        // causal build took 176 in session 3, 167 now).
        $m!(flash_fwd_wgmma_f16_d64_m192, F16, 64, 192, 128, true, false);
        $m!(flash_fwd_wgmma_bf16_d64_m192, Bf16, 64, 192, 128, true, false);
        $m!(flash_fwd_wgmma_f16_d64_m192_causal, F16, 64, 192, 128, true, true);
        $m!(flash_fwd_wgmma_bf16_d64_m192_causal, Bf16, 64, 192, 128, true, true);
        // d = 64 with 1 warpgroup (64-row tiles): 128 threads, 166-168 registers and 73 KB, so
        // three CTAs per SM hide each other's prologue: what `Auto` runs for few query rows
        // (causal up to 1k, otherwise up to 512; call `s6c6`: causal N = 1k 0.306 ms against
        // 0.323 on mma.sync; behind the 192-row tiles from causal 4k / non-causal 1k).
        $m!(flash_fwd_wgmma_f16_d64_m64, F16, 64, 64, 128, true, false);
        $m!(flash_fwd_wgmma_bf16_d64_m64, Bf16, 64, 64, 128, true, false);
        $m!(flash_fwd_wgmma_f16_d64_m64_causal, F16, 64, 64, 128, true, true);
        $m!(flash_fwd_wgmma_bf16_d64_m64_causal, Bf16, 64, 64, 128, true, true);
        $m!(flash_fwd_wgmma_f16_d64_serial, F16, 64, 128, 128, false, false);
        $m!(flash_fwd_wgmma_f16_d64_serial_causal, F16, 64, 128, 128, false, true);
        $m!(flash_fwd_wgmma_bf16_d64_serial, Bf16, 64, 128, 128, false, false);
        $m!(flash_fwd_wgmma_bf16_d64_serial_causal, Bf16, 64, 128, 128, false, true);
        $m!(flash_fwd_wgmma_f16_d128_serial, F16, 128, 128, 128, false, false);
        $m!(flash_fwd_wgmma_f16_d128_serial_causal, F16, 128, 128, 128, false, true);
        $m!(flash_fwd_wgmma_bf16_d128_serial, Bf16, 128, 128, 128, false, false);
        $m!(flash_fwd_wgmma_bf16_d128_serial_causal, Bf16, 128, 128, 128, false, true);
    };
}

/// The warp-specialized Hopper forward (sm_90a PTX only; `forward_ws`): FlashAttention-3's
/// schedule, a TMA producer warpgroup and two consumer warpgroups whose MMA issues alternate,
/// 128 query rows a CTA, `callback!(name, Dtype, head_dim, block_n, causal, dropout)`. Dense
/// attention (causal allowed) and dropout; selected with `ForwardKernel::WarpSpecialized`.
#[macro_export]
macro_rules! for_each_wgmma_forward_ws_kernel {
    ($m:ident) => {
        $m!(flash_fwd_ws_f16_d128, F16, 128, 128, false, false);
        $m!(flash_fwd_ws_bf16_d128, Bf16, 128, 128, false, false);
        $m!(flash_fwd_ws_f16_d128_causal, F16, 128, 128, true, false);
        $m!(flash_fwd_ws_bf16_d128_causal, Bf16, 128, 128, true, false);
        $m!(flash_fwd_ws_dropout_f16_d128, F16, 128, 128, false, true);
        $m!(flash_fwd_ws_dropout_bf16_d128, Bf16, 128, 128, false, true);
        $m!(flash_fwd_ws_dropout_f16_d128_causal, F16, 128, 128, true, true);
        $m!(flash_fwd_ws_dropout_bf16_d128_causal, Bf16, 128, 128, true, true);
        $m!(flash_fwd_ws_f16_d64, F16, 64, 128, false, false);
        $m!(flash_fwd_ws_bf16_d64, Bf16, 64, 128, false, false);
        $m!(flash_fwd_ws_f16_d64_causal, F16, 64, 128, true, false);
        $m!(flash_fwd_ws_bf16_d64_causal, Bf16, 64, 128, true, false);
        $m!(flash_fwd_ws_dropout_f16_d64, F16, 64, 128, false, true);
        $m!(flash_fwd_ws_dropout_bf16_d64, Bf16, 64, 128, false, true);
        $m!(flash_fwd_ws_dropout_f16_d64_causal, F16, 64, 128, true, true);
        $m!(flash_fwd_ws_dropout_bf16_d64_causal, Bf16, 64, 128, true, true);
    };
}

/// The masked Hopper forward (sm_90a PTX only): windows (causal is one), block masks, packed
/// batches and (`dropout` true) dropout on the wgmma kernel's pipelined schedule,
/// `callback!(name, Dtype, head_dim, block_m, block_n, dropout)`; softcap and ALiBi run on the
/// mma.sync `mods` builds. d = 64 without dropout: 192-row tiles only (the 128-row ones were no
/// faster than the mma.sync masked build), so calls with a block mask run mma.sync there.
/// The first row of a (dtype, head dim, dropout) is `Auto`'s, the others are chosen by their
/// tiles (`ForwardKernel::WgmmaConfig`). Dropout forward, time against the 128-row tiles (calls
/// `s7c1`, `s7c3`, `s7c4`, N = 1k / 4k / 16k): 64-row tiles (one warpgroup, two CTAs per SM)
/// 0.95-0.99x at d = 64 then; since the drop flags moved after the softmax (call `s9c9`) 1.00-1.04x,
/// so `Auto` runs the 128-row tiles at both head dims; 1.11-1.21x at d = 128 (64 x 64: the K
/// and V stages of 64 x 128 tiles leave room for one CTA per SM). At d = 64 the 192-row tiles
/// (three warpgroups, 168 registers each: `.maxntid 384`) are first: 0.92-0.97x the 128-row ones
/// (call `s10c3`, cubins), as the plain forward runs them; they take no block mask (a 192-row
/// tile straddles two rows of mask blocks), so calls with one run the 128-row tiles.
#[macro_export]
macro_rules! for_each_wgmma_forward_masked_kernel {
    ($m:ident) => {
        $m!(flash_fwd_wgmma_masked_f16_d128, F16, 128, 128, 128, false);
        $m!(flash_fwd_wgmma_masked_bf16_d128, Bf16, 128, 128, 128, false);
        $m!(flash_fwd_wgmma_masked_f16_d64_m192, F16, 64, 192, 128, false);
        $m!(flash_fwd_wgmma_masked_bf16_d64_m192, Bf16, 64, 192, 128, false);
        $m!(flash_fwd_wgmma_masked_dropout_f16_d128, F16, 128, 128, 128, true);
        $m!(flash_fwd_wgmma_masked_dropout_bf16_d128, Bf16, 128, 128, 128, true);
        $m!(flash_fwd_wgmma_masked_dropout_f16_d64_m192, F16, 64, 192, 128, true);
        $m!(flash_fwd_wgmma_masked_dropout_bf16_d64_m192, Bf16, 64, 192, 128, true);
        $m!(flash_fwd_wgmma_masked_dropout_f16_d64, F16, 64, 128, 128, true);
        $m!(flash_fwd_wgmma_masked_dropout_bf16_d64, Bf16, 64, 128, 128, true);
        $m!(flash_fwd_wgmma_masked_dropout_f16_d64_m64, F16, 64, 64, 128, true);
        $m!(flash_fwd_wgmma_masked_dropout_bf16_d64_m64, Bf16, 64, 64, 128, true);
        $m!(flash_fwd_wgmma_masked_dropout_f16_d128_m64, F16, 128, 64, 64, true);
        $m!(flash_fwd_wgmma_masked_dropout_bf16_d128_m64, Bf16, 128, 64, 64, true);
    };
}

/// The scalar backward: `callback!(name, Dq | Dv | Dk, Dtype, head_dim, causal)`.
#[macro_export]
macro_rules! for_each_scalar_backward_kernel {
    ($m:ident) => {
        $m!(flash_bwd_dq_scalar_f16_d32, Dq, F16, 32, false);
        $m!(flash_bwd_dq_scalar_f16_d32_causal, Dq, F16, 32, true);
        $m!(flash_bwd_dq_scalar_f16_d64, Dq, F16, 64, false);
        $m!(flash_bwd_dq_scalar_f16_d64_causal, Dq, F16, 64, true);
        $m!(flash_bwd_dq_scalar_f16_d128, Dq, F16, 128, false);
        $m!(flash_bwd_dq_scalar_f16_d128_causal, Dq, F16, 128, true);
        $m!(flash_bwd_dq_scalar_bf16_d32, Dq, Bf16, 32, false);
        $m!(flash_bwd_dq_scalar_bf16_d32_causal, Dq, Bf16, 32, true);
        $m!(flash_bwd_dq_scalar_bf16_d64, Dq, Bf16, 64, false);
        $m!(flash_bwd_dq_scalar_bf16_d64_causal, Dq, Bf16, 64, true);
        $m!(flash_bwd_dq_scalar_bf16_d128, Dq, Bf16, 128, false);
        $m!(flash_bwd_dq_scalar_bf16_d128_causal, Dq, Bf16, 128, true);
        $m!(flash_bwd_dv_scalar_f16_d32, Dv, F16, 32, false);
        $m!(flash_bwd_dv_scalar_f16_d32_causal, Dv, F16, 32, true);
        $m!(flash_bwd_dv_scalar_f16_d64, Dv, F16, 64, false);
        $m!(flash_bwd_dv_scalar_f16_d64_causal, Dv, F16, 64, true);
        $m!(flash_bwd_dv_scalar_f16_d128, Dv, F16, 128, false);
        $m!(flash_bwd_dv_scalar_f16_d128_causal, Dv, F16, 128, true);
        $m!(flash_bwd_dv_scalar_bf16_d32, Dv, Bf16, 32, false);
        $m!(flash_bwd_dv_scalar_bf16_d32_causal, Dv, Bf16, 32, true);
        $m!(flash_bwd_dv_scalar_bf16_d64, Dv, Bf16, 64, false);
        $m!(flash_bwd_dv_scalar_bf16_d64_causal, Dv, Bf16, 64, true);
        $m!(flash_bwd_dv_scalar_bf16_d128, Dv, Bf16, 128, false);
        $m!(flash_bwd_dv_scalar_bf16_d128_causal, Dv, Bf16, 128, true);
        $m!(flash_bwd_dk_scalar_f16_d32, Dk, F16, 32, false);
        $m!(flash_bwd_dk_scalar_f16_d32_causal, Dk, F16, 32, true);
        $m!(flash_bwd_dk_scalar_f16_d64, Dk, F16, 64, false);
        $m!(flash_bwd_dk_scalar_f16_d64_causal, Dk, F16, 64, true);
        $m!(flash_bwd_dk_scalar_f16_d128, Dk, F16, 128, false);
        $m!(flash_bwd_dk_scalar_f16_d128_causal, Dk, F16, 128, true);
        $m!(flash_bwd_dk_scalar_bf16_d32, Dk, Bf16, 32, false);
        $m!(flash_bwd_dk_scalar_bf16_d32_causal, Dk, Bf16, 32, true);
        $m!(flash_bwd_dk_scalar_bf16_d64, Dk, Bf16, 64, false);
        $m!(flash_bwd_dk_scalar_bf16_d64_causal, Dk, Bf16, 64, true);
        $m!(flash_bwd_dk_scalar_bf16_d128, Dk, Bf16, 128, false);
        $m!(flash_bwd_dk_scalar_bf16_d128_causal, Dk, Bf16, 128, true);
    };
}

/// The backward preprocessing `D = rowsum(dO * O)`, any head dim: `callback!(name, Dtype)`.
#[macro_export]
macro_rules! for_each_backward_preprocess_kernel {
    ($m:ident) => {
        $m!(flash_bwd_preprocess_f16, F16);
        $m!(flash_bwd_preprocess_bf16, Bf16);
    };
}

/// The block-sparse backward's key-block order (`BackwardParams::key_block_order`), any dtype
/// and head dim: `callback!(name)`.
#[macro_export]
macro_rules! for_each_backward_key_block_order_kernel {
    ($m:ident) => {
        $m!(flash_bwd_key_block_order);
    };
}

/// The tensor-core backward, dK/dV kernel (`MmaBackwardConfig`): `callback!(name, Dtype,
/// head_dim, block_m, block_n, d_split, causal)`. Real head dims are padded up to the next
/// instantiated one (multiples of 32), as in the forward.
///
/// Why these tiles: 8 warps of 16 keys (128 keys per CTA) and 64-row query blocks, as
/// FlashAttention-2 on sm80 for d = 128: dK and dV of 16 keys x d stay in registers
/// (d/2 registers each) beside S^T and dP^T (2 x 32); 155 KB of shared memory at d = 128.
/// Above d = 128, dK/dV do not fit in one warp's registers: 64 keys per CTA, two warps per
/// 16 keys (`d_split = 2`); d = 256 streams 32-row query blocks (140 KB of shared memory).
/// No d = 224 row: its tiles with the sm_90a dQ staging would need 241 KB of shared memory
/// (over the 227 KB a CTA may have), so head dims 200..=256 run the d = 256 kernel.
#[macro_export]
macro_rules! for_each_mma_backward_kernel {
    ($m:ident) => {
        $m!(flash_bwd_dkdv_mma_f16_d32, F16, 32, 128, 128, 1, false);
        $m!(flash_bwd_dkdv_mma_f16_d32_causal, F16, 32, 128, 128, 1, true);
        $m!(flash_bwd_dkdv_mma_bf16_d32, Bf16, 32, 128, 128, 1, false);
        $m!(flash_bwd_dkdv_mma_bf16_d32_causal, Bf16, 32, 128, 128, 1, true);
        $m!(flash_bwd_dkdv_mma_f16_d64, F16, 64, 128, 128, 1, false);
        $m!(flash_bwd_dkdv_mma_f16_d64_causal, F16, 64, 128, 128, 1, true);
        $m!(flash_bwd_dkdv_mma_bf16_d64, Bf16, 64, 128, 128, 1, false);
        $m!(flash_bwd_dkdv_mma_bf16_d64_causal, Bf16, 64, 128, 128, 1, true);
        $m!(flash_bwd_dkdv_mma_f16_d96, F16, 96, 64, 128, 1, false);
        $m!(flash_bwd_dkdv_mma_f16_d96_causal, F16, 96, 64, 128, 1, true);
        $m!(flash_bwd_dkdv_mma_bf16_d96, Bf16, 96, 64, 128, 1, false);
        $m!(flash_bwd_dkdv_mma_bf16_d96_causal, Bf16, 96, 64, 128, 1, true);
        $m!(flash_bwd_dkdv_mma_f16_d128, F16, 128, 64, 128, 1, false);
        $m!(flash_bwd_dkdv_mma_f16_d128_causal, F16, 128, 64, 128, 1, true);
        $m!(flash_bwd_dkdv_mma_bf16_d128, Bf16, 128, 64, 128, 1, false);
        $m!(flash_bwd_dkdv_mma_bf16_d128_causal, Bf16, 128, 64, 128, 1, true);
        $m!(flash_bwd_dkdv_mma_f16_d160, F16, 160, 64, 64, 2, false);
        $m!(flash_bwd_dkdv_mma_f16_d160_causal, F16, 160, 64, 64, 2, true);
        $m!(flash_bwd_dkdv_mma_bf16_d160, Bf16, 160, 64, 64, 2, false);
        $m!(flash_bwd_dkdv_mma_bf16_d160_causal, Bf16, 160, 64, 64, 2, true);
        $m!(flash_bwd_dkdv_mma_f16_d192, F16, 192, 64, 64, 2, false);
        $m!(flash_bwd_dkdv_mma_f16_d192_causal, F16, 192, 64, 64, 2, true);
        $m!(flash_bwd_dkdv_mma_bf16_d192, Bf16, 192, 64, 64, 2, false);
        $m!(flash_bwd_dkdv_mma_bf16_d192_causal, Bf16, 192, 64, 64, 2, true);
        $m!(flash_bwd_dkdv_mma_f16_d256, F16, 256, 32, 64, 2, false);
        $m!(flash_bwd_dkdv_mma_f16_d256_causal, F16, 256, 32, 64, 2, true);
        $m!(flash_bwd_dkdv_mma_bf16_d256, Bf16, 256, 32, 64, 2, false);
        $m!(flash_bwd_dkdv_mma_bf16_d256_causal, Bf16, 256, 32, 64, 2, true);
    };
}

/// The Hopper backward, dK/dV (+ atomic dQ) kernel (`WgmmaBackwardConfig`, sm_90a PTX only):
/// `callback!(name, Dtype, head_dim, block_m, block_n, causal, dropout)`. Runs the head dims whose
/// mma.sync backward row has the same instantiated head dim (33..=64 and 97..=128), so
/// `dq_accum` and the deterministic dQ kernel are shared.
///
/// `dropout` rows: dropout with at most causal beside it (the host's `masks::dropout_only`),
/// without the masked build's window and block-mask work, where they beat the masked build:
/// causal d = 128 (calls `s14c1`..`s14c3`: 1.04-1.12x plain causal against 1.07-1.20x), and
/// non-causal d = 64 and 128 since the key bound is tested per key (`s15c3`: d = 128 1.09-1.15x
/// plain against 1.15-1.25x, d = 64 1.17-1.25x against 1.22-1.31x). Causal d = 64 has none:
/// there the plain build was slower (`s15c1`: 1.19-1.31x against 1.21-1.28x).
#[macro_export]
macro_rules! for_each_wgmma_backward_kernel {
    ($m:ident) => {
        $m!(flash_bwd_dkdv_wgmma_f16_d64, F16, 64, 128, 128, false, false);
        $m!(flash_bwd_dkdv_wgmma_f16_d64_causal, F16, 64, 128, 128, true, false);
        $m!(flash_bwd_dkdv_wgmma_bf16_d64, Bf16, 64, 128, 128, false, false);
        $m!(flash_bwd_dkdv_wgmma_bf16_d64_causal, Bf16, 64, 128, 128, true, false);
        $m!(flash_bwd_dkdv_wgmma_f16_d128, F16, 128, 64, 128, false, false);
        $m!(flash_bwd_dkdv_wgmma_f16_d128_causal, F16, 128, 64, 128, true, false);
        $m!(flash_bwd_dkdv_wgmma_bf16_d128, Bf16, 128, 64, 128, false, false);
        $m!(flash_bwd_dkdv_wgmma_bf16_d128_causal, Bf16, 128, 64, 128, true, false);
        $m!(flash_bwd_dkdv_wgmma_dropout_f16_d64, F16, 64, 128, 128, false, true);
        $m!(flash_bwd_dkdv_wgmma_dropout_bf16_d64, Bf16, 64, 128, 128, false, true);
        $m!(flash_bwd_dkdv_wgmma_dropout_f16_d128, F16, 128, 64, 128, false, true);
        $m!(flash_bwd_dkdv_wgmma_dropout_bf16_d128, Bf16, 128, 64, 128, false, true);
        $m!(flash_bwd_dkdv_wgmma_dropout_f16_d128_causal, F16, 128, 64, 128, true, true);
        $m!(flash_bwd_dkdv_wgmma_dropout_bf16_d128_causal, Bf16, 128, 64, 128, true, true);
    };
}

/// The masked wgmma dK/dV kernel (windows, block masks, packed batches; causal as a window; with
/// `dropout`, dropout too; no softcap or ALiBi): `callback!(name, Dtype, head_dim, block_m,
/// block_n, dropout)`, the tiles of the plain rows.
#[macro_export]
macro_rules! for_each_wgmma_backward_masked_kernel {
    ($m:ident) => {
        $m!(flash_bwd_dkdv_wgmma_masked_f16_d64, F16, 64, 128, 128, false);
        $m!(flash_bwd_dkdv_wgmma_masked_bf16_d64, Bf16, 64, 128, 128, false);
        $m!(flash_bwd_dkdv_wgmma_masked_f16_d128, F16, 128, 64, 128, false);
        $m!(flash_bwd_dkdv_wgmma_masked_bf16_d128, Bf16, 128, 64, 128, false);
        $m!(flash_bwd_dkdv_wgmma_masked_dropout_f16_d64, F16, 64, 128, 128, true);
        $m!(flash_bwd_dkdv_wgmma_masked_dropout_bf16_d64, Bf16, 64, 128, 128, true);
        $m!(flash_bwd_dkdv_wgmma_masked_dropout_f16_d128, F16, 128, 64, 128, true);
        $m!(flash_bwd_dkdv_wgmma_masked_dropout_bf16_d128, Bf16, 128, 64, 128, true);
    };
}

/// The deterministic backward's dQ kernel (`MmaBackwardDqConfig`): `callback!(name, Dtype,
/// head_dim, block_m, block_n, causal)`. 4 warps of 16 query rows; 64-key blocks (32 above
/// d = 128, where dQ alone takes d/2 registers).
#[macro_export]
macro_rules! for_each_mma_backward_dq_kernel {
    ($m:ident) => {
        $m!(flash_bwd_dq_mma_f16_d32, F16, 32, 64, 64, false);
        $m!(flash_bwd_dq_mma_f16_d32_causal, F16, 32, 64, 64, true);
        $m!(flash_bwd_dq_mma_bf16_d32, Bf16, 32, 64, 64, false);
        $m!(flash_bwd_dq_mma_bf16_d32_causal, Bf16, 32, 64, 64, true);
        $m!(flash_bwd_dq_mma_f16_d64, F16, 64, 64, 64, false);
        $m!(flash_bwd_dq_mma_f16_d64_causal, F16, 64, 64, 64, true);
        $m!(flash_bwd_dq_mma_bf16_d64, Bf16, 64, 64, 64, false);
        $m!(flash_bwd_dq_mma_bf16_d64_causal, Bf16, 64, 64, 64, true);
        $m!(flash_bwd_dq_mma_f16_d96, F16, 96, 64, 64, false);
        $m!(flash_bwd_dq_mma_f16_d96_causal, F16, 96, 64, 64, true);
        $m!(flash_bwd_dq_mma_bf16_d96, Bf16, 96, 64, 64, false);
        $m!(flash_bwd_dq_mma_bf16_d96_causal, Bf16, 96, 64, 64, true);
        $m!(flash_bwd_dq_mma_f16_d128, F16, 128, 64, 64, false);
        $m!(flash_bwd_dq_mma_f16_d128_causal, F16, 128, 64, 64, true);
        $m!(flash_bwd_dq_mma_bf16_d128, Bf16, 128, 64, 64, false);
        $m!(flash_bwd_dq_mma_bf16_d128_causal, Bf16, 128, 64, 64, true);
        $m!(flash_bwd_dq_mma_f16_d160, F16, 160, 64, 32, false);
        $m!(flash_bwd_dq_mma_f16_d160_causal, F16, 160, 64, 32, true);
        $m!(flash_bwd_dq_mma_bf16_d160, Bf16, 160, 64, 32, false);
        $m!(flash_bwd_dq_mma_bf16_d160_causal, Bf16, 160, 64, 32, true);
        $m!(flash_bwd_dq_mma_f16_d192, F16, 192, 64, 32, false);
        $m!(flash_bwd_dq_mma_f16_d192_causal, F16, 192, 64, 32, true);
        $m!(flash_bwd_dq_mma_bf16_d192, Bf16, 192, 64, 32, false);
        $m!(flash_bwd_dq_mma_bf16_d192_causal, Bf16, 192, 64, 32, true);
        $m!(flash_bwd_dq_mma_f16_d256, F16, 256, 64, 32, false);
        $m!(flash_bwd_dq_mma_f16_d256_causal, F16, 256, 64, 32, true);
        $m!(flash_bwd_dq_mma_bf16_d256, Bf16, 256, 64, 32, false);
        $m!(flash_bwd_dq_mma_bf16_d256_causal, Bf16, 256, 64, 32, true);
    };
}

/// The masked dK/dV backward (see `for_each_mma_forward_masked_kernel`): `callback!(name, Dtype,
/// head_dim, block_m, block_n, d_split, mods)`, the non-causal tiles.
#[macro_export]
macro_rules! for_each_mma_backward_masked_kernel {
    ($m:ident) => {
        $m!(flash_bwd_dkdv_mma_masked_f16_d32, F16, 32, 128, 128, 1, 0);
        $m!(flash_bwd_dkdv_mma_masked_bf16_d32, Bf16, 32, 128, 128, 1, 0);
        $m!(flash_bwd_dkdv_mma_masked_f16_d64, F16, 64, 128, 128, 1, 0);
        $m!(flash_bwd_dkdv_mma_masked_bf16_d64, Bf16, 64, 128, 128, 1, 0);
        $m!(flash_bwd_dkdv_mma_masked_f16_d96, F16, 96, 64, 128, 1, 0);
        $m!(flash_bwd_dkdv_mma_masked_bf16_d96, Bf16, 96, 64, 128, 1, 0);
        $m!(flash_bwd_dkdv_mma_masked_f16_d128, F16, 128, 64, 128, 1, 0);
        $m!(flash_bwd_dkdv_mma_masked_bf16_d128, Bf16, 128, 64, 128, 1, 0);
        $m!(flash_bwd_dkdv_mma_masked_f16_d160, F16, 160, 64, 64, 2, 0);
        $m!(flash_bwd_dkdv_mma_masked_bf16_d160, Bf16, 160, 64, 64, 2, 0);
        $m!(flash_bwd_dkdv_mma_masked_f16_d192, F16, 192, 64, 64, 2, 0);
        $m!(flash_bwd_dkdv_mma_masked_bf16_d192, Bf16, 192, 64, 64, 2, 0);
        $m!(flash_bwd_dkdv_mma_masked_f16_d256, F16, 256, 32, 64, 2, 0);
        $m!(flash_bwd_dkdv_mma_masked_bf16_d256, Bf16, 256, 32, 64, 2, 0);
        $m!(flash_bwd_dkdv_mma_masked_dropout_f16_d32, F16, 32, 128, 128, 1, 2);
        $m!(flash_bwd_dkdv_mma_masked_dropout_bf16_d32, Bf16, 32, 128, 128, 1, 2);
        $m!(flash_bwd_dkdv_mma_masked_dropout_f16_d64, F16, 64, 128, 128, 1, 2);
        $m!(flash_bwd_dkdv_mma_masked_dropout_bf16_d64, Bf16, 64, 128, 128, 1, 2);
        $m!(flash_bwd_dkdv_mma_masked_dropout_f16_d96, F16, 96, 64, 128, 1, 2);
        $m!(flash_bwd_dkdv_mma_masked_dropout_bf16_d96, Bf16, 96, 64, 128, 1, 2);
        $m!(flash_bwd_dkdv_mma_masked_dropout_f16_d128, F16, 128, 64, 128, 1, 2);
        $m!(flash_bwd_dkdv_mma_masked_dropout_bf16_d128, Bf16, 128, 64, 128, 1, 2);
        $m!(flash_bwd_dkdv_mma_masked_dropout_f16_d160, F16, 160, 64, 64, 2, 2);
        $m!(flash_bwd_dkdv_mma_masked_dropout_bf16_d160, Bf16, 160, 64, 64, 2, 2);
        $m!(flash_bwd_dkdv_mma_masked_dropout_f16_d192, F16, 192, 64, 64, 2, 2);
        $m!(flash_bwd_dkdv_mma_masked_dropout_bf16_d192, Bf16, 192, 64, 64, 2, 2);
        $m!(flash_bwd_dkdv_mma_masked_dropout_f16_d256, F16, 256, 32, 64, 2, 2);
        $m!(flash_bwd_dkdv_mma_masked_dropout_bf16_d256, Bf16, 256, 32, 64, 2, 2);
        $m!(flash_bwd_dkdv_mma_masked_mods_f16_d32, F16, 32, 128, 128, 1, 3);
        $m!(flash_bwd_dkdv_mma_masked_mods_bf16_d32, Bf16, 32, 128, 128, 1, 3);
        $m!(flash_bwd_dkdv_mma_masked_mods_f16_d64, F16, 64, 128, 128, 1, 3);
        $m!(flash_bwd_dkdv_mma_masked_mods_bf16_d64, Bf16, 64, 128, 128, 1, 3);
        $m!(flash_bwd_dkdv_mma_masked_mods_f16_d96, F16, 96, 64, 128, 1, 3);
        $m!(flash_bwd_dkdv_mma_masked_mods_bf16_d96, Bf16, 96, 64, 128, 1, 3);
        $m!(flash_bwd_dkdv_mma_masked_mods_f16_d128, F16, 128, 64, 128, 1, 3);
        $m!(flash_bwd_dkdv_mma_masked_mods_bf16_d128, Bf16, 128, 64, 128, 1, 3);
        $m!(flash_bwd_dkdv_mma_masked_mods_f16_d160, F16, 160, 64, 64, 2, 3);
        $m!(flash_bwd_dkdv_mma_masked_mods_bf16_d160, Bf16, 160, 64, 64, 2, 3);
        $m!(flash_bwd_dkdv_mma_masked_mods_f16_d192, F16, 192, 64, 64, 2, 3);
        $m!(flash_bwd_dkdv_mma_masked_mods_bf16_d192, Bf16, 192, 64, 64, 2, 3);
        $m!(flash_bwd_dkdv_mma_masked_mods_f16_d256, F16, 256, 32, 64, 2, 3);
        $m!(flash_bwd_dkdv_mma_masked_mods_bf16_d256, Bf16, 256, 32, 64, 2, 3);
    };
}

/// The masked deterministic dQ: `callback!(name, Dtype, head_dim, block_m, block_n, mods)`, the
/// non-causal tiles.
#[macro_export]
macro_rules! for_each_mma_backward_dq_masked_kernel {
    ($m:ident) => {
        $m!(flash_bwd_dq_mma_masked_f16_d32, F16, 32, 64, 64, 0);
        $m!(flash_bwd_dq_mma_masked_bf16_d32, Bf16, 32, 64, 64, 0);
        $m!(flash_bwd_dq_mma_masked_f16_d64, F16, 64, 64, 64, 0);
        $m!(flash_bwd_dq_mma_masked_bf16_d64, Bf16, 64, 64, 64, 0);
        $m!(flash_bwd_dq_mma_masked_f16_d96, F16, 96, 64, 64, 0);
        $m!(flash_bwd_dq_mma_masked_bf16_d96, Bf16, 96, 64, 64, 0);
        $m!(flash_bwd_dq_mma_masked_f16_d128, F16, 128, 64, 64, 0);
        $m!(flash_bwd_dq_mma_masked_bf16_d128, Bf16, 128, 64, 64, 0);
        $m!(flash_bwd_dq_mma_masked_f16_d160, F16, 160, 64, 32, 0);
        $m!(flash_bwd_dq_mma_masked_bf16_d160, Bf16, 160, 64, 32, 0);
        $m!(flash_bwd_dq_mma_masked_f16_d192, F16, 192, 64, 32, 0);
        $m!(flash_bwd_dq_mma_masked_bf16_d192, Bf16, 192, 64, 32, 0);
        $m!(flash_bwd_dq_mma_masked_f16_d256, F16, 256, 64, 32, 0);
        $m!(flash_bwd_dq_mma_masked_bf16_d256, Bf16, 256, 64, 32, 0);
        $m!(flash_bwd_dq_mma_masked_dropout_f16_d32, F16, 32, 64, 64, 2);
        $m!(flash_bwd_dq_mma_masked_dropout_bf16_d32, Bf16, 32, 64, 64, 2);
        $m!(flash_bwd_dq_mma_masked_dropout_f16_d64, F16, 64, 64, 64, 2);
        $m!(flash_bwd_dq_mma_masked_dropout_bf16_d64, Bf16, 64, 64, 64, 2);
        $m!(flash_bwd_dq_mma_masked_dropout_f16_d96, F16, 96, 64, 64, 2);
        $m!(flash_bwd_dq_mma_masked_dropout_bf16_d96, Bf16, 96, 64, 64, 2);
        $m!(flash_bwd_dq_mma_masked_dropout_f16_d128, F16, 128, 64, 64, 2);
        $m!(flash_bwd_dq_mma_masked_dropout_bf16_d128, Bf16, 128, 64, 64, 2);
        $m!(flash_bwd_dq_mma_masked_dropout_f16_d160, F16, 160, 64, 32, 2);
        $m!(flash_bwd_dq_mma_masked_dropout_bf16_d160, Bf16, 160, 64, 32, 2);
        $m!(flash_bwd_dq_mma_masked_dropout_f16_d192, F16, 192, 64, 32, 2);
        $m!(flash_bwd_dq_mma_masked_dropout_bf16_d192, Bf16, 192, 64, 32, 2);
        $m!(flash_bwd_dq_mma_masked_dropout_f16_d256, F16, 256, 64, 32, 2);
        $m!(flash_bwd_dq_mma_masked_dropout_bf16_d256, Bf16, 256, 64, 32, 2);
        $m!(flash_bwd_dq_mma_masked_mods_f16_d32, F16, 32, 64, 64, 3);
        $m!(flash_bwd_dq_mma_masked_mods_bf16_d32, Bf16, 32, 64, 64, 3);
        $m!(flash_bwd_dq_mma_masked_mods_f16_d64, F16, 64, 64, 64, 3);
        $m!(flash_bwd_dq_mma_masked_mods_bf16_d64, Bf16, 64, 64, 64, 3);
        $m!(flash_bwd_dq_mma_masked_mods_f16_d96, F16, 96, 64, 64, 3);
        $m!(flash_bwd_dq_mma_masked_mods_bf16_d96, Bf16, 96, 64, 64, 3);
        $m!(flash_bwd_dq_mma_masked_mods_f16_d128, F16, 128, 64, 64, 3);
        $m!(flash_bwd_dq_mma_masked_mods_bf16_d128, Bf16, 128, 64, 64, 3);
        $m!(flash_bwd_dq_mma_masked_mods_f16_d160, F16, 160, 64, 32, 3);
        $m!(flash_bwd_dq_mma_masked_mods_bf16_d160, Bf16, 160, 64, 32, 3);
        $m!(flash_bwd_dq_mma_masked_mods_f16_d192, F16, 192, 64, 32, 3);
        $m!(flash_bwd_dq_mma_masked_mods_bf16_d192, Bf16, 192, 64, 32, 3);
        $m!(flash_bwd_dq_mma_masked_mods_f16_d256, F16, 256, 64, 32, 3);
        $m!(flash_bwd_dq_mma_masked_mods_bf16_d256, Bf16, 256, 64, 32, 3);
    };
}

/// The conversion `dq = scale * dq_accum` after the atomic dK/dV kernel: `callback!(name, Dtype,
/// tiled)`; `tiled`: `dq_accum` in the wgmma kernel's tile layout (`config::dq_tiled_index`),
/// else row-major.
#[macro_export]
macro_rules! for_each_backward_dq_convert_kernel {
    ($m:ident) => {
        $m!(flash_bwd_dq_convert_f16, F16, false);
        $m!(flash_bwd_dq_convert_bf16, Bf16, false);
        $m!(flash_bwd_dq_convert_tiled_f16, F16, true);
        $m!(flash_bwd_dq_convert_tiled_bf16, Bf16, true);
    };
}

/// The row kernels of the standard-attention baseline (one warp per row of the `N x N` matrix,
/// f32 math; the matrix products around them are cuBLAS GEMMs): `callback!(name, Kind, Dtype,
/// causal)`, Kind one of
/// - `Softmax`: `P = softmax(S)` with the causal mask, and the LSE (forward);
/// - `Probs`: `P = exp(S - LSE)` with the causal mask (backward, from the forward's LSE);
/// - `Ds`: `dS = P * (dP - rowsum(dO * O))` in place over P (backward; masked entries have P = 0,
///   so there is no causal variant).
#[macro_export]
macro_rules! for_each_standard_kernel {
    ($m:ident) => {
        $m!(standard_softmax_f16, Softmax, F16, false);
        $m!(standard_softmax_f16_causal, Softmax, F16, true);
        $m!(standard_softmax_bf16, Softmax, Bf16, false);
        $m!(standard_softmax_bf16_causal, Softmax, Bf16, true);
        $m!(standard_probs_f16, Probs, F16, false);
        $m!(standard_probs_f16_causal, Probs, F16, true);
        $m!(standard_probs_bf16, Probs, Bf16, false);
        $m!(standard_probs_bf16_causal, Probs, Bf16, true);
        $m!(standard_ds_f16, Ds, F16, false);
        $m!(standard_ds_bf16, Ds, Bf16, false);
    };
}
