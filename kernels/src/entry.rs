//! The `extern "ptx-kernel"` entry points, one per row of the kernel tables (`kernel_table.rs`).
use crate::backward_mma::{dkdv_mma, dq_convert, dq_mma};
use crate::backward_order::key_block_order;
use crate::backward_scalar::{dkdv, dq, preprocess};
use crate::forward_mma::forward_mma;
use crate::forward_scalar::forward_scalar;
use crate::params::{BackwardParams, ForwardParams, StandardParams};

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
            forward_mma::<crate::element::$dtype, $d, $bm, $bn, $mt, $qr, $st, $causal, false, 0>(&p)
        }
    };
}
crate::for_each_mma_forward_kernel!(mma_forward_entry);

macro_rules! mma_forward_masked_entry {
    ($name:ident, $dtype:ident, $d:literal, $bm:literal, $bn:literal, $mt:literal, $qr:literal, $st:literal, $mods:literal) => {
        #[no_mangle]
        pub unsafe extern "ptx-kernel" fn $name(p: ForwardParams) {
            forward_mma::<crate::element::$dtype, $d, $bm, $bn, $mt, $qr, $st, false, true, $mods>(&p)
        }
    };
}
crate::for_each_mma_forward_masked_kernel!(mma_forward_masked_entry);

macro_rules! backward_preprocess_entry {
    ($name:ident, $dtype:ident) => {
        #[no_mangle]
        pub unsafe extern "ptx-kernel" fn $name(p: BackwardParams) {
            preprocess::<crate::element::$dtype>(&p)
        }
    };
}
crate::for_each_backward_preprocess_kernel!(backward_preprocess_entry);

macro_rules! backward_key_block_order_entry {
    ($name:ident) => {
        #[no_mangle]
        pub unsafe extern "ptx-kernel" fn $name(p: BackwardParams) {
            key_block_order(&p)
        }
    };
}
crate::for_each_backward_key_block_order_kernel!(backward_key_block_order_entry);

macro_rules! scalar_backward_entry {
    ($name:ident, Dq, $dtype:ident, $d:literal, $causal:literal) => {
        #[no_mangle]
        pub unsafe extern "ptx-kernel" fn $name(p: BackwardParams) {
            dq::<crate::element::$dtype, $d, $causal>(&p)
        }
    };
    ($name:ident, Dk, $dtype:ident, $d:literal, $causal:literal) => {
        #[no_mangle]
        pub unsafe extern "ptx-kernel" fn $name(p: BackwardParams) {
            dkdv::<crate::element::$dtype, $d, $causal, true>(&p)
        }
    };
    ($name:ident, Dv, $dtype:ident, $d:literal, $causal:literal) => {
        #[no_mangle]
        pub unsafe extern "ptx-kernel" fn $name(p: BackwardParams) {
            dkdv::<crate::element::$dtype, $d, $causal, false>(&p)
        }
    };
}
crate::for_each_scalar_backward_kernel!(scalar_backward_entry);

macro_rules! mma_backward_entry {
    ($name:ident, $dtype:ident, $d:literal, $bm:literal, $bn:literal, $ds:literal, $causal:literal) => {
        #[no_mangle]
        pub unsafe extern "ptx-kernel" fn $name(p: BackwardParams) {
            dkdv_mma::<crate::element::$dtype, $d, $bm, $bn, $ds, $causal, false, 0>(&p)
        }
    };
}
crate::for_each_mma_backward_kernel!(mma_backward_entry);

macro_rules! mma_backward_dq_entry {
    ($name:ident, $dtype:ident, $d:literal, $bm:literal, $bn:literal, $causal:literal) => {
        #[no_mangle]
        pub unsafe extern "ptx-kernel" fn $name(p: BackwardParams) {
            dq_mma::<crate::element::$dtype, $d, $bm, $bn, $causal, false, 0>(&p)
        }
    };
}
crate::for_each_mma_backward_dq_kernel!(mma_backward_dq_entry);

macro_rules! backward_dq_convert_entry {
    ($name:ident, $dtype:ident, $tiled:literal) => {
        #[no_mangle]
        pub unsafe extern "ptx-kernel" fn $name(p: BackwardParams) {
            dq_convert::<crate::element::$dtype, $tiled>(&p)
        }
    };
}
crate::for_each_backward_dq_convert_kernel!(backward_dq_convert_entry);

macro_rules! standard_entry {
    ($name:ident, Softmax, $dtype:ident, $causal:literal) => {
        #[no_mangle]
        pub unsafe extern "ptx-kernel" fn $name(p: StandardParams) {
            crate::standard_softmax::softmax::<crate::element::$dtype, $causal, false>(&p)
        }
    };
    ($name:ident, Probs, $dtype:ident, $causal:literal) => {
        #[no_mangle]
        pub unsafe extern "ptx-kernel" fn $name(p: StandardParams) {
            crate::standard_softmax::softmax::<crate::element::$dtype, $causal, true>(&p)
        }
    };
    ($name:ident, Ds, $dtype:ident, $causal:literal) => {
        #[no_mangle]
        pub unsafe extern "ptx-kernel" fn $name(p: StandardParams) {
            crate::standard_softmax::ds::<crate::element::$dtype>(&p)
        }
    };
}
crate::for_each_standard_kernel!(standard_entry);

// The Hopper forward exists only in the sm_90a PTX (the sm_80 PTX must not contain wgmma).
#[cfg(flashattn_sm90a)]
macro_rules! wgmma_forward_entry {
    ($name:ident, $dtype:ident, $d:literal, $bm:literal, $bn:literal, $pipe:literal, $causal:literal) => {
        #[no_mangle]
        pub unsafe extern "ptx-kernel" fn $name(p: ForwardParams) {
            crate::forward_wgmma::forward_wgmma::<crate::element::$dtype, $d, $bm, $bn, $pipe, $causal, false, false>(
                &p,
            )
        }
    };
}
#[cfg(flashattn_sm90a)]
crate::for_each_wgmma_forward_kernel!(wgmma_forward_entry);

macro_rules! wgmma_forward_masked_entry {
    ($name:ident, $dtype:ident, $d:literal, $bm:literal, $bn:literal, $dropout:literal) => {
        #[no_mangle]
        pub unsafe extern "ptx-kernel" fn $name(p: ForwardParams) {
            crate::forward_wgmma::forward_wgmma::<crate::element::$dtype, $d, $bm, $bn, true, false, true, $dropout>(&p)
        }
    };
}
#[cfg(flashattn_sm90a)]
crate::for_each_wgmma_forward_masked_kernel!(wgmma_forward_masked_entry);

macro_rules! wgmma_forward_ws_entry {
    ($name:ident, $dtype:ident, $d:literal, $bn:literal, $causal:literal, $dropout:literal) => {
        #[no_mangle]
        pub unsafe extern "ptx-kernel" fn $name(p: ForwardParams) {
            crate::forward_ws::forward_ws::<crate::element::$dtype, $d, $bn, $causal, $dropout>(&p)
        }
    };
}
#[cfg(flashattn_sm90a)]
crate::for_each_wgmma_forward_ws_kernel!(wgmma_forward_ws_entry);

#[cfg(flashattn_sm90a)]
macro_rules! wgmma_backward_entry {
    ($name:ident, $dtype:ident, $d:literal, $bm:literal, $bn:literal, $causal:literal, $dropout:literal) => {
        #[no_mangle]
        pub unsafe extern "ptx-kernel" fn $name(p: BackwardParams) {
            crate::backward_wgmma::dkdv_wgmma::<crate::element::$dtype, $d, $bm, $bn, $causal, false, $dropout>(&p)
        }
    };
}
#[cfg(flashattn_sm90a)]
crate::for_each_wgmma_backward_kernel!(wgmma_backward_entry);

#[cfg(flashattn_sm90a)]
macro_rules! wgmma_backward_masked_entry {
    ($name:ident, $dtype:ident, $d:literal, $bm:literal, $bn:literal, $dropout:literal) => {
        #[no_mangle]
        pub unsafe extern "ptx-kernel" fn $name(p: BackwardParams) {
            crate::backward_wgmma::dkdv_wgmma::<crate::element::$dtype, $d, $bm, $bn, false, true, $dropout>(&p)
        }
    };
}
#[cfg(flashattn_sm90a)]
crate::for_each_wgmma_backward_masked_kernel!(wgmma_backward_masked_entry);

macro_rules! mma_backward_masked_entry {
    ($name:ident, $dtype:ident, $d:literal, $bm:literal, $bn:literal, $ds:literal, $mods:literal) => {
        #[no_mangle]
        pub unsafe extern "ptx-kernel" fn $name(p: BackwardParams) {
            dkdv_mma::<crate::element::$dtype, $d, $bm, $bn, $ds, false, true, $mods>(&p)
        }
    };
}
crate::for_each_mma_backward_masked_kernel!(mma_backward_masked_entry);

macro_rules! mma_backward_dq_masked_entry {
    ($name:ident, $dtype:ident, $d:literal, $bm:literal, $bn:literal, $mods:literal) => {
        #[no_mangle]
        pub unsafe extern "ptx-kernel" fn $name(p: BackwardParams) {
            dq_mma::<crate::element::$dtype, $d, $bm, $bn, false, true, $mods>(&p)
        }
    };
}
crate::for_each_mma_backward_dq_masked_kernel!(mma_backward_dq_masked_entry);
