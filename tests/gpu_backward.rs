//! The backward on the GPU against the f64 CPU reference, with FlashAttention's rule for
//! gradients: max error <= 3x the error of the same math done naively in the input precision.
//! O and LSE come from our forward; dO is fresh random data. Need a CUDA GPU (ignored without).
use flashattn::accuracy::{check_backward, randn, random_qkv, BackwardCheck};
use flashattn::reference::RefOptions;
use flashattn::{backward, forward, AttentionOptions, Device, Element, Error, ForwardKernel, Shape, Tensor};
use half::{bf16, f16};
use rand::SeedableRng;

mod common;
use common::{device, shape};

/// Frees a NaN-filled buffer of `bytes`, so that the next allocations of the stream-ordered
/// pool likely reuse poisoned memory: an output element the backward fails to write then shows
/// up as NaN and fails the comparison.
fn poison_pool(dev: &Device, bytes: usize) {
    let poison = dev.upload(&vec![f32::NAN; bytes / 4], &[bytes / 4]).unwrap();
    drop(poison);
}

/// Fresh inputs (from `seed`), our forward, our backward: the inputs and dq ++ dk ++ dv.
/// `packed` views q, k, v inside one interleaved `[batch, seqlen, 3, heads, head_dim]` buffer
/// (strided, as a fused QKV projection gives them; needs seqlen_q == seqlen_k and equal heads).
#[allow(clippy::type_complexity)]
fn gradients<T: Element>(
    dev: &Device,
    s: &Shape,
    opts: &AttentionOptions,
    seed: u64,
    packed: bool,
) -> ([Vec<T>; 4], [Vec<T>; 3]) {
    let (qh, kh, vh) = random_qkv::<T>(s, seed);
    let doh: Vec<T> = randn(s.q_len(), &mut rand::rngs::StdRng::seed_from_u64(seed ^ 0xd0));
    let q_shape = [s.batch, s.seqlen_q, s.heads, s.head_dim];
    let kv_shape = [s.batch, s.seqlen_k, s.heads_kv, s.head_dim];
    let (q, k, v) = if packed {
        assert!(s.seqlen_q == s.seqlen_k && s.heads == s.heads_kv);
        let (n, hd) = (s.seqlen_q, s.heads * s.head_dim);
        let mut buf = vec![T::default(); 3 * s.q_len()];
        for row in 0..s.batch * n {
            for (part, src) in [&qh, &kh, &vh].into_iter().enumerate() {
                buf[(3 * row + part) * hd..][..hd].copy_from_slice(&src[row * hd..][..hd]);
            }
        }
        let strides = [3 * n * hd, 3 * hd, s.head_dim, 1];
        let view = |part: usize| dev.upload_strided(&buf[part * hd..], &q_shape, &strides).unwrap();
        (view(0), view(1), view(2))
    } else {
        (dev.upload(&qh, &q_shape).unwrap(), dev.upload(&kh, &kv_shape).unwrap(), dev.upload(&vh, &kv_shape).unwrap())
    };
    let d_o = dev.upload(&doh, &q_shape).unwrap();
    let (o, lse) = forward(&q, &k, &v, &AttentionOptions { deterministic: false, ..*opts }).unwrap();
    poison_pool(dev, 4 * (2 * s.q_len() + 2 * s.kv_len()) + (1 << 20));
    let (dq, dk, dv) = backward(&q, &k, &v, &o, &lse, &d_o, opts).unwrap();
    ([qh, kh, vh, doh], [dq.to_host().unwrap(), dk.to_host().unwrap(), dv.to_host().unwrap()])
}

fn run_case<T: Element>(dev: &Device, s: &Shape, opts: &AttentionOptions, seed: u64, packed: bool) -> BackwardCheck {
    let ([q, k, v, d_o], [dq, dk, dv]) = gradients::<T>(dev, s, opts, seed, packed);
    let ref_opts = RefOptions { causal: opts.causal, ..RefOptions::new(s.head_dim) };
    check_backward(&q, &k, &v, &d_o, s, &ref_opts, &dq, &dk, &dv)
}

/// Runs every case (shape, causal) with `base` options; fails listing every failing case.
fn run_all<T: Element>(cases: &[(Shape, bool)], base: AttentionOptions) {
    run_all_packed::<T>(cases, base, false)
}

fn run_all_packed<T: Element>(cases: &[(Shape, bool)], base: AttentionOptions, packed: bool) {
    let dev = device();
    let mut failures = Vec::new();
    for (i, (s, causal)) in cases.iter().enumerate() {
        let opts = AttentionOptions { causal: *causal, ..base };
        let check = run_case::<T>(&dev, s, &opts, 7000 + i as u64, packed);
        let line = format!("{} {:?} det={} {s:?} causal={causal}: {check}", T::NAME, base.kernel, base.deterministic);
        println!("{line}");
        if !check.passed() {
            failures.push(line);
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

const TENSOR_CORE: AttentionOptions = AttentionOptions {
    causal: false,
    softmax_scale: None,
    kernel: ForwardKernel::Auto,
    deterministic: false,
    window_left: None,
    window_right: None,
    softcap: 0.0,
    dropout_p: 0.0,
    dropout_seed: 0,
    dropout_offset: 0,
};
const SCALAR: AttentionOptions = AttentionOptions { kernel: ForwardKernel::Scalar, ..TENSOR_CORE };
/// mma.sync even where `Auto` picks the wgmma kernel (compute capability 9.0, d = 64 and 128).
const MMA_SYNC: AttentionOptions = AttentionOptions { kernel: ForwardKernel::TensorCore, ..TENSOR_CORE };
/// The wgmma dK/dV kernel, required (compute capability 9.0).
const WGMMA: AttentionOptions = AttentionOptions { kernel: ForwardKernel::Wgmma, ..TENSOR_CORE };
const DETERMINISTIC: AttentionOptions = AttentionOptions { deterministic: true, ..TENSOR_CORE };

fn square_cases(head_dims: &[usize], seqlens: &[usize]) -> Vec<(Shape, bool)> {
    let mut cases = Vec::new();
    for &d in head_dims {
        for &n in seqlens {
            for causal in [false, true] {
                cases.push((shape(2, n, n, 2, 2, d), causal));
            }
        }
    }
    cases
}

fn long_cases(head_dims: &[usize]) -> Vec<(Shape, bool)> {
    let mut cases = Vec::new();
    for &d in head_dims {
        for causal in [false, true] {
            cases.push((shape(1, 1025, 1025, 2, 2, d), causal));
        }
    }
    cases
}

fn uneven_and_gqa_cases() -> Vec<(Shape, bool)> {
    let mut cases = Vec::new();
    for (nq, nk) in [(1, 97), (97, 1), (17, 200), (200, 17), (97, 128), (300, 129)] {
        for causal in [false, true] {
            cases.push((shape(1, nq, nk, 2, 2, 64), causal));
        }
    }
    for (h, hkv, d) in [(8, 2, 64), (8, 1, 128), (6, 3, 32), (4, 2, 256)] {
        for causal in [false, true] {
            cases.push((shape(2, 97, 113, h, hkv, d), causal));
        }
    }
    cases
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn tensor_core_backward_bf16_matches_reference() {
    let mut cases = square_cases(&[32, 64, 96, 128, 192, 256], &[1, 17, 97, 128]);
    cases.extend(long_cases(&[64, 128]));
    run_all::<bf16>(&cases, TENSOR_CORE);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn tensor_core_backward_f16_matches_reference() {
    let mut cases = square_cases(&[32, 64, 96, 128, 192, 256], &[1, 17, 97, 128]);
    cases.extend(long_cases(&[128]));
    run_all::<f16>(&cases, TENSOR_CORE);
}

/// Every head dim the forward takes (multiples of 8 up to 256), both dtypes, causal and not.
#[test]
#[ignore = "needs a CUDA GPU"]
fn tensor_core_backward_every_head_dim() {
    let dims: Vec<usize> = (8..=256).step_by(8).collect();
    run_all::<bf16>(&square_cases(&dims, &[97]), TENSOR_CORE);
    run_all::<f16>(&square_cases(&dims, &[33]), TENSOR_CORE);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn tensor_core_backward_seqlen_q_differs_from_seqlen_k_and_gqa() {
    run_all::<bf16>(&uneven_and_gqa_cases(), TENSOR_CORE);
}

/// q, k, v as strided views into one packed QKV buffer.
#[test]
#[ignore = "needs a CUDA GPU"]
fn tensor_core_backward_strided_inputs() {
    run_all_packed::<bf16>(&square_cases(&[64, 128], &[97, 256]), TENSOR_CORE, true);
}

/// The wgmma dK/dV kernel (sm_90a): every head dim it takes, awkward lengths, GQA, causal,
/// strided inputs, and its deterministic mode (dQ by the mma.sync kernel). Skipped, saying so,
/// on other GPUs.
#[test]
#[ignore = "needs a CUDA GPU"]
fn wgmma_backward_matches_reference() {
    if device().compute_capability() != (9, 0) {
        println!("SKIPPED: the wgmma backward needs compute capability 9.0");
        return;
    }
    let mut cases = square_cases(&[40, 64, 104, 128], &[1, 17, 97, 128]);
    cases.extend(long_cases(&[64, 128]));
    for (nq, nk) in [(1, 97), (97, 1), (17, 200), (200, 17), (300, 129)] {
        for causal in [false, true] {
            cases.push((shape(1, nq, nk, 2, 2, 128), causal));
        }
    }
    for (h, hkv, d) in [(8, 2, 64), (8, 1, 128), (6, 3, 128)] {
        for causal in [false, true] {
            cases.push((shape(2, 97, 300, h, hkv, d), causal));
        }
    }
    run_all::<bf16>(&cases, WGMMA);
    run_all::<f16>(&square_cases(&[64, 128], &[97, 256]), WGMMA);
    run_all_packed::<bf16>(&square_cases(&[64, 128], &[97, 256]), WGMMA, true);
    run_all::<bf16>(&square_cases(&[64, 128], &[97, 300]), AttentionOptions { deterministic: true, ..WGMMA });
}

/// The mma.sync backward at the head dims where `Auto` runs wgmma on an H100.
#[test]
#[ignore = "needs a CUDA GPU"]
fn mma_sync_backward_matches_reference_where_auto_picks_wgmma() {
    let mut cases = square_cases(&[64, 128], &[1, 97, 128]);
    cases.extend(long_cases(&[128]));
    run_all::<bf16>(&cases, MMA_SYNC);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn deterministic_backward_matches_reference() {
    let mut cases = square_cases(&[32, 64, 96, 128, 160, 224, 256], &[1, 97]);
    cases.extend(long_cases(&[64]));
    cases.extend(uneven_and_gqa_cases());
    run_all::<bf16>(&cases, DETERMINISTIC);
    run_all::<f16>(&square_cases(&[128], &[97]), DETERMINISTIC);
}

/// Same inputs, same gradient bits, 50 runs: the deterministic tensor-core path and the scalar
/// path. (The default atomic path is only checked against the reference.)
#[test]
#[ignore = "needs a CUDA GPU"]
fn deterministic_backward_is_bit_identical_over_50_runs() {
    let dev = device();
    for (s, base) in [(shape(2, 1000, 1000, 4, 2, 128), DETERMINISTIC), (shape(2, 300, 300, 4, 2, 64), SCALAR)] {
        let opts = AttentionOptions { causal: true, ..base };
        let (_, first) = gradients::<bf16>(&dev, &s, &opts, 11, false);
        for _ in 0..50 {
            let (_, again) = gradients::<bf16>(&dev, &s, &opts, 11, false);
            for (a, b) in again.iter().zip(&first) {
                assert!(
                    a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{:?}: gradients differ",
                    base.kernel
                );
            }
        }
    }
}

/// The wgmma backward converts dQ while its dK/dV kernel still runs (each head once that head's
/// CTAs have published their sums). On grids of several waves, with GQA and a causal case whose
/// CTAs differ in length, the atomic dQ must equal the deterministic path's (same sums in
/// another order: within 2 bf16 units in the last place), and dK, dV must agree as closely
/// too. A conversion that ran before a head was complete would miss whole key blocks
/// (errors of the order of dQ itself). Too large for the f64 reference; these shapes are.
#[test]
#[ignore = "needs a CUDA GPU"]
fn overlapped_dq_conversion_matches_the_deterministic_dq() {
    let dev = device();
    if dev.compute_capability().0 < 9 {
        println!("SKIPPED: the overlapped dQ conversion runs with the wgmma backward (compute capability 9.0)");
        return;
    }
    for (s, causal) in [(shape(1, 8192, 8192, 16, 4, 128), false), (shape(2, 4096, 4096, 8, 8, 64), true)] {
        let opts = AttentionOptions { causal, ..WGMMA };
        let (_, atomic) = gradients::<bf16>(&dev, &s, &opts, 21, false);
        let (_, det) = gradients::<bf16>(&dev, &s, &AttentionOptions { deterministic: true, ..opts }, 21, false);
        for (name, (a, b)) in ["dq", "dk", "dv"].iter().zip(atomic.iter().zip(&det)) {
            let scale = b.iter().fold(0f32, |m, x| m.max(x.to_f32().abs()));
            let mut worst = 0f32;
            for (x, y) in a.iter().zip(b) {
                let (x, y) = (x.to_f32(), y.to_f32());
                assert!(x.is_finite(), "{s:?} causal={causal} {name}: non-finite {x}");
                // Two bf16 ulps (at most 2^-7 relative each) of the element, or of 2^-8 of the largest.
                let tol = 4.0 * 2f32.powi(-8) * y.abs().max(scale * 2f32.powi(-8));
                worst = worst.max((x - y).abs() / tol);
            }
            println!("{s:?} causal={causal} {name}: worst |atomic - deterministic| = {worst:.3} of the tolerance");
            assert!(worst <= 1.0, "{s:?} causal={causal} {name}: atomic and deterministic differ ({worst:.2}x)");
        }
    }
}

/// One small case of each backward kernel, for compute-sanitizer (racecheck / memcheck).
#[test]
#[ignore = "needs a CUDA GPU"]
fn backward_small_case_for_sanitizer() {
    let cases = [(shape(1, 130, 130, 2, 1, 64), true)];
    run_all::<bf16>(&cases, TENSOR_CORE);
    run_all::<bf16>(&cases, DETERMINISTIC);
    run_all::<bf16>(&cases, MMA_SYNC);
    run_all::<bf16>(&[(shape(1, 130, 130, 2, 1, 128), true)], TENSOR_CORE);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn scalar_backward_bf16_matches_reference() {
    let mut cases = square_cases(&[32, 64, 128], &[1, 17, 97, 128]);
    cases.extend(long_cases(&[64]));
    run_all::<bf16>(&cases, SCALAR);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn scalar_backward_f16_and_gqa_match_reference() {
    run_all::<f16>(&square_cases(&[32, 64, 128], &[17, 97]), SCALAR);
    let gqa: Vec<_> = uneven_and_gqa_cases().into_iter().filter(|(s, _)| s.head_dim != 256).collect();
    run_all::<bf16>(&gqa, SCALAR);
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
    assert_eq!(arg(backward(&q96, &k96, &v96, &o96, &lse96, &o96, &SCALAR)), "head_dim");
    let tiles = AttentionOptions {
        kernel: ForwardKernel::TensorCoreTiles { block_m: 128, block_n: 64, m_tiles: 2, stages: 2 },
        ..opts
    };
    assert_eq!(arg(backward(&q, &k, &v, &o, &lse, &o, &tiles)), "kernel");
    let dropout = AttentionOptions { dropout_p: 1.5, ..opts };
    assert_eq!(arg(backward(&q, &k, &v, &o, &lse, &o, &dropout)), "dropout_p");
    // The wgmma backward: head dims 40..=64 and 104..=128 (d = 96 runs mma.sync at 96), no masks.
    let wgmma = AttentionOptions { kernel: ForwardKernel::Wgmma, ..opts };
    assert_eq!(arg(backward(&q96, &k96, &v96, &o96, &lse96, &o96, &wgmma)), "head_dim");
    let windowed = AttentionOptions { window_left: Some(4), ..wgmma };
    assert_eq!(arg(backward(&q, &k, &v, &o, &lse, &o, &windowed)), "kernel");
    // The scalar backward has no masks.
    let scalar_dropout = AttentionOptions { dropout_p: 0.1, ..SCALAR };
    assert_eq!(arg(backward(&q, &k, &v, &o, &lse, &o, &scalar_dropout)), "kernel");
}
