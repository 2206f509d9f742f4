//! CPU reference implementation of attention (forward and backward) in `f64`.
//!
//! This module is the oracle every GPU test is checked against, so it favours
//! clarity and numerical robustness over speed, while staying `O(N^2 d)` per
//! head with contiguous inner loops so that shapes up to roughly
//! `batch 2, heads 4, seqlen 1025, head_dim 128` run in well under a second
//! per pass in release mode.
//!
//! # Layouts (FlashAttention's)
//!
//! * `q`, `o`, `dq`, `d_o`: `[batch, seqlen_q, heads, head_dim]`, row-major.
//! * `k`, `v`, `dk`, `dv`: `[batch, seqlen_k, heads_kv, head_dim]`.
//! * `lse`: `[batch, heads, seqlen_q]`.
//! * dropout keep-mask: `[batch, heads, seqlen_q, seqlen_k]` (`true` = kept).
//!
//! `heads` must be a multiple of `heads_kv` (GQA / MQA): query head `h` reads
//! K/V head `h / (heads / heads_kv)`. For GQA the gradients `dk`, `dv` are the
//! sums over all query heads sharing a K/V head.
//!
//! # Semantics
//!
//! Each score goes through these steps, in this order (as in FlashAttention):
//!
//! 1. `x_ij = softmax_scale * q_i . k_j`;
//! 2. softcap (when `softcap > 0`): `x_ij = softcap * tanh(x_ij / softcap)`;
//! 3. ALiBi (when slopes are given): `s_ij = x_ij - slope * |i + off - j|`;
//! 4. masking (causal, sliding window, block mask, see [`is_allowed`]):
//!    masked entries are excluded from the softmax entirely (not merely set to
//!    a large negative number);
//! 5. softmax over the allowed keys, `lse_i = ln(sum_j exp(s_ij))` (natural
//!    log, of the scores after softcap and ALiBi, before dropout);
//! 6. dropout (when given) multiplies the probabilities by `keep / (1 - p)`;
//!    with `p >= 1` everything is treated as dropped (factor 0) rather than
//!    producing `inf * 0 = NaN`;
//! 7. `o_i = sum_j P_ij v_j`.
//!
//! `off = seqlen_k - seqlen_q` aligns the causal diagonal, the window and the
//! ALiBi distance to the bottom-right corner (FlashAttention >= 2.1): with
//! causal masking, query row `i` may attend key `j` iff `j <= i + off`.
//!
//! **Fully masked rows.** A row without any allowed key (causal with
//! `seqlen_q > seqlen_k`, a window that misses every key, a zero block of the
//! block mask) outputs `o = 0` and `lse = -infinity`, and contributes zero to
//! every gradient (its `dq` row is zero). This matches FlashAttention's
//! kernels.
//!
//! ALiBi biases are constants (no gradient); the softcap's `tanh` is
//! differentiated through (`d s / d x = 1 - tanh^2`).
//!
//! Inputs are not validated (that is the caller's job); slice lengths are only
//! checked with `debug_assert!`. Valid inputs never panic, including
//! degenerate sizes such as `seqlen_q = 1` or `seqlen_k = 1`.
//!
//! # Rounded baselines
//!
//! [`forward_rounded`] and [`backward_rounded`] perform "the same math done
//! naively in the input precision", which is the baseline of FlashAttention's
//! test rule (`|gpu - ref| <= k * |naive_lowp - ref|`). Dot products and sums
//! are accumulated in `f64` (i.e. at least as accurately as an `f32`
//! accumulator) and every intermediate *matrix* (S, P, dP, dS, outputs) is
//! rounded with the caller-supplied rounding function, e.g.
//! [`round_to_bf16`] or [`round_to_f16`]. S is rounded once, as it enters the
//! softmax (after scale, softcap and ALiBi).

// ---------------------------------------------------------------------------
// Shape and options
// ---------------------------------------------------------------------------

use std::ops::Range;

pub use crate::shape::Shape;

impl Shape {
    /// Offset of row `(b, i, h)` in a `[batch, seqlen_q, heads, head_dim]` tensor.
    fn q_offset(&self, b: usize, i: usize, h: usize) -> usize {
        ((b * self.seqlen_q + i) * self.heads + h) * self.head_dim
    }

    /// Offset of row `(b, j = 0, kvh)` in a `[batch, seqlen_k, heads_kv, head_dim]` tensor.
    fn kv_base(&self, b: usize, kvh: usize) -> usize {
        (b * self.seqlen_k * self.heads_kv + kvh) * self.head_dim
    }

    /// Distance between consecutive key rows of one K/V head.
    fn kv_stride(&self) -> usize {
        self.heads_kv * self.head_dim
    }

    /// Index of `(b, h, i)` in the `[batch, heads, seqlen_q]` lse tensor.
    fn lse_index(&self, b: usize, h: usize, i: usize) -> usize {
        (b * self.heads + h) * self.seqlen_q + i
    }

    /// Offset of the mask row `(b, h, i, 0..seqlen_k)`.
    fn mask_row_offset(&self, b: usize, h: usize, i: usize) -> usize {
        self.lse_index(b, h, i) * self.seqlen_k
    }
}

/// Options of the reference computation. Build them from [`RefOptions::new`]
/// (everything off) with struct update syntax, e.g.
/// `RefOptions { causal: true, softcap: 30.0, ..RefOptions::new(head_dim) }`.
#[derive(Clone, Copy, Debug)]
pub struct RefOptions<'a> {
    /// Causal masking, bottom-right aligned: row `i` attends keys `j <= i + seqlen_k - seqlen_q`.
    pub causal: bool,
    pub softmax_scale: f64,
    /// Optional explicit dropout keep-mask [batch, heads, seqlen_q, seqlen_k] (true = kept) and drop probability p;
    /// kept probabilities are scaled by 1/(1-p) (applied after softmax, before P·V). LSE is of the undropped softmax.
    pub dropout: Option<(&'a [bool], f64)>,
    /// Sliding window, left part (FlashAttention's `window_size[0]`): row `i` attends keys
    /// `j >= i + seqlen_k - seqlen_q - left`. `None` = unbounded.
    pub window_left: Option<usize>,
    /// Sliding window, right part (FlashAttention's `window_size[1]`): row `i` attends keys
    /// `j <= i + seqlen_k - seqlen_q + right`. `None` = unbounded; `Some(0)` is causal masking.
    pub window_right: Option<usize>,
    /// Score soft-capping `s = softcap * tanh(s / softcap)` applied to the scaled score; `0.0` = off.
    pub softcap: f64,
    /// ALiBi slopes, one per query head (`heads` values, shared by every batch) or
    /// `[batch, heads]` row-major (`batch * heads` values). Adds `-slope * |i + seqlen_k - seqlen_q - j|`
    /// to the score after the softcap.
    pub alibi_slopes: Option<&'a [f64]>,
    /// Block-sparse mask; see [`RefBlockMask`].
    pub block_mask: Option<RefBlockMask<'a>>,
}

impl RefOptions<'_> {
    /// Non-causal, `softmax_scale = 1/sqrt(head_dim)`, no dropout, no window,
    /// no softcap, no ALiBi, no block mask.
    pub fn new(head_dim: usize) -> Self {
        RefOptions {
            causal: false,
            softmax_scale: 1.0 / (head_dim as f64).sqrt(),
            dropout: None,
            window_left: None,
            window_right: None,
            softcap: 0.0,
            alibi_slopes: None,
            block_mask: None,
        }
    }
}

/// A block-sparse attention mask: one flag per (`block` x `block`) tile of the
/// score matrix, layout `[heads, ceil(seqlen_q / block), ceil(seqlen_k / block)]`
/// row-major. Score `(h, i, j)` is allowed only if the flag of its tile is nonzero.
/// The last block row/column may be partial. The mask is the same for every batch.
#[derive(Clone, Copy, Debug)]
pub struct RefBlockMask<'a> {
    pub data: &'a [u8],
    /// 1 (one mask shared by all query heads) or `shape.heads` (one per query head).
    pub heads: usize,
    /// Tile size in both dimensions (e.g. 128); must be nonzero.
    pub block: usize,
}

impl RefBlockMask<'_> {
    /// Number of block rows `ceil(seqlen_q / block)` of a shape.
    pub fn block_rows(&self, shape: &Shape) -> usize {
        shape.seqlen_q.div_ceil(self.block)
    }

    /// Number of block columns `ceil(seqlen_k / block)` of a shape.
    pub fn block_cols(&self, shape: &Shape) -> usize {
        shape.seqlen_k.div_ceil(self.block)
    }

    /// Length `data` must have for a shape.
    pub fn required_len(&self, shape: &Shape) -> usize {
        self.heads * self.block_rows(shape) * self.block_cols(shape)
    }

    /// Whether the tile holding score `(h, i, j)` is enabled.
    pub fn allows(&self, shape: &Shape, h: usize, i: usize, j: usize) -> bool {
        self.block_row(shape, h, i).allows(j)
    }
}

impl<'a> RefBlockMask<'a> {
    /// The flags of the block row holding query row `i` of head `h`.
    fn block_row(&self, shape: &Shape, h: usize, i: usize) -> BlockRow<'a> {
        let head = if self.heads == 1 { 0 } else { h };
        let cols = self.block_cols(shape);
        let start = (head * self.block_rows(shape) + i / self.block) * cols;
        let data: &'a [u8] = self.data;
        BlockRow { flags: &data[start..start + cols], block: self.block }
    }
}

/// One block row of a [`RefBlockMask`]: a flag per block column.
#[derive(Clone, Copy)]
struct BlockRow<'a> {
    flags: &'a [u8],
    block: usize,
}

impl BlockRow<'_> {
    fn allows(&self, j: usize) -> bool {
        self.flags[j / self.block] != 0
    }
}

/// Output of [`forward`]: `o` is `[batch, seqlen_q, heads, head_dim]`,
/// `lse` is `[batch, heads, seqlen_q]`.
#[derive(Clone, Debug)]
pub struct RefForward {
    pub o: Vec<f64>,
    pub lse: Vec<f64>,
}

/// Output of [`backward`]: `dq` has q's layout, `dk`/`dv` have k's layout.
#[derive(Clone, Debug)]
pub struct RefGradients {
    pub dq: Vec<f64>,
    pub dk: Vec<f64>,
    pub dv: Vec<f64>,
}

// ---------------------------------------------------------------------------
// Masking
// ---------------------------------------------------------------------------

/// Whether query row `i` of query head `h` may attend key `j` (the same for every batch).
///
/// With `off = seqlen_k - seqlen_q` (bottom-right alignment; `i64` because it
/// is negative when `seqlen_q > seqlen_k`), the key is allowed iff all of
/// * causal: `j <= i + off`,
/// * window left: `j >= i + off - left`,
/// * window right: `j <= i + off + right`,
/// * block mask: the tile of `(h, i, j)` is enabled,
///
/// hold for the options that are set.
pub fn is_allowed(shape: &Shape, opts: &RefOptions, h: usize, i: usize, j: usize) -> bool {
    let diag = diagonal(shape, i);
    let key = j as i64;
    (!opts.causal || key <= diag)
        && opts.window_left.is_none_or(|left| key >= diag.saturating_sub(signed(left)))
        && opts.window_right.is_none_or(|right| key <= diag.saturating_add(signed(right)))
        && opts.block_mask.is_none_or(|mask| mask.allows(shape, h, i, j))
}

/// `x` as `i64`, saturating (window sizes may be given as "huge" instead of `None`).
fn signed(x: usize) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

/// The key on the (bottom-right aligned) diagonal of query row `i`: `i + seqlen_k - seqlen_q`.
fn diagonal(shape: &Shape, i: usize) -> i64 {
    i as i64 + shape.seqlen_k as i64 - shape.seqlen_q as i64
}

/// The keys row `i` may attend under the causal and window rules: always a
/// contiguous range (possibly empty). The block mask is applied on top of it.
/// Consistent with [`is_allowed`].
fn key_range(shape: &Shape, opts: &RefOptions, i: usize) -> Range<usize> {
    let diag = diagonal(shape, i);
    let n = shape.seqlen_k as i64;
    let first = opts.window_left.map_or(0, |left| diag.saturating_sub(signed(left)));
    let mut last = n - 1;
    if opts.causal {
        last = last.min(diag);
    }
    if let Some(right) = opts.window_right {
        last = last.min(diag.saturating_add(signed(right)));
    }
    let start = first.clamp(0, n) as usize;
    let end = (last + 1).clamp(0, n) as usize;
    start..end.max(start)
}

// ---------------------------------------------------------------------------
// Rounding formats
// ---------------------------------------------------------------------------

/// A binary floating-point format with an implicit leading bit, IEEE-style
/// subnormals and overflow to infinity.
#[derive(Clone, Copy, Debug)]
struct FloatFormat {
    /// Significand precision including the implicit bit (bf16: 8, f16: 11).
    precision: i32,
    /// Exponent of the smallest normal number (bf16: -126, f16: -14).
    min_exp: i32,
    /// Exponent of the largest finite number (bf16: 127, f16: 15).
    max_exp: i32,
}

const BF16: FloatFormat = FloatFormat { precision: 8, min_exp: -126, max_exp: 127 };
const F16: FloatFormat = FloatFormat { precision: 11, min_exp: -14, max_exp: 15 };

/// Exact `2^e` for `e` in the normal f64 exponent range.
fn pow2(e: i32) -> f64 {
    debug_assert!((-1022..=1023).contains(&e));
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// Exponent `e` with `2^e <= |x| < 2^(e+1)` for finite nonzero normal `x`;
/// f64 subnormals report -1023, which is below every format we round to, so
/// they correctly flush to (signed) zero.
fn binary_exponent(x: f64) -> i32 {
    let biased = ((x.to_bits() >> 52) & 0x7ff) as i32;
    if biased == 0 {
        -1023
    } else {
        biased - 1023
    }
}

/// Rounds `x` to the nearest value of `fmt`, ties to even, directly from f64
/// (no intermediate f32, which would double-round). NaN and infinities pass
/// through, zero keeps its sign, overflow gives a signed infinity.
fn round_to_format(x: f64, fmt: FloatFormat) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    // The spacing of representable values around x ("quantum"): below the
    // normal range it stays fixed at the subnormal spacing.
    let exp = binary_exponent(x).max(fmt.min_exp);
    let quantum = pow2(exp - (fmt.precision - 1));
    // Both the division and the multiplication are by a power of two and the
    // integer part has at most `precision + 1` bits, so they are exact; the only
    // rounding is `round_ties_even`, which is exactly IEEE round-to-nearest-even.
    let rounded = (x / quantum).round_ties_even() * quantum;
    if rounded.abs() >= pow2(fmt.max_exp + 1) {
        f64::INFINITY.copysign(x)
    } else {
        rounded
    }
}

/// Rounds to the nearest bfloat16 value (8-bit significand, f32's exponent
/// range, subnormals supported), round-to-nearest-even, returned as f64.
pub fn round_to_bf16(x: f64) -> f64 {
    round_to_format(x, BF16)
}

/// Rounds to the nearest IEEE binary16 value (11-bit significand, max 65504,
/// subnormals down to 2^-24), round-to-nearest-even, returned as f64.
/// Values of magnitude >= 65520 become infinity, as in IEEE.
pub fn round_to_f16(x: f64) -> f64 {
    round_to_format(x, F16)
}

// ---------------------------------------------------------------------------
// Error metrics
// ---------------------------------------------------------------------------

/// Maximum of `|a_i - b_i|`.
///
/// Returns `f64::INFINITY` if either slice contains a NaN (a NaN must never
/// pass a tolerance check) or if the lengths differ. Equal infinities (e.g.
/// `-inf` lse of fully masked rows on both sides) count as a difference of 0;
/// an infinity against anything else counts as infinity.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    let mut max = 0.0f64;
    for (&x, &y) in a.iter().zip(b) {
        if x.is_nan() || y.is_nan() {
            return f64::INFINITY;
        }
        // `x == y` first so that equal infinities do not become `inf - inf = NaN`.
        if x != y {
            max = max.max((x - y).abs());
        }
    }
    max
}

// ---------------------------------------------------------------------------
// Small numeric kernels
// ---------------------------------------------------------------------------

/// Dot product with 8 independent partial sums: breaks the add latency chain
/// (and lets the compiler vectorise) while staying fully deterministic.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    const LANES: usize = 8;
    let mut acc = [0.0f64; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let pairs = [acc[0] + acc[4], acc[1] + acc[5], acc[2] + acc[6], acc[3] + acc[7]];
    ((pairs[0] + pairs[2]) + (pairs[1] + pairs[3])) + tail
}

/// `y += alpha * x`.
fn axpy(y: &mut [f64], alpha: f64, x: &[f64]) {
    debug_assert_eq!(y.len(), x.len());
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// How intermediate matrices are rounded. A trait (rather than always calling
/// a `dyn Fn`) so the exact path compiles to no-ops and the exact and rounded
/// computations share one implementation.
trait Rounding {
    fn apply(&self, x: f64) -> f64;
}

/// No rounding: the exact f64 reference.
struct Exact;

impl Rounding for Exact {
    #[inline(always)]
    fn apply(&self, x: f64) -> f64 {
        x
    }
}

/// Rounding through a caller-supplied function (e.g. [`round_to_bf16`]).
struct RoundWith<'r>(&'r dyn Fn(f64) -> f64);

impl Rounding for RoundWith<'_> {
    #[inline]
    fn apply(&self, x: f64) -> f64 {
        (self.0)(x)
    }
}

fn round_all<R: Rounding>(values: &mut [f64], round: &R) {
    for x in values {
        *x = round.apply(*x);
    }
}

// ---------------------------------------------------------------------------
// Row views and per-head buffers
// ---------------------------------------------------------------------------

/// A set of equally long rows inside a flat slice: row `j` starts at
/// `base + j * stride` and is `width` long. Used both directly on a K/V-layout
/// tensor (strided, for single-row spot checks) and on per-head contiguous
/// copies (for the whole-tensor passes).
#[derive(Clone, Copy)]
struct Rows<'a> {
    data: &'a [f64],
    base: usize,
    stride: usize,
    width: usize,
}

impl<'a> Rows<'a> {
    /// Rows stored back to back, `width` each.
    fn contiguous(data: &'a [f64], width: usize) -> Self {
        Rows { data, base: 0, stride: width, width }
    }

    /// The key rows of K/V head `kvh` of batch `b`, in place.
    fn kv_head(data: &'a [f64], shape: &Shape, b: usize, kvh: usize) -> Self {
        Rows { data, base: shape.kv_base(b, kvh), stride: shape.kv_stride(), width: shape.head_dim }
    }

    fn row(&self, j: usize) -> &'a [f64] {
        let start = self.base + j * self.stride;
        &self.data[start..start + self.width]
    }
}

/// Contiguous `[seqlen_k, head_dim]` copies of one (batch, K/V head): strided
/// rows of a K/V-layout tensor would be re-read from far-apart memory for every
/// query row, so each head is gathered once and reused by all its query heads.
#[derive(Default)]
struct KvHeadBuffers {
    k: Vec<f64>,
    v: Vec<f64>,
}

impl KvHeadBuffers {
    fn load(&mut self, k: &[f64], v: &[f64], shape: &Shape, b: usize, kvh: usize) {
        gather_kv_head(k, shape, b, kvh, &mut self.k);
        gather_kv_head(v, shape, b, kvh, &mut self.v);
    }

    fn k_rows(&self, width: usize) -> Rows<'_> {
        Rows::contiguous(&self.k, width)
    }

    fn v_rows(&self, width: usize) -> Rows<'_> {
        Rows::contiguous(&self.v, width)
    }
}

/// Copies the rows of (batch `b`, K/V head `kvh`) into `dst`, back to back.
fn gather_kv_head(src: &[f64], shape: &Shape, b: usize, kvh: usize, dst: &mut Vec<f64>) {
    let rows = Rows::kv_head(src, shape, b, kvh);
    dst.clear();
    for j in 0..shape.seqlen_k {
        dst.extend_from_slice(rows.row(j));
    }
}

/// Inverse of [`gather_kv_head`]: writes contiguous rows back into the K/V layout.
fn scatter_kv_head(src: &[f64], shape: &Shape, b: usize, kvh: usize, dst: &mut [f64]) {
    let d = shape.head_dim;
    for j in 0..shape.seqlen_k {
        let start = shape.kv_base(b, kvh) + j * shape.kv_stride();
        dst[start..start + d].copy_from_slice(&src[j * d..(j + 1) * d]);
    }
}

/// Mutable contiguous rows, used to accumulate one head's `dk` / `dv`.
struct RowsMut<'a> {
    data: &'a mut [f64],
    width: usize,
}

impl RowsMut<'_> {
    fn row_mut(&mut self, j: usize) -> &mut [f64] {
        let start = j * self.width;
        &mut self.data[start..start + self.width]
    }
}

/// Dropout of one query row: the keep flags of that row and the factor
/// applied to kept entries.
#[derive(Clone, Copy)]
struct RowDropout<'a> {
    keep: &'a [bool],
    scale: f64,
}

impl RowDropout<'_> {
    /// Multiplier of probability `j`: `1/(1-p)` if kept, else 0.
    fn factor(&self, j: usize) -> f64 {
        if self.keep[j] {
            self.scale
        } else {
            0.0
        }
    }
}

/// Dropout factor of entry `j` (1 without dropout).
fn dropout_factor(dropout: Option<RowDropout>, j: usize) -> f64 {
    dropout.map_or(1.0, |d| d.factor(j))
}

/// The dropout view of row `(b, h, i)`, if dropout is enabled.
fn row_dropout<'a>(opts: &RefOptions<'a>, shape: &Shape, b: usize, h: usize, i: usize) -> Option<RowDropout<'a>> {
    let (mask, p) = opts.dropout?;
    let start = shape.mask_row_offset(b, h, i);
    // p >= 1 drops everything; avoid 1/(1-p) = inf turning into NaN.
    let scale = if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 };
    Some(RowDropout { keep: &mask[start..start + shape.seqlen_k], scale })
}

// ---------------------------------------------------------------------------
// Score modifications and masks of one row
// ---------------------------------------------------------------------------

/// The keys one query row may attend: the causal/window range, thinned out
/// by the row's block-mask flags. Matches [`is_allowed`].
struct RowKeys<'a> {
    range: Range<usize>,
    blocks: Option<BlockRow<'a>>,
}

impl RowKeys<'_> {
    /// Replaces the contents of `keys` with the allowed keys, in increasing order.
    fn collect_into(&self, keys: &mut Vec<usize>) {
        keys.clear();
        keys.extend(self.range.clone().filter(|&j| self.blocks.is_none_or(|row| row.allows(j))));
    }
}

/// The allowed keys of row `(h, i)` (the same for every batch).
fn row_keys<'a>(opts: &RefOptions<'a>, shape: &Shape, h: usize, i: usize) -> RowKeys<'a> {
    RowKeys { range: key_range(shape, opts, i), blocks: opts.block_mask.map(|mask| mask.block_row(shape, h, i)) }
}

/// Turns the dot products `q_i . k_j` of one query row into the scores that
/// enter the softmax (steps 1-3 of the module docs: scale, softcap, ALiBi).
#[derive(Clone, Copy)]
struct RowScores {
    scale: f64,
    /// Off when `<= 0`.
    softcap: f64,
    /// 0 without ALiBi: the bias is then `-0.0`, which leaves every score bit-identical.
    alibi_slope: f64,
    /// The row's diagonal key `i + seqlen_k - seqlen_q`, from which ALiBi distances are measured.
    diag: i64,
}

impl RowScores {
    /// The score of key `j` from `qk = q_i . k_j`, and its derivative `d score / d qk`
    /// (the scale times the softcap's `1 - tanh^2`; the ALiBi bias is a constant).
    fn score(&self, qk: f64, j: usize) -> (f64, f64) {
        let x = self.scale * qk;
        let (capped, dcap) = if self.softcap > 0.0 {
            let t = (x / self.softcap).tanh();
            (self.softcap * t, 1.0 - t * t)
        } else {
            (x, 1.0)
        };
        let distance = (self.diag - j as i64).abs() as f64;
        (capped - self.alibi_slope * distance, self.scale * dcap)
    }
}

/// ALiBi slope of (batch `b`, query head `h`): `slopes[h]` for per-head slopes,
/// `slopes[b * heads + h]` for `[batch, heads]` slopes; 0 without ALiBi.
fn alibi_slope(opts: &RefOptions, shape: &Shape, b: usize, h: usize) -> f64 {
    opts.alibi_slopes
        .map_or(0.0, |slopes| if slopes.len() == shape.heads { slopes[h] } else { slopes[b * shape.heads + h] })
}

/// The score modifications of row `(b, h, i)`.
fn row_scores(opts: &RefOptions, shape: &Shape, b: usize, h: usize, i: usize) -> RowScores {
    RowScores {
        scale: opts.softmax_scale,
        softcap: opts.softcap,
        alibi_slope: alibi_slope(opts, shape, b, h),
        diag: diagonal(shape, i),
    }
}

// ---------------------------------------------------------------------------
// Per-row kernels
// ---------------------------------------------------------------------------

/// Everything one query row needs, besides its own q (and dO) row.
struct RowContext<'a, 'r, R: Rounding> {
    k: Rows<'a>,
    v: Rows<'a>,
    keys: RowKeys<'a>,
    scores: RowScores,
    dropout: Option<RowDropout<'a>>,
    round: &'r R,
}

/// Buffers of one row, reused across rows so the passes do not allocate per
/// row. Entry `t` of `probs`, `dscore` and `dprobs` belongs to key `keys[t]`.
#[derive(Default)]
struct RowScratch {
    /// The allowed keys, increasing.
    keys: Vec<usize>,
    probs: Vec<f64>,
    /// `d score / d (q . k)` of each key (see [`RowScores::score`]).
    dscore: Vec<f64>,
    /// Backward only.
    dprobs: Vec<f64>,
}

/// Fills `keys` with the row's allowed keys, `probs` with the softmax of their
/// scores against `q_row` and `dscore` with the score derivatives, and returns
/// the row's log-sum-exp (`-inf` for a row without allowed keys). The max is
/// subtracted before `exp` so large scores cannot overflow. Scores are rounded
/// as they enter the softmax; probabilities are left unrounded.
fn softmax_row<R: Rounding>(q_row: &[f64], ctx: &RowContext<R>, scratch: &mut RowScratch) -> f64 {
    let RowScratch { keys, probs, dscore, .. } = scratch;
    ctx.keys.collect_into(keys);
    probs.clear();
    dscore.clear();
    for &j in keys.iter() {
        let (score, derivative) = ctx.scores.score(dot(q_row, ctx.k.row(j)), j);
        probs.push(ctx.round.apply(score));
        dscore.push(derivative);
    }
    if probs.is_empty() {
        return f64::NEG_INFINITY;
    }
    let max = probs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for s in probs.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    for p in probs.iter_mut() {
        *p /= sum;
    }
    max + sum.ln()
}

/// Forward of one query row: writes `o_row` and returns the lse.
/// `o = round(sum_j round(P_j * dropout_j) v_j)` over the allowed keys.
fn attend_row<R: Rounding>(q_row: &[f64], ctx: &RowContext<R>, scratch: &mut RowScratch, o_row: &mut [f64]) -> f64 {
    let lse = softmax_row(q_row, ctx, scratch);
    o_row.fill(0.0);
    for (&j, &p) in scratch.keys.iter().zip(&scratch.probs) {
        let weight = ctx.round.apply(p * dropout_factor(ctx.dropout, j));
        // No skipping of zero weights: 0 * NaN must still poison the output,
        // exactly as a dense P·V would.
        axpy(o_row, weight, ctx.v.row(j));
    }
    round_all(o_row, ctx.round);
    lse
}

/// Gradient buffers of the current (batch, K/V head) plus the current dq row.
struct RowGrads<'g, 'd> {
    dq_row: &'d mut [f64],
    dk: &'d mut RowsMut<'g>,
    dv: &'d mut RowsMut<'g>,
}

/// Backward of one query row: sets `dq_row` and accumulates into `dk`, `dv`.
///
/// With `P` the softmax, `Pd = P * m/(1-p)` and `O = Pd V`:
/// `dV_j += Pd_j dO`, `dP_j = (dO . V_j) * m_j/(1-p)`,
/// `D = sum_j P_j dP_j` (equals `dO . O`, also with dropout, because `O` is
/// built from `Pd`), `dS_j = P_j (dP_j - D)` (w.r.t. the score entering the
/// softmax), then the chain rule to the dot product, `dX_j = dS_j * dscore_j`
/// (scale and softcap), and `dQ = sum_j dX_j K_j`, `dK_j += dX_j Q`.
/// Masked keys contribute nothing; a row without allowed keys has `dQ = 0`.
fn backward_row<R: Rounding>(
    q_row: &[f64],
    do_row: &[f64],
    ctx: &RowContext<R>,
    grads: RowGrads,
    scratch: &mut RowScratch,
) {
    softmax_row(q_row, ctx, scratch);
    let RowScratch { keys, probs, dscore, dprobs } = scratch;
    let round = ctx.round;

    // Pass 1: dV and dP (the dropout mask is applied to both, like in forward).
    dprobs.clear();
    for (&j, &p) in keys.iter().zip(probs.iter()) {
        let factor = dropout_factor(ctx.dropout, j);
        axpy(grads.dv.row_mut(j), round.apply(p * factor), do_row);
        let d_pdrop = round.apply(dot(do_row, ctx.v.row(j)));
        dprobs.push(round.apply(d_pdrop * factor));
    }

    // Pass 2: softmax backward, then dQ and dK.
    round_all(probs, round);
    let delta = dot(probs, dprobs);
    grads.dq_row.fill(0.0);
    for (t, &j) in keys.iter().enumerate() {
        let dx = round.apply(probs[t] * (dprobs[t] - delta)) * dscore[t];
        axpy(grads.dq_row, dx, ctx.k.row(j));
        axpy(grads.dk.row_mut(j), dx, q_row);
    }
}

// ---------------------------------------------------------------------------
// Whole-tensor drivers
// ---------------------------------------------------------------------------

fn debug_check_inputs(q: &[f64], k: &[f64], v: &[f64], shape: &Shape, opts: &RefOptions) {
    debug_assert_eq!(q.len(), shape.q_len(), "q length");
    debug_assert_eq!(k.len(), shape.kv_len(), "k length");
    debug_assert_eq!(v.len(), shape.kv_len(), "v length");
    if let Some((mask, _)) = opts.dropout {
        debug_assert_eq!(mask.len(), shape.mask_len(), "dropout mask length");
    }
    if let Some(slopes) = opts.alibi_slopes {
        let n = slopes.len();
        debug_assert!(n == shape.heads || n == shape.batch * shape.heads, "{n} ALiBi slopes");
    }
    if let Some(mask) = opts.block_mask {
        debug_assert!(mask.heads == 1 || mask.heads == shape.heads, "block mask heads {}", mask.heads);
        debug_assert_eq!(mask.data.len(), mask.required_len(shape), "block mask length");
    }
}

fn row_context<'a, 'r, R: Rounding>(
    (k, v): (Rows<'a>, Rows<'a>),
    shape: &Shape,
    opts: &RefOptions<'a>,
    round: &'r R,
    (b, h, i): (usize, usize, usize),
) -> RowContext<'a, 'r, R> {
    RowContext {
        k,
        v,
        keys: row_keys(opts, shape, h, i),
        scores: row_scores(opts, shape, b, h, i),
        dropout: row_dropout(opts, shape, b, h, i),
        round,
    }
}

fn forward_impl<R: Rounding>(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    shape: &Shape,
    opts: &RefOptions,
    round: &R,
) -> RefForward {
    debug_check_inputs(q, k, v, shape, opts);
    let d = shape.head_dim;
    let mut o = vec![0.0; shape.q_len()];
    let mut lse = vec![0.0; shape.lse_len()];
    let mut scratch = RowScratch::default();
    let mut kv = KvHeadBuffers::default();
    for b in 0..shape.batch {
        let mut loaded = None;
        for h in 0..shape.heads {
            // Query heads of a group are consecutive, so each K/V head is gathered once.
            let kvh = shape.kv_head(h);
            if loaded != Some(kvh) {
                kv.load(k, v, shape, b, kvh);
                loaded = Some(kvh);
            }
            for i in 0..shape.seqlen_q {
                let ctx = row_context((kv.k_rows(d), kv.v_rows(d)), shape, opts, round, (b, h, i));
                let off = shape.q_offset(b, i, h);
                let o_row = &mut o[off..off + d];
                lse[shape.lse_index(b, h, i)] = attend_row(&q[off..off + d], &ctx, &mut scratch, o_row);
            }
        }
    }
    RefForward { o, lse }
}

fn backward_impl<R: Rounding>(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    d_o: &[f64],
    shape: &Shape,
    opts: &RefOptions,
    round: &R,
) -> RefGradients {
    debug_check_inputs(q, k, v, shape, opts);
    debug_assert_eq!(d_o.len(), shape.q_len(), "d_o length");
    let d = shape.head_dim;
    let mut dq = vec![0.0; shape.q_len()];
    let mut dk = vec![0.0; shape.kv_len()];
    let mut dv = vec![0.0; shape.kv_len()];
    let mut scratch = RowScratch::default();
    let mut kv = KvHeadBuffers::default();
    // Per-(batch, K/V head) gradient accumulators; GQA: all query heads of a
    // group add into the same buffers, which are written out once per group.
    let mut dk_head = vec![0.0; shape.seqlen_k * d];
    let mut dv_head = vec![0.0; shape.seqlen_k * d];
    for b in 0..shape.batch {
        let mut loaded = None;
        for h in 0..shape.heads {
            let kvh = shape.kv_head(h);
            if loaded != Some(kvh) {
                if let Some(prev) = loaded {
                    scatter_kv_head(&dk_head, shape, b, prev, &mut dk);
                    scatter_kv_head(&dv_head, shape, b, prev, &mut dv);
                }
                kv.load(k, v, shape, b, kvh);
                dk_head.fill(0.0);
                dv_head.fill(0.0);
                loaded = Some(kvh);
            }
            let mut dk_rows = RowsMut { data: &mut dk_head, width: d };
            let mut dv_rows = RowsMut { data: &mut dv_head, width: d };
            for i in 0..shape.seqlen_q {
                let ctx = row_context((kv.k_rows(d), kv.v_rows(d)), shape, opts, round, (b, h, i));
                let off = shape.q_offset(b, i, h);
                let grads = RowGrads { dq_row: &mut dq[off..off + d], dk: &mut dk_rows, dv: &mut dv_rows };
                backward_row(&q[off..off + d], &d_o[off..off + d], &ctx, grads, &mut scratch);
            }
        }
        if let Some(last) = loaded {
            scatter_kv_head(&dk_head, shape, b, last, &mut dk);
            scatter_kv_head(&dv_head, shape, b, last, &mut dv);
        }
    }
    // Output gradients are rounded once, after all contributions are summed.
    round_all(&mut dq, round);
    round_all(&mut dk, round);
    round_all(&mut dv, round);
    RefGradients { dq, dk, dv }
}

// ---------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------

/// Exact f64 attention forward: `o` `[batch, seqlen_q, heads, head_dim]` and
/// `lse` `[batch, heads, seqlen_q]` (natural log, of the scores after scale,
/// softcap and ALiBi, before dropout; `-inf` for fully masked rows, whose `o` is 0).
pub fn forward(q: &[f64], k: &[f64], v: &[f64], shape: &Shape, opts: &RefOptions) -> RefForward {
    forward_impl(q, k, v, shape, opts, &Exact)
}

/// Exact f64 gradients of `L = sum(o * d_o)` with respect to q, k, v.
/// For GQA, `dk`/`dv` are summed over the query heads sharing a K/V head.
pub fn backward(q: &[f64], k: &[f64], v: &[f64], d_o: &[f64], shape: &Shape, opts: &RefOptions) -> RefGradients {
    backward_impl(q, k, v, d_o, shape, opts, &Exact)
}

/// "The same math done naively in the input precision" (FlashAttention's test rule baseline, like PyTorch on fp16/bf16 tensors):
/// S = q·k^T accumulated in f32-like precision, scaled, soft-capped and ALiBi-biased, then ROUNDED with `round` as it
/// enters the softmax; softmax computed in f64 then P ROUNDED with `round`; O = P·V accumulated then ROUNDED with `round`.
/// (Dropout applied to P before rounding if given.) Masks are applied exactly as in [`forward`]. Returns o only.
///
/// Accumulation is done in f64, which is at least as accurate as an f32
/// accumulator, so the baseline error is dominated by the roundings.
pub fn forward_rounded(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    shape: &Shape,
    opts: &RefOptions,
    round: &dyn Fn(f64) -> f64,
) -> Vec<f64> {
    forward_impl(q, k, v, shape, opts, &RoundWith(round)).o
}

/// Same idea for gradients (round S, P, dP, dS and each output gradient): baseline for the "3x" gradient rule.
///
/// Concretely: S and P as in [`forward_rounded`]; `Pd = round(P * dropout)`;
/// `dPd = round(dO . V_j)`, `dP = round(dPd * dropout)`; `P` is rounded before
/// the softmax backward; `dS = round(P (dP - D))`, then multiplied (unrounded)
/// by the scale and the softcap derivative; dq, dk, dv are rounded once after
/// full (f64) accumulation.
pub fn backward_rounded(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    d_o: &[f64],
    shape: &Shape,
    opts: &RefOptions,
    round: &dyn Fn(f64) -> f64,
) -> RefGradients {
    backward_impl(q, k, v, d_o, shape, opts, &RoundWith(round))
}

/// One query row of the forward (o row of length head_dim, and its lse), for spot checks on big shapes without computing everything.
/// Bit-identical to the corresponding row of [`forward`].
#[allow(clippy::too_many_arguments)]
pub fn forward_row(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    shape: &Shape,
    opts: &RefOptions,
    b: usize,
    h: usize,
    i: usize,
) -> (Vec<f64>, f64) {
    debug_check_inputs(q, k, v, shape, opts);
    let kvh = shape.kv_head(h);
    let kv_rows = (Rows::kv_head(k, shape, b, kvh), Rows::kv_head(v, shape, b, kvh));
    let ctx = row_context(kv_rows, shape, opts, &Exact, (b, h, i));
    let off = shape.q_offset(b, i, h);
    let mut o_row = vec![0.0; shape.head_dim];
    let lse = attend_row(&q[off..off + shape.head_dim], &ctx, &mut RowScratch::default(), &mut o_row);
    (o_row, lse)
}

// ---------------------------------------------------------------------------
// Unit tests (internals); behavioural tests live in tests/reference_cpu.rs.
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(sq: usize, sk: usize) -> Shape {
        Shape { batch: 1, seqlen_q: sq, seqlen_k: sk, heads: 1, heads_kv: 1, head_dim: 1 }
    }

    /// Every combination of causal, window and block mask on small shapes:
    /// the keys a row visits are exactly those [`is_allowed`] accepts.
    #[test]
    fn row_keys_are_the_keys_of_is_allowed() {
        let windows = [None, Some(0), Some(1), Some(3), Some(usize::MAX)];
        // Per-head block mask (block 2) for 2 heads; heads differ.
        let flags = [1, 0, 1, 0, 1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 0, 1];
        let mut visited = Vec::new();
        let mut cases = 0;
        for sq in 1..7 {
            for sk in 1..7 {
                let s = Shape { heads: 2, ..shape(sq, sk) };
                let n = 2 * sq.div_ceil(2) * sk.div_ceil(2);
                let block_masks = [None, Some(RefBlockMask { data: &flags[..n], heads: 2, block: 2 })];
                for causal in [false, true] {
                    for (window_left, window_right) in windows.iter().flat_map(|&l| windows.map(|r| (l, r))) {
                        for block_mask in block_masks {
                            let opts =
                                RefOptions { causal, window_left, window_right, block_mask, ..RefOptions::new(1) };
                            for (h, i) in (0..2).flat_map(|h| (0..sq).map(move |i| (h, i))) {
                                row_keys(&opts, &s, h, i).collect_into(&mut visited);
                                let expected: Vec<usize> =
                                    (0..sk).filter(|&j| is_allowed(&s, &opts, h, i, j)).collect();
                                assert_eq!(visited, expected, "{opts:?} sq={sq} sk={sk} h={h} i={i}");
                                cases += usize::from(!expected.is_empty() && expected.len() < sk);
                            }
                        }
                    }
                }
            }
        }
        assert!(cases > 1000, "too few partially masked rows: {cases}");
    }

    #[test]
    fn is_allowed_follows_the_window_formula() {
        // seqlen_q = 3, seqlen_k = 5: off = 2, row 1's diagonal key is 3.
        let s = shape(3, 5);
        let window = RefOptions { window_left: Some(1), window_right: Some(1), ..RefOptions::new(1) };
        let allowed: Vec<usize> = (0..5).filter(|&j| is_allowed(&s, &window, 0, 1, j)).collect();
        assert_eq!(allowed, [2, 3, 4]);
        let left_only = RefOptions { window_left: Some(0), ..RefOptions::new(1) };
        assert_eq!((0..5).filter(|&j| is_allowed(&s, &left_only, 0, 1, j)).collect::<Vec<_>>(), [3, 4]);
        let causal_window = RefOptions { causal: true, ..window };
        assert_eq!((0..5).filter(|&j| is_allowed(&s, &causal_window, 0, 1, j)).collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn score_applies_scale_softcap_then_alibi() {
        let plain = RowScores { scale: 0.5, softcap: 0.0, alibi_slope: 0.0, diag: 3 };
        assert_eq!(plain.score(3.0, 0), (1.5, 0.5));
        let capped = RowScores { softcap: 2.0, ..plain };
        let t = 0.75f64.tanh();
        assert_eq!(capped.score(3.0, 0), (2.0 * t, 0.5 * (1.0 - t * t)));
        // ALiBi after the cap, distance |3 - 5| = 2, no effect on the derivative.
        let alibi = RowScores { alibi_slope: 0.25, ..capped };
        assert_eq!(alibi.score(3.0, 5), (2.0 * t - 0.5, 0.5 * (1.0 - t * t)));
        // A zero slope leaves the score bit-identical, even -0.0.
        assert_eq!(plain.score(-0.0, 9).0.to_bits(), (-0.0f64).to_bits());
    }

    #[test]
    fn dot_matches_naive_sum_for_all_tail_lengths() {
        for n in 0..40 {
            let a: Vec<f64> = (0..n).map(|x| x as f64 * 0.5 - 3.0).collect();
            let b: Vec<f64> = (0..n).map(|x| (x * x) as f64 * 0.25).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            // Exact small dyadic values: every summation order gives the same result.
            assert_eq!(dot(&a, &b), naive, "n={n}");
        }
    }

    #[test]
    fn kv_head_groups_query_heads() {
        let s = Shape { batch: 1, seqlen_q: 1, seqlen_k: 1, heads: 6, heads_kv: 2, head_dim: 1 };
        let groups: Vec<usize> = (0..6).map(|h| s.kv_head(h)).collect();
        assert_eq!(groups, [0, 0, 0, 1, 1, 1]);
        let mqa = Shape { heads_kv: 1, ..s };
        assert!((0..6).all(|h| mqa.kv_head(h) == 0));
    }

    #[test]
    fn layout_offsets() {
        let s = Shape { batch: 2, seqlen_q: 3, seqlen_k: 5, heads: 4, heads_kv: 2, head_dim: 8 };
        assert_eq!(s.q_offset(1, 2, 3), ((3 + 2) * 4 + 3) * 8);
        assert_eq!(s.q_offset(1, 2, 3) + 8, s.q_len());
        // Last key row of the last K/V head ends exactly at the end of k.
        assert_eq!(s.kv_base(1, 1) + 4 * s.kv_stride() + 8, s.kv_len());
        assert_eq!(s.lse_index(1, 3, 2) + 1, s.lse_len());
        assert_eq!(s.mask_row_offset(1, 3, 2) + 5, s.mask_len());
    }

    /// Exhaustive check of a 16-bit format: every finite value is a fixed
    /// point, and every midpoint between neighbours rounds to the one with the
    /// even significand (while points just off the midpoint go to the nearer).
    fn check_format_exhaustively(decode: impl Fn(u16) -> f64, round: impl Fn(f64) -> f64) {
        // Positive finite values in increasing order are the bit patterns 0..=max.
        let values: Vec<f64> = (0u16..0x8000).map(&decode).take_while(|v| v.is_finite()).collect();
        for (bits, &v) in values.iter().enumerate() {
            assert_eq!(round(v).to_bits(), v.to_bits(), "fixed point {v:e}");
            assert_eq!(round(-v).to_bits(), (-v).to_bits(), "fixed point {:e}", -v);
            let Some(&next) = values.get(bits + 1) else {
                continue;
            };
            let mid = 0.5 * (v + next); // exact: both are representable with few bits
            let even = if bits % 2 == 0 { v } else { next };
            assert_eq!(round(mid), even, "midpoint of {v:e} and {next:e}");
            assert_eq!(round(-mid), -even);
            let eps = (next - v) * 1e-3;
            assert_eq!(round(mid - eps), v, "just below midpoint {v:e}");
            assert_eq!(round(mid + eps), next, "just above midpoint {v:e}");
        }
        // Overflow: the midpoint above the largest finite value rounds (to even)
        // to 2^(emax+1), i.e. infinity; just below it stays finite.
        let max = *values.last().unwrap();
        let prev = values[values.len() - 2];
        let overflow_mid = max + 0.5 * (max - prev);
        assert_eq!(round(overflow_mid), f64::INFINITY);
        assert_eq!(round(-overflow_mid), f64::NEG_INFINITY);
        assert_eq!(round(overflow_mid - (max - prev) * 1e-3), max);
        assert_eq!(round(1e300), f64::INFINITY);
    }

    fn decode_f16(bits: u16) -> f64 {
        let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
        let exp = ((bits >> 10) & 0x1f) as i32;
        let frac = (bits & 0x3ff) as f64;
        sign * match exp {
            0 => frac * 2f64.powi(-24),
            31 => {
                if frac == 0.0 {
                    f64::INFINITY
                } else {
                    f64::NAN
                }
            }
            _ => (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
        }
    }

    fn decode_bf16(bits: u16) -> f64 {
        f32::from_bits((bits as u32) << 16) as f64
    }

    #[test]
    fn f16_rounding_is_exhaustively_correct() {
        check_format_exhaustively(decode_f16, round_to_f16);
        assert_eq!(round_to_f16(65504.0), 65504.0);
        assert_eq!(round_to_f16(65519.0), 65504.0);
        assert_eq!(round_to_f16(65520.0), f64::INFINITY);
        // Subnormals: smallest is 2^-24; half of it is a tie that goes to (signed) zero.
        assert_eq!(round_to_f16(2f64.powi(-24)), 2f64.powi(-24));
        assert_eq!(round_to_f16(2f64.powi(-25)).to_bits(), 0.0f64.to_bits());
        assert_eq!(round_to_f16(-(2f64.powi(-25))).to_bits(), (-0.0f64).to_bits());
        assert_eq!(round_to_f16(1.5 * 2f64.powi(-25)), 2f64.powi(-24));
        assert_eq!(round_to_f16(1.0 + 2f64.powi(-11)), 1.0);
        assert_eq!(round_to_f16(1.0 + 3.0 * 2f64.powi(-11)), 1.0 + 2f64.powi(-9));
    }

    #[test]
    fn bf16_rounding_is_exhaustively_correct() {
        check_format_exhaustively(decode_bf16, round_to_bf16);
        assert_eq!(round_to_bf16(1.0 + 2f64.powi(-8)), 1.0);
        assert_eq!(round_to_bf16(1.0 + 3.0 * 2f64.powi(-8)), 1.0 + 2f64.powi(-6));
        // A value just above a tie must not be double-rounded down (it would be
        // via an intermediate f32, which rounds it onto the tie).
        let just_above_tie = 1.0 + 2f64.powi(-8) + 2f64.powi(-40);
        assert_eq!(round_to_bf16(just_above_tie), 1.0 + 2f64.powi(-7));
        assert_eq!((just_above_tie as f32) as f64, 1.0 + 2f64.powi(-8));
    }

    #[test]
    fn format_rounding_matches_hardware_f32_cast() {
        // The same algorithm with f32's parameters must agree with Rust's
        // `as f32` (IEEE round-to-nearest-even), including subnormals and overflow.
        const F32: FloatFormat = FloatFormat { precision: 24, min_exp: -126, max_exp: 127 };
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            // xorshift64*: random bit patterns concentrated around f32's range.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let r = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
            let exp = (r >> 52) % 320; // f64 biased exponents 1023-160 .. 1023+160
            let bits = (r & 0x800f_ffff_ffff_ffff) | ((863 + exp) << 52);
            let x = f64::from_bits(bits);
            assert_eq!(round_to_format(x, F32).to_bits(), ((x as f32) as f64).to_bits(), "x = {x:e}");
        }
    }

    #[test]
    fn rounding_passes_specials_through() {
        for f in [round_to_bf16, round_to_f16] {
            assert!(f(f64::NAN).is_nan());
            assert_eq!(f(f64::INFINITY), f64::INFINITY);
            assert_eq!(f(f64::NEG_INFINITY), f64::NEG_INFINITY);
            assert_eq!(f(-0.0).to_bits(), (-0.0f64).to_bits());
            assert_eq!(f(f64::MIN_POSITIVE / 4.0), 0.0); // f64 subnormal flushes
        }
    }

    #[test]
    fn dropout_with_p_one_drops_everything_without_nan() {
        let s = Shape { batch: 1, seqlen_q: 1, seqlen_k: 2, heads: 1, heads_kv: 1, head_dim: 1 };
        let mask = [true, false];
        let opts = RefOptions { dropout: Some((&mask, 1.0)), ..RefOptions::new(1) };
        let out = forward(&[1.0], &[1.0, 2.0], &[3.0, 4.0], &s, &opts);
        assert_eq!(out.o, [0.0]);
        assert!(out.lse.iter().all(|x| x.is_finite()));
    }
}
