//! A measured sender row beside the classic zero-copy story (`model::classic`): the classic
//! table counts, per request (one buffer served from a file to a socket), CPU copies, DMA
//! copies and user/kernel mode switches. The lab moves a file in chunks, so the comparison is
//! per byte for copies and per data call (one chunk) for mode switches.
use zc_trace_common::{ZeroCopyKind, delivers};

use crate::model::{
    classic::{CLASSIC, ClassicRow, Comparison},
    evidence::{Basis, Evidence},
    row::Row,
};

/// What the lab knows about the path the bytes took (the sink decides the device).
#[derive(Debug, Clone, Copy)]
pub struct Path {
    /// The payload went through the loopback device (no NIC, so no NIC DMA).
    pub loopback: bool,
    pub cold: bool,
    /// The sink is a TCP socket: a probe that covers TCP sends speaks for the payload's
    /// socket copies and splices, the rule for other sockets does not.
    pub tcp: bool,
}

/// The classic row a strategy's sender corresponds to. sendfile (and splice, the same
/// mechanism) is compared with the SG row when the kernel spliced pages by reference, with
/// the plain row when it copied.
fn classic_for(row: &Row) -> Option<ClassicRow> {
    let spliced = row.zero_copy.by_kind.get("splice_pages").is_some_and(|p| p.bytes > 0);
    match row.strategy.as_str() {
        "read-write" => Some(CLASSIC[0]),
        "mmap-write" => Some(CLASSIC[1]),
        "sendfile" | "splice" if spliced => Some(CLASSIC[3]),
        "sendfile" | "splice" => Some(CLASSIC[2]),
        _ => None,
    }
}

/// The data calls of a strategy, whose mode switches the classic table counts.
fn data_calls(row: &Row) -> u64 {
    let c = |n: &str| row.syscall_counts.get(n).copied().unwrap_or(0);
    match row.strategy.as_str() {
        "read-write" => c("read") + c("write"),
        "mmap-write" => c("mmap") + c("write"),
        "sendfile" => c("sendfile"),
        "splice" => c("splice"),
        _ => 0,
    }
}

/// How the figures a CPU verdict rests on were obtained: the evidence of every part that
/// counted bytes (CPU copies, and zero-copy moves that delivered the payload), taken for the
/// kind of socket the payload went to.
fn how_counted(row: &Row, path: Path) -> String {
    let cells = [&row.cpu_copy.to_user, &row.cpu_copy.from_user, &row.cpu_copy.kernel];
    let copies = cells.into_iter().flat_map(|c| c.by_end.values());
    let moves =
        ZeroCopyKind::ALL.into_iter().filter(|&k| delivers(k)).filter_map(|k| row.zero_copy.by_kind.get(k.name()));
    let counted = Evidence::mixed(
        copies
            .chain(moves)
            .filter(|p| p.bytes > 0)
            .flat_map(|p| p.evidence.parts())
            .filter(|e| e.applies_to(path.tcp))
            .cloned(),
    );
    let phrase = |b: &Basis| match b {
        Basis::Probe => "observed",
        Basis::SyscallSemantics => "derived from syscall semantics",
        Basis::NicPackets => "derived from the NIC's packets",
        Basis::ErrorQueue => "reported by the socket's error queue",
    };
    match counted.bases().as_slice() {
        [] => "nothing counted".into(),
        [Basis::Probe] => "observed".into(),
        [only] => format!("{} on this kernel", phrase(only)),
        several => format!("partly {}", several.iter().map(phrase).collect::<Vec<_>>().join(", partly ")),
    }
}

/// Compares a sender row with the classic model, or `None` for strategies the classic
/// table has no row for.
pub fn compare(row: &Row, path: Path, chunks: u64) -> Option<Comparison> {
    let classic = classic_for(row)?;
    let observed = row.copies_per_payload_byte;
    let how = how_counted(row, path);
    let cpu_verdict = match observed {
        None => "not measured: no payload".into(),
        Some(o) if (o - classic.cpu_copies as f64).abs() < 0.01 => {
            let mut v = format!("matches ({how})");
            if classic.strategy == CLASSIC[3].strategy {
                v += "; the route's device can gather (NETIF_F_SG), so the socket takes page-cache pages by \
                      reference (MSG_SPLICE_PAGES since Linux 6.5, sendpage before)";
            }
            if row.strategy == "splice" {
                v += "; splice file -> pipe -> socket is sendfile's own mechanism";
            }
            v
        }
        Some(o) => format!("differs: {o:.2} CPU copies per payload byte ({how})"),
    };

    let disk = row.dma.disk_read_bytes;
    let disk_dma = disk.is_some_and(|d| row.payload_bytes > 0 && d * 100 >= row.payload_bytes * 99);
    let mut dma_parts = Vec::new();
    let mut dma_seen = 0;
    match disk {
        None => dma_parts.push("disk: not observable (no block tracepoint)".to_string()),
        Some(_) if disk_dma => {
            dma_seen += 1;
            dma_parts.push("disk -> page cache: observed (block_rq_issue)".into());
        }
        Some(_) if path.cold => dma_parts.push("disk: less than the payload was read from disk".into()),
        Some(_) => dma_parts.push("disk: none, the file was in the page cache (run with --cold)".into()),
    }
    if path.loopback {
        dma_parts.push("NIC: none, loopback moves packets in memory".into());
    } else {
        match row.dma.dma_api_maps {
            Some(n) if n > 0 => {
                dma_seen += 1;
                dma_parts.push(format!("NIC: {n} DMA-API mappings observed"));
            }
            _ => dma_parts.push("NIC: no DMA-API mappings observed".into()),
        }
    }
    let dma_verdict = if dma_seen == classic.dma_copies {
        "matches".into()
    } else {
        format!("differs: {dma_seen} of {} DMA copies happened here", classic.dma_copies)
    };

    let calls = data_calls(row);
    let per_call = (chunks > 0 && calls > 0).then(|| 2.0 * calls as f64 / chunks as f64);
    let switch_verdict = match per_call {
        None => "not measured".into(),
        Some(p) if (p - classic.mode_switches as f64).abs() <= 0.1 * classic.mode_switches as f64 => {
            format!("matches: {p:.2} per chunk from its data syscalls")
        }
        Some(p) if row.strategy == "mmap-write" => format!(
            "differs: {p:.2} per chunk; the classic table maps once per request, this workload maps every chunk"
        ),
        Some(p) if row.strategy == "splice" => {
            format!("differs: {p:.2} per chunk; splice needs two calls per chunk (file -> pipe, pipe -> socket)")
        }
        Some(p) => format!("differs: {p:.2} per chunk"),
    };
    Some(Comparison {
        strategy: row.strategy.clone(),
        classic,
        observed_cpu_copies_per_byte: observed,
        cpu_verdict,
        observed_dma_copies: dma_parts.join("; "),
        dma_verdict,
        observed_mode_switches_per_call: per_call,
        switch_verdict,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use zc_trace_common::{End, OpClass, Stats, Tally};

    use super::*;
    use crate::{
        attribute::{
            corrections::copied_at_transmit,
            row::{self, Input},
            sources::{NET_XMIT, SKB_COPY},
        },
        model::{evidence::Attach, report::GlobalEvents, row::Role, run},
        probe::catalogue,
    };

    const MIB8: u64 = 8 << 20;
    const TCP: Path = Path { loopback: true, cold: false, tcp: true };

    /// What the session would report with every function probe attached by `attach`, or
    /// with none (`None`: the tracepoint tier).
    fn tier(attach: Option<Attach>) -> run::Evidence {
        let mut ev = run::Evidence { tracepoints: vec![SKB_COPY], ..Default::default() };
        for f in catalogue::FUNCTIONS {
            if let Some(a) = attach {
                ev.functions.insert(f.function, a);
            }
        }
        ev
    }

    fn sender(strategy: &str, by_class: &BTreeMap<OpClass, Stats>, ev: &run::Evidence) -> Row {
        let input = Input {
            strategy: strategy.into(),
            role: Role::Sender,
            pid: 1,
            comm: "zc".into(),
            path: None,
            by_class,
            syscalls: &BTreeMap::new(),
            elapsed_s: None,
            msg_zerocopy: None,
        };
        row::row(input, ev, &GlobalEvents::default())
    }

    /// 8 MiB read from the page cache and written to a socket: two CPU copies per byte.
    fn read_write() -> BTreeMap<OpClass, Stats> {
        let mut read = Stats { payload_in: MIB8, ..Default::default() };
        read.to_user[End::PageCache as usize] = Tally { bytes: MIB8, calls: 128 };
        let mut write = Stats { payload_out: MIB8, ..Default::default() };
        write.from_user[End::Socket as usize] = Tally { bytes: MIB8, calls: 128 };
        [(OpClass::Read, read), (OpClass::Write, write)].into_iter().collect()
    }

    /// 8 MiB sent by reference to a socket that can gather.
    fn sendfile() -> BTreeMap<OpClass, Stats> {
        let mut send = Stats { payload_out: MIB8, spliced_to_network: MIB8, ..Default::default() };
        send.zero_copy[ZeroCopyKind::SplicePages as usize] = Tally { bytes: MIB8, calls: 128 };
        [(OpClass::Sendfile, send)].into_iter().collect()
    }

    #[test]
    fn copies_seen_by_function_probes_are_called_observed() {
        for attach in [Attach::Fexit, Attach::Kretprobe] {
            let row = sender("read-write", &read_write(), &tier(Some(attach)));
            assert!(row.cpu_copy.to_user.by_end["page_cache"].evidence.is_observed());
            let c = compare(&row, TCP, 128).unwrap();
            assert_eq!(c.cpu_verdict, "matches (observed)", "{attach}");
        }
        let c = compare(&sender("sendfile", &sendfile(), &tier(Some(Attach::Fexit))), TCP, 128).unwrap();
        assert!(c.cpu_verdict.starts_with("matches (observed); the route's device can gather"), "{}", c.cpu_verdict);
    }

    #[test]
    fn copies_derived_at_syscall_exit_are_called_derived() {
        let c = compare(&sender("read-write", &read_write(), &tier(None)), TCP, 128).unwrap();
        assert_eq!(c.cpu_verdict, "matches (derived from syscall semantics on this kernel)");
        let c = compare(&sender("sendfile", &sendfile(), &tier(None)), TCP, 128).unwrap();
        assert!(
            c.cpu_verdict.starts_with("matches (derived from syscall semantics on this kernel);"),
            "{}",
            c.cpu_verdict
        );
    }

    #[test]
    fn a_tcp_probe_does_not_speak_for_other_sockets() {
        // A UNIX sink: tcp_sendmsg_locked never saw the writes, the rule for other sockets
        // counted them; filemap_read still saw the reads.
        let unix = Path { loopback: false, cold: false, tcp: false };
        let c = compare(&sender("read-write", &read_write(), &tier(Some(Attach::Fexit))), unix, 128).unwrap();
        assert_eq!(c.cpu_verdict, "matches (partly observed, partly derived from syscall semantics)");
    }

    #[test]
    fn copies_at_transmit_are_derived_from_the_nic_packets() {
        let mut classes = sendfile();
        let none = Stats {
            net_tx: Tally { bytes: MIB8, calls: 5800 },
            net_tx_linear_bytes: MIB8,
            transmit_copied: Tally { bytes: MIB8, calls: 5800 },
            ..Default::default()
        };
        classes.insert(OpClass::None, none);
        let mut ev = tier(Some(Attach::Fexit));
        ev.tracepoints.push(NET_XMIT);
        let mut row = sender("sendfile", &classes, &ev);
        copied_at_transmit(&mut row);
        let c = compare(&row, Path { loopback: false, cold: false, tcp: true }, 128).unwrap();
        // All spliced bytes were copied: the row is the plain sendfile row, one copy per byte.
        assert_eq!(c.classic.strategy, "sendfile()");
        assert_eq!(c.cpu_verdict, "matches (derived from the NIC's packets on this kernel)");
    }
}
