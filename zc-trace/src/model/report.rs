//! What zc-trace prints: serialisable report structures and their terminal tables. Pure code,
//! tested without root.
use std::collections::BTreeMap;

use prettytable::{Cell, Row, Table, format};
use serde::Serialize;

use crate::{
    attribute,
    collect::GlobalEvents,
    doctor::DoctorReport,
    evidence::{self, Attach, Covers, Probe, Rule},
    kernel::KernelInfo,
    session::Tier,
    syscall_names,
};

/// The report every attributing command prints with `--json`: the fields named in the README
/// are stable; more may be added.
#[derive(Debug, Clone, Serialize)]
pub struct AttributionReport {
    pub kernel: KernelInfo,
    pub tier: Tier,
    pub probes: Vec<ProbeStatus>,
    pub rows: Vec<attribute::Row>,
    pub drops: Drops,
    pub duration_s: f64,
    /// System-wide counters (work no traced process was charged for).
    pub system: GlobalEvents,
    /// Lab runs: what was run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lab: Option<LabSettings>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LabSettings {
    pub size_bytes: u64,
    pub chunk_bytes: u64,
    pub sink: String,
    pub cold: bool,
    pub runs: u32,
    pub skipped: Vec<Skipped>,
    /// Each classic strategy's sender beside the classic model, with a verdict.
    pub classic: Vec<crate::model::Comparison>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub strategy: &'static str,
    pub reason: String,
}

/// One probe as every report lists it: how it is attached, or why it could not be.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProbeStatus {
    pub name: String,
    /// `tracepoint`, `raw_tracepoint`, `tp_btf`, `fentry`, `fexit`, `kprobe`, `kretprobe`.
    pub attach: String,
    pub status: ProbeState,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProbeState {
    Attached,
    Unavailable,
}

impl ProbeStatus {
    pub fn attached(name: &str, attach: &str) -> Self {
        Self { name: name.into(), attach: attach.into(), status: ProbeState::Attached, reason: None }
    }
    pub fn unavailable(name: &str, attach: &str, reason: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            attach: attach.into(),
            status: ProbeState::Unavailable,
            reason: Some(reason.into()),
        }
    }
}

/// Calls into the kernel that never come back to user space: one mode switch, not two.
const NO_RETURN: [&str; 2] = ["exit", "exit_group"];

/// Mode switches a syscall costs: entry into the kernel and the return to user space.
pub fn mode_switches(name: &str, calls: u64) -> u64 {
    if NO_RETURN.contains(&name) { calls } else { 2 * calls }
}

pub const EVIDENCE_SYSCALLS: evidence::Evidence = evidence::Evidence::Observed {
    probe: Probe { name: "sys_enter", attach: Attach::RawTracepoint },
    covers: Covers::All,
};
pub const EVIDENCE_MODE_SWITCHES: evidence::Evidence = evidence::Evidence::Derived(Rule::ModeSwitches);

#[derive(Debug, Clone, Serialize)]
pub struct SyscallRow {
    pub name: String,
    pub nr: u32,
    pub calls: u64,
    pub mode_switches: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    pub pid: u32,
    pub comm: String,
    pub spawned: bool,
    /// The command's exit status when we started it and it ended during the trace.
    pub exit_status: Option<i32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Drops {
    pub total: u64,
    pub by_reason: BTreeMap<&'static str, u64>,
}

impl Drops {
    pub fn new(by_reason: BTreeMap<&'static str, u64>) -> Self {
        Self { total: by_reason.values().sum(), by_reason }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub calls: evidence::Evidence,
    pub mode_switches: evidence::Evidence,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyscallReport {
    pub kernel: KernelInfo,
    pub probes: Vec<ProbeStatus>,
    pub target: TargetInfo,
    pub syscalls: Vec<SyscallRow>,
    pub total_calls: u64,
    pub total_mode_switches: u64,
    pub evidence: Evidence,
    pub drops: Drops,
    pub duration_s: f64,
}

impl SyscallReport {
    /// Builds the rows from raw counts: most frequent first, ties by name.
    pub fn rows(counts: &BTreeMap<u32, u64>) -> Vec<SyscallRow> {
        let mut rows: Vec<SyscallRow> = counts
            .iter()
            .filter(|&(_, &calls)| calls > 0)
            .map(|(&nr, &calls)| {
                let name = syscall_names::name(nr);
                SyscallRow { mode_switches: mode_switches(&name, calls), name, nr, calls }
            })
            .collect();
        rows.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.name.cmp(&b.name)));
        rows
    }

    pub fn evidence() -> Evidence {
        Evidence { calls: EVIDENCE_SYSCALLS, mode_switches: EVIDENCE_MODE_SWITCHES }
    }

    pub fn render(&self) -> String {
        let mut table = Table::new();
        table.set_format(*format::consts::FORMAT_NO_BORDER_LINE_SEPARATOR);
        table.set_titles(Row::new(vec![
            Cell::new("syscall"),
            Cell::new("calls").style_spec("r"),
            Cell::new("mode switches").style_spec("r"),
        ]));
        for row in &self.syscalls {
            table.add_row(Row::new(vec![
                Cell::new(&row.name),
                Cell::new(&row.calls.to_string()).style_spec("r"),
                Cell::new(&row.mode_switches.to_string()).style_spec("r"),
            ]));
        }
        table.add_row(Row::new(vec![
            Cell::new("total"),
            Cell::new(&self.total_calls.to_string()).style_spec("r"),
            Cell::new(&self.total_mode_switches.to_string()).style_spec("r"),
        ]));
        let t = &self.target;
        let mut out = format!(
            "PID {} ({}) traced for {:.3} s on Linux {}\n\n{table}\n",
            t.pid, t.comm, self.duration_s, self.kernel.release
        );
        out += &format!("calls: observed, {}\n", self.evidence.calls);
        out += &format!("mode switches: {}\n", self.evidence.mode_switches);
        out += &render_drops(&self.drops);
        out
    }
}

pub fn render_drops(drops: &Drops) -> String {
    if drops.total == 0 {
        return "drops: 0 (every event was counted)\n".into();
    }
    let detail: Vec<String> =
        drops.by_reason.iter().filter(|(_, n)| **n > 0).map(|(r, n)| format!("{r}: {n}")).collect();
    format!("drops: {} events NOT counted ({}); figures above are lower bounds\n", drops.total, detail.join(", "))
}

/// `doctor`'s terminal output: kernel facts, one line per attach kind, then the copy-site
/// matrix. Failure reasons are long, so cells carry a footnote number and the reasons follow.
pub fn render_doctor(report: &DoctorReport) -> String {
    let k = &report.kernel;
    let mut out = format!(
        "kernel {}  lockdown: {}  BTF: {}\n\n",
        k.release,
        k.lockdown.as_deref().unwrap_or("unknown (no lockdown LSM or securityfs)"),
        if k.btf { "yes" } else { "no" }
    );
    let mut kinds = Table::new();
    kinds.set_format(*format::consts::FORMAT_NO_BORDER_LINE_SEPARATOR);
    kinds.set_titles(Row::new(vec![Cell::new("attach kind"), Cell::new("works"), Cell::new("how we know")]));
    for (kind, check) in &report.attach_kinds {
        kinds.add_row(Row::new(vec![
            Cell::new(kind),
            Cell::new(if check.works { "yes" } else { "no" }),
            Cell::new(&check.detail),
        ]));
    }
    out += &format!("{kinds}\n");

    let mut notes: Vec<String> = Vec::new();
    let mut note = |reason: &str| -> usize {
        match notes.iter().position(|n| n == reason) {
            Some(i) => i + 1,
            None => {
                notes.push(reason.to_string());
                notes.len()
            }
        }
    };
    let mut sites = Table::new();
    sites.set_format(*format::consts::FORMAT_NO_BORDER_LINE_SEPARATOR);
    let mut titles = vec![Cell::new("copy site"), Cell::new("in BTF")];
    titles.extend(crate::doctor::FUNCTION_KINDS.iter().map(|k| Cell::new(k)));
    sites.set_titles(Row::new(titles));
    for site in &report.copy_sites {
        let mut cells = vec![Cell::new(site.function), Cell::new(if site.in_btf { "yes" } else { "no" })];
        for kind in crate::doctor::FUNCTION_KINDS {
            let text = match site.attach.get(kind) {
                Some(c) if c.works => "yes".to_string(),
                Some(c) => format!("no [{}]", note(&c.detail)),
                None => "-".to_string(),
            };
            cells.push(Cell::new(&text));
        }
        sites.add_row(Row::new(cells));
    }
    out += &format!("{sites}\n");
    for (i, n) in notes.iter().enumerate() {
        out += &format!("[{}] {n}\n", i + 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(counts: &[(u32, u64)]) -> SyscallReport {
        let counts: BTreeMap<u32, u64> = counts.iter().copied().collect();
        let syscalls = SyscallReport::rows(&counts);
        SyscallReport {
            kernel: KernelInfo { release: "6.18.0".into(), lockdown: Some("integrity".into()), btf: true },
            probes: vec![ProbeStatus::attached("sys_enter", "raw_tracepoint")],
            target: TargetInfo { pid: 42, comm: "dd".into(), spawned: true, exit_status: Some(0) },
            total_calls: syscalls.iter().map(|r| r.calls).sum(),
            total_mode_switches: syscalls.iter().map(|r| r.mode_switches).sum(),
            syscalls,
            evidence: SyscallReport::evidence(),
            drops: Drops::new([("syscall_counts map full", 0)].into_iter().collect()),
            duration_s: 1.5,
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn rows_are_named_sorted_and_cost_two_switches() {
        let r = report(&[(0, 257), (1, 256), (231, 1), (3, 2)]);
        let names: Vec<&str> = r.syscalls.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["read", "write", "close", "exit_group"]);
        assert_eq!(r.syscalls[0].mode_switches, 514);
        assert_eq!(r.syscalls[3].mode_switches, 1, "exit_group never returns");
        assert_eq!(r.total_calls, 516);
        assert_eq!(r.total_mode_switches, 514 + 512 + 4 + 1);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn table_has_aligned_counts_a_total_and_the_evidence() {
        let text = report(&[(0, 257), (1, 256)]).render();
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
    fn drops_are_never_silent() {
        let d = Drops::new([("syscall_counts map full", 3)].into_iter().collect());
        assert!(render_drops(&d).contains("3 events NOT counted"));
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
