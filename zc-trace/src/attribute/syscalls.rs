//! Syscall counts -> figures: the mode switches each syscall costs, the rows of `zc-trace
//! syscalls`, and the architecture's syscall table that classes them.
use std::collections::BTreeMap;

use crate::{
    kernel::{syscall_names, syscall_table},
    model::{
        evidence::{Attach, Covers, Evidence, Probe, Rule},
        report::{self, SyscallRow},
    },
};

/// Calls into the kernel that never come back to user space: one mode switch, not two.
const NO_RETURN: [&str; 2] = ["exit", "exit_group"];

/// Mode switches a syscall costs: entry into the kernel and the return to user space.
pub fn mode_switches(name: &str, calls: u64) -> u64 {
    if NO_RETURN.contains(&name) { calls } else { 2 * calls }
}

pub const EVIDENCE_SYSCALLS: Evidence =
    Evidence::Observed { probe: Probe { name: "sys_enter", attach: Attach::RawTracepoint }, covers: Covers::All };
pub const EVIDENCE_MODE_SWITCHES: Evidence = Evidence::Derived(Rule::ModeSwitches);

/// The architecture's syscall table, built once.
pub(super) fn syscall_table() -> &'static zc_trace_common::SyscallTable {
    static TABLE: std::sync::OnceLock<zc_trace_common::SyscallTable> = std::sync::OnceLock::new();
    TABLE.get_or_init(syscall_table::build)
}

/// Sum of [`mode_switches`] over a process's syscall counts.
pub fn syscall_mode_switches(counts: &BTreeMap<u32, u64>) -> u64 {
    counts.iter().map(|(&nr, &calls)| mode_switches(&syscall_names::name(nr), calls)).sum()
}

/// The syscall report's rows from raw counts: most frequent first, ties by name.
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

/// What the syscall report's figures rest on.
pub fn evidence() -> report::Evidence {
    report::Evidence { calls: EVIDENCE_SYSCALLS, mode_switches: EVIDENCE_MODE_SWITCHES }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn rows_are_named_sorted_and_cost_two_switches() {
        let counts: BTreeMap<u32, u64> = [(0, 257), (1, 256), (231, 1), (3, 2)].into_iter().collect();
        let rows = rows(&counts);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["read", "write", "close", "exit_group"]);
        assert_eq!(rows[0].mode_switches, 514);
        assert_eq!(rows[3].mode_switches, 1, "exit_group never returns");
        assert_eq!(rows.iter().map(|r| r.calls).sum::<u64>(), 516);
        assert_eq!(rows.iter().map(|r| r.mode_switches).sum::<u64>(), 514 + 512 + 4 + 1);
    }
}
