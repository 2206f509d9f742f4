//! Criterion microbenchmarks of the GPU kernels, one group per kernel family, on one mid shape
//! of the FlashAttention-2 paper's sweep: N = 4096, B * N = 16k tokens (B = 4), H * d = 2048.
//!
//! - `forward`: the tensor-core forward (mma.sync), d = 64, 128, 256, causal and not;
//! - `backward`: the tensor-core backward (dK/dV with atomic dQ), same shapes;
//! - `forward_wgmma`: the Hopper forward, d = 64 and 128 (sm_90 only: skipped otherwise);
//! - `standard`: the standard-attention baseline (cuBLAS + N x N matrices), d = 128, forward and
//!   backward (skipped, saying why, when cuBLAS cannot be loaded);
//! - `forward_scalar`: the CUDA-core reference forward, d = 128.
//!
//! - `dropout`: forward and backward with dropout p = 0.1 (the masked `dropout` build), d = 64, 128;
//! - `block_sparse`: forward and backward with a random block mask of 25% of the 128 x 128
//!   blocks, d = 128 (throughput counts only the computed blocks).
//!
//! GPU time is measured with CUDA events around `iters` back-to-back launches on the device's
//! stream (`iter_custom`), after a trial run (module load, and the check that the case runs at
//! all) and criterion's warm-up. Throughput is declared as `Throughput::Elements(flops)`: the
//! "elements" criterion reports per second are FLOPs counted by ANCHORS.md's formula
//! (forward `4 * B * H * N^2 * d`, halved for causal; backward 2.5x the forward), so
//! "Gelem/s" reads as GFLOP/s.
//!
//! Without a GPU (or driver) every group prints that it skipped, and the binary exits normally.
//! Run: `cargo bench --bench kernels` (or `.gpu/run.sh bench kernels` on the device machine).
use std::sync::OnceLock;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use cudarc::driver::sys::CUevent_flags;
use flashattn::bench::{Algorithm, BenchShape, Inputs};
use flashattn::forward::{forward_flops, forward_into};
use flashattn::{backward_masked, forward_masked, AttentionOptions, Device, ForwardKernel, MaskInputs, Result, Tensor};
use half::bf16;

const N: usize = 4096;

/// The GPU, or None (printed once) without one.
fn device() -> Option<&'static Device> {
    static DEV: OnceLock<Option<Device>> = OnceLock::new();
    DEV.get_or_init(|| match Device::new(0) {
        Ok(d) => Some(d),
        Err(e) => {
            println!("kernels bench: skipped, no usable GPU: {e}");
            None
        }
    })
    .as_ref()
}

/// GPU time of `iters` calls of `f`, from CUDA events recorded around them on the stream.
fn gpu_time(dev: &Device, iters: u64, f: &mut dyn FnMut() -> Result<()>) -> Duration {
    let ctx = dev.context();
    let ev = || ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).expect("CUDA event");
    let (start, end) = (ev(), ev());
    start.record(dev.stream()).expect("event record");
    for _ in 0..iters {
        // The trial run succeeded on the same inputs: a failure here is a real bug.
        f().expect("a launch that ran in the trial run failed");
    }
    end.record(dev.stream()).expect("event record");
    let ms = start.elapsed_ms(&end).expect("event elapsed (synchronises)") as f64;
    Duration::from_secs_f64(ms * 1e-3)
}

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

fn configure<'a>(c: &'a mut Criterion, name: &str) -> Group<'a> {
    let mut g = c.benchmark_group(name);
    // Flat sampling: a GPU call takes milliseconds, so every sample runs the same count.
    g.sampling_mode(SamplingMode::Flat).sample_size(10).warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    g
}

/// One forward or backward case: a trial run (skipping the case, saying why, if it fails),
/// then the criterion benchmark.
#[allow(clippy::too_many_arguments)]
fn bench_case(
    g: &mut Group<'_>,
    dev: &'static Device,
    algorithm: Algorithm,
    backward: bool,
    d: usize,
    causal: bool,
    kernel: ForwardKernel,
) {
    let dims = BenchShape { d, causal, n: N }.dims();
    let opts = AttentionOptions { causal, kernel, ..Default::default() };
    let name = format!(
        "{}_d{d}{}_N{N}_B{}_H{}",
        if backward { "bwd" } else { "fwd" },
        if causal { "_causal" } else { "" },
        dims.batch,
        dims.heads
    );
    let id = BenchmarkId::from_parameter(&name);
    let fwd_flops = forward_flops(&dims, causal);
    let x = match Inputs::<bf16>::new(dev, dims) {
        Ok(x) => x,
        Err(e) => return println!("{name}: skipped: {e}"),
    };
    if !backward {
        let (o, lse) = match algorithm.forward(&x.q, &x.k, &x.v, &opts) {
            Ok(r) => r,
            Err(e) => return println!("{name}: skipped: {e}"),
        };
        g.throughput(Throughput::Elements(fwd_flops as u64));
        let (mut o, mut lse): (Tensor<bf16>, Tensor<f32>) = (o, lse);
        g.bench_function(id, |b| {
            b.iter_custom(|iters| {
                gpu_time(dev, iters, &mut || match algorithm {
                    Algorithm::Flash => forward_into(&x.q, &x.k, &x.v, &mut o, &mut lse, &opts),
                    Algorithm::Standard => algorithm.forward(&x.q, &x.k, &x.v, &opts).map(drop),
                })
            })
        });
    } else {
        let trial = algorithm
            .forward(&x.q, &x.k, &x.v, &opts)
            .and_then(|(o, lse)| algorithm.backward(&x.q, &x.k, &x.v, &o, &lse, &x.d_o, &opts).map(|_| (o, lse)));
        let (o, lse) = match trial {
            Ok(r) => r,
            Err(e) => return println!("{name}: skipped: {e}"),
        };
        g.throughput(Throughput::Elements((2.5 * fwd_flops) as u64));
        g.bench_function(id, |b| {
            b.iter_custom(|iters| {
                gpu_time(dev, iters, &mut || algorithm.backward(&x.q, &x.k, &x.v, &o, &lse, &x.d_o, &opts).map(drop))
            })
        });
    }
}

fn forward(c: &mut Criterion) {
    let Some(dev) = device() else { return println!("forward: skipped (no GPU)") };
    let mut g = configure(c, "forward");
    for d in [64, 128, 256] {
        for causal in [false, true] {
            bench_case(&mut g, dev, Algorithm::Flash, false, d, causal, ForwardKernel::TensorCore);
        }
    }
    g.finish();
}

fn backward(c: &mut Criterion) {
    let Some(dev) = device() else { return println!("backward: skipped (no GPU)") };
    let mut g = configure(c, "backward");
    for d in [64, 128, 256] {
        for causal in [false, true] {
            bench_case(&mut g, dev, Algorithm::Flash, true, d, causal, ForwardKernel::Auto);
        }
    }
    g.finish();
}

fn forward_wgmma(c: &mut Criterion) {
    let Some(dev) = device() else { return println!("forward_wgmma: skipped (no GPU)") };
    let (major, minor) = dev.compute_capability();
    if (major, minor) != (9, 0) {
        return println!("forward_wgmma: skipped: the wgmma kernels need sm_90 (this GPU is sm_{major}{minor})");
    }
    let mut g = configure(c, "forward_wgmma");
    for d in [64, 128] {
        for causal in [false, true] {
            bench_case(&mut g, dev, Algorithm::Flash, false, d, causal, ForwardKernel::Wgmma);
        }
    }
    g.finish();
}

fn standard(c: &mut Criterion) {
    let Some(dev) = device() else { return println!("standard: skipped (no GPU)") };
    if let Err(e) = dev.cublas() {
        return println!("standard: skipped: {e}");
    }
    let mut g = configure(c, "standard");
    for backward in [false, true] {
        for causal in [false, true] {
            bench_case(&mut g, dev, Algorithm::Standard, backward, 128, causal, ForwardKernel::Auto);
        }
    }
    g.finish();
}

fn forward_scalar(c: &mut Criterion) {
    let Some(dev) = device() else { return println!("forward_scalar: skipped (no GPU)") };
    let mut g = configure(c, "forward_scalar");
    for causal in [false, true] {
        bench_case(&mut g, dev, Algorithm::Flash, false, 128, causal, ForwardKernel::Scalar);
    }
    g.finish();
}

/// A masked forward and backward case (options and tensor inputs as the call takes them):
/// trial run, then the two benchmarks. `density`: fraction of the scores computed.
fn bench_masked_case(
    g: &mut Group<'_>,
    dev: &'static Device,
    name: &str,
    d: usize,
    opts: AttentionOptions,
    inputs: MaskInputs,
    density: f64,
) {
    let dims = BenchShape { d, causal: false, n: N }.dims();
    let flops = forward_flops(&dims, false) * density;
    let x = match Inputs::<bf16>::new(dev, dims) {
        Ok(x) => x,
        Err(e) => return println!("{name}: skipped: {e}"),
    };
    let (o, lse) = match forward_masked(&x.q, &x.k, &x.v, &inputs, &opts) {
        Ok(r) => r,
        Err(e) => return println!("{name}: skipped: {e}"),
    };
    let suffix = format!("d{d}_N{N}_B{}_H{}", dims.batch, dims.heads);
    g.throughput(Throughput::Elements(flops as u64));
    g.bench_function(BenchmarkId::from_parameter(format!("fwd_{name}_{suffix}")), |b| {
        b.iter_custom(|iters| gpu_time(dev, iters, &mut || forward_masked(&x.q, &x.k, &x.v, &inputs, &opts).map(drop)))
    });
    g.throughput(Throughput::Elements((2.5 * flops) as u64));
    g.bench_function(BenchmarkId::from_parameter(format!("bwd_{name}_{suffix}")), |b| {
        b.iter_custom(|iters| {
            gpu_time(dev, iters, &mut || backward_masked(&x.q, &x.k, &x.v, &o, &lse, &x.d_o, &inputs, &opts).map(drop))
        })
    });
}

fn dropout(c: &mut Criterion) {
    let Some(dev) = device() else { return println!("dropout: skipped (no GPU)") };
    let mut g = configure(c, "dropout");
    for d in [64, 128] {
        let opts = AttentionOptions { dropout_p: 0.1, dropout_seed: 1, ..Default::default() };
        bench_masked_case(&mut g, dev, "p0.1", d, opts, MaskInputs::default(), 1.0);
    }
    g.finish();
}

fn block_sparse(c: &mut Criterion) {
    let Some(dev) = device() else { return println!("block_sparse: skipped (no GPU)") };
    let mut g = configure(c, "block_sparse");
    match flashattn::bench_masks::random_block_mask(dev, N, N, 0.25, 17) {
        Ok((mask, density)) => {
            let inputs = MaskInputs { block_mask: Some(&mask), ..Default::default() };
            bench_masked_case(&mut g, dev, "density0.25", 128, AttentionOptions::default(), inputs, density);
        }
        Err(e) => println!("block_sparse: skipped: {e}"),
    }
    g.finish();
}

criterion_group!(kernels, forward, backward, forward_wgmma, standard, forward_scalar, dropout, block_sparse);
criterion_main!(kernels);
