//! Philox4x32-10, the counter-based random number generator of Random123 (Salmon et al., SC'11),
//! and the dropout keep-mask built on it. Pure functions, shared by the kernels and the host: the
//! backward regenerates exactly the forward's mask, and the CPU reference builds the same mask
//! (`flashattn::dropout`) from the same code.
//!
//! # The dropout mask
//!
//! Every element `(b, h, row, col)` of the `[batch, heads, seqlen_q, seqlen_k]` attention matrix
//! gets one random byte; it is kept iff `byte <= threshold` ([`keep_threshold`]).
//!
//! - key = the seed: `[seed as u32, (seed >> 32) as u32]`.
//! - counter = `[call[0], call[1], lo, hi]` where `call = `[`call_of`]`(row, col)` and `(hi, lo)`
//!   are the two halves of the `u64` `offset + (b * heads + h)` (wrapping). Like PyTorch's Philox
//!   offset, `offset` is a position in the counter stream: a call uses `batch * heads`
//!   subsequences from `offset` on, so calls that must draw independent masks with one seed use
//!   offsets at least `batch * heads` apart (or different seeds).
//! - One call yields 16 bytes for a 4 x 4 set of elements of one 16 x 16 tile: rows
//!   `{r, r + 1, r + 8, r + 9}` x columns `{c, c + 1, c + 8, c + 9}` (`r`, `c` even, `< 8` inside
//!   the tile); [`byte_of`] says which byte, byte `k` being bits `8 * (k % 4) ..` of word `k / 4`.
//!
//! Why this mapping: in the accumulator of `mma.sync.m16n8k16` (and of Hopper's `wgmma`), the
//! thread with `lane = 4 g + t` holds rows `g, g + 8` x columns `2 t, 2 t + 1, 2 t + 8, 2 t + 9`
//! of every 16 x 16 tile. The forward computes `S` (rows = queries); the backward's dK/dV kernel
//! computes `S^T` (rows = keys), where a thread holds queries `2 t, 2 t + 1, 2 t + 8, 2 t + 9` x
//! keys `g, g + 8`. A call's 16 elements are exactly those of the two lanes `g, g ^ 1` in *both*
//! layouts (row parity splits them in `S`, column parity in `S^T`), so with the partner lane
//! computing the call of the neighbouring tile and the halves swapped by one shuffle, each thread
//! makes one Philox call per 16 elements in both passes ([`row_parity_half`],
//! [`col_parity_half`]). A row-major mapping (16 consecutive columns of a row per call) would
//! cost the transposed backward 8 calls per 16 elements. 8-bit thresholds, as flash-attn has
//! them, resolve `p` to a multiple of 1/256 (the keep probability is within 1/512 of `1 - p`, and
//! [`keep_probability`] gives it exactly, for the `1/(1-p)` rescale); 32-bit compares would
//! resolve `p` exactly but would cost one call per 4 elements, 4 times as many, while the whole
//! softmax costs only a few instructions an element.

/// Philox4x32 round multipliers.
pub const PHILOX_M4X32: [u32; 2] = [0xD251_1F53, 0xCD9E_8D57];
/// Weyl sequence constants added to the key between rounds (golden ratio, sqrt(3) - 1).
pub const PHILOX_W32: [u32; 2] = [0x9E37_79B9, 0xBB67_AE85];

/// High and low 32 bits of `a * b`. The high half through a 64-bit product, which LLVM matches to
/// `mul.hi.u32` on NVPTX; the low half as its own 32-bit `mul.lo`: taken as `p as u32`, LLVM
/// keeps it as a 64-bit value and multiplies it in the next round with a slow `mul.lo.s64`.
#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    (((a as u64 * b as u64) >> 32) as u32, a.wrapping_mul(b))
}

#[inline(always)]
fn round(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (hi0, lo0) = mulhilo(PHILOX_M4X32[0], ctr[0]);
    let (hi1, lo1) = mulhilo(PHILOX_M4X32[1], ctr[2]);
    [hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0]
}

/// Philox4x32 with `ROUNDS` rounds (the key is bumped by the Weyl constants between rounds).
#[inline(always)]
pub fn philox4x32<const ROUNDS: u32>(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut ctr, mut key) = (counter, key);
    let mut r = 0;
    while r < ROUNDS {
        if r > 0 {
            key = [key[0].wrapping_add(PHILOX_W32[0]), key[1].wrapping_add(PHILOX_W32[1])];
        }
        ctr = round(ctr, key);
        r += 1;
    }
    ctr
}

/// Philox4x32-10: 128 random bits from a 128-bit counter and a 64-bit key (Random123's
/// `philox4x32` with its default 10 rounds).
#[inline(always)]
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    philox4x32::<10>(counter, key)
}

/// The byte threshold of drop probability `p` (`0 <= p < 1`): an element is kept iff its random
/// byte is `<= threshold`, so it is kept with probability `(threshold + 1) / 256`, the multiple of
/// 1/256 nearest to `1 - p` (at least 1/256). `p = 0` gives 255: every element kept.
#[inline(always)]
pub fn keep_threshold(p: f32) -> u8 {
    // `as` saturates (NaN -> 0); the sum is the rounded number of kept byte values, 1..=256.
    let kept = ((1.0 - p) * 256.0 + 0.5) as i32;
    (kept.clamp(1, 256) - 1) as u8
}

/// The probability that an element is kept under `threshold`: `(threshold + 1) / 256`. Kept
/// elements are scaled by its inverse, so the expectation of the output is exact.
#[inline(always)]
pub fn keep_probability(threshold: u8) -> f32 {
    (threshold as f32 + 1.0) / 256.0
}

/// Counter words 0 and 1 of the call holding element `(row, col)`: its 16 x 16 tile and its
/// position among the tile's 16 calls.
#[inline(always)]
pub fn call_of(row: u32, col: u32) -> [u32; 2] {
    [(col / 16) * 4 + (col % 8) / 2, (row / 16) * 4 + (row % 8) / 2]
}

/// Which of the 16 bytes of its call holds element `(row, col)`: `8 * (row % 2) + 4 * (col % 2) +
/// 2 * (row % 16 / 8) + col % 16 / 8`. Row parity is the high bit, so a forward thread's 8
/// elements are one byte of keep bits ([`row_parity_half`]).
#[inline(always)]
pub fn byte_of(row: u32, col: u32) -> u32 {
    8 * (row % 2) + 4 * (col % 2) + 2 * ((row % 16) / 8) + (col % 16) / 8
}

/// The element `(row, col)` of byte `byte` (0..16) of call `call`: the inverse of
/// ([`call_of`], [`byte_of`]).
#[inline(always)]
pub fn element_of(call: [u32; 2], byte: u32) -> (u32, u32) {
    let row = (call[1] / 4) * 16 + (call[1] % 4) * 2 + 8 * ((byte / 2) % 2) + byte / 8;
    let col = (call[0] / 4) * 16 + (call[0] % 4) * 2 + 8 * (byte % 2) + (byte / 4) % 2;
    (row, col)
}

/// The 8 keep bits of a call's rows of parity `odd` (the elements of the forward's lane `g` with
/// `g % 2 == odd`): bit `4 * (col % 2) + 2 * (row % 16 / 8) + col % 16 / 8`.
#[inline(always)]
pub fn row_parity_half(bits: u16, odd: bool) -> u8 {
    (bits >> (8 * odd as u32)) as u8
}

/// The 8 keep bits of a call's columns of parity `odd` (the elements of the backward's `S^T`
/// lane `g` with `g % 2 == odd`): bit `4 * (row % 2) + 2 * (row % 16 / 8) + col % 16 / 8`.
#[inline(always)]
pub fn col_parity_half(bits: u16, odd: bool) -> u8 {
    let nibbles = (bits as u32 >> (4 * odd as u32)) & 0x0f0f;
    ((nibbles & 0xf) | (nibbles >> 4)) as u8
}

/// The 16 keep bits of 16 random bytes: bit `k` is `byte k <= threshold`.
#[inline(always)]
pub fn keep_bits_of(bytes: [u32; 4], threshold: u8) -> u16 {
    let t = threshold as u32;
    let mut bits = 0u32;
    let mut k = 0;
    while k < 16 {
        let byte = (bytes[(k / 4) & 3] >> (8 * (k % 4))) & 0xff;
        bits |= ((byte <= t) as u32) << k;
        k += 1;
    }
    bits as u16
}

/// Drop flags of the 4 bytes of one output word at once (SWAR): bit `8 k + 7` is set iff byte
/// `k > threshold` (dropped); bits 0-6 of each byte are left over from the arithmetic (consumers
/// read bit 7 only: one-bit tests, `prmt`'s sign replication). A byte is dropped iff adding `c =
/// 255 - threshold` to it carries out of the byte; that carry is the majority of the two bit 7s
/// and the carry into bit 7, which is bit 7 of the sum of the low seven bits (at most 254, so no
/// carry crosses bytes). Three integer operations per 4 elements (a LOP3, an add, a LOP3), where
/// testing bytes one by one costs about four per element. (Drop, not keep, flags: the keep
/// polarity's negation was a fourth operation ptxas did not fold; consumers negate for free.)
#[inline(always)]
pub fn drop_flags_word(word: u32, threshold: u8) -> u32 {
    let c = (255 - threshold) as u32 * 0x0101_0101;
    let low_sum = (word & 0x7f7f_7f7f) + (c & 0x7f7f_7f7f);
    (word & c) | (word & low_sum) | (c & low_sum)
}

/// Counter words 0 and 1 of the call lane `lane` makes for the 16 rows of `S` (rows = queries)
/// from `row16` and the 32 keys from `col32` (multiples of 16 and 32): lanes `g` (`lane / 4`)
/// and `g ^ 1` share a call's rows, the even one takes keys `col32..+16`, the odd one the 16
/// after ([`s_own_send`] says which words each keeps).
#[inline(always)]
pub fn s_lane_call(row16: u32, col32: u32, lane: u32) -> [u32; 2] {
    let (g, t) = (lane / 4, lane % 4);
    [(col32 / 16 + g % 2) * 4 + t, (row16 / 16) * 4 + g / 2]
}

/// As [`s_lane_call`] for `S^T` (rows = keys): the 16 keys from `key16` and the 32 queries from
/// `q32`; the even lane of a pair takes queries `q32..+16`.
#[inline(always)]
pub fn st_lane_call(key16: u32, q32: u32, lane: u32) -> [u32; 2] {
    let (g, t) = (lane / 4, lane % 4);
    [(key16 / 16) * 4 + g / 2, (q32 / 16 + g % 2) * 4 + t]
}

/// The two words of a call's flags ([`DropoutRng::drop_flags`]) a lane of `S` keeps, and the two
/// it sends to its partner: word `2 (row % 2) + col % 2`, and this lane's rows have parity
/// `odd`. (Selects, not indexing by a lane-dependent value, which would put the words in local
/// memory.)
#[inline(always)]
pub fn s_own_send(m: [u32; 4], odd: bool) -> ([u32; 2], [u32; 2]) {
    if odd {
        ([m[2], m[3]], [m[0], m[1]])
    } else {
        ([m[0], m[1]], [m[2], m[3]])
    }
}

/// As [`s_own_send`] for `S^T`: this lane's keys (columns of `S`) have parity `odd`.
#[inline(always)]
pub fn st_own_send(m: [u32; 4], odd: bool) -> ([u32; 2], [u32; 2]) {
    if odd {
        ([m[1], m[3]], [m[0], m[2]])
    } else {
        ([m[0], m[2]], [m[1], m[3]])
    }
}

/// One word of a lane's (drop) flags for 32 columns: bit 7 of each byte is the flag from this
/// lane's own call, bit 6 the partner's (bits 0-5 are left over). One shift and one LOP3.
#[inline(always)]
pub fn merge_flag_words(own: u32, other: u32) -> u32 {
    (own & 0x8080_8080) | ((other >> 1) & 0x7f7f_7f7f)
}

/// The flags of the lower (`upper = false`) or upper 16 columns of a merged word
/// ([`merge_flag_words`]) at bit 7 of each byte, for a lane of pair parity `odd` (0 or 1): the
/// even lane's own call is the lower half, so its lower flags are at bit 7 and its upper ones at
/// bit 6; the odd lane the other way round. One shift.
#[inline(always)]
pub fn half_flags(merged: u32, odd: u32, upper: bool) -> u32 {
    merged << (odd ^ upper as u32)
}

/// The `prmt.b32` selector that turns two flag words ([`half_flags`]) into a mask of a packed
/// pair of 16-bit values: the low half `0xffff` iff bit 7 of byte `byte` of the first word is
/// set, the high half likewise from the second word (for drop flags: the values to clear).
/// Selector nibbles 0-2 pick a byte of `{b, a}`, nibble bit 3 replicates that byte's sign bit
/// ([`prmt_model`]).
#[inline(always)]
pub const fn pair_mask_selector(byte: u32) -> u32 {
    ((0x8 | byte) * 0x11) | (((0xc | byte) * 0x11) << 8)
}

/// What `prmt.b32 d, a, b, sel` computes in its default mode, on the host: byte `i` of `d` is
/// the byte of `{b, a}` (bytes 0-3 of `a`, 4-7 of `b`) that bits 0-2 of nibble `i` of `sel`
/// pick, or, with the nibble's bit 3 set, that byte's sign bit replicated. The reference of the
/// instruction's GPU test and of the host test of [`pair_mask_selector`].
#[cfg(not(target_arch = "nvptx64"))]
pub fn prmt_model(a: u32, b: u32, sel: u32) -> u32 {
    let bytes = (b as u64) << 32 | a as u64;
    (0..4).fold(0u32, |d, i| {
        let nib = (sel >> (4 * i)) & 0xf;
        let byte = ((bytes >> (8 * (nib & 7))) & 0xff) as u32;
        let v = if nib & 8 != 0 { (byte >> 7) * 0xff } else { byte };
        d | v << (8 * i)
    })
}

/// The dropout random stream of one (batch, head): the key and counter words 2-3 fixed, so a
/// kernel builds it once and makes one call per 16 elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropoutRng {
    key: [u32; 2],
    /// Counter words 2 and 3: `offset + b * heads + h`, split once here so that every call is
    /// 32-bit arithmetic only.
    subsequence: [u32; 2],
}

impl DropoutRng {
    /// The stream of `(b, h)` (with `heads` query heads) for `seed` and `offset`.
    #[inline(always)]
    pub fn new(seed: u64, offset: u64, b: u32, h: u32, heads: u32) -> Self {
        let bh = b as u64 * heads as u64 + h as u64;
        let s = offset.wrapping_add(bh);
        DropoutRng { key: [seed as u32, (seed >> 32) as u32], subsequence: [s as u32, (s >> 32) as u32] }
    }

    /// The same stream with each key word passed through `f` (an identity the compiler cannot
    /// see through, in kernels that want the round keys recomputed rather than kept alive).
    #[inline(always)]
    pub fn map_key(self, f: impl Fn(u32) -> u32) -> Self {
        DropoutRng { key: [f(self.key[0]), f(self.key[1])], subsequence: self.subsequence }
    }

    /// The 16 random bytes of call `call` ([`call_of`]).
    #[inline(always)]
    pub fn bytes(&self, call: [u32; 2]) -> [u32; 4] {
        let [lo, hi] = self.subsequence;
        philox4x32_10([call[0], call[1], lo, hi], self.key)
    }

    /// The keep bits of call `call`: bit `k` is element [`element_of`]`(call, k)`.
    #[inline(always)]
    pub fn keep_bits(&self, call: [u32; 2], threshold: u8) -> u16 {
        keep_bits_of(self.bytes(call), threshold)
    }

    /// The drop flags of call `call` as [`drop_flags_word`]s (bit 7 of each byte; byte `k` of the
    /// call is byte `k % 4` of word `k / 4`).
    #[inline(always)]
    pub fn drop_flags(&self, call: [u32; 2], threshold: u8) -> [u32; 4] {
        let w = self.bytes(call);
        [
            drop_flags_word(w[0], threshold),
            drop_flags_word(w[1], threshold),
            drop_flags_word(w[2], threshold),
            drop_flags_word(w[3], threshold),
        ]
    }

    /// Whether element `(row, col)` is kept.
    #[inline(always)]
    pub fn keep(&self, row: u32, col: u32, threshold: u8) -> bool {
        (self.keep_bits(call_of(row, col), threshold) >> byte_of(row, col)) & 1 == 1
    }
}

/// Whether element `(b, h, row, col)` of the attention matrix is kept by dropout with this seed,
/// offset and threshold ([`keep_threshold`]); `heads` is the number of query heads. A pure
/// function: the forward, the backward and the CPU reference agree by construction.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn dropout_keep(seed: u64, offset: u64, b: u32, h: u32, heads: u32, row: u32, col: u32, threshold: u8) -> bool {
    DropoutRng::new(seed, offset, b, h, heads).keep(row, col, threshold)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random123 `tests/kat_vectors`, the `philox4x32` lines: (rounds, counter, key, result).
    const KAT: [(u32, [u32; 4], [u32; 2], [u32; 4]); 6] = [
        (7, [0; 4], [0; 2], [0x5f6fb709, 0x0d893f64, 0x4f121f81, 0x4f730a48]),
        (7, [0xffffffff; 4], [0xffffffff; 2], [0x5207ddc2, 0x45165e59, 0x4d8ee751, 0x8c52f662]),
        (
            7,
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0],
            [0x4dfccaba, 0x190a87f0, 0xc47362ba, 0xb6b5242a],
        ),
        (10, [0; 4], [0; 2], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]),
        (10, [0xffffffff; 4], [0xffffffff; 2], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]),
        (
            10,
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0],
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
        ),
    ];

    #[test]
    fn random123_known_answers() {
        for (rounds, ctr, key, expected) in KAT {
            let got = match rounds {
                7 => philox4x32::<7>(ctr, key),
                _ => philox4x32_10(ctr, key),
            };
            assert_eq!(got, expected, "philox4x32-{rounds} counter {ctr:08x?} key {key:08x?}");
        }
    }

    #[test]
    fn element_mapping_is_a_bijection() {
        for row in 0..64u32 {
            for col in 0..96u32 {
                let k = byte_of(row, col);
                assert!(k < 16);
                assert_eq!(element_of(call_of(row, col), k), (row, col));
            }
        }
        for c0 in 0..24u32 {
            for c1 in 0..16u32 {
                for k in 0..16 {
                    let (row, col) = element_of([c0, c1], k);
                    assert_eq!((call_of(row, col), byte_of(row, col)), ([c0, c1], k));
                }
            }
        }
    }

    /// The 16 elements of a call are those of lanes `g` and `g ^ 1` (same `t`) of one 16 x 16
    /// tile, in the m16n8 accumulator layout of `S` and of `S^T`, split by the parity halves.
    #[test]
    fn calls_match_the_mma_lane_layout_of_s_and_s_transposed() {
        let rng = DropoutRng::new(77, 3, 0, 1, 2);
        let th = keep_threshold(0.4);
        let (r16, c16) = (32u32, 48u32);
        for lane in 0..32u32 {
            let (g, t) = (lane / 4, lane % 4);
            // S: rows g, g + 8 (half), columns 2t + e + 8 * ntpar.
            let bits = rng.keep_bits(call_of(r16 + g, c16 + 2 * t), th);
            let mine = row_parity_half(bits, g % 2 == 1);
            for half in 0..2 {
                for ntpar in 0..2 {
                    for e in 0..2 {
                        let (row, col) = (r16 + g + 8 * half, c16 + 2 * t + e + 8 * ntpar);
                        assert_eq!(call_of(row, col), call_of(r16 + g, c16 + 2 * t));
                        let bit = (mine >> (4 * e + 2 * half + ntpar)) & 1 == 1;
                        assert_eq!(bit, rng.keep(row, col, th), "S lane {lane}");
                    }
                }
            }
            // S^T (rows = keys k16 + g + 8 half, columns = queries q16 + 2t + e + 8 ntpar): the
            // element is (query, key) of the attention matrix.
            let (q16, k16) = (r16, c16);
            let bits = rng.keep_bits(call_of(q16 + 2 * t, k16 + g), th);
            let mine = col_parity_half(bits, g % 2 == 1);
            for half in 0..2 {
                for ntpar in 0..2 {
                    for e in 0..2 {
                        let (query, key) = (q16 + 2 * t + e + 8 * ntpar, k16 + g + 8 * half);
                        assert_eq!(call_of(query, key), call_of(q16 + 2 * t, k16 + g));
                        let bit = (mine >> (4 * e + 2 * ntpar + half)) & 1 == 1;
                        assert_eq!(bit, rng.keep(query, key, th), "S^T lane {lane}");
                    }
                }
            }
        }
    }

    #[test]
    fn drop_flags_word_is_the_bytewise_compare() {
        let mut rng = 0x1234_5678u32;
        for t in 0..=255u8 {
            for _ in 0..64 {
                rng = rng.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                // Also words with bytes at and around the threshold.
                let word = if rng % 3 == 0 { (t as u32).wrapping_mul(0x0100_0101) ^ (rng & 0x0101_0000) } else { rng };
                let mut expected = 0;
                for k in 0..4 {
                    if (word >> (8 * k)) & 0xff > t as u32 {
                        expected |= 0x80 << (8 * k);
                    }
                }
                assert_eq!(drop_flags_word(word, t) & 0x8080_8080, expected, "word {word:08x} threshold {t}");
            }
        }
        let rng = DropoutRng::new(3, 4, 0, 1, 2);
        let m = rng.drop_flags([5, 6], 100);
        let bits = rng.keep_bits([5, 6], 100);
        for k in 0..16 {
            assert_eq!((m[k / 4] >> (8 * (k % 4) + 7)) & 1, ((!bits >> k) & 1) as u32);
        }
    }

    /// The warp-level flag words of `Dropout::s_bits` / `st_bits` (each lane's call, the
    /// exchange with lane `^ 4`, the merge) with the shuffle emulated: every drop flag a lane
    /// reads through [`half_flags`] (bit 7) and [`pair_mask_selector`] ([`prmt_model`]) is the
    /// negated keep bit of its element in the m16n8 accumulator layout of `S` and of `S^T`.
    #[test]
    fn lane_flag_words_match_the_mma_layout_of_s_and_s_transposed() {
        let rng = DropoutRng::new(0xfeed_beef_0123_4567, 5, 1, 2, 3);
        let th = keep_threshold(0.3);
        for (r16, c32) in [(0u32, 0u32), (48, 96), (16, 224)] {
            for transposed in [false, true] {
                let own_send = |lane: u32| {
                    let odd = (lane / 4) % 2 == 1;
                    if transposed {
                        st_own_send(rng.drop_flags(st_lane_call(r16, c32, lane), th), odd)
                    } else {
                        s_own_send(rng.drop_flags(s_lane_call(r16, c32, lane), th), odd)
                    }
                };
                for lane in 0..32u32 {
                    let (g, t) = (lane / 4, lane % 4);
                    let (own, _) = own_send(lane);
                    let (_, other) = own_send(lane ^ 4);
                    let words = [merge_flag_words(own[0], other[0]), merge_flag_words(own[1], other[1])];
                    for sub in 0..2u32 {
                        let aligned = [half_flags(words[0], g % 2, sub == 1), half_flags(words[1], g % 2, sub == 1)];
                        for half in 0..2u32 {
                            for ntpar in 0..2u32 {
                                // The accumulator row is g + 8 half, its column 16 sub + 8 ntpar + 2t + e.
                                let (row, col) = (r16 + g + 8 * half, c32 + 16 * sub + 8 * ntpar + 2 * t);
                                let byte = if transposed { 2 * ntpar + half } else { 2 * half + ntpar };
                                let mask = prmt_model(aligned[0], aligned[1], pair_mask_selector(byte));
                                for e in 0..2u32 {
                                    let kept = (aligned[e as usize] >> (8 * byte + 7)) & 1 == 0;
                                    let keep = if transposed {
                                        rng.keep(col + e, row, th) // S^T: (query, key) = (col, row)
                                    } else {
                                        rng.keep(row, col + e, th)
                                    };
                                    let what = (transposed, lane, sub, half, ntpar, e);
                                    assert_eq!(kept, keep, "(transposed, lane, sub, half, ntpar, e) {what:?}");
                                    let expected = if keep { 0 } else { 0xffff };
                                    assert_eq!((mask >> (16 * e)) & 0xffff, expected, "prmt mask {what:?}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn thresholds() {
        assert_eq!(keep_threshold(0.0), 255);
        assert_eq!(keep_probability(255), 1.0);
        assert_eq!(keep_threshold(0.5), 127);
        assert_eq!(keep_probability(keep_threshold(0.5)), 0.5);
        assert_eq!(keep_threshold(0.1), 229); // 230/256 = 0.898 kept
        assert_eq!(keep_threshold(0.9999), 0); // at least 1/256 kept
        for i in 0..1000 {
            let p = i as f32 / 1000.0;
            let err = (1.0 - p - keep_probability(keep_threshold(p))).abs();
            assert!(err <= 1.0 / 512.0 + 1e-6 || p > 0.998, "p {p}: keep probability off by {err}");
        }
    }

    #[test]
    fn keep_agrees_with_keep_bits() {
        let rng = DropoutRng::new(0x1234_5678_9abc_def0, 7, 1, 2, 3);
        let t = keep_threshold(0.3);
        for row in [0u32, 1, 9, 77] {
            for col in 0..256u32 {
                let keep = rng.keep(row, col, t);
                let bits = rng.keep_bits(call_of(row, col), t);
                assert_eq!(keep, (bits >> byte_of(row, col)) & 1 == 1);
                assert_eq!(keep, dropout_keep(0x1234_5678_9abc_def0, 7, 1, 2, 3, row, col, t));
            }
        }
    }

    /// Drop fraction of an n_rows x n_cols mask.
    fn drop_fraction(seed: u64, offset: u64, b: u32, h: u32, p: f32, n_rows: u32, n_cols: u32) -> f64 {
        let rng = DropoutRng::new(seed, offset, b, h, 4);
        let t = keep_threshold(p);
        let mut kept = 0u64;
        // Every call of an n_rows x n_cols matrix (multiples of 16): 16 of them per 16 x 16 tile.
        for c1 in 0..n_rows / 4 {
            for c0 in 0..n_cols / 4 {
                kept += rng.keep_bits([c0, c1], t).count_ones() as u64;
            }
        }
        1.0 - kept as f64 / (n_rows as f64 * n_cols as f64)
    }

    #[test]
    fn drop_fraction_is_p() {
        for p in [0.1f32, 0.5] {
            for (seed, b, h) in [(0u64, 0, 0), (42, 1, 3), (u64::MAX, 0, 1)] {
                let f = drop_fraction(seed, 0, b, h, p, 512, 1024);
                assert!((f - p as f64).abs() <= 0.01, "p {p} seed {seed} (b, h) ({b}, {h}): dropped {f}");
            }
        }
        assert_eq!(drop_fraction(3, 0, 0, 0, 0.0, 64, 1024), 0.0);
    }

    #[test]
    fn streams_differ_across_batch_heads_seeds_offsets_and_are_reproducible() {
        let t = keep_threshold(0.5);
        let mask = |rng: DropoutRng| -> [u16; 64] {
            core::array::from_fn(|i| rng.keep_bits([i as u32 % 16, i as u32 / 16], t))
        };
        let base = mask(DropoutRng::new(9, 0, 0, 0, 4));
        assert_eq!(base, mask(DropoutRng::new(9, 0, 0, 0, 4)));
        for other in [
            DropoutRng::new(9, 0, 0, 1, 4),
            DropoutRng::new(9, 0, 1, 0, 4),
            DropoutRng::new(10, 0, 0, 0, 4),
            DropoutRng::new(9 | 1 << 40, 0, 0, 0, 4),
            DropoutRng::new(9, 8, 0, 0, 4),
            DropoutRng::new(9, 1 << 40, 0, 0, 4),
        ] {
            let m = mask(other);
            let same = base.iter().zip(&m).map(|(a, b)| (!(a ^ b)).count_ones()).sum::<u32>();
            // 1024 fair bits: about half agree; all agreeing would mean the same stream.
            assert!((400..624).contains(&same), "{other:?}: {same} of 1024 keep bits equal to the base stream");
        }
        // (b, h) is one subsequence: b * heads + h.
        assert_eq!(DropoutRng::new(9, 0, 1, 0, 4), DropoutRng::new(9, 0, 0, 4, 4));
        assert_eq!(DropoutRng::new(9, 4, 0, 0, 4), DropoutRng::new(9, 0, 1, 0, 4));
    }
}
