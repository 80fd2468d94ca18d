//! The lab's results and their table. Pure code: the measuring is in `commands::lab`.
use prettytable::{Cell, Row, Table, format};
use serde::Serialize;

use crate::{
    kernel::KernelInfo,
    report::{Drops, ProbeStatus, SyscallRow},
    workloads::Strategy,
};

#[derive(Debug, Clone, Serialize)]
pub struct LabRow {
    pub strategy: &'static str,
    pub role: &'static str,
    pub pid: u32,
    pub comm: String,
    pub payload_bytes: u64,
    /// All system calls the workload process made, from its first to exit_group.
    pub syscalls: u64,
    pub mode_switches: u64,
    /// The calls that move the payload (e.g. read and write), with their counts.
    pub data_calls: Vec<SyscallRow>,
    pub elapsed_s: f64,
    pub throughput_bytes_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub strategy: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LabReport {
    pub kernel: KernelInfo,
    pub probes: Vec<ProbeStatus>,
    pub size_bytes: u64,
    pub chunk_bytes: u64,
    pub sink: String,
    pub rows: Vec<LabRow>,
    pub skipped: Vec<Skipped>,
    pub drops: Drops,
    pub duration_s: f64,
}

/// Strategies that cannot write to a sink, and why (checked before anything runs).
pub fn unsupported(strategy: Strategy, sink: &str) -> Option<String> {
    match (strategy, sink) {
        (Strategy::CopyFileRange, "null") => {
            Some("copy_file_range(2) needs a regular file as destination, /dev/null is not".into())
        }
        _ => None,
    }
}

/// `64.0 MiB`, `512 B`: binary units, one decimal.
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{v:.0} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

fn bytes_cell(bytes: u64, raw: bool) -> String {
    if raw { bytes.to_string() } else { human_bytes(bytes as f64) }
}

pub fn render(report: &LabReport, raw: bool) -> String {
    let mut table = Table::new();
    table.set_format(*format::consts::FORMAT_NO_BORDER_LINE_SEPARATOR);
    let right = |s: &str| Cell::new(s).style_spec("r");
    table.set_titles(Row::new(vec![
        Cell::new("strategy"),
        Cell::new("role"),
        right("payload"),
        right("syscalls"),
        right("mode switches"),
        Cell::new("data calls"),
        right("throughput"),
    ]));
    for r in &report.rows {
        let calls: Vec<String> = r.data_calls.iter().map(|c| format!("{} {}", c.name, c.calls)).collect();
        table.add_row(Row::new(vec![
            Cell::new(r.strategy),
            Cell::new(r.role),
            right(&bytes_cell(r.payload_bytes, raw)),
            right(&r.syscalls.to_string()),
            right(&r.mode_switches.to_string()),
            Cell::new(&calls.join(", ")),
            right(&format!("{}/s", human_bytes(r.throughput_bytes_per_s))),
        ]));
    }
    let mut out = format!(
        "zc-trace lab on Linux {}: {} source file, {} chunks, sink {}\n\n{table}\n",
        report.kernel.release,
        bytes_cell(report.size_bytes, raw),
        bytes_cell(report.chunk_bytes, raw),
        report.sink
    );
    for s in &report.skipped {
        out += &format!("skipped {}: {}\n", s.strategy, s.reason);
    }
    out += &format!("syscalls, data calls: observed, {}\n", crate::report::EVIDENCE_SYSCALLS);
    out += &format!("mode switches: {}\n", crate::report::EVIDENCE_MODE_SWITCHES);
    out += "throughput: payload / wall time of the workload's copy loop (warm page cache)\n";
    out += &crate::report::render_drops(&report.drops);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(64.0 * 1024.0 * 1024.0), "64.0 MiB");
        assert_eq!(human_bytes(1536.0), "1.5 KiB");
    }

    #[test]
    fn copy_file_range_cannot_write_to_dev_null() {
        assert!(unsupported(Strategy::CopyFileRange, "null").is_some());
        assert!(unsupported(Strategy::CopyFileRange, "file").is_none());
        assert!(unsupported(Strategy::Sendfile, "null").is_none());
    }

    #[test]
    fn table_shows_rows_evidence_and_raw_bytes() {
        let report = LabReport {
            kernel: KernelInfo { release: "6.18".into(), lockdown: None, btf: true },
            probes: vec![],
            size_bytes: 64 << 20,
            chunk_bytes: 64 << 10,
            sink: "file".into(),
            rows: vec![LabRow {
                strategy: "read-write",
                role: "sender",
                pid: 7,
                comm: "zc-read-write".into(),
                payload_bytes: 64 << 20,
                syscalls: 2056,
                mode_switches: 4111,
                data_calls: vec![SyscallRow { name: "read".into(), nr: 0, calls: 1025, mode_switches: 2050 }],
                elapsed_s: 0.5,
                throughput_bytes_per_s: 128.0 * 1024.0 * 1024.0,
            }],
            skipped: vec![Skipped { strategy: "copy-file-range", reason: "why".into() }],
            drops: Drops::new(Default::default()),
            duration_s: 1.0,
        };
        let text = render(&report, false);
        assert!(text.contains("64.0 MiB") && text.contains("read 1025") && text.contains("128.0 MiB/s"), "{text}");
        assert!(text.contains("skipped copy-file-range: why"));
        assert!(text.contains("raw_tracepoint:sys_enter"));
        assert!(render(&report, true).contains("67108864"));
    }
}
