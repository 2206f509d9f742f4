//! The `extern "ptx-kernel"` entry points, one per row of the kernel tables (`kernel_table.rs`).
use crate::forward_mma::forward_mma;
use crate::forward_scalar::forward_scalar;
use crate::params::ForwardParams;

macro_rules! scalar_forward_entry {
    ($name:ident, $dtype:ident, $d:literal, $causal:literal) => {
        #[no_mangle]
        pub unsafe extern "ptx-kernel" fn $name(p: ForwardParams) {
            forward_scalar::<crate::element::$dtype, $d, $causal>(&p)
        }
    };
}
crate::for_each_scalar_forward_kernel!(scalar_forward_entry);

macro_rules! mma_forward_entry {
    ($name:ident, $dtype:ident, $d:literal, $bm:literal, $bn:literal, $mt:literal, $qr:literal, $st:literal, $causal:literal) => {
        #[no_mangle]
        pub unsafe extern "ptx-kernel" fn $name(p: ForwardParams) {
            forward_mma::<crate::element::$dtype, $d, $bm, $bn, $mt, $qr, $st, $causal>(&p)
        }
    };
}
crate::for_each_mma_forward_kernel!(mma_forward_entry);
