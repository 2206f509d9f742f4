//! Tests of the f64 CPU reference attention (the oracle of all GPU tests):
//! hand-computed cases, finite-difference gradients, GQA, row/rounded variants.

use flashattn::reference::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn random_vec(rng: &mut StdRng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn random_mask(rng: &mut StdRng, n: usize, keep_prob: f64) -> Vec<bool> {
    (0..n).map(|_| rng.random_bool(keep_prob)).collect()
}

fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

fn assert_close(actual: &[f64], expected: &[f64], tol: f64, what: &str) {
    let err = max_abs_diff(actual, expected);
    assert!(err <= tol, "{what}: max abs diff {err:e} > {tol:e}\n actual   {actual:?}\n expected {expected:?}");
}

fn shape(batch: usize, sq: usize, sk: usize, heads: usize, heads_kv: usize, d: usize) -> Shape {
    Shape { batch, seqlen_q: sq, seqlen_k: sk, heads, heads_kv, head_dim: d }
}

/// Random q, k, v, dO for a shape.
struct Inputs {
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    d_o: Vec<f64>,
}

fn random_inputs(rng: &mut StdRng, s: &Shape) -> Inputs {
    Inputs {
        q: random_vec(rng, s.q_len()),
        k: random_vec(rng, s.kv_len()),
        v: random_vec(rng, s.kv_len()),
        d_o: random_vec(rng, s.q_len()),
    }
}

// ---------------------------------------------------------------------------
// 1. Hand-computed tiny cases
// ---------------------------------------------------------------------------

#[test]
fn single_key_outputs_its_value_row() {
    let s = shape(1, 1, 1, 1, 1, 2);
    let opts = RefOptions::new(2);
    let (q, k, v) = ([1.0, 2.0], [3.0, -1.0], [5.0, 7.0]);
    let out = forward(&q, &k, &v, &s, &opts);
    assert_eq!(out.o, v);
    let expected_lse = (1.0 * 3.0 - 2.0 * 1.0) / 2f64.sqrt();
    assert!((out.lse[0] - expected_lse).abs() < 1e-15, "lse {}", out.lse[0]);
    // Causal with a single key is the same.
    let causal = forward(&q, &k, &v, &s, &RefOptions { causal: true, ..opts });
    assert_eq!(causal.o, v);
}

#[test]
fn one_query_two_keys_hand_softmax() {
    let s = shape(1, 1, 2, 1, 1, 2);
    let opts = RefOptions { softmax_scale: 1.0, ..RefOptions::new(2) };
    // Scores: q.k0 = 1, q.k1 = 0.
    let (q, k, v) = ([1.0, 0.0], [1.0, 0.0, 0.0, 1.0], [1.0, 2.0, 3.0, 4.0]);
    let e = 1f64.exp();
    let (w0, w1) = (e / (e + 1.0), 1.0 / (e + 1.0));
    let out = forward(&q, &k, &v, &s, &opts);
    assert_close(&out.o, &[w0 + 3.0 * w1, 2.0 * w0 + 4.0 * w1], 1e-15, "o");
    assert!((out.lse[0] - (e + 1.0).ln()).abs() < 1e-15);

    // softmax_scale multiplies the scores before the softmax (scale 2: scores 2, 0).
    let out2 = forward(&q, &k, &v, &s, &RefOptions { softmax_scale: 2.0, ..opts });
    let e2 = 2f64.exp();
    let (u0, u1) = (e2 / (e2 + 1.0), 1.0 / (e2 + 1.0));
    assert_close(&out2.o, &[u0 + 3.0 * u1, 2.0 * u0 + 4.0 * u1], 1e-15, "o scaled");
    assert!((out2.lse[0] - (e2 + 1.0).ln()).abs() < 1e-15);
}

#[test]
fn causal_square_row0_sees_only_key0() {
    let s = shape(1, 2, 2, 1, 1, 1);
    let opts = RefOptions { causal: true, softmax_scale: 1.0, dropout: None };
    let (q, k, v) = ([2.0, 1.0], [1.0, -1.0], [10.0, 20.0]);
    let out = forward(&q, &k, &v, &s, &opts);
    // Row 0: only key 0 (score 2).
    assert_eq!(out.o[0], 10.0);
    assert_eq!(out.lse[0], 2.0);
    // Row 1: scores 1, -1 over both keys.
    let (a, b) = (1f64.exp(), (-1f64).exp());
    assert!((out.o[1] - (10.0 * a + 20.0 * b) / (a + b)).abs() < 1e-13);
    assert!((out.lse[1] - (a + b).ln()).abs() < 1e-15);
    assert!(!is_allowed(&s, true, 0, 1));
    assert!(is_allowed(&s, true, 1, 1));
    assert!(is_allowed(&s, false, 0, 1));
}

#[test]
fn causal_more_queries_than_keys_has_fully_masked_rows() {
    // seqlen_q = 3, seqlen_k = 2: offset -1, so row 0 sees nothing,
    // row 1 sees key 0, row 2 sees keys 0 and 1.
    let s = shape(1, 3, 2, 1, 1, 1);
    let opts = RefOptions { causal: true, softmax_scale: 1.0, dropout: None };
    let (q, k, v) = ([1.0, 1.0, 0.0], [0.5, 0.25], [3.0, 5.0]);
    let out = forward(&q, &k, &v, &s, &opts);
    assert_eq!(out.o[0], 0.0);
    assert_eq!(out.lse[0], f64::NEG_INFINITY);
    assert_eq!(out.o[1], 3.0);
    assert_eq!(out.lse[1], 0.5);
    assert!((out.o[2] - 4.0).abs() < 1e-15, "row 2 has equal scores: mean of v");
    assert!((out.lse[2] - 2f64.ln()).abs() < 1e-15);
    assert!((0..2).all(|j| !is_allowed(&s, true, 0, j)));

    // The masked row contributes no gradient, and its own dq row is zero.
    let d_o = [1.0, 0.0, 0.0];
    let g = backward(&q, &k, &v, &d_o, &s, &opts);
    assert_eq!(g.dq, [0.0; 3]);
    assert_eq!(g.dk, [0.0; 2]);
    assert_eq!(g.dv, [0.0; 2]);

    let (row, lse) = forward_row(&q, &k, &v, &s, &opts, 0, 0, 0);
    assert_eq!((row, lse), (vec![0.0], f64::NEG_INFINITY));
}

#[test]
fn causal_fewer_queries_than_keys_is_bottom_right_aligned() {
    // seqlen_q = 2, seqlen_k = 4: row 0 sees keys 0..=2, row 1 sees all four.
    // Zero queries make all scores 0, so outputs are plain means of value rows.
    let s = shape(1, 2, 4, 1, 1, 2);
    let opts = RefOptions { causal: true, ..RefOptions::new(2) };
    let q = [0.0; 4];
    let k = [0.3, -0.7, 1.1, 0.2, -0.4, 0.9, 0.5, 0.5];
    let v = [1.0, 10.0, 2.0, 20.0, 6.0, 60.0, 100.0, 1000.0];
    let out = forward(&q, &k, &v, &s, &opts);
    assert_close(&out.o, &[3.0, 30.0, 27.25, 272.5], 1e-12, "o");
    assert_close(&out.lse, &[3f64.ln(), 4f64.ln()], 1e-15, "lse");
    assert!(is_allowed(&s, true, 0, 2));
    assert!(!is_allowed(&s, true, 0, 3));
    assert!(is_allowed(&s, true, 1, 3));
}

#[test]
fn dropout_hand_case_rescales_kept_and_keeps_undropped_lse() {
    // Equal scores: P = [1/2, 1/2]; keep only key 0 with p = 0.5 -> weights [1, 0].
    let s = shape(1, 1, 2, 1, 1, 1);
    let mask = [true, false];
    let opts = RefOptions { causal: false, softmax_scale: 1.0, dropout: Some((&mask, 0.5)) };
    let out = forward(&[0.0], &[1.0, 2.0], &[3.0, 4.0], &s, &opts);
    assert_eq!(out.o, [3.0]);
    assert!((out.lse[0] - 2f64.ln()).abs() < 1e-15);

    // All kept with p = 0 is the same as no dropout.
    let mut rng = StdRng::seed_from_u64(7);
    let s = shape(2, 3, 4, 2, 1, 4);
    let x = random_inputs(&mut rng, &s);
    let all = vec![true; s.mask_len()];
    let plain = forward(&x.q, &x.k, &x.v, &s, &RefOptions::new(4));
    let kept = forward(&x.q, &x.k, &x.v, &s, &RefOptions { dropout: Some((&all, 0.0)), ..RefOptions::new(4) });
    assert_close(&kept.o, &plain.o, 0.0, "dropout p=0");
}

#[test]
fn huge_scores_do_not_overflow() {
    let s = shape(1, 2, 3, 1, 1, 1);
    let opts = RefOptions { softmax_scale: 1.0, ..RefOptions::new(1) };
    let (q, k, v) = ([1000.0, -1000.0], [1.0, 2.0, 0.0], [1.0, 2.0, 3.0]);
    let out = forward(&q, &k, &v, &s, &opts);
    // Row 0: score 2000 dominates -> v1; row 1: score 0 dominates -> v2.
    assert_close(&out.o, &[2.0, 3.0], 1e-12, "o");
    assert_close(&out.lse, &[2000.0, 0.0], 1e-12, "lse");
    let g = backward(&q, &k, &v, &[1.0, 1.0], &s, &opts);
    assert!(g.dq.iter().chain(&g.dk).chain(&g.dv).all(|x| x.is_finite()));
}

#[test]
fn degenerate_sizes_do_not_panic() {
    let mut rng = StdRng::seed_from_u64(3);
    for (sq, sk) in [(1, 1), (1, 5), (5, 1), (0, 3), (3, 0)] {
        for causal in [false, true] {
            let s = shape(1, sq, sk, 2, 1, 3);
            let x = random_inputs(&mut rng, &s);
            let opts = RefOptions { causal, ..RefOptions::new(3) };
            let out = forward(&x.q, &x.k, &x.v, &s, &opts);
            assert_eq!(out.o.len(), s.q_len());
            assert!(out.o.iter().all(|x| x.is_finite()));
            let g = backward(&x.q, &x.k, &x.v, &x.d_o, &s, &opts);
            assert!(g.dq.iter().chain(&g.dk).chain(&g.dv).all(|x| x.is_finite()));
        }
    }
}

// ---------------------------------------------------------------------------
// 2. Backward vs central finite differences
// ---------------------------------------------------------------------------

/// `L = sum(o * dO)`.
fn loss(q: &[f64], k: &[f64], v: &[f64], d_o: &[f64], s: &Shape, opts: &RefOptions) -> f64 {
    forward(q, k, v, s, opts).o.iter().zip(d_o).map(|(o, g)| o * g).sum()
}

/// Central differences of `L` with respect to every element of `x` (one of q, k, v).
fn numeric_gradient(x: &Inputs, which: usize, s: &Shape, opts: &RefOptions) -> Vec<f64> {
    const H: f64 = 1e-5;
    let len = if which == 0 { x.q.len() } else { x.k.len() };
    (0..len)
        .map(|idx| {
            let eval = |delta: f64| {
                let (mut q, mut k, mut v) = (x.q.clone(), x.k.clone(), x.v.clone());
                [&mut q, &mut k, &mut v][which][idx] += delta;
                loss(&q, &k, &v, &x.d_o, s, opts)
            };
            (eval(H) - eval(-H)) / (2.0 * H)
        })
        .collect()
}

#[test]
fn backward_matches_finite_differences() {
    let mut rng = StdRng::seed_from_u64(42);
    let mut cases = 0;
    for (batch, sq, sk) in [(1, 3, 3), (2, 4, 5), (1, 5, 3), (2, 3, 4)] {
        for heads_kv in [1, 2] {
            for causal in [false, true] {
                for with_dropout in [false, true] {
                    let s = shape(batch, sq, sk, 2, heads_kv, 4);
                    let x = random_inputs(&mut rng, &s);
                    let mask = random_mask(&mut rng, s.mask_len(), 0.7);
                    let opts = RefOptions {
                        causal,
                        softmax_scale: 0.8,
                        dropout: with_dropout.then_some((mask.as_slice(), 0.3)),
                    };
                    let g = backward(&x.q, &x.k, &x.v, &x.d_o, &s, &opts);
                    for (which, analytic) in [(0, &g.dq), (1, &g.dk), (2, &g.dv)] {
                        let numeric = numeric_gradient(&x, which, &s, &opts);
                        let scale = max_abs(&numeric);
                        assert!(scale > 1e-2, "degenerate case, gradient {which} is ~0");
                        let err = max_abs_diff(analytic, &numeric);
                        assert!(
                            err <= 1e-6 * scale,
                            "grad {which} err {err:e} (scale {scale:e}) for {s:?} causal={causal} dropout={with_dropout}"
                        );
                    }
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 32);
}

// ---------------------------------------------------------------------------
// 3. GQA / MQA equals explicitly repeated K/V heads
// ---------------------------------------------------------------------------

/// Copies each K/V head to all the query heads of its group (heads_kv -> heads).
fn repeat_kv(x: &[f64], s: &Shape) -> Vec<f64> {
    let group = s.heads / s.heads_kv;
    let d = s.head_dim;
    let mut out = Vec::with_capacity(s.batch * s.seqlen_k * s.heads * d);
    for bj in 0..s.batch * s.seqlen_k {
        for h in 0..s.heads {
            let start = (bj * s.heads_kv + h / group) * d;
            out.extend_from_slice(&x[start..start + d]);
        }
    }
    out
}

/// Sums the per-query-head gradients of each group back to heads_kv heads.
fn sum_groups(dx: &[f64], s: &Shape) -> Vec<f64> {
    let group = s.heads / s.heads_kv;
    let d = s.head_dim;
    let mut out = vec![0.0; s.kv_len()];
    for bj in 0..s.batch * s.seqlen_k {
        for h in 0..s.heads {
            let src = (bj * s.heads + h) * d;
            let dst = (bj * s.heads_kv + h / group) * d;
            for t in 0..d {
                out[dst + t] += dx[src + t];
            }
        }
    }
    out
}

#[test]
fn gqa_equals_repeated_kv_heads() {
    let mut rng = StdRng::seed_from_u64(11);
    for heads_kv in [1, 2] {
        for causal in [false, true] {
            let s = shape(2, 5, 7, 4, heads_kv, 8);
            let full = Shape { heads_kv: s.heads, ..s };
            let x = random_inputs(&mut rng, &s);
            let mask = random_mask(&mut rng, s.mask_len(), 0.8);
            let opts = RefOptions { causal, softmax_scale: 0.5, dropout: Some((&mask, 0.2)) };
            let (k_rep, v_rep) = (repeat_kv(&x.k, &s), repeat_kv(&x.v, &s));

            let gqa = forward(&x.q, &x.k, &x.v, &s, &opts);
            let rep = forward(&x.q, &k_rep, &v_rep, &full, &opts);
            assert_close(&gqa.o, &rep.o, 1e-14, "o");
            assert_close(&gqa.lse, &rep.lse, 1e-14, "lse");

            let g = backward(&x.q, &x.k, &x.v, &x.d_o, &s, &opts);
            let gr = backward(&x.q, &k_rep, &v_rep, &x.d_o, &full, &opts);
            assert_close(&g.dq, &gr.dq, 1e-13, "dq");
            assert_close(&g.dk, &sum_groups(&gr.dk, &s), 1e-13, "dk");
            assert_close(&g.dv, &sum_groups(&gr.dv, &s), 1e-13, "dv");
        }
    }
}

// ---------------------------------------------------------------------------
// 4. forward_row and the rounded baselines
// ---------------------------------------------------------------------------

#[test]
fn forward_row_matches_forward() {
    let mut rng = StdRng::seed_from_u64(5);
    let s = shape(2, 6, 4, 4, 2, 8);
    let x = random_inputs(&mut rng, &s);
    let mask = random_mask(&mut rng, s.mask_len(), 0.9);
    for causal in [false, true] {
        for dropout in [None, Some((mask.as_slice(), 0.1))] {
            let opts = RefOptions { causal, softmax_scale: 0.3, dropout };
            let full = forward(&x.q, &x.k, &x.v, &s, &opts);
            for (b, h, i) in [(0, 0, 0), (0, 3, 1), (1, 2, 5), (1, 1, 3)] {
                let (row, lse) = forward_row(&x.q, &x.k, &x.v, &s, &opts, b, h, i);
                let off = ((b * s.seqlen_q + i) * s.heads + h) * s.head_dim;
                assert_eq!(row, &full.o[off..off + s.head_dim]);
                assert_eq!(lse, full.lse[(b * s.heads + h) * s.seqlen_q + i]);
            }
        }
    }
}

#[test]
fn rounded_with_identity_equals_exact() {
    let mut rng = StdRng::seed_from_u64(9);
    let s = shape(2, 5, 6, 2, 1, 8);
    let x = random_inputs(&mut rng, &s);
    let mask = random_mask(&mut rng, s.mask_len(), 0.8);
    let identity = |v: f64| v;
    for causal in [false, true] {
        let opts = RefOptions { causal, softmax_scale: 0.4, dropout: Some((&mask, 0.2)) };
        let o = forward_rounded(&x.q, &x.k, &x.v, &s, &opts, &identity);
        assert_close(&o, &forward(&x.q, &x.k, &x.v, &s, &opts).o, 1e-15, "forward");
        let g = backward_rounded(&x.q, &x.k, &x.v, &x.d_o, &s, &opts, &identity);
        let e = backward(&x.q, &x.k, &x.v, &x.d_o, &s, &opts);
        assert_close(&g.dq, &e.dq, 1e-15, "dq");
        assert_close(&g.dk, &e.dk, 1e-15, "dk");
        assert_close(&g.dv, &e.dv, 1e-15, "dv");
    }
}

/// Pins down *where* the rounded baselines round, with a deliberately coarse
/// rounding (to integers) that makes every rounding step visible.
#[test]
fn rounded_baselines_round_s_p_dp_ds_and_outputs() {
    let s = shape(1, 1, 2, 1, 1, 1);
    let opts = RefOptions { causal: false, softmax_scale: 1.0, dropout: None };
    let to_int = |x: f64| x.round();
    let (q, k, v, d_o) = ([1.0], [0.3, -0.2], [1.0, 2.4], [1.4]);
    // S = round([0.3, -0.2]) = [0, 0] -> P = [0.5, 0.5] -> round(P) = [1, 1]
    // -> O = round(1 + 2.4) = 3. (Missing any one of the three roundings gives 1, 2 or 3.4.)
    assert_eq!(forward_rounded(&q, &k, &v, &s, &opts, &to_int), [3.0]);

    // Backward: Pd = [1, 1]; dV = round(Pd * 1.4) = [1, 1];
    // dP = round(dO v) = round([1.4, 3.36]) = [1, 3]; D = sum(round(P) dP) = 4;
    // dS = round(round(P) (dP - D)) = [-3, -1]; dQ = round(-3*0.3 + -1*-0.2) = round(-0.7) = -1;
    // dK = round(dS q) = [-3, -1].
    let g = backward_rounded(&q, &k, &v, &d_o, &s, &opts, &to_int);
    assert_eq!((g.dq, g.dk, g.dv), (vec![-1.0], vec![-3.0, -1.0], vec![1.0, 1.0]));

    // Dropout is applied to P before rounding: keep key 1 only, p = 0.6 ->
    // Pd = round([0, 0.5 / 0.4]) = [0, 1] -> O = round(2.4) = 2.
    let mask = [false, true];
    let drop = RefOptions { dropout: Some((&mask, 0.6)), ..opts };
    assert_eq!(forward_rounded(&q, &k, &v, &s, &drop, &to_int), [2.0]);

    // Backward with that dropout and dO = 1.125: dV = round(Pd dO) = [0, 1];
    // dPd = round(dO v) = round([1.125, 2.7]) = [1, 3]; dP = round(dPd * [0, 2.5]) = [0, 8]
    // (dropout applied to the *rounded* dPd: unrounded would give round(6.75) = 7);
    // D = 8; dS = [-8, 0]; dQ = round(-8 * 0.3) = -2; dK = [-8, 0].
    let g = backward_rounded(&q, &k, &v, &[1.125], &s, &drop, &to_int);
    assert_eq!((g.dq, g.dk, g.dv), (vec![-2.0], vec![-8.0, 0.0], vec![0.0, 1.0]));
}

/// Inputs already representable in the low precision, like real GPU test data.
fn rounded_inputs(x: &Inputs, round: fn(f64) -> f64) -> Inputs {
    let r = |v: &[f64]| v.iter().map(|&t| round(t)).collect();
    Inputs { q: r(&x.q), k: r(&x.k), v: r(&x.v), d_o: r(&x.d_o) }
}

#[test]
fn low_precision_baselines_have_small_nonzero_error() {
    let mut rng = StdRng::seed_from_u64(13);
    let s = shape(1, 64, 80, 2, 1, 32);
    let raw = random_inputs(&mut rng, &s);
    let mut errors = Vec::new();
    // bf16 has 8 significant bits (unit roundoff 2^-9), f16 has 11 (2^-12).
    for (round, unit) in [(round_to_bf16 as fn(f64) -> f64, 2f64.powi(-9)), (round_to_f16, 2f64.powi(-12))] {
        let x = rounded_inputs(&raw, round);
        let opts = RefOptions { causal: true, ..RefOptions::new(32) };
        let exact = forward(&x.q, &x.k, &x.v, &s, &opts);
        let o = forward_rounded(&x.q, &x.k, &x.v, &s, &opts, &round);
        let err_o = max_abs_diff(&o, &exact.o);
        // Nonzero (the rounding really happens) but only a few units of roundoff.
        assert!(err_o > 0.0 && err_o < 8.0 * unit * max_abs(&exact.o).max(1.0), "o err {err_o:e}");
        assert!(o.iter().all(|&t| round(t) == t), "outputs are representable");

        let g_exact = backward(&x.q, &x.k, &x.v, &x.d_o, &s, &opts);
        let g = backward_rounded(&x.q, &x.k, &x.v, &x.d_o, &s, &opts, &round);
        for (name, lo, hi) in [("dq", &g.dq, &g_exact.dq), ("dk", &g.dk, &g_exact.dk), ("dv", &g.dv, &g_exact.dv)] {
            let err = max_abs_diff(lo, hi);
            assert!(err > 0.0 && err < 16.0 * unit * max_abs(hi).max(1.0), "{name} err {err:e}");
            assert!(lo.iter().all(|&t| round(t) == t), "{name} is representable");
        }
        errors.push(err_o);
    }
    assert!(errors[1] < errors[0], "f16 ({:e}) must be more accurate than bf16 ({:e})", errors[1], errors[0]);
}

#[test]
fn rounding_helpers_basic_values() {
    assert_eq!(round_to_bf16(1.0), 1.0);
    assert_eq!(round_to_bf16(1.0 + 2f64.powi(-8)), 1.0); // tie -> even
    assert_eq!(round_to_bf16(1.0 + 2f64.powi(-7)), 1.0 + 2f64.powi(-7));
    assert_eq!(round_to_bf16(std::f64::consts::PI), 3.140625);
    assert_eq!(round_to_f16(std::f64::consts::PI), 3.140625);
    assert_eq!(round_to_f16(0.1), 0.0999755859375);
    assert_eq!(round_to_f16(65504.0), 65504.0);
    assert_eq!(round_to_f16(70000.0), f64::INFINITY);
    assert_eq!(round_to_f16(-70000.0), f64::NEG_INFINITY);
    assert_eq!(round_to_f16(2f64.powi(-24)), 2f64.powi(-24)); // smallest subnormal
    assert_eq!(round_to_f16(2f64.powi(-26)), 0.0);
    let bf16_max = (2.0 - 2f64.powi(-7)) * 2f64.powi(127);
    assert_eq!(round_to_bf16(3.39e38), bf16_max);
    assert_eq!(round_to_bf16(3.4e38), f64::INFINITY); // above the midpoint to 2^128
    assert!((round_to_bf16(1e38) / 1e38 - 1.0).abs() <= 2f64.powi(-8));
    assert!(round_to_f16(f64::NAN).is_nan());
}

// ---------------------------------------------------------------------------
// 5. Error metric
// ---------------------------------------------------------------------------

#[test]
fn max_abs_diff_never_lets_nan_pass() {
    assert_eq!(max_abs_diff(&[1.0, f64::NAN], &[1.0, 2.0]), f64::INFINITY);
    assert_eq!(max_abs_diff(&[1.0, 2.0], &[1.0, f64::NAN]), f64::INFINITY);
    assert_eq!(max_abs_diff(&[f64::NAN], &[f64::NAN]), f64::INFINITY);
    assert_eq!(max_abs_diff(&[1.0, 2.0], &[1.5, 1.0]), 1.0);
    assert_eq!(max_abs_diff(&[], &[]), 0.0);
    assert_eq!(max_abs_diff(&[1.0], &[1.0, 2.0]), f64::INFINITY, "length mismatch");
    // Matching -inf (fully masked lse rows) is not an error; a one-sided inf is.
    assert_eq!(max_abs_diff(&[f64::NEG_INFINITY], &[f64::NEG_INFINITY]), 0.0);
    assert_eq!(max_abs_diff(&[f64::NEG_INFINITY], &[0.0]), f64::INFINITY);
}

// ---------------------------------------------------------------------------
// Dropout masks from Philox (flashattn::dropout)
// ---------------------------------------------------------------------------

#[test]
fn philox_mask_with_p_zero_equals_no_dropout() {
    use flashattn::dropout::{dropout_mask, reference_p};
    let mut rng = StdRng::seed_from_u64(31);
    let s = shape(2, 17, 70, 4, 2, 8);
    let x = random_inputs(&mut rng, &s);
    let mask = dropout_mask(&s, 0.0, 1234, 0);
    assert!(mask.iter().all(|&k| k));
    for causal in [false, true] {
        let plain = RefOptions { causal, ..RefOptions::new(8) };
        let with = RefOptions { dropout: Some((&mask, reference_p(0.0))), ..plain };
        let (a, b) = (forward(&x.q, &x.k, &x.v, &s, &plain), forward(&x.q, &x.k, &x.v, &s, &with));
        assert_eq!((&a.o, &a.lse), (&b.o, &b.lse));
        let (ga, gb) = (backward(&x.q, &x.k, &x.v, &x.d_o, &s, &plain), backward(&x.q, &x.k, &x.v, &x.d_o, &s, &with));
        assert_eq!((&ga.dq, &ga.dk, &ga.dv), (&gb.dq, &gb.dk, &gb.dv));
    }
}

#[test]
fn philox_mask_dropout_is_unbiased_in_expectation() {
    // Averaged over seeds, dropout's output is the undropped output (kept weights are scaled by
    // the exact inverse keep probability): a check that reference_p matches the mask's rate.
    use flashattn::dropout::{dropout_mask, reference_p};
    let mut rng = StdRng::seed_from_u64(32);
    let s = shape(1, 4, 64, 2, 2, 8);
    let x = random_inputs(&mut rng, &s);
    let plain = forward(&x.q, &x.k, &x.v, &s, &RefOptions::new(8));
    let p = 0.1;
    let seeds = 400;
    let mut mean = vec![0.0; s.q_len()];
    for seed in 0..seeds {
        let mask = dropout_mask(&s, p, seed, 0);
        let out =
            forward(&x.q, &x.k, &x.v, &s, &RefOptions { dropout: Some((&mask, reference_p(p))), ..RefOptions::new(8) });
        assert_eq!(out.lse, plain.lse, "the LSE is of the softmax before dropout");
        for (m, o) in mean.iter_mut().zip(&out.o) {
            *m += o / seeds as f64;
        }
    }
    // Each output is a mean of 64 weighted values; 400 seeds leave a standard error of ~0.01.
    assert_close(&mean, &plain.o, 0.05, "mean over seeds of the dropped-out output");
}
