//! The 16-bit input types as the kernels see them: pairs packed in a `u32` (the NVPTX `asm!`
//! register classes have no f16x2), converted to f32 for arithmetic and back once at the store.
use crate::arch::sm80::{cvt_f32_f16, cvt_rn_bf16x2_f32, cvt_rn_f16x2_f32, mma_m16n8k16_bf16, mma_m16n8k16_f16};

pub trait Element {
    /// Unpack two elements (low half first) to f32.
    fn unpack2(bits: u32) -> (f32, f32);
    /// Pack two f32 (low, high) with round-to-nearest-even.
    fn pack2(lo: f32, hi: f32) -> u32;
    /// The tensor-core MMA of this type: `c += a b` (m16n8k16, f32 accumulators).
    unsafe fn mma(c: &mut [f32; 4], a: [u32; 4], b: [u32; 2]);
}

pub struct F16;
pub struct Bf16;

impl Element for F16 {
    #[inline(always)]
    fn unpack2(bits: u32) -> (f32, f32) {
        (cvt_f32_f16(bits as u16), cvt_f32_f16((bits >> 16) as u16))
    }
    #[inline(always)]
    fn pack2(lo: f32, hi: f32) -> u32 {
        cvt_rn_f16x2_f32(hi, lo)
    }
    #[inline(always)]
    unsafe fn mma(c: &mut [f32; 4], a: [u32; 4], b: [u32; 2]) {
        mma_m16n8k16_f16(c, a, b)
    }
}

impl Element for Bf16 {
    /// bf16 is the top half of an f32: widening is a shift, exact.
    #[inline(always)]
    fn unpack2(bits: u32) -> (f32, f32) {
        (f32::from_bits(bits << 16), f32::from_bits(bits & 0xffff_0000))
    }
    #[inline(always)]
    fn pack2(lo: f32, hi: f32) -> u32 {
        cvt_rn_bf16x2_f32(hi, lo)
    }
    #[inline(always)]
    unsafe fn mma(c: &mut [f32; 4], a: [u32; 4], b: [u32; 2]) {
        mma_m16n8k16_bf16(c, a, b)
    }
}

/// The warpgroup MMAs of a type (sm_90a only), with the operand majors the attention kernels
/// use: `S = Q K^T` with both operands K-major from shared memory, and `O += P V` with P from
/// registers and V MN-major (stored `[key][dim]`, read with the transpose flag).
#[cfg(flashattn_sm90a)]
pub trait WgmmaElement: Element {
    /// m64n64k16, A and B K-major from shared memory.
    unsafe fn wgmma_ss_n64(d: &mut [f32; 32], desc_a: u64, desc_b: u64, scale_d: u32);
    /// m64n128k16, A and B K-major from shared memory.
    unsafe fn wgmma_ss_n128(d: &mut [f32; 64], desc_a: u64, desc_b: u64, scale_d: u32);
    /// m64n64k16, A from registers, B MN-major from shared memory.
    unsafe fn wgmma_rs_n64_mn(d: &mut [f32; 32], a: [u32; 4], desc_b: u64, scale_d: u32);
    /// m64n128k16, A from registers, B MN-major from shared memory.
    unsafe fn wgmma_rs_n128_mn(d: &mut [f32; 64], a: [u32; 4], desc_b: u64, scale_d: u32);
    /// m64n64k16, A and B MN-major from shared memory (`dQ = dS K` from the dS^T and K tiles).
    unsafe fn wgmma_ss_n64_mn(d: &mut [f32; 32], desc_a: u64, desc_b: u64, scale_d: u32);
}

#[cfg(flashattn_sm90a)]
mod wgmma_impls {
    use super::{Bf16, WgmmaElement, F16};
    use crate::arch::sm90::*;

    /// Transpose flags of `wgmma`: 0 = K-major, 1 = MN-major.
    const K_MAJOR: u32 = 0;
    const MN_MAJOR: u32 = 1;

    macro_rules! impl_wgmma_element {
        ($t:ty, $ss64:ident, $ss128:ident, $rs64:ident, $rs128:ident) => {
            impl WgmmaElement for $t {
                #[inline(always)]
                unsafe fn wgmma_ss_n64(d: &mut [f32; 32], desc_a: u64, desc_b: u64, scale_d: u32) {
                    $ss64::<K_MAJOR, K_MAJOR>(d, desc_a, desc_b, scale_d)
                }
                #[inline(always)]
                unsafe fn wgmma_ss_n128(d: &mut [f32; 64], desc_a: u64, desc_b: u64, scale_d: u32) {
                    $ss128::<K_MAJOR, K_MAJOR>(d, desc_a, desc_b, scale_d)
                }
                #[inline(always)]
                unsafe fn wgmma_rs_n64_mn(d: &mut [f32; 32], a: [u32; 4], desc_b: u64, scale_d: u32) {
                    $rs64::<MN_MAJOR>(d, a, desc_b, scale_d)
                }
                #[inline(always)]
                unsafe fn wgmma_rs_n128_mn(d: &mut [f32; 64], a: [u32; 4], desc_b: u64, scale_d: u32) {
                    $rs128::<MN_MAJOR>(d, a, desc_b, scale_d)
                }
                #[inline(always)]
                unsafe fn wgmma_ss_n64_mn(d: &mut [f32; 32], desc_a: u64, desc_b: u64, scale_d: u32) {
                    $ss64::<MN_MAJOR, MN_MAJOR>(d, desc_a, desc_b, scale_d)
                }
            }
        };
    }
    impl_wgmma_element!(
        Bf16,
        wgmma_m64n64k16_ss_bf16,
        wgmma_m64n128k16_ss_bf16,
        wgmma_m64n64k16_rs_bf16,
        wgmma_m64n128k16_rs_bf16
    );
    impl_wgmma_element!(
        F16,
        wgmma_m64n64k16_ss_f16,
        wgmma_m64n128k16_ss_f16,
        wgmma_m64n64k16_rs_f16,
        wgmma_m64n128k16_rs_f16
    );
}
