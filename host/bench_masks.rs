//! Benchmarks of the masks (`flashattn bench-masks`): what dropout costs, how time falls with
//! block-sparse density, packed variable-length batches against the equivalent dense batch, and
//! the long sequences (N = 64k dense, N = 256k block-sparse). Rows are [`BenchRow`]s whose
//! `impl` names the variant; `tflops` counts only the scores computed (density x dense FLOPs).
use half::bf16;
use rand::{Rng, SeedableRng};

use crate::bench::{time_ms, BenchRow, Inputs};
use crate::error::Result;
use crate::forward::forward_flops;
use crate::masks::{MaskInputs, VarlenBatch, BLOCK_MASK_SIZE};
use crate::runtime::Device;
use crate::shape::Shape;
use crate::tensor::Tensor;
use crate::{backward_masked, backward_varlen, forward_masked, forward_varlen, AttentionOptions, ForwardKernel};

/// One variant of a masked benchmark: its label, options and tensor inputs.
struct Variant<'a> {
    label: String,
    opts: AttentionOptions,
    inputs: MaskInputs<'a>,
    /// Fraction of the dense scores computed (block masks), for the FLOP count.
    density: f64,
}

/// A window too wide to mask anything: selects the masked kernels with no mask in effect, so
/// that their own cost is measured apart from each feature's.
fn masked_noop() -> AttentionOptions {
    AttentionOptions { window_left: Some(1 << 30), ..Default::default() }
}

/// A bf16 row (no memory figure).
fn row(op: &str, label: &str, dims: &Shape, causal: bool, ms: f64, flops: f64) -> BenchRow {
    BenchRow::measured::<bf16>(op, label, dims, causal, ms, flops, 0.0)
}

/// Forward and backward of each variant on one shape (bf16): two rows per variant.
fn time_variants(dev: &Device, dims: Shape, variants: &[Variant], budget_ms: f64) -> Result<Vec<BenchRow>> {
    let x = Inputs::<bf16>::new(dev, dims)?;
    let mut rows = Vec::new();
    for v in variants {
        let flops = forward_flops(&dims, v.opts.causal) * v.density;
        let (o, lse) = forward_masked(&x.q, &x.k, &x.v, &v.inputs, &v.opts)?;
        let fwd = time_ms(dev, || forward_masked(&x.q, &x.k, &x.v, &v.inputs, &v.opts).map(drop), budget_ms, 3, 100)?;
        rows.push(row("fwd", &v.label, &dims, v.opts.causal, fwd, flops));
        // Forward tiles (`WgmmaConfig`) and the warp-specialized forward are forward-only
        // variants: their backward is Auto's.
        if matches!(v.opts.kernel, ForwardKernel::WgmmaConfig { .. } | ForwardKernel::WarpSpecialized) {
            eprintln!("  {:<28} {:?} fwd {fwd:8.3} ms", v.label, (dims.seqlen_q, dims.head_dim));
            continue;
        }
        let bwd = time_ms(
            dev,
            || backward_masked(&x.q, &x.k, &x.v, &o, &lse, &x.d_o, &v.inputs, &v.opts).map(drop),
            budget_ms,
            3,
            100,
        )?;
        rows.push(row("bwd", &v.label, &dims, v.opts.causal, bwd, 2.5 * flops));
        eprintln!("  {:<28} {:?} fwd {fwd:8.3} ms  bwd {bwd:8.3} ms", v.label, (dims.seqlen_q, dims.head_dim));
    }
    Ok(rows)
}

/// A random block mask of `density` (exactly round(density * blocks) blocks kept), shared by
/// every head.
pub fn random_block_mask(dev: &Device, n_q: usize, n_k: usize, density: f64, seed: u64) -> Result<(Tensor<u8>, f64)> {
    let (qb, kb) = (n_q.div_ceil(BLOCK_MASK_SIZE), n_k.div_ceil(BLOCK_MASK_SIZE));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut blocks: Vec<usize> = (0..qb * kb).collect();
    let keep = ((density * (qb * kb) as f64).round() as usize).min(qb * kb);
    // Partial Fisher-Yates: the first `keep` of a random permutation.
    for i in 0..keep {
        let j = rng.random_range(i..blocks.len());
        blocks.swap(i, j);
    }
    let mut mask = vec![0u8; qb * kb];
    for &b in &blocks[..keep] {
        mask[b] = 1;
    }
    Ok((dev.upload(&mask, &[1, qb, kb])?, keep as f64 / (qb * kb) as f64))
}

/// Dropout against no dropout (plain kernels, and the masked kernels with no mask in effect),
/// d = 64 and 128, B x N = 16k tokens, H = 2048 / d (the ANCHORS shapes), non-causal and causal.
/// `full`: also the masked wgmma tiles `Auto` does not take and the `mods` build.
pub fn dropout_rows(dev: &Device, ns: &[usize], budget_ms: f64, full: bool) -> Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    for &d in &[64, 128] {
        for &n in ns {
            let dims =
                Shape { batch: 16384 / n, seqlen_q: n, seqlen_k: n, heads: 2048 / d, heads_kv: 2048 / d, head_dim: d };
            let dropout = AttentionOptions { dropout_p: 0.1, dropout_seed: 1, ..Default::default() };
            let masked_dropout = AttentionOptions { window_left: masked_noop().window_left, ..dropout };
            let causal = AttentionOptions { causal: true, ..Default::default() };
            let mut variants = vec![
                Variant { label: "flash".into(), opts: Default::default(), inputs: Default::default(), density: 1.0 },
                Variant { label: "flash-dropout-0.1".into(), opts: dropout, inputs: Default::default(), density: 1.0 },
                // The same dropout on the masked builds (a window masking nothing selects them):
                // what calls with a window, block mask or packed batch beside dropout run.
                Variant {
                    label: "flash-dropout-0.1-masked".into(),
                    opts: masked_dropout,
                    inputs: Default::default(),
                    density: 1.0,
                },
                Variant { label: "flash-causal".into(), opts: causal, inputs: Default::default(), density: 1.0 },
                Variant {
                    label: "flash-dropout-0.1-causal".into(),
                    opts: AttentionOptions { causal: true, ..dropout },
                    inputs: Default::default(),
                    density: 1.0,
                },
                Variant {
                    label: "flash-dropout-0.1-causal-masked".into(),
                    opts: AttentionOptions { causal: true, ..masked_dropout },
                    inputs: Default::default(),
                    density: 1.0,
                },
            ];
            // The warp-specialized forward (compute capability 9.0), plain and with the same
            // dropout, forward only.
            if dev.compute_capability() == (9, 0) {
                let ws = AttentionOptions { kernel: ForwardKernel::WarpSpecialized, ..Default::default() };
                for (label, opts) in [
                    ("ws", ws),
                    ("ws-dropout-0.1", AttentionOptions { kernel: ws.kernel, ..dropout }),
                    ("ws-causal", AttentionOptions { causal: true, ..ws }),
                    ("ws-dropout-0.1-causal", AttentionOptions { causal: true, kernel: ws.kernel, ..dropout }),
                ] {
                    variants.push(Variant { label: label.into(), opts, inputs: Default::default(), density: 1.0 });
                }
            }
            if !full {
                rows.extend(time_variants(dev, dims, &variants, budget_ms)?);
                continue;
            }
            // Zero ALiBi slopes select the `mods` build with nothing to do: its tiles' own cost,
            // apart from dropout's.
            let zero_slopes = dev.upload(&vec![0.0f32; dims.heads], &[dims.heads])?;
            variants.extend([
                Variant {
                    label: "flash-masked-noop".into(),
                    opts: masked_noop(),
                    inputs: Default::default(),
                    density: 1.0,
                },
                Variant {
                    label: "flash-mods-noop".into(),
                    opts: Default::default(),
                    inputs: MaskInputs { alibi_slopes: Some(&zero_slopes), ..Default::default() },
                    density: 1.0,
                },
                // The same dropout on the masked wgmma tiles `Auto` does not take (d = 64: 64 x
                // 128; d = 128: 64 x 64), forward only.
                Variant {
                    label: "flash-dropout-0.1-other-tiles".into(),
                    opts: AttentionOptions {
                        kernel: ForwardKernel::WgmmaConfig {
                            block_m: 64,
                            block_n: if d == 64 { 128 } else { 64 },
                            pipelined: true,
                        },
                        ..dropout
                    },
                    inputs: Default::default(),
                    density: 1.0,
                },
                // The same dropout on the `mods` build (zero ALiBi slopes select it).
                Variant {
                    label: "flash-dropout-0.1-mods".into(),
                    opts: dropout,
                    inputs: MaskInputs { alibi_slopes: Some(&zero_slopes), ..Default::default() },
                    density: 1.0,
                },
            ]);
            rows.extend(time_variants(dev, dims, &variants, budget_ms)?);
        }
    }
    Ok(rows)
}

/// Block-sparse at N = 16k (B = 1, H = 16, d = 128): densities 1 (all blocks), 0.5, 0.25, 0.1,
/// beside the plain dense kernels.
pub fn sparsity_rows(dev: &Device, n: usize, budget_ms: f64) -> Result<Vec<BenchRow>> {
    let dims = Shape { batch: 1, seqlen_q: n, seqlen_k: n, heads: 16, heads_kv: 16, head_dim: 128 };
    let masks: Vec<(Tensor<u8>, f64)> =
        [1.0, 0.5, 0.25, 0.1].iter().map(|&f| random_block_mask(dev, n, n, f, 17)).collect::<Result<_>>()?;
    let mut variants =
        vec![Variant { label: "flash".into(), opts: Default::default(), inputs: Default::default(), density: 1.0 }];
    for (mask, density) in &masks {
        variants.push(Variant {
            label: format!("flash-blocks-{density:.2}"),
            opts: Default::default(),
            inputs: MaskInputs { block_mask: Some(mask), ..Default::default() },
            density: *density,
        });
    }
    time_variants(dev, dims, &variants, budget_ms)
}

/// A packed batch against the dense batch with the same tokens: equal lengths (`batch` x `n`,
/// directly comparable with the dense `[batch, n]` call) and mixed lengths (FLOPs from the
/// actual lengths). H = 16, d = 128.
pub fn varlen_rows(dev: &Device, n: usize, batch: usize, budget_ms: f64) -> Result<Vec<BenchRow>> {
    let (heads, d) = (16, 128);
    let dense = Shape { batch, seqlen_q: n, seqlen_k: n, heads, heads_kv: heads, head_dim: d };
    let variants = [
        Variant { label: "flash".into(), opts: Default::default(), inputs: Default::default(), density: 1.0 },
        Variant { label: "flash-masked-noop".into(), opts: masked_noop(), inputs: Default::default(), density: 1.0 },
    ];
    let mut rows = time_variants(dev, dense, &variants, budget_ms)?;
    // Mixed lengths: n/4 .. 7n/4, the same total.
    let mixed: Vec<usize> = (0..batch).map(|i| n / 4 + (3 * n / 2) * i / (batch - 1).max(1)).collect();
    for (label, lens) in [("flash-varlen-equal", vec![n; batch]), ("flash-varlen-mixed", mixed)] {
        let vb = VarlenBatch::from_lengths(&lens, &lens)?;
        let total =
            Shape { batch: 1, seqlen_q: vb.total_q(), seqlen_k: vb.total_k(), heads, heads_kv: heads, head_dim: d };
        let x = Inputs::<bf16>::new(dev, total)?;
        let packed =
            |t: &Tensor<bf16>| -> Result<Tensor<bf16>> { dev.upload(&t.to_host()?, &[vb.total_q(), heads, d]) };
        let (q, k, v, d_o) = (packed(&x.q)?, packed(&x.k)?, packed(&x.v)?, packed(&x.d_o)?);
        let opts = AttentionOptions::default();
        let none = MaskInputs::default();
        let flops: f64 = lens.iter().map(|&l| 4.0 * heads as f64 * (l * l) as f64 * d as f64).sum();
        let (o, lse) = forward_varlen(&q, &k, &v, &vb, &none, &opts)?;
        let fwd = time_ms(dev, || forward_varlen(&q, &k, &v, &vb, &none, &opts).map(drop), budget_ms, 3, 100)?;
        let bwd = time_ms(
            dev,
            || backward_varlen(&q, &k, &v, &o, &lse, &d_o, &vb, &none, &opts).map(drop),
            budget_ms,
            3,
            100,
        )?;
        let shape = Shape { batch, seqlen_q: n, ..dense };
        rows.push(row("fwd", label, &shape, false, fwd, flops));
        rows.push(row("bwd", label, &shape, false, bwd, 2.5 * flops));
        eprintln!("  {label:<28} lens {lens:?} fwd {fwd:8.3} ms  bwd {bwd:8.3} ms");
    }
    Ok(rows)
}

/// Forward + backward at N (262144: the long sequence; B = 1, H = 16, d = 128) with a
/// random shared block mask of `density`; density 1 runs the plain dense kernels instead.
pub fn long_sparse_rows(dev: &Device, n: usize, density: f64, budget_ms: f64) -> Result<Vec<BenchRow>> {
    let dims = Shape { batch: 1, seqlen_q: n, seqlen_k: n, heads: 16, heads_kv: 16, head_dim: 128 };
    if density >= 1.0 {
        let plain =
            Variant { label: "flash".into(), opts: Default::default(), inputs: Default::default(), density: 1.0 };
        return time_variants(dev, dims, &[plain], budget_ms);
    }
    let (mask, kept) = random_block_mask(dev, n, n, density, 23)?;
    let variants = [Variant {
        label: format!("flash-blocks-{kept:.3}"),
        opts: Default::default(),
        inputs: MaskInputs { block_mask: Some(&mask), ..Default::default() },
        density: kept,
    }];
    time_variants(dev, dims, &variants, budget_ms)
}

/// Prints ratios: each variant's time against the plain dense row of the same shape and op
/// (`ratio`: variant / plain; for block masks also `/ (density x plain)`).
pub fn format_mask_table(rows: &[BenchRow]) -> String {
    let mut out = String::from(
        "op   d    N      B  variant                      ms        TFLOPS   vs plain  vs density*plain\n",
    );
    for r in rows {
        // Causal rows against the plain causal kernel (`flash-causal`), the others against `flash`.
        let base = if r.causal { "flash-causal" } else { "flash" };
        let plain = rows
            .iter()
            .find(|p| p.implementation == base && p.op == r.op && p.d == r.d && p.n == r.n && p.b == r.b && p.h == r.h);
        let ratio = plain.map_or(f64::NAN, |p| r.ms / p.ms);
        let density = r.implementation.strip_prefix("flash-blocks-").and_then(|d| d.parse::<f64>().ok());
        let vs_density = match (plain, density) {
            (Some(p), Some(f)) => format!("{:.2}", r.ms / (f * p.ms)),
            _ => "-".into(),
        };
        out += &format!(
            "{:<4} {:<4} {:<6} {:<2} {:<28} {:>9.3} {:>8.1} {:>9.2} {:>8}\n",
            r.op, r.d, r.n, r.b, r.implementation, r.ms, r.tflops, ratio, vs_density
        );
    }
    out
}
