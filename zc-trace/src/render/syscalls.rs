//! `zc-trace syscalls`' terminal table: calls and mode switches by syscall, a total, where the
//! figures come from, and the drops.
use prettytable::{Cell, Row, Table, format};

use crate::{model::report::SyscallReport, render::table::render_drops};

/// The table, most frequent syscall first, with right-aligned counts.
pub fn render(report: &SyscallReport) -> String {
    let mut table = Table::new();
    table.set_format(*format::consts::FORMAT_NO_BORDER_LINE_SEPARATOR);
    table.set_titles(Row::new(vec![
        Cell::new("syscall"),
        Cell::new("calls").style_spec("r"),
        Cell::new("mode switches").style_spec("r"),
    ]));
    for row in &report.syscalls {
        table.add_row(Row::new(vec![
            Cell::new(&row.name),
            Cell::new(&row.calls.to_string()).style_spec("r"),
            Cell::new(&row.mode_switches.to_string()).style_spec("r"),
        ]));
    }
    table.add_row(Row::new(vec![
        Cell::new("total"),
        Cell::new(&report.total_calls.to_string()).style_spec("r"),
        Cell::new(&report.total_mode_switches.to_string()).style_spec("r"),
    ]));
    let t = &report.target;
    let mut out = format!(
        "PID {} ({}) traced for {:.3} s on Linux {}\n\n{table}\n",
        t.pid, t.comm, report.duration_s, report.kernel.release
    );
    out += &format!("calls: observed, {}\n", report.evidence.calls);
    out += &format!("mode switches: {}\n", report.evidence.mode_switches);
    out += &render_drops(&report.drops);
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        attribute::syscalls,
        model::{
            report::{KernelInfo, TargetInfo},
            run::{Drops, ProbeStatus},
        },
    };

    fn report(counts: &[(u32, u64)]) -> SyscallReport {
        let counts: BTreeMap<u32, u64> = counts.iter().copied().collect();
        let syscalls = syscalls::rows(&counts);
        SyscallReport {
            kernel: KernelInfo { release: "6.18.0".into(), lockdown: Some("integrity".into()), btf: true },
            probes: vec![ProbeStatus::attached("sys_enter", "raw_tracepoint")],
            target: TargetInfo { pid: 42, comm: "dd".into(), spawned: true, exit_status: Some(0) },
            total_calls: syscalls.iter().map(|r| r.calls).sum(),
            total_mode_switches: syscalls.iter().map(|r| r.mode_switches).sum(),
            syscalls,
            evidence: syscalls::evidence(),
            drops: Drops::new([("syscall_counts map full", 0)].into_iter().collect()),
            duration_s: 1.5,
        }
    }

    #[test]
    fn table_has_aligned_counts_a_total_and_the_evidence() {
        let nr = |name| crate::kernel::syscall_names::number(name).unwrap();
        let text = render(&report(&[(nr("read"), 257), (nr("write"), 256)]));
        assert!(text.contains("PID 42 (dd)"));
        let read = text.lines().find(|l| l.trim_start().starts_with("read")).unwrap();
        assert!(read.contains("257") && read.contains("514"), "{read}");
        let total = text.lines().find(|l| l.trim_start().starts_with("total")).unwrap();
        assert!(total.contains("513") && total.contains("1026"), "{total}");
        // Right-aligned: the calls column ends at the same position on every row.
        let end = |l: &str, n: &str| l.find(n).unwrap() + n.len();
        assert_eq!(end(read, "257"), end(total, "513"));
        assert!(text.contains("raw_tracepoint:sys_enter"));
        assert!(text.contains("drops: 0"));
    }

    #[test]
    fn json_uses_null_for_unknown_and_lowercase_states() {
        let mut r = report(&[(0, 1)]);
        r.kernel.lockdown = None;
        r.probes.push(ProbeStatus::unavailable("x", "fentry", "EPERM"));
        let v = serde_json::to_value(&r).unwrap();
        assert!(v["kernel"]["lockdown"].is_null());
        assert_eq!(v["probes"][0]["status"], "attached");
        assert_eq!(v["probes"][1]["status"], "unavailable");
        assert_eq!(v["syscalls"][0]["calls"], 1);
    }
}
