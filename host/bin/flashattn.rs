//! The `flashattn` command line.
//!
//! - `flashattn` (or `flashattn check`): computes attention on a default shape on the GPU,
//!   checks sampled rows against the f64 CPU reference, prints time and TFLOPS.
//! - `flashattn bench`: the benchmark sweep (shapes of the FlashAttention papers), with peer
//!   rows from `benches/peers/sdpa_peers.py` printed beside ours; `--standard` adds the
//!   standard-attention baseline; `--memory`: peak memory of forward + backward against N.
//! - `flashattn run in.safetensors out.safetensors [--causal] [--scale S]`: attention (and, when
//!   the input has `do`, its gradients) on tensors from a safetensors file (`flashattn::io`).
//! - `flashattn ptx --arch sm_90a`: prints the embedded PTX (for ptxas / sass-report).
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use half::{bf16, f16};

use flashattn::accuracy::{random_qkv, to_f64};
use flashattn::bench::{
    anchor_shapes, bench_backward_of, bench_forward_of, bench_memory, device_slug, format_memory_table, format_table,
    memory_shape, time_ms, Algorithm, BenchFile, BenchRow, Progress, MEMORY_OP,
};
use flashattn::forward::{forward_flops, forward_into, validate_inputs};
use flashattn::io::{run_file, Backend};
use flashattn::reference::{self, RefOptions, Shape};
use flashattn::{AttentionOptions, Device, Element, ForwardKernel, Result, Tensor};
use rand::SeedableRng;

#[derive(Parser)]
#[command(name = "flashattn", about = "FlashAttention with GPU kernels written in Rust")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Compute attention on the GPU, spot-check it against the CPU reference, time it.
    Check(CheckArgs),
    /// Benchmark sweep; writes benches/results/<gpu>.json.
    Bench(BenchArgs),
    /// Benchmarks of the masks: dropout overhead, block-sparse density sweep at N = 16k, packed
    /// variable-length batches against dense ones; `--long`: N = 64k dense and N = 256k
    /// block-sparse forward + backward.
    BenchMasks(BenchMasksArgs),
    /// Attention on tensors from a safetensors file: reads q, k, v ([batch, seqlen, heads,
    /// head_dim], all F16 or all BF16; k and v may have fewer heads, GQA) and optionally `do`
    /// (the gradient of o, shaped like q); writes o, lse (F32 [batch, heads, seqlen_q], natural
    /// log) and, when the input has `do`, dq, dk, dv.
    Run(RunArgs),
    /// Draw SVG plots (TFLOPS vs N, ours beside the peers of the same call) from a results file.
    Plot {
        /// Results file (default benches/results/<gpu>.json of a bench run).
        #[arg(long)]
        results: PathBuf,
        /// Output folder (default benches/plots/<results file stem>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the embedded PTX of an architecture.
    Ptx {
        #[arg(long, value_enum, default_value = "sm90a")]
        arch: Arch,
    },
}

#[derive(Parser)]
struct BenchMasksArgs {
    /// Fewer shapes (one N for dropout).
    #[arg(long)]
    quick: bool,
    /// Only the long sequences (N = 65536 dense, N = 262144 block-sparse at 5%).
    #[arg(long)]
    long: bool,
    /// Which tables (without `--long`): dropout, sparse, varlen; dropout-core: the dropout table
    /// without the tiles `Auto` does not take and the `mods` build.
    #[arg(long, value_delimiter = ',', value_parser = ["dropout", "dropout-core", "sparse", "varlen"],
          default_values_t = vec!["dropout".to_string(), "sparse".to_string(), "varlen".to_string()])]
    only: Vec<String>,
    /// Results file to append the rows to (default benches/results/<gpu>-masks.json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Device-call label stored with the rows.
    #[arg(long)]
    call: Option<String>,
    /// Milliseconds of measurement per timed call.
    #[arg(long, default_value_t = 300.0)]
    budget_ms: f64,
}

#[derive(Clone, Copy, ValueEnum)]
enum Arch {
    Sm80,
    Sm90a,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum DtypeArg {
    Bf16,
    F16,
}

#[derive(Clone, Copy, ValueEnum)]
enum KernelArg {
    Auto,
    TensorCore,
    Scalar,
    /// Hopper wgmma kernel (sm_90 only).
    Wgmma,
    /// Hopper wgmma kernel, serial schedule (no softmax / MMA overlap inside a warpgroup).
    WgmmaSerial,
}

impl From<KernelArg> for ForwardKernel {
    fn from(k: KernelArg) -> Self {
        match k {
            KernelArg::Auto => ForwardKernel::Auto,
            KernelArg::TensorCore => ForwardKernel::TensorCore,
            KernelArg::Scalar => ForwardKernel::Scalar,
            KernelArg::Wgmma => ForwardKernel::Wgmma,
            KernelArg::WgmmaSerial => ForwardKernel::WgmmaConfig { block_m: 128, block_n: 128, pipelined: false },
        }
    }
}

#[derive(Parser)]
struct CheckArgs {
    #[arg(long, default_value_t = 4)]
    batch: usize,
    #[arg(long, default_value_t = 16)]
    heads: usize,
    /// K/V heads (defaults to `heads`; fewer for MQA/GQA).
    #[arg(long)]
    heads_kv: Option<usize>,
    #[arg(long, default_value_t = 4096)]
    seqlen: usize,
    /// Key length (defaults to `seqlen`).
    #[arg(long)]
    seqlen_k: Option<usize>,
    #[arg(long, default_value_t = 128)]
    head_dim: usize,
    #[arg(long, value_enum, default_value = "bf16")]
    dtype: DtypeArg,
    #[arg(long)]
    causal: bool,
    #[arg(long, value_enum, default_value = "auto")]
    kernel: KernelArg,
    /// Query rows compared with the CPU reference.
    #[arg(long, default_value_t = 64)]
    sample_rows: usize,
    /// Also run the backward (time, memory, every gradient finite).
    #[arg(long)]
    backward: bool,
    /// Backward: the deterministic dQ (no atomics).
    #[arg(long)]
    deterministic: bool,
}

impl Default for CheckArgs {
    fn default() -> Self {
        CheckArgs::parse_from(["check"])
    }
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Only N = 1k and 4k.
    #[arg(long)]
    quick: bool,
    #[arg(long, value_enum, default_value = "bf16")]
    dtype: DtypeArg,
    /// Head dims to sweep (those the kernel supports).
    #[arg(long, value_delimiter = ',', default_values_t = vec![64, 128, 256])]
    head_dims: Vec<usize>,
    #[arg(long, value_enum, default_value = "auto")]
    kernel: KernelArg,
    /// Peer rows (from benches/peers/sdpa_peers.py, same device session) to print beside ours.
    #[arg(long)]
    peers: Option<PathBuf>,
    /// Output file (default benches/results/<gpu>.json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Explicit tensor-core tiles BMxBNxMT[xSTAGES] (e.g. 128x64x2,128x64x2x1), for tuning: each is swept.
    /// With --kernel wgmma or wgmma-serial: BMxBN rows of the wgmma table (e.g. 128x128,192x128).
    #[arg(long, value_delimiter = ',')]
    tiles: Vec<String>,
    /// Milliseconds of measurement per shape.
    #[arg(long, default_value_t = 300.0)]
    budget_ms: f64,
    /// Passes to time: fwd, bwd or both (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec!["fwd".to_string(), "bwd".to_string()])]
    op: Vec<String>,
    /// Backward: the deterministic dQ (no atomics).
    #[arg(long)]
    deterministic: bool,
    /// Also time the standard-attention baseline (N x N matrices in memory, cuBLAS; rows
    /// labelled "standard") on every shape of the sweep; a shape whose matrices do not fit is skipped.
    #[arg(long)]
    standard: bool,
    /// Instead of the TFLOPS sweep: peak device memory of forward + backward against N (B = 1,
    /// H = 16, d = 128), ours and the standard baseline (which stops at the first N that does not
    /// fit); rows with op "fwd+bwd-mem", a table with the ratio standard / ours, and a plot.
    #[arg(long)]
    memory: bool,
    /// Sequence lengths of the memory sweep.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1024, 2048, 4096, 8192, 16384, 32768, 65536])]
    memory_seqlens: Vec<usize>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Input safetensors file holding q, k, v and optionally do.
    input: PathBuf,
    /// Output safetensors file (o, lse; dq, dk, dv when the input has do). Overwritten.
    output: PathBuf,
    /// Causal mask, bottom-right aligned when seqlen_q != seqlen_k (as flash-attn >= 2.1).
    #[arg(long)]
    causal: bool,
    /// Softmax scale (default 1/sqrt(head_dim)).
    #[arg(long)]
    scale: Option<f32>,
    /// Forward kernel (the backward picks its own).
    #[arg(long, value_enum, default_value = "auto")]
    kernel: KernelArg,
    /// Sliding window: keys this far before the (bottom-right aligned) diagonal (default unbounded).
    #[arg(long)]
    window_left: Option<usize>,
    /// Sliding window: keys this far after the diagonal (default unbounded).
    #[arg(long)]
    window_right: Option<usize>,
    /// Softcap c: scores s become c * tanh(s / c) (0 = off).
    #[arg(long, default_value_t = 0.0)]
    softcap: f32,
    /// Dropout probability (0 = none); the mask is Philox4x32-10 of (seed, offset, b, h, i, j).
    #[arg(long, default_value_t = 0.0)]
    dropout_p: f32,
    #[arg(long, default_value_t = 0)]
    dropout_seed: u64,
    #[arg(long, default_value_t = 0)]
    dropout_offset: u64,
    /// Compute with the f64 CPU reference instead of the GPU (slow: for checking, or without a GPU).
    #[arg(long)]
    reference: bool,
    /// GPU ordinal.
    #[arg(long, default_value_t = 0)]
    device: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Check(CheckArgs::default())) {
        Command::Check(a) => match a.dtype {
            DtypeArg::Bf16 => check::<bf16>(&a),
            DtypeArg::F16 => check::<f16>(&a),
        },
        Command::Bench(a) => bench(&a),
        Command::BenchMasks(a) => bench_masks(&a),
        Command::Run(a) => run(&a),
        Command::Plot { results, out } => plot(&results, out),
        Command::Ptx { arch } => {
            print!(
                "{}",
                match arch {
                    Arch::Sm80 => flashattn::ptx::sm80(),
                    Arch::Sm90a => flashattn::ptx::sm90a(),
                }
            );
            Ok(true)
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("flashattn: {e}");
            ExitCode::from(2)
        }
    }
}

/// The main job. Ok(false) when the check fails.
fn check<T: Element>(a: &CheckArgs) -> Result<bool> {
    let dev = Device::new(0)?;
    let shape = Shape {
        batch: a.batch,
        seqlen_q: a.seqlen,
        seqlen_k: a.seqlen_k.unwrap_or(a.seqlen),
        heads: a.heads,
        heads_kv: a.heads_kv.unwrap_or(a.heads),
        head_dim: a.head_dim,
    };
    let opts = AttentionOptions {
        causal: a.causal,
        kernel: a.kernel.into(),
        deterministic: a.deterministic,
        ..Default::default()
    };
    println!(
        "{} (sm_{}{}), {} {:?}, causal {}",
        dev.name(),
        dev.compute_capability().0,
        dev.compute_capability().1,
        T::NAME,
        shape,
        a.causal
    );
    let (qh, kh, vh) = random_qkv::<T>(&shape, 1);
    let q = dev.upload(&qh, &[shape.batch, shape.seqlen_q, shape.heads, shape.head_dim])?;
    let k = dev.upload(&kh, &[shape.batch, shape.seqlen_k, shape.heads_kv, shape.head_dim])?;
    let v = dev.upload(&vh, &[shape.batch, shape.seqlen_k, shape.heads_kv, shape.head_dim])?;
    let dims = validate_inputs(&q, &k, &v, &opts)?;
    // Memory: what one `forward` allocates beyond its inputs (O and LSE only: no N x N buffer).
    dev.synchronize()?;
    dev.reset_peak();
    let base = dev.allocated_bytes();
    drop(flashattn::forward(&q, &k, &v, &opts)?);
    let extra_mib = (dev.peak_bytes() - base) as f64 / (1 << 20) as f64;
    let inputs_mib = base as f64 / (1 << 20) as f64;
    let mut o = dev.alloc::<T>(q.shape())?;
    let mut lse = dev.alloc::<f32>(&[shape.batch, shape.heads, shape.seqlen_q])?;
    o.fill(T::NAN)?;
    let ms = time_ms(&dev, || forward_into(&q, &k, &v, &mut o, &mut lse, &opts), 500.0, 5, 100)?;
    let (oh, lseh) = (o.to_host()?, lse.to_host()?);

    // Spot check: sampled (batch, head, row) triples against the f64 reference.
    let (qf, kf, vf) = (to_f64(&qh), to_f64(&kh), to_f64(&vh));
    let ref_opts = RefOptions { causal: a.causal, ..RefOptions::new(shape.head_dim) };
    let (mut diff2, mut ref2, mut lse_err, mut unwritten) = (0.0f64, 0.0f64, 0.0f64, 0usize);
    let d = shape.head_dim;
    for s in 0..a.sample_rows.min(shape.batch * shape.heads * shape.seqlen_q) {
        // A fixed stride walk over all rows, so samples cover every batch, head and row range.
        let idx = (s * 7919 + s / 3) % (shape.batch * shape.heads * shape.seqlen_q);
        let (bh, i) = (idx / shape.seqlen_q, idx % shape.seqlen_q);
        let (b, h) = (bh / shape.heads, bh % shape.heads);
        let (o_ref, lse_ref) = reference::forward_row(&qf, &kf, &vf, &shape, &ref_opts, b, h, i);
        let base = ((b * shape.seqlen_q + i) * shape.heads + h) * d;
        for c in 0..d {
            let x = oh[base + c].to_f64();
            unwritten += x.is_nan() as usize;
            diff2 += (x - o_ref[c]).powi(2);
            ref2 += o_ref[c].powi(2);
        }
        let l = lseh[(b * shape.heads + h) * shape.seqlen_q + i] as f64;
        if lse_ref.is_finite() {
            lse_err = lse_err.max((l - lse_ref).abs());
        } else if l.is_finite() {
            unwritten += 1;
        }
    }
    let rel = (diff2 / ref2.max(f64::MIN_POSITIVE)).sqrt();
    let unwritten_total = oh.iter().filter(|x| x.to_f64().is_nan()).count();
    let tflops = forward_flops(&dims, a.causal) / (ms * 1e-3) / 1e12;
    println!("forward: {ms:.3} ms, {tflops:.1} TFLOPS (median, CUDA events)");
    println!("device memory: inputs {inputs_mib:.1} MiB, allocated by forward {extra_mib:.1} MiB (O + LSE)");
    println!(
        "check vs f64 reference on {} rows: relative error {rel:.2e} (bf16/f16 inputs: expect 1e-3..1e-2), lse max error {lse_err:.2e}, unwritten outputs {unwritten_total}",
        a.sample_rows
    );
    let mut ok = rel < 1e-2 && lse_err < 2e-3 && unwritten == 0 && unwritten_total == 0;
    if a.backward {
        ok &= check_backward_runs(&dev, &q, &k, &v, &o, &lse, &dims, &opts)?;
    }
    println!("{}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}

/// The backward on the check's inputs: time, TFLOPS, memory beyond the forward's, and every
/// gradient element written and finite (the tests compare gradients with the reference).
#[allow(clippy::too_many_arguments)]
fn check_backward_runs<T: Element>(
    dev: &Device,
    q: &Tensor<T>,
    k: &Tensor<T>,
    v: &Tensor<T>,
    o: &Tensor<T>,
    lse: &Tensor<f32>,
    dims: &Shape,
    opts: &AttentionOptions,
) -> Result<bool> {
    let doh: Vec<T> = flashattn::accuracy::randn(dims.q_len(), &mut rand::rngs::StdRng::seed_from_u64(2));
    let d_o = dev.upload(&doh, q.shape())?;
    dev.synchronize()?;
    dev.reset_peak();
    let base = dev.allocated_bytes();
    let (dq, dk, dv) = flashattn::backward(q, k, v, o, lse, &d_o, opts)?;
    let extra_mib = (dev.peak_bytes() - base) as f64 / (1 << 20) as f64;
    let bad = [dq.to_host()?, dk.to_host()?, dv.to_host()?]
        .iter()
        .map(|g| g.iter().filter(|x| !x.to_f64().is_finite()).count())
        .sum::<usize>();
    drop((dq, dk, dv));
    let ms = time_ms(dev, || flashattn::backward(q, k, v, o, lse, &d_o, opts).map(drop), 500.0, 3, 50)?;
    let tflops = 2.5 * forward_flops(dims, opts.causal) / (ms * 1e-3) / 1e12;
    println!("backward: {ms:.3} ms, {tflops:.1} TFLOPS (median, CUDA events)");
    println!("device memory: allocated by backward {extra_mib:.1} MiB (dq, dk, dv, row statistics, f32 dq)");
    println!("gradient elements not finite: {bad}");
    Ok(bad == 0)
}

fn run(a: &RunArgs) -> Result<bool> {
    let opts = AttentionOptions {
        causal: a.causal,
        softmax_scale: a.scale,
        kernel: a.kernel.into(),
        window_left: a.window_left,
        window_right: a.window_right,
        softcap: a.softcap,
        dropout_p: a.dropout_p,
        dropout_seed: a.dropout_seed,
        dropout_offset: a.dropout_offset,
        ..Default::default()
    };
    let backend = if a.reference { Backend::Reference } else { Backend::Gpu(a.device) };
    let r = run_file(&a.input, &a.output, &opts, backend)?;
    if !r.ignored.is_empty() {
        eprintln!("flashattn: ignored tensors {:?} (run reads q, k, v and do)", r.ignored);
    }
    let s = r.shape;
    println!(
        "{} q [{}, {}, {}, {}], k/v [{}, {}, {}, {}], causal {}{}: wrote o, lse{} to {}",
        r.dtype,
        s.batch,
        s.seqlen_q,
        s.heads,
        s.head_dim,
        s.batch,
        s.seqlen_k,
        s.heads_kv,
        s.head_dim,
        a.causal,
        if a.reference { " (CPU reference)" } else { "" },
        if r.gradients { ", dq, dk, dv" } else { "" },
        a.output.display()
    );
    Ok(true)
}

fn bench(a: &BenchArgs) -> Result<bool> {
    match a.dtype {
        DtypeArg::Bf16 => bench_typed::<bf16>(a),
        DtypeArg::F16 => bench_typed::<f16>(a),
    }
}

fn bench_typed<T: Element>(a: &BenchArgs) -> Result<bool> {
    let dev = Device::new(0)?;
    if a.memory {
        return memory_sweep::<T>(&dev, a);
    }
    let base = AttentionOptions { kernel: a.kernel.into(), deterministic: a.deterministic, ..Default::default() };
    let mut base_label = match a.kernel {
        KernelArg::Auto => "ours".to_string(),
        KernelArg::TensorCore => "ours-mma".to_string(),
        KernelArg::Scalar => "ours-scalar".to_string(),
        KernelArg::Wgmma => "ours-wgmma".to_string(),
        KernelArg::WgmmaSerial => "ours-wgmma-serial".to_string(),
    };
    if a.deterministic {
        base_label += "-deterministic";
    }
    if let Some(op) = a.op.iter().find(|op| !["fwd", "bwd"].contains(&op.as_str())) {
        return Err(flashattn::Error::InvalidArgument { arg: "op", msg: format!("{op}: expected fwd or bwd") });
    }
    // (label, algorithm, options) per configuration swept.
    let mut configs = Vec::new();
    if a.tiles.is_empty() {
        configs.push((base_label, Algorithm::Flash, base));
    }
    for t in &a.tiles {
        let v: Vec<usize> = t.split('x').filter_map(|x| x.parse().ok()).collect();
        // With --kernel wgmma / wgmma-serial, tiles are BMxBN of the wgmma table.
        if let (KernelArg::Wgmma | KernelArg::WgmmaSerial, [bm, bn]) = (a.kernel, &v[..]) {
            let pipelined = matches!(a.kernel, KernelArg::Wgmma);
            let kernel = ForwardKernel::WgmmaConfig { block_m: *bm as u16, block_n: *bn as u16, pipelined };
            configs.push((
                format!("ours-wgmma{}-{t}", if pipelined { "" } else { "-serial" }),
                Algorithm::Flash,
                AttentionOptions { kernel, ..base },
            ));
            continue;
        }
        let (block_m, block_n, m_tiles, stages) = match v[..] {
            [bm, bn, mt] => (bm, bn, mt, 2),
            [bm, bn, mt, st] => (bm, bn, mt, st),
            _ => {
                return Err(flashattn::Error::InvalidArgument {
                    arg: "tiles",
                    msg: format!("{t}: expected BMxBNxMT[xSTAGES]"),
                })
            }
        };
        let kernel = ForwardKernel::TensorCoreTiles {
            block_m: block_m as u16,
            block_n: block_n as u16,
            m_tiles: m_tiles as u8,
            stages: stages as u8,
        };
        configs.push((format!("ours-{t}"), Algorithm::Flash, AttentionOptions { kernel, ..base }));
    }
    if a.standard {
        configs.push(("standard".to_string(), Algorithm::Standard, AttentionOptions::default()));
    }
    let peers = match &a.peers {
        Some(p) => BenchFile::read(p)?.rows,
        None => Vec::new(),
    };
    let shapes = anchor_shapes(&a.head_dims, a.quick);
    let mut rows = Vec::new();
    let ops: Vec<&str> = a.op.iter().map(|s| s.as_str()).collect();
    let mut progress = Progress::new(configs.len() * ops.len() * shapes.len());
    for (label, algorithm, opts) in &configs {
        for (op, shape) in ops.iter().flat_map(|op| shapes.iter().map(move |s| (*op, s))) {
            let step = progress.step();
            let dims = shape.dims();
            let q_shape = [dims.batch, dims.seqlen_q, dims.heads, dims.head_dim];
            // Skip head dims the kernel does not have, saying so.
            if let Err(e) = flashattn::forward::check_supported::<T>(&q_shape, opts) {
                eprintln!("{step} skip {label} {op} d={} N={}: {e}", shape.d, shape.n);
                continue;
            }
            let measured = if op == "fwd" {
                bench_forward_of::<T>(&dev, *algorithm, *shape, opts, label, a.budget_ms)
            } else {
                bench_backward_of::<T>(&dev, *algorithm, *shape, opts, label, a.budget_ms)
            };
            let row = match measured {
                Ok(r) => r,
                Err(e) => {
                    // The standard baseline's N x N matrices may not fit: say so and go on.
                    eprintln!("{step} skip {label} {op} d={} causal={} N={}: {e}", shape.d, shape.causal, shape.n);
                    continue;
                }
            };
            eprintln!(
                "{step} {label} {op} d={} causal={} N={}: {:.3} ms, {:.1} TFLOPS",
                row.d, row.causal, row.n, row.ms, row.tflops
            );
            rows.push(row);
        }
    }
    print!("{}", format_table(&rows, &peers));
    let out =
        a.out.clone().unwrap_or_else(|| PathBuf::from(format!("benches/results/{}.json", device_slug(dev.name()))));
    // Keep the peer rows of the same session beside ours in the results file.
    let mut all = rows;
    all.extend(peers);
    BenchFile { device: dev.name().to_string(), rows: all }.write(&out)?;
    println!("wrote {}", out.display());
    plot(&out, None)
}

/// `bench --memory`: peak memory of forward + backward against N, ours and the standard baseline.
fn memory_sweep<T: Element>(dev: &Device, a: &BenchArgs) -> Result<bool> {
    let peers: Vec<BenchRow> = match &a.peers {
        Some(p) => BenchFile::read(p)?.rows.into_iter().filter(|r| r.op == MEMORY_OP).collect(),
        None => Vec::new(),
    };
    let opts = AttentionOptions { kernel: a.kernel.into(), deterministic: a.deterministic, ..Default::default() };
    let mut rows = Vec::new();
    let mut progress = Progress::new(2 * a.memory_seqlens.len());
    let mut standard_fits = true;
    for &n in &a.memory_seqlens {
        for (label, algorithm) in [("ours", Algorithm::Flash), ("standard", Algorithm::Standard)] {
            let step = progress.step();
            if algorithm == Algorithm::Standard && !standard_fits {
                continue;
            }
            match bench_memory::<T>(dev, algorithm, memory_shape(n), &opts, label) {
                Ok(r) => {
                    eprintln!("{step} {label} N={n}: peak {:.1} MiB, fwd+bwd {:.2} ms", r.peak_mib, r.ms);
                    rows.push(r);
                }
                Err(e) => {
                    // Out of memory (or no cuBLAS): this series ends here; the sweep goes on.
                    eprintln!("{step} {label} N={n}: stops here: {e}");
                    let _ = dev.synchronize();
                    if algorithm == Algorithm::Standard {
                        standard_fits = false;
                    }
                }
            }
        }
    }
    let mut all = rows;
    all.extend(peers);
    print!("{}", format_memory_table(&all));
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("benches/results/{}-memory.json", device_slug(dev.name()))));
    BenchFile { device: dev.name().to_string(), rows: all }.write(&out)?;
    println!("wrote {}", out.display());
    plot(&out, None)
}

/// Plots of a results file into `out` (default benches/plots/<file stem>/).
fn plot(results: &std::path::Path, out: Option<PathBuf>) -> Result<bool> {
    let file = BenchFile::read(results)?;
    let stem = results.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "results".into());
    let dir = out.unwrap_or_else(|| PathBuf::from("benches/plots").join(stem));
    for f in flashattn::plot::plot_tflops(&file.rows, &file.device, &dir)? {
        println!("wrote {}", f.display());
    }
    if let Some(f) = flashattn::plot::plot_memory(&file.rows, &file.device, &dir)? {
        println!("wrote {}", f.display());
    }
    Ok(true)
}

fn bench_masks(args: &BenchMasksArgs) -> Result<bool> {
    use flashattn::bench_masks::{dropout_rows, format_mask_table, long_sparse_rows, sparsity_rows, varlen_rows};
    let dev = Device::new(0)?;
    let budget = args.budget_ms;
    let mut rows = Vec::new();
    if args.long {
        eprintln!("long sequences (B = 1, H = 16, d = 128)");
        rows.extend(long_sparse_rows(&dev, 65536, 1.0, budget)?);
        rows.extend(long_sparse_rows(&dev, 262144, 0.05, budget)?);
    } else {
        let wants = |t: &str| args.only.iter().any(|o| o == t);
        for (name, full) in [("dropout", true), ("dropout-core", false)] {
            if wants(name) {
                eprintln!("dropout");
                let ns: &[usize] = if args.quick { &[4096] } else { &[1024, 4096, 16384] };
                rows.extend(dropout_rows(&dev, ns, budget, full)?);
            }
        }
        if wants("sparse") {
            eprintln!("block-sparse, N = 16384");
            rows.extend(sparsity_rows(&dev, 16384, budget)?);
        }
        if wants("varlen") {
            eprintln!("packed batches");
            rows.extend(varlen_rows(&dev, 2048, 8, budget)?);
        }
    }
    for r in &mut rows {
        r.call = args.call.clone();
    }
    println!("{}", format_mask_table(&rows));
    let path = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("benches/results/{}-masks.json", device_slug(dev.name()))));
    let mut file = if path.exists() {
        BenchFile::read(&path)?
    } else {
        BenchFile { device: dev.name().to_string(), rows: Vec::new() }
    };
    file.rows.extend(rows);
    file.write(&path)?;
    println!("rows appended to {}", path.display());
    Ok(true)
}
