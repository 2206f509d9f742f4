//! FlashAttention's correctness rule, shared by the GPU tests and the main job.
//!
//! `ours` passes when `max|ours - ref| <= factor * max|naive - ref| + atol`, where `ref` is the
//! f64 reference on the same (already rounded) inputs and `naive` is the same math done naively
//! in the input precision (scores, probabilities and output rounded to f16/bf16, as PyTorch on
//! half tensors). `factor` is 2 for outputs and 3 for gradients (tests/test_flash_attn.py).
use rand::{Rng, SeedableRng};

use crate::reference::{self, RefOptions, Shape};
use crate::tensor::Element;

/// The outcome of one comparison.
#[derive(Clone, Copy, Debug)]
pub struct ErrorCheck {
    /// max |ours - ref|
    pub ours: f64,
    /// max |naive - ref|
    pub naive: f64,
    /// `factor * naive + atol`
    pub bound: f64,
    /// Elements that are NaN (never written, or computed as NaN). Any fails the check.
    pub nan: usize,
}

impl ErrorCheck {
    pub fn new(ours: &[f64], naive: &[f64], reference: &[f64], factor: f64, atol: f64) -> Self {
        let nan = ours.iter().filter(|x| x.is_nan()).count();
        let ours_err = reference::max_abs_diff(ours, reference);
        let naive_err = reference::max_abs_diff(naive, reference);
        ErrorCheck { ours: ours_err, naive: naive_err, bound: factor * naive_err + atol, nan }
    }
    pub fn passed(&self) -> bool {
        self.nan == 0 && self.ours <= self.bound
    }
}

impl std::fmt::Display for ErrorCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "max err {:.3e} vs bound {:.3e} (naive {:.3e}){}{}",
            self.ours,
            self.bound,
            self.naive,
            if self.nan > 0 { format!(", {} NaN", self.nan) } else { String::new() },
            if self.passed() { "" } else { "  FAILED" }
        )
    }
}

/// Rounding to the element type, as f64 -> T -> f64 (round to nearest even).
pub fn round_as<T: Element>(x: f64) -> f64 {
    T::from_f64(x).to_f64()
}

/// Standard-normal samples rounded to `T` (never zeros: they hide unwritten outputs).
pub fn randn<T: Element>(n: usize, rng: &mut impl Rng) -> Vec<T> {
    (0..n)
        .map(|_| {
            // Box-Muller; 1 - u keeps the log argument in (0, 1].
            let (u1, u2): (f64, f64) = (rng.random(), rng.random());
            let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            T::from_f64(z)
        })
        .collect()
}

/// Random q, k, v for a shape, from a seed.
pub fn random_qkv<T: Element>(shape: &Shape, seed: u64) -> (Vec<T>, Vec<T>, Vec<T>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (randn(shape.q_len(), &mut rng), randn(shape.kv_len(), &mut rng), randn(shape.kv_len(), &mut rng))
}

pub fn to_f64<T: Element>(x: &[T]) -> Vec<f64> {
    x.iter().map(|v| v.to_f64()).collect()
}

/// Result of checking a forward against the reference.
#[derive(Clone, Copy, Debug)]
pub struct ForwardCheck {
    pub o: ErrorCheck,
    /// max |lse - ref| over rows with a visible key.
    pub lse_err: f64,
    /// Rows whose LSE is wrong in kind: NaN, or finite where the reference is -inf (no visible
    /// key), or -inf where it is finite.
    pub lse_bad: usize,
}

/// Tolerance of the LSE, which is f32 arithmetic on exact scores (no input-precision rounding).
pub const LSE_ATOL: f64 = 2e-3;

impl ForwardCheck {
    pub fn passed(&self) -> bool {
        self.o.passed() && self.lse_bad == 0 && self.lse_err <= LSE_ATOL
    }
}

impl std::fmt::Display for ForwardCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "o: {}; lse: max err {:.2e}, {} bad rows", self.o, self.lse_err, self.lse_bad)
    }
}

/// Compares a GPU forward (`o`, `lse`) with the f64 reference and the naive low-precision
/// baseline computed from the same inputs.
pub fn check_forward<T: Element>(
    q: &[T],
    k: &[T],
    v: &[T],
    shape: &Shape,
    opts: &RefOptions,
    o: &[T],
    lse: &[f32],
) -> ForwardCheck {
    let (q, k, v) = (to_f64(q), to_f64(k), to_f64(v));
    let reference = reference::forward(&q, &k, &v, shape, opts);
    let naive = reference::forward_rounded(&q, &k, &v, shape, opts, &round_as::<T>);
    // FlashAttention adds 1e-5 for causal; it also covers outputs that are exactly representable.
    let o_check = ErrorCheck::new(&to_f64(o), &naive, &reference.o, 2.0, 1e-5);
    let (lse_err, lse_bad) = compare_lse(lse, &reference.lse);
    ForwardCheck { o: o_check, lse_err, lse_bad }
}

/// (max error over finite rows, count of rows wrong in kind).
pub fn compare_lse(lse: &[f32], reference: &[f64]) -> (f64, usize) {
    let mut err = 0.0f64;
    let mut bad = 0;
    for (&ours, &r) in lse.iter().zip(reference) {
        let ours = ours as f64;
        if ours.is_nan() || (r.is_finite() != ours.is_finite()) {
            bad += 1;
        } else if r.is_finite() {
            err = err.max((ours - r).abs());
        }
    }
    (err, bad + lse.len().abs_diff(reference.len()))
}

/// Gradient checks, FlashAttention's 3x rule for each of dq, dk, dv.
#[derive(Clone, Copy, Debug)]
pub struct BackwardCheck {
    pub dq: ErrorCheck,
    pub dk: ErrorCheck,
    pub dv: ErrorCheck,
}

/// Absolute slack of the gradient rule: covers gradients that are exactly representable (e.g.
/// dq = 0 for a single key, where the naive error is 0 and ours is f32 rounding of `dP - D`).
pub const GRAD_ATOL: f64 = 1e-4;

impl BackwardCheck {
    pub fn passed(&self) -> bool {
        self.dq.passed() && self.dk.passed() && self.dv.passed()
    }
}

impl std::fmt::Display for BackwardCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "dq: {}; dk: {}; dv: {}", self.dq, self.dk, self.dv)
    }
}

/// Compares GPU gradients with the f64 reference and the naive low-precision baseline computed
/// from the same inputs.
#[allow(clippy::too_many_arguments)]
pub fn check_backward<T: Element>(
    q: &[T],
    k: &[T],
    v: &[T],
    d_o: &[T],
    shape: &Shape,
    opts: &RefOptions,
    dq: &[T],
    dk: &[T],
    dv: &[T],
) -> BackwardCheck {
    let (q, k, v, d_o) = (to_f64(q), to_f64(k), to_f64(v), to_f64(d_o));
    let reference = reference::backward(&q, &k, &v, &d_o, shape, opts);
    let naive = reference::backward_rounded(&q, &k, &v, &d_o, shape, opts, &round_as::<T>);
    BackwardCheck {
        dq: ErrorCheck::new(&to_f64(dq), &naive.dq, &reference.dq, 3.0, GRAD_ATOL),
        dk: ErrorCheck::new(&to_f64(dk), &naive.dk, &reference.dk, 3.0, GRAD_ATOL),
        dv: ErrorCheck::new(&to_f64(dv), &naive.dv, &reference.dv, 3.0, GRAD_ATOL),
    }
}
