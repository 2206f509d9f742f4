//! Tile configurations: the one source of truth for block sizes, thread counts and shared-memory
//! bytes, read by the kernels (as const generics) and by the host (to size the launch).

/// Element types the kernels take for Q, K, V and O (accumulation is always f32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    F16,
    Bf16,
}

impl Dtype {
    pub const fn name(self) -> &'static str {
        match self {
            Dtype::F16 => "f16",
            Dtype::Bf16 => "bf16",
        }
    }
}

/// The scalar (CUDA-core FMA) forward kernel: one thread owns one query row.
///
/// Why these numbers: 64 threads (2 warps) and 64 query rows per CTA keep enough CTAs in flight at
/// small batch sizes; K/V blocks of 32 rows are converted to f32 once in shared memory so every
/// thread reads them as broadcasts (no bank conflicts). The per-thread Q row sits in shared memory
/// with a stride of `head_dim + 1` words, so the 32 rows a warp reads at once fall in 32
/// different banks; the scores of a block go to shared memory with the same padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScalarForwardConfig {
    pub head_dim: usize,
}

impl ScalarForwardConfig {
    pub const BLOCK_M: usize = 64;
    pub const BLOCK_N: usize = 32;
    pub const THREADS: usize = Self::BLOCK_M;
    /// Head dims the scalar kernel is instantiated for.
    pub const HEAD_DIMS: [usize; 3] = [32, 64, 128];

    pub const fn new(head_dim: usize) -> Self {
        Self { head_dim }
    }
    /// f32 words of the Q tile (row stride `head_dim + 1`, see above).
    pub const fn q_smem_words(self) -> usize {
        Self::BLOCK_M * (self.head_dim + 1)
    }
    /// f32 words of one K or V tile (read as broadcasts, so unpadded).
    pub const fn kv_smem_words(self) -> usize {
        Self::BLOCK_N * self.head_dim
    }
    /// f32 words of the per-thread score rows (row stride `BLOCK_N + 1`).
    pub const fn s_smem_words(self) -> usize {
        Self::BLOCK_M * (Self::BLOCK_N + 1)
    }
    /// Dynamic shared memory of one CTA. 74,240 bytes at d = 128: above the 48 KB default, so the
    /// host raises the function's limit (sm_80 allows 163 KB, sm_90 227 KB).
    pub const fn smem_bytes(self) -> usize {
        4 * (self.q_smem_words() + 2 * self.kv_smem_words() + self.s_smem_words())
    }
}

const _: () = {
    assert!(ScalarForwardConfig::THREADS % 32 == 0);
    assert!(ScalarForwardConfig::new(128).smem_bytes() <= 160 * 1024);
};
