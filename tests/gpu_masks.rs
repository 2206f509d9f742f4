//! Masks and score modifications on the GPU (windows, softcap, ALiBi, block-sparse masks,
//! dropout, packed variable-length batches), forward and backward, against the f64 CPU reference
//! with FlashAttention's rules (2x the naive error for O, 3x for gradients). Outputs come from
//! a NaN-poisoned memory pool, so an element never written fails. Need a CUDA GPU.
use flashattn::accuracy::{check_backward, check_forward, randn, random_qkv, BackwardCheck, ForwardCheck};
use flashattn::dropout::{dropout_mask, reference_p};
use flashattn::masks::BLOCK_MASK_SIZE;
use flashattn::reference::{RefBlockMask, RefOptions};
use flashattn::{
    backward_masked, backward_varlen, forward_masked, forward_varlen, AttentionOptions, Device, Element, Error,
    ForwardKernel, MaskInputs, Shape, Tensor, VarlenBatch,
};
use half::{bf16, f16};
use rand::{Rng, SeedableRng};

mod common;
use common::{device, shape};

/// Frees a NaN-filled buffer so that the next allocations of the stream-ordered pool likely
/// reuse poisoned memory.
fn poison_pool(dev: &Device, bytes: usize) {
    drop(dev.upload(&vec![f32::NAN; bytes / 4], &[bytes / 4]).unwrap());
}

/// One masked problem: options plus the tensor inputs (host copies).
#[derive(Clone, Debug)]
struct MaskCase {
    shape: Shape,
    opts: AttentionOptions,
    /// `[heads]` or `[batch, heads]`.
    alibi: Option<Vec<f32>>,
    /// (mask `[mask_heads, q_blocks, k_blocks]`, mask_heads).
    block_mask: Option<(Vec<u8>, usize)>,
    seed: u64,
}

impl MaskCase {
    fn new(shape: Shape, opts: AttentionOptions, seed: u64) -> Self {
        MaskCase { shape, opts, alibi: None, block_mask: None, seed }
    }
    fn alibi(mut self, per_batch: bool) -> Self {
        let n = if per_batch { self.shape.batch * self.shape.heads } else { self.shape.heads };
        // ALiBi's geometric slopes, varied per entry.
        self.alibi = Some((0..n).map(|i| 0.5f32.powi(1 + (i % 8) as i32)).collect());
        self
    }
    /// A random block mask of about `density`, with the first block row empty (those rows see
    /// no key: zeros out, LSE -inf, zero gradients).
    fn block_mask(mut self, density: f64, per_head: bool) -> Self {
        let s = &self.shape;
        let (qb, kb) = (s.seqlen_q.div_ceil(BLOCK_MASK_SIZE), s.seqlen_k.div_ceil(BLOCK_MASK_SIZE));
        let heads = if per_head { s.heads } else { 1 };
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed ^ 0xb10c);
        let mut mask: Vec<u8> = (0..heads * qb * kb).map(|_| rng.random_bool(density) as u8).collect();
        for h in 0..heads {
            mask[h * qb * kb..][..kb].fill(0);
        }
        self.block_mask = Some((mask, heads));
        self
    }
    fn label(&self) -> String {
        let o = &self.opts;
        format!(
            "{:?} causal={} window=({:?},{:?}) softcap={} dropout={} alibi={} blocks={} det={}",
            self.shape,
            o.causal,
            o.window_left,
            o.window_right,
            o.softcap,
            o.dropout_p,
            self.alibi.as_ref().map_or(0, |a| a.len()),
            self.block_mask.as_ref().map_or(0, |m| m.1),
            o.deterministic
        )
    }
}

/// The reference options of a case (dropout mask built on the CPU from the same Philox stream).
fn ref_options<'a>(
    case: &'a MaskCase,
    alibi: &'a Option<Vec<f64>>,
    drop_mask: &'a Option<Vec<bool>>,
) -> RefOptions<'a> {
    let o = &case.opts;
    RefOptions {
        causal: o.causal,
        window_left: o.window_left,
        window_right: o.window_right,
        softcap: o.softcap as f64,
        alibi_slopes: alibi.as_deref(),
        block_mask: case.block_mask.as_ref().map(|(m, h)| RefBlockMask { data: m, heads: *h, block: BLOCK_MASK_SIZE }),
        dropout: drop_mask.as_ref().map(|m| (m.as_slice(), reference_p(o.dropout_p))),
        ..RefOptions::new(case.shape.head_dim)
    }
}

/// Forward and backward of a case on the GPU, each checked against the reference.
fn run<T: Element>(dev: &Device, case: &MaskCase) -> (ForwardCheck, BackwardCheck) {
    let s = &case.shape;
    let (qh, kh, vh) = random_qkv::<T>(s, case.seed);
    let doh: Vec<T> = randn(s.q_len(), &mut rand::rngs::StdRng::seed_from_u64(case.seed ^ 0xd0));
    let q_shape = [s.batch, s.seqlen_q, s.heads, s.head_dim];
    let kv_shape = [s.batch, s.seqlen_k, s.heads_kv, s.head_dim];
    let q = dev.upload(&qh, &q_shape).unwrap();
    let k = dev.upload(&kh, &kv_shape).unwrap();
    let v = dev.upload(&vh, &kv_shape).unwrap();
    let d_o = dev.upload(&doh, &q_shape).unwrap();
    let alibi = case.alibi.as_ref().map(|a| {
        let shape = if a.len() == s.heads { vec![s.heads] } else { vec![s.batch, s.heads] };
        dev.upload(a, &shape).unwrap()
    });
    let block_mask = case.block_mask.as_ref().map(|(m, heads)| {
        let shape = [*heads, s.seqlen_q.div_ceil(BLOCK_MASK_SIZE), s.seqlen_k.div_ceil(BLOCK_MASK_SIZE)];
        dev.upload(m, &shape).unwrap()
    });
    let inputs = MaskInputs { alibi_slopes: alibi.as_ref(), block_mask: block_mask.as_ref() };
    poison_pool(dev, 4 * (s.q_len() + s.lse_len()) + (1 << 20));
    let (o, lse) = forward_masked(&q, &k, &v, &inputs, &case.opts).unwrap();
    poison_pool(dev, 4 * (2 * s.q_len() + 2 * s.kv_len()) + (1 << 20));
    // Forward tiles (`WgmmaConfig`) choose the forward's build only: the backward runs Auto.
    let bwd_opts = match case.opts.kernel {
        ForwardKernel::WgmmaConfig { .. } | ForwardKernel::WarpSpecialized => {
            AttentionOptions { kernel: ForwardKernel::Auto, ..case.opts }
        }
        _ => case.opts,
    };
    let (dq, dk, dv) = backward_masked(&q, &k, &v, &o, &lse, &d_o, &inputs, &bwd_opts).unwrap();

    let alibi64 = case.alibi.as_ref().map(|a| a.iter().map(|&x| x as f64).collect());
    let o_ = &case.opts;
    let drop_mask = (o_.dropout_p > 0.0).then(|| dropout_mask(s, o_.dropout_p, o_.dropout_seed, o_.dropout_offset));
    let ref_opts = ref_options(case, &alibi64, &drop_mask);
    let fwd = check_forward(&qh, &kh, &vh, s, &ref_opts, &o.to_host().unwrap(), &lse.to_host().unwrap());
    let (dq, dk, dv) = (dq.to_host().unwrap(), dk.to_host().unwrap(), dv.to_host().unwrap());
    let bwd = check_backward(&qh, &kh, &vh, &doh, s, &ref_opts, &dq, &dk, &dv);
    (fwd, bwd)
}

/// Runs every case in both dtypes (alternating by index), printing one line each; fails listing
/// every failure.
fn run_all(cases: &[MaskCase]) {
    let dev = device();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (name, (fwd, bwd)) =
            if i % 2 == 0 { ("bf16", run::<bf16>(&dev, case)) } else { ("f16", run::<f16>(&dev, case)) };
        let line = format!("{name} {}: fwd {fwd} | bwd {bwd}", case.label());
        println!("{line}");
        if !(fwd.passed() && bwd.passed()) {
            failures.push(line);
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

fn opts() -> AttentionOptions {
    AttentionOptions::default()
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn sliding_window_alone_and_with_causal() {
    let mut cases = Vec::new();
    for (i, (n_q, n_k)) in [(97, 1025), (1025, 97), (300, 300), (1, 513)].into_iter().enumerate() {
        for (causal, left, right) in
            [(false, Some(64), Some(32)), (true, Some(100), None), (false, None, Some(0)), (false, Some(0), None)]
        {
            // d = 128 runs the masked wgmma kernel on compute capability 9.0, d = 64 mma.sync.
            for d in [64, 128] {
                let o = AttentionOptions { causal, window_left: left, window_right: right, ..opts() };
                cases.push(MaskCase::new(shape(1, n_q, n_k, 2, 1, d), o, 100 + i as u64));
            }
        }
    }
    run_all(&cases);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn softcap_and_alibi() {
    let s = shape(2, 257, 300, 4, 2, 64);
    run_all(&[
        MaskCase::new(s, AttentionOptions { softcap: 2.0, ..opts() }, 1),
        MaskCase::new(s, AttentionOptions { softcap: 10.0, causal: true, ..opts() }, 2),
        MaskCase::new(s, opts(), 3).alibi(false),
        MaskCase::new(s, AttentionOptions { causal: true, ..opts() }, 4).alibi(true),
        MaskCase::new(s, AttentionOptions { softcap: 3.0, window_left: Some(50), ..opts() }, 5).alibi(true),
    ]);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn block_sparse_masks_with_empty_rows() {
    let s = shape(1, 300, 1025, 4, 2, 64);
    run_all(&[
        MaskCase::new(s, opts(), 11).block_mask(0.5, false),
        MaskCase::new(s, opts(), 12).block_mask(0.3, true),
        MaskCase::new(s, AttentionOptions { causal: true, ..opts() }, 13).block_mask(0.6, true),
        MaskCase::new(shape(2, 640, 640, 2, 2, 128), opts(), 14).block_mask(0.25, true),
        MaskCase::new(s, opts(), 15).block_mask(0.0, false),
        // d = 128: the wgmma kernel under Auto on compute capability 9.0; mma.sync forced.
        MaskCase::new(shape(2, 700, 1025, 4, 1, 128), opts(), 16).block_mask(0.4, true),
        MaskCase::new(shape(2, 700, 1025, 4, 1, 128), AttentionOptions { causal: true, ..opts() }, 17)
            .block_mask(0.5, false),
        MaskCase::new(
            shape(1, 700, 1025, 4, 1, 128),
            AttentionOptions { kernel: ForwardKernel::TensorCore, ..opts() },
            18,
        )
        .block_mask(0.4, true),
        // A block mask alone (the masked wgmma build on compute capability 9.0) at both head
        // dims and dtypes (even index: bf16), awkward lengths, GQA, deterministic dQ.
        MaskCase::new(shape(1, 97, 1025, 4, 2, 128), opts(), 19).block_mask(0.6, false),
        MaskCase::new(shape(2, 1, 513, 2, 2, 64), opts(), 20).block_mask(0.7, true),
        MaskCase::new(shape(1, 1025, 300, 2, 1, 64), opts(), 21).block_mask(0.5, true),
        MaskCase::new(shape(1, 300, 700, 2, 2, 128), AttentionOptions { deterministic: true, ..opts() }, 22)
            .block_mask(0.5, false),
    ]);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn dropout_reproduces_the_cpu_mask() {
    let mut cases = Vec::new();
    for (i, p) in [0.1f32, 0.5].into_iter().enumerate() {
        for causal in [false, true] {
            let o =
                AttentionOptions { dropout_p: p, dropout_seed: 1234 + i as u64, dropout_offset: 7, causal, ..opts() };
            cases.push(MaskCase::new(shape(2, 257, 300, 4, 2, 64), o, 20 + i as u64));
            cases.push(MaskCase::new(shape(1, 97, 1025, 2, 1, 128), o, 30 + i as u64));
            // Dropout alone (causal: the plain wgmma dK/dV kernel's dropout build on Hopper at
            // d = 128): partial last tiles and a single query row.
            cases.push(MaskCase::new(shape(1, 1025, 1025, 2, 2, 128), o, 100 + i as u64));
            cases.push(MaskCase::new(shape(3, 1, 97, 2, 1, 128), o, 110 + i as u64));
            // The deterministic dQ kernel (mma.sync) beside the wgmma dropout dK/dV kernel: two
            // kernels with different lane layouts must regenerate the forward's mask.
            let det = AttentionOptions { deterministic: true, ..o };
            cases.push(MaskCase::new(shape(2, 257, 300, 4, 2, 64), det, 80 + i as u64));
            cases.push(MaskCase::new(shape(1, 97, 1025, 2, 1, 128), det, 90 + i as u64));
            // With a window too.
            let w = AttentionOptions { window_left: Some(100), ..o };
            cases.push(MaskCase::new(shape(1, 300, 257, 2, 2, 64), w, 50 + i as u64));
            cases.push(MaskCase::new(shape(2, 200, 333, 4, 1, 128), w, 60 + i as u64));
            // The masked wgmma dropout builds `Auto` does not run, chosen by their tiles (on other
            // GPUs an error).
            if device().compute_capability() == (9, 0) {
                for (d, block_m, block_n) in [(64, 128u16, 128u16), (128, 64, 64)] {
                    let kernel = ForwardKernel::WgmmaConfig { block_m, block_n, pipelined: true };
                    let t = AttentionOptions { kernel, ..w };
                    cases.push(MaskCase::new(shape(2, 97, 1025, 2, 2, d), t, 70 + d as u64 + i as u64));
                }
            }
        }
    }
    run_all(&cases);
}

/// The warp-specialized forward's dropout builds (chosen explicitly; compute capability 9.0
/// only): the same mask as the CPU's, causal or not, p = 0.1 and 0.5, head dims 40, 64, 96, 128,
/// every case in bf16 and f16.
#[test]
#[ignore = "needs a CUDA GPU"]
fn ws_dropout_reproduces_the_cpu_mask() {
    if device().compute_capability() != (9, 0) {
        println!("skipped: the warp-specialized forward needs compute capability 9.0");
        return;
    }
    let mut cases = Vec::new();
    for (i, p) in [0.1f32, 0.5].into_iter().enumerate() {
        for causal in [false, true] {
            let o = AttentionOptions {
                dropout_p: p,
                dropout_seed: 4321 + i as u64,
                dropout_offset: 3,
                causal,
                kernel: ForwardKernel::WarpSpecialized,
                ..opts()
            };
            for (j, s) in [
                shape(2, 257, 300, 4, 2, 64),
                shape(1, 1025, 1025, 2, 2, 128),
                shape(3, 1, 97, 2, 1, 128),
                shape(1, 300, 257, 2, 1, 96),
                shape(2, 200, 330, 2, 2, 40),
            ]
            .into_iter()
            .enumerate()
            {
                // Twice: `run_all` runs even cases in bf16 and odd ones in f16, so each build runs.
                let case = MaskCase::new(s, o, 200 + 10 * j as u64 + i as u64);
                cases.extend([case.clone(), case]);
            }
        }
    }
    run_all(&cases);
}

/// Everything at once (GQA, causal, window, softcap, per-batch ALiBi, per-head block mask with
/// empty rows, dropout) at every head dim, atomic and deterministic dQ.
#[test]
#[ignore = "needs a CUDA GPU"]
fn all_masks_combined_at_every_head_dim() {
    let mut cases = Vec::new();
    for (i, d) in [32, 64, 72, 96, 128, 160, 192, 224, 256].into_iter().enumerate() {
        let o = AttentionOptions {
            causal: i % 2 == 0,
            window_left: Some(150),
            softcap: 4.0,
            dropout_p: 0.1,
            dropout_seed: 99,
            deterministic: i % 3 == 0,
            ..opts()
        };
        cases.push(MaskCase::new(shape(2, 300, 385, 4, 2, d), o, 40 + i as u64).alibi(true).block_mask(0.7, true));
    }
    run_all(&cases);
}

/// Observed drop fraction of the kernels' mask within 0.01 of p. The forward with q = 0 (uniform
/// weights 1 / (visible keys)) and one-hot V columns returns `keep(i, j) / (visible keys * keep
/// probability)` in column j of O: the GPU's own mask, compared element by element with the
/// CPU's. `Auto`'s forward, and on compute capability 9.0 the warp-specialized one, also causal
/// (its tiles then start before row 0) and with lengths that end inside tiles.
#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_dropout_mask_matches_the_cpu_and_drops_p() {
    let dev = device();
    let mut runs = vec![(ForwardKernel::Auto, false, 512, 128)];
    if dev.compute_capability() == (9, 0) {
        runs.extend([
            (ForwardKernel::WarpSpecialized, false, 300, 200),
            (ForwardKernel::WarpSpecialized, true, 300, 300),
        ]);
    }
    for (kernel, causal, n_q, n_k) in runs {
        for p in [0.1f32, 0.5] {
            exact_mask_case(&dev, kernel, causal, n_q, n_k, p);
        }
    }
}

fn exact_mask_case(dev: &Device, kernel: ForwardKernel, causal: bool, n_q: usize, n_k: usize, p: f32) {
    let d = 128;
    let s = shape(1, n_q, n_k, 2, 2, d);
    let opts = AttentionOptions { dropout_p: p, dropout_seed: 5, dropout_offset: 3, causal, kernel, ..opts() };
    let q = dev.upload(&vec![bf16::ZERO; s.q_len()], &[1, n_q, 2, d]).unwrap();
    let k = dev.upload(&random_qkv::<bf16>(&s, 1).1, &[1, n_k, 2, d]).unwrap();
    let mut vh = vec![bf16::ZERO; s.kv_len()];
    for j in 0..n_k {
        for h in 0..2 {
            vh[(j * 2 + h) * d + j] = bf16::ONE;
        }
    }
    let v = dev.upload(&vh, &[1, n_k, 2, d]).unwrap();
    let (o, _) = forward_masked(&q, &k, &v, &MaskInputs::default(), &opts).unwrap();
    let o = o.to_host().unwrap();
    let cpu = dropout_mask(&s, p, 5, 3);
    let (mut kept, mut visible, mut mismatches) = (0usize, 0usize, 0usize);
    for h in 0..2 {
        for i in 0..n_q {
            for j in 0..n_k {
                let gpu_kept = o[(i * 2 + h) * d + j].to_f32() > 0.0;
                if causal && j as i64 > i as i64 + n_k as i64 - n_q as i64 {
                    mismatches += gpu_kept as usize; // a key the row does not see
                    continue;
                }
                visible += 1;
                kept += gpu_kept as usize;
                mismatches += (gpu_kept != cpu[(h * n_q + i) * n_k + j]) as usize;
            }
        }
    }
    let dropped = 1.0 - kept as f64 / visible as f64;
    let what = format!("{kernel:?}, causal {causal}, {n_q} x {n_k}, p {p}");
    println!("{what}: dropped {dropped:.4}, {mismatches} elements differ from the CPU mask");
    assert_eq!(mismatches, 0, "{what}");
    assert!((dropped - p as f64).abs() <= 0.01, "{what}: dropped {dropped}");
}

/// Packed batches mixing lengths 1, 97 and 1025 (queries and keys differ), each sequence checked
/// against the reference run on it alone.
#[test]
#[ignore = "needs a CUDA GPU"]
fn varlen_batches_match_each_sequence_alone() {
    for d in [64, 128] {
        varlen_case(d);
    }
}

fn varlen_case(d: usize) {
    let dev = device();
    let (heads, heads_kv) = (4, 2);
    let lens_q = [1usize, 97, 1025, 300];
    let lens_k = [97usize, 1025, 1, 300];
    let batch = VarlenBatch::from_lengths(&lens_q, &lens_k).unwrap();
    let mut failures = Vec::new();
    // A block mask (per head, over the longest sequence's blocks) applies to each entry from its
    // start: the block-sparse dK/dV grid's key-block order is taken over the longest lengths.
    let longest = shape(1, batch.max_seqlen_q(), batch.max_seqlen_k(), heads, heads_kv, d);
    for (i, (o, density)) in [
        (opts(), None),
        (AttentionOptions { causal: true, ..opts() }, None),
        (AttentionOptions { causal: true, window_left: Some(64), softcap: 5.0, ..opts() }, None),
        (AttentionOptions { dropout_p: 0.1, dropout_seed: 3, deterministic: true, ..opts() }, None),
        (opts(), Some(0.5)),
        (AttentionOptions { causal: true, ..opts() }, Some(0.7)),
    ]
    .into_iter()
    .enumerate()
    {
        let blocks =
            density.map(|p| MaskCase::new(longest, o, 70 + i as u64).block_mask(p, true).block_mask.unwrap().0);
        let (qb, kb) = (longest.seqlen_q.div_ceil(BLOCK_MASK_SIZE), longest.seqlen_k.div_ceil(BLOCK_MASK_SIZE));
        let block_mask = blocks.as_ref().map(|m| dev.upload(m, &[heads, qb, kb]).unwrap());
        let inputs = MaskInputs { block_mask: block_mask.as_ref(), ..Default::default() };
        let total =
            Shape { batch: 1, seqlen_q: batch.total_q(), seqlen_k: batch.total_k(), heads, heads_kv, head_dim: d };
        let (qh, kh, vh) = random_qkv::<bf16>(&total, 60 + i as u64);
        let doh: Vec<bf16> = randn(total.q_len(), &mut rand::rngs::StdRng::seed_from_u64(61 + i as u64));
        let q = dev.upload(&qh, &[batch.total_q(), heads, d]).unwrap();
        let k = dev.upload(&kh, &[batch.total_k(), heads_kv, d]).unwrap();
        let v = dev.upload(&vh, &[batch.total_k(), heads_kv, d]).unwrap();
        let d_o = dev.upload(&doh, &[batch.total_q(), heads, d]).unwrap();
        poison_pool(&dev, 16 * total.q_len() + (1 << 20));
        let (out, lse) = forward_varlen(&q, &k, &v, &batch, &inputs, &o).unwrap();
        poison_pool(&dev, 16 * total.q_len() + 16 * total.kv_len());
        let (dq, dk, dv) = backward_varlen(&q, &k, &v, &out, &lse, &d_o, &batch, &inputs, &o).unwrap();
        let [out, dq, dk, dv] = [&out, &dq, &dk, &dv].map(|t| t.to_host().unwrap());
        let lse = lse.to_host().unwrap();
        for b in 0..batch.batch() {
            let (q0, n_q, k0, n_k) = batch.sequence(b);
            let s = shape(1, n_q, n_k, heads, heads_kv, d);
            let rows = |x: &[bf16], start: usize, n: usize, h: usize| x[start * h * d..(start + n) * h * d].to_vec();
            let (qs, ks, vs, dos) = (
                rows(&qh, q0, n_q, heads),
                rows(&kh, k0, n_k, heads_kv),
                rows(&vh, k0, n_k, heads_kv),
                rows(&doh, q0, n_q, heads),
            );
            // Sequence b draws the dropout stream of batch entry b: offset + b * heads.
            let drop = (o.dropout_p > 0.0)
                .then(|| dropout_mask(&s, o.dropout_p, o.dropout_seed, o.dropout_offset + (b * heads) as u64));
            let mut case = MaskCase::new(s, o, 0);
            // Entry b's corner of the mask: its own block rows and columns of each head.
            case.block_mask = blocks.as_ref().map(|m| {
                let (rows, cols) = (n_q.div_ceil(BLOCK_MASK_SIZE), n_k.div_ceil(BLOCK_MASK_SIZE));
                let corner = (0..heads * rows).flat_map(|r| m[(r / rows * qb + r % rows) * kb..][..cols].to_vec());
                (corner.collect(), heads)
            });
            let ref_opts = ref_options(&case, &None, &drop);
            let lse_b: Vec<f32> = (0..heads).flat_map(|h| lse[h * batch.total_q() + q0..][..n_q].to_vec()).collect();
            let fwd = check_forward(&qs, &ks, &vs, &s, &ref_opts, &rows(&out, q0, n_q, heads), &lse_b);
            let bwd = check_backward(
                &qs,
                &ks,
                &vs,
                &dos,
                &s,
                &ref_opts,
                &rows(&dq, q0, n_q, heads),
                &rows(&dk, k0, n_k, heads_kv),
                &rows(&dv, k0, n_k, heads_kv),
            );
            // One key with dropout: dq and dk are exactly 0 (dS = dP z / keep - D with D =
            // dP z / keep), but D comes from O rounded to bf16 (as in FlashAttention), so ours
            // carry that rounding while the naive baseline is exactly 0. dv is still checked.
            let exact_zero_grads = n_k == 1 && o.dropout_p > 0.0;
            let note = if exact_zero_grads { " (dq, dk exempt: exactly 0, only dv checked)" } else { "" };
            let line = format!("varlen {} seq {b} ({n_q} x {n_k}): fwd {fwd} | bwd {bwd}{note}", case.label());
            println!("{line}");
            let bwd_ok = if exact_zero_grads { bwd.dv.passed() } else { bwd.passed() };
            if !(fwd.passed() && bwd_ok) {
                failures.push(line);
            }
        }
    }
    assert!(failures.is_empty(), "{} failed:\n{}", failures.len(), failures.join("\n"));
}

/// Bad mask inputs are errors, never launches.
#[test]
#[ignore = "needs a CUDA GPU"]
fn bad_mask_inputs_are_errors() {
    let dev = device();
    let s = shape(1, 300, 300, 4, 2, 64);
    let (qh, kh, _) = random_qkv::<bf16>(&s, 1);
    let q = dev.upload(&qh, &[1, 300, 4, 64]).unwrap();
    let k = dev.upload(&kh, &[1, 300, 2, 64]).unwrap();
    let invalid = |r: Result<(Tensor<bf16>, Tensor<f32>), Error>, arg: &str| match r {
        Err(Error::InvalidArgument { arg: a, .. }) if a == arg => {}
        other => panic!("{arg}: expected an InvalidArgument error, got {other:?}"),
    };
    let wrong_mask = dev.upload(&[1u8; 4], &[1, 2, 2]).unwrap();
    invalid(
        forward_masked(&q, &k, &k, &MaskInputs { block_mask: Some(&wrong_mask), ..Default::default() }, &opts()),
        "block_mask",
    );
    let wrong_slopes = dev.upload(&[0.5f32; 3], &[3]).unwrap();
    invalid(
        forward_masked(&q, &k, &k, &MaskInputs { alibi_slopes: Some(&wrong_slopes), ..Default::default() }, &opts()),
        "alibi_slopes",
    );
    let scalar = AttentionOptions { kernel: ForwardKernel::Scalar, window_left: Some(3), ..opts() };
    invalid(forward_masked(&q, &k, &k, &MaskInputs::default(), &scalar), "kernel");
    invalid(
        forward_masked(&q, &k, &k, &MaskInputs::default(), &AttentionOptions { softcap: -1.0, ..opts() }),
        "softcap",
    );
    invalid(
        forward_masked(&q, &k, &k, &MaskInputs::default(), &AttentionOptions { dropout_p: 1.0, ..opts() }),
        "dropout_p",
    );
    // Packed tensors whose totals disagree with the offsets.
    let batch = VarlenBatch::from_lengths(&[100, 100], &[100, 100]).unwrap();
    let qp = dev.upload(&qh[..300 * 4 * 64], &[300, 4, 64]).unwrap();
    let kp = dev.upload(&kh[..200 * 2 * 64], &[200, 2, 64]).unwrap();
    invalid(forward_varlen(&qp, &kp, &kp, &batch, &MaskInputs::default(), &opts()), "q");
    assert!(VarlenBatch::new(&[0, 5, 3], &[0, 5, 6]).is_err());
    assert!(VarlenBatch::new(&[1, 5], &[0, 5]).is_err());
}

/// Packed batches with empty sequences: no keys (o = 0, LSE = -inf, dq = 0), no queries (dk =
/// dv = 0), beside a normal sequence that still matches the reference.
#[test]
#[ignore = "needs a CUDA GPU"]
fn varlen_empty_sequences() {
    let dev = device();
    let (heads, d) = (2, 64);
    let batch = VarlenBatch::from_lengths(&[3, 0, 64], &[0, 5, 64]).unwrap();
    let total =
        Shape { batch: 1, seqlen_q: batch.total_q(), seqlen_k: batch.total_k(), heads, heads_kv: heads, head_dim: d };
    let (qh, kh, vh) = random_qkv::<bf16>(&total, 77);
    let doh: Vec<bf16> = randn(total.q_len(), &mut rand::rngs::StdRng::seed_from_u64(78));
    let up = |x: &[bf16], n: usize| dev.upload(x, &[n, heads, d]).unwrap();
    let (q, k, v, d_o) =
        (up(&qh, batch.total_q()), up(&kh, batch.total_k()), up(&vh, batch.total_k()), up(&doh, batch.total_q()));
    let none = MaskInputs::default();
    poison_pool(&dev, 1 << 22);
    let (o, lse) = forward_varlen(&q, &k, &v, &batch, &none, &opts()).unwrap();
    poison_pool(&dev, 1 << 22);
    let (dq, dk, dv) = backward_varlen(&q, &k, &v, &o, &lse, &d_o, &batch, &none, &opts()).unwrap();
    let [o, dq, dk, dv] = [&o, &dq, &dk, &dv].map(|t| t.to_host().unwrap());
    let lse = lse.to_host().unwrap();
    let row = heads * d;
    // Sequence 0: 3 queries, no key.
    assert!(o[..3 * row].iter().all(|x| x.to_f32() == 0.0), "o of a sequence without keys");
    assert!(dq[..3 * row].iter().all(|x| x.to_f32() == 0.0), "dq of a sequence without keys");
    for h in 0..heads {
        assert!(
            lse[h * batch.total_q()..][..3].iter().all(|&x| x == f32::NEG_INFINITY),
            "lse of a sequence without keys"
        );
    }
    // Sequence 1: 5 keys, no query.
    assert!(dk[..5 * row].iter().chain(&dv[..5 * row]).all(|x| x.to_f32() == 0.0), "dk/dv of keys no query sees");
    // Sequence 2: 64 x 64 against the reference.
    let s = shape(1, 64, 64, heads, heads, d);
    let (q0, k0) = (3, 5);
    let rows = |x: &[bf16], start: usize| x[start * row..(start + 64) * row].to_vec();
    let case = MaskCase::new(s, opts(), 0);
    let ref_opts = ref_options(&case, &None, &None);
    let lse_b: Vec<f32> = (0..heads).flat_map(|h| lse[h * batch.total_q() + q0..][..64].to_vec()).collect();
    let fwd = check_forward(&rows(&qh, q0), &rows(&kh, k0), &rows(&vh, k0), &s, &ref_opts, &rows(&o, q0), &lse_b);
    let bwd = check_backward(
        &rows(&qh, q0),
        &rows(&kh, k0),
        &rows(&vh, k0),
        &rows(&doh, q0),
        &s,
        &ref_opts,
        &rows(&dq, q0),
        &rows(&dk, k0),
        &rows(&dv, k0),
    );
    println!("varlen with empty sequences, sequence 2: fwd {fwd} | bwd {bwd}");
    assert!(fwd.passed() && bwd.passed());
}
