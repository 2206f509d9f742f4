//! TMA descriptors (`CUtensorMap`) for the warp-specialized forward (`forward_ws` in the kernels
//! crate): the tensor memory accelerator copies boxes of a tensor into shared memory in the
//! layout its descriptor names, so the descriptor encodes what the kernel's shared-memory tiles
//! are: boxes of 64 columns (128 bytes) x `rows` rows of a `[batch, seqlen, heads, head_dim]`
//! 16-bit tensor, 128-byte swizzled (`smem_layout`'s SW128 column blocks). Encoded by the driver
//! (`cuTensorMapEncodeTiled`) on the host, copied to device memory, read by the kernel there.
//! Low-level: the forward builds its own; public for the instruction test of the copy path.
use cudarc::driver::sys::{
    cuTensorMapEncodeTiled, CUresult, CUtensorMap, CUtensorMapDataType, CUtensorMapFloatOOBfill, CUtensorMapInterleave,
    CUtensorMapL2promotion, CUtensorMapSwizzle,
};
use flashattn_kernels::config::Dtype;
use flashattn_kernels::params::Strides;

use crate::error::{Error, Result};

/// Bytes of one descriptor (the driver's `CUtensorMap`, 64-byte aligned).
pub const TENSOR_MAP_BYTES: usize = 128;

/// One 16-bit tensor `[batch, seqlen, heads, head_dim]` (strides in elements, `head_dim`
/// contiguous) as the kernel's loads see it.
#[derive(Clone, Copy, Debug)]
pub struct TiledTensor {
    pub ptr: u64,
    pub dtype: Dtype,
    pub batch: usize,
    pub seqlen: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub strides: Strides,
    /// Rows of a box (the kernel's tile height: 128 for Q, `block_n` for K and V).
    pub box_rows: usize,
}

impl TiledTensor {
    /// Byte strides of dims 1..3 (row, head, batch; dim 0 is contiguous). A dimension of extent
    /// one is never stepped, so its stride may be anything: 16 bytes then (the driver wants a
    /// non-zero multiple of 16). A zero stride elsewhere (a broadcast view) stays zero, which
    /// [`tma_compatible`] refuses.
    fn byte_strides(&self) -> [u64; 3] {
        let stride = |elements: u64, extent: usize| if extent == 1 { 16 } else { elements * 2 };
        [
            stride(self.strides.row, self.seqlen),
            stride(self.strides.head, self.heads),
            stride(self.strides.batch, self.batch),
        ]
    }
}

/// Whether the TMA can copy this tensor: its address and row / head / batch strides in bytes
/// non-zero multiples of 16 (the driver's rule; broadcast views, with a zero stride, are not
/// copyable), and dimensions it can count.
pub fn tma_compatible(t: &TiledTensor) -> bool {
    t.ptr % 16 == 0
        && t.byte_strides().iter().all(|&s| s != 0 && s % 16 == 0 && s < 1 << 40)
        && t.seqlen < 1 << 31
        && t.head_dim % 8 == 0
}

/// The descriptor of `t`: dims (innermost first) head_dim, seqlen, heads, batch; boxes of 64 x
/// `box_rows` x 1 x 1, 128-byte swizzle, out-of-range elements read as zero.
pub fn encode(t: &TiledTensor) -> Result<[u8; TENSOR_MAP_BYTES]> {
    if !tma_compatible(t) {
        return Err(Error::invalid(
            "q/k/v",
            format!("not copyable by the TMA (16-byte aligned address, non-zero 16-byte multiple strides): {t:?}"),
        ));
    }
    let data_type = match t.dtype {
        Dtype::F16 => CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
        Dtype::Bf16 => CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
    };
    let dims: [u64; 4] = [t.head_dim as u64, t.seqlen as u64, t.heads as u64, t.batch as u64];
    let strides = t.byte_strides();
    let box_dims: [u32; 4] = [64, t.box_rows as u32, 1, 1];
    let element_strides: [u32; 4] = [1; 4];
    let mut map = CUtensorMap { opaque: [0; 16] };
    // SAFETY: every pointer is to a local array of the rank the call names; the driver only
    // writes `map`. (The global address is recorded, not dereferenced.)
    let status = unsafe {
        cuTensorMapEncodeTiled(
            &mut map,
            data_type,
            4,
            t.ptr as *mut core::ffi::c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            box_dims.as_ptr(),
            element_strides.as_ptr(),
            CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
            CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
            CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
    };
    if status != CUresult::CUDA_SUCCESS {
        return Err(Error::invalid("q/k/v", format!("cuTensorMapEncodeTiled failed ({status:?}) for {t:?}")));
    }
    let mut bytes = [0u8; TENSOR_MAP_BYTES];
    for (i, w) in map.opaque.iter().enumerate() {
        bytes[8 * i..8 * i + 8].copy_from_slice(&w.to_le_bytes());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense(ptr: u64, head_dim: usize) -> TiledTensor {
        let (seqlen, heads) = (1000, 4);
        TiledTensor {
            ptr,
            dtype: Dtype::Bf16,
            batch: 2,
            seqlen,
            heads,
            head_dim,
            strides: Strides {
                batch: (seqlen * heads * head_dim) as u64,
                row: (heads * head_dim) as u64,
                head: head_dim as u64,
            },
            box_rows: 128,
        }
    }

    #[test]
    fn tma_takes_16_byte_aligned_addresses_and_strides_only() {
        assert!(tma_compatible(&dense(1 << 20, 128)));
        assert!(tma_compatible(&dense(1 << 20, 72)));
        assert!(!tma_compatible(&dense((1 << 20) + 8, 128)), "8-byte aligned base");
        let mut t = dense(1 << 20, 128);
        t.strides.row = 4 * 128 + 4; // 8-byte row stride
        assert!(!tma_compatible(&t));
        let mut t = dense(1 << 20, 128);
        t.batch = 1;
        t.strides.batch = 0; // one batch: its stride is never used
        assert!(tma_compatible(&t));
        let mut t = dense(1 << 20, 128);
        t.strides.batch = 0; // K / V broadcast over a batch of 2: not copyable by the TMA
        assert!(!tma_compatible(&t));
        let mut t = dense(1 << 20, 128);
        t.strides.head = 0; // one head broadcast over 4
        assert!(!tma_compatible(&t));
        let mut t = dense(1 << 20, 128);
        t.heads = 1;
        t.strides.head = 4; // one head: its (8-byte) stride is never used
        assert!(tma_compatible(&t));
    }
}
