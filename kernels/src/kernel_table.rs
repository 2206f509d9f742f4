//! The table of kernel entry points: one instantiation per (head dim, dtype, causal), as
//! FlashAttention-2 does, to keep compile time and PTX size in check.
//!
//! `for_each_forward_kernel!(callback)` calls `callback!(name, Dtype, head_dim, causal)` once per
//! entry point. The device side generates the `extern "ptx-kernel"` functions from it; the host
//! builds its lookup table from it, so the two always agree on names.

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
