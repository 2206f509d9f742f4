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
    let opts = RefOptions { causal: true, softmax_scale: 1.0, ..RefOptions::new(1) };
    let (q, k, v) = ([2.0, 1.0], [1.0, -1.0], [10.0, 20.0]);
    let out = forward(&q, &k, &v, &s, &opts);
    // Row 0: only key 0 (score 2).
    assert_eq!(out.o[0], 10.0);
    assert_eq!(out.lse[0], 2.0);
    // Row 1: scores 1, -1 over both keys.
    let (a, b) = (1f64.exp(), (-1f64).exp());
    assert!((out.o[1] - (10.0 * a + 20.0 * b) / (a + b)).abs() < 1e-13);
    assert!((out.lse[1] - (a + b).ln()).abs() < 1e-15);
    assert!(!is_allowed(&s, &opts, 0, 0, 1));
    assert!(is_allowed(&s, &opts, 0, 1, 1));
    assert!(is_allowed(&s, &RefOptions::new(1), 0, 0, 1));
}

#[test]
fn causal_more_queries_than_keys_has_fully_masked_rows() {
    // seqlen_q = 3, seqlen_k = 2: offset -1, so row 0 sees nothing,
    // row 1 sees key 0, row 2 sees keys 0 and 1.
    let s = shape(1, 3, 2, 1, 1, 1);
    let opts = RefOptions { causal: true, softmax_scale: 1.0, ..RefOptions::new(1) };
    let (q, k, v) = ([1.0, 1.0, 0.0], [0.5, 0.25], [3.0, 5.0]);
    let out = forward(&q, &k, &v, &s, &opts);
    assert_eq!(out.o[0], 0.0);
    assert_eq!(out.lse[0], f64::NEG_INFINITY);
    assert_eq!(out.o[1], 3.0);
    assert_eq!(out.lse[1], 0.5);
    assert!((out.o[2] - 4.0).abs() < 1e-15, "row 2 has equal scores: mean of v");
    assert!((out.lse[2] - 2f64.ln()).abs() < 1e-15);
    assert!((0..2).all(|j| !is_allowed(&s, &opts, 0, 0, j)));

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
    assert!(is_allowed(&s, &opts, 0, 0, 2));
    assert!(!is_allowed(&s, &opts, 0, 0, 3));
    assert!(is_allowed(&s, &opts, 0, 1, 3));
}

#[test]
fn dropout_hand_case_rescales_kept_and_keeps_undropped_lse() {
    // Equal scores: P = [1/2, 1/2]; keep only key 0 with p = 0.5 -> weights [1, 0].
    let s = shape(1, 1, 2, 1, 1, 1);
    let mask = [true, false];
    let opts = RefOptions { softmax_scale: 1.0, dropout: Some((&mask, 0.5)), ..RefOptions::new(1) };
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
        let s = shape(1, sq, sk, 2, 1, 3);
        let ones = [1u8; 4];
        let mask = RefBlockMask { data: &ones[..sq.div_ceil(4) * sk.div_ceil(4)], heads: 1, block: 4 };
        for (causal, window) in [(false, None), (true, None), (false, Some(0)), (true, Some(1))] {
            let x = random_inputs(&mut rng, &s);
            let opts = RefOptions {
                causal,
                window_left: window,
                window_right: window,
                softcap: 1.0,
                alibi_slopes: Some(&[0.5, 0.25]),
                block_mask: window.map(|_| mask),
                ..RefOptions::new(3)
            };
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

/// Asserts that [`backward`] matches central finite differences of `L` for
/// every element of q, k and v (relative to the largest gradient entry).
fn assert_backward_matches_finite_differences(x: &Inputs, s: &Shape, opts: &RefOptions, what: &str) {
    let g = backward(&x.q, &x.k, &x.v, &x.d_o, s, opts);
    for (which, analytic) in [(0, &g.dq), (1, &g.dk), (2, &g.dv)] {
        let numeric = numeric_gradient(x, which, s, opts);
        let scale = max_abs(&numeric);
        assert!(scale > 1e-2, "{what}: degenerate case, gradient {which} is ~0");
        let err = max_abs_diff(analytic, &numeric);
        assert!(err <= 1e-6 * scale, "{what}: grad {which} err {err:e} (scale {scale:e})");
    }
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
                        ..RefOptions::new(4)
                    };
                    let what = format!("{s:?} causal={causal} dropout={with_dropout}");
                    assert_backward_matches_finite_differences(&x, &s, &opts, &what);
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
            let opts = RefOptions { causal, softmax_scale: 0.5, dropout: Some((&mask, 0.2)), ..RefOptions::new(8) };
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
            let opts = RefOptions { causal, softmax_scale: 0.3, dropout, ..RefOptions::new(8) };
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
        let opts = RefOptions { causal, softmax_scale: 0.4, dropout: Some((&mask, 0.2)), ..RefOptions::new(8) };
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
    let opts = RefOptions { softmax_scale: 1.0, ..RefOptions::new(1) };
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

// ---------------------------------------------------------------------------
// 6. Sliding window, softcap, ALiBi, block mask
// ---------------------------------------------------------------------------

/// Query/key lengths with `seqlen_q` equal to, smaller and larger than `seqlen_k`.
const SEQLENS: [(usize, usize); 3] = [(5, 5), (3, 7), (7, 3)];

/// Attention forward written naively and independently of the reference:
/// `score([b, h, i, j], q_i . k_j)` is the score entering the softmax, `None`
/// for a masked entry; `dropout` is `(keep, p)` as in [`RefOptions`]. Returns
/// `(o, lse)`; a row without any score gets `o = 0` and `lse = ln(0) = -inf`.
fn naive_forward(
    x: &Inputs,
    s: &Shape,
    dropout: Option<(&[bool], f64)>,
    score: impl Fn([usize; 4], f64) -> Option<f64>,
) -> (Vec<f64>, Vec<f64>) {
    let d = s.head_dim;
    let group = s.heads / s.heads_kv;
    let mut o = vec![0.0; s.q_len()];
    let mut lse = vec![0.0; s.lse_len()];
    for b in 0..s.batch {
        for h in 0..s.heads {
            for i in 0..s.seqlen_q {
                let q_at = ((b * s.seqlen_q + i) * s.heads + h) * d;
                let kv_at = |j: usize| ((b * s.seqlen_k + j) * s.heads_kv + h / group) * d;
                let scores: Vec<(usize, f64)> = (0..s.seqlen_k)
                    .filter_map(|j| {
                        let qk: f64 = (0..d).map(|t| x.q[q_at + t] * x.k[kv_at(j) + t]).sum();
                        score([b, h, i, j], qk).map(|sc| (j, sc))
                    })
                    .collect();
                let sum: f64 = scores.iter().map(|&(_, sc)| sc.exp()).sum();
                lse[(b * s.heads + h) * s.seqlen_q + i] = sum.ln();
                for &(j, sc) in &scores {
                    let kept = dropout.map_or(1.0, |(keep, p)| {
                        if keep[((b * s.heads + h) * s.seqlen_q + i) * s.seqlen_k + j] {
                            1.0 / (1.0 - p)
                        } else {
                            0.0
                        }
                    });
                    for t in 0..d {
                        o[q_at + t] += sc.exp() / sum * kept * x.v[kv_at(j) + t];
                    }
                }
            }
        }
    }
    (o, lse)
}

/// `i + seqlen_k - seqlen_q`: the bottom-right aligned diagonal key of row `i`.
fn diag(s: &Shape, i: usize) -> i64 {
    i as i64 + s.seqlen_k as i64 - s.seqlen_q as i64
}

/// Asserts that the reference forward matches [`naive_forward`].
fn assert_forward_matches_naive(x: &Inputs, s: &Shape, opts: &RefOptions, naive: (Vec<f64>, Vec<f64>), what: &str) {
    let out = forward(&x.q, &x.k, &x.v, s, opts);
    assert_close(&out.o, &naive.0, 1e-13, &format!("{what}: o"));
    assert_close(&out.lse, &naive.1, 1e-13, &format!("{what}: lse"));
}

/// Asserts that two option sets give bit-identical forward and backward results.
fn assert_same_results(x: &Inputs, s: &Shape, a: &RefOptions, b: &RefOptions, what: &str) {
    let (fa, fb) = (forward(&x.q, &x.k, &x.v, s, a), forward(&x.q, &x.k, &x.v, s, b));
    assert_eq!((&fa.o, &fa.lse), (&fb.o, &fb.lse), "{what}: forward");
    let ga = backward(&x.q, &x.k, &x.v, &x.d_o, s, a);
    let gb = backward(&x.q, &x.k, &x.v, &x.d_o, s, b);
    assert_eq!((&ga.dq, &ga.dk, &ga.dv), (&gb.dq, &gb.dk, &gb.dv), "{what}: backward");
}

/// Multiplies q and k by `factor` (larger scores).
fn scale_qk(x: &mut Inputs, factor: f64) {
    for t in x.q.iter_mut().chain(x.k.iter_mut()) {
        *t *= factor;
    }
}

#[test]
fn window_right_zero_is_causal() {
    let mut rng = StdRng::seed_from_u64(51);
    for (sq, sk) in SEQLENS {
        let s = shape(2, sq, sk, 2, 1, 4);
        let x = random_inputs(&mut rng, &s);
        for window_left in [None, Some(1)] {
            let causal = RefOptions { causal: true, window_left, ..RefOptions::new(4) };
            let window = RefOptions { window_left, window_right: Some(0), ..RefOptions::new(4) };
            assert_same_results(&x, &s, &causal, &window, &format!("sq={sq} sk={sk} left={window_left:?}"));
        }
    }
}

#[test]
fn window_matches_brute_force_masked_softmax() {
    let mut rng = StdRng::seed_from_u64(52);
    for (sq, sk) in SEQLENS {
        let s = shape(2, sq, sk, 2, 1, 4);
        let x = random_inputs(&mut rng, &s);
        for causal in [false, true] {
            let opts = RefOptions { causal, window_left: Some(2), window_right: Some(1), ..RefOptions::new(4) };
            let right = if causal { 0 } else { 1 };
            let naive = naive_forward(&x, &s, None, |[_, _, i, j], qk| {
                let (j, diag) = (j as i64, diag(&s, i));
                (diag - 2 <= j && j <= diag + right).then_some(qk * opts.softmax_scale)
            });
            let what = format!("sq={sq} sk={sk} causal={causal}");
            assert_forward_matches_naive(&x, &s, &opts, naive, &what);
            assert_backward_matches_finite_differences(&x, &s, &opts, &what);
        }
    }
}

#[test]
fn softcap_matches_brute_force_and_finite_differences() {
    let mut rng = StdRng::seed_from_u64(53);
    for (sq, sk) in [(4, 5), (5, 3)] {
        let s = shape(1, sq, sk, 2, 1, 4);
        let mut x = random_inputs(&mut rng, &s);
        scale_qk(&mut x, 4.0);
        let opts = RefOptions { softcap: 5.0, ..RefOptions::new(4) };
        // The cap must matter: some scaled scores are beyond the cap, where tanh saturates.
        let largest = std::cell::Cell::new(0.0f64);
        let naive = naive_forward(&x, &s, None, |_, qk| {
            let scaled = opts.softmax_scale * qk;
            largest.set(largest.get().max(scaled.abs()));
            Some(5.0 * (scaled / 5.0).tanh())
        });
        assert!(largest.get() > 5.0, "largest scaled score {}", largest.get());
        let uncapped = forward(&x.q, &x.k, &x.v, &s, &RefOptions::new(4));
        assert!(max_abs_diff(&naive.0, &uncapped.o) > 1e-2, "softcap has no visible effect");
        let what = format!("softcap sq={sq} sk={sk}");
        assert_forward_matches_naive(&x, &s, &opts, naive, &what);
        assert_backward_matches_finite_differences(&x, &s, &opts, &what);
    }
}

#[test]
fn alibi_and_window_match_brute_force_and_finite_differences() {
    let mut rng = StdRng::seed_from_u64(54);
    // [batch, heads] slopes.
    let slopes = [0.5, 0.25, 1.0, 0.125];
    for (sq, sk) in SEQLENS {
        let s = shape(2, sq, sk, 2, 1, 4);
        let x = random_inputs(&mut rng, &s);
        let opts = RefOptions {
            softmax_scale: 0.8,
            window_left: Some(2),
            window_right: Some(1),
            alibi_slopes: Some(&slopes),
            ..RefOptions::new(4)
        };
        let naive = naive_forward(&x, &s, None, |[b, h, i, j], qk| {
            let distance = diag(&s, i) - j as i64;
            (-2..=1).contains(&-distance).then(|| 0.8 * qk - slopes[b * 2 + h] * distance.abs() as f64)
        });
        let what = format!("alibi+window sq={sq} sk={sk}");
        assert_forward_matches_naive(&x, &s, &opts, naive, &what);
        assert_backward_matches_finite_differences(&x, &s, &opts, &what);
    }
}

#[test]
fn alibi_zero_slope_is_no_alibi() {
    let mut rng = StdRng::seed_from_u64(55);
    let s = shape(2, 5, 7, 2, 1, 4);
    let x = random_inputs(&mut rng, &s);
    for causal in [false, true] {
        let plain = RefOptions { causal, ..RefOptions::new(4) };
        for zeros in [&[0.0; 2][..], &[0.0; 4]] {
            let zero = RefOptions { alibi_slopes: Some(zeros), ..plain };
            assert_same_results(&x, &s, &plain, &zero, &format!("causal={causal} {} slopes", zeros.len()));
        }
    }
}

#[test]
fn alibi_batch_heads_slopes_apply_per_batch() {
    let mut rng = StdRng::seed_from_u64(56);
    // Both batches get the same inputs, so only the slopes can tell them apart.
    let one = shape(1, 4, 6, 2, 1, 4);
    let x1 = random_inputs(&mut rng, &one);
    let twice = |a: &[f64]| [a, a].concat();
    let x = Inputs { q: twice(&x1.q), k: twice(&x1.k), v: twice(&x1.v), d_o: twice(&x1.d_o) };
    let s = Shape { batch: 2, ..one };
    let run = |x: &Inputs, s: &Shape, slopes: &[f64]| {
        forward(&x.q, &x.k, &x.v, s, &RefOptions { alibi_slopes: Some(slopes), ..RefOptions::new(4) })
    };
    let (half, lse_half) = (one.q_len(), one.lse_len());

    let per_head = run(&x, &s, &[0.5, 0.25]);
    assert_eq!(per_head.o[..half], per_head.o[half..], "per-head slopes are shared by the batches");

    let per_batch = run(&x, &s, &[0.5, 0.25, 2.0, 0.0]);
    let (batch0, batch1) = (run(&x1, &one, &[0.5, 0.25]), run(&x1, &one, &[2.0, 0.0]));
    assert_eq!(per_batch.o[..half], batch0.o);
    assert_eq!(per_batch.lse[..lse_half], batch0.lse);
    assert_eq!(per_batch.o[half..], batch1.o);
    assert_eq!(per_batch.lse[lse_half..], batch1.lse);
    assert!(max_abs_diff(&per_batch.o[..half], &per_batch.o[half..]) > 1e-3, "batches must differ");
}

/// Whether score `(h, i, j)` is enabled in a `[heads, ceil(sq/block), ceil(sk/block)]` block mask.
fn block_flag(mask: &RefBlockMask, s: &Shape, h: usize, i: usize, j: usize) -> bool {
    let (rows, cols) = (s.seqlen_q.div_ceil(mask.block), s.seqlen_k.div_ceil(mask.block));
    let head = if mask.heads == 1 { 0 } else { h };
    mask.data[(head * rows + i / mask.block) * cols + j / mask.block] != 0
}

#[test]
fn block_mask_all_ones_is_no_mask() {
    let mut rng = StdRng::seed_from_u64(57);
    let s = shape(2, 5, 7, 2, 1, 4);
    let x = random_inputs(&mut rng, &s);
    let ones = [1u8; 2 * 3 * 4];
    for causal in [false, true] {
        let plain = RefOptions { causal, ..RefOptions::new(4) };
        // Block 2 (3 x 4 blocks, partial last ones), shared and per head; block 128 (one partial block).
        for (heads, block) in [(1, 2), (2, 2), (1, 128)] {
            let n = heads * s.seqlen_q.div_ceil(block) * s.seqlen_k.div_ceil(block);
            let mask = RefBlockMask { data: &ones[..n], heads, block };
            assert_eq!(mask.required_len(&s), n);
            let masked = RefOptions { block_mask: Some(mask), ..plain };
            assert_same_results(&x, &s, &plain, &masked, &format!("causal={causal} heads={heads} block={block}"));
        }
    }
}

#[test]
fn block_mask_zero_block_row_masks_whole_rows() {
    let mut rng = StdRng::seed_from_u64(58);
    let s = shape(2, 5, 6, 2, 1, 4);
    let x = random_inputs(&mut rng, &s);
    // Block 2: 3 x 3 blocks per head. Head 0 sees everything; head 1's block
    // row 1 (query rows 2 and 3) is all zero.
    #[rustfmt::skip]
    let flags = [
        1, 1, 1,  1, 1, 1,  1, 1, 1,
        1, 0, 1,  0, 0, 0,  0, 1, 1,
    ];
    let mask = RefBlockMask { data: &flags, heads: 2, block: 2 };
    let opts = RefOptions { block_mask: Some(mask), ..RefOptions::new(4) };
    let out = forward(&x.q, &x.k, &x.v, &s, &opts);
    let g = backward(&x.q, &x.k, &x.v, &x.d_o, &s, &opts);
    let d = s.head_dim;
    for (b, h, i) in (0..2).flat_map(|b| (0..2).flat_map(move |h| (0..5).map(move |i| (b, h, i)))) {
        let row = ((b * s.seqlen_q + i) * s.heads + h) * d..((b * s.seqlen_q + i) * s.heads + h + 1) * d;
        let lse = out.lse[(b * s.heads + h) * s.seqlen_q + i];
        if h == 1 && (2..4).contains(&i) {
            assert_eq!(lse, f64::NEG_INFINITY, "b={b} i={i}");
            assert!(out.o[row.clone()].iter().all(|&t| t == 0.0), "o row b={b} i={i}");
            assert!(g.dq[row].iter().all(|&t| t == 0.0), "dq row b={b} i={i}");
        } else {
            assert!(lse.is_finite(), "b={b} h={h} i={i}");
            assert!(g.dq[row].iter().any(|&t| t != 0.0), "dq row b={b} h={h} i={i}");
        }
    }
    let naive = naive_forward(&x, &s, None, |[_, h, i, j], qk| block_flag(&mask, &s, h, i, j).then_some(0.5 * qk));
    assert_forward_matches_naive(&x, &s, &opts, naive, "zero block row");
    assert_backward_matches_finite_differences(&x, &s, &opts, "zero block row");
}

#[test]
fn block_mask_shared_by_heads_or_per_head() {
    let mut rng = StdRng::seed_from_u64(59);
    let s = shape(2, 7, 5, 2, 1, 4);
    let x = random_inputs(&mut rng, &s);
    // Block 3: 3 x 2 blocks per head.
    let shared_flags = [1, 0, 0, 1, 1, 1];
    let other_flags = [0, 1, 1, 1, 1, 0];
    let copies = [shared_flags, shared_flags].concat();
    let differing = [shared_flags, other_flags].concat();
    let with_mask = |data, heads| RefOptions {
        causal: true,
        block_mask: Some(RefBlockMask { data, heads, block: 3 }),
        ..RefOptions::new(4)
    };
    let shared = with_mask(&shared_flags, 1);
    assert_same_results(&x, &s, &shared, &with_mask(&copies, 2), "shared vs per-head copies");

    let per_head = with_mask(&differing, 2);
    for opts in [shared, per_head] {
        let mask = opts.block_mask.unwrap();
        let naive = naive_forward(&x, &s, None, |[_, h, i, j], qk| {
            (j as i64 <= diag(&s, i) && block_flag(&mask, &s, h, i, j)).then_some(0.5 * qk)
        });
        assert_forward_matches_naive(&x, &s, &opts, naive, &format!("block mask heads={}", mask.heads));
    }
    let (a, b) = (forward(&x.q, &x.k, &x.v, &s, &shared), forward(&x.q, &x.k, &x.v, &s, &per_head));
    assert!(max_abs_diff(&a.o, &b.o) > 1e-3, "head 1's own mask must change its output");
}

/// Every option at once (causal, window, softcap, ALiBi, block mask, dropout)
/// for a GQA shape `batch 2, seqlen_q 5, seqlen_k 6, heads 4, heads_kv 2, head_dim 4`.
struct AllOptions {
    slopes: Vec<f64>,
    flags: Vec<u8>,
    keep: Vec<bool>,
}

impl AllOptions {
    fn shape() -> Shape {
        shape(2, 5, 6, 4, 2, 4)
    }

    fn new(rng: &mut StdRng) -> Self {
        let s = Self::shape();
        let slopes = (0..s.batch * s.heads).map(|_| rng.random_range(0.0..0.5)).collect();
        // Block 2: 3 x 3 blocks per head; head 2's middle block row is empty.
        let mut flags: Vec<u8> = (0..s.heads * 9).map(|_| u8::from(rng.random_bool(0.8))).collect();
        flags[2 * 9 + 3..2 * 9 + 6].fill(0);
        AllOptions { slopes, flags, keep: random_mask(rng, s.mask_len(), 0.75) }
    }

    fn opts(&self, with_dropout: bool) -> RefOptions<'_> {
        RefOptions {
            causal: true,
            softmax_scale: 0.6,
            dropout: with_dropout.then_some((self.keep.as_slice(), 0.25)),
            window_left: Some(3),
            window_right: Some(1),
            softcap: 2.0,
            alibi_slopes: Some(&self.slopes),
            block_mask: Some(RefBlockMask { data: &self.flags, heads: 4, block: 2 }),
        }
    }
}

#[test]
fn all_options_combined_match_brute_force_and_finite_differences() {
    let mut rng = StdRng::seed_from_u64(60);
    let s = AllOptions::shape();
    let all = AllOptions::new(&mut rng);
    let mut x = random_inputs(&mut rng, &s);
    scale_qk(&mut x, 2.0);

    for with_dropout in [false, true] {
        let opts = all.opts(with_dropout);
        let mask = opts.block_mask.unwrap();
        let naive = naive_forward(&x, &s, opts.dropout, |[b, h, i, j], qk| {
            let distance = diag(&s, i) - j as i64;
            let allowed = (0..=3).contains(&distance) && block_flag(&mask, &s, h, i, j);
            let capped = 2.0 * (0.6 * qk / 2.0).tanh();
            allowed.then(|| capped - all.slopes[b * s.heads + h] * distance.abs() as f64)
        });
        assert!(naive.1.contains(&f64::NEG_INFINITY), "some rows are fully masked");
        let what = format!("all options, dropout={with_dropout}");
        assert_forward_matches_naive(&x, &s, &opts, naive, &what);
        assert_backward_matches_finite_differences(&x, &s, &opts, &what);
    }
}

#[test]
fn all_options_forward_row_and_identity_rounding_match_exact() {
    let mut rng = StdRng::seed_from_u64(61);
    let s = AllOptions::shape();
    let all = AllOptions::new(&mut rng);
    let x = random_inputs(&mut rng, &s);
    let opts = all.opts(true);
    let full = forward(&x.q, &x.k, &x.v, &s, &opts);
    for (b, h, i) in (0..s.batch).flat_map(|b| (0..s.heads).flat_map(move |h| (0..s.seqlen_q).map(move |i| (b, h, i))))
    {
        let (row, lse) = forward_row(&x.q, &x.k, &x.v, &s, &opts, b, h, i);
        let off = ((b * s.seqlen_q + i) * s.heads + h) * s.head_dim;
        assert_eq!(row, &full.o[off..off + s.head_dim], "b={b} h={h} i={i}");
        assert_eq!(lse.to_bits(), full.lse[(b * s.heads + h) * s.seqlen_q + i].to_bits(), "b={b} h={h} i={i}");
    }

    let identity = |v: f64| v;
    assert_eq!(forward_rounded(&x.q, &x.k, &x.v, &s, &opts, &identity), full.o);
    let g = backward_rounded(&x.q, &x.k, &x.v, &x.d_o, &s, &opts, &identity);
    let e = backward(&x.q, &x.k, &x.v, &x.d_o, &s, &opts);
    assert_eq!((g.dq, g.dk, g.dv), (e.dq, e.dk, e.dv));
}

#[test]
fn all_options_gqa_equals_repeated_kv_heads() {
    let mut rng = StdRng::seed_from_u64(62);
    let s = AllOptions::shape();
    let full = Shape { heads_kv: s.heads, ..s };
    let all = AllOptions::new(&mut rng);
    let x = random_inputs(&mut rng, &s);
    let opts = all.opts(true);
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

/// The rounded baseline rounds S as it enters the softmax, i.e. after the ALiBi bias.
#[test]
fn rounded_baseline_rounds_scores_after_alibi() {
    let s = shape(1, 1, 2, 1, 1, 1);
    let to_int = |x: f64| x.round();
    let (q, k, v) = ([1.0], [0.3, -0.2], [1.0, 2.4]);
    // Row 0's diagonal key is 1: biases are [-0.4, 0], scores [-0.1, -0.2], rounded [0, 0]
    // -> P = [0.5, 0.5] -> round(P) = [1, 1] -> O = round(3.4) = 3. Rounding q.k before the
    // bias would give scores [-0.4, 0] -> round(P) = [0, 1] -> O = 2.
    let opts = RefOptions { softmax_scale: 1.0, alibi_slopes: Some(&[0.4]), ..RefOptions::new(1) };
    assert_eq!(forward_rounded(&q, &k, &v, &s, &opts, &to_int), [3.0]);
}
