//! The backward on the GPU against the f64 CPU reference, with FlashAttention's rule for
//! gradients: max error <= 3x the error of the same math done naively in the input precision.
//! O and LSE come from our forward; dO is fresh random data. Need a CUDA GPU (ignored without).
use flashattn::accuracy::{check_backward, randn, random_qkv, BackwardCheck};
use flashattn::reference::RefOptions;
use flashattn::{backward, forward, AttentionOptions, Device, Element, Error, Shape, Tensor};
use half::{bf16, f16};
use rand::SeedableRng;

fn device() -> Device {
    Device::new(0).unwrap_or_else(|e| panic!("this test needs a CUDA GPU: {e}"))
}

fn shape(batch: usize, seqlen_q: usize, seqlen_k: usize, heads: usize, heads_kv: usize, head_dim: usize) -> Shape {
    Shape { batch, seqlen_q, seqlen_k, heads, heads_kv, head_dim }
}

/// Fresh inputs (from `seed`), our forward, our backward: the inputs and dq ++ dk ++ dv.
#[allow(clippy::type_complexity)]
fn gradients<T: Element>(dev: &Device, s: &Shape, causal: bool, seed: u64) -> ([Vec<T>; 4], [Vec<T>; 3]) {
    let (qh, kh, vh) = random_qkv::<T>(s, seed);
    let doh: Vec<T> = randn(s.q_len(), &mut rand::rngs::StdRng::seed_from_u64(seed ^ 0xd0));
    let q = dev.upload(&qh, &[s.batch, s.seqlen_q, s.heads, s.head_dim]).unwrap();
    let k = dev.upload(&kh, &[s.batch, s.seqlen_k, s.heads_kv, s.head_dim]).unwrap();
    let v = dev.upload(&vh, &[s.batch, s.seqlen_k, s.heads_kv, s.head_dim]).unwrap();
    let d_o = dev.upload(&doh, q.shape()).unwrap();
    let opts = AttentionOptions { causal, ..Default::default() };
    let (o, lse) = forward(&q, &k, &v, &opts).unwrap();
    let (dq, dk, dv) = backward(&q, &k, &v, &o, &lse, &d_o, &opts).unwrap();
    ([qh, kh, vh, doh], [dq.to_host().unwrap(), dk.to_host().unwrap(), dv.to_host().unwrap()])
}

fn run_case<T: Element>(dev: &Device, s: &Shape, causal: bool, seed: u64) -> BackwardCheck {
    let ([q, k, v, d_o], [dq, dk, dv]) = gradients::<T>(dev, s, causal, seed);
    let ref_opts = RefOptions { causal, ..RefOptions::new(s.head_dim) };
    check_backward(&q, &k, &v, &d_o, s, &ref_opts, &dq, &dk, &dv)
}

fn run_all<T: Element>(cases: &[(Shape, bool)]) {
    let dev = device();
    let mut failures = Vec::new();
    for (i, (s, causal)) in cases.iter().enumerate() {
        let check = run_case::<T>(&dev, s, *causal, 7000 + i as u64);
        let line = format!("{} {s:?} causal={causal}: {check}", T::NAME);
        println!("{line}");
        if !check.passed() {
            failures.push(line);
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

fn square_cases() -> Vec<(Shape, bool)> {
    let mut cases = Vec::new();
    for d in [32, 64, 128] {
        for n in [1, 17, 97, 128] {
            for causal in [false, true] {
                cases.push((shape(2, n, n, 2, 2, d), causal));
            }
        }
    }
    for causal in [false, true] {
        cases.push((shape(1, 1025, 1025, 2, 2, 64), causal));
    }
    cases
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn scalar_backward_bf16_matches_reference() {
    run_all::<bf16>(&square_cases());
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn scalar_backward_f16_matches_reference() {
    run_all::<f16>(&square_cases());
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn scalar_backward_seqlen_q_differs_from_seqlen_k_and_gqa() {
    let mut cases = Vec::new();
    for (nq, nk) in [(1, 97), (97, 1), (17, 200), (200, 17), (97, 128)] {
        for causal in [false, true] {
            cases.push((shape(1, nq, nk, 2, 2, 64), causal));
        }
    }
    for (h, hkv, d) in [(8, 2, 64), (8, 1, 128), (6, 3, 32)] {
        for causal in [false, true] {
            cases.push((shape(2, 97, 113, h, hkv, d), causal));
        }
    }
    run_all::<bf16>(&cases);
}

/// No atomics: the same inputs give the same gradient bits, run after run.
#[test]
#[ignore = "needs a CUDA GPU"]
fn scalar_backward_is_deterministic() {
    let dev = device();
    let s = shape(2, 300, 300, 4, 2, 64);
    let (_, first) = gradients::<bf16>(&dev, &s, true, 11);
    for _ in 0..50 {
        let (_, again) = gradients::<bf16>(&dev, &s, true, 11);
        for (a, b) in again.iter().zip(&first) {
            assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()), "gradients differ between runs");
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn backward_rejects_bad_input() {
    let dev = device();
    let t = |shape: &[usize]| -> Tensor<bf16> { dev.upload(&vec![bf16::ONE; shape.iter().product()], shape).unwrap() };
    let opts = AttentionOptions::default();
    let (q, k, v) = (t(&[1, 16, 2, 64]), t(&[1, 16, 2, 64]), t(&[1, 16, 2, 64]));
    let (o, lse) = forward(&q, &k, &v, &opts).unwrap();
    let arg = |r: Result<(Tensor<bf16>, Tensor<bf16>, Tensor<bf16>), Error>| match r {
        Err(Error::InvalidArgument { arg, .. }) => arg,
        Err(Error::UnsupportedHeadDim { .. }) => "head_dim",
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("bad input accepted"),
    };
    assert_eq!(arg(backward(&q, &k, &v, &o, &lse, &t(&[1, 15, 2, 64]), &opts)), "d_o");
    assert_eq!(arg(backward(&q, &k, &v, &t(&[1, 16, 1, 64]), &lse, &o, &opts)), "o");
    let bad_lse = dev.upload(&vec![0.0f32; 16], &[1, 1, 16]).unwrap();
    assert_eq!(arg(backward(&q, &k, &v, &o, &bad_lse, &o, &opts)), "lse");
    let (q96, k96, v96) = (t(&[1, 16, 2, 96]), t(&[1, 16, 2, 96]), t(&[1, 16, 2, 96]));
    let (o96, lse96) = forward(&q96, &k96, &v96, &opts).unwrap();
    assert_eq!(arg(backward(&q96, &k96, &v96, &o96, &lse96, &o96, &opts)), "head_dim");
    let tc = AttentionOptions { kernel: flashattn::ForwardKernel::TensorCore, ..opts };
    assert_eq!(arg(backward(&q, &k, &v, &o, &lse, &o, &tc)), "kernel");
    let dropout = AttentionOptions { dropout_p: 0.1, ..opts };
    assert_eq!(arg(backward(&q, &k, &v, &o, &lse, &o, &dropout)), "dropout_p");
}
