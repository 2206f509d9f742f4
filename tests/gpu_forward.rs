//! The forward on the GPU against the f64 CPU reference, with FlashAttention's rule: max error
//! <= 2x the error of the same math done naively in the input precision. Outputs are poisoned
//! with NaN before each launch, so an element the kernel never wrote fails the check.
//!
//! These need a CUDA GPU: they are `#[ignore]`d, and run with `--include-ignored` on a GPU
//! machine (`.gpu/run.sh` does). Without one they are reported as ignored, never passed.
use flashattn::accuracy::{check_forward, random_qkv};
use flashattn::reference::RefOptions;
use flashattn::{forward, forward_into, AttentionOptions, Element, Error, ForwardKernel, Tensor};
use half::{bf16, f16};

mod common;
use common::{device, run_cases, shape, upload_qkv, Case, TableRow};

fn run_all<T: Element>(cases: &[Case], kernel: ForwardKernel) {
    run_cases::<T>(&device(), cases, kernel)
}

const SEQLENS: [usize; 5] = [1, 17, 97, 128, 1025];

fn square_cases(head_dims: &[usize]) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut seed = 100;
    for &d in head_dims {
        for &n in &SEQLENS {
            for causal in [false, true] {
                for _ in 0..2 {
                    seed += 1;
                    cases.push(Case { shape: shape(2, n, n, 2, 2, d), causal, seed });
                }
            }
        }
    }
    cases
}

fn rectangular_cases(head_dims: &[usize]) -> Vec<Case> {
    let pairs = [(1, 97), (97, 1), (17, 1025), (1025, 17), (128, 97), (97, 128), (64, 65)];
    let mut cases = Vec::new();
    for &d in head_dims {
        for (i, &(nq, nk)) in pairs.iter().enumerate() {
            for causal in [false, true] {
                cases.push(Case { shape: shape(1, nq, nk, 2, 2, d), causal, seed: 500 + i as u64 });
            }
        }
    }
    cases
}

const SCALAR_HEAD_DIMS: [usize; 3] = [32, 64, 128];

#[test]
#[ignore = "needs a CUDA GPU"]
fn scalar_forward_bf16_matches_reference() {
    run_all::<bf16>(&square_cases(&SCALAR_HEAD_DIMS), ForwardKernel::Scalar);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn scalar_forward_f16_matches_reference() {
    run_all::<f16>(&square_cases(&SCALAR_HEAD_DIMS), ForwardKernel::Scalar);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn scalar_forward_seqlen_q_differs_from_seqlen_k() {
    run_all::<bf16>(&rectangular_cases(&SCALAR_HEAD_DIMS), ForwardKernel::Scalar);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn scalar_forward_gqa_and_mqa() {
    let cases: Vec<Case> = [(8, 2), (8, 1), (6, 3)]
        .iter()
        .flat_map(|&(h, hkv)| {
            [false, true].map(|causal| Case {
                shape: shape(2, 97, 113, h, hkv, 64),
                causal,
                seed: 900 + h as u64 + hkv as u64,
            })
        })
        .collect();
    run_all::<bf16>(&cases, ForwardKernel::Scalar);
}

/// q, k, v as views into one packed `[batch, seqlen, 3, heads, d]` buffer (strided along batch,
/// sequence and head), as a fused QKV projection produces them.
fn strided_packed_qkv(kernel: ForwardKernel, head_dim: usize) {
    let dev = device();
    for causal in [false, true] {
        let s = shape(2, 97, 97, 4, 4, head_dim);
        let (qh, kh, vh) = random_qkv::<bf16>(&s, 77);
        let (h, d) = (s.heads, s.head_dim);
        let mut packed = vec![bf16::ZERO; s.batch * s.seqlen_q * 3 * h * d];
        for b in 0..s.batch {
            for i in 0..s.seqlen_q {
                for hh in 0..h {
                    for c in 0..d {
                        let src = ((b * s.seqlen_q + i) * h + hh) * d + c;
                        let dst = |which: usize| (((b * s.seqlen_q + i) * 3 + which) * h + hh) * d + c;
                        packed[dst(0)] = qh[src];
                        packed[dst(1)] = kh[src];
                        packed[dst(2)] = vh[src];
                    }
                }
            }
        }
        let strides = [s.seqlen_q * 3 * h * d, 3 * h * d, d, 1];
        let view = |which: usize| {
            dev.upload_strided(&packed[which * h * d..], &[s.batch, s.seqlen_q, h, d], &strides).unwrap()
        };
        let (q, k, v) = (view(0), view(1), view(2));
        assert!(!q.is_contiguous());
        let (o, lse) = forward(&q, &k, &v, &AttentionOptions { causal, kernel, ..Default::default() }).unwrap();
        let ref_opts = RefOptions { causal, ..RefOptions::new(d) };
        let check = check_forward(&qh, &kh, &vh, &s, &ref_opts, &o.to_host().unwrap(), &lse.to_host().unwrap());
        println!("strided {kernel:?} d={head_dim} causal={causal}: {check}");
        assert!(check.passed(), "{check}");
    }
}

/// Same inputs, same bits: the forward has no atomics or order-dependent reductions.
fn deterministic(kernel: ForwardKernel) {
    let dev = device();
    let s = shape(2, 1025, 1025, 4, 4, 128);
    let (qh, kh, vh) = random_qkv::<bf16>(&s, 3);
    let (q, k, v) = upload_qkv(&dev, &s, &qh, &kh, &vh);
    let opts = AttentionOptions { causal: true, kernel, ..Default::default() };
    let (o0, l0) = forward(&q, &k, &v, &opts).unwrap();
    let (o0, l0) = (o0.to_host().unwrap(), l0.to_host().unwrap());
    for _ in 0..20 {
        let (o, l) = forward(&q, &k, &v, &opts).unwrap();
        assert!(o.to_host().unwrap().iter().zip(&o0).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(l.to_host().unwrap().iter().zip(&l0).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn scalar_forward_strided_packed_qkv() {
    strided_packed_qkv(ForwardKernel::Scalar, 64);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn scalar_forward_is_deterministic() {
    deterministic(ForwardKernel::Scalar);
}

const TUNED_HEAD_DIMS: [usize; 5] = [64, 96, 128, 192, 256];
const TC: ForwardKernel = ForwardKernel::TensorCore;

#[test]
#[ignore = "needs a CUDA GPU"]
fn tensor_core_forward_bf16_matches_reference() {
    run_all::<bf16>(&square_cases(&TUNED_HEAD_DIMS), TC);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn tensor_core_forward_f16_matches_reference() {
    run_all::<f16>(&square_cases(&TUNED_HEAD_DIMS), TC);
}

/// Every head dim the kernel takes (multiples of 8 up to 256; padded inside the kernel).
#[test]
#[ignore = "needs a CUDA GPU"]
fn tensor_core_forward_every_head_dim() {
    let cases: Vec<Case> = (8..=256)
        .step_by(8)
        .map(|d| Case { shape: shape(1, 97, 113, 4, 2, d), causal: d % 16 == 0, seed: 2000 + d as u64 })
        .collect();
    run_all::<bf16>(&cases, TC);
    run_all::<f16>(&cases, TC);
}

/// What `Auto` picks (on the H100: wgmma for head dims 72..=128, its 192-row tiles for
/// non-causal head dims up to 64, mma.sync otherwise), every head dim, causal and not.
#[test]
#[ignore = "needs a CUDA GPU"]
fn auto_forward_every_head_dim() {
    let cases: Vec<Case> = (8..=256)
        .step_by(8)
        .flat_map(|d| {
            [false, true].map(|causal| Case { shape: shape(2, 197, 131, 4, 2, d), causal, seed: 2500 + d as u64 })
        })
        .collect();
    run_all::<bf16>(&cases, ForwardKernel::Auto);
    run_all::<f16>(&cases, ForwardKernel::Auto);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn tensor_core_forward_seqlen_q_differs_from_seqlen_k() {
    run_all::<bf16>(&rectangular_cases(&[64, 128, 256]), TC);
    run_all::<f16>(&rectangular_cases(&[40, 96]), TC);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn tensor_core_forward_gqa_and_mqa() {
    let cases: Vec<Case> = [(8, 2, 64), (8, 1, 128), (6, 3, 256)]
        .iter()
        .flat_map(|&(h, hkv, d)| {
            [false, true].map(|causal| Case {
                shape: shape(2, 97, 200, h, hkv, d),
                causal,
                seed: 3000 + h as u64 + hkv as u64,
            })
        })
        .collect();
    run_all::<bf16>(&cases, TC);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn tensor_core_forward_strided_packed_qkv() {
    strided_packed_qkv(TC, 64);
    strided_packed_qkv(TC, 128);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn tensor_core_forward_is_deterministic() {
    deterministic(TC);
}

/// Every compiled tensor-core kernel, defaults and tuning candidates alike (selected by their
/// tiles), so that a candidate promoted to default has already been checked.
#[test]
#[ignore = "needs a CUDA GPU"]
fn tensor_core_forward_every_table_row() {
    let rows: Vec<TableRow> = flashattn::forward::mma_kernel_rows()
        .iter()
        .map(|r| TableRow {
            name: r.name,
            dtype: r.dtype,
            kernel: r.kernel_choice(),
            head_dim: r.config.head_dim,
            causal: r.causal,
        })
        .collect();
    common::run_table_rows(&device(), &rows, 200, 131, 4000);
}

/// The argument an error names (`head_dim` for an unsupported head dim).
#[track_caller]
fn arg_of<R>(r: Result<R, Error>) -> &'static str {
    match r {
        Err(Error::InvalidArgument { arg, .. }) => arg,
        Err(Error::UnsupportedHeadDim { .. }) => "head_dim",
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("bad input accepted"),
    }
}

/// Bad input gives an error value naming the argument, never a panic or a launch.
#[test]
#[ignore = "needs a CUDA GPU"]
fn forward_rejects_bad_input() {
    let dev = device();
    let t = |shape: &[usize]| -> Tensor<bf16> {
        let n: usize = shape.iter().product();
        dev.upload(&vec![bf16::ONE; n], shape).unwrap()
    };
    let opts = AttentionOptions::default();
    let (q, k, v) = (t(&[1, 16, 2, 64]), t(&[1, 16, 2, 64]), t(&[1, 16, 2, 64]));
    assert_eq!(arg_of(forward(&t(&[16, 2, 64]), &k, &v, &opts)), "q"); // rank 3
    assert_eq!(arg_of(forward(&q, &k, &t(&[1, 17, 2, 64]), &opts)), "v"); // k/v disagree
    assert_eq!(arg_of(forward(&q, &t(&[2, 16, 2, 64]), &t(&[2, 16, 2, 64]), &opts)), "k"); // batch
    assert_eq!(arg_of(forward(&q, &t(&[1, 16, 2, 32]), &t(&[1, 16, 2, 32]), &opts)), "k"); // head_dim
    assert_eq!(arg_of(forward(&t(&[1, 16, 3, 64]), &k, &v, &opts)), "k"); // 3 heads vs 2 kv heads
    assert_eq!(arg_of(forward(&t(&[1, 16, 2, 264]), &t(&[1, 16, 2, 264]), &t(&[1, 16, 2, 264]), &opts)), "head_dim");
    let bad_scale = AttentionOptions { softmax_scale: Some(f32::NAN), ..opts };
    assert_eq!(arg_of(forward(&q, &k, &v, &bad_scale)), "softmax_scale");
    let negative_scale = AttentionOptions { softmax_scale: Some(-0.1), ..opts };
    assert_eq!(arg_of(forward(&q, &k, &v, &negative_scale)), "softmax_scale");
    // Dropout out of range.
    for p in [-0.1, 1.0, f32::NAN] {
        let dropout = AttentionOptions { dropout_p: p, ..opts };
        assert_eq!(arg_of(forward(&q, &k, &v, &dropout)), "dropout_p", "p = {p}");
    }
    // The scalar kernel has head dims 32, 64, 128 only; the tensor-core kernel multiples of 8.
    let scalar = AttentionOptions { kernel: ForwardKernel::Scalar, ..opts };
    assert_eq!(arg_of(forward(&t(&[1, 16, 2, 96]), &t(&[1, 16, 2, 96]), &t(&[1, 16, 2, 96]), &scalar)), "head_dim");
    // f32 inputs are not an attention dtype.
    let f = |shape: &[usize]| dev.upload(&vec![1.0f32; shape.iter().product()], shape).unwrap();
    assert_eq!(arg_of(forward(&f(&[1, 16, 2, 64]), &f(&[1, 16, 2, 64]), &f(&[1, 16, 2, 64]), &opts)), "q");
    // Empty tensors cannot even be made.
    assert!(matches!(dev.upload::<bf16>(&[], &[1, 0, 2, 64]), Err(Error::InvalidArgument { arg: "shape", .. })));
    // A view reaching past its buffer, and an unaligned stride.
    assert!(dev.upload_strided(&vec![bf16::ONE; 100], &[1, 2, 1, 64], &[128, 64, 64, 1]).is_err());
    let unaligned = dev.upload_strided(&vec![bf16::ONE; 4096], &[1, 16, 2, 64], &[4000, 130, 64, 1]).unwrap();
    assert_eq!(arg_of(forward(&unaligned, &k, &v, &opts)), "q");
    // forward_into with a wrong output shape.
    let mut o = t(&[1, 16, 2, 32]);
    let mut lse = dev.alloc::<f32>(&[1, 2, 16]).unwrap();
    assert_eq!(arg_of(forward_into(&q, &k, &v, &mut o, &mut lse, &opts)), "o");
}
