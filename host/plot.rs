//! SVG plots of benchmark results: TFLOPS against sequence length, ours beside the peers measured
//! in the same device call, one chart per (op, dtype, head dim, causal).
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::bench::{find, BenchRow};
use crate::error::{Error, Result};

/// (impl in the results file, legend, colour).
const SERIES: [(&str, &str, RGBColor); 4] = [
    ("ours", "ours (Rust kernels)", RGBColor(214, 39, 40)),
    ("fa2", "FlashAttention-2 (PyTorch SDPA)", RGBColor(31, 119, 180)),
    ("cudnn", "cuDNN (PyTorch SDPA)", RGBColor(44, 160, 44)),
    ("math", "standard attention (PyTorch math)", RGBColor(127, 127, 127)),
];

fn plot_error(e: impl std::fmt::Display) -> Error {
    Error::invalid("path", format!("cannot draw plot: {e}"))
}

/// "512", "1k", ... "16k".
fn seqlen_label(log2_n: f64) -> String {
    let n = 2f64.powf(log2_n).round() as usize;
    if n >= 1024 {
        format!("{}k", n / 1024)
    } else {
        n.to_string()
    }
}

/// Writes one SVG per (op, dtype, head dim, causal) that has `ours` rows into `dir`; returns the
/// files. Peer points are taken only from rows of the same device call as ours.
pub fn plot_tflops(rows: &[BenchRow], device: &str, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::invalid("path", format!("cannot create {}: {e}", dir.display())))?;
    let mut panels: Vec<(String, String, usize, bool)> = Vec::new();
    for r in rows.iter().filter(|r| r.implementation == "ours") {
        let key = (r.op.clone(), r.dtype.clone(), r.d, r.causal);
        if !panels.contains(&key) {
            panels.push(key);
        }
    }
    let mut files = Vec::new();
    for (op, dtype, d, causal) in panels {
        let mut ours: Vec<&BenchRow> = rows
            .iter()
            .filter(|r| r.implementation == "ours" && r.op == op && r.dtype == dtype && r.d == d && r.causal == causal)
            .collect();
        ours.sort_by_key(|r| r.n);
        let series: Vec<(&str, RGBColor, Vec<(f64, f64)>)> = SERIES
            .iter()
            .map(|&(imp, label, color)| {
                let points = ours
                    .iter()
                    .filter_map(|o| find(rows, o, imp))
                    .map(|r| ((r.n as f64).log2(), r.tflops))
                    .collect::<Vec<_>>();
                (label, color, points)
            })
            .filter(|(_, _, p)| !p.is_empty())
            .collect();
        let y_max = series.iter().flat_map(|s| s.2.iter().map(|p| p.1)).fold(0.0, f64::max) * 1.45; // headroom for the legend
        let (x_min, x_max) = ((ours[0].n as f64).log2() - 0.3, (ours[ours.len() - 1].n as f64).log2() + 0.3);
        let name = format!("{op}_{dtype}_d{d}{}.svg", if causal { "_causal" } else { "" });
        let path = dir.join(&name);
        let title = format!("{op} {dtype} d={d}{} - {device}", if causal { " causal" } else { "" });
        {
            let root = SVGBackend::new(&path, (720, 440)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_error)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(52)
                .build_cartesian_2d(x_min..x_max, 0.0..y_max.max(1.0))
                .map_err(plot_error)?;
            chart
                .configure_mesh()
                .x_desc("sequence length N (B = 16384 / N, H = 2048 / d)")
                .y_desc("TFLOPS")
                .x_labels(ours.len())
                .x_label_formatter(&|x| seqlen_label(*x))
                .draw()
                .map_err(plot_error)?;
            for (label, color, points) in series {
                chart
                    .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                    .map_err(plot_error)?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(plot_error)?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(plot_error)?;
            root.present().map_err(plot_error)?;
        }
        files.push(path);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(imp: &str, n: usize, tflops: f64, call: Option<&str>) -> BenchRow {
        BenchRow {
            op: "fwd".into(),
            implementation: imp.into(),
            dtype: "bf16".into(),
            d: 128,
            causal: false,
            n,
            b: 16384 / n,
            h: 16,
            ms: 1.0,
            tflops,
            peak_mib: 0.0,
            call: call.map(String::from),
        }
    }

    #[test]
    fn one_svg_per_panel_with_peers_of_the_same_call_only() {
        let dir = std::env::temp_dir().join(format!("flashattn-plot-{}", std::process::id()));
        let rows = vec![
            row("ours", 1024, 300.0, Some("c1")),
            row("ours", 4096, 330.0, Some("c1")),
            row("fa2", 1024, 320.0, Some("c1")),
            row("fa2", 4096, 340.0, Some("c1")),
            row("cudnn", 1024, 600.0, Some("c0")), // another call: must not be drawn
        ];
        let files = plot_tflops(&rows, "TestGPU", &dir).unwrap();
        assert_eq!(files.len(), 1);
        let svg = std::fs::read_to_string(&files[0]).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("ours (Rust kernels)") && svg.contains("FlashAttention-2"));
        assert!(!svg.contains("cuDNN"), "a peer from another device call was plotted");
        let texts: Vec<&str> = svg.lines().map(str::trim).collect();
        assert!(texts.contains(&"1k") && texts.contains(&"4k"), "x labels are sequence lengths");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
