//! The strategy a process's activity looks like, for processes the lab did not start.
use std::collections::BTreeMap;

use zc_trace_common::{OpClass, Stats, ZeroCopyKind};

/// The strategy a process's activity looks like, for processes the lab did not start: the
/// data syscall that delivered most of its payload names it.
pub fn infer_strategy(by_class: &BTreeMap<OpClass, Stats>) -> String {
    let out = |c: OpClass| by_class.get(&c).map_or(0, |s| s.payload_out);
    let inn = |c: OpClass| by_class.get(&c).map_or(0, |s| s.payload_in);
    // Pages moved into a pipe by reference (not payload: the pipe's reader delivers it).
    let into_pipe = |c: OpClass| {
        by_class.get(&c).map_or(0, |s| {
            s.zero_copy[ZeroCopyKind::PageRefs as usize].bytes + s.zero_copy[ZeroCopyKind::Vmsplice as usize].bytes
        })
    };
    let msg_zerocopy =
        by_class.get(&OpClass::Send).is_some_and(|s| s.zero_copy[ZeroCopyKind::MsgZerocopy as usize].bytes > 0);
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
        // Nothing delivered, but pages moved into a pipe without a copy: the producer of a
        // pipeline (pv, a splice-based reader), whose pipe's reader delivers the payload.
        None if into_pipe(OpClass::Vmsplice) > 0 && into_pipe(OpClass::Vmsplice) >= into_pipe(OpClass::Splice) => {
            "vmsplice"
        }
        None if into_pipe(OpClass::Splice) > 0 => "splice",
        None if by_class.get(&OpClass::Read).is_some_and(|s| s.direct_read.bytes > 0) => "direct-io",
        None if inn(OpClass::Read) + inn(OpClass::Recv) > 0 => "receive",
        None => "other",
    };
    name.into()
}

#[cfg(test)]
mod tests {
    use zc_trace_common::{End, Tally};

    use super::*;

    fn read_write_sender() -> BTreeMap<OpClass, Stats> {
        let mut read = Stats { payload_in: 8 << 20, ..Default::default() };
        read.to_user[End::PageCache as usize] = Tally { bytes: 8 << 20, calls: 128 };
        let mut write = Stats { payload_out: 8 << 20, ..Default::default() };
        write.from_user[End::Socket as usize] = Tally { bytes: 8 << 20, calls: 128 };
        [(OpClass::Read, read), (OpClass::Write, write)].into_iter().collect()
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

    /// pv (Debian's, 1.6) splices a file into its stdout pipe: nothing it does is payload
    /// (the pipe's reader delivers it), and a few reads of its own libraries must not make it
    /// a receiver.
    #[test]
    fn a_process_that_only_splices_into_a_pipe_is_a_splicer() {
        let mut splice = Stats::default();
        splice.zero_copy[ZeroCopyKind::PageRefs as usize] = Tally { bytes: 32 << 20, calls: 512 };
        let read = Stats { payload_in: 5396, ..Default::default() };
        let pv: BTreeMap<_, _> = [(OpClass::Splice, splice), (OpClass::Read, read)].into_iter().collect();
        assert_eq!(infer_strategy(&pv), "splice");
        let mut vm = Stats::default();
        vm.zero_copy[ZeroCopyKind::Vmsplice as usize] = Tally { bytes: 1 << 20, calls: 16 };
        let producer: BTreeMap<_, _> = [(OpClass::Vmsplice, vm)].into_iter().collect();
        assert_eq!(infer_strategy(&producer), "vmsplice");
    }
}
