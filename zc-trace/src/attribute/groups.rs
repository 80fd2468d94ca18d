//! `--by cgroup|container`: processes' counters summed into one row per cgroup or container.
//! The kernel counts per process either way; grouping is done on what it counted, so the
//! figures of a group are the sums of its processes' (flows summed by their label).
use std::collections::BTreeMap;

use zc_trace_common::{OpClass, Stats};

use crate::{
    model::row::{CgroupInfo, FlowRow},
    probe::collect::add_stats,
};

/// What rows are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    Cgroup,
    Container,
}

/// The label of the group of a process in cgroup `info` (the row's name).
pub fn label(grouping: Grouping, info: &CgroupInfo) -> String {
    match grouping {
        Grouping::Cgroup => match (&info.path, info.unavailable) {
            (Some(path), _) => path.clone(),
            (None, Some(why)) => format!("({why})"),
            (None, None) => format!("(cgroup {} gone)", info.id),
        },
        Grouping::Container => match (&info.container_id, info.runtime) {
            (Some(id), Some(runtime)) => format!("{runtime} {}", short(id)),
            (Some(id), None) => short(id),
            _ => "(not in a container)".into(),
        },
    }
}

/// A container id as runtimes show it: the first 12 hex digits.
fn short(id: &str) -> String {
    if id.len() == 64 { id[..12].to_string() } else { id.to_string() }
}

/// One group's inputs: its processes' counters summed.
#[derive(Debug, Default, Clone)]
pub struct Group {
    pub pids: Vec<u32>,
    pub by_class: BTreeMap<OpClass, Stats>,
    pub syscalls: BTreeMap<u32, u64>,
    /// The cgroup of its first process (for a container: where its pod and QoS are read).
    pub cgroup: CgroupInfo,
}

impl Group {
    /// Adds a process's counters.
    pub fn add(&mut self, pid: u32, by_class: &BTreeMap<OpClass, Stats>, syscalls: Option<&BTreeMap<u32, u64>>) {
        self.pids.push(pid);
        for (class, stats) in by_class {
            add_stats(self.by_class.entry(*class).or_default(), stats);
        }
        for (nr, calls) in syscalls.into_iter().flatten() {
            *self.syscalls.entry(*nr).or_default() += calls;
        }
    }
}

/// Flow rows of several processes summed by label (strategy, syscall, ends), most bytes first;
/// per-fd detail does not survive grouping.
pub fn merge_flows(rows: impl IntoIterator<Item = FlowRow>) -> Vec<FlowRow> {
    let mut merged: BTreeMap<(&'static str, &'static str, String, String), FlowRow> = BTreeMap::new();
    for row in rows {
        let key = (row.strategy, row.syscall, row.source.clone(), row.destination.clone());
        match merged.get_mut(&key) {
            Some(m) => {
                m.calls += row.calls;
                m.bytes += row.bytes;
            }
            None => {
                merged.insert(key, FlowRow { fd_in: None, fd_out: None, ..row });
            }
        }
    }
    let mut out: Vec<FlowRow> = merged.into_values().collect();
    out.sort_by_key(|f| std::cmp::Reverse(f.bytes));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1c0d2b9e8a7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";

    #[test]
    fn labels_name_the_cgroup_or_the_container() {
        let info = CgroupInfo {
            id: 7,
            path: Some(format!("/system.slice/docker-{ID}.scope")),
            container_id: Some(ID.into()),
            runtime: Some("docker"),
            ..Default::default()
        };
        assert_eq!(label(Grouping::Cgroup, &info), format!("/system.slice/docker-{ID}.scope"));
        assert_eq!(label(Grouping::Container, &info), "docker 4f1c0d2b9e8a");
        let host = CgroupInfo { id: 1, path: Some("/".into()), ..Default::default() };
        assert_eq!(label(Grouping::Container, &host), "(not in a container)");
        let v1 = CgroupInfo { unavailable: Some("no cgroup v2 hierarchy on this host"), ..Default::default() };
        assert_eq!(label(Grouping::Cgroup, &v1), "(no cgroup v2 hierarchy on this host)");
    }

    #[test]
    fn flows_sum_by_label() {
        let flow = |bytes| FlowRow {
            strategy: "read-write",
            syscall: "write",
            source: "file".into(),
            destination: "tcp".into(),
            calls: 2,
            bytes,
            fd_in: None,
            fd_out: None,
            evidence: "e",
        };
        let merged = merge_flows([flow(10), flow(5)]);
        assert_eq!(merged.len(), 1);
        assert_eq!((merged[0].calls, merged[0].bytes), (4, 15));
    }
}
