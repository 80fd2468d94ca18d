//! The attribution table that `lab` and `trace` print, its header and notes (where each
//! column's figures come from, drops, unavailable probes). Pure code.
use prettytable::{Cell, Row as TRow, Table, format};

use crate::{
    attribute::{sources::PAGE_FAULT_USER, syscalls::EVIDENCE_SYSCALLS},
    model::{
        evidence::Evidence,
        report::AttributionReport,
        row::Row,
        run::{Drops, ProbeState, ProbeStatus},
    },
    probe::catalogue,
    render::classic::render_comparisons,
};

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

fn bytes(b: u64, raw: bool) -> String {
    if raw { b.to_string() } else { human_bytes(b as f64) }
}

/// A direction's copies, or n/a when an end of it could not be measured.
fn copy_cell(cell: &crate::model::row::CopyCell, raw: bool) -> String {
    if cell.unmeasured_ends.is_empty() { bytes(cell.bytes, raw) } else { "n/a".into() }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| v.to_string())
}

/// The attribution table alone.
pub fn table(report: &AttributionReport, raw: bool) -> String {
    let mut table = Table::new();
    table.set_format(*format::consts::FORMAT_NO_BORDER_LINE_SEPARATOR);
    let r = |s: &str| Cell::new(s).style_spec("r");
    // Lab rows are known by strategy and role; traced rows need their process.
    let with_pid = report.lab.is_none();
    let mut titles: Vec<Cell> = if with_pid { vec![r("pid"), Cell::new("comm")] } else { Vec::new() };
    titles.extend(
        [
            "strategy",
            "role",
            "payload",
            "syscalls",
            "mode sw",
            "ctx sw v/i",
            "faults",
            "copy ->user",
            "copy user->",
            "copy kernel",
            "copies/B",
            "zero-copy",
            "disk read",
            "NIC lin/paged",
            "throughput",
        ]
        .iter()
        .enumerate()
        .map(|(i, t)| if i < 2 { Cell::new(t) } else { r(t) }),
    );
    table.set_titles(TRow::new(titles));
    for row in &report.rows {
        // Rows of a cgroup or a container sum several processes: no PID.
        let pid = if row.pid == 0 { "-".to_string() } else { row.pid.to_string() };
        let mut cells = if with_pid { vec![r(&pid), Cell::new(&row.comm)] } else { Vec::new() };
        cells.extend(vec![
            Cell::new(&row.strategy),
            Cell::new(&row.role),
            r(&bytes(row.payload_bytes, raw)),
            r(&row.syscalls.to_string()),
            r(&opt(row.mode_switches)),
            r(&row.context_switches.map_or("n/a".into(), |c| format!("{}/{}", c.voluntary, c.involuntary))),
            r(&opt(row.page_faults)),
            r(&copy_cell(&row.cpu_copy.to_user, raw)),
            r(&copy_cell(&row.cpu_copy.from_user, raw)),
            r(&copy_cell(&row.cpu_copy.kernel, raw)),
            r(&row.copies_per_payload_byte.map_or("n/a".into(), |c| format!("{c:.2}"))),
            r(&bytes(row.zero_copy.bytes, raw)),
            r(&row.dma.disk_read_bytes.map_or("n/a".into(), |b| bytes(b, raw))),
            r(&match (row.dma.net_tx_linear_bytes, row.dma.net_tx_paged_bytes) {
                (Some(l), Some(p)) => format!("{}/{}", bytes(l, raw), bytes(p, raw)),
                _ => "n/a".into(),
            }),
            r(&row.throughput_bytes_per_s.map_or("-".into(), |t| format!("{}/s", human_bytes(t)))),
        ]);
        table.add_row(TRow::new(cells));
    }
    format!("{table}\n")
}

pub fn render(report: &AttributionReport, raw: bool) -> String {
    let mut out = String::new();
    if let Some(lab) = &report.lab {
        out += &format!(
            "zc-trace lab on Linux {} ({} tier): {} source file, {} chunks, sink {}{}{}\n\n",
            report.kernel.release,
            serde_json::to_value(report.tier).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
            bytes(lab.size_bytes, raw),
            bytes(lab.chunk_bytes, raw),
            lab.sink,
            if lab.cold { ", cold page cache" } else { ", warm page cache" },
            if lab.runs > 1 { format!(", median of {} runs by throughput", lab.runs) } else { String::new() },
        );
    }
    out += &table(report, raw);
    if let Some(lab) = &report.lab {
        for s in &lab.skipped {
            out += &format!("skipped {}: {}\n", s.strategy, s.reason);
        }
    }
    if let Some(lab) = &report.lab {
        out += &render_comparisons(&lab.classic);
    }
    out += &evidence_notes(&report.rows, &report.probes);
    out += &render_drops(&report.drops);
    let unavailable: Vec<String> = report
        .probes
        .iter()
        .filter(|p| p.status == ProbeState::Unavailable && !p.name.starts_with("dma:"))
        .map(|p| p.name.clone())
        .collect();
    if !unavailable.is_empty() {
        out += &format!("unavailable on this kernel: {} (see --json for why)\n", unavailable.join(", "));
    }
    out
}

/// The drops line under every table: a count of zero is a measurement too.
pub fn render_drops(drops: &Drops) -> String {
    if drops.total == 0 {
        return "drops: 0 (every event was counted)\n".into();
    }
    let detail: Vec<String> =
        drops.by_reason.iter().filter(|(_, n)| **n > 0).map(|(r, n)| format!("{r}: {n}")).collect();
    format!("drops: {} events NOT counted ({}); figures above are lower bounds\n", drops.total, detail.join(", "))
}

/// What counted page faults on this run: the x86 tracepoints, arm64's perf event, or nothing
/// (then the faults are n/a and the probe list says why).
fn fault_source(probes: &[ProbeStatus]) -> &'static str {
    let attached = |name: &str| probes.iter().any(|p| p.name == name && p.status == ProbeState::Attached);
    if attached(catalogue::PAGE_FAULTS_PERF) {
        "perf_event:page-faults on every CPU (user mode by the faulting context's exception level; kernel mode on user addresses)"
    } else if attached(PAGE_FAULT_USER) {
        "raw_tracepoint:exceptions:page_fault_user + page_fault_kernel on user addresses"
    } else {
        "not counted on this kernel (see the probe list)"
    }
}

/// How mode switches are counted (the same for every row).
pub const MODE_SWITCHES_SOURCE: &str = "2 per syscall (entry + return; 1 for exit_group) + 2 per user-mode page fault";

/// Where each column came from: every distinct source among the rows, once.
fn evidence_notes(rows: &[Row], probes: &[ProbeStatus]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let distinct = |f: &dyn Fn(&Row) -> &Evidence| -> String {
        match Evidence::mixed(rows.iter().map(|r| f(r).clone())) {
            Evidence::NoneSeen => "nothing seen".into(),
            seen => seen.to_string(),
        }
    };
    let mut out = String::from("where the figures come from:\n");
    out += &format!("  syscalls: observed, {}\n", EVIDENCE_SYSCALLS);
    out += &format!("  mode sw: {MODE_SWITCHES_SOURCE}\n");
    out += "  ctx sw: raw_tracepoint:sched:sched_switch (voluntary = went to sleep, involuntary = preempted)\n";
    out += &format!("  faults: {}\n", fault_source(probes));
    out += &format!("  copy ->user: {}\n", distinct(&|r| &r.cpu_copy.to_user.evidence));
    out += &format!("  copy user->: {}\n", distinct(&|r| &r.cpu_copy.from_user.evidence));
    out += &format!("  copy kernel: {}\n", distinct(&|r| &r.cpu_copy.kernel.evidence));
    out += &format!("  zero-copy: {}\n", distinct(&|r| &r.zero_copy.evidence));
    out += &format!("  DMA: {}\n", rows[0].dma.evidence);
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
    fn drops_are_never_silent() {
        let d = Drops::new([("syscall_counts map full", 3)].into_iter().collect());
        assert!(render_drops(&d).contains("3 events NOT counted"));
    }
}
