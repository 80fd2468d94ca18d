//! Syscall counts -> figures: the mode switches each syscall costs, the rows of `zc-trace
//! syscalls`, and the architecture's syscall table that classes them.
use std::collections::BTreeMap;

use zc_trace_common::{OpClass, SyscallKey};

use crate::{
    kernel::{
        syscall_names,
        syscall_table::{self, NO_RETURN},
    },
    model::{
        evidence::{Attach, Covers, Evidence, Probe, Rule},
        report::{self, SyscallRow},
    },
};

/// Mode switches a syscall costs: entry into the kernel and the return to user space.
pub fn mode_switches(name: &str, calls: u64) -> u64 {
    if NO_RETURN.contains(&name) { calls } else { 2 * calls }
}

/// Mode switches of `calls` counted under `key`: a syscall number, or a bucket
/// ([`SyscallKey::bucket`]) when processes are traced together.
fn key_mode_switches(key: u32, calls: u64) -> u64 {
    match key {
        SyscallKey::NO_RETURN => calls,
        k if k & SyscallKey::BUCKET != 0 => 2 * calls,
        nr => mode_switches(&syscall_names::name(nr), calls),
    }
}

/// The class of the calls counted under `key` (a syscall number or a bucket).
pub fn class_of(key: u32) -> OpClass {
    if key & SyscallKey::BUCKET != 0 {
        return if key == SyscallKey::NO_RETURN {
            OpClass::Other
        } else {
            OpClass::from_u32(key & !SyscallKey::BUCKET)
        };
    }
    syscall_table().entries.get(key as usize).map_or(OpClass::Other, |d| OpClass::from_u32(u32::from(d.class)))
}

pub const EVIDENCE_SYSCALLS: Evidence =
    Evidence::Observed { probe: Probe { name: "sys_enter", attach: Attach::RawTracepoint }, covers: Covers::All };
pub const EVIDENCE_MODE_SWITCHES: Evidence = Evidence::Derived(Rule::ModeSwitches);

/// The architecture's syscall table, built once.
pub(super) fn syscall_table() -> &'static zc_trace_common::SyscallTable {
    static TABLE: std::sync::OnceLock<zc_trace_common::SyscallTable> = std::sync::OnceLock::new();
    TABLE.get_or_init(syscall_table::build)
}

/// Mode switches of a process's syscall counts (by number or by bucket).
pub fn syscall_mode_switches(counts: &BTreeMap<u32, u64>) -> u64 {
    counts.iter().map(|(&key, &calls)| key_mode_switches(key, calls)).sum()
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

    /// This architecture's number of a syscall.
    fn nr(name: &str) -> u32 {
        syscall_names::number(name).unwrap()
    }

    #[test]
    fn rows_are_named_sorted_and_cost_two_switches() {
        let counts: BTreeMap<u32, u64> =
            [(nr("read"), 257), (nr("write"), 256), (nr("exit_group"), 1), (nr("close"), 2)].into_iter().collect();
        let rows = rows(&counts);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["read", "write", "close", "exit_group"]);
        assert_eq!(rows[0].mode_switches, 514);
        assert_eq!(rows[3].mode_switches, 1, "exit_group never returns");
        assert_eq!(rows.iter().map(|r| r.calls).sum::<u64>(), 516);
        assert_eq!(rows.iter().map(|r| r.mode_switches).sum::<u64>(), 514 + 512 + 4 + 1);
    }

    #[test]
    fn numbers_and_buckets_give_the_same_classes_and_mode_switches() {
        // read x257, write x256, close x2, exit_group x1, by number and by bucket.
        let by_number: BTreeMap<u32, u64> =
            [(nr("read"), 257), (nr("write"), 256), (nr("close"), 2), (nr("exit_group"), 1)].into_iter().collect();
        let bucket = |class: OpClass| SyscallKey::bucket(class as u8, false);
        let by_bucket: BTreeMap<u32, u64> = [
            (bucket(OpClass::Read), 257),
            (bucket(OpClass::Write), 256),
            (bucket(OpClass::Other), 2),
            (SyscallKey::NO_RETURN, 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(syscall_mode_switches(&by_number), 514 + 512 + 4 + 1);
        assert_eq!(syscall_mode_switches(&by_bucket), 514 + 512 + 4 + 1);
        let classes = |counts: &BTreeMap<u32, u64>| -> BTreeMap<OpClass, u64> {
            let mut out = BTreeMap::new();
            for (&key, &calls) in counts {
                *out.entry(class_of(key)).or_default() += calls;
            }
            out
        };
        assert_eq!(classes(&by_number), classes(&by_bucket));
        assert_eq!(classes(&by_bucket)[&OpClass::Other], 3, "close and exit_group");
    }

    #[test]
    fn the_table_marks_the_calls_that_never_return() {
        let table = syscall_table::build();
        let marked: Vec<String> = (0..table.entries.len() as u32)
            .filter(|&nr| table.entries[nr as usize].no_return == 1)
            .map(syscall_names::name)
            .collect();
        assert_eq!(marked.len(), NO_RETURN.len(), "{marked:?}");
        assert!(marked.iter().all(|n| NO_RETURN.contains(&n.as_str())), "{marked:?}");
    }
}
