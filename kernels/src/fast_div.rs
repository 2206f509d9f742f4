//! Division of small unsigned integers through a float reciprocal.
//!
//! The GPU has no integer divider: `n / d` for a runtime `d` is a sequence of ~20 dependent
//! instructions. The masked wgmma backward's block-mask scan divides a block index by a per-CTA
//! count for every kept block (call `s5c8`: the masked kernel ran 4% more instructions than the
//! plain one but 13% longer, with more fixed-latency stalls). Only `d` stays live: the reciprocal
//! is one MUFU op at each use (`rcp.approx`, within 1 ulp); a divider kept in registers across
//! the loop (and this division in `block_of` of every build) made those kernels spill. Compiled
//! for the host too, where `tests/fast_div.rs` checks it against `/` and `%` with reciprocals 1
//! ulp off either way.

/// Below this, for both `n` and `d`, `trunc(n * inv)` in f32 with `inv` within 1 ulp of `1 / d`
/// is `n / d` or one less: the relative error of the product (< 1.5 * 2^-23) stays below
/// `1 / ((n / d + 1) d)`.
pub const EXACT_BELOW: u32 = 1 << 21;

/// `(n / d, n % d)` (`d` > 0), given `inv` within 1 ulp of `1 / d`: the float estimate and one
/// correction step below [`EXACT_BELOW`], the integer division above it.
#[inline(always)]
pub fn divmod_u32(n: u32, d: u32, inv: f32) -> (u32, u32) {
    if n >= EXACT_BELOW || d >= EXACT_BELOW {
        return (n / d, n % d);
    }
    let mut q = (n as f32 * inv) as u32;
    let mut r = n - q * d;
    if r >= d {
        q += 1;
        r -= d;
    }
    (q, r)
}
