//! SVG plots of benchmark results: TFLOPS against sequence length, ours beside the peers measured
//! in the same device call, one chart per (op, dtype, head dim, causal).
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::bench::{find, BenchRow, MEMORY_OP};
use crate::error::{Error, Result};

/// (impl in the results file, legend, colour).
const SERIES: [(&str, &str, RGBColor); 5] = [
    ("ours", "ours (Rust kernels)", RGBColor(214, 39, 40)),
    ("standard", "standard attention (ours: cuBLAS + N x N in memory)", RGBColor(148, 103, 189)),
    ("fa2", "FlashAttention-2 (PyTorch SDPA)", RGBColor(31, 119, 180)),
    ("cudnn", "cuDNN (PyTorch SDPA)", RGBColor(44, 160, 44)),
    ("math", "standard attention (PyTorch math)", RGBColor(127, 127, 127)),
];

/// One line of a chart: legend, colour, points.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

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
    for r in rows.iter().filter(|r| r.implementation == "ours" && r.op != MEMORY_OP) {
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
        let series: Vec<Series> = SERIES
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

/// "32 MiB", "1 GiB", "64 GiB".
fn mib_label(log2_mib: f64) -> String {
    let mib = 2f64.powf(log2_mib);
    if mib >= 1024.0 {
        format!("{:.0} GiB", mib / 1024.0)
    } else if mib >= 1.0 {
        format!("{mib:.0} MiB")
    } else {
        format!("{:.0} KiB", mib * 1024.0)
    }
}

/// The memory plot: peak device memory of forward + backward against N (both axes log2), one
/// line per implementation with [`MEMORY_OP`] rows (ours, the standard baseline, PyTorch's
/// FlashAttention-2 and math where present). Memory does not drift as times do, so the peers'
/// rows need not come from the same device call. None when there are no such rows.
pub fn plot_memory(rows: &[BenchRow], device: &str, dir: &Path) -> Result<Option<PathBuf>> {
    let mem: Vec<&BenchRow> = rows.iter().filter(|r| r.op == MEMORY_OP && r.peak_mib > 0.0).collect();
    if mem.is_empty() {
        return Ok(None);
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::invalid("path", format!("cannot create {}: {e}", dir.display())))?;
    let series: Vec<Series> = SERIES
        .iter()
        .map(|&(imp, label, color)| {
            let mut points: Vec<(f64, f64)> = mem
                .iter()
                .filter(|r| r.implementation == imp)
                .map(|r| ((r.n as f64).log2(), r.peak_mib.log2()))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            (label, color, points)
        })
        .filter(|(_, _, p)| !p.is_empty())
        .collect();
    let all = series.iter().flat_map(|s| s.2.iter());
    let (x_min, x_max, y_min, y_max) = all.fold((f64::MAX, f64::MIN, f64::MAX, f64::MIN), |(a, b, c, d), p| {
        (a.min(p.0), b.max(p.0), c.min(p.1), d.max(p.1))
    });
    let first = &mem[0];
    let path = dir.join(format!("memory_{}_d{}.svg", first.dtype, first.d));
    let title = format!("fwd+bwd peak memory, {} B={} H={} d={} - {device}", first.dtype, first.b, first.h, first.d);
    {
        let root = SVGBackend::new(&path, (720, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(x_min.floor() - 0.3..x_max.ceil() + 0.3, y_min.floor()..y_max.ceil() + 2.0)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("sequence length N (log scale)")
            .y_desc("peak memory beyond q, k, v, dO (log scale)")
            .x_labels((x_max - x_min).round() as usize + 1)
            .y_labels((y_max.ceil() + 2.0 - y_min.floor()) as usize + 1)
            .x_label_formatter(&|x| seqlen_label(*x))
            .y_label_formatter(&|y| mib_label(*y))
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
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(Some(path))
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

    #[test]
    fn memory_plot_has_one_line_per_implementation() {
        let dir = std::env::temp_dir().join(format!("flashattn-memplot-{}", std::process::id()));
        let mem = |imp: &str, n: usize, mib: f64| BenchRow {
            op: MEMORY_OP.into(),
            b: 1,
            peak_mib: mib,
            ..row(imp, n, 0.0, None)
        };
        let rows = vec![
            mem("ours", 1024, 20.0),
            mem("ours", 65536, 1300.0),
            mem("standard", 1024, 120.0),
            mem("standard", 16384, 24000.0),
            mem("math", 1024, 280.0),
            row("ours", 1024, 300.0, None), // a TFLOPS row: not on the memory plot
        ];
        assert!(plot_memory(&rows[5..], "TestGPU", &dir).unwrap().is_none());
        let path = plot_memory(&rows, "TestGPU", &dir).unwrap().unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("ours (Rust kernels)") && svg.contains("cuBLAS") && svg.contains("PyTorch math"));
        assert!(!svg.contains("FlashAttention-2"), "no fa2 rows, no fa2 line");
        let texts: Vec<&str> = svg.lines().map(str::trim).collect();
        assert!(texts.contains(&"64k") && texts.contains(&"1 GiB"), "log axes labelled in N and MiB/GiB");
        // The TFLOPS plots ignore memory rows.
        let files = plot_tflops(&rows, "TestGPU", &dir).unwrap();
        assert_eq!(files.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
