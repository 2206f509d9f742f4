//! # flashattn
//!
//! FlashAttention (exact, IO-aware attention) whose GPU kernels are written in Rust and compiled
//! to PTX by rustc's NVPTX backend (see `build.rs` and the `flashattn-kernels` crate).
//!
//! ```no_run
//! use flashattn::{forward, AttentionOptions, Device};
//! use half::bf16;
//! # fn main() -> flashattn::Result<()> {
//! let dev = Device::new(0)?; // a typed error, never a panic, without a driver or GPU
//! let (b, n, h, d) = (2, 1024, 8, 128);
//! let host: Vec<bf16> = (0..b * n * h * d).map(|i| bf16::from_f32((i % 7) as f32 * 0.1)).collect();
//! let q = dev.upload(&host, &[b, n, h, d])?;
//! let k = dev.upload(&host, &[b, n, h, d])?;
//! let v = dev.upload(&host, &[b, n, h, d])?;
//! let (o, lse) = forward(&q, &k, &v, &AttentionOptions { causal: true, ..Default::default() })?;
//! let o_host: Vec<bf16> = o.to_host()?; // [b, n, h, d]
//! let lse_host: Vec<f32> = lse.to_host()?; // [b, h, n]
//! # Ok(()) }
//! ```
//!
//! Layers: [`runtime`](mod@runtime) (device discovery, module and function cache), [`tensor`](mod@tensor) (typed device
//! tensors with shapes and strides), [`shape`](mod@shape) (problem dimensions), [`forward`](mod@forward) and [`backward`](mod@backward)
//! (the operations, validated), [`masks`](mod@masks) (windows, softcap, ALiBi, block-sparse masks, dropout
//! and packed variable-length batches: `forward_masked`, `forward_varlen` and their backwards),
//! [`reference`](mod@reference) (the f64 CPU oracle), [`accuracy`](mod@accuracy)
//! (FlashAttention's error rules), [`bench`](mod@bench) (timing harness), [`io`](mod@io) (safetensors in
//! and out, for `flashattn run`), [`dropout`](mod@dropout) (the Philox keep-mask, on the CPU) and [`standard`](mod@standard) (the
//! standard-attention baseline: `N x N` matrices in memory, cuBLAS GEMMs, for the benchmarks).

pub mod accuracy;
pub mod backward;
pub mod bench;
pub mod bench_masks;
pub mod dropout;
pub mod error;
pub mod forward;
pub mod io;
pub(crate) mod launch;
pub mod masks;
pub mod plot;
pub mod ptx;
pub mod reference;
pub mod runtime;
pub mod shape;
pub mod standard;
pub mod tensor;
pub mod tensor_map;

pub use backward::{backward, backward_masked, backward_varlen};
pub use error::{Error, Result};
pub use flashattn_kernels::config::Dtype;
pub use forward::{forward, forward_into, forward_masked, forward_varlen, AttentionOptions, ForwardKernel};
pub use masks::{MaskInputs, VarlenBatch};
pub use runtime::{Device, MODULE_FILE_VAR};
pub use shape::Shape;
pub use standard::{standard_backward, standard_forward};
pub use tensor::{Element, Tensor};
