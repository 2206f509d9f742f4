//! Device code of `flashattn`, and the pieces of it the host must agree with.
//!
//! This crate is compiled twice:
//! - for `nvptx64-nvidia-cuda` by `build.rs` (nightly, `-Zbuild-std=core`, `--emit=asm`): the PTX
//!   that the host embeds. Everything under `cfg(target_arch = "nvptx64")` is device code.
//! - for the host, as an ordinary dependency of `flashattn` (stable): only the shared part is
//!   compiled: the kernel parameter structs ([`params`]), the tile configurations ([`config`]),
//!   the dropout random numbers ([`philox`]), the longest-first CTA order ([`work_order`]) and
//!   the tables of kernel entry points (`kernel_table.rs`: `for_each_mma_forward_kernel!` and its
//!   siblings). Because both sides
//!   read the same definitions, launch parameters cannot disagree with the kernels, and the CPU
//!   reference's dropout mask cannot disagree with the kernels' one.
//!
//! Layers of the device code (see STYLE.md): `arch` holds one thin wrapper per PTX instruction;
//! `element` the f16/bf16 conversions and MMA per type; `scalar_tile` the f32 tiles of the
//! CUDA-core kernels; `mma_tile` the tile copies and
//! `ldmatrix` lane addressing of the tensor-core kernels; the algorithms (`forward_mma`,
//! `forward_scalar`, `backward_mma`, `backward_scalar`, and `standard_softmax`, the row kernels of the
//! standard-attention baseline) are
//! written on top; `entry` generates the kernel entry points from the tables.
#![no_std]
#![cfg_attr(
    target_arch = "nvptx64",
    feature(abi_ptx, stdarch_nvptx, asm_experimental_arch, core_intrinsics),
    allow(internal_features)
)]

pub mod config;
pub mod fast_div;
pub mod params;
pub mod philox;
pub mod smem_layout;
pub mod work_order;
pub mod ws_schedule;

#[macro_use]
mod kernel_table;

#[cfg(target_arch = "nvptx64")]
mod arch;
#[cfg(target_arch = "nvptx64")]
mod backward_mma;
#[cfg(target_arch = "nvptx64")]
mod backward_order;
#[cfg(target_arch = "nvptx64")]
mod backward_scalar;
#[cfg(all(target_arch = "nvptx64", flashattn_sm90a))]
mod backward_wgmma;
#[cfg(target_arch = "nvptx64")]
mod element;
#[cfg(target_arch = "nvptx64")]
mod entry;
#[cfg(target_arch = "nvptx64")]
mod forward_mma;
#[cfg(target_arch = "nvptx64")]
mod forward_scalar;
#[cfg(all(target_arch = "nvptx64", flashattn_sm90a))]
mod forward_wgmma;
#[cfg(all(target_arch = "nvptx64", flashattn_sm90a))]
mod forward_ws;
#[cfg(target_arch = "nvptx64")]
mod instruction_tests;
#[cfg(all(target_arch = "nvptx64", flashattn_sm90a))]
mod instruction_tests_sm90;
#[cfg(target_arch = "nvptx64")]
mod masking;
#[cfg(target_arch = "nvptx64")]
mod mma_tile;
#[cfg(target_arch = "nvptx64")]
mod scalar_tile;
#[cfg(target_arch = "nvptx64")]
mod standard_softmax;

/// Kernels must never panic (a bounds check would pull in core's panic machinery); if one ever
/// does, stop the whole grid with `trap` so the host sees a launch error instead of wrong data.
#[cfg(target_arch = "nvptx64")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    unsafe { core::arch::asm!("trap;", options(noreturn)) }
}
