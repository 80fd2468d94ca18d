//! The live session's counters, read at one moment ([`Snapshot`]), differenced per interval,
//! and attributed into a report's rows ([`build_report`]): one pipeline for `trace` (its
//! intervals and summary) and `top` (its screens).
use std::collections::{BTreeMap, BTreeSet};

use zc_trace_common::{OpClass, Stats};

use crate::{
    attribute::{
        corrections::copied_at_transmit,
        flows,
        groups::{self, Grouping},
        row::{self, Input},
        strategy::infer_strategy,
    },
    cli::By,
    kernel::{cgroups::CgroupPaths, facts::kernel_info, target::Target},
    model::{
        report::{AttributionReport, GlobalEvents},
        row::{Role, Row},
        run::{Evidence, Tier},
    },
    probe::{collect, session::Session},
};

/// What a report's rows are: per process, thread or group, and, system-wide, how many.
pub(super) struct Shape {
    pub by: By,
    pub tier: Tier,
    /// Keep only the N rows that moved most bytes (`trace -a --top N`); `None`: all of them.
    pub top: Option<usize>,
}

/// Cumulative counters at one moment, with the command names recorded by then.
#[derive(Default, Clone)]
pub(super) struct Snapshot {
    pub stats: BTreeMap<u32, BTreeMap<OpClass, Stats>>,
    pub syscalls: BTreeMap<u32, BTreeMap<u32, u64>>,
    pub flows: collect::Flows,
    pub comms: BTreeMap<u32, String>,
}

impl Snapshot {
    pub fn take(session: &Session) -> anyhow::Result<Self> {
        Ok(Self {
            stats: session.stats()?,
            syscalls: session.syscalls()?,
            flows: session.flows()?,
            comms: session.comms()?,
        })
    }

    /// Every process the maps hold an entry of: some have a name and no counters yet, or
    /// made syscalls but moved nothing.
    pub fn processes(&self) -> impl Iterator<Item = u32> + '_ {
        let flows = self.flows.flows.keys().map(|k| k.key);
        self.stats.keys().chain(self.syscalls.keys()).chain(self.comms.keys()).copied().chain(flows)
    }

    /// Leaves out these processes (forgotten by the session).
    pub fn forget(&mut self, pids: &BTreeSet<u32>) {
        self.stats.retain(|pid, _| !pids.contains(pid));
        self.syscalls.retain(|pid, _| !pids.contains(pid));
        self.flows.flows.retain(|k, _| !pids.contains(&k.key));
        self.comms.retain(|pid, _| !pids.contains(pid));
    }

    /// What happened since `earlier` (names as they are now).
    pub fn minus(&self, earlier: &Snapshot) -> Snapshot {
        let mut out = self.clone();
        for (key, classes) in out.stats.iter_mut() {
            for (class, s) in classes.iter_mut() {
                if let Some(before) = earlier.stats.get(key).and_then(|c| c.get(class)) {
                    collect::sub_stats(s, before);
                }
            }
        }
        for (key, counts) in out.syscalls.iter_mut() {
            for (nr, calls) in counts.iter_mut() {
                *calls = calls.saturating_sub(earlier.syscalls.get(key).and_then(|c| c.get(nr)).copied().unwrap_or(0));
            }
            counts.retain(|_, c| *c > 0);
        }
        for (key, v) in out.flows.flows.iter_mut() {
            if let Some(before) = earlier.flows.flows.get(key) {
                v.calls = v.calls.saturating_sub(before.calls);
                v.bytes = v.bytes.saturating_sub(before.bytes);
            }
        }
        out.flows.flows.retain(|_, v| v.calls > 0);
        out
    }
}

/// The processes' rows of a snapshot (or of the difference of two), attributed as `trace`
/// reports them, with the session's probes and drops.
pub(super) fn build_report(
    shape: &Shape,
    session: &Session,
    snap: &Snapshot,
    duration_s: f64,
    targets: &[Target],
    paths: &flows::PathCache,
) -> anyhow::Result<AttributionReport> {
    let comms = &snap.comms;
    let system: GlobalEvents = session.global_events()?;
    let evidence: &Evidence = session.evidence();
    let empty_counts = BTreeMap::new();
    let role = if shape.by == By::Thread { Role::Thread } else { Role::Process };
    // Every target has a row, even one that did nothing while traced (that is a measurement).
    let mut keyed: BTreeMap<u32, BTreeMap<OpClass, Stats>> = snap.stats.clone();
    if matches!(shape.by, By::Process | By::Cgroup | By::Container) {
        for t in targets {
            keyed.entry(t.pid).or_default();
        }
    }
    let cgroup_ids = session.cgroups()?;
    let cgroups = CgroupPaths::read();
    let cgroup_of = |key: u32| cgroups.info(cgroup_ids.get(&key).copied().unwrap_or(0));
    let row_of =
        |role: Role, pid: u32, comm: String, by_class: &BTreeMap<OpClass, Stats>, syscalls: &BTreeMap<u32, u64>| {
            let mut row = row::row(
                Input {
                    strategy: infer_strategy(by_class),
                    role,
                    pid,
                    comm,
                    path: None,
                    by_class,
                    syscalls,
                    elapsed_s: None,
                    msg_zerocopy: None,
                },
                evidence,
                &system,
            );
            // As in the lab: spliced pages that reached a NIC without scatter-gather in
            // linear packets were copied at transmit (bounded by the linear bytes seen).
            copied_at_transmit(&mut row);
            row
        };
    let rows: Vec<Row> = match shape.by.grouping() {
        None => keyed
            .iter()
            .map(|(&key, by_class)| {
                let comm =
                    comms.get(&key).cloned().or_else(|| targets.iter().find(|t| t.pid == key).map(|t| t.comm.clone()));
                let syscalls = snap.syscalls.get(&key).unwrap_or(&empty_counts);
                let mut row = row_of(role, key, comm.unwrap_or_else(|| "?".into()), by_class, syscalls);
                row.flows = flows::rows_for(row.pid, &snap.flows, paths);
                row.cgroup = Some(cgroup_of(key));
                row.pid_in_namespace = targets.iter().find(|t| t.pid == key).and_then(|t| t.ns_pid);
                row
            })
            .collect(),
        Some(grouping) => {
            let mut by_group: BTreeMap<String, groups::Group> = BTreeMap::new();
            for (&key, by_class) in &keyed {
                let cgroup = cgroup_of(key);
                let group = by_group.entry(groups::label(grouping, &cgroup)).or_default();
                if group.pids.is_empty() {
                    group.cgroup = cgroup;
                }
                group.add(key, by_class, snap.syscalls.get(&key));
            }
            let role = if grouping == Grouping::Cgroup { Role::Cgroup } else { Role::Container };
            by_group
                .into_iter()
                .map(|(label, group)| {
                    // Group rows have no PID: they are named by their cgroup or container.
                    let mut row = row_of(role, 0, label, &group.by_class, &group.syscalls);
                    row.flows = groups::merge_flows(
                        group.pids.iter().flat_map(|&pid| flows::rows_for(pid, &snap.flows, paths)),
                    );
                    let in_container = group.cgroup.container_id.is_some();
                    row.cgroup = (grouping == Grouping::Cgroup || in_container).then_some(group.cgroup);
                    row
                })
                .collect()
        }
    };
    let rows = match shape.top {
        Some(top) => top_rows(rows, top),
        None => rows,
    };
    Ok(AttributionReport {
        kernel: kernel_info(),
        tier: shape.tier,
        probes: session.probes().to_vec(),
        rows,
        drops: session.drops()?,
        duration_s,
        system,
        lab: None,
        stacks: None,
    })
}

/// The `top` rows that moved most bytes (payload plus copies), most first; the others are
/// counted in the JSON but summed up in one line of the table.
fn top_rows(mut rows: Vec<Row>, top: usize) -> Vec<Row> {
    let weight =
        |r: &Row| r.payload_bytes + r.cpu_copy.to_user.bytes + r.cpu_copy.from_user.bytes + r.cpu_copy.kernel.bytes;
    rows.sort_by(|a, b| weight(b).cmp(&weight(a)).then(b.syscalls.cmp(&a.syscalls)));
    rows.truncate(top.max(1));
    rows
}
