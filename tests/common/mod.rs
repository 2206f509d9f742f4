//! Pieces shared by the GPU test files (each test file is its own crate and includes this module
//! with `mod common;`; not every file uses every piece).
#![allow(dead_code)]

use flashattn::accuracy::{check_forward, random_qkv, ForwardCheck};
use flashattn::reference::{RefOptions, Shape};
use flashattn::{forward_into, AttentionOptions, Device, Dtype, Element, ForwardKernel, Tensor};
use half::{bf16, f16};

pub fn device() -> Device {
    Device::new(0).unwrap_or_else(|e| panic!("this test needs a CUDA GPU: {e}"))
}

pub fn shape(batch: usize, seqlen_q: usize, seqlen_k: usize, heads: usize, heads_kv: usize, head_dim: usize) -> Shape {
    Shape { batch, seqlen_q, seqlen_k, heads, heads_kv, head_dim }
}

/// One forward case: a shape, the mask, the seed of its random inputs.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub shape: Shape,
    pub causal: bool,
    pub seed: u64,
}

pub fn upload_qkv<T: Element>(dev: &Device, s: &Shape, q: &[T], k: &[T], v: &[T]) -> (Tensor<T>, Tensor<T>, Tensor<T>) {
    (
        dev.upload(q, &[s.batch, s.seqlen_q, s.heads, s.head_dim]).unwrap(),
        dev.upload(k, &[s.batch, s.seqlen_k, s.heads_kv, s.head_dim]).unwrap(),
        dev.upload(v, &[s.batch, s.seqlen_k, s.heads_kv, s.head_dim]).unwrap(),
    )
}

/// Runs one forward case: fresh random inputs, NaN-poisoned outputs (an element the kernel
/// never writes fails the check), forward with `kernel`, compare by the 2x rule.
pub fn run_case<T: Element>(dev: &Device, case: &Case, kernel: ForwardKernel) -> ForwardCheck {
    let s = &case.shape;
    let (qh, kh, vh) = random_qkv::<T>(s, case.seed);
    let (q, k, v) = upload_qkv(dev, s, &qh, &kh, &vh);
    let mut o = dev.alloc::<T>(q.shape()).unwrap();
    let mut lse = dev.alloc::<f32>(&[s.batch, s.heads, s.seqlen_q]).unwrap();
    o.fill(T::NAN).unwrap();
    lse.fill(f32::NAN).unwrap();
    let opts = AttentionOptions { causal: case.causal, kernel, ..Default::default() };
    forward_into(&q, &k, &v, &mut o, &mut lse, &opts).unwrap();
    let ref_opts = RefOptions { causal: case.causal, ..RefOptions::new(s.head_dim) };
    check_forward(&qh, &kh, &vh, s, &ref_opts, &o.to_host().unwrap(), &lse.to_host().unwrap())
}

/// Runs every case with `kernel`, prints one line each, and fails listing all failures (not
/// just the first).
pub fn run_cases<T: Element>(dev: &Device, cases: &[Case], kernel: ForwardKernel) {
    let mut failures = Vec::new();
    for case in cases {
        let check = run_case::<T>(dev, case, kernel);
        let line =
            format!("{kernel:?} {} {:?} causal={} seed={}: {check}", T::NAME, case.shape, case.causal, case.seed);
        println!("{line}");
        if !check.passed() {
            failures.push(line);
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// One compiled kernel of a table, as the tests select it.
pub struct TableRow {
    pub name: &'static str,
    pub dtype: Dtype,
    pub kernel: ForwardKernel,
    pub head_dim: usize,
    pub causal: bool,
}

/// Every row once, on `seqlen_q x seqlen_k` (partial blocks) with GQA 2/1; fails listing every
/// kernel that fails.
pub fn run_table_rows(dev: &Device, rows: &[TableRow], seqlen_q: usize, seqlen_k: usize, first_seed: u64) {
    let mut failures = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let case = Case {
            shape: shape(1, seqlen_q, seqlen_k, 2, 1, row.head_dim),
            causal: row.causal,
            seed: first_seed + i as u64,
        };
        let check = match row.dtype {
            Dtype::Bf16 => run_case::<bf16>(dev, &case, row.kernel),
            Dtype::F16 => run_case::<f16>(dev, &case, row.kernel),
        };
        let line = format!("{} {:?}: {check}", row.name, case.shape);
        println!("{line}");
        if !check.passed() {
            failures.push(line);
        }
    }
    assert!(failures.is_empty(), "{} kernels failed:\n{}", failures.len(), failures.join("\n"));
}
