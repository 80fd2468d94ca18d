//! Turns the kernel's counters (per process and op class) into report rows: CPU copies by
//! direction, zero-copy moves, DMA, mode and context switches, each figure labelled with the
//! probe it came from or the syscall semantics it was derived from. A figure no attached
//! probe could see is `None` (JSON `null`), never 0.
use std::collections::BTreeMap;

use serde::Serialize;
use zc_trace_common::{End, OpClass, Stats, Tally, ZeroCopyKind, delivers};

use crate::{
    collect::GlobalEvents,
    evidence::{Attach, Covers, DmaEvidence, DmaNote, Evidence, Probe, Rule},
    report, session,
    workloads::ZerocopyCompletions,
};

pub const SKB_COPY: &str = "skb:skb_copy_datagram_iovec";
pub const PAGE_FAULT_USER: &str = "exceptions:page_fault_user";
pub const PAGE_FAULT_KERNEL: &str = "exceptions:page_fault_kernel";
pub const SCHED_SWITCH: &str = "sched:sched_switch";
pub const BLOCK_RQ_ISSUE: &str = "block:block_rq_issue";
pub const NET_XMIT: &str = "net:net_dev_start_xmit";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Part {
    pub bytes: u64,
    pub calls: u64,
    pub evidence: Evidence,
    /// Of `bytes`, those derived because the observing probe did not see them (a tmpfs read
    /// never calls filemap_read); evidence then ends in `... for the bytes it did not see`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub derived_bytes: Option<u64>,
    /// Bytes taken out of this part because they were copied at transmit (now in
    /// `cpu_copy.kernel`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copied_at_transmit_bytes: Option<u64>,
}

impl Part {
    fn new(bytes: u64, calls: u64, evidence: Evidence) -> Self {
        Self { bytes, calls, evidence, derived_bytes: None, copied_at_transmit_bytes: None }
    }
}

/// One direction of CPU copies: totals, the sources that cover it, and a breakdown by the
/// kind of memory at the other end.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CopyCell {
    pub bytes: u64,
    pub calls: u64,
    pub evidence: Evidence,
    pub by_end: BTreeMap<&'static str, Part>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CpuCopy {
    pub to_user: CopyCell,
    pub from_user: CopyCell,
    pub kernel: CopyCell,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ZeroCopy {
    /// Bytes that reached their destination without a CPU copy (moves into intermediate
    /// pipes are in `by_kind` only, so a splice strategy is not counted twice).
    pub bytes: u64,
    pub evidence: Evidence,
    pub by_kind: BTreeMap<&'static str, Part>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Dma {
    pub disk_read_bytes: Option<u64>,
    pub disk_write_bytes: Option<u64>,
    pub net_tx_linear_bytes: Option<u64>,
    pub net_tx_paged_bytes: Option<u64>,
    pub net_tx_frags: Option<u64>,
    pub net_tx_packets: Option<u64>,
    pub dma_api_maps: Option<u64>,
    pub direct_io_read_bytes: u64,
    pub direct_io_write_bytes: u64,
    pub evidence: DmaEvidence,
    /// Why the DMA-API mappings are counted without their bytes and direction, when they are
    /// (the tracepoints' arguments or `struct scatterlist` not found in BTF).
    pub dma_layout_error: Option<String>,
    /// Bytes of the DMA-API mappings made in this process's context, by direction
    /// (`dma:*` size and `dir`; `dma_map_sg` lists summed). `None` when not observable: no
    /// `dma:*` tracepoint, none fired system-wide, or their arguments unknown.
    pub dma_map_bytes_to_device: Option<u64>,
    pub dma_map_bytes_from_device: Option<u64>,
    pub dma_map_bytes_bidirectional: Option<u64>,
    /// Scatter-gather segments of those mappings (1 per single-buffer mapping).
    pub dma_map_segments: Option<u64>,
    /// How the DMA-API figures are attributed: `process context` for the fields above;
    /// `system_by_device` covers every mapping while the row's process was traced.
    pub dma_attribution: Option<String>,
    /// Every device's DMA-API mappings during the trace (the lab's time window, system-wide,
    /// whoever's context they were made in), by device; `None` when not collected or not
    /// observable.
    pub system_by_device: Option<BTreeMap<String, DeviceDma>>,
}

/// One device's DMA-API mappings during a trace, system-wide.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeviceDma {
    /// The bound driver (`e1000`, `nvme`) and the device's name (`0000:00:06.0`).
    pub driver: String,
    pub device: String,
    pub to_device_bytes: u64,
    pub to_device_maps: u64,
    pub from_device_bytes: u64,
    pub from_device_maps: u64,
    pub bidirectional_bytes: u64,
    pub segments: u64,
    /// The part of all directions' bytes mapped in a traced process's context.
    pub traced_context_bytes: u64,
    /// `dma_map_sg` lists too long to walk whole: their bytes are undercounted.
    pub sg_truncated: u64,
    /// Mappings that were whole scatterlists (`dma_map_sg`); the rest were single buffers
    /// (`dma_map_page`/`dma_map_phys`).
    pub sg_lists: u64,
}

impl DeviceDma {
    /// The report's key for a device: `driver device`, e.g. `e1000 0000:00:06.0`.
    pub fn key(&self) -> String {
        if self.driver.is_empty() { self.device.clone() } else { format!("{} {}", self.driver, self.device) }
    }
}

impl From<&zc_trace_common::DmaDevice> for DeviceDma {
    fn from(d: &zc_trace_common::DmaDevice) -> Self {
        let text = |b: &[u8]| String::from_utf8_lossy(&b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]).into_owned();
        DeviceDma {
            driver: text(&d.driver),
            device: text(&d.name),
            to_device_bytes: d.to_device.bytes,
            to_device_maps: d.to_device.calls,
            from_device_bytes: d.from_device.bytes,
            from_device_maps: d.from_device.calls,
            bidirectional_bytes: d.bidirectional.bytes,
            segments: d.segments,
            traced_context_bytes: d.traced_bytes,
            sg_truncated: d.sg_truncated,
            sg_lists: d.sg_lists,
        }
    }
}

/// The devices' window figures, keyed for the report.
pub fn devices_by_key(devices: &[zc_trace_common::DmaDevice]) -> BTreeMap<String, DeviceDma> {
    devices.iter().map(DeviceDma::from).map(|d| (d.key(), d)).collect()
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct ContextSwitches {
    pub voluntary: u64,
    pub involuntary: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModeSwitchDetail {
    pub syscalls: u64,
    pub page_faults: Option<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub strategy: String,
    pub role: String,
    pub pid: u32,
    pub comm: String,
    pub path: Option<String>,
    pub payload_bytes: u64,
    pub syscalls: u64,
    pub mode_switches: u64,
    pub mode_switch_detail: ModeSwitchDetail,
    /// User-mode plus kernel-mode faults on user memory; `page_fault_detail` splits them.
    pub page_faults: Option<u64>,
    pub page_fault_detail: Option<BTreeMap<&'static str, u64>>,
    pub context_switches: Option<ContextSwitches>,
    pub cpu_copy: CpuCopy,
    pub zero_copy: ZeroCopy,
    pub dma: Dma,
    /// Bytes the process's data syscalls returned that no rule could attribute.
    pub unclassified_bytes: u64,
    pub copies_per_payload_byte: Option<f64>,
    /// What the process did, by op class: syscalls and payload per class.
    pub by_class: BTreeMap<&'static str, ClassSummary>,
    /// Every syscall the process made, by name (raw_tracepoint:sys_enter).
    pub syscall_counts: BTreeMap<String, u64>,
    /// Lab runs: payload / wall time of the workload's copy loop.
    pub elapsed_s: Option<f64>,
    pub throughput_bytes_per_s: Option<f64>,
    /// MSG_ZEROCOPY completions as the kernel reported them to the workload (error queue,
    /// `SO_EE_CODE_ZEROCOPY_COPIED` = the kernel copied after all).
    pub msg_zerocopy_completions: Option<ZerocopyCompletions>,
    /// What moved where: bytes by strategy and source kind -> destination kind (and by fd
    /// with `trace --by fd`), largest first.
    pub flows: Vec<crate::flows::FlowRow>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ClassSummary {
    pub syscalls: u64,
    pub payload_out: u64,
    pub payload_in: u64,
}

/// Which side of a transfer a process is: a sender's payload is what it delivered, a
/// receiver's what it read; a traced process takes whichever is larger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Sender,
    Receiver,
    Process,
    Thread,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Sender => "sender",
            Role::Receiver => "receiver",
            Role::Process => "process",
            Role::Thread => "thread",
        }
    }
}

/// Everything needed to build one row.
pub struct Input<'a> {
    pub strategy: String,
    pub role: Role,
    pub pid: u32,
    pub comm: String,
    pub path: Option<String>,
    pub by_class: &'a BTreeMap<OpClass, Stats>,
    /// The process's syscall counts by number.
    pub syscalls: &'a BTreeMap<u32, u64>,
    /// Lab runs: how long the copy loop took.
    pub elapsed_s: Option<f64>,
    /// Lab msg-zerocopy runs: the completions the workload read from the error queue.
    pub msg_zerocopy: Option<ZerocopyCompletions>,
}

pub fn row(input: Input<'_>, evidence: &session::Evidence, global: &GlobalEvents) -> Row {
    let mut total = Stats::default();
    for s in input.by_class.values() {
        crate::collect::add_stats(&mut total, s);
    }
    // Syscalls are counted once, per number, at sys_enter; per-class figures follow from the
    // architecture's table.
    let syscalls: u64 = input.syscalls.values().sum();
    let syscall_mode_switches = syscall_mode_switches(input.syscalls);
    let mut class_syscalls: BTreeMap<OpClass, u64> = BTreeMap::new();
    let table = syscall_table();
    for (&nr, &calls) in input.syscalls {
        let class = table.entries.get(nr as usize).map_or(OpClass::Other, |d| OpClass::from_u32(u32::from(d.class)));
        *class_syscalls.entry(class).or_default() += calls;
    }
    let has = |tp: &str| evidence.tracepoint(tp);
    let faults_user = has(PAGE_FAULT_USER).then_some(total.user_faults);
    let faults_kernel = has(PAGE_FAULT_KERNEL).then_some(total.kernel_faults);
    let page_faults = match (faults_user, faults_kernel) {
        (None, None) => None,
        (u, k) => Some(u.unwrap_or(0) + k.unwrap_or(0)),
    };
    let fault_switches = faults_user.map(|f| 2 * f);
    let mut cpu_copy = CpuCopy {
        to_user: copy_cell(input.by_class, |s| &s.to_user, |end| to_user_source(end, evidence)),
        from_user: copy_cell(input.by_class, |s| &s.from_user, |end| from_user_source(end, evidence)),
        kernel: copy_cell(input.by_class, |s| &s.kernel, |end| kernel_source(end, evidence)),
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
    if let Some(zc) = input.msg_zerocopy {
        apply_zerocopy_completions(&mut cpu_copy, &mut zero_copy, zc);
    }
    let payload_bytes = match input.role {
        Role::Sender => total.payload_out,
        Role::Receiver => total.payload_in,
        Role::Process | Role::Thread => total.payload_out.max(total.payload_in),
    };
    let copied = cpu_copy.to_user.bytes + cpu_copy.from_user.bytes + cpu_copy.kernel.bytes;
    Row {
        strategy: input.strategy,
        role: input.role.name().into(),
        pid: input.pid,
        comm: input.comm,
        path: input.path,
        payload_bytes,
        syscalls,
        mode_switches: syscall_mode_switches + fault_switches.unwrap_or(0),
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
        context_switches: has(SCHED_SWITCH).then_some(ContextSwitches {
            voluntary: total.ctx_voluntary,
            involuntary: total.ctx_involuntary,
        }),
        dma: dma(&total, evidence, global),
        unclassified_bytes: total.unclassified.bytes,
        copies_per_payload_byte: (payload_bytes > 0).then(|| copied as f64 / payload_bytes as f64),
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
        syscall_counts: input
            .syscalls
            .iter()
            .map(|(&nr, &calls)| (crate::syscall_names::name(nr), calls))
            .collect(),
        elapsed_s: input.elapsed_s,
        throughput_bytes_per_s: input
            .elapsed_s
            .filter(|&s| s > 0.0)
            .map(|s| payload_bytes as f64 / s),
        msg_zerocopy_completions: input.msg_zerocopy,
        flows: Vec::new(),
    }
}

/// Who counted a cell: an observing probe, or the syscall-semantics rules (then the
/// evidence names the rules of the syscall classes that contributed).
enum Source {
    Observed(Evidence),
    Derived,
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
    let (mut bytes, mut calls) = (0, 0);
    for end in End::ALL {
        let Some(src) = source(end) else { continue };
        let (mut b, mut c, mut derived_from) = (0, 0, Vec::new());
        for (class, stats) in by_class {
            let t = tallies(stats)[end as usize];
            if t.calls > 0 || t.bytes > 0 {
                b += t.bytes;
                c += t.calls;
                derived_from.push(Evidence::Derived(derived_rule(*class)));
            }
        }
        let label = match src {
            Source::Observed(label) => label,
            Source::Derived if derived_from.is_empty() => Evidence::Derived(Rule::Unnamed),
            Source::Derived => Evidence::mixed(derived_from),
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
    CopyCell { bytes, calls, evidence: Evidence::mixed(sources), by_end }
}

/// MSG_ZEROCOPY pins pages at send time, but the kernel may still copy them later (always
/// when delivering to a local socket: skb_orphan_frags_rx). The error queue tells which sends
/// were copied; those bytes move from zero-copy to a kernel copy, labelled with that source.
fn apply_zerocopy_completions(cpu: &mut CpuCopy, zc: &mut ZeroCopy, done: ZerocopyCompletions) {
    let Some(part) = zc.by_kind.get_mut("msg_zerocopy") else { return };
    if done.completed == 0 || done.copied == 0 {
        return;
    }
    let copied_bytes = ((part.bytes as u128 * done.copied as u128) / done.completed as u128) as u64;
    let copied_calls = done.copied.min(part.calls);
    part.bytes -= copied_bytes;
    part.calls -= copied_calls;
    zc.bytes -= copied_bytes.min(zc.bytes);
    zc.evidence.push(Evidence::ZerocopyCopiedMoved);
    let kernel = &mut cpu.kernel;
    kernel.bytes += copied_bytes;
    kernel.calls += copied_calls;
    if kernel.calls == copied_calls {
        kernel.evidence = Evidence::ZerocopyCopied;
    } else {
        kernel.evidence.push(Evidence::ZerocopyCopied);
    }
    kernel.by_end.insert("socket", Part::new(copied_bytes, copied_calls, Evidence::ZerocopyCopied));
}

/// What observes (or derives) copies into user memory from each kind of source.
fn function_or_derived(ev: &session::Evidence, function: &str) -> Source {
    first_function(ev, &[function])
}

/// The first of these functions that is probed on this run, or derived.
fn first_function(ev: &session::Evidence, functions: &[&str]) -> Source {
    first_probe(ev, functions).map_or(Source::Derived, |probe| Source::Observed(Evidence::Observed { probe, covers: Covers::All }))
}

/// The first of these functions that is probed on this run.
fn first_probe(ev: &session::Evidence, functions: &[&str]) -> Option<Probe> {
    functions.iter().find_map(|f| ev.probe(f))
}

/// Seen by `probe` on the part of the path it covers, derived by `rest` elsewhere.
fn covers_part(probe: Probe, covers: Covers, rest: Rule) -> Evidence {
    Evidence::Observed { probe, covers }.plus(Evidence::Derived(rest))
}

fn to_user_source(end: End, ev: &session::Evidence) -> Option<Source> {
    Some(match end {
        End::PageCache => function_or_derived(ev, "filemap_read"),
        End::Socket if ev.tracepoint(SKB_COPY) => Source::Observed(Evidence::observed(SKB_COPY, Attach::RawTracepoint)),
        End::Socket | End::Memory => return None,
        End::Pipe => function_or_derived(ev, "pipe_read"),
        End::Other => Source::Derived,
    })
}

fn from_user_source(end: End, ev: &session::Evidence) -> Option<Source> {
    Some(match end {
        End::PageCache => function_or_derived(ev, "generic_perform_write"),
        End::Socket => match ev.probe("tcp_sendmsg_locked") {
            Some(p) => Source::Observed(covers_part(p, Covers::Tcp, Rule::OtherSockets)),
            None => Source::Derived,
        },
        End::Pipe => function_or_derived(ev, "pipe_write"),
        End::Other => Source::Derived,
        End::Memory => return None,
    })
}

fn kernel_source(end: End, ev: &session::Evidence) -> Option<Source> {
    Some(match end {
        End::PageCache => function_or_derived(ev, "iter_file_splice_write"),
        End::Socket => first_function(ev, &["tcp_sendmsg_locked", "do_tcp_sendpages"]),
        _ => return None,
    })
}

fn zero_copy_source(kind: ZeroCopyKind, ev: &session::Evidence) -> Evidence {
    match kind {
        ZeroCopyKind::SplicePages => match first_probe(ev, &["tcp_sendmsg_locked", "do_tcp_sendpages"]) {
            Some(p) => covers_part(p, Covers::Tcp, Rule::OtherSockets),
            None => Evidence::Derived(Rule::SpliceToGatheringSocket),
        },
        ZeroCopyKind::MsgZerocopy => match ev.probe("tcp_sendmsg_locked") {
            Some(probe) => Evidence::Observed { probe, covers: Covers::All },
            None => Evidence::Derived(Rule::MsgZerocopy),
        },
        ZeroCopyKind::PageRefs => match first_probe(ev, &["filemap_splice_read", "generic_file_splice_read"]) {
            Some(p) => covers_part(p, Covers::Files, Rule::TeeAndSockets),
            None => Evidence::Derived(Rule::IntoPipe),
        },
        ZeroCopyKind::Vmsplice => Evidence::Derived(Rule::Vmsplice),
        ZeroCopyKind::FileRange => Evidence::Derived(Rule::Reflink),
    }
}

fn zero_copy(total: &Stats, ev: &session::Evidence) -> ZeroCopy {
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
    ZeroCopy { bytes, evidence: Evidence::mixed(sources), by_kind }
}

fn dma(total: &Stats, ev: &session::Evidence, global: &GlobalEvents) -> Dma {
    let block = ev.tracepoint(BLOCK_RQ_ISSUE);
    let net = ev.tracepoint(NET_XMIT);
    let mut notes = Vec::new();
    if block {
        notes.push(DmaNote::Disk(Probe { name: BLOCK_RQ_ISSUE, attach: Attach::RawTracepoint }));
    }
    if net {
        notes.push(DmaNote::Nic(Probe { name: NET_XMIT, attach: Attach::RawTracepoint }));
    }
    let dma_api_maps = if ev.dma.is_empty() {
        notes.push(DmaNote::NoDmaTracepoint);
        None
    } else if global.dma_maps_system == 0 {
        notes.push(DmaNote::DmaApiSilent(ev.dma.clone()));
        None
    } else {
        notes.push(DmaNote::DmaApi(ev.dma.clone()));
        Some(total.dma_maps.calls)
    };
    // Bytes and direction need the tracepoints' arguments, found in BTF. Why they were not
    // found is run-time text: it has a field of its own, the evidence points to it.
    let dma_bytes = dma_api_maps.is_some() && ev.dma_layout_error.is_none();
    let dma_layout_error = dma_api_maps.and(ev.dma_layout_error.clone());
    if dma_layout_error.is_some() {
        notes.push(DmaNote::DmaApiBytesNotRead);
    }
    Dma {
        disk_read_bytes: block.then_some(total.disk_read.bytes),
        disk_write_bytes: block.then_some(total.disk_write.bytes),
        net_tx_linear_bytes: net.then_some(total.net_tx_linear_bytes),
        net_tx_paged_bytes: net.then_some(total.net_tx_paged_bytes),
        net_tx_frags: net.then_some(total.net_tx_frags),
        net_tx_packets: net.then_some(total.net_tx.calls),
        dma_api_maps,
        direct_io_read_bytes: total.direct_read.bytes,
        direct_io_write_bytes: total.direct_write.bytes,
        evidence: DmaEvidence(notes),
        dma_layout_error,
        dma_map_bytes_to_device: dma_bytes.then_some(total.dma_to_device.bytes),
        dma_map_bytes_from_device: dma_bytes.then_some(total.dma_from_device.bytes),
        dma_map_bytes_bidirectional: dma_bytes.then_some(total.dma_bidirectional.bytes),
        dma_map_segments: dma_bytes.then_some(total.dma_segments),
        dma_attribution: dma_bytes.then(|| {
            "process context: mappings made while this process ran (its syscalls, faults, or softirqs              that interrupted it); system_by_device: every mapping of each device while it was traced"
                .to_string()
        }),
        system_by_device: None,
    }
}

/// The architecture's syscall table, built once.
fn syscall_table() -> &'static zc_trace_common::SyscallTable {
    static TABLE: std::sync::OnceLock<zc_trace_common::SyscallTable> = std::sync::OnceLock::new();
    TABLE.get_or_init(crate::syscall_table::build)
}

/// Sum of `report::mode_switches` over a process's syscall counts.
pub fn syscall_mode_switches(counts: &BTreeMap<u32, u64>) -> u64 {
    counts.iter().map(|(&nr, &calls)| report::mode_switches(&crate::syscall_names::name(nr), calls)).sum()
}

/// The strategy a process's activity looks like, for processes the lab did not start: the
/// data syscall that delivered most of its payload names it.
pub fn infer_strategy(by_class: &BTreeMap<OpClass, Stats>) -> String {
    let out = |c: OpClass| by_class.get(&c).map_or(0, |s| s.payload_out);
    let inn = |c: OpClass| by_class.get(&c).map_or(0, |s| s.payload_in);
    let msg_zerocopy = by_class
        .get(&OpClass::Send)
        .is_some_and(|s| s.zero_copy[ZeroCopyKind::MsgZerocopy as usize].bytes > 0);
    // Senders first, in order of preference on ties: the class that delivered most bytes.
    let mut best: Option<(OpClass, u64)> = None;
    for c in [
        OpClass::Sendfile,
        OpClass::Splice,
        OpClass::CopyFileRange,
        OpClass::Vmsplice,
        OpClass::IoUring,
        OpClass::Send,
        OpClass::Write,
    ] {
        if out(c) > best.map_or(0, |(_, b)| b) {
            best = Some((c, out(c)));
        }
    }
    let name = match best.map(|(c, _)| c) {
        Some(OpClass::Send) if msg_zerocopy => "msg-zerocopy",
        Some(OpClass::Sendfile) => "sendfile",
        // Splice also carries vmsplice's second leg: the vmsplice leg names that strategy.
        Some(OpClass::Splice) if out(OpClass::Vmsplice) > 0 || inn(OpClass::Vmsplice) > 0 => "vmsplice",
        Some(OpClass::Splice) => "splice",
        Some(OpClass::CopyFileRange) => "copy-file-range",
        Some(OpClass::Vmsplice) => "vmsplice",
        Some(OpClass::IoUring) => "io-uring",
        Some(_) => {
            // write(2) from a buffer inside a file mapping (tracked from mmap to munmap).
            let mapped = by_class.get(&OpClass::Write).map_or(0, |s| s.from_file_mapping);
            let direct = by_class.get(&OpClass::Read).map_or(0, |s| s.direct_read.bytes);
            if 2 * mapped >= out(OpClass::Write).max(1) {
                "mmap-write"
            } else if 2 * direct >= inn(OpClass::Read).max(1) {
                "direct-io"
            } else {
                "read-write"
            }
        }
        None if by_class.get(&OpClass::Read).is_some_and(|s| s.direct_read.bytes > 0) => "direct-io",
        None if inn(OpClass::Read) + inn(OpClass::Recv) > 0 => "receive",
        None => "other",
    };
    name.into()
}

/// A TCP socket's route always advertises NETIF_F_SG (sk_setup_caps adds it wherever GSO is
/// possible, and TCP always uses GSO), so `tcp_sendmsg_locked` takes spliced page-cache pages
/// by reference even when the NIC cannot gather. Such a NIC gets linear packets: software GSO
/// copies the pages into them at transmit. When fewer bytes reached the NIC in page frags
/// than TCP took by reference, the difference was copied there: moved from zero-copy to a
/// kernel copy, labelled as derived from the NIC's packets.
pub fn copied_at_transmit(row: &mut Row) {
    let Some(spliced) = row.zero_copy.by_kind.get("splice_pages").map(|p| p.bytes) else { return };
    let (Some(paged), Some(linear)) = (row.dma.net_tx_paged_bytes, row.dma.net_tx_linear_bytes) else { return };
    let copied = spliced.saturating_sub(paged).min(linear);
    // Retransmissions and partial frags make small differences either way: only a real
    // shortfall is a copy.
    if copied * 100 <= spliced {
        return;
    }
    let calls = row.dma.net_tx_packets.unwrap_or(0);
    if let Some(part) = row.zero_copy.by_kind.get_mut("splice_pages") {
        part.bytes -= copied;
        part.evidence.push(Evidence::CopiedAtTransmit);
        part.copied_at_transmit_bytes = Some(copied);
    }
    row.zero_copy.bytes = row.zero_copy.bytes.saturating_sub(copied);
    let linearized = Evidence::Derived(Rule::LinearizedAtTransmit);
    let kernel = &mut row.cpu_copy.kernel;
    kernel.bytes += copied;
    kernel.calls += calls;
    kernel.evidence.push(linearized.clone());
    let socket = kernel.by_end.entry("socket").or_insert(Part::new(0, 0, Evidence::NoneSeen));
    socket.bytes += copied;
    socket.calls += calls;
    socket.evidence.push(linearized);
    let copies = row.cpu_copy.to_user.bytes + row.cpu_copy.from_user.bytes + row.cpu_copy.kernel.bytes;
    row.copies_per_payload_byte = (row.payload_bytes > 0).then(|| copies as f64 / row.payload_bytes as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence_host() -> session::Evidence {
        session::Evidence {
            tracepoints: vec![SKB_COPY, PAGE_FAULT_USER, PAGE_FAULT_KERNEL, SCHED_SWITCH, BLOCK_RQ_ISSUE, NET_XMIT],
            dma: vec!["dma_map_sg"],
            ..Default::default()
        }
    }

    /// The host's tracepoints with every function probe attached by fexit.
    fn evidence_fentry() -> session::Evidence {
        let mut ev = evidence_host();
        for f in crate::probes::FUNCTIONS {
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
        assert_eq!(r.mode_switches, 2 * 257);
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
        assert_eq!(part.evidence.to_string(), "fexit:filemap_read + derived:read(2) for the bytes it did not see (e.g. tmpfs)");
        let json = serde_json::to_value(part).unwrap();
        assert_eq!(json["derived_bytes"], 4096);
    }

    #[test]
    fn unobservable_figures_are_null_not_zero() {
        let classes = read_write_sender();
        let ev = session::Evidence::default(); // no optional tracepoint attached
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
        assert!(r.dma.evidence.to_string().contains("no DMA-API mappings observed for these devices (dma:dma_map_sg attached"));
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
        assert_eq!(r.cpu_copy.kernel.by_end["socket"].evidence, Evidence::ZerocopyCopied);
        assert_eq!(r.cpu_copy.kernel.evidence, Evidence::ZerocopyCopied);
        assert_eq!(
            r.zero_copy.evidence,
            Evidence::Derived(Rule::MsgZerocopy).plus(Evidence::ZerocopyCopiedMoved)
        );
        assert_eq!(r.copies_per_payload_byte, Some(1.0));
    }

    #[test]
    fn strategies_are_inferred_from_what_delivered_the_payload() {
        assert_eq!(infer_strategy(&read_write_sender()), "read-write");
        let mut w = Stats { payload_out: 100, from_file_mapping: 100, ..Default::default() };
        w.from_user[End::Socket as usize] = Tally { bytes: 100, calls: 1 };
        let mmap: BTreeMap<_, _> = [(OpClass::Write, w)].into_iter().collect();
        assert_eq!(infer_strategy(&mmap), "mmap-write");
        let sf: BTreeMap<_, _> =
            [(OpClass::Sendfile, Stats { payload_out: 5, ..Default::default() })].into_iter().collect();
        assert_eq!(infer_strategy(&sf), "sendfile");
        assert_eq!(infer_strategy(&BTreeMap::new()), "other");
    }
}
