//! The benchmark harness behind `flashattn bench`: times kernels with CUDA events (warm-up,
//! median of many runs) on the shapes of the FlashAttention-2/3 papers, and writes rows in the
//! format shared with the peer script `benches/peers/sdpa_peers.py`.
use std::path::Path;

use cudarc::driver::sys::CUevent_flags;
use serde::{Deserialize, Serialize};

use crate::accuracy::randn;
use crate::backward::backward;
use crate::error::{Error, Result};
use crate::forward::{forward, forward_flops, forward_into, AttentionOptions};
use crate::runtime::Device;
use crate::shape::Shape;
use crate::standard::{standard_backward, standard_forward};
use crate::tensor::{Element, Tensor};

/// One measurement. `impl` is `ours` (or `ours-<kernel>`), `standard` (our standard-attention
/// baseline, `flashattn::standard`), or a peer: `fa2`, `cudnn`, `math`.
///
/// `op` is `fwd`, `bwd` (time of the backward; `peak_mib` of forward + backward), or
/// [`MEMORY_OP`] (the memory sweep: `peak_mib` of forward + backward beyond the inputs, `ms` one
/// forward + backward, `tflops` with 3.5x the forward's FLOPs).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BenchRow {
    pub op: String,
    #[serde(rename = "impl")]
    pub implementation: String,
    pub dtype: String,
    pub d: usize,
    pub causal: bool,
    #[serde(rename = "N")]
    pub n: usize,
    #[serde(rename = "B")]
    pub b: usize,
    #[serde(rename = "H")]
    pub h: usize,
    pub ms: f64,
    pub tflops: f64,
    pub peak_mib: f64,
    /// Which device call measured the row, where a results file gathers several: ratios pair
    /// rows of the same call only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<String>,
}

/// A results file: `benches/results/<gpu>.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchFile {
    pub device: String,
    pub rows: Vec<BenchRow>,
}

impl BenchFile {
    pub fn read(path: &Path) -> Result<BenchFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid("path", format!("cannot read {}: {e}", path.display())))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::invalid("path", format!("{} is not a results file: {e}", path.display())))
    }
    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let text = serde_json::to_string_pretty(self).expect("rows serialize");
        std::fs::write(path, text).map_err(|e| Error::invalid("path", format!("cannot write {}: {e}", path.display())))
    }
}

/// One shape of the sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchShape {
    pub d: usize,
    pub causal: bool,
    pub n: usize,
}

impl BenchShape {
    /// 16k tokens per batch and hidden size 2048, as in the FlashAttention-2 paper.
    pub fn dims(&self) -> Shape {
        Shape {
            batch: (16384 / self.n).max(1),
            seqlen_q: self.n,
            seqlen_k: self.n,
            heads: 2048 / self.d,
            heads_kv: 2048 / self.d,
            head_dim: self.d,
        }
    }
}

/// The shapes of ANCHORS.md for the given head dims (`quick`: N = 1k and 4k only).
pub fn anchor_shapes(head_dims: &[usize], quick: bool) -> Vec<BenchShape> {
    let ns: &[usize] = if quick { &[1024, 4096] } else { &[512, 1024, 2048, 4096, 8192, 16384] };
    let mut shapes = Vec::new();
    for &d in head_dims {
        for causal in [false, true] {
            for &n in ns {
                shapes.push(BenchShape { d, causal, n });
            }
        }
    }
    shapes
}

/// The `op` of the memory sweep's rows ([`bench_memory`], `flashattn bench --memory`, and
/// `sdpa_peers.py --memory`).
pub const MEMORY_OP: &str = "fwd+bwd-mem";

/// Which attention a benchmark runs: ours (the flash kernels, with the kernel choice of the
/// options) or the standard-attention baseline (`N x N` matrices in memory, cuBLAS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Flash,
    Standard,
}

impl Algorithm {
    pub fn forward<T: Element>(
        self,
        q: &Tensor<T>,
        k: &Tensor<T>,
        v: &Tensor<T>,
        opts: &AttentionOptions,
    ) -> Result<(Tensor<T>, Tensor<f32>)> {
        match self {
            Algorithm::Flash => forward(q, k, v, opts),
            Algorithm::Standard => standard_forward(q, k, v, opts),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn backward<T: Element>(
        self,
        q: &Tensor<T>,
        k: &Tensor<T>,
        v: &Tensor<T>,
        o: &Tensor<T>,
        lse: &Tensor<f32>,
        d_o: &Tensor<T>,
        opts: &AttentionOptions,
    ) -> Result<(Tensor<T>, Tensor<T>, Tensor<T>)> {
        match self {
            Algorithm::Flash => backward(q, k, v, o, lse, d_o, opts),
            Algorithm::Standard => standard_backward(q, k, v, o, lse, d_o, opts),
        }
    }
}

/// Random q, k, v and dO of a shape on the device (contiguous), for the benchmarks.
pub struct Inputs<T: Element> {
    pub dims: Shape,
    pub q: Tensor<T>,
    pub k: Tensor<T>,
    pub v: Tensor<T>,
    pub d_o: Tensor<T>,
}

impl<T: Element> Inputs<T> {
    pub fn new(dev: &Device, dims: Shape) -> Result<Self> {
        let q_shape = [dims.batch, dims.seqlen_q, dims.heads, dims.head_dim];
        let kv_shape = [dims.batch, dims.seqlen_k, dims.heads_kv, dims.head_dim];
        Ok(Inputs {
            dims,
            q: dev.upload(&tiled_randn(dims.q_len(), 7), &q_shape)?,
            k: dev.upload(&tiled_randn(dims.kv_len(), 8), &kv_shape)?,
            v: dev.upload(&tiled_randn(dims.kv_len(), 9), &kv_shape)?,
            d_o: dev.upload(&tiled_randn(dims.q_len(), 10), &q_shape)?,
        })
    }
}

/// `len` normal samples: 4M fresh ones, repeated. Timing does not depend on the values (only on
/// their being ordinary numbers), and drawing 100M+ samples on the CPU took seconds per shape.
fn tiled_randn<T: Element>(len: usize, seed: u64) -> Vec<T> {
    let fresh: Vec<T> = randn(len.min(1 << 22), &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed));
    fresh.iter().copied().cycle().take(len).collect()
}

/// Progress of a long sweep, as a prefix for its per-shape lines on stderr:
/// `[3/72, 41s, ~15m left]`. Plain lines rather than a redrawn bar: the sweeps run on the device
/// machine without a terminal, where each line lands in a log and a bar would not be drawn.
pub struct Progress {
    total: usize,
    done: usize,
    start: std::time::Instant,
}

impl Progress {
    pub fn new(total: usize) -> Self {
        Progress { total, done: 0, start: std::time::Instant::now() }
    }

    /// Counts one step and returns the prefix for its line.
    pub fn step(&mut self) -> String {
        self.done += 1;
        let elapsed = self.start.elapsed().as_secs_f64();
        let left = elapsed / self.done as f64 * self.total.saturating_sub(self.done) as f64;
        format!("[{}/{}, {}, ~{} left]", self.done, self.total, format_secs(elapsed), format_secs(left))
    }
}

/// "41s", "15m03s", "1h02m".
pub fn format_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// Median milliseconds of `f` timed with CUDA events, after warm-up. Runs until `budget_ms` of
/// measurements or `max_iters` (at least `min_iters`).
pub fn time_ms(
    dev: &Device,
    mut f: impl FnMut() -> Result<()>,
    budget_ms: f64,
    min_iters: usize,
    max_iters: usize,
) -> Result<f64> {
    let ctx = dev.context();
    let (start, end) =
        (ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?, ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?);
    // Warm-up: module JIT, function lookup and clocks ramping up stay out of the numbers.
    let mut warm = 0.0;
    for _ in 0..max_iters.max(2) {
        start.record(dev.stream())?;
        f()?;
        end.record(dev.stream())?;
        warm += start.elapsed_ms(&end)? as f64;
        if warm > budget_ms / 4.0 {
            break;
        }
    }
    let mut times = Vec::new();
    let mut total = 0.0;
    while times.len() < min_iters || (total < budget_ms && times.len() < max_iters) {
        start.record(dev.stream())?;
        f()?;
        end.record(dev.stream())?;
        let t = start.elapsed_ms(&end)? as f64;
        total += t;
        times.push(t);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok(times[times.len() / 2])
}

impl BenchRow {
    /// The row of a measurement of `op` on `dims` (B, H, d, N taken from it) in element type `T`:
    /// `flops` of work done in `ms`.
    pub(crate) fn measured<T: Element>(
        op: &str,
        label: &str,
        dims: &Shape,
        causal: bool,
        ms: f64,
        flops: f64,
        peak_mib: f64,
    ) -> Self {
        BenchRow {
            op: op.into(),
            implementation: label.into(),
            dtype: T::NAME.into(),
            d: dims.head_dim,
            causal,
            n: dims.seqlen_q,
            b: dims.batch,
            h: dims.heads,
            ms,
            tflops: flops / (ms * 1e-3) / 1e12,
            peak_mib,
            call: None,
        }
    }
}

/// Times our forward on one shape: the row, with the peak MiB allocated by one `forward` call.
pub fn bench_forward<T: Element>(
    dev: &Device,
    shape: BenchShape,
    opts: &AttentionOptions,
    kernel_name: &str,
    budget_ms: f64,
) -> Result<BenchRow> {
    bench_forward_of::<T>(dev, Algorithm::Flash, shape, opts, kernel_name, budget_ms)
}

/// Times the forward of `algorithm` on one shape (ours writes into preallocated outputs; the
/// standard baseline allocates its `N x N` matrices in each call, from the stream's pool).
pub fn bench_forward_of<T: Element>(
    dev: &Device,
    algorithm: Algorithm,
    shape: BenchShape,
    opts: &AttentionOptions,
    label: &str,
    budget_ms: f64,
) -> Result<BenchRow> {
    let dims = shape.dims();
    let x = Inputs::<T>::new(dev, dims)?;
    let opts = AttentionOptions { causal: shape.causal, ..*opts };

    dev.synchronize()?;
    dev.reset_peak();
    let base = dev.allocated_bytes();
    drop(algorithm.forward(&x.q, &x.k, &x.v, &opts)?);
    let peak_mib = (dev.peak_bytes() - base) as f64 / (1 << 20) as f64;

    let ms = match algorithm {
        Algorithm::Flash => {
            let mut o = dev.alloc::<T>(x.q.shape())?;
            let mut lse = dev.alloc::<f32>(&[dims.batch, dims.heads, dims.seqlen_q])?;
            time_ms(dev, || forward_into(&x.q, &x.k, &x.v, &mut o, &mut lse, &opts), budget_ms, 5, 200)?
        }
        Algorithm::Standard => time_ms(dev, || standard_forward(&x.q, &x.k, &x.v, &opts).map(drop), budget_ms, 5, 200)?,
    };
    Ok(BenchRow::measured::<T>("fwd", label, &dims, shape.causal, ms, forward_flops(&dims, shape.causal), peak_mib))
}

/// Times our backward on one shape (dO random; O and LSE from our forward): the row has the
/// backward's time and TFLOPS (2.5x the forward's FLOPs), and the peak memory of forward +
/// backward beyond q, k, v and dO (as the peers script measures PyTorch's).
pub fn bench_backward<T: Element>(
    dev: &Device,
    shape: BenchShape,
    opts: &AttentionOptions,
    kernel_name: &str,
    budget_ms: f64,
) -> Result<BenchRow> {
    bench_backward_of::<T>(dev, Algorithm::Flash, shape, opts, kernel_name, budget_ms)
}

/// [`bench_backward`] of `algorithm` (O and LSE from its own forward).
pub fn bench_backward_of<T: Element>(
    dev: &Device,
    algorithm: Algorithm,
    shape: BenchShape,
    opts: &AttentionOptions,
    label: &str,
    budget_ms: f64,
) -> Result<BenchRow> {
    let dims = shape.dims();
    let x = Inputs::<T>::new(dev, dims)?;
    let opts = AttentionOptions { causal: shape.causal, ..*opts };
    let peak_mib = fwd_bwd_peak_mib(dev, algorithm, &x, &opts)?;

    let (o, lse) = algorithm.forward(&x.q, &x.k, &x.v, &opts)?;
    let ms =
        time_ms(dev, || algorithm.backward(&x.q, &x.k, &x.v, &o, &lse, &x.d_o, &opts).map(drop), budget_ms, 5, 200)?;
    Ok(BenchRow::measured::<T>(
        "bwd",
        label,
        &dims,
        shape.causal,
        ms,
        2.5 * forward_flops(&dims, shape.causal),
        peak_mib,
    ))
}

/// Peak MiB that one forward + backward allocates beyond the inputs (O and LSE kept from the
/// forward, as autograd keeps them), from the device's allocation tracking.
fn fwd_bwd_peak_mib<T: Element>(
    dev: &Device,
    algorithm: Algorithm,
    x: &Inputs<T>,
    opts: &AttentionOptions,
) -> Result<f64> {
    dev.synchronize()?;
    dev.reset_peak();
    let base = dev.allocated_bytes();
    {
        let (o, lse) = algorithm.forward(&x.q, &x.k, &x.v, opts)?;
        drop(algorithm.backward(&x.q, &x.k, &x.v, &o, &lse, &x.d_o, opts)?);
    }
    dev.synchronize()?;
    Ok((dev.peak_bytes() - base) as f64 / (1 << 20) as f64)
}

/// The memory sweep's shape: B = 1, H = 16, d = 128, N x N, non-causal.
pub fn memory_shape(n: usize) -> Shape {
    Shape { batch: 1, seqlen_q: n, seqlen_k: n, heads: 16, heads_kv: 16, head_dim: 128 }
}

/// One point of the memory sweep ([`MEMORY_OP`]): peak device memory of forward + backward
/// beyond q, k, v and dO (the tensors this library allocates; cuBLAS's workspace is not
/// counted), and the time of one further forward + backward (CUDA events, one run, warm).
/// An allocation that does not fit returns its error (the caller ends that series there).
pub fn bench_memory<T: Element>(
    dev: &Device,
    algorithm: Algorithm,
    dims: Shape,
    opts: &AttentionOptions,
    label: &str,
) -> Result<BenchRow> {
    let x = Inputs::<T>::new(dev, dims)?;
    let peak_mib = fwd_bwd_peak_mib(dev, algorithm, &x, opts)?;
    let ctx = dev.context();
    let (start, end) =
        (ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?, ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?);
    start.record(dev.stream())?;
    {
        let (o, lse) = algorithm.forward(&x.q, &x.k, &x.v, opts)?;
        drop(algorithm.backward(&x.q, &x.k, &x.v, &o, &lse, &x.d_o, opts)?);
    }
    end.record(dev.stream())?;
    let ms = start.elapsed_ms(&end)? as f64;
    Ok(BenchRow::measured::<T>(
        MEMORY_OP,
        label,
        &dims,
        opts.causal,
        ms,
        3.5 * forward_flops(&dims, opts.causal),
        peak_mib,
    ))
}

/// The memory table: peak MiB per N for ours, the standard baseline and the peers present,
/// with the ratio standard / ours (FlashAttention-1 reports 10x at N = 2k and 20x at 4k).
pub fn format_memory_table(rows: &[BenchRow]) -> String {
    let mem: Vec<&BenchRow> = rows.iter().filter(|r| r.op == MEMORY_OP).collect();
    let mut ns: Vec<usize> = mem.iter().map(|r| r.n).collect();
    ns.sort_unstable();
    ns.dedup();
    let get = |imp: &str, n: usize| mem.iter().find(|r| r.implementation == imp && r.n == n).map(|r| r.peak_mib);
    let cell = |x: Option<f64>| x.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into());
    let mut s = format!(
        "{:>6} {:>12} {:>14} {:>10} {:>12} {:>12} {:>14}\n",
        "N", "ours MiB", "standard MiB", "std/ours", "fa2 MiB", "math MiB", "math/ours"
    );
    for n in ns {
        let (ours, std, fa2, math) = (get("ours", n), get("standard", n), get("fa2", n), get("math", n));
        let ratio = |a: Option<f64>| match (a, ours) {
            (Some(a), Some(o)) if o > 0.0 => format!("{:.1}x", a / o),
            _ => "-".into(),
        };
        s += &format!(
            "{:>6} {:>12} {:>14} {:>10} {:>12} {:>12} {:>14}\n",
            n,
            cell(ours),
            cell(std),
            ratio(std),
            cell(fa2),
            cell(math),
            ratio(math)
        );
    }
    s
}

/// The row of `implementation` with the shape, dtype and device call of `like`.
pub fn find<'a>(rows: &'a [BenchRow], like: &BenchRow, implementation: &str) -> Option<&'a BenchRow> {
    rows.iter().find(|r| {
        r.implementation == implementation
            && r.op == like.op
            && r.dtype == like.dtype
            && r.d == like.d
            && r.causal == like.causal
            && r.n == like.n
            && r.call == like.call
    })
}

/// The table printed after a sweep: our TFLOPS and, where peer rows of the same shape exist
/// (measured in the same device session), theirs and the ratios.
pub fn format_table(ours: &[BenchRow], peers: &[BenchRow]) -> String {
    let mut s = format!(
        "{:<4} {:<22} {:<6} {:>4} {:>6} {:>4} {:>4} {:>10} {:>9} {:>9} {:>8} {:>9} {:>8} {:>9}\n",
        "op", "impl", "dtype", "d", "N", "B", "H", "causal", "ms", "TFLOPS", "fa2", "ours/fa2", "cudnn", "ours/cudnn"
    );
    for r in ours {
        let fa2 = find(peers, r, "fa2");
        let cudnn = find(peers, r, "cudnn");
        let cell = |p: Option<&BenchRow>| p.map(|p| format!("{:.1}", p.tflops)).unwrap_or_else(|| "-".into());
        let ratio =
            |p: Option<&BenchRow>| p.map(|p| format!("{:.3}", r.tflops / p.tflops)).unwrap_or_else(|| "-".into());
        s += &format!(
            "{:<4} {:<22} {:<6} {:>4} {:>6} {:>4} {:>4} {:>10} {:>9.3} {:>9.1} {:>8} {:>9} {:>8} {:>9}\n",
            r.op,
            r.implementation,
            r.dtype,
            r.d,
            r.n,
            r.b,
            r.h,
            r.causal,
            r.ms,
            r.tflops,
            cell(fa2),
            ratio(fa2),
            cell(cudnn),
            ratio(cudnn)
        );
    }
    s
}

/// A file name for a GPU: "NVIDIA H100 80GB HBM3" -> "nvidia-h100-80gb-hbm3".
pub fn device_slug(name: &str) -> String {
    let s: String = name.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    s.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_and_shapes() {
        assert_eq!(device_slug("NVIDIA H100 80GB HBM3"), "nvidia-h100-80gb-hbm3");
        let shapes = anchor_shapes(&[64, 128], false);
        assert_eq!(shapes.len(), 2 * 2 * 6);
        let d = BenchShape { d: 128, causal: false, n: 2048 }.dims();
        assert_eq!((d.batch, d.heads), (8, 16));
    }

    #[test]
    fn table_ratios_use_matching_peer_rows() {
        let row = |imp: &str, tflops: f64, n: usize| BenchRow {
            op: "fwd".into(),
            implementation: imp.into(),
            dtype: "bf16".into(),
            d: 128,
            causal: false,
            n,
            b: 1,
            h: 16,
            ms: 1.0,
            tflops,
            peak_mib: 0.0,
            call: None,
        };
        let table = format_table(&[row("ours", 150.0, 4096)], &[row("fa2", 300.0, 4096), row("fa2", 1.0, 2048)]);
        assert!(table.contains("0.500"), "{table}");
    }

    #[test]
    fn results_file_round_trips_with_peer_field_names() {
        let json = r#"{"device":"X","rows":[{"op":"fwd","impl":"fa2","dtype":"bf16","d":64,"causal":true,"N":512,"B":32,"H":32,"ms":0.5,"tflops":200.0,"peak_mib":1.5}]}"#;
        let f: BenchFile = serde_json::from_str(json).unwrap();
        assert_eq!(f.rows[0].implementation, "fa2");
        assert_eq!(f.rows[0].n, 512);
        let back = serde_json::to_string(&f).unwrap();
        assert!(back.contains("\"impl\":\"fa2\"") && back.contains("\"N\":512"));
    }

    #[test]
    fn memory_table_gives_standard_over_ours() {
        let mem = |imp: &str, n: usize, mib: f64| BenchRow {
            op: MEMORY_OP.into(),
            implementation: imp.into(),
            dtype: "bf16".into(),
            d: 128,
            causal: false,
            n,
            b: 1,
            h: 16,
            ms: 1.0,
            tflops: 1.0,
            peak_mib: mib,
            call: None,
        };
        let t = format_memory_table(&[mem("ours", 2048, 10.0), mem("standard", 2048, 150.0), mem("ours", 4096, 20.0)]);
        assert!(t.contains("15.0x"), "{t}");
        assert_eq!(t.lines().count(), 3, "{t}");
    }

    #[test]
    fn progress_lines() {
        assert_eq!(format_secs(41.2), "41s");
        assert_eq!(format_secs(903.0), "15m03s");
        assert_eq!(format_secs(3720.0), "1h02m");
        let mut p = Progress::new(4);
        assert!(p.step().starts_with("[1/4, "));
    }
}
