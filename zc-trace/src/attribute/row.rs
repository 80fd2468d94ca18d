//! Turns the kernel's counters (per process and op class) into a report row: CPU copies by
//! direction, zero-copy moves, DMA, mode and context switches, each figure labelled with the
//! probe it came from or the syscall semantics it was derived from. A figure no attached
//! probe could see is `None` (JSON `null`), never 0.
use std::collections::BTreeMap;

use zc_trace_common::{End, OpClass, Stats, SyscallKey, Tally, ZeroCopyKind, delivers};

use crate::{
    attribute::{
        corrections::apply_zerocopy_completions,
        dma::dma,
        sources::{
            IO_URING_COMPLETE, NET_XMIT, PAGE_FAULT_KERNEL, PAGE_FAULT_USER, SCHED_SWITCH, Source, from_user_source,
            kernel_source, to_user_source, zero_copy_source,
        },
        syscalls::{class_of, syscall_mode_switches},
    },
    kernel::syscall_names,
    model::{
        evidence::{CompletionsFrom, Evidence, Rule},
        report::GlobalEvents,
        row::{
            ClassSummary, ContextSwitches, CopyCell, CpuCopy, ModeSwitchDetail, Part, Role, Row, ZeroCopy,
            ZerocopyCompletions,
        },
        run,
    },
    probe::collect,
};

/// Everything needed to build one row.
pub struct Input<'a> {
    pub strategy: String,
    pub role: Role,
    pub pid: u32,
    pub comm: String,
    pub path: Option<String>,
    pub by_class: &'a BTreeMap<OpClass, Stats>,
    /// The process's syscall counts, by number or by bucket (`SyscallKey::bucket`).
    pub syscalls: &'a BTreeMap<u32, u64>,
    /// Lab runs: how long the copy loop took.
    pub elapsed_s: Option<f64>,
    /// Lab msg-zerocopy runs: the completions the workload read from the error queue.
    pub msg_zerocopy: Option<ZerocopyCompletions>,
}

pub fn row(input: Input<'_>, evidence: &run::Evidence, global: &GlobalEvents) -> Row {
    let mut total = Stats::default();
    for s in input.by_class.values() {
        collect::add_stats(&mut total, s);
    }
    // Syscalls are counted once, per number, at sys_enter; per-class figures follow from the
    // architecture's table.
    let syscalls: u64 = input.syscalls.values().sum();
    let syscall_mode_switches = syscall_mode_switches(input.syscalls);
    let mut class_syscalls: BTreeMap<OpClass, u64> = BTreeMap::new();
    for (&key, &calls) in input.syscalls {
        *class_syscalls.entry(class_of(key)).or_default() += calls;
    }
    let has = |tp: &str| evidence.tracepoint(tp);
    let faults_user = (has(PAGE_FAULT_USER) || evidence.page_faults_perf).then_some(total.user_faults);
    let faults_kernel = (has(PAGE_FAULT_KERNEL) || evidence.page_faults_perf).then_some(total.kernel_faults);
    let page_faults = match (faults_user, faults_kernel) {
        (None, None) => None,
        (u, k) => Some(u.unwrap_or(0) + k.unwrap_or(0)),
    };
    let fault_switches = faults_user.map(|f| 2 * f);
    // io_uring requests' copies are derived at their completion (io_uring_complete). Where
    // that cannot be attached (5.10's passes no request), the derived ends of a process that
    // used io_uring miss those copies: they are not measured, not 0. Observed ends stand.
    let uring_unseen = class_syscalls.get(&OpClass::IoUring).is_some_and(|&n| n > 0) && !has(IO_URING_COMPLETE);
    let seen = |source: Option<Source>| match source {
        Some(Source::Derived) if uring_unseen => Some(Source::Unmeasured),
        other => other,
    };
    let mut cpu_copy = CpuCopy {
        to_user: copy_cell(input.by_class, |s| &s.to_user, |end| seen(to_user_source(end, evidence))),
        from_user: copy_cell(input.by_class, |s| &s.from_user, |end| seen(from_user_source(end, evidence))),
        kernel: copy_cell(input.by_class, |s| &s.kernel, |end| seen(kernel_source(end, evidence))),
    };
    // Where a function probe watches a path but some bytes did not pass through it (a
    // tmpfs read never calls filemap_read), those bytes were derived: say so, and how many
    // in a field of their own (a count in the evidence would make every label value unique).
    for (cell, derived, rule) in [
        (&mut cpu_copy.to_user, total.to_user_pc_derived, Rule::Read),
        (&mut cpu_copy.from_user, total.from_user_pc_derived, Rule::Write),
    ] {
        if derived > 0
            && let Some(part) = cell.by_end.get_mut("page_cache")
        {
            part.evidence.push(Evidence::DerivedUnseen(rule));
            part.derived_bytes = Some(derived);
        }
    }
    let mut zero_copy = zero_copy(&total, evidence);
    if total.page_refs_derived > 0
        && let Some(part) = zero_copy.by_kind.get_mut("page_refs")
    {
        part.evidence.push(Evidence::DerivedUnseen(Rule::Splice));
        part.derived_bytes = Some(total.page_refs_derived);
    }
    // The workload's own reading of its error queue (lab), else what the process's
    // recvmsg(MSG_ERRQUEUE) calls returned, read at their exit.
    let (completions, from) = match input.msg_zerocopy {
        Some(zc) => (zc, CompletionsFrom::Workload),
        None => {
            (ZerocopyCompletions { completed: total.zc_completed, copied: total.zc_copied }, CompletionsFrom::SysExit)
        }
    };
    apply_zerocopy_completions(&mut cpu_copy, &mut zero_copy, completions, from);
    let payload_bytes = match input.role {
        Role::Sender => total.payload_out,
        Role::Receiver => total.payload_in,
        Role::Process | Role::Thread | Role::Cgroup | Role::Container => total.payload_out.max(total.payload_in),
    };
    let copied = cpu_copy.to_user.bytes + cpu_copy.from_user.bytes + cpu_copy.kernel.bytes;
    let unmeasured: Vec<&str> = [&cpu_copy.to_user, &cpu_copy.from_user, &cpu_copy.kernel]
        .iter()
        .flat_map(|c| c.unmeasured_ends.iter().copied())
        .collect();
    Row {
        strategy: input.strategy,
        role: input.role.name().into(),
        pid: input.pid,
        comm: input.comm,
        path: input.path,
        payload_bytes,
        syscalls,
        mode_switches: fault_switches.map(|f| syscall_mode_switches + f),
        mode_switch_detail: ModeSwitchDetail { syscalls: syscall_mode_switches, page_faults: fault_switches },
        page_faults,
        page_fault_detail: page_faults.map(|_| {
            let mut d = BTreeMap::new();
            if let Some(u) = faults_user {
                d.insert("user", u);
            }
            if let Some(k) = faults_kernel {
                d.insert("kernel", k);
            }
            d
        }),
        context_switches: has(SCHED_SWITCH)
            .then_some(ContextSwitches { voluntary: total.ctx_voluntary, involuntary: total.ctx_involuntary }),
        dma: dma(&total, evidence, global),
        unclassified_bytes: total.unclassified.bytes,
        // Unknown when a direction has an end no probe could count.
        copies_per_payload_byte: (payload_bytes > 0 && unmeasured.is_empty())
            .then(|| copied as f64 / payload_bytes as f64),
        cpu_copy,
        zero_copy,
        by_class: OpClass::ALL
            .iter()
            .filter_map(|c| {
                let s = input.by_class.get(c).copied().unwrap_or_default();
                let calls = class_syscalls.get(c).copied().unwrap_or(0);
                (calls > 0 || s.payload_out > 0 || s.payload_in > 0).then(|| {
                    (c.name(), ClassSummary { syscalls: calls, payload_out: s.payload_out, payload_in: s.payload_in })
                })
            })
            .collect(),
        // By name when counted by number (buckets have no name: serve shows no such list).
        syscall_counts: input
            .syscalls
            .iter()
            .filter(|&(&key, _)| key & SyscallKey::BUCKET == 0)
            .map(|(&nr, &calls)| (syscall_names::name(nr), calls))
            .collect(),
        elapsed_s: input.elapsed_s,
        throughput_bytes_per_s: input.elapsed_s.filter(|&s| s > 0.0).map(|s| payload_bytes as f64 / s),
        msg_zerocopy_completions: (total.zero_copy[ZeroCopyKind::MsgZerocopy as usize].calls > 0
            || completions.completed > 0)
            .then_some(completions),
        flows: Vec::new(),
        cgroup: None,
        pid_in_namespace: None,
    }
}

/// The rule a figure is derived by, by the class of the syscall it was derived from.
fn derived_rule(class: OpClass) -> Rule {
    match class {
        OpClass::Read => Rule::Read,
        OpClass::Write => Rule::Write,
        OpClass::Send => Rule::Send,
        OpClass::Recv => Rule::Recv,
        OpClass::Sendfile => Rule::Sendfile,
        OpClass::Splice => Rule::Splice,
        OpClass::Vmsplice => Rule::Vmsplice,
        OpClass::Tee => Rule::Tee,
        OpClass::CopyFileRange => Rule::CopyFileRange,
        OpClass::IoUring => Rule::IoUringComplete,
        OpClass::Mmap | OpClass::Munmap | OpClass::None | OpClass::Other => Rule::Unnamed,
    }
}

fn copy_cell(
    by_class: &BTreeMap<OpClass, Stats>,
    tallies: impl Fn(&Stats) -> &[Tally; End::COUNT],
    source: impl Fn(End) -> Option<Source>,
) -> CopyCell {
    let mut by_end = BTreeMap::new();
    let mut sources: Vec<Evidence> = Vec::new();
    let mut unmeasured_ends = Vec::new();
    let (mut bytes, mut calls) = (0, 0);
    for end in End::ALL {
        // The probe that observes this end, or `None` where a rule derives it.
        let observed = match source(end) {
            None => continue,
            Some(Source::Unmeasured) => {
                unmeasured_ends.push(end.name());
                continue;
            }
            Some(Source::Observed(label)) => Some(label),
            Some(Source::Derived) => None,
        };
        let (mut b, mut c, mut derived_from) = (0, 0, Vec::new());
        for (class, stats) in by_class {
            let t = tallies(stats)[end as usize];
            if t.calls > 0 || t.bytes > 0 {
                b += t.bytes;
                c += t.calls;
                derived_from.push(Evidence::Derived(derived_rule(*class)));
            }
        }
        let label = match observed {
            Some(label) => label,
            None if derived_from.is_empty() => Evidence::Derived(Rule::Unnamed),
            None => Evidence::mixed(derived_from),
        };
        // A probe that could have counted here is named even when it counted nothing; a
        // derivation with nothing to derive is not.
        if !sources.contains(&label) && (c > 0 || label != Evidence::Derived(Rule::Unnamed)) {
            sources.push(label.clone());
        }
        if c > 0 || b > 0 {
            by_end.insert(end.name(), Part::new(b, c, label));
        }
        bytes += b;
        calls += c;
    }
    CopyCell { bytes, calls, evidence: Evidence::mixed(sources), by_end, unmeasured_ends }
}

fn zero_copy(total: &Stats, ev: &run::Evidence) -> ZeroCopy {
    let mut by_kind = BTreeMap::new();
    let mut bytes = 0;
    let mut sources = Vec::new();
    for kind in ZeroCopyKind::ALL {
        let t = total.zero_copy[kind as usize];
        let src = zero_copy_source(kind, ev);
        if delivers(kind) {
            bytes += t.bytes;
            if t.calls > 0 && !sources.contains(&src) {
                sources.push(src.clone());
            }
        }
        if t.calls > 0 {
            by_kind.insert(kind.name(), Part::new(t.bytes, t.calls, src));
        }
    }
    let spliced_to_network_bytes = (total.spliced_to_network > 0).then_some(total.spliced_to_network);
    let transmit_copied = ev.tracepoint(NET_XMIT).then_some((total.transmit_copied.bytes, total.transmit_copied.calls));
    ZeroCopy { bytes, evidence: Evidence::mixed(sources), by_kind, spliced_to_network_bytes, transmit_copied }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        attribute::{
            sources::{BLOCK_RQ_ISSUE, NET_XMIT, SKB_COPY},
            strategy::infer_strategy,
        },
        model::evidence::{Attach, DmaNote},
        probe::catalogue,
    };

    fn evidence_host() -> run::Evidence {
        run::Evidence {
            tracepoints: vec![SKB_COPY, PAGE_FAULT_USER, PAGE_FAULT_KERNEL, SCHED_SWITCH, BLOCK_RQ_ISSUE, NET_XMIT],
            dma: vec!["dma_map_sg"],
            ..Default::default()
        }
    }

    /// The host's tracepoints with every function probe attached by fexit.
    fn evidence_fentry() -> run::Evidence {
        let mut ev = evidence_host();
        for f in catalogue::FUNCTIONS {
            ev.functions.insert(f.function, Attach::Fexit);
        }
        ev
    }

    fn read_write_sender() -> BTreeMap<OpClass, Stats> {
        let mut read = Stats { payload_in: 8 << 20, ..Default::default() };
        read.to_user[End::PageCache as usize] = Tally { bytes: 8 << 20, calls: 128 };
        let mut write = Stats { payload_out: 8 << 20, ..Default::default() };
        write.from_user[End::Socket as usize] = Tally { bytes: 8 << 20, calls: 128 };
        [(OpClass::Read, read), (OpClass::Write, write)].into_iter().collect()
    }

    fn input<'a>(by_class: &'a BTreeMap<OpClass, Stats>, role: Role) -> Input<'a> {
        static SYSCALLS: std::sync::LazyLock<BTreeMap<u32, u64>> =
            std::sync::LazyLock::new(|| [(0, 129), (1, 128)].into_iter().collect());
        Input {
            strategy: "read-write".into(),
            role,
            pid: 1,
            comm: "zc".into(),
            path: None,
            by_class,
            syscalls: &SYSCALLS,
            elapsed_s: Some(0.5),
            msg_zerocopy: None,
        }
    }

    #[test]
    fn read_write_copies_twice_with_derived_evidence_on_a_tracepoint_kernel() {
        let classes = read_write_sender();
        let r = row(input(&classes, Role::Sender), &evidence_host(), &GlobalEvents::default());
        assert_eq!(r.payload_bytes, 8 << 20);
        assert_eq!(r.cpu_copy.to_user.bytes, 8 << 20);
        assert_eq!(r.cpu_copy.from_user.bytes, 8 << 20);
        assert_eq!(r.cpu_copy.to_user.by_end["page_cache"].evidence, Evidence::Derived(Rule::Read));
        assert_eq!(r.cpu_copy.from_user.by_end["socket"].evidence, Evidence::Derived(Rule::Write));
        // The skb tracepoint could have counted socket copies: it is named though it saw none.
        assert_eq!(
            r.cpu_copy.to_user.evidence.to_string(),
            "derived:read(2) + raw_tracepoint:skb:skb_copy_datagram_iovec"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["cpu_copy"]["to_user"]["by_end"]["page_cache"]["evidence"], "derived:read(2)");
        assert!(json["cpu_copy"]["to_user"]["by_end"]["page_cache"].get("derived_bytes").is_none());
        assert_eq!(r.copies_per_payload_byte, Some(2.0));
        assert_eq!(r.syscalls, 257);
        assert_eq!(r.by_class["read"].syscalls, 129);
        assert_eq!(r.syscall_counts["read"], 129);
        assert_eq!(r.mode_switches, Some(2 * 257));
        assert_eq!(r.throughput_bytes_per_s, Some((16 << 20) as f64));
    }

    #[test]
    fn function_probes_replace_derived_labels() {
        let mut ev = evidence_host();
        ev.functions.insert("filemap_read", Attach::Fexit);
        let classes = read_write_sender();
        let r = row(input(&classes, Role::Sender), &ev, &GlobalEvents::default());
        assert_eq!(r.cpu_copy.to_user.by_end["page_cache"].evidence, Evidence::observed("filemap_read", Attach::Fexit));
        assert_eq!(r.cpu_copy.to_user.by_end["page_cache"].evidence.to_string(), "fexit:filemap_read");
        let r = row(input(&classes, Role::Sender), &evidence_fentry(), &GlobalEvents::default());
        assert_eq!(
            r.cpu_copy.from_user.by_end["socket"].evidence.to_string(),
            "fexit:tcp_sendmsg_locked (TCP) + derived (other sockets)"
        );
    }

    #[test]
    fn bytes_a_probe_missed_are_counted_in_a_field_not_in_the_evidence() {
        let mut classes = read_write_sender();
        classes.get_mut(&OpClass::Read).unwrap().to_user_pc_derived = 4096;
        let r = row(input(&classes, Role::Sender), &evidence_fentry(), &GlobalEvents::default());
        let part = &r.cpu_copy.to_user.by_end["page_cache"];
        assert_eq!(part.derived_bytes, Some(4096));
        assert_eq!(
            part.evidence,
            Evidence::observed("filemap_read", Attach::Fexit).plus(Evidence::DerivedUnseen(Rule::Read))
        );
        assert_eq!(
            part.evidence.to_string(),
            "fexit:filemap_read + derived:read(2) for the bytes it did not see (e.g. tmpfs)"
        );
        let json = serde_json::to_value(part).unwrap();
        assert_eq!(json["derived_bytes"], 4096);
    }

    #[test]
    fn unobservable_figures_are_null_not_zero() {
        let classes = read_write_sender();
        let ev = run::Evidence::default(); // no optional tracepoint attached
        let r = row(input(&classes, Role::Sender), &ev, &GlobalEvents::default());
        assert_eq!(r.page_faults, None);
        assert_eq!(r.context_switches, None);
        assert_eq!(r.dma.disk_read_bytes, None);
        assert_eq!(r.dma.dma_api_maps, None);
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["page_faults"].is_null());
        assert!(json["dma"]["net_tx_paged_bytes"].is_null());
    }

    #[test]
    fn dma_api_silence_is_reported_not_zeroed() {
        let classes = read_write_sender();
        let r = row(input(&classes, Role::Sender), &evidence_host(), &GlobalEvents::default());
        assert_eq!(r.dma.dma_api_maps, None);
        assert!(r.dma.evidence.0.contains(&DmaNote::DmaApiSilent(vec!["dma_map_sg"])));
        assert!(
            r.dma
                .evidence
                .to_string()
                .contains("no DMA-API mappings observed for these devices (dma:dma_map_sg attached")
        );
        let busy = GlobalEvents { dma_maps_system: 5, ..Default::default() };
        let r = row(input(&classes, Role::Sender), &evidence_host(), &busy);
        assert_eq!(r.dma.dma_api_maps, Some(0));
        assert_eq!(r.dma.dma_layout_error, None);
        // Arguments not in BTF: the evidence says bytes were not read, the field says why.
        let mut ev = evidence_host();
        ev.dma_layout_error = Some("struct scatterlist not in BTF".into());
        let r = row(input(&classes, Role::Sender), &ev, &busy);
        assert_eq!(r.dma.dma_map_bytes_to_device, None);
        assert_eq!(r.dma.dma_layout_error.as_deref(), Some("struct scatterlist not in BTF"));
        assert_eq!(r.dma.evidence.0.last(), Some(&DmaNote::DmaApiBytesNotRead));
        assert!(!r.dma.evidence.to_string().contains("scatterlist"));
    }

    #[test]
    fn zero_copy_counts_delivery_once_not_the_pipe_leg() {
        let mut splice = Stats { payload_out: 8 << 20, into_pipe: 8 << 20, ..Default::default() };
        splice.zero_copy[ZeroCopyKind::PageRefs as usize] = Tally { bytes: 8 << 20, calls: 128 };
        splice.zero_copy[ZeroCopyKind::SplicePages as usize] = Tally { bytes: 8 << 20, calls: 128 };
        let classes: BTreeMap<_, _> = [(OpClass::Splice, splice)].into_iter().collect();
        let r = row(input(&classes, Role::Sender), &evidence_host(), &GlobalEvents::default());
        assert_eq!(r.zero_copy.bytes, 8 << 20);
        assert_eq!(r.zero_copy.by_kind["page_refs"].bytes, 8 << 20);
        assert_eq!(r.copies_per_payload_byte, Some(0.0));
        assert_eq!(infer_strategy(&classes), "splice");
    }

    #[test]
    fn zerocopy_sends_the_kernel_copied_become_kernel_copies() {
        let mut send = Stats { payload_out: 8 << 20, ..Default::default() };
        send.zero_copy[ZeroCopyKind::MsgZerocopy as usize] = Tally { bytes: 8 << 20, calls: 128 };
        let classes: BTreeMap<_, _> = [(OpClass::Send, send)].into_iter().collect();
        let mut inp = input(&classes, Role::Sender);
        inp.msg_zerocopy = Some(ZerocopyCompletions { completed: 128, copied: 128 });
        let r = row(inp, &evidence_host(), &GlobalEvents::default());
        assert_eq!(r.zero_copy.bytes, 0);
        assert_eq!(r.cpu_copy.kernel.bytes, 8 << 20);
        let copied = Evidence::ZerocopyCopied(CompletionsFrom::Workload);
        assert_eq!(r.cpu_copy.kernel.by_end["socket"].evidence, copied);
        assert_eq!(r.cpu_copy.kernel.evidence, copied);
        let moved = Evidence::ZerocopyCopiedMoved(CompletionsFrom::Workload);
        assert_eq!(r.zero_copy.evidence, Evidence::Derived(Rule::MsgZerocopy).plus(moved));
        assert_eq!(r.copies_per_payload_byte, Some(1.0));
    }

    /// What no attached probe could count is unknown, never 0: mode switches without the
    /// user-mode page-fault tracepoint (the faults' share is unknown), socket -> user copies
    /// without skb:skb_copy_datagram_iovec, faults and context switches without theirs.
    #[test]
    fn unknown_is_null() {
        let mut recv = Stats { payload_in: 1 << 20, ..Default::default() };
        recv.to_user[End::Socket as usize] = Tally { bytes: 1 << 20, calls: 16 };
        let classes: BTreeMap<_, _> = [(OpClass::Recv, recv)].into_iter().collect();
        let mut inp = input(&classes, Role::Process);
        let calls: BTreeMap<u32, u64> = [(45, 16)].into_iter().collect(); // recvfrom
        inp.syscalls = &calls;
        let bare = run::Evidence::default();
        let r = row(inp, &bare, &GlobalEvents::default());
        assert_eq!(r.mode_switches, None);
        assert_eq!(r.mode_switch_detail.syscalls, 32, "the syscalls' share is still known");
        assert_eq!((r.page_faults, r.context_switches), (None, None));
        assert_eq!(r.cpu_copy.to_user.unmeasured_ends, vec!["socket"]);
        assert!(!r.cpu_copy.to_user.by_end.contains_key("socket"));
        assert_eq!(r.copies_per_payload_byte, None);
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["mode_switches"].is_null() && json["page_faults"].is_null());
        assert!(json["context_switches"].is_null());
        assert_eq!(json["cpu_copy"]["to_user"]["unmeasured_ends"], serde_json::json!(["socket"]));
        // With the probes attached, the same figures are numbers.
        let mut inp = input(&classes, Role::Process);
        inp.syscalls = &calls;
        let r = row(inp, &evidence_host(), &GlobalEvents::default());
        assert_eq!(r.mode_switches, Some(32));
        assert_eq!(r.cpu_copy.to_user.by_end["socket"].bytes, 1 << 20);
        assert!(r.cpu_copy.to_user.unmeasured_ends.is_empty());
        assert!(serde_json::to_value(&r).unwrap()["cpu_copy"]["to_user"].get("unmeasured_ends").is_none());
    }

    /// A process that used io_uring on a kernel whose io_uring_complete could not be
    /// attached: the ends only a derivation covers are not measured; an end a function
    /// probe observes still is.
    #[test]
    fn io_uring_copies_without_their_completions_are_not_measured() {
        let mut read = Stats { payload_in: 1 << 20, ..Default::default() };
        read.to_user[End::PageCache as usize] = Tally { bytes: 1 << 20, calls: 16 };
        let classes: BTreeMap<_, _> = [(OpClass::Read, read)].into_iter().collect();
        let nr = |name: &str| crate::kernel::syscall_names::number(name).unwrap();
        let calls: BTreeMap<u32, u64> = [(nr("read"), 16), (nr("io_uring_enter"), 4)].into_iter().collect();
        let mut inp = input(&classes, Role::Process);
        inp.syscalls = &calls;
        let r = row(inp, &evidence_host(), &GlobalEvents::default());
        // Every derived end: an io_uring request may have copied at any of them.
        assert!(r.cpu_copy.to_user.unmeasured_ends.contains(&"page_cache"));
        assert!(!r.cpu_copy.to_user.by_end.contains_key("page_cache"));
        assert!(r.cpu_copy.from_user.unmeasured_ends.contains(&"socket"));
        assert_eq!(r.copies_per_payload_byte, None);
        // With io_uring_complete attached, the derivation covers them.
        let mut with_uring = evidence_host();
        with_uring.tracepoints.push(IO_URING_COMPLETE);
        let mut inp = input(&classes, Role::Process);
        inp.syscalls = &calls;
        let r = row(inp, &with_uring, &GlobalEvents::default());
        assert!(r.cpu_copy.to_user.unmeasured_ends.is_empty());
        assert_eq!(r.cpu_copy.to_user.by_end["page_cache"].bytes, 1 << 20);
        // Observed by fexit, the page-cache copies are measured either way.
        let mut inp = input(&classes, Role::Process);
        inp.syscalls = &calls;
        let r = row(inp, &evidence_fentry(), &GlobalEvents::default());
        assert!(!r.cpu_copy.to_user.unmeasured_ends.contains(&"page_cache"));
        assert_eq!(r.cpu_copy.to_user.by_end["page_cache"].bytes, 1 << 20);
    }

    /// Traced processes: what their own recvmsg(MSG_ERRQUEUE) returned. Sends no completion
    /// has told about are not zero-copy: outcome unknown.
    #[test]
    fn zerocopy_sends_are_split_by_the_completions_the_process_read() {
        let mut send = Stats { payload_out: 100 << 10, ..Default::default() };
        send.zero_copy[ZeroCopyKind::MsgZerocopy as usize] = Tally { bytes: 100 << 10, calls: 100 };
        let recv = Stats { zc_completed: 60, zc_copied: 20, ..Default::default() };
        let classes: BTreeMap<_, _> = [(OpClass::Send, send), (OpClass::Recv, recv)].into_iter().collect();
        let r = row(input(&classes, Role::Sender), &evidence_host(), &GlobalEvents::default());
        let part = &r.zero_copy.by_kind["msg_zerocopy"];
        assert_eq!((part.bytes, part.calls), (40 << 10, 40), "confirmed zero-copy");
        assert_eq!(part.outcome_unknown_bytes, Some(40 << 10));
        assert_eq!(r.zero_copy.bytes, 40 << 10);
        assert_eq!((r.cpu_copy.kernel.bytes, r.cpu_copy.kernel.calls), (20 << 10, 20));
        assert_eq!(r.cpu_copy.kernel.evidence, Evidence::ZerocopyCopied(CompletionsFrom::SysExit));
        assert_eq!(r.msg_zerocopy_completions, Some(ZerocopyCompletions { completed: 60, copied: 20 }));
        // None read: all of it unknown, nothing zero-copy, nothing copied.
        let classes: BTreeMap<_, _> = [(OpClass::Send, send)].into_iter().collect();
        let r = row(input(&classes, Role::Sender), &evidence_host(), &GlobalEvents::default());
        assert_eq!(r.zero_copy.bytes, 0);
        assert_eq!(r.zero_copy.by_kind["msg_zerocopy"].outcome_unknown_bytes, Some(100 << 10));
        assert_eq!(r.cpu_copy.kernel.bytes, 0);
        // Completions of sends before tracing started are capped at the sends seen.
        let recv = Stats { zc_completed: 500, zc_copied: 500, ..Default::default() };
        let classes: BTreeMap<_, _> = [(OpClass::Send, send), (OpClass::Recv, recv)].into_iter().collect();
        let r = row(input(&classes, Role::Sender), &evidence_host(), &GlobalEvents::default());
        assert_eq!((r.cpu_copy.kernel.bytes, r.zero_copy.bytes), (100 << 10, 0));
    }
}
