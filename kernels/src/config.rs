//! Tile configurations: the one source of truth for block sizes, thread counts and shared-memory
//! bytes, read by the kernels (as const generics) and by the host (to size the launch).

/// Element types the kernels take for Q, K, V and O (accumulation is always f32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    F16,
    Bf16,
}

/// The granularity of a block mask (`MaskParams::block_mask`): one byte per `BLOCK_MASK_SIZE` query
/// rows x `BLOCK_MASK_SIZE` keys. Every block size of the masked kernels divides it, so a kernel
/// block lies in one mask block and is skipped whole.
pub const BLOCK_MASK_SIZE: usize = 128;

/// Whether the masked dK/dV builds with `mods` (the `MODS` bits: softcap / ALiBi 1, dropout 2) take
/// the block-sparse backward's key-block order (`BackwardParams::key_block_order`): only those with
/// neither, where the key block may come from memory; in the others a loaded key block (it was a
/// block index ptxas could rematerialise) made ptxas spill (40 B more in the d = 64 wgmma dropout
/// build). The host launches the order kernel for exactly these builds.
pub const fn dkdv_takes_key_block_order(mods: u32) -> bool {
    mods == 0
}

/// Shared memory the masked tensor-core kernels take beyond their tiles: one 4-byte slot per warp
/// (at most 32 warps), where each warp parks the index of the next kept block between its uses
/// (a block-mask scan is too costly to repeat and a register too scarce to hold it).
pub const MASKED_SCRATCH_BYTES: usize = 128;

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

/// The tensor-core (mma.sync m16n8k16) forward kernel of one head dim.
///
/// Each warp owns `16 * m_tiles` query rows of the `block_m`-row Q tile; K/V blocks of
/// `block_n` rows are single- or double-buffered in shared memory. Shared-memory rows are padded by 16 bytes
/// (pitch `2 * head_dim + 16`): the 8 row addresses of an `ldmatrix` then fall in 8 different
/// 16-byte bank groups, and the 16-byte `cp.async` stores of 8 consecutive lanes stay contiguous,
/// so neither conflicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmaForwardConfig {
    /// Head dim the kernel is instantiated for (a multiple of 32; real head dims are padded up).
    pub head_dim: usize,
    pub block_m: usize,
    pub block_n: usize,
    /// 16-row MMA tiles per warp.
    pub m_tiles: usize,
    /// Q fragments kept in registers for the whole kernel (else re-read from shared memory each
    /// block: fewer registers at large head dims).
    pub q_in_regs: bool,
    /// K/V shared-memory buffers: 2 (prefetch a whole block ahead) or 1 (FlashAttention-2's
    /// schedule, half the shared memory).
    pub stages: usize,
}

impl MmaForwardConfig {
    /// Largest instantiated head dim.
    pub const MAX_HEAD_DIM: usize = 256;

    pub const fn warps(self) -> usize {
        self.block_m / (16 * self.m_tiles)
    }
    pub const fn threads(self) -> usize {
        32 * self.warps()
    }
    /// Bytes between consecutive rows of a shared-memory tile (see the type's comment).
    pub const fn smem_pitch(self) -> usize {
        2 * self.head_dim + 16
    }
    /// Q tile + `stages` buffers each of K and V.
    pub const fn smem_bytes(self) -> usize {
        (self.block_m + 2 * self.stages * self.block_n) * self.smem_pitch()
    }
    /// The instantiated head dim for a real head dim (multiple of 8, at most 256).
    pub const fn padded_head_dim(head_dim: usize) -> usize {
        head_dim.div_ceil(32) * 32
    }
    pub const fn is_valid(self) -> bool {
        self.head_dim % 32 == 0
            && self.head_dim <= Self::MAX_HEAD_DIM
            && self.block_n % 16 == 0
            && (self.stages == 1 || self.stages == 2)
            && self.block_m % (16 * self.m_tiles) == 0
            && self.threads() <= 1024
            && self.smem_bytes() <= 227 * 1024
    }
}

/// The scalar (CUDA-core) backward: the reference path of the backward, deterministic (no
/// atomics). dQ: one thread per query row; dK and dV: one thread per key row, one pass each
/// (one D-float accumulator per thread keeps registers at the forward's level).
///
/// Why these numbers: a thread's own rows (Q and dO for dQ; K and V for dK/dV) sit in shared
/// memory with a stride of `head_dim + 1` words, so a warp's 32 rows fall in 32 banks; the
/// streamed tiles are read as broadcasts. 64 threads and 32-row streamed tiles, as the forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScalarBackwardConfig {
    pub head_dim: usize,
}

impl ScalarBackwardConfig {
    pub const BLOCK_M: usize = 64;
    pub const BLOCK_N: usize = 32;
    pub const THREADS: usize = Self::BLOCK_M;
    /// Warps per CTA of the preprocessing kernel (one warp per query row).
    pub const PREPROCESS_WARPS: usize = 4;
    pub const HEAD_DIMS: [usize; 3] = [32, 64, 128];

    pub const fn new(head_dim: usize) -> Self {
        Self { head_dim }
    }
    /// Two padded per-thread rows + two streamed tiles + two f32 per streamed row (lse, D) +
    /// one padded row of block coefficients per thread.
    pub const fn smem_bytes(self) -> usize {
        4 * (2 * Self::BLOCK_M * (self.head_dim + 1)
            + 2 * Self::BLOCK_N * self.head_dim
            + 2 * Self::BLOCK_N
            + Self::BLOCK_M * (Self::BLOCK_N + 1))
    }
}

const _: () = assert!(ScalarBackwardConfig::new(128).smem_bytes() <= 160 * 1024);

/// The tensor-core (mma.sync) backward, dK/dV kernel (FlashAttention-2's algorithm): one CTA per
/// block of `block_n` keys, streaming `block_m`-row blocks of Q, dO (and their LSE and D rows)
/// through double-buffered shared memory.
///
/// Warps own keys, not queries: warp `w` owns keys `16 (w % key_warps)`.. of the block, so
/// `S^T = K Q^T` and `dP^T = V dO^T` come out of the MMA with keys as rows, and their accumulator
/// registers are directly the A fragments of `dV += P^T dO` and `dK += dS^T Q` (the same register
/// reuse as P in the forward): P and dS never go through shared memory for dV and dK. Only dS is
/// stored (for `dQ = dS K`, read back transposed by `ldmatrix.trans`).
///
/// With `d_split = 2` (head dims above 128, where 16 keys x d of dK and dV would not fit in
/// registers), two warps share each 16 keys, each accumulating half of dK's and dV's columns; both
/// compute the same S and dP (redundant work, so those head dims run at about 5/7 of the speed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmaBackwardConfig {
    /// Instantiated head dim (a multiple of 32; real head dims are padded up, as in the forward).
    pub head_dim: usize,
    /// Query rows per streamed block.
    pub block_m: usize,
    /// Keys per CTA.
    pub block_n: usize,
    /// Warps sharing one 16-key slice (splitting dK/dV columns).
    pub d_split: usize,
}

impl MmaBackwardConfig {
    /// Per-row statistics and `dq_accum` are padded to this many rows (a multiple of every
    /// `block_m` in the table, checked in `is_valid`).
    pub const STAT_ROW_ALIGN: usize = 128;

    pub const fn key_warps(self) -> usize {
        self.block_n / 16
    }
    pub const fn warps(self) -> usize {
        self.key_warps() * self.d_split
    }
    pub const fn threads(self) -> usize {
        32 * self.warps()
    }
    /// Bytes between rows of the Q, K, V and dO tiles (padded by 16 bytes, as the forward).
    pub const fn smem_pitch(self) -> usize {
        2 * self.head_dim + 16
    }
    /// Bytes between rows (keys) of the dS tile: `block_m` 16-bit values + 16 bytes of padding,
    /// so both the 4-byte stores of a warp (rows g, columns 2t) and the `ldmatrix.trans` row
    /// addresses fall in distinct banks.
    pub const fn ds_pitch(self) -> usize {
        2 * self.block_m + 16
    }
    /// 16-row m-tiles of dQ per query block, and the warps sharing one of them (splitting its columns).
    pub const fn dq_m_tiles(self) -> usize {
        self.block_m / 16
    }
    pub const fn dq_col_split(self) -> usize {
        self.warps() / self.dq_m_tiles()
    }
    /// Shared-memory offsets (bytes): K, V (one block each), Q and dO (two stages each), LSE and D
    /// rows (two stages each), dS.
    pub const fn k_offset(self) -> usize {
        0
    }
    pub const fn v_offset(self) -> usize {
        self.block_n * self.smem_pitch()
    }
    pub const fn q_offset(self) -> usize {
        2 * self.block_n * self.smem_pitch()
    }
    pub const fn do_offset(self) -> usize {
        self.q_offset() + 2 * self.block_m * self.smem_pitch()
    }
    pub const fn lse_offset(self) -> usize {
        self.do_offset() + 2 * self.block_m * self.smem_pitch()
    }
    pub const fn delta_offset(self) -> usize {
        self.lse_offset() + 2 * 4 * self.block_m
    }
    pub const fn ds_offset(self) -> usize {
        self.delta_offset() + 2 * 4 * self.block_m
    }
    /// Without the dQ staging tile (what the sm_80 build uses: its dQ goes straight from
    /// registers to `red.global.add`).
    pub const fn smem_bytes(self) -> usize {
        self.dq_stage_offset()
    }
    /// The sm_90a build stages each block's f32 dQ in shared memory and adds it to `dq_accum`
    /// with the copy engine's bulk reductions (one per row), instead of 32 scattered atomics per
    /// thread: `block_m` rows of `head_dim` f32, padded by 16 bytes.
    pub const fn dq_stage_offset(self) -> usize {
        self.ds_offset() + self.block_n * self.ds_pitch()
    }
    /// Padded by 32 bytes: the 8-byte stores of a half-warp (rows g, columns 2t) then fall in 16
    /// distinct bank pairs (with 16 bytes of padding they conflicted 2.5-way on average, measured
    /// by Nsight Compute on the H100), and rows stay 16-byte aligned for the bulk reductions.
    pub const fn dq_stage_pitch(self) -> usize {
        4 * self.head_dim + 32
    }
    pub const fn smem_bytes_sm90(self) -> usize {
        self.dq_stage_offset() + self.block_m * self.dq_stage_pitch()
    }
    pub const fn is_valid(self) -> bool {
        let dt = self.head_dim / 8;
        self.head_dim % 32 == 0
            && self.head_dim <= MmaForwardConfig::MAX_HEAD_DIM
            && self.block_m % 16 == 0
            && Self::STAT_ROW_ALIGN % self.block_m == 0
            && self.block_n % 16 == 0
            && self.warps() % self.dq_m_tiles() == 0
            && self.block_m % self.warps() == 0 // rows of the dQ bulk reductions per warp
            // Each warp's dK/dV and dQ column ranges are whole pairs of n-tiles (ldmatrix x4).
            && dt % (2 * self.d_split) == 0
            && dt % (2 * self.dq_col_split()) == 0
            && self.threads() <= 1024
            && self.smem_bytes_sm90() <= 227 * 1024
    }
}

/// The Hopper forward (`wgmma`, sm_90a only): `block_m / 64` warpgroups, each owning 64 query
/// rows of the Q tile; K/V blocks of `block_n` keys double-buffered in shared memory.
///
/// Every tile (Q, and each K and V stage) is stored in the 128-byte swizzled layout of
/// `smem_layout` (column blocks of 64 elements, 1024-byte atoms), which `wgmma` reads through
/// shared-memory descriptors. The dynamic shared memory base is only guaranteed 128-byte aligned,
/// so the kernel rounds it up to 1024 and the launch asks for 1 KB more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WgmmaForwardConfig {
    /// Instantiated head dim: 64, 128 or 256 (real head dims below are zero-padded up).
    pub head_dim: usize,
    pub block_m: usize,
    pub block_n: usize,
    /// FlashAttention-3's intra-warpgroup pipelining (the softmax of block j overlaps the P V
    /// MMAs of block j - 1), or the serial schedule (MMA, wait, softmax, MMA, wait).
    pub pipelined: bool,
}

impl WgmmaForwardConfig {
    pub const HEAD_DIMS: [usize; 3] = [64, 128, 256];
    /// K/V buffers (prefetch one block ahead).
    pub const STAGES: usize = 2;
    /// Slack to round the dynamic shared memory base up to a 1024-byte swizzle atom.
    pub const ALIGN_SLACK: usize = 1024;

    pub const fn warpgroups(self) -> usize {
        self.block_m / 64
    }
    pub const fn threads(self) -> usize {
        128 * self.warpgroups()
    }
    /// Bytes of a `rows` x head_dim tile of 16-bit elements.
    pub const fn tile_bytes(self, rows: usize) -> usize {
        rows * self.head_dim * 2
    }
    /// Q tile + `STAGES` buffers each of K and V + alignment slack.
    pub const fn smem_bytes(self) -> usize {
        Self::ALIGN_SLACK + self.tile_bytes(self.block_m) + 2 * Self::STAGES * self.tile_bytes(self.block_n)
    }
    /// Whether a masked build with these tiles runs block masks: its query tile must lie inside
    /// one row of mask blocks (192-row tiles straddle two, whose kept key blocks may differ).
    pub const fn takes_block_masks(self) -> bool {
        BLOCK_MASK_SIZE % self.block_m == 0
    }
    /// The instantiated head dim of a real one (multiple of 8), if any.
    pub const fn padded_head_dim(head_dim: usize) -> Option<usize> {
        if head_dim == 0 || head_dim % 8 != 0 || head_dim > 256 {
            None
        } else if head_dim <= 64 {
            Some(64)
        } else if head_dim <= 128 {
            Some(128)
        } else {
            Some(256)
        }
    }
    /// The warp-specialized forward (`forward_ws`): a producer warpgroup issuing TMA copies and
    /// two consumer warpgroups of 64 query rows each.
    pub const WS_BLOCK_M: usize = 128;
    pub const WS_THREADS: usize = 384;
    /// Its mbarriers (Q full; K / V full and empty per stage), 8 bytes each, after the stages,
    /// then one 8-byte word of its own for the consumers' wait pins.
    pub const WS_BARRIER_BYTES: usize = (1 + 4 * Self::STAGES) * 8 + 8;
    /// Register budgets after `setmaxnreg` (FlashAttention-3's for two consumer warpgroups): the
    /// producer warpgroup gives back to 24, the consumers take 240; 128 x 24 + 256 x 240 = 64512
    /// is what 384 threads get at launch at 168 each, so `setmaxnreg.inc` finds its registers
    /// only if ptxas allocates exactly 168 (checked by `tests/ptx_resources.rs`).
    pub const WS_PRODUCER_REGISTERS: usize = 24;
    pub const WS_CONSUMER_REGISTERS: usize = 240;
    /// Shared memory of the warp-specialized forward with these tiles.
    pub const fn ws_smem_bytes(self) -> usize {
        self.smem_bytes() + Self::WS_BARRIER_BYTES
    }
    pub const fn is_valid(self) -> bool {
        (self.head_dim == 64 || self.head_dim == 128 || self.head_dim == 256)
            && (self.block_n == 64 || self.block_n == 128)
            && self.block_m % 64 == 0
            && self.warpgroups() >= 1
            && self.warpgroups() <= 3
            && self.smem_bytes() <= 227 * 1024
    }
}

/// The Hopper backward, dK/dV kernel (`wgmma`, sm_90a only): one CTA per block of `block_n`
/// keys, `block_n / 64` warpgroups each owning 64 of them; `block_m`-row blocks of Q and dO (and
/// their LSE and D rows) stream through double-buffered shared memory.
///
/// Keys are the MMA rows, as in the mma.sync kernel: `S^T = K Q^T` and `dP^T = V dO^T` are SS
/// MMAs (m64 x `block_m`), and their accumulators are directly the register A operands of
/// `dV += P^T dO` and `dK += dS^T Q` (RS MMAs, dO and Q read MN-major from the tiles they were
/// loaded into). dS^T goes to a SW128 tile, from which `dQ = dS K` reads it MN-major (both
/// operands transposed); each warpgroup computes `dq_cols()` columns of `dq_rows()` query rows.
///
/// Why these numbers: at d = 128, 64-row query blocks keep S^T and dP^T at 32 registers each
/// beside dK and dV (64 each); at d = 64, dK and dV take half as many, so 128-row blocks (64
/// each for S^T and dP^T) halve the barriers per FLOP. Either way dQ is one m64n64 tile per
/// warpgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WgmmaBackwardConfig {
    /// Instantiated head dim: 64 or 128.
    pub head_dim: usize,
    /// Query rows per streamed block.
    pub block_m: usize,
    /// Keys per CTA (64 per warpgroup).
    pub block_n: usize,
}

impl WgmmaBackwardConfig {
    pub const ALIGN_SLACK: usize = WgmmaForwardConfig::ALIGN_SLACK;
    /// Q / dO / LSE / D buffers: block i + 1 is published by the barrier of block i, loaded
    /// during block i - 1, into the stage block i - 2 used (see `backward_wgmma`).
    pub const STAGES: usize = 3;

    pub const fn warpgroups(self) -> usize {
        self.block_n / 64
    }
    pub const fn threads(self) -> usize {
        128 * self.warpgroups()
    }
    /// Query rows of a block whose dQ one warpgroup computes (one m64 tile), and its columns.
    pub const fn dq_rows(self) -> usize {
        64
    }
    pub const fn dq_cols(self) -> usize {
        self.head_dim * (self.block_m / 64) / self.warpgroups()
    }
    pub const fn tile_bytes(self, rows: usize) -> usize {
        rows * self.head_dim * 2
    }
    /// Shared-memory offsets (bytes, from the 1024-aligned base): K and V (one block each), Q and
    /// dO (`STAGES` each), dS^T, the f32 dQ staging tile, LSE and D rows (`STAGES` each).
    /// Every tile size is a multiple of 1024 bytes, so each SW128 tile stays atom-aligned.
    pub const fn k_offset(self) -> usize {
        0
    }
    pub const fn v_offset(self) -> usize {
        self.tile_bytes(self.block_n)
    }
    pub const fn q_offset(self) -> usize {
        2 * self.tile_bytes(self.block_n)
    }
    pub const fn do_offset(self) -> usize {
        self.q_offset() + Self::STAGES * self.tile_bytes(self.block_m)
    }
    pub const fn ds_offset(self) -> usize {
        self.do_offset() + Self::STAGES * self.tile_bytes(self.block_m)
    }
    pub const fn dq_stage_offset(self) -> usize {
        self.ds_offset() + 2 * self.block_n * self.block_m
    }
    /// The f32 dQ of a block, staged per warp as a 16 x 64 tile in `DQ_TILE_FLOATS` (see
    /// [`dq_tile_index`]): `block_m * head_dim` f32, unpadded.
    pub const fn lse_offset(self) -> usize {
        self.dq_stage_offset() + 4 * self.block_m * self.head_dim
    }
    pub const fn delta_offset(self) -> usize {
        self.lse_offset() + Self::STAGES * 4 * self.block_m
    }
    pub const fn smem_bytes(self) -> usize {
        Self::ALIGN_SLACK + self.delta_offset() + Self::STAGES * 4 * self.block_m
    }
    pub const fn is_valid(self) -> bool {
        (self.head_dim == 64 || self.head_dim == 128)
            && self.block_n == 128
            && (self.block_m == 64 || self.block_m == 128)
            && MmaBackwardConfig::STAT_ROW_ALIGN % self.block_m == 0
            && self.dq_cols() == 64
            && self.smem_bytes() <= 227 * 1024
    }
}

/// The wgmma backward's `dq_accum` layout: per (batch, head), rows in groups of 16, each group
/// `head_dim / 64` tiles of 16 rows x 64 columns, each tile `DQ_TILE_FLOATS` f32 in the order
/// one warp holds an m64n64 accumulator slice: element (row r, column c) of a tile at
/// [`dq_tile_index`]. A warp then stages its tile with 16-byte conflict-free shared stores and
/// adds it with one 4 KB bulk reduction (instead of 16 row-sized ones).
pub const DQ_TILE_FLOATS: usize = 16 * 64;

/// Index of element (`r`, `c`) (r < 16, c < 64) within a `dq_accum` tile: lane `4 (r % 8) + (c % 8) / 2`
/// holds it as accumulator `4 (c / 8) + 2 (r / 8) + c % 2`, stored at `4 (32 (c / 8) + lane) + ...`.
pub const fn dq_tile_index(r: usize, c: usize) -> usize {
    let lane = 4 * (r % 8) + (c % 8) / 2;
    4 * (32 * (c / 8) + lane) + 2 * (r / 8) + c % 2
}

/// Index of element (`row`, `col`) of one (batch, head)'s rows in the wgmma `dq_accum` layout.
pub const fn dq_tiled_index(row: usize, col: usize, head_dim: usize) -> usize {
    (row / 16) * 16 * head_dim + (col / 64) * DQ_TILE_FLOATS + dq_tile_index(row % 16, col % 64)
}

const _: () = {
    assert!(WgmmaBackwardConfig { head_dim: 128, block_m: 64, block_n: 128 }.is_valid());
    assert!(WgmmaBackwardConfig { head_dim: 64, block_m: 128, block_n: 128 }.is_valid());
};

/// The deterministic backward's dQ kernel: one CTA per block of `block_m` queries (16 per warp,
/// as the forward), streaming `block_n`-key blocks of K and V; `dQ = scale * sum_j dS_j K_j`
/// accumulated in registers and written once, so no atomics and bit-identical results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmaBackwardDqConfig {
    pub head_dim: usize,
    pub block_m: usize,
    pub block_n: usize,
}

impl MmaBackwardDqConfig {
    pub const fn warps(self) -> usize {
        self.block_m / 16
    }
    pub const fn threads(self) -> usize {
        32 * self.warps()
    }
    pub const fn smem_pitch(self) -> usize {
        2 * self.head_dim + 16
    }
    /// Q and dO (one block each), then K and V (two stages each).
    pub const fn smem_bytes(self) -> usize {
        (2 * self.block_m + 4 * self.block_n) * self.smem_pitch()
    }
    pub const fn is_valid(self) -> bool {
        self.head_dim % 32 == 0
            && self.head_dim <= MmaForwardConfig::MAX_HEAD_DIM
            && self.block_m % 16 == 0
            && MmaBackwardConfig::STAT_ROW_ALIGN % self.block_m == 0
            && self.block_n % 16 == 0
            && self.smem_bytes() <= 227 * 1024
    }
}

/// Threads per CTA of the dQ conversion (`dq = scale * dq_accum`).
pub const DQ_CONVERT_THREADS: usize = 128;

/// Threads of the dQ conversion per (batch, head) for `seqlen_q` rows: row-major `dq_accum`, one
/// per 8 columns of a row; tiled (`dq_tiled_index`), one per 8 columns of the row pair `r, r + 8`
/// of a 16-row group, whose 16 values are 64 contiguous bytes there (`head_dim` threads a group).
pub const fn dq_convert_threads(seqlen_q: usize, head_dim: usize, tiled: bool) -> usize {
    if tiled {
        seqlen_q.div_ceil(16) * head_dim
    } else {
        seqlen_q * head_dim / 8
    }
}

const _: () = {
    // The largest tiles of the table fit the 227 KB an sm_90 CTA may opt into.
    assert!(WgmmaForwardConfig { head_dim: 128, block_m: 128, block_n: 128, pipelined: true }.is_valid());
    assert!(WgmmaForwardConfig { head_dim: 128, block_m: 192, block_n: 128, pipelined: true }.is_valid());
    assert!(WgmmaForwardConfig { head_dim: 256, block_m: 128, block_n: 64, pipelined: true }.is_valid());
    assert!(!WgmmaForwardConfig { head_dim: 256, block_m: 128, block_n: 128, pipelined: true }.is_valid());
};

/// The row kernels of the standard-attention baseline (`standard_softmax.rs`): one warp per row
/// of the `N x N` matrix, `WARPS` rows per CTA; no shared memory.
pub struct StandardConfig;

impl StandardConfig {
    pub const WARPS: usize = 4;
    pub const THREADS: usize = 32 * Self::WARPS;
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    /// The wgmma `dq_accum` tile layout is a bijection of a 16 x 64 tile onto its 1024 floats,
    /// and the tiles of a row group follow each other.
    #[test]
    fn dq_tile_layout_is_a_bijection() {
        let mut seen = [false; DQ_TILE_FLOATS];
        for r in 0..16 {
            for c in 0..64 {
                let i = dq_tile_index(r, c);
                assert!(i < DQ_TILE_FLOATS && !seen[i], "({r}, {c}) -> {i}");
                seen[i] = true;
            }
        }
        // Lane 5 (g = 1, t = 1) holds accumulators 4 j + 2 half + e: row 1 + 8 half, column 8 j + 2 + e.
        assert_eq!(dq_tile_index(1, 2), 4 * 5);
        assert_eq!(dq_tile_index(9, 19), 4 * (32 * 2 + 5) + 3);
        assert_eq!(dq_tiled_index(17, 70, 128), 16 * 128 + DQ_TILE_FLOATS + dq_tile_index(1, 6));
    }
}
