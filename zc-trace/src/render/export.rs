//! Lab results as CSV and as an SVG chart. Pure code (writes to the given paths).
use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;

use crate::{model::row::Row, render::table::human_bytes};

const CSV_HEADER: [&str; 22] = [
    "strategy",
    "role",
    "pid",
    "comm",
    "payload_bytes",
    "syscalls",
    "mode_switches",
    "page_faults",
    "ctx_voluntary",
    "ctx_involuntary",
    "to_user_bytes",
    "from_user_bytes",
    "kernel_copy_bytes",
    "copies_per_payload_byte",
    "zero_copy_bytes",
    "disk_read_bytes",
    "disk_write_bytes",
    "net_tx_linear_bytes",
    "net_tx_paged_bytes",
    "net_tx_frags",
    "throughput_bytes_per_s",
    "evidence",
];

/// One line per row; an unobserved figure is an empty field, never 0.
pub fn write_csv(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_path(path).with_context(|| format!("writing {}", path.display()))?;
    w.write_record(CSV_HEADER)?;
    let o = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    for r in rows {
        let evidence = format!(
            "to_user: {}; from_user: {}; kernel: {}; zero_copy: {}; dma: {}",
            r.cpu_copy.to_user.evidence,
            r.cpu_copy.from_user.evidence,
            r.cpu_copy.kernel.evidence,
            r.zero_copy.evidence,
            r.dma.evidence
        );
        w.write_record([
            r.strategy.clone(),
            r.role.clone(),
            r.pid.to_string(),
            r.comm.clone(),
            r.payload_bytes.to_string(),
            r.syscalls.to_string(),
            o(r.mode_switches),
            o(r.page_faults),
            o(r.context_switches.map(|c| c.voluntary)),
            o(r.context_switches.map(|c| c.involuntary)),
            copies(&r.cpu_copy.to_user),
            copies(&r.cpu_copy.from_user),
            copies(&r.cpu_copy.kernel),
            r.copies_per_payload_byte.map(|c| format!("{c:.4}")).unwrap_or_default(),
            r.zero_copy.bytes.to_string(),
            o(r.dma.disk_read_bytes),
            o(r.dma.disk_write_bytes),
            o(r.dma.net_tx_linear_bytes),
            o(r.dma.net_tx_paged_bytes),
            o(r.dma.net_tx_frags),
            r.throughput_bytes_per_s.map(|t| format!("{t:.0}")).unwrap_or_default(),
            evidence,
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// A direction's copied bytes; empty (unknown) when an end of it could not be measured.
fn copies(cell: &crate::model::row::CopyCell) -> String {
    if cell.unmeasured_ends.is_empty() { cell.bytes.to_string() } else { String::new() }
}

/// Two bar charts for the senders: CPU copies per payload byte, and mode switches per MiB.
pub fn write_plot(path: &Path, rows: &[Row], title: &str) -> anyhow::Result<()> {
    let senders: Vec<&Row> = rows.iter().filter(|r| r.role == "sender").collect();
    let root = SVGBackend::new(path, (1100, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let (left, right) = root.split_horizontally(550);
    let names: Vec<String> = senders.iter().map(|r| r.strategy.clone()).collect();
    let copies: Vec<Option<f64>> = senders.iter().map(|r| r.copies_per_payload_byte).collect();
    let switches: Vec<Option<f64>> = senders
        .iter()
        .map(|r| {
            r.mode_switches.filter(|_| r.payload_bytes > 0).map(|m| m as f64 / (r.payload_bytes as f64 / 1048576.0))
        })
        .collect();
    bars(&left, "CPU copies per payload byte (sender)", &names, &copies, &RGBColor(0xd6, 0x5f, 0x3c))?;
    bars(&right, "mode switches per MiB (sender)", &names, &switches, &RGBColor(0x3c, 0x7c, 0xd6))?;
    root.present().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A horizontal bar chart: strategy names read left to right, values at the bars' ends; a
/// value that was not measured has no bar and reads `n/a`.
fn bars(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    caption: &str,
    names: &[String],
    values: &[Option<f64>],
    color: &RGBColor,
) -> anyhow::Result<()> {
    let max = values.iter().flatten().cloned().fold(0.0, f64::max).max(1.0) * 1.2;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(14)
        .x_label_area_size(30)
        .y_label_area_size(110)
        .build_cartesian_2d(0.0..max, (0..names.len()).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(names.len().max(1))
        .y_label_formatter(&|y| match y {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_label_style(("sans-serif", 13))
        .draw()?;
    chart.draw_series(values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i, v))).map(|(i, v)| {
        let mut bar = Rectangle::new([(0.0, SegmentValue::Exact(i)), (v, SegmentValue::Exact(i + 1))], color.filled());
        bar.set_margin(6, 6, 0, 0);
        bar
    }))?;
    chart.draw_series(values.iter().enumerate().map(|(i, v)| {
        let text = v.map_or(" n/a".to_string(), |v| format!(" {v:.2}"));
        Text::new(text, (v.unwrap_or(0.0), SegmentValue::CenterOf(i)), ("sans-serif", 12))
    }))?;
    Ok(())
}

/// `64.0 MiB/s` style, for the chart's and tables' throughput.
pub fn per_second(bytes_per_s: f64) -> String {
    format!("{}/s", human_bytes(bytes_per_s))
}
