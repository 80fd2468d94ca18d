//! `trace`'s terminal output: the attribution table (shared with the lab) followed by each
//! row's breakdown by the kind of memory at the other end of its copies.
use crate::{
    model::{
        report::AttributionReport,
        row::{FdInfo, FlowRow, Row},
    },
    render::table,
};

/// The per-interval table: rows only.
pub fn render_rows(report: &AttributionReport, raw: bool) -> String {
    table::table(report, raw)
}

pub fn render(report: &AttributionReport, raw: bool) -> String {
    let mut out = format!("zc-trace on Linux {}, traced for {:.3} s\n\n", report.kernel.release, report.duration_s);
    out += &table::render(report, raw);
    for row in &report.rows {
        out += &match row.role.as_str() {
            "cgroup" | "container" => format!("\n{} {}, strategy {}:\n", row.role, row.comm, row.strategy),
            _ => match row.pid_in_namespace {
                Some(inner) => format!(
                    "\nPID {} ({}; PID {inner} in its PID namespace), strategy {}:\n",
                    row.pid, row.comm, row.strategy
                ),
                None => format!("\nPID {} ({}), strategy {}:\n", row.pid, row.comm, row.strategy),
            },
        };
        out += &cgroup_line(row);
        for (dir, cell) in [
            ("to user", &row.cpu_copy.to_user),
            ("from user", &row.cpu_copy.from_user),
            ("kernel", &row.cpu_copy.kernel),
        ] {
            for (end, part) in &cell.by_end {
                out += &format!(
                    "  copy {dir:<9} {end:<10} {:>12} in {:>8} calls  [{}]\n",
                    if raw { part.bytes.to_string() } else { table::human_bytes(part.bytes as f64) },
                    part.calls,
                    part.evidence
                );
            }
        }
        for (kind, part) in &row.zero_copy.by_kind {
            out += &format!(
                "  zero-copy {kind:<14} {:>12} in {:>8} calls  [{}]\n",
                if raw { part.bytes.to_string() } else { table::human_bytes(part.bytes as f64) },
                part.calls,
                part.evidence
            );
        }
        out += &render_flows(&row.flows, raw);
        if row.unclassified_bytes > 0 {
            out += &format!(
                "  unclassified: {} returned by data syscalls on fds of unknown kind\n",
                row.unclassified_bytes
            );
        }
    }
    if let Some(stacks) = &report.stacks {
        out += &crate::render::stacks::render(stacks, raw);
    }
    out
}

/// Where a row's processes run, when that is more than the root cgroup: the cgroup, and the
/// container and pod its path names.
fn cgroup_line(row: &Row) -> String {
    let Some(c) = &row.cgroup else { return String::new() };
    let mut parts = Vec::new();
    if let Some(path) = c.path.as_deref().filter(|p| *p != "/") {
        parts.push(format!("cgroup {path}"));
    }
    if let (Some(id), Some(runtime)) = (&c.container_id, c.runtime) {
        parts.push(format!("container {runtime} {id}"));
    }
    if let (Some(uid), Some(qos)) = (&c.pod_uid, c.qos) {
        parts.push(format!("pod {uid} ({qos})"));
    }
    if parts.is_empty() { String::new() } else { format!("  {}\n", parts.join(", ")) }
}

/// A row's flows: strategy, source -> destination, calls and bytes (and fds with `--by fd`).
fn render_flows(flows: &[FlowRow], raw: bool) -> String {
    if flows.is_empty() {
        return String::new();
    }
    let mut out = String::from("  flows (bytes the syscalls returned; [how the source was found]):\n");
    for f in flows {
        let ends = match (&f.fd_in, &f.fd_out) {
            (None, None) => format!("{} -> {}", f.source, f.destination),
            (i, o) => {
                let end = |fd: &Option<FdInfo>, kind: &str| match fd {
                    Some(fd) => format!("{kind} fd {} {}", fd.fd, fd.name),
                    None => kind.to_string(),
                };
                format!("{} -> {}", end(i, &f.source), end(o, &f.destination))
            }
        };
        out += &format!(
            "    {:<15} {:<10} {ends:<40} {:>12} in {:>8} calls  [{}]\n",
            f.strategy,
            f.syscall,
            if raw { f.bytes.to_string() } else { table::human_bytes(f.bytes as f64) },
            f.calls,
            f.evidence
        );
    }
    out
}
