//! The advisor's rules: for each flow of a row, the strategy that removes its CPU copies, what
//! that removes (from the flow's own bytes and calls), its price by the cost model, and
//! whether it pays. Pure: a row and a model in, advice out. Each rule names the kernel
//! behaviour it rests on; docs/advice.md explains them.
use std::collections::BTreeMap;

use crate::{
    advise::{
        advice::{Advice, Assumption, Reason, Recommend, UNPRICED_NO_MODEL, Verdict},
        cost::{CostModel, Direction, LoadedCostModel},
    },
    model::row::{FlowRow, Row},
};

/// Documentation/networking/msg_zerocopy.rst: "MSG_ZEROCOPY is generally only effective at
/// writes over around 10 KB": below it, pinning the pages and reading the completion cost
/// more than the copy they avoid.
pub const ZEROCOPY_MIN_CHUNK: u64 = 10 * 1024;

/// A priced saving below this over the whole trace is not worth a change of code.
pub const MIN_SAVING_NS: u64 = 1_000_000;

/// Unpriced, fewer copied bytes than this are not worth a change of code.
pub const MIN_COPY_BYTES: u64 = 1 << 20;

/// The advice for every flow of `row` that costs CPU copies and has a better strategy, and for
/// every zero-copy flow that measured copies anyway (a "does not pay" saying why). Those that
/// pay come first, then by CPU time saved (copies removed when unpriced), most first.
pub fn advise(row: &Row, model: Option<&LoadedCostModel>) -> Vec<Advice> {
    let transmit_copied = copied_at_transmit(row);
    let mut out: Vec<Advice> =
        merged(&row.flows).iter().filter_map(|flow| advice_for(flow, row, transmit_copied, model)).collect();
    out.sort_by(|a, b| {
        (a.verdict != Verdict::Pays)
            .cmp(&(b.verdict != Verdict::Pays))
            .then(b.cpu_ns_saved.cmp(&a.cpu_ns_saved))
            .then(b.copy_bytes_removed.cmp(&a.copy_bytes_removed))
            .then(b.bytes.cmp(&a.bytes))
            .then(a.flow.cmp(&b.flow))
    });
    out
}

/// A flow summed over its fds (`trace --by fd` splits one label into several rows).
struct Flow {
    label: String,
    strategy: &'static str,
    source: String,
    destination: String,
    bytes: u64,
    calls: u64,
    /// Every fd of it is a socket whose peer is on this machine (known with `--by fd` only).
    loopback: bool,
}

impl Flow {
    fn chunk(&self) -> u64 {
        self.bytes.checked_div(self.calls).unwrap_or(self.bytes)
    }
}

fn merged(flows: &[FlowRow]) -> Vec<Flow> {
    let mut by_label: BTreeMap<String, Flow> = BTreeMap::new();
    for f in flows {
        let label = f.label();
        let local = f.fd_out.as_ref().is_some_and(|fd| peer_is_local(&fd.name));
        let entry = by_label.entry(label.clone()).or_insert(Flow {
            label,
            strategy: f.strategy,
            source: f.source.clone(),
            destination: f.destination.clone(),
            bytes: 0,
            calls: 0,
            loopback: true,
        });
        entry.bytes += f.bytes;
        entry.calls += f.calls;
        entry.loopback &= local;
    }
    by_label.into_values().collect()
}

/// A socket's `local -> peer` name (attribute::flows::identity_name) with a loopback peer.
fn peer_is_local(name: &str) -> bool {
    let Some((_, peer)) = name.split_once(" -> ") else { return false };
    peer.starts_with("127.") || peer.starts_with("[::1]") || peer.starts_with("[::ffff:127.")
}

/// Pages the row's sockets took by reference but copied at transmit (its route's device
/// cannot gather: `attribute::corrections::copied_at_transmit`).
fn copied_at_transmit(row: &Row) -> bool {
    row.zero_copy.by_kind.values().any(|p| p.copied_at_transmit_bytes.is_some_and(|b| b > 0))
}

/// What switching a flow to `recommend` removes.
struct Switch {
    recommend: Recommend,
    to_user: u64,
    from_user: u64,
    syscalls: u64,
    assumes: Vec<Assumption>,
}

/// The better strategy for a flow that copies, and what it removes. `None`: no rule applies
/// (the flow copies nothing, or nothing better is known for its ends).
fn switch_for(f: &Flow) -> Option<Switch> {
    use Assumption::*;
    let b = f.bytes;
    let switch = |recommend, to_user, from_user, syscalls, assumes: &[Assumption]| {
        Some(Switch { recommend, to_user, from_user, syscalls, assumes: assumes.to_vec() })
    };
    match (f.strategy, f.source.as_str(), f.destination.as_str()) {
        // sendfile(2) hands the file's page-cache pages to the socket by reference
        // (splice_to_socket, MSG_SPLICE_PAGES): the read's copy to user and the write's copy
        // back are both gone, and one call replaces the pair.
        ("read-write", "file", "tcp") => switch(Recommend::Sendfile, b, b, f.calls, &[OneReadPerWrite, DeviceGathers]),
        // splice(2) from a file into a pipe takes references to its page-cache folios
        // (filemap_splice_read): no copy in, none out of user memory.
        ("read-write", "file", "pipe") => switch(Recommend::Splice, b, b, f.calls, &[OneReadPerWrite]),
        // A relay: splice(2) from a TCP socket into a pipe takes references to the skb's
        // pages (skb_splice_bits), and from the pipe into the other socket passes them on.
        // Two splices per chunk for a read and a write: the copies go, the calls stay.
        ("read-write", "tcp", "tcp") => {
            switch(Recommend::SpliceThroughPipe, b, b, 0, &[PagedReceive, TwoSplicesPerChunk, DeviceGathers])
        }
        // Into a file the second splice writes the pipe's pages through the file's
        // write_iter (iter_file_splice_write): one copy into its page cache stays.
        ("read-write", "tcp", "file") => {
            switch(Recommend::SpliceThroughPipe, b, 0, 0, &[PagedReceive, TwoSplicesPerChunk, PipeIntoFileCopies])
        }
        // copy_file_range(2) copies page cache to page cache in the kernel (or shares the
        // blocks where the file system reflinks): the trip through user memory goes.
        ("read-write", "file", "file") => {
            switch(Recommend::CopyFileRange, b, 0, f.calls, &[OneReadPerWrite, KernelCopiesOnce])
        }
        // The mapping already spared the read's copy; write(2) from it still copies the
        // pages into the socket, which sendfile(2) takes by reference instead.
        ("mmap-write", "file (mapped)", "tcp") => {
            switch(Recommend::Sendfile, 0, b, 0, &[MappingNotCounted, DeviceGathers])
        }
        // MSG_ZEROCOPY (and io_uring's SEND_ZC) pin the user pages into the skb instead of
        // copying them (skb_zerocopy_iter_stream); the completion says when they are free.
        ("write" | "send", "memory", "tcp") => {
            switch(Recommend::MsgZerocopy, 0, b, 0, &[BufferHeldUntilCompletion, DeviceGathers])
        }
        _ => None,
    }
}

/// The row's MSG_ZEROCOPY completions say the kernel copied most of its zero-copy sends
/// (skb_orphan_frags_rx for a local peer, or a device that cannot gather): the reason, with
/// the counts.
fn zerocopy_mostly_copied(row: &Row) -> Option<Reason> {
    let c = row.msg_zerocopy_completions?;
    (c.completed > 0 && c.copied * 2 > c.completed)
        .then_some(Reason::ZerocopyCopied { copied: c.copied, completed: c.completed })
}

/// For a flow already on a zero-copy strategy: the strategy and why it does not pay here,
/// when the row measured that (copies anyway, or chunks too small for it).
fn zero_copy_not_paying(f: &Flow, row: &Row, transmit_copied: bool) -> Option<(Recommend, Reason)> {
    let network = matches!(f.destination.as_str(), "tcp" | "udp");
    match f.strategy {
        "msg-zerocopy" => {
            let reason = match zerocopy_mostly_copied(row) {
                Some(reason) => reason,
                None if f.chunk() < ZEROCOPY_MIN_CHUNK => Reason::SmallChunks,
                None => return None,
            };
            Some((Recommend::MsgZerocopy, reason))
        }
        "sendfile" if network && transmit_copied => {
            Some((Recommend::Sendfile, Reason::CopiedAtTransmit(Recommend::Sendfile)))
        }
        "splice" if network && transmit_copied => {
            Some((Recommend::Splice, Reason::CopiedAtTransmit(Recommend::Splice)))
        }
        _ => None,
    }
}

fn advice_for(f: &Flow, row: &Row, transmit_copied: bool, model: Option<&LoadedCostModel>) -> Option<Advice> {
    if f.bytes == 0 {
        return None;
    }
    if let Some((recommend, reason)) = zero_copy_not_paying(f, row, transmit_copied) {
        let nothing = Switch { recommend, to_user: 0, from_user: 0, syscalls: 0, assumes: Vec::new() };
        let saved = model.map(|m| price(&m.model, f.chunk(), &nothing));
        return Some(advice(f, &nothing, model, saved, Verdict::DoesNotPay, reason));
    }
    let mut sw = switch_for(f)?;
    // Where the row saw pages sent by reference copied at transmit, the switch's pages would
    // be too: the send's copy is replaced by the kernel's, not removed.
    if transmit_copied && sw.assumes.contains(&Assumption::DeviceGathers) {
        sw.from_user = 0;
        for a in &mut sw.assumes {
            if *a == Assumption::DeviceGathers {
                *a = Assumption::DeviceCopiesHere;
            }
        }
    }
    let saved = model.map(|m| price(&m.model, f.chunk(), &sw));
    let (verdict, reason) = verdict(f, &sw, row, transmit_copied, saved);
    Some(advice(f, &sw, model, saved, verdict, reason))
}

/// `saved`: the switch priced by the cost model, `None` without one.
fn verdict(f: &Flow, sw: &Switch, row: &Row, transmit_copied: bool, saved: Option<u64>) -> (Verdict, Reason) {
    let zerocopy = sw.recommend == Recommend::MsgZerocopy;
    if zerocopy && f.chunk() < ZEROCOPY_MIN_CHUNK {
        return (Verdict::DoesNotPay, Reason::SmallChunks);
    }
    if transmit_copied && sw.to_user + sw.from_user == 0 && sw.syscalls == 0 {
        return (Verdict::DoesNotPay, Reason::CopiedAtTransmit(sw.recommend));
    }
    if zerocopy && let Some(reason) = zerocopy_mostly_copied(row) {
        return (Verdict::DoesNotPay, reason);
    }
    if zerocopy && f.loopback {
        return (Verdict::DoesNotPay, Reason::Loopback);
    }
    match saved {
        Some(ns) if ns < MIN_SAVING_NS => (Verdict::DoesNotPay, Reason::TooFewBytes),
        Some(_) => (Verdict::Pays, Reason::SavesCpu),
        None if sw.to_user + sw.from_user < MIN_COPY_BYTES => (Verdict::DoesNotPay, Reason::TooFewBytes),
        None => (Verdict::Pays, Reason::RemovesCopies),
    }
}

/// ns saved: each direction's bytes removed at its cost per byte for this chunk size, plus
/// the syscalls removed.
fn price(m: &CostModel, chunk: u64, sw: &Switch) -> u64 {
    let ns = sw.to_user as f64 * m.copy_ns_per_byte(Direction::ToUser, chunk)
        + sw.from_user as f64 * m.copy_ns_per_byte(Direction::FromUser, chunk)
        + sw.syscalls as f64 * m.syscall_ns();
    ns.round() as u64
}

fn advice(
    f: &Flow,
    sw: &Switch,
    model: Option<&LoadedCostModel>,
    saved: Option<u64>,
    verdict: Verdict,
    reason: Reason,
) -> Advice {
    Advice {
        flow: f.label.clone(),
        bytes: f.bytes,
        calls: f.calls,
        chunk_bytes: f.chunk(),
        recommend: sw.recommend,
        copy_bytes_removed: sw.to_user + sw.from_user,
        to_user_bytes_removed: sw.to_user,
        from_user_bytes_removed: sw.from_user,
        syscalls_removed: sw.syscalls,
        mode_switches_removed: 2 * sw.syscalls,
        cpu_ns_saved: saved,
        unpriced_reason: model.is_none().then_some(UNPRICED_NO_MODEL),
        model: model.map(LoadedCostModel::describe),
        verdict,
        reason,
        assumes: sw.assumes.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        advise::cost::tests::flat,
        attribute::{
            flows::EVIDENCE,
            row::{self, Input},
        },
        model::{
            evidence::Evidence,
            report::GlobalEvents,
            row::{FdInfo, Part, Role, ZerocopyCompletions},
            run,
        },
    };

    /// A row that did nothing but these flows (built the way `attribute::row` builds them).
    fn row_with(flows: Vec<FlowRow>) -> Row {
        let input = Input {
            strategy: "read-write".into(),
            role: Role::Process,
            pid: 1,
            comm: "t".into(),
            path: None,
            by_class: &BTreeMap::new(),
            syscalls: &BTreeMap::new(),
            elapsed_s: None,
            msg_zerocopy: None,
        };
        let mut row = row::row(input, &run::Evidence::default(), &GlobalEvents::default());
        row.flows = flows;
        row
    }

    fn flow(strategy: &'static str, source: &str, destination: &str, bytes: u64, calls: u64) -> FlowRow {
        FlowRow {
            strategy,
            syscall: "write",
            source: source.into(),
            destination: destination.into(),
            calls,
            bytes,
            fd_in: None,
            fd_out: None,
            evidence: EVIDENCE,
        }
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn read_write_file_to_tcp_becomes_sendfile_priced_exactly() {
        // The read leg (file -> memory) is a flow of its own; it has no advice.
        let row = row_with(vec![flow("read-write", "file", "tcp", MIB, 256), flow("read", "file", "memory", MIB, 256)]);
        let model = flat(0.1, 0.2, 100.0);
        let advice = advise(&row, Some(&model));
        assert_eq!(advice.len(), 1, "{advice:?}");
        let a = &advice[0];
        assert_eq!(a.flow, "read-write file -> tcp");
        assert_eq!((a.bytes, a.calls, a.chunk_bytes), (MIB, 256, 4096));
        assert_eq!(a.recommend, Recommend::Sendfile);
        assert_eq!(a.copy_bytes_removed, 2_097_152);
        assert_eq!((a.to_user_bytes_removed, a.from_user_bytes_removed), (MIB, MIB));
        assert_eq!((a.syscalls_removed, a.mode_switches_removed), (256, 512));
        let expected = (1_048_576.0 * 0.1 + 1_048_576.0 * 0.2 + 256.0 * 100.0_f64).round() as u64;
        assert_eq!(a.cpu_ns_saved, Some(expected));
        assert_eq!(expected, 340_173);
        assert_eq!(a.unpriced_reason, None);
        assert_eq!(a.model.as_deref(), Some(model.describe().as_str()));
        assert_eq!(a.assumes, [Assumption::OneReadPerWrite, Assumption::DeviceGathers]);
        // 0.34 ms over the whole trace: not worth the change.
        assert_eq!((a.verdict, a.reason), (Verdict::DoesNotPay, Reason::TooFewBytes));
        // The same at 64 times the bytes saves 21.8 ms.
        let row = row_with(vec![flow("read-write", "file", "tcp", 64 * MIB, 16384)]);
        let a = &advise(&row, Some(&model))[0];
        assert_eq!((a.verdict, a.reason), (Verdict::Pays, Reason::SavesCpu));
        assert_eq!(a.cpu_ns_saved, Some(21_771_059));
    }

    #[test]
    fn without_a_model_the_saving_is_unpriced_and_copies_decide() {
        let row = row_with(vec![flow("read-write", "file", "tcp", 8 * MIB, 128)]);
        let a = &advise(&row, None)[0];
        assert_eq!((a.cpu_ns_saved, a.unpriced_reason, a.model.as_deref()), (None, Some(UNPRICED_NO_MODEL), None));
        assert_eq!((a.verdict, a.reason), (Verdict::Pays, Reason::RemovesCopies));
        let row = row_with(vec![flow("read-write", "file", "tcp", 256 * 1024, 64)]);
        assert_eq!(advise(&row, None)[0].reason, Reason::TooFewBytes);
    }

    /// On a loopback MSG_ZEROCOPY sender it says zero-copy would not pay here, and why.
    #[test]
    fn a_loopback_msg_zerocopy_sender_is_told_zero_copy_does_not_pay() {
        let mut row = row_with(vec![flow("msg-zerocopy", "memory", "tcp", 64 * MIB, 1024)]);
        row.msg_zerocopy_completions = Some(ZerocopyCompletions { completed: 1024, copied: 1024 });
        let advice = advise(&row, Some(&flat(0.1, 0.2, 100.0)));
        assert_eq!(advice.len(), 1, "{advice:?}");
        let a = &advice[0];
        assert_eq!((a.flow.as_str(), a.recommend), ("msg-zerocopy memory -> tcp", Recommend::MsgZerocopy));
        assert_eq!(a.verdict, Verdict::DoesNotPay);
        assert_eq!(a.reason, Reason::ZerocopyCopied { copied: 1024, completed: 1024 });
        assert_eq!(
            a.reason.text(),
            "the kernel copied the zero-copy sends anyway: 1024 of 1024 completions were copies \
             (loopback delivery or a device that cannot gather)"
        );
        assert_eq!((a.copy_bytes_removed, a.syscalls_removed, a.cpu_ns_saved), (0, 0, Some(0)));
        // The same sender whose sends were not copied is left alone.
        row.msg_zerocopy_completions = Some(ZerocopyCompletions { completed: 1024, copied: 0 });
        assert!(advise(&row, None).is_empty());
    }

    #[test]
    fn plain_sends_get_msg_zerocopy_above_10_kib_only() {
        let row = row_with(vec![flow("send", "memory", "tcp", 64 * MIB, 1024)]);
        let a = &advise(&row, Some(&flat(0.1, 0.2, 100.0)))[0];
        assert_eq!((a.recommend, a.verdict), (Recommend::MsgZerocopy, Verdict::Pays));
        assert_eq!((a.to_user_bytes_removed, a.from_user_bytes_removed, a.syscalls_removed), (0, 64 * MIB, 0));
        assert_eq!(a.cpu_ns_saved, Some((64.0 * MIB as f64 * 0.2).round() as u64));
        let row = row_with(vec![flow("write", "memory", "tcp", 64 * MIB, 16384)]);
        let a = &advise(&row, None)[0];
        assert_eq!((a.verdict, a.reason), (Verdict::DoesNotPay, Reason::SmallChunks));
    }

    #[test]
    fn sends_to_a_local_peer_would_be_copied() {
        let mut f = flow("send", "memory", "tcp", 64 * MIB, 1024);
        let fd = |name: &str| Some(FdInfo { fd: 3, name: name.into(), inode: 7 });
        f.fd_out = fd("127.0.0.1:40000 -> 127.0.0.1:8080");
        let mut g = f.clone();
        g.fd_out = fd("127.0.0.1:40002 -> 127.0.0.1:8080");
        let advice = advise(&row_with(vec![f.clone(), g]), None);
        assert_eq!(advice.len(), 1, "flows of one label are merged over their fds");
        assert_eq!((advice[0].bytes, advice[0].calls), (128 * MIB, 2048));
        assert_eq!((advice[0].verdict, advice[0].reason), (Verdict::DoesNotPay, Reason::Loopback));
        f.fd_out = fd("10.0.0.1:40000 -> 10.0.0.2:8080");
        assert_eq!(advise(&row_with(vec![f]), None)[0].verdict, Verdict::Pays);
    }

    #[test]
    fn relays_and_file_copies() {
        let row = row_with(vec![
            flow("read-write", "tcp", "tcp", 32 * MIB, 512),
            flow("read-write", "tcp", "file", 16 * MIB, 256),
            flow("read-write", "file", "file", 8 * MIB, 128),
            flow("receive", "tcp", "memory", 48 * MIB, 768),
        ]);
        let advice = advise(&row, None);
        let got: Vec<_> =
            advice.iter().map(|a| (a.flow.as_str(), a.recommend, a.copy_bytes_removed, a.syscalls_removed)).collect();
        assert_eq!(
            got,
            [
                ("read-write tcp -> tcp", Recommend::SpliceThroughPipe, 64 * MIB, 0),
                ("read-write tcp -> file", Recommend::SpliceThroughPipe, 16 * MIB, 0),
                ("read-write file -> file", Recommend::CopyFileRange, 8 * MIB, 128),
            ]
        );
        assert!(advice[2].assumes.contains(&Assumption::KernelCopiesOnce));
        assert!(advice[1].assumes.contains(&Assumption::PipeIntoFileCopies));
    }

    #[test]
    fn where_sendfile_copied_at_transmit_it_is_said_and_the_send_copy_stays() {
        let mut row = row_with(vec![
            flow("sendfile", "file", "tcp", 8 * MIB, 128),
            flow("read-write", "file", "tcp", 8 * MIB, 128),
            flow("mmap-write", "file (mapped)", "tcp", 8 * MIB, 128),
        ]);
        let mut spliced = Part::new(0, 128, Evidence::NoneSeen);
        spliced.copied_at_transmit_bytes = Some(8 * MIB);
        row.zero_copy.by_kind.insert("splice_pages", spliced);
        let advice = advise(&row, None);
        let by_flow = |label: &str| advice.iter().find(|a| a.flow == label).unwrap();
        let s = by_flow("sendfile file -> tcp");
        assert_eq!((s.verdict, s.reason), (Verdict::DoesNotPay, Reason::CopiedAtTransmit(Recommend::Sendfile)));
        assert_eq!(s.reason.text(), "sendfile copies at transmit here: the route's device cannot gather");
        let rw = by_flow("read-write file -> tcp");
        assert_eq!((rw.to_user_bytes_removed, rw.from_user_bytes_removed, rw.verdict), (8 * MIB, 0, Verdict::Pays));
        assert!(rw.assumes.contains(&Assumption::DeviceCopiesHere));
        let m = by_flow("mmap-write file (mapped) -> tcp");
        assert_eq!((m.verdict, m.reason), (Verdict::DoesNotPay, Reason::CopiedAtTransmit(Recommend::Sendfile)));
        assert_eq!(advice[0].flow, "read-write file -> tcp", "what pays comes first");
    }

    #[test]
    fn flows_with_nothing_better_get_no_advice() {
        let row = row_with(vec![
            flow("read", "file", "memory", 64 * MIB, 1024),
            flow("sendfile", "file", "tcp", 64 * MIB, 1024),
            flow("splice", "pipe", "tcp", 64 * MIB, 1024),
            flow("write", "memory", "/dev/null", 64 * MIB, 1024),
            flow("read-write", "file", "tcp", 0, 0),
        ]);
        assert!(advise(&row, Some(&flat(0.1, 0.2, 100.0))).is_empty());
    }

    #[test]
    fn advice_serializes_its_labels_as_text() {
        let row = row_with(vec![flow("read-write", "file", "tcp", 64 * MIB, 1024)]);
        let v = serde_json::to_value(&advise(&row, None)[0]).unwrap();
        assert_eq!(v["recommend"], "sendfile");
        assert_eq!(v["verdict"], "pays");
        assert_eq!(v["reason"], "removes at least 1 MiB of copies (unpriced)");
        assert_eq!(v["unpriced_reason"], UNPRICED_NO_MODEL);
        assert_eq!(v["assumes"][0], Assumption::OneReadPerWrite.text());
        assert!(v["cpu_ns_saved"].is_null());
    }
}
