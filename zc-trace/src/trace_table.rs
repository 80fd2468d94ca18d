//! `trace`'s terminal output: the attribution table (shared with the lab) followed by each
//! row's breakdown by the kind of memory at the other end of its copies.
use crate::{lab, report::AttributionReport};

/// The per-interval table: rows only.
pub fn render_rows(report: &AttributionReport, raw: bool) -> String {
    lab::table(report, raw)
}

pub fn render(report: &AttributionReport, raw: bool) -> String {
    let mut out = format!("zc-trace on Linux {}, traced for {:.3} s\n\n", report.kernel.release, report.duration_s);
    out += &lab::render(report, raw);
    for row in &report.rows {
        out += &format!("\nPID {} ({}), strategy {}:\n", row.pid, row.comm, row.strategy);
        for (dir, cell) in [
            ("to user", &row.cpu_copy.to_user),
            ("from user", &row.cpu_copy.from_user),
            ("kernel", &row.cpu_copy.kernel),
        ] {
            for (end, part) in &cell.by_end {
                out += &format!(
                    "  copy {dir:<9} {end:<10} {:>12} in {:>8} calls  [{}]\n",
                    if raw { part.bytes.to_string() } else { lab::human_bytes(part.bytes as f64) },
                    part.calls,
                    part.evidence
                );
            }
        }
        for (kind, part) in &row.zero_copy.by_kind {
            out += &format!(
                "  zero-copy {kind:<14} {:>12} in {:>8} calls  [{}]\n",
                if raw { part.bytes.to_string() } else { lab::human_bytes(part.bytes as f64) },
                part.calls,
                part.evidence
            );
        }
        if row.unclassified_bytes > 0 {
            out += &format!("  unclassified: {} returned by data syscalls on fds of unknown kind\n", row.unclassified_bytes);
        }
    }
    out
}
