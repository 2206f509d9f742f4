//! `fast_div::divmod_u32` (the wgmma backward's division by a per-CTA count) against `/` and `%`,
//! with the exact reciprocal and with ones 1 ulp off either way (what `rcp.approx` may return).
use flashattn_kernels::fast_div::{divmod_u32, EXACT_BELOW};
use rand::{Rng, SeedableRng};

fn check(d: u32, n: u32) {
    let inv = 1.0 / d as f32;
    for inv in [inv, f32::from_bits(inv.to_bits() - 1), f32::from_bits(inv.to_bits() + 1)] {
        assert_eq!(divmod_u32(n, d, inv), (n / d, n % d), "n = {n}, d = {d}, inv = {inv:e}");
    }
}

#[test]
fn exact_for_small_divisors_and_every_dividend_near_their_multiples() {
    for d in 1..=600u32 {
        for k in [0u32, 1, 2, 3, 7, 100, 1000, 3000] {
            let m = k * d;
            for n in m.saturating_sub(2)..=m + 2 {
                check(d, n);
            }
        }
    }
}

#[test]
fn exact_at_random_and_at_the_float_path_limit() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for _ in 0..200_000 {
        let d = rng.random_range(1..EXACT_BELOW);
        check(d, rng.random_range(0..EXACT_BELOW));
        check(rng.random_range(1..5000), rng.random_range(0..EXACT_BELOW));
    }
    for d in [1, 2, 3, 7, 1000, 4093, EXACT_BELOW - 1, EXACT_BELOW, EXACT_BELOW + 1, u32::MAX] {
        for n in [0, 1, EXACT_BELOW - 2, EXACT_BELOW - 1, EXACT_BELOW, EXACT_BELOW + 1, u32::MAX] {
            check(d, n);
        }
    }
}
