//! Errors are values: every bad input, missing driver or GPU, and driver failure is reported
//! through [`Error`], never a panic.
use cudarc::driver::DriverError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `libcuda` could not be loaded: no NVIDIA driver on this machine.
    #[error("no CUDA driver: libcuda.so could not be loaded (is an NVIDIA driver installed?)")]
    NoDriver,
    /// The driver loaded but there is no GPU with this ordinal.
    #[error("no CUDA GPU with ordinal {ordinal}: the driver reports {count} device(s){detail}")]
    NoDevice { ordinal: usize, count: usize, detail: String },
    /// The GPU is older than the kernels support.
    #[error("GPU {name} has compute capability {major}.{minor}; flashattn needs 8.0 (Ampere) or newer")]
    UnsupportedGpu { name: String, major: i32, minor: i32 },
    /// An argument is malformed: the name of the argument, and what is wrong with it.
    #[error("invalid argument `{arg}`: {msg}")]
    InvalidArgument { arg: &'static str, msg: String },
    /// The head dimension has no kernel.
    #[error("unsupported head dim {head_dim} for the {kernel} kernel (supported: {supported:?})")]
    UnsupportedHeadDim { head_dim: usize, kernel: &'static str, supported: Vec<usize> },
    /// Two tensors of one call live on different devices.
    #[error("tensors `{a}` and `{b}` are on different devices")]
    DeviceMismatch { a: &'static str, b: &'static str },
    /// cuBLAS (needed by the standard-attention baseline only) could not be loaded at run time.
    #[error(
        "cuBLAS could not be loaded: none of cudarc's names for it ({candidates}) is found by the dynamic loader. \
         The standard-attention baseline (flashattn::standard) needs it; with PyTorch's pip wheels it lives in \
         site-packages/nvidia/cublas/lib: add that folder to LD_LIBRARY_PATH (benches/device_run.sh does)"
    )]
    NoCublas { candidates: String },
    /// A cuBLAS call failed.
    #[error("cuBLAS error: {0}")]
    Cublas(#[from] cudarc::cublas::result::CublasError),
    /// A CUDA driver call failed.
    #[error("CUDA driver error: {0}")]
    Driver(#[from] DriverError),
    /// An input or output file of `flashattn run` (missing tensor, wrong dtype or shape, I/O).
    #[error(transparent)]
    File(#[from] crate::io::FileError),
}

impl Error {
    pub(crate) fn invalid(arg: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument { arg, msg: msg.into() }
    }
}
