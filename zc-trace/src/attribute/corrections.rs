//! Corrections to a built row from what the syscalls alone could not tell: MSG_ZEROCOPY sends
//! the kernel copied after all (its error queue says so), and pages TCP took by reference
//! that software GSO copied at transmit (the NIC's packets say so).
use crate::model::{
    evidence::{CompletionsFrom, Evidence, Rule},
    row::{CpuCopy, Part, Row, ZeroCopy, ZerocopyCompletions},
};

/// MSG_ZEROCOPY pins pages at send time, but the kernel may still copy them later (always
/// when delivering to a local socket: skb_orphan_frags_rx). The completions on the error
/// queue tell which sends were copied (those bytes move from zero-copy to a kernel copy) and
/// which were not; sends no completion has told about yet are taken out of the zero-copy
/// figure as "outcome unknown". Bytes are shared out by sends (completions count sends).
pub(super) fn apply_zerocopy_completions(
    cpu: &mut CpuCopy,
    zc: &mut ZeroCopy,
    done: ZerocopyCompletions,
    from: CompletionsFrom,
) {
    let Some(part) = zc.by_kind.get_mut("msg_zerocopy") else { return };
    let sends = part.calls;
    if sends == 0 {
        return;
    }
    // Completions of sends made before tracing started are not ours to count.
    let completed = done.completed.min(sends);
    let copied = done.copied.min(completed);
    let share = |calls: u64| ((part.bytes as u128 * calls as u128) / sends as u128) as u64;
    let (copied_bytes, unknown_bytes) = (share(copied), share(sends - completed));
    if unknown_bytes > 0 {
        part.bytes -= unknown_bytes;
        part.calls -= sends - completed;
        part.outcome_unknown_bytes = Some(unknown_bytes);
        part.evidence.push(Evidence::ZerocopyOutcomeUnknown);
        zc.bytes -= unknown_bytes.min(zc.bytes);
        zc.evidence.push(Evidence::ZerocopyOutcomeUnknown);
    }
    if copied == 0 {
        return;
    }
    part.bytes -= copied_bytes;
    part.calls -= copied;
    zc.bytes -= copied_bytes.min(zc.bytes);
    zc.evidence.push(Evidence::ZerocopyCopiedMoved(from));
    let kernel = &mut cpu.kernel;
    kernel.bytes += copied_bytes;
    kernel.calls += copied;
    if kernel.calls == copied {
        kernel.evidence = Evidence::ZerocopyCopied(from);
    } else {
        kernel.evidence.push(Evidence::ZerocopyCopied(from));
    }
    kernel.by_end.insert("socket", Part::new(copied_bytes, copied, Evidence::ZerocopyCopied(from)));
}

/// A TCP socket's route always advertises NETIF_F_SG (sk_setup_caps adds it wherever GSO is
/// possible, and TCP always uses GSO), so `tcp_sendmsg_locked` takes spliced page-cache pages
/// by reference even when the NIC cannot gather. Such a NIC gets linear packets: software GSO
/// copies the pages into them at transmit. Socket by socket, when fewer bytes reached the NIC
/// in page frags than the socket took by reference, the difference was copied there
/// (`SocketTransmit::copied`, summed into the row's `transmit_copied`): moved from zero-copy
/// to a kernel copy, labelled as derived from the NIC's packets. Per socket, so that one
/// socket's paged packets (a device that gathers, or plain writes) cannot hide another's
/// copy, and a UNIX splice beside linear TCP packets invents none.
pub fn copied_at_transmit(row: &mut Row) {
    let Some(spliced) = row.zero_copy.spliced_to_network_bytes else { return };
    let Some((copied, calls)) = row.zero_copy.transmit_copied else { return };
    let copied = copied.min(spliced);
    if copied == 0 {
        return;
    }
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
    use std::collections::BTreeMap;

    use zc_trace_common::{OpClass, SocketTransmit, Stats, Tally, ZeroCopyKind};

    use super::*;
    use crate::{
        attribute::{
            row::{self, Input},
            sources::NET_XMIT,
        },
        model::{report::GlobalEvents, row::Role, run},
    };

    /// A sendfile sender whose 8 MiB its one TCP socket took by reference reached the NIC
    /// `paged` bytes in page frags and the rest linear.
    fn sendfile_row(paged: u64) -> Row {
        let sent = SocketTransmit { spliced: 8 << 20, paged, linear: (8 << 20) + 400_000 - paged, packets: 5800 };
        sendfile_row_with(&[sent])
    }

    /// The same sender over several sockets.
    fn sendfile_row_with(sockets: &[SocketTransmit]) -> Row {
        let spliced: u64 = sockets.iter().map(|s| s.spliced).sum();
        let mut send = Stats { payload_out: spliced, spliced_to_network: spliced, ..Default::default() };
        send.zero_copy[ZeroCopyKind::SplicePages as usize] = Tally { bytes: spliced, calls: 128 };
        let mut none = Stats::default();
        for s in sockets {
            none.net_tx.bytes += s.paged + s.linear;
            none.net_tx.calls += s.packets;
            none.net_tx_paged_bytes += s.paged;
            none.net_tx_linear_bytes += s.linear;
            if s.copied() > 0 {
                none.transmit_copied.bytes += s.copied();
                none.transmit_copied.calls += s.packets;
            }
        }
        let classes: BTreeMap<_, _> = [(OpClass::Sendfile, send), (OpClass::None, none)].into_iter().collect();
        let evidence = run::Evidence { tracepoints: vec![NET_XMIT], ..Default::default() };
        let input = Input {
            strategy: "sendfile".into(),
            role: Role::Sender,
            pid: 1,
            comm: "zc".into(),
            path: None,
            by_class: &classes,
            syscalls: &BTreeMap::new(),
            elapsed_s: None,
            msg_zerocopy: None,
        };
        row::row(input, &evidence, &GlobalEvents::default())
    }

    #[test]
    fn spliced_pages_sent_linear_were_copied_at_transmit() {
        let mut row = sendfile_row(0);
        copied_at_transmit(&mut row);
        assert_eq!(row.zero_copy.bytes, 0);
        assert_eq!(row.cpu_copy.kernel.bytes, 8 << 20);
        let linearized = Evidence::Derived(Rule::LinearizedAtTransmit);
        assert_eq!(row.cpu_copy.kernel.by_end["socket"].evidence, linearized);
        assert_eq!(row.cpu_copy.kernel.evidence, linearized, "nothing else counted kernel copies");
        // How many bytes were taken out is a field, not words in the evidence.
        let spliced = &row.zero_copy.by_kind["splice_pages"];
        assert_eq!(spliced.copied_at_transmit_bytes, Some(8 << 20));
        assert_eq!(
            spliced.evidence.to_string(),
            format!("{} - copied at transmit (see cpu_copy.kernel)", Rule::SpliceToGatheringSocket.text())
        );
        assert_eq!(row.copies_per_payload_byte, Some(1.0));
    }

    /// Pages spliced into a UNIX socket never reach a NIC: beside linear TCP packets (a
    /// small HTTP response, say) they are no copy at transmit.
    #[test]
    fn a_unix_splice_beside_linear_packets_invents_no_copy() {
        let mut row = sendfile_row(0);
        row.zero_copy.spliced_to_network_bytes = None;
        copied_at_transmit(&mut row);
        assert_eq!((row.zero_copy.bytes, row.cpu_copy.kernel.bytes), (8 << 20, 0));
    }

    /// Two sockets: one spliced 8 MiB to a device that cannot gather (linear packets), the
    /// other wrote 16 MiB through a device that gathers (TCP copied them into page frags).
    /// Row-wide, the paged bytes would hide the copy; socket by socket they do not.
    #[test]
    fn one_sockets_paged_packets_do_not_hide_anothers_copy() {
        let spliced = SocketTransmit { spliced: 8 << 20, paged: 0, linear: (8 << 20) + 300_000, packets: 5800 };
        let written = SocketTransmit { spliced: 0, paged: 16 << 20, linear: 500_000, packets: 11_000 };
        let mut row = sendfile_row_with(&[spliced, written]);
        copied_at_transmit(&mut row);
        assert_eq!(row.cpu_copy.kernel.bytes, 8 << 20);
        assert_eq!(row.cpu_copy.kernel.calls, 5800, "the packets of the socket that copied");
        assert_eq!(row.zero_copy.bytes, 0);
    }

    /// No packets seen (the transmit tracepoint missing): no correction either way.
    #[test]
    fn without_the_packets_nothing_is_decided() {
        let mut row = sendfile_row(0);
        row.zero_copy.transmit_copied = None;
        copied_at_transmit(&mut row);
        assert_eq!((row.zero_copy.bytes, row.cpu_copy.kernel.bytes), (8 << 20, 0));
    }

    #[test]
    fn spliced_pages_sent_in_frags_stay_zero_copy() {
        let mut row = sendfile_row((8 << 20) + 2000);
        copied_at_transmit(&mut row);
        assert_eq!(row.zero_copy.bytes, 8 << 20);
        assert_eq!(row.cpu_copy.kernel.bytes, 0);
    }
}
