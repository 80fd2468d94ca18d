//! Evidence: what a figure rests on, as a value. Every report field, table note and
//! OpenMetrics label that says where a number came from is the text of one of these, so code
//! decides by variant (never by searching the text), and the texts form a fixed vocabulary:
//! probe names, attach kinds and named rules, with no counts and nothing built from run-time
//! data. Counts belong in the figures' own fields.
//!
//! Plain data at the bottom of the layering: it knows no probe catalogue, session or report,
//! so that any of them can use it.
use std::fmt;

use serde::{Serialize, Serializer};

/// How a probe is attached to the kernel (the names `doctor` and the probe list use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Attach {
    Tracepoint,
    RawTracepoint,
    TpBtf,
    Fentry,
    Fexit,
    Kprobe,
    Kretprobe,
}

impl Attach {
    pub const fn name(self) -> &'static str {
        match self {
            Attach::Tracepoint => "tracepoint",
            Attach::RawTracepoint => "raw_tracepoint",
            Attach::TpBtf => "tp_btf",
            Attach::Fentry => "fentry",
            Attach::Fexit => "fexit",
            Attach::Kprobe => "kprobe",
            Attach::Kretprobe => "kretprobe",
        }
    }
}

impl fmt::Display for Attach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Attach {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// A probe as evidence names it: its attach kind, then the tracepoint (`category:name`) or
/// the function, e.g. `raw_tracepoint:skb:skb_copy_datagram_iovec`, `fexit:filemap_read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Probe {
    pub name: &'static str,
    pub attach: Attach,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.attach, self.name)
    }
}

/// The part of a path a probe sees, when it sees only part of it; a [`Rule`] in the same
/// [`Evidence::Mixed`] names how the rest is derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Covers {
    All,
    /// TCP sockets only (`tcp_sendmsg_locked`, `do_tcp_sendpages`); other sockets are
    /// [`Rule::OtherSockets`].
    Tcp,
    /// Splices from files only (`filemap_splice_read`); tee and sockets are
    /// [`Rule::TeeAndSockets`].
    Files,
}

impl Covers {
    const fn suffix(self) -> &'static str {
        match self {
            Covers::All => "",
            Covers::Tcp => " (TCP)",
            Covers::Files => " (from files)",
        }
    }
}

/// A named rule a figure was derived by, when no probe watched the copy happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// Syscall results, by the class of the syscall (and the kinds of its fds).
    Read,
    Write,
    Send,
    Recv,
    Sendfile,
    Splice,
    Vmsplice,
    Tee,
    CopyFileRange,
    /// io_uring requests, by opcode, at their completion.
    IoUringComplete,
    /// Syscalls no named rule covers (mmap, munmap, unclassified).
    Unnamed,
    /// Sends on sockets other than TCP, beside a probe that covers TCP.
    OtherSockets,
    /// Page references from tee and sockets, beside a probe that covers files.
    TeeAndSockets,
    /// sendfile/splice to a socket that can gather: pages taken by reference.
    SpliceToGatheringSocket,
    /// send(2) with MSG_ZEROCOPY: pages pinned.
    MsgZerocopy,
    /// splice/sendfile/tee into a pipe: page references.
    IntoPipe,
    /// copy_file_range on a file system that shares extents.
    Reflink,
    /// Mode switches from syscall counts.
    ModeSwitches,
    /// Pages TCP took by reference reached the NIC in linear packets: software GSO copied
    /// them. Derived from the NIC's packets, not from a syscall.
    LinearizedAtTransmit,
}

impl Rule {
    pub const fn text(self) -> &'static str {
        match self {
            Rule::Read => "derived:read(2)",
            Rule::Write => "derived:write(2)",
            Rule::Send => "derived:send(2)",
            Rule::Recv => "derived:recv(2)",
            Rule::Sendfile => "derived:sendfile(2)",
            Rule::Splice => "derived:splice(2)",
            Rule::Vmsplice => "derived:vmsplice(2)",
            Rule::Tee => "derived:tee(2)",
            Rule::CopyFileRange => "derived:copy_file_range(2)",
            Rule::IoUringComplete => "derived:io_uring:io_uring_complete",
            Rule::Unnamed => "derived",
            Rule::OtherSockets => "derived (other sockets)",
            Rule::TeeAndSockets => "derived (tee, sockets)",
            Rule::SpliceToGatheringSocket => "derived:sendfile(2)/splice(2) to a socket whose route has NETIF_F_SG",
            Rule::MsgZerocopy => "derived:send(2) with MSG_ZEROCOPY",
            Rule::IntoPipe => "derived:splice(2)/sendfile(2)/tee(2) into a pipe",
            Rule::Reflink => "derived:copy_file_range(2) on a reflink-capable file system",
            Rule::ModeSwitches => "derived: 2 per syscall (entry + return), 1 for exit/exit_group which never return",
            Rule::LinearizedAtTransmit => {
                "derived: pages TCP took by reference reached the NIC in linear skbs \
                 (raw_tracepoint:net:net_dev_start_xmit, data_len 0): software GSO copied them (skb_segment -> skb_copy_bits)"
            }
        }
    }
}

/// What a figure's number rests on, in kind: verdicts speak of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Basis {
    /// A probe where the copy happens counted it.
    Probe,
    /// Derived from syscall results.
    SyscallSemantics,
    /// Derived from the packets the NIC was given.
    NicPackets,
    /// The kernel told the workload (MSG_ZEROCOPY's error queue).
    ErrorQueue,
}

/// Who read the MSG_ZEROCOPY completions that a figure rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CompletionsFrom {
    /// The lab's workload, which drains its error queue and reports what it read.
    Workload,
    /// The traced process's own recvmsg(MSG_ERRQUEUE), read at its exit.
    SysExit,
}

impl CompletionsFrom {
    fn text(self) -> &'static str {
        match self {
            CompletionsFrom::Workload => "error queue",
            CompletionsFrom::SysExit => "raw_tracepoint:sys_exit of recvmsg(MSG_ERRQUEUE)",
        }
    }
}

/// Where a figure came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Evidence {
    /// Counted by a probe where the copy happens, on the part of the path it covers.
    Observed { probe: Probe, covers: Covers },
    /// Derived by a rule.
    Derived(Rule),
    /// Derived by a rule for the bytes an observing probe beside it did not see (a tmpfs
    /// read never calls `filemap_read`); how many is the part's `derived_bytes`.
    DerivedUnseen(Rule),
    /// MSG_ZEROCOPY sends the kernel completed with SO_EE_CODE_ZEROCOPY_COPIED, as the
    /// process read them from its socket's error queue (seen where `CompletionsFrom` says).
    ZerocopyCopied(CompletionsFrom),
    /// The same, on the zero-copy figure those sends were taken out of.
    ZerocopyCopiedMoved(CompletionsFrom),
    /// MSG_ZEROCOPY sends no completion has told the outcome of yet: requested, not known
    /// to be zero-copy; how many bytes is the part's `outcome_unknown_bytes` (taken out of
    /// the zero-copy figure).
    ZerocopyOutcomeUnknown,
    /// Bytes taken out of this figure because they were copied at transmit; how many is the
    /// part's `copied_at_transmit_bytes` (they are in `cpu_copy.kernel`).
    CopiedAtTransmit,
    /// Several of the above, in order: flat, no repeats, at least two (see [`Evidence::mixed`]).
    Mixed(Vec<Evidence>),
    /// No figure of this kind was seen.
    NoneSeen,
}

impl Evidence {
    /// Seen by this probe on the whole path.
    pub const fn observed(name: &'static str, attach: Attach) -> Self {
        Evidence::Observed { probe: Probe { name, attach }, covers: Covers::All }
    }

    /// These parts, flattened, without repeats and without [`Evidence::NoneSeen`]: none is
    /// `NoneSeen`, one is itself.
    pub fn mixed(parts: impl IntoIterator<Item = Evidence>) -> Self {
        let mut flat: Vec<Evidence> = Vec::new();
        for p in parts {
            for atom in p.parts() {
                if !flat.contains(atom) {
                    flat.push(atom.clone());
                }
            }
        }
        match flat.len() {
            0 => Evidence::NoneSeen,
            1 => flat.pop().expect("one part"),
            _ => Evidence::Mixed(flat),
        }
    }

    /// This evidence with `other` after it.
    pub fn plus(self, other: Evidence) -> Self {
        Evidence::mixed([self, other])
    }

    /// Puts `other` after this evidence, in place.
    pub fn push(&mut self, other: Evidence) {
        *self = std::mem::replace(self, Evidence::NoneSeen).plus(other);
    }

    /// The single pieces this is made of: a Mixed's parts, nothing for `NoneSeen`, else itself.
    pub fn parts(&self) -> &[Evidence] {
        match self {
            Evidence::Mixed(parts) => parts,
            Evidence::NoneSeen => &[],
            single => std::slice::from_ref(single),
        }
    }

    /// What a single piece rests on; `None` for what is no source of bytes (`NoneSeen`, an
    /// amount taken out) and for a Mixed (ask its parts).
    pub fn basis(&self) -> Option<Basis> {
        match self {
            Evidence::Observed { .. } => Some(Basis::Probe),
            Evidence::Derived(Rule::LinearizedAtTransmit) | Evidence::DerivedUnseen(Rule::LinearizedAtTransmit) => {
                Some(Basis::NicPackets)
            }
            Evidence::Derived(_) | Evidence::DerivedUnseen(_) => Some(Basis::SyscallSemantics),
            Evidence::ZerocopyCopied(_) | Evidence::ZerocopyCopiedMoved(_) => Some(Basis::ErrorQueue),
            Evidence::CopiedAtTransmit | Evidence::ZerocopyOutcomeUnknown | Evidence::Mixed(_) | Evidence::NoneSeen => {
                None
            }
        }
    }

    /// The distinct bases of the pieces, in order of first appearance.
    pub fn bases(&self) -> Vec<Basis> {
        let mut out = Vec::new();
        for b in self.parts().iter().filter_map(Evidence::basis) {
            if !out.contains(&b) {
                out.push(b);
            }
        }
        out
    }

    /// Every source piece is a probe where the copy happens.
    pub fn is_observed(&self) -> bool {
        self.bases() == [Basis::Probe]
    }

    /// Every source piece is derived by a rule (from syscalls or from the NIC's packets).
    pub fn is_derived(&self) -> bool {
        let bases = self.bases();
        !bases.is_empty() && bases.iter().all(|b| matches!(b, Basis::SyscallSemantics | Basis::NicPackets))
    }

    /// Whether this piece speaks for bytes that went through a TCP socket (`tcp`) or through
    /// some other kind of end: a probe that covers TCP only does not speak for other sockets,
    /// and the rule for other sockets does not speak for TCP. Everything else speaks for both.
    pub fn applies_to(&self, tcp: bool) -> bool {
        match self {
            Evidence::Observed { covers: Covers::Tcp, .. } => tcp,
            Evidence::Derived(Rule::OtherSockets) => !tcp,
            _ => true,
        }
    }
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Evidence::Observed { probe, covers } => write!(f, "{probe}{}", covers.suffix()),
            Evidence::Derived(rule) => f.write_str(rule.text()),
            Evidence::DerivedUnseen(rule) => write!(f, "{} for the bytes it did not see (e.g. tmpfs)", rule.text()),
            Evidence::ZerocopyCopied(from) => {
                write!(f, "{}: SO_EE_CODE_ZEROCOPY_COPIED (the kernel copied the pinned pages)", from.text())
            }
            Evidence::ZerocopyCopiedMoved(from) => write!(
                f,
                "{}: SO_EE_CODE_ZEROCOPY_COPIED (the kernel copied the pinned pages): copied sends moved to kernel copies",
                from.text()
            ),
            Evidence::ZerocopyOutcomeUnknown => f.write_str(
                "MSG_ZEROCOPY requested, no completion read from the error queue: outcome unknown (see outcome_unknown_bytes)",
            ),
            Evidence::CopiedAtTransmit => f.write_str("copied at transmit (see cpu_copy.kernel)"),
            Evidence::Mixed(parts) => {
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        // What was taken out reads as a subtraction, every source as an addition.
                        let out = matches!(part, Evidence::CopiedAtTransmit | Evidence::ZerocopyOutcomeUnknown);
                        f.write_str(if out { " - " } else { " + " })?;
                    }
                    write!(f, "{part}")?;
                }
                Ok(())
            }
            Evidence::NoneSeen => f.write_str("derived (none seen)"),
        }
    }
}

/// The JSON keeps the text (a string field), as it was before evidence had a type.
impl Serialize for Evidence {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One note on where a row's DMA figures come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DmaNote {
    /// Disk requests, counted by this probe in the process's context.
    Disk(Probe),
    /// NIC transmits, counted by this probe and charged to the owner of the packet's socket.
    Nic(Probe),
    /// The kernel has no `dma:*` tracepoint.
    NoDmaTracepoint,
    /// These `dma:*` events (names after `dma:`) attached, but none fired system-wide.
    DmaApiSilent(Vec<&'static str>),
    /// These `dma:*` events attached and count mappings in the process's context.
    DmaApi(Vec<&'static str>),
    /// Mappings are counted but their bytes and direction not: the tracepoints' arguments
    /// were not found in BTF (the row's `dma.dma_layout_error` says why).
    DmaApiBytesNotRead,
}

impl fmt::Display for DmaNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let events = |events: &[&str]| events.iter().map(|e| format!("dma:{e}")).collect::<Vec<_>>().join(", ");
        match self {
            DmaNote::Disk(probe) => write!(f, "disk: {probe} in the process's context"),
            DmaNote::Nic(probe) => write!(f, "NIC: {probe}, charged to the owner of skb->sk"),
            DmaNote::NoDmaTracepoint => f.write_str("DMA API: no dma:* tracepoint on this kernel"),
            DmaNote::DmaApiSilent(e) => write!(
                f,
                "DMA API: no DMA-API mappings observed for these devices ({} attached, 0 events system-wide: \
                 e.g. virtio without an IOMMU bypasses the DMA API)",
                events(e)
            ),
            DmaNote::DmaApi(e) => write!(f, "DMA API: {} in the process's context", events(e)),
            DmaNote::DmaApiBytesNotRead => f.write_str("DMA API bytes: not read (see dma_layout_error)"),
        }
    }
}

/// Where a row's DMA figures come from: one note per source, `; ` between them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DmaEvidence(pub Vec<DmaNote>);

impl fmt::Display for DmaEvidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, note) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{note}")?;
        }
        Ok(())
    }
}

impl Serialize for DmaEvidence {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKB: Evidence = Evidence::observed("skb:skb_copy_datagram_iovec", Attach::RawTracepoint);

    fn tcp_send() -> Evidence {
        Evidence::Observed { probe: Probe { name: "tcp_sendmsg_locked", attach: Attach::Fexit }, covers: Covers::Tcp }
            .plus(Evidence::Derived(Rule::OtherSockets))
    }

    #[test]
    fn texts_are_the_ones_the_json_always_had() {
        assert_eq!(SKB.to_string(), "raw_tracepoint:skb:skb_copy_datagram_iovec");
        assert_eq!(Evidence::observed("filemap_read", Attach::Fexit).to_string(), "fexit:filemap_read");
        assert_eq!(Evidence::Derived(Rule::Read).to_string(), "derived:read(2)");
        assert_eq!(tcp_send().to_string(), "fexit:tcp_sendmsg_locked (TCP) + derived (other sockets)");
        assert_eq!(
            Evidence::mixed([Evidence::Derived(Rule::Read), SKB]).to_string(),
            "derived:read(2) + raw_tracepoint:skb:skb_copy_datagram_iovec"
        );
        assert_eq!(Evidence::NoneSeen.to_string(), "derived (none seen)");
        assert_eq!(serde_json::to_value(tcp_send()).unwrap(), serde_json::json!(tcp_send().to_string()));
        let dma = DmaEvidence(vec![DmaNote::NoDmaTracepoint, DmaNote::DmaApi(vec!["dma_map_sg", "dma_map_page"])]);
        assert_eq!(
            dma.to_string(),
            "DMA API: no dma:* tracepoint on this kernel; DMA API: dma:dma_map_sg, dma:dma_map_page in the process's context"
        );
    }

    #[test]
    fn mixing_flattens_drops_repeats_and_collapses() {
        let read = Evidence::Derived(Rule::Read);
        assert_eq!(Evidence::mixed([]), Evidence::NoneSeen);
        assert_eq!(Evidence::mixed([Evidence::NoneSeen, read.clone()]), read);
        let both = read.clone().plus(SKB);
        assert_eq!(both.clone().plus(read.clone()).plus(SKB), both);
        assert_eq!(Evidence::mixed([both.clone(), tcp_send()]).parts().len(), 4);
        assert_eq!(
            Evidence::observed("iter_file_splice_write", Attach::Fexit).plus(Evidence::CopiedAtTransmit).to_string(),
            "fexit:iter_file_splice_write - copied at transmit (see cpu_copy.kernel)"
        );
    }

    #[test]
    fn kinds_are_decided_by_variant() {
        let fexit = Evidence::observed("filemap_read", Attach::Fexit);
        assert!(fexit.is_observed() && !fexit.is_derived());
        assert!(Evidence::Derived(Rule::Write).is_derived());
        assert!(Evidence::Derived(Rule::LinearizedAtTransmit).is_derived());
        // A probe that covers TCP only, beside a rule for the rest, is neither on its own...
        assert!(!tcp_send().is_observed() && !tcp_send().is_derived());
        // ...and observed for bytes that went to TCP.
        let on_tcp = Evidence::mixed(tcp_send().parts().iter().filter(|p| p.applies_to(true)).cloned());
        assert!(on_tcp.is_observed());
        let elsewhere = Evidence::mixed(tcp_send().parts().iter().filter(|p| p.applies_to(false)).cloned());
        assert!(elsewhere.is_derived());
        // A figure partly derived for what its probe missed is neither.
        let partly = fexit.plus(Evidence::DerivedUnseen(Rule::Read));
        assert_eq!(partly.bases(), [Basis::Probe, Basis::SyscallSemantics]);
        assert!(!Evidence::NoneSeen.is_observed() && !Evidence::NoneSeen.is_derived());
    }
}
