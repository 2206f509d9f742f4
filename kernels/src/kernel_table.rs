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
/// q_in_regs, causal)`. Real head dims are padded up to the next instantiated one (multiples of 32).
///
/// Why these tiles: up to d = 128 the Q fragments (d/16 x 4 registers) fit in registers beside
/// the O accumulators (d/8 x 4) and the scores (block_n/8 x 4); above, Q is re-read from shared
/// memory each block and K/V blocks shrink to 32 rows so that O (up to 128 registers) still fits.
#[macro_export]
macro_rules! for_each_mma_forward_kernel {
    ($m:ident) => {
        $m!(flash_fwd_mma_f16_d32, F16, 32, 128, 64, 1, true, false);
        $m!(flash_fwd_mma_f16_d32_causal, F16, 32, 128, 64, 1, true, true);
        $m!(flash_fwd_mma_bf16_d32, Bf16, 32, 128, 64, 1, true, false);
        $m!(flash_fwd_mma_bf16_d32_causal, Bf16, 32, 128, 64, 1, true, true);
        $m!(flash_fwd_mma_f16_d64, F16, 64, 128, 64, 1, true, false);
        $m!(flash_fwd_mma_f16_d64_causal, F16, 64, 128, 64, 1, true, true);
        $m!(flash_fwd_mma_bf16_d64, Bf16, 64, 128, 64, 1, true, false);
        $m!(flash_fwd_mma_bf16_d64_causal, Bf16, 64, 128, 64, 1, true, true);
        $m!(flash_fwd_mma_f16_d96, F16, 96, 128, 64, 1, true, false);
        $m!(flash_fwd_mma_f16_d96_causal, F16, 96, 128, 64, 1, true, true);
        $m!(flash_fwd_mma_bf16_d96, Bf16, 96, 128, 64, 1, true, false);
        $m!(flash_fwd_mma_bf16_d96_causal, Bf16, 96, 128, 64, 1, true, true);
        $m!(flash_fwd_mma_f16_d128, F16, 128, 128, 64, 1, true, false);
        $m!(flash_fwd_mma_f16_d128_causal, F16, 128, 128, 64, 1, true, true);
        $m!(flash_fwd_mma_bf16_d128, Bf16, 128, 128, 64, 1, true, false);
        $m!(flash_fwd_mma_bf16_d128_causal, Bf16, 128, 128, 64, 1, true, true);
        $m!(flash_fwd_mma_f16_d160, F16, 160, 128, 32, 1, false, false);
        $m!(flash_fwd_mma_f16_d160_causal, F16, 160, 128, 32, 1, false, true);
        $m!(flash_fwd_mma_bf16_d160, Bf16, 160, 128, 32, 1, false, false);
        $m!(flash_fwd_mma_bf16_d160_causal, Bf16, 160, 128, 32, 1, false, true);
        $m!(flash_fwd_mma_f16_d192, F16, 192, 128, 32, 1, false, false);
        $m!(flash_fwd_mma_f16_d192_causal, F16, 192, 128, 32, 1, false, true);
        $m!(flash_fwd_mma_bf16_d192, Bf16, 192, 128, 32, 1, false, false);
        $m!(flash_fwd_mma_bf16_d192_causal, Bf16, 192, 128, 32, 1, false, true);
        $m!(flash_fwd_mma_f16_d224, F16, 224, 128, 32, 1, false, false);
        $m!(flash_fwd_mma_f16_d224_causal, F16, 224, 128, 32, 1, false, true);
        $m!(flash_fwd_mma_bf16_d224, Bf16, 224, 128, 32, 1, false, false);
        $m!(flash_fwd_mma_bf16_d224_causal, Bf16, 224, 128, 32, 1, false, true);
        $m!(flash_fwd_mma_f16_d256, F16, 256, 128, 32, 1, false, false);
        $m!(flash_fwd_mma_f16_d256_causal, F16, 256, 128, 32, 1, false, true);
        $m!(flash_fwd_mma_bf16_d256, Bf16, 256, 128, 32, 1, false, false);
        $m!(flash_fwd_mma_bf16_d256_causal, Bf16, 256, 128, 32, 1, false, true);
        // Tuning candidates (bf16 only), selected with ForwardKernel::TensorCoreTiles.
        $m!(flash_fwd_mma_bf16_d64_m128n128t1, Bf16, 64, 128, 128, 1, true, false);
        $m!(flash_fwd_mma_bf16_d64_m128n128t1_causal, Bf16, 64, 128, 128, 1, true, true);
        $m!(flash_fwd_mma_bf16_d64_m64n64t1, Bf16, 64, 64, 64, 1, true, false);
        $m!(flash_fwd_mma_bf16_d64_m64n64t1_causal, Bf16, 64, 64, 64, 1, true, true);
        $m!(flash_fwd_mma_bf16_d64_m128n64t2, Bf16, 64, 128, 64, 2, false, false);
        $m!(flash_fwd_mma_bf16_d64_m128n64t2_causal, Bf16, 64, 128, 64, 2, false, true);
        $m!(flash_fwd_mma_bf16_d128_m64n64t1, Bf16, 128, 64, 64, 1, true, false);
        $m!(flash_fwd_mma_bf16_d128_m64n64t1_causal, Bf16, 128, 64, 64, 1, true, true);
        $m!(flash_fwd_mma_bf16_d128_m128n128t1, Bf16, 128, 128, 128, 1, true, false);
        $m!(flash_fwd_mma_bf16_d128_m128n128t1_causal, Bf16, 128, 128, 128, 1, true, true);
        $m!(flash_fwd_mma_bf16_d128_m128n64t2, Bf16, 128, 128, 64, 2, false, false);
        $m!(flash_fwd_mma_bf16_d128_m128n64t2_causal, Bf16, 128, 128, 64, 2, false, true);
        $m!(flash_fwd_mma_bf16_d128_m128n32t1, Bf16, 128, 128, 32, 1, true, false);
        $m!(flash_fwd_mma_bf16_d128_m128n32t1_causal, Bf16, 128, 128, 32, 1, true, true);
        $m!(flash_fwd_mma_bf16_d128_m64n32t1, Bf16, 128, 64, 32, 1, true, false);
        $m!(flash_fwd_mma_bf16_d128_m64n32t1_causal, Bf16, 128, 64, 32, 1, true, true);
        $m!(flash_fwd_mma_bf16_d256_m64n32t1, Bf16, 256, 64, 32, 1, false, false);
        $m!(flash_fwd_mma_bf16_d256_m64n32t1_causal, Bf16, 256, 64, 32, 1, false, true);
        $m!(flash_fwd_mma_bf16_d256_m64n64t1, Bf16, 256, 64, 64, 1, false, false);
        $m!(flash_fwd_mma_bf16_d256_m64n64t1_causal, Bf16, 256, 64, 64, 1, false, true);
        $m!(flash_fwd_mma_bf16_d256_m128n64t1, Bf16, 256, 128, 64, 1, false, false);
        $m!(flash_fwd_mma_bf16_d256_m128n64t1_causal, Bf16, 256, 128, 64, 1, false, true);
    };
}
