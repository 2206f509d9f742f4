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
