//! The kernels' PTX, embedded (deflate-compressed) at build time by `build.rs`, and the choice of
//! PTX for a GPU.
use std::sync::OnceLock;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/kernels_ptx.rs"));
}

/// The PTX of an architecture, inflated on first use.
fn inflate(packed: &'static [u8], cell: &'static OnceLock<String>) -> &'static str {
    cell.get_or_init(|| {
        // The bytes were written by our own build script: failing here is a build bug.
        let bytes = miniz_oxide::inflate::decompress_to_vec(packed).expect("embedded PTX is valid deflate data");
        String::from_utf8(bytes).expect("embedded PTX is UTF-8 text")
    })
}

/// PTX for sm_80 (runs on every GPU from Ampere on).
pub fn sm80() -> &'static str {
    static PTX: OnceLock<String> = OnceLock::new();
    inflate(embedded::SM80, &PTX)
}

/// PTX for sm_90a (Hopper-only instructions; compute capability 9.0 exactly).
pub fn sm90a() -> &'static str {
    static PTX: OnceLock<String> = OnceLock::new();
    inflate(embedded::SM90A, &PTX)
}

/// PTX for a compute capability: the sm_90a build (which may use Hopper-only instructions) on
/// 9.0 exactly, since `a` targets do not run on later architectures; sm_80 everywhere else
/// (the driver JIT-compiles it forward for newer GPUs).
pub fn for_compute_capability(major: i32, minor: i32) -> &'static str {
    if (major, minor) == (9, 0) {
        sm90a()
    } else {
        sm80()
    }
}
