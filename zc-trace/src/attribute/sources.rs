//! Who counts each cell on this run: the probe that observes a copy path (a tracepoint, or a
//! function probe attached by fexit or kretprobe), or the syscall-semantics rule it is
//! derived by when no probe is attached there.
use zc_trace_common::{End, ZeroCopyKind};

use crate::model::{
    evidence::{Attach, Covers, Evidence, Probe, Rule},
    run,
};

pub const SKB_COPY: &str = "skb:skb_copy_datagram_iovec";
pub const PAGE_FAULT_USER: &str = "exceptions:page_fault_user";
pub const PAGE_FAULT_KERNEL: &str = "exceptions:page_fault_kernel";
pub const SCHED_SWITCH: &str = "sched:sched_switch";
pub const BLOCK_RQ_ISSUE: &str = "block:block_rq_issue";
pub const NET_XMIT: &str = "net:net_dev_start_xmit";
pub const IO_URING_COMPLETE: &str = "io_uring:io_uring_complete";

/// Who counted a cell: an observing probe, or the syscall-semantics rules (then the
/// evidence names the rules of the syscall classes that contributed).
pub(super) enum Source {
    Observed(Evidence),
    Derived,
    /// Only a probe that is not attached could count these copies: unknown, not zero.
    Unmeasured,
}

/// What observes (or derives) copies into user memory from each kind of source.
fn function_or_derived(ev: &run::Evidence, function: &str) -> Source {
    first_function(ev, &[function])
}

/// The first of these functions that is probed on this run, or derived.
fn first_function(ev: &run::Evidence, functions: &[&str]) -> Source {
    first_probe(ev, functions)
        .map_or(Source::Derived, |probe| Source::Observed(Evidence::Observed { probe, covers: Covers::All }))
}

/// The first of these functions that is probed on this run.
fn first_probe(ev: &run::Evidence, functions: &[&str]) -> Option<Probe> {
    functions.iter().find_map(|f| ev.probe(f))
}

/// Seen by `probe` on the part of the path it covers, derived by `rest` elsewhere.
fn covers_part(probe: Probe, covers: Covers, rest: Rule) -> Evidence {
    Evidence::Observed { probe, covers }.plus(Evidence::Derived(rest))
}

pub(super) fn to_user_source(end: End, ev: &run::Evidence) -> Option<Source> {
    Some(match end {
        // generic_file_buffered_read is filemap_read's name before 5.12.
        End::PageCache => first_function(ev, &["filemap_read", "generic_file_buffered_read"]),
        End::Socket if ev.tracepoint(SKB_COPY) => Source::Observed(Evidence::observed(SKB_COPY, Attach::RawTracepoint)),
        End::Socket => Source::Unmeasured,
        End::Memory => return None,
        End::Pipe => function_or_derived(ev, "pipe_read"),
        End::Other => Source::Derived,
    })
}

pub(super) fn from_user_source(end: End, ev: &run::Evidence) -> Option<Source> {
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

pub(super) fn kernel_source(end: End, ev: &run::Evidence) -> Option<Source> {
    Some(match end {
        End::PageCache => function_or_derived(ev, "iter_file_splice_write"),
        End::Socket => first_function(ev, &["tcp_sendmsg_locked", "do_tcp_sendpages"]),
        _ => return None,
    })
}

pub(super) fn zero_copy_source(kind: ZeroCopyKind, ev: &run::Evidence) -> Evidence {
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
