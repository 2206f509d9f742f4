//! The standard-attention baseline (`flashattn::standard`: cuBLAS GEMMs and the N x N matrices
//! in memory) on the GPU against the f64 CPU reference, with FlashAttention's rules: outputs
//! within 2x, gradients within 3x of the same math done naively in the input precision.
//!
//! Need a CUDA GPU and cuBLAS on the loader's path (LD_LIBRARY_PATH; benches/device_run.sh
//! exports PyTorch's): `#[ignore]`d without, run with `--include-ignored` on a GPU machine.
use flashattn::accuracy::{check_backward, check_forward, randn, random_qkv};
use flashattn::reference::{RefOptions, Shape};
use flashattn::{standard_backward, standard_forward, AttentionOptions, Device, Element, Tensor};
use half::{bf16, f16};
use rand::SeedableRng;

mod common;
use common::device;

fn shape(batch: usize, seqlen_q: usize, seqlen_k: usize, heads: usize, head_dim: usize) -> Shape {
    Shape { batch, seqlen_q, seqlen_k, heads, heads_kv: heads, head_dim }
}

/// Frees a NaN-filled buffer, so that the next allocations of the stream-ordered pool likely
/// reuse poisoned memory: an output element never written shows up as NaN.
fn poison_pool(dev: &Device, bytes: usize) {
    drop(dev.upload(&vec![f32::NAN; bytes / 4], &[bytes / 4]).unwrap());
}

/// q, k, v on the device: contiguous, or (`packed`) views into one interleaved
/// `[batch, seqlen, 3, heads, head_dim]` buffer, as a fused QKV projection gives them.
fn upload<T: Element>(dev: &Device, s: &Shape, h: [&[T]; 3], packed: bool) -> [Tensor<T>; 3] {
    let q_shape = [s.batch, s.seqlen_q, s.heads, s.head_dim];
    let kv_shape = [s.batch, s.seqlen_k, s.heads_kv, s.head_dim];
    if !packed {
        return [
            dev.upload(h[0], &q_shape).unwrap(),
            dev.upload(h[1], &kv_shape).unwrap(),
            dev.upload(h[2], &kv_shape).unwrap(),
        ];
    }
    assert_eq!(s.seqlen_q, s.seqlen_k);
    let (n, hd) = (s.seqlen_q, s.heads * s.head_dim);
    let mut buf = vec![T::default(); 3 * s.q_len()];
    for row in 0..s.batch * n {
        for (part, src) in h.iter().enumerate() {
            buf[(3 * row + part) * hd..][..hd].copy_from_slice(&src[row * hd..][..hd]);
        }
    }
    let strides = [3 * n * hd, 3 * hd, s.head_dim, 1];
    let view = |part: usize| dev.upload_strided(&buf[part * hd..], &q_shape, &strides).unwrap();
    [view(0), view(1), view(2)]
}

/// Forward and backward of one case; prints the checks, returns whether both passed.
fn run_case<T: Element>(dev: &Device, s: &Shape, causal: bool, packed: bool, seed: u64) -> bool {
    let (qh, kh, vh) = random_qkv::<T>(s, seed);
    let doh: Vec<T> = randn(s.q_len(), &mut rand::rngs::StdRng::seed_from_u64(seed ^ 0xd0));
    let [q, k, v] = upload(dev, s, [&qh, &kh, &vh], packed);
    let d_o = dev.upload(&doh, &[s.batch, s.seqlen_q, s.heads, s.head_dim]).unwrap();
    let opts = AttentionOptions { causal, ..Default::default() };
    let nn_bytes = 6 * s.batch * s.heads * s.seqlen_q * s.seqlen_k;
    poison_pool(dev, 4 * (s.q_len() + s.lse_len()) + nn_bytes + (1 << 20));
    let (o, lse) = standard_forward(&q, &k, &v, &opts).unwrap();
    let ref_opts = RefOptions { causal, ..RefOptions::new(s.head_dim) };
    let fwd = check_forward(&qh, &kh, &vh, s, &ref_opts, &o.to_host().unwrap(), &lse.to_host().unwrap());
    poison_pool(dev, 2 * (s.q_len() + 2 * s.kv_len()) + nn_bytes + (1 << 20));
    let (dq, dk, dv) = standard_backward(&q, &k, &v, &o, &lse, &d_o, &opts).unwrap();
    let (dq, dk, dv) = (dq.to_host().unwrap(), dk.to_host().unwrap(), dv.to_host().unwrap());
    let bwd = check_backward(&qh, &kh, &vh, &doh, s, &ref_opts, &dq, &dk, &dv);
    println!("{} {s:?} causal={causal} packed={packed}: forward {fwd}; backward {bwd}", T::NAME);
    fwd.passed() && bwd.passed()
}

fn cases() -> Vec<(Shape, bool, bool)> {
    vec![
        (shape(2, 97, 97, 2, 64), false, false),
        (shape(2, 97, 97, 2, 64), true, false),
        (shape(1, 128, 128, 3, 128), false, false),
        (shape(1, 128, 128, 3, 128), true, false),
        // Bottom-right causal alignment, both ways (seqlen_q > seqlen_k: rows that see no key).
        (shape(1, 64, 160, 2, 32), true, false),
        (shape(1, 160, 64, 2, 32), true, false),
        (shape(2, 113, 113, 2, 256), true, false),
        // Strided views into a packed QKV buffer.
        (shape(2, 97, 97, 2, 64), true, true),
    ]
}

fn run_all<T: Element>() {
    let dev = device();
    let failed: Vec<String> = cases()
        .into_iter()
        .enumerate()
        .filter(|(i, (s, causal, packed))| !run_case::<T>(&dev, s, *causal, *packed, 500 + *i as u64))
        .map(|(_, c)| format!("{c:?}"))
        .collect();
    assert!(failed.is_empty(), "failed cases:\n{}", failed.join("\n"));
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn standard_matches_reference_bf16() {
    run_all::<bf16>();
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn standard_matches_reference_f16() {
    run_all::<f16>();
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn standard_rejects_gqa_with_an_error() {
    let dev = device();
    let s = Shape { batch: 1, seqlen_q: 16, seqlen_k: 16, heads: 4, heads_kv: 2, head_dim: 64 };
    let (qh, kh, vh) = random_qkv::<bf16>(&s, 1);
    let q = dev.upload(&qh, &[1, 16, 4, 64]).unwrap();
    let k = dev.upload(&kh, &[1, 16, 2, 64]).unwrap();
    let v = dev.upload(&vh, &[1, 16, 2, 64]).unwrap();
    let e = standard_forward(&q, &k, &v, &AttentionOptions::default()).unwrap_err().to_string();
    assert!(e.contains("GQA"), "{e}");
}
