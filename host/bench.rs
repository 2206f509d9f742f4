//! The benchmark harness behind `flashattn bench`: times kernels with CUDA events (warm-up,
//! median of many runs) on the shapes of the FlashAttention-2/3 papers, and writes rows in the
//! format shared with the peer script `benches/peers/sdpa_peers.py`.
use std::path::Path;

use cudarc::driver::sys::CUevent_flags;
use serde::{Deserialize, Serialize};

use crate::accuracy::{randn, random_qkv};
use crate::backward::backward;
use crate::error::{Error, Result};
use crate::forward::{forward, forward_flops, forward_into, AttentionOptions};
use crate::runtime::Device;
use crate::shape::Shape;
use crate::tensor::{Element, Tensor};

/// One measurement. `impl` is `ours` (with the kernel in `kernel`), or a peer: `fa2`, `cudnn`, `math`.
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

/// Times our forward on one shape: (row, peak MiB allocated by one `forward` call).
pub fn bench_forward<T: Element>(
    dev: &Device,
    shape: BenchShape,
    opts: &AttentionOptions,
    kernel_name: &str,
    budget_ms: f64,
) -> Result<BenchRow> {
    let dims = shape.dims();
    let (qh, kh, vh) = random_qkv::<T>(&dims, 7);
    let q: Tensor<T> = dev.upload(&qh, &[dims.batch, dims.seqlen_q, dims.heads, dims.head_dim])?;
    let k: Tensor<T> = dev.upload(&kh, &[dims.batch, dims.seqlen_k, dims.heads_kv, dims.head_dim])?;
    let v: Tensor<T> = dev.upload(&vh, &[dims.batch, dims.seqlen_k, dims.heads_kv, dims.head_dim])?;
    let opts = AttentionOptions { causal: shape.causal, ..*opts };

    dev.synchronize()?;
    dev.reset_peak();
    let base = dev.allocated_bytes();
    drop(forward(&q, &k, &v, &opts)?);
    let peak_mib = (dev.peak_bytes() - base) as f64 / (1 << 20) as f64;

    let mut o = dev.alloc::<T>(q.shape())?;
    let mut lse = dev.alloc::<f32>(&[dims.batch, dims.heads, dims.seqlen_q])?;
    let ms = time_ms(dev, || forward_into(&q, &k, &v, &mut o, &mut lse, &opts), budget_ms, 5, 200)?;
    Ok(BenchRow {
        op: "fwd".into(),
        implementation: kernel_name.into(),
        dtype: T::NAME.into(),
        d: dims.head_dim,
        causal: shape.causal,
        n: dims.seqlen_q,
        b: dims.batch,
        h: dims.heads,
        ms,
        tflops: forward_flops(&dims, shape.causal) / (ms * 1e-3) / 1e12,
        peak_mib,
        call: None,
    })
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
    let dims = shape.dims();
    let (qh, kh, vh) = random_qkv::<T>(&dims, 7);
    let q_shape = [dims.batch, dims.seqlen_q, dims.heads, dims.head_dim];
    let q: Tensor<T> = dev.upload(&qh, &q_shape)?;
    let k: Tensor<T> = dev.upload(&kh, &[dims.batch, dims.seqlen_k, dims.heads_kv, dims.head_dim])?;
    let v: Tensor<T> = dev.upload(&vh, &[dims.batch, dims.seqlen_k, dims.heads_kv, dims.head_dim])?;
    let doh: Vec<T> = randn(dims.q_len(), &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(9));
    let d_o: Tensor<T> = dev.upload(&doh, &q_shape)?;
    let opts = AttentionOptions { causal: shape.causal, ..*opts };

    dev.synchronize()?;
    dev.reset_peak();
    let base = dev.allocated_bytes();
    {
        let (o, lse) = forward(&q, &k, &v, &opts)?;
        drop(backward(&q, &k, &v, &o, &lse, &d_o, &opts)?);
    }
    let peak_mib = (dev.peak_bytes() - base) as f64 / (1 << 20) as f64;

    let (o, lse) = forward(&q, &k, &v, &opts)?;
    let ms = time_ms(dev, || backward(&q, &k, &v, &o, &lse, &d_o, &opts).map(drop), budget_ms, 5, 200)?;
    Ok(BenchRow {
        op: "bwd".into(),
        implementation: kernel_name.into(),
        dtype: T::NAME.into(),
        d: dims.head_dim,
        causal: shape.causal,
        n: dims.seqlen_q,
        b: dims.batch,
        h: dims.heads,
        ms,
        tflops: 2.5 * forward_flops(&dims, shape.causal) / (ms * 1e-3) / 1e12,
        peak_mib,
        call: None,
    })
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
        "{:<4} {:<6} {:>4} {:>6} {:>4} {:>4} {:>10} {:>9} {:>9} {:>8} {:>9} {:>8} {:>9}\n",
        "op", "dtype", "d", "N", "B", "H", "causal", "ms", "TFLOPS", "fa2", "ours/fa2", "cudnn", "ours/cudnn"
    );
    for r in ours {
        let fa2 = find(peers, r, "fa2");
        let cudnn = find(peers, r, "cudnn");
        let cell = |p: Option<&BenchRow>| p.map(|p| format!("{:.1}", p.tflops)).unwrap_or_else(|| "-".into());
        let ratio =
            |p: Option<&BenchRow>| p.map(|p| format!("{:.3}", r.tflops / p.tflops)).unwrap_or_else(|| "-".into());
        s += &format!(
            "{:<4} {:<6} {:>4} {:>6} {:>4} {:>4} {:>10} {:>9.3} {:>9.1} {:>8} {:>9} {:>8} {:>9}\n",
            r.op,
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
}
