//! The kernels' PTX, embedded at build time by `build.rs`, and the choice of PTX for a GPU.
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/kernels_ptx.rs"));
}
pub use embedded::{SM80, SM90A};

/// PTX for a compute capability: the sm_90a build (which may use Hopper-only instructions) on
/// 9.0 exactly, since `a` targets do not run on later architectures; sm_80 everywhere else
/// (the driver JIT-compiles it forward for newer GPUs).
pub fn for_compute_capability(major: i32, minor: i32) -> &'static str {
    if (major, minor) == (9, 0) {
        SM90A
    } else {
        SM80
    }
}
