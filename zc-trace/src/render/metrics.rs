//! OpenMetrics for `zc-trace serve`: per-process counters from the kernel are folded, as
//! deltas, into cumulative series keyed by (command name, strategy), so that counters stay
//! monotonic while processes come and go (their kernel entries are deleted once folded).
//!
//! Cardinality is bounded: the first `max_series` (comm, strategy) pairs seen get series of
//! their own, in order of arrival; later ones are summed into comm="other",
//! strategy="other". A pair that has a series keeps it (a counter must not vanish).
use std::collections::BTreeMap;

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use zc_trace_common::{OpClass, Stats, Tally, ZeroCopyKind};

use crate::{
    attribute::{
        row::{self, Input},
        strategy::infer_strategy,
    },
    model::{
        evidence,
        report::GlobalEvents,
        row::{CgroupInfo, Role, Row},
        run::{Drops, Evidence, MapOccupancy, ProbeState, ProbeStatus},
    },
    probe::collect,
};

type Labels = Vec<(String, String)>;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Totals {
    /// (direction, end, evidence) -> (bytes, calls)
    pub cpu_copy: BTreeMap<(String, String, evidence::Evidence), (u64, u64)>,
    /// (kind, evidence) -> bytes
    pub zero_copy: BTreeMap<(String, evidence::Evidence), u64>,
    /// kind -> bytes
    pub dma: BTreeMap<String, u64>,
    pub syscalls: u64,
    /// `None` while no probe could count them (a page-fault or sched_switch tracepoint
    /// missing): no series then, and `zc_probe_attached` says why.
    pub mode_switches: Option<u64>,
    pub faults_user: Option<u64>,
    pub faults_kernel: Option<u64>,
    pub ctx_voluntary: Option<u64>,
    pub ctx_involuntary: Option<u64>,
    pub payload: u64,
}

/// Adds a measured value to a total that is unknown until the first one.
fn add(total: &mut Option<u64>, v: Option<u64>) {
    if let Some(v) = v {
        *total = Some(total.unwrap_or(0) + v);
    }
}

impl Totals {
    fn add_row(&mut self, r: &Row) {
        for (dir, cell) in
            [("to_user", &r.cpu_copy.to_user), ("from_user", &r.cpu_copy.from_user), ("kernel", &r.cpu_copy.kernel)]
        {
            for (end, part) in &cell.by_end {
                let e = self.cpu_copy.entry((dir.into(), end.to_string(), part.evidence.clone())).or_default();
                e.0 += part.bytes;
                e.1 += part.calls;
            }
        }
        for (kind, part) in &r.zero_copy.by_kind {
            *self.zero_copy.entry((kind.to_string(), part.evidence.clone())).or_default() += part.bytes;
        }
        for (kind, v) in [
            ("disk_read", r.dma.disk_read_bytes),
            ("disk_write", r.dma.disk_write_bytes),
            ("net_tx_linear", r.dma.net_tx_linear_bytes),
            ("net_tx_paged", r.dma.net_tx_paged_bytes),
            ("direct_io_read", Some(r.dma.direct_io_read_bytes)),
            ("direct_io_write", Some(r.dma.direct_io_write_bytes)),
        ] {
            if let Some(v) = v {
                *self.dma.entry(kind.into()).or_default() += v;
            }
        }
        self.syscalls += r.syscalls;
        add(&mut self.mode_switches, r.mode_switches);
        if let Some(d) = &r.page_fault_detail {
            add(&mut self.faults_user, d.get("user").copied());
            add(&mut self.faults_kernel, d.get("kernel").copied());
        }
        if let Some(c) = r.context_switches {
            add(&mut self.ctx_voluntary, Some(c.voluntary));
            add(&mut self.ctx_involuntary, Some(c.involuntary));
        }
        self.payload += r.payload_bytes;
    }
}

/// What was last folded for one process.
#[derive(Default)]
struct Seen {
    stats: BTreeMap<OpClass, Stats>,
    syscalls: BTreeMap<u32, u64>,
    /// MSG_ZEROCOPY sends whose completions the process had not read by the last fold:
    /// counted in no series yet, they join the next fold's sends (completions arrive after
    /// their sends, often in a later fold).
    zc_unresolved: Tally,
}

/// What series are labelled by, beside the strategy: the command name (default) or the
/// cgroup, and, when asked, the container and the pod. Never a PID: the number of series
/// follows the number of commands, cgroups or containers, not of processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeriesLabels {
    /// `cgroup` (its path) instead of `comm`.
    pub by_cgroup: bool,
    /// `container` and `pod_uid` labels too, for processes in a container or a pod.
    pub container: bool,
}

/// The labels of one series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeriesKey {
    /// The command name, or the cgroup path with `SeriesLabels::by_cgroup`.
    pub name: String,
    pub strategy: String,
    pub container: Option<String>,
    pub pod_uid: Option<String>,
}

impl SeriesKey {
    /// A series of a command (or cgroup) and strategy, without container labels.
    pub fn named(name: &str, strategy: &str) -> Self {
        Self { name: name.into(), strategy: strategy.into(), container: None, pod_uid: None }
    }

    fn other() -> Self {
        Self::named(OTHER, OTHER)
    }
}

pub struct Accumulator {
    max_series: usize,
    labels: SeriesLabels,
    pub series: BTreeMap<SeriesKey, Totals>,
    seen: BTreeMap<u32, Seen>,
}

pub const OTHER: &str = "other";

impl Accumulator {
    pub fn new(max_series: usize) -> Self {
        Self::with_labels(max_series, SeriesLabels::default())
    }

    pub fn with_labels(max_series: usize, labels: SeriesLabels) -> Self {
        Self { max_series, labels, series: BTreeMap::new(), seen: BTreeMap::new() }
    }

    /// The series a process of `comm` in `cgroup` with `strategy` is counted in.
    fn series_for(&mut self, comm: &str, cgroup: Option<&CgroupInfo>, strategy: &str) -> &mut Totals {
        let name = match (self.labels.by_cgroup, cgroup) {
            (true, Some(c)) => c.path.clone().unwrap_or_else(|| "?".into()),
            (true, None) => "?".into(),
            (false, _) => comm.to_string(),
        };
        let (container, pod_uid) = match (self.labels.container, cgroup) {
            (true, Some(c)) => (c.container_id.clone(), c.pod_uid.clone()),
            _ => (None, None),
        };
        let key = SeriesKey { name, strategy: strategy.to_string(), container, pod_uid };
        let other = SeriesKey::other();
        let own = self.series.keys().filter(|k| **k != other).count();
        if !self.series.contains_key(&key) && own >= self.max_series {
            return self.series.entry(other).or_default();
        }
        self.series.entry(key).or_default()
    }

    /// Folds what each process did since the last fold into its series.
    pub fn fold(
        &mut self,
        stats: &BTreeMap<u32, BTreeMap<OpClass, Stats>>,
        syscalls: &BTreeMap<u32, BTreeMap<u32, u64>>,
        comms: &BTreeMap<u32, String>,
        cgroups: &BTreeMap<u32, CgroupInfo>,
        evidence: &Evidence,
        global: &GlobalEvents,
    ) {
        let empty = BTreeMap::new();
        for (&pid, by_class) in stats {
            let seen = self.seen.entry(pid).or_default();
            let mut delta = by_class.clone();
            for (class, s) in delta.iter_mut() {
                if let Some(before) = seen.stats.get(class) {
                    collect::sub_stats(s, before);
                }
            }
            let now_calls = syscalls.get(&pid).unwrap_or(&empty);
            let delta_calls: BTreeMap<u32, u64> = now_calls
                .iter()
                .map(|(&nr, &c)| (nr, c - seen.syscalls.get(&nr).copied().unwrap_or(0).min(c)))
                .filter(|&(_, c)| c > 0)
                .collect();
            seen.stats = by_class.clone();
            seen.syscalls = now_calls.clone();
            let unresolved = std::mem::take(&mut seen.zc_unresolved);
            let zc = ZeroCopyKind::MsgZerocopy as usize;
            if unresolved.calls > 0 {
                let send = &mut delta.entry(OpClass::Send).or_default().zero_copy[zc];
                send.bytes += unresolved.bytes;
                send.calls += unresolved.calls;
            }
            let sends = delta.get(&OpClass::Send).map_or(0, |s| s.zero_copy[zc].calls);
            let completed: u64 = delta.values().map(|s| s.zc_completed).sum();
            let strategy = infer_strategy(by_class);
            let comm = comms.get(&pid).cloned().unwrap_or_else(|| "?".into());
            let row = row::row(
                Input {
                    strategy: strategy.clone(),
                    role: Role::Process,
                    pid,
                    comm: comm.clone(),
                    path: None,
                    by_class: &delta,
                    syscalls: &delta_calls,
                    elapsed_s: None,
                    msg_zerocopy: None,
                },
                evidence,
                global,
            );
            if let Some(bytes) = row.zero_copy.by_kind.get("msg_zerocopy").and_then(|p| p.outcome_unknown_bytes) {
                let calls = sends - completed.min(sends);
                self.seen.entry(pid).or_default().zc_unresolved = Tally { bytes, calls };
            }
            self.series_for(&comm, cgroups.get(&pid), &strategy).add_row(&row);
        }
    }

    /// Forgets a process whose kernel entries were deleted (after its last fold).
    pub fn forget(&mut self, pid: u32) {
        self.seen.remove(&pid);
    }

    /// The OpenMetrics text of every series, the drops and the probes.
    pub fn encode(&self, probes: &[ProbeStatus], drops: &Drops, maps: &[MapOccupancy]) -> String {
        let mut registry = Registry::with_prefix("zc");
        let family = |registry: &mut Registry, name: &str, help: &str| {
            let f = Family::<Labels, Counter>::default();
            registry.register(name, help, f.clone());
            f
        };
        let cpu_bytes = family(
            &mut registry,
            "cpu_copy_bytes",
            "Bytes copied by the CPU, by direction and the kind of memory at the other end",
        );
        let cpu_calls = family(
            &mut registry,
            "cpu_copy_calls",
            "Copy operations (syscalls or receive copies) that moved those bytes",
        );
        let zero = family(&mut registry, "zero_copy_bytes", "Bytes moved by reference instead of copied, by mechanism");
        let dma = family(&mut registry, "dma_bytes", "Bytes moved by DMA (disk requests, NIC transmit, O_DIRECT)");
        let syscalls = family(&mut registry, "syscalls", "System calls");
        let switches =
            family(&mut registry, "mode_switches", "User/kernel mode switches (2 per syscall, 2 per user-mode fault)");
        let faults = family(&mut registry, "page_faults", "Page faults on user memory, by mode");
        let ctx = family(&mut registry, "context_switches", "Context switches, voluntary or involuntary");
        let payload = family(&mut registry, "payload_bytes", "Bytes delivered or received by data syscalls");
        let drop_family = family(&mut registry, "drops", "Events the kernel side could not count, by reason");
        let map_entries = Family::<Labels, Gauge>::default();
        registry.register("map_entries", "Entries in a per-process kernel map", map_entries.clone());
        let map_capacity = Family::<Labels, Gauge>::default();
        registry.register("map_max_entries", "Capacity of a per-process kernel map", map_capacity.clone());
        let probe_gauge = Family::<Labels, Gauge>::default();
        registry.register(
            "probe_attached",
            "1 if the probe is attached (label attach = its kind), 0 if unavailable",
            probe_gauge.clone(),
        );

        let l =
            |pairs: &[(&str, &str)]| -> Labels { pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() };
        let name_label = if self.labels.by_cgroup { "cgroup" } else { "comm" };
        for (key, t) in &self.series {
            let mut base = vec![(name_label, key.name.as_str()), ("strategy", key.strategy.as_str())];
            base.extend(key.container.as_deref().map(|c| ("container", c)));
            base.extend(key.pod_uid.as_deref().map(|p| ("pod_uid", p)));
            let with = |more: &[(&'static str, &str)]| -> Labels {
                base.iter().chain(more).map(|(k, v)| (k.to_string(), v.to_string())).collect()
            };
            // The evidence label is the evidence's text: a fixed vocabulary, so a bounded set of
            // values (no counts, no run-time text).
            // A series exists once its value does: none at zero for a process that moved
            // nothing of that kind, none at all for what no probe could count.
            for ((dir, end, evidence), (bytes, calls)) in t.cpu_copy.iter().filter(|(_, v)| v.1 > 0) {
                let labels = with(&[("direction", dir), ("end", end), ("evidence", &evidence.to_string())]);
                cpu_bytes.get_or_create(&labels).inc_by(*bytes);
                cpu_calls.get_or_create(&labels).inc_by(*calls);
            }
            for ((kind, evidence), bytes) in t.zero_copy.iter().filter(|(_, b)| **b > 0) {
                zero.get_or_create(&with(&[("kind", kind), ("evidence", &evidence.to_string())])).inc_by(*bytes);
            }
            for (kind, bytes) in t.dma.iter().filter(|(_, b)| **b > 0) {
                dma.get_or_create(&with(&[("kind", kind)])).inc_by(*bytes);
            }
            syscalls.get_or_create(&with(&[])).inc_by(t.syscalls);
            if let Some(n) = t.mode_switches {
                switches.get_or_create(&with(&[])).inc_by(n);
            }
            for (family, key, value) in [
                (&faults, ("mode", "user"), t.faults_user),
                (&faults, ("mode", "kernel"), t.faults_kernel),
                (&ctx, ("kind", "voluntary"), t.ctx_voluntary),
                (&ctx, ("kind", "involuntary"), t.ctx_involuntary),
            ] {
                if let Some(n) = value.filter(|&n| n > 0) {
                    family.get_or_create(&with(&[key])).inc_by(n);
                }
            }
            if t.payload > 0 {
                payload.get_or_create(&with(&[])).inc_by(t.payload);
            }
        }
        for (reason, n) in &drops.by_reason {
            drop_family.get_or_create(&l(&[("reason", reason)])).inc_by(*n);
        }
        for m in maps {
            map_entries.get_or_create(&l(&[("map", m.map)])).set(m.entries as i64);
            map_capacity.get_or_create(&l(&[("map", m.map)])).set(i64::from(m.max_entries));
        }
        for p in probes {
            let attached = i64::from(p.status == ProbeState::Attached);
            probe_gauge.get_or_create(&l(&[("probe", &p.name), ("attach", &p.attach)])).set(attached);
        }
        let mut out = String::new();
        encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use zc_trace_common::{End, Tally, ZeroCopyKind};

    use super::*;
    use crate::{
        attribute::sources::{PAGE_FAULT_KERNEL, PAGE_FAULT_USER, SCHED_SWITCH, SKB_COPY},
        probe::catalogue,
    };

    fn stats_with_read(bytes: u64, calls: u64) -> BTreeMap<OpClass, Stats> {
        let mut s = Stats { payload_in: bytes, ..Default::default() };
        s.to_user[End::PageCache as usize] = Tally { bytes, calls };
        [(OpClass::Read, s)].into_iter().collect()
    }

    /// A process that did a bit of everything: every direction and end, every zero-copy
    /// kind, and bytes a function probe would have missed (`derived`, as on tmpfs).
    fn everything(derived: u64) -> BTreeMap<OpClass, Stats> {
        let tally = Tally { bytes: 4096, calls: 1 };
        let mut classes: BTreeMap<OpClass, Stats> = BTreeMap::new();
        let mut with = |class: OpClass, f: &dyn Fn(&mut Stats)| f(classes.entry(class).or_default());
        with(OpClass::Read, &|s| {
            s.payload_in = 3 * 4096;
            s.to_user[End::PageCache as usize] = tally;
            s.to_user[End::Pipe as usize] = tally;
            s.to_user[End::Other as usize] = tally;
            s.to_user_pc_derived = derived;
        });
        with(OpClass::Recv, &|s| {
            s.to_user[End::Socket as usize] = tally;
            // The MSG_ZEROCOPY send's completion, read: zero-copy confirmed.
            s.zc_completed = 1;
        });
        with(OpClass::Write, &|s| {
            s.payload_out = 4 * 4096;
            for end in [End::PageCache, End::Socket, End::Pipe, End::Other] {
                s.from_user[end as usize] = tally;
            }
            s.from_user_pc_derived = derived;
        });
        with(OpClass::Splice, &|s| {
            s.kernel[End::PageCache as usize] = tally;
            s.zero_copy[ZeroCopyKind::PageRefs as usize] = tally;
            s.page_refs_derived = derived;
        });
        with(OpClass::Sendfile, &|s| {
            s.kernel[End::Socket as usize] = tally;
            s.zero_copy[ZeroCopyKind::SplicePages as usize] = tally;
        });
        with(OpClass::Send, &|s| s.zero_copy[ZeroCopyKind::MsgZerocopy as usize] = tally);
        with(OpClass::Vmsplice, &|s| s.zero_copy[ZeroCopyKind::Vmsplice as usize] = tally);
        with(OpClass::CopyFileRange, &|s| s.zero_copy[ZeroCopyKind::FileRange as usize] = tally);
        classes
    }

    /// Every `evidence="..."` label value in an OpenMetrics text.
    fn evidence_labels(text: &str) -> std::collections::BTreeSet<String> {
        text.split("evidence=\"").skip(1).map(|rest| rest[..rest.find('"').unwrap()].to_string()).collect()
    }

    #[test]
    fn evidence_labels_are_a_fixed_vocabulary() {
        let tracepoints = Evidence { tracepoints: vec![SKB_COPY], ..Default::default() };
        let mut fexit = tracepoints.clone();
        for f in catalogue::FUNCTIONS {
            fexit.functions.insert(f.function, evidence::Attach::Fexit);
        }
        let comms: BTreeMap<u32, String> = (1..=4).map(|pid| (pid, format!("p{pid}"))).collect();
        let mut labels = std::collections::BTreeSet::new();
        // Only a probe misses bytes (the kernel derives the rest for it): none on the
        // tracepoint tier. Different counts of them give the same labels.
        for (ev, missed) in [(&tracepoints, [0, 0]), (&fexit, [4096, 12288])] {
            let mut acc = Accumulator::new(10);
            let snap: BTreeMap<_, _> = [(1, everything(missed[0])), (2, everything(missed[1]))].into_iter().collect();
            acc.fold(&snap, &BTreeMap::new(), &comms, &BTreeMap::new(), ev, &GlobalEvents::default());
            labels.extend(evidence_labels(&acc.encode(&[], &Drops::new(Default::default()), &[])));
        }
        let expected = [
            "derived:copy_file_range(2) on a reflink-capable file system",
            "derived:read(2)",
            "derived:send(2) with MSG_ZEROCOPY",
            "derived:sendfile(2)",
            "derived:sendfile(2)/splice(2) to a socket whose route has NETIF_F_SG",
            "derived:splice(2)",
            "derived:splice(2)/sendfile(2)/tee(2) into a pipe",
            "derived:vmsplice(2)",
            "derived:write(2)",
            "fexit:filemap_read + derived:read(2) for the bytes it did not see (e.g. tmpfs)",
            "fexit:filemap_splice_read (from files) + derived (tee, sockets) + derived:splice(2) for the bytes it did not see (e.g. tmpfs)",
            "fexit:generic_perform_write + derived:write(2) for the bytes it did not see (e.g. tmpfs)",
            "fexit:iter_file_splice_write",
            "fexit:pipe_read",
            "fexit:pipe_write",
            "fexit:tcp_sendmsg_locked",
            "fexit:tcp_sendmsg_locked (TCP) + derived (other sockets)",
            "raw_tracepoint:skb:skb_copy_datagram_iovec",
        ];
        assert_eq!(labels.iter().map(String::as_str).collect::<Vec<_>>(), expected);
        // Every piece of every value is documented (docs/metrics.md).
        let doc = include_str!("../../../docs/metrics.md");
        for label in &labels {
            for piece in label.split(" + ").flat_map(|p| p.split(" - ")) {
                let piece = piece.strip_suffix(" for the bytes it did not see (e.g. tmpfs)").unwrap_or(piece);
                let documented = match piece.split_once(':') {
                    Some((attach, name)) if !attach.starts_with("derived") => {
                        let name = name.split(" (").next().unwrap();
                        doc.contains(attach) && doc.contains(name)
                    }
                    _ => doc.contains(piece),
                };
                assert!(documented, "{piece:?} (in {label:?}) is not in docs/metrics.md");
            }
        }
    }

    /// No series for what no probe could count (faults, context switches and mode switches
    /// without their tracepoints), and none at zero for what a process did not do.
    #[test]
    fn unknown_or_zero_figures_have_no_series() {
        let comms: BTreeMap<u32, String> = [(1, "cat".to_string())].into_iter().collect();
        let snap: BTreeMap<_, _> = [(1, stats_with_read(100, 1))].into_iter().collect();
        let families = |ev: &Evidence| {
            let mut acc = Accumulator::new(10);
            acc.fold(&snap, &BTreeMap::new(), &comms, &BTreeMap::new(), ev, &GlobalEvents::default());
            let text = acc.encode(&[], &Drops::new(Default::default()), &[]);
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| l[..l.find('{').unwrap()].to_string())
                .collect::<Vec<_>>()
        };
        let bare = families(&Evidence::default());
        for absent in
            ["zc_page_faults_total", "zc_context_switches_total", "zc_mode_switches_total", "zc_dma_bytes_total"]
        {
            assert!(!bare.iter().any(|f| f == absent), "{absent} in {bare:?}");
        }
        assert!(bare.iter().any(|f| f == "zc_syscalls_total"));
        assert!(bare.iter().any(|f| f == "zc_cpu_copy_bytes_total"));
        // With the tracepoints attached but nothing counted: still no zero-valued series,
        // except the mode switches, which every syscall makes.
        let ev = Evidence { tracepoints: vec![PAGE_FAULT_USER, PAGE_FAULT_KERNEL, SCHED_SWITCH], ..Default::default() };
        let attached = families(&ev);
        assert!(!attached.iter().any(|f| f == "zc_page_faults_total" || f == "zc_context_switches_total"));
        assert!(attached.iter().any(|f| f == "zc_mode_switches_total"));
    }

    /// Completions arrive after their sends, often in a later fold: sends not resolved in
    /// one fold are resolved by the next, and none is counted twice.
    #[test]
    fn zerocopy_sends_resolved_in_a_later_fold_are_counted_once() {
        let mut acc = Accumulator::new(10);
        let (ev, g) = (Evidence::default(), GlobalEvents::default());
        let comms: BTreeMap<u32, String> = [(1, "zc".to_string())].into_iter().collect();
        // (sends so far, completions read so far, of which copied)
        let snapshot = |sends: u64, completed: u64, copied: u64| {
            let mut send = Stats { payload_out: sends << 10, ..Default::default() };
            send.zero_copy[ZeroCopyKind::MsgZerocopy as usize] = Tally { bytes: sends << 10, calls: sends };
            let recv = Stats { zc_completed: completed, zc_copied: copied, ..Default::default() };
            let classes: BTreeMap<_, _> = [(OpClass::Send, send), (OpClass::Recv, recv)].into_iter().collect();
            [(1u32, classes)].into_iter().collect::<BTreeMap<_, _>>()
        };
        for (sends, completed, copied) in [(10, 4, 4), (10, 4, 4), (16, 16, 14)] {
            acc.fold(&snapshot(sends, completed, copied), &BTreeMap::new(), &comms, &BTreeMap::new(), &ev, &g);
        }
        let t = &acc.series[&SeriesKey::named("zc", "msg-zerocopy")];
        let copied: u64 =
            t.cpu_copy.iter().filter(|((d, e, _), _)| d == "kernel" && e == "socket").map(|(_, v)| v.0).sum();
        let zero: u64 = t.zero_copy.iter().filter(|((k, _), _)| k == "msg_zerocopy").map(|(_, v)| *v).sum();
        assert_eq!((copied, zero), (14 << 10, 2 << 10));
        assert_eq!(t.payload, 16 << 10);
    }

    #[test]
    fn folding_twice_adds_only_the_delta_and_series_are_bounded() {
        let mut acc = Accumulator::new(1);
        let ev = Evidence::default();
        let g = GlobalEvents::default();
        let comms: BTreeMap<u32, String> = [(1, "cat".to_string()), (2, "dd".to_string())].into_iter().collect();
        let snap1: BTreeMap<_, _> = [(1, stats_with_read(100, 1))].into_iter().collect();
        acc.fold(&snap1, &BTreeMap::new(), &comms, &BTreeMap::new(), &ev, &g);
        let snap2: BTreeMap<_, _> = [(1, stats_with_read(150, 2)), (2, stats_with_read(7, 1))].into_iter().collect();
        acc.fold(&snap2, &BTreeMap::new(), &comms, &BTreeMap::new(), &ev, &g);
        let cat = &acc.series[&SeriesKey::named("cat", "receive")];
        assert_eq!(
            cat.cpu_copy[&("to_user".into(), "page_cache".into(), evidence::Evidence::Derived(evidence::Rule::Read))],
            (150, 2)
        );
        // One series allowed: dd goes to other/other.
        let other = &acc.series[&SeriesKey::other()];
        assert_eq!(other.payload, 7);
        let text = acc.encode(
            &[ProbeStatus::attached("raw_syscalls:sys_enter", "raw_tracepoint")],
            &Drops::new(Default::default()),
            &[MapOccupancy { map: "COMMS", entries: 2, max_entries: 16384 }],
        );
        assert!(text.contains("zc_map_entries{map=\"COMMS\"} 2"), "{text}");
        assert!(text.contains("zc_map_max_entries{map=\"COMMS\"} 16384"), "{text}");
        assert!(text.contains("zc_cpu_copy_bytes_total{comm=\"cat\",strategy=\"receive\",direction=\"to_user\",end=\"page_cache\",evidence=\"derived:read(2)\"} 150"), "{text}");
        assert!(text.contains("zc_probe_attached{probe=\"raw_syscalls:sys_enter\",attach=\"raw_tracepoint\"} 1"));
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
