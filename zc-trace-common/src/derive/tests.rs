//! The copy rules, table by table: every syscall class against every fd kind, with the
//! variants that change a rule (flags, a route that can gather, a file mapping, the
//! file-system magic), and the function-probe rules. What changes when function probes
//! observe a path, and the properties of every combination, are in `probed.rs`.

extern crate std;

use std::{format, string::String, vec::Vec};

use super::*;
use crate::{FdKind::*, Tally};

mod probed;

/// Bytes the syscall returned, in every case.
const N: u64 = 1000;

/// A counter of [`Stats`] that a rule adds to.
#[derive(Copy, Clone, Debug)]
enum C {
    ToUser(End),
    FromUser(End),
    Kernel(End),
    ZeroCopy(ZeroCopyKind),
    DirectRead,
    DirectWrite,
    Unclassified,
    PayloadIn,
    PayloadOut,
    IntoPipe,
    FromFileMapping,
    ToUserPcDerived,
    FromUserPcDerived,
    PageRefsDerived,
    SplicedToNetwork,
}

use C::*;

const PAGE_CACHE: End = End::PageCache;
const SOCKET: End = End::Socket;
const PIPE: End = End::Pipe;
const OTHER: End = End::Other;
const PAGE_REFS: C = ZeroCopy(ZeroCopyKind::PageRefs);
const SPLICE_PAGES: C = ZeroCopy(ZeroCopyKind::SplicePages);
const PINNED: C = ZeroCopy(ZeroCopyKind::MsgZerocopy);
const VMSPLICE: C = ZeroCopy(ZeroCopyKind::Vmsplice);
const FILE_RANGE: C = ZeroCopy(ZeroCopyKind::FileRange);

const ZC: u64 = MSG_ZEROCOPY as u64;
const ALL_OBSERVED: u32 = observed::FILE_READ
    | observed::FILE_WRITE
    | observed::TCP_SEND
    | observed::TCP_SPLICE
    | observed::SPLICE_READ
    | observed::SPLICE_WRITE_FILE
    | observed::PIPE;
/// A file system that copies (ext4).
const EXT4_MAGIC: u64 = 0xEF53;

/// The `Stats` that counting `bytes` in each listed counter gives (a tally: one call).
fn stats_of(counts: &[(C, u64)]) -> Stats {
    let mut s = Stats::default();
    for &(c, n) in counts {
        let tally = |t: &mut Tally| t.add(n);
        match c {
            ToUser(e) => tally(&mut s.to_user[e as usize]),
            FromUser(e) => tally(&mut s.from_user[e as usize]),
            Kernel(e) => tally(&mut s.kernel[e as usize]),
            ZeroCopy(k) => tally(&mut s.zero_copy[k as usize]),
            DirectRead => tally(&mut s.direct_read),
            DirectWrite => tally(&mut s.direct_write),
            Unclassified => tally(&mut s.unclassified),
            PayloadIn => s.payload_in += n,
            PayloadOut => s.payload_out += n,
            IntoPipe => s.into_pipe += n,
            FromFileMapping => s.from_file_mapping += n,
            ToUserPcDerived => s.to_user_pc_derived += n,
            FromUserPcDerived => s.from_user_pc_derived += n,
            PageRefsDerived => s.page_refs_derived += n,
            SplicedToNetwork => s.spliced_to_network += n,
        }
    }
    s
}

/// Every listed counter, `N` bytes each.
fn all_n(counters: &[C]) -> Vec<(C, u64)> {
    counters.iter().map(|&c| (c, N)).collect()
}

/// The function probes of a test: which paths they observe, and the bytes they counted on
/// the thread (by [`PendingKind`]), taken as the kernel's `PENDING` map would be.
#[derive(Default)]
struct FakeProbes {
    observed: u32,
    pending: [u64; 3],
    takes: u32,
}

impl Probes for FakeProbes {
    fn observes(&self, bit: u32) -> bool {
        self.observed & bit != 0
    }

    fn take_pending(&mut self, kind: PendingKind, n: u64) -> u64 {
        // The kernel side pays a map operation here: only for a path a probe observes.
        let bit = match kind {
            PendingKind::Read => observed::FILE_READ,
            PendingKind::Write => observed::FILE_WRITE,
            PendingKind::SpliceRead => observed::SPLICE_READ,
        };
        assert!(self.observes(bit), "pending {kind:?} taken although its path is not observed");
        self.takes += 1;
        let slot = &mut self.pending[kind as usize];
        let seen = (*slot).min(n);
        *slot -= seen;
        n - seen
    }
}

fn op(class: OpClass, from: FdKind, to: FdKind) -> Op {
    Op { class, from, to, flags: 0, gather: false, from_mapping: false, fs_magic: 0 }
}

fn run(op: &Op, probes: &mut FakeProbes) -> Stats {
    let mut s = Stats::default();
    account(&mut s, op, N, probes);
    s
}

/// Checks `op` with no function probe against `expect` (`N` bytes in each counter).
fn check(op: Op, expect: &[C], failures: &mut Vec<String>) {
    let got = run(&op, &mut FakeProbes::default());
    if got != stats_of(&all_n(expect)) {
        failures.push(format!("{op:?}: expected {expect:?}, got {got:?}"));
    }
}

fn report(failures: Vec<String>) {
    assert!(failures.is_empty(), "{} rule(s) differ:\n{}", failures.len(), failures.join("\n"));
}

/// A table with one row per fd kind must name each kind once.
fn assert_every_kind<T>(table: &[(FdKind, T)]) {
    assert_eq!(table.len(), FdKind::COUNT);
    for kind in FdKind::ALL {
        assert_eq!(table.iter().filter(|(k, _)| *k == kind).count(), 1, "{kind:?}");
    }
}

/// read(2) from each kind, no function probe.
const READ_FROM: [(FdKind, &[C]); FdKind::COUNT] = [
    (Unknown, &[PayloadIn, Unclassified]),
    (File, &[PayloadIn, ToUser(PAGE_CACHE)]),
    (FileDirect, &[PayloadIn, DirectRead]),
    (Pipe, &[PayloadIn, ToUser(PIPE)]),
    // The copy is observed by skb:skb_copy_datagram_iovec, never derived.
    (Tcp, &[PayloadIn]),
    (Udp, &[PayloadIn]),
    (Unix, &[PayloadIn]),
    (OtherSocket, &[PayloadIn]),
    (CharDevice, &[PayloadIn, ToUser(OTHER)]),
    (Other, &[PayloadIn, Unclassified]),
    (DevNull, &[PayloadIn, ToUser(OTHER)]),
    (UserMemory, &[PayloadIn, Unclassified]),
];

/// write(2) to each kind, no function probe.
const WRITE_TO: [(FdKind, &[C]); FdKind::COUNT] = [
    (Unknown, &[PayloadOut, Unclassified]),
    (File, &[PayloadOut, FromUser(PAGE_CACHE)]),
    (FileDirect, &[PayloadOut, DirectWrite]),
    (Pipe, &[IntoPipe, FromUser(PIPE)]),
    (Tcp, &[PayloadOut, FromUser(SOCKET)]),
    (Udp, &[PayloadOut, FromUser(SOCKET)]),
    (Unix, &[PayloadOut, FromUser(SOCKET)]),
    (OtherSocket, &[PayloadOut, FromUser(SOCKET)]),
    (CharDevice, &[PayloadOut, FromUser(OTHER)]),
    (Other, &[PayloadOut, Unclassified]),
    // write_null() does not touch the buffer.
    (DevNull, &[PayloadOut]),
    (UserMemory, &[PayloadOut, Unclassified]),
];

/// send(2) to each kind: without flags, with MSG_ZEROCOPY on a route that cannot gather,
/// and with MSG_ZEROCOPY on one that can. Only TCP looks at the route.
type SendRow = (FdKind, [&'static [C]; 3]);
const SEND_TO: [SendRow; FdKind::COUNT] = {
    const COPY: &[C] = &[PayloadOut, FromUser(SOCKET)];
    const PIN: &[C] = &[PayloadOut, PINNED];
    [
        (Unknown, [COPY, PIN, PIN]),
        (File, [COPY, PIN, PIN]),
        (FileDirect, [COPY, PIN, PIN]),
        (Pipe, [COPY, PIN, PIN]),
        (Tcp, [COPY, COPY, PIN]),
        (Udp, [COPY, PIN, PIN]),
        (Unix, [COPY, PIN, PIN]),
        (OtherSocket, [COPY, PIN, PIN]),
        (CharDevice, [COPY, PIN, PIN]),
        (Other, [COPY, PIN, PIN]),
        (DevNull, [COPY, PIN, PIN]),
        (UserMemory, [COPY, PIN, PIN]),
    ]
};

/// Pages moved into a socket (or elsewhere) from a pipe or by sendfile from a file: on a
/// route that cannot gather, and on one that can.
type SpliceRow = (FdKind, [&'static [C]; 2]);
const SENDFILE_FROM_FILE_TO: [SpliceRow; FdKind::COUNT] = {
    const ODD: &[C] = &[PayloadOut, Unclassified];
    const SPLICED: &[C] = &[PayloadOut, SPLICE_PAGES];
    const COPIED: &[C] = &[PayloadOut, Kernel(SOCKET)];
    // By reference into a network socket: pages that may reach a NIC.
    const NET_SPLICED: &[C] = &[PayloadOut, SPLICE_PAGES, SplicedToNetwork];
    [
        (Unknown, [ODD, ODD]),
        (File, [&[PayloadOut, Kernel(PAGE_CACHE)], &[PayloadOut, Kernel(PAGE_CACHE)]]),
        (FileDirect, [ODD, ODD]),
        (Pipe, [&[IntoPipe, PAGE_REFS], &[IntoPipe, PAGE_REFS]]),
        (Tcp, [COPIED, NET_SPLICED]),
        (Udp, [COPIED, NET_SPLICED]),
        // No device: always by reference.
        (Unix, [SPLICED, SPLICED]),
        (OtherSocket, [COPIED, SPLICED]),
        (CharDevice, [ODD, ODD]),
        (Other, [ODD, ODD]),
        // splice_write_null discards the pages.
        (DevNull, [&[PayloadOut], &[PayloadOut]]),
        (UserMemory, [ODD, ODD]),
    ]
};

/// splice(pipe, out) to each kind.
const SPLICE_FROM_PIPE_TO: [SpliceRow; FdKind::COUNT] = {
    const ODD: &[C] = &[PayloadOut, Unclassified];
    const SPLICED: &[C] = &[PayloadOut, SPLICE_PAGES];
    const COPIED: &[C] = &[PayloadOut, Kernel(SOCKET)];
    // By reference into a network socket: pages that may reach a NIC.
    const NET_SPLICED: &[C] = &[PayloadOut, SPLICE_PAGES, SplicedToNetwork];
    [
        (Unknown, [ODD, ODD]),
        (File, [&[PayloadOut, Kernel(PAGE_CACHE)], &[PayloadOut, Kernel(PAGE_CACHE)]]),
        (FileDirect, [ODD, ODD]),
        // pipe -> pipe moves buffers by reference.
        (Pipe, [&[IntoPipe, PAGE_REFS], &[IntoPipe, PAGE_REFS]]),
        (Tcp, [COPIED, NET_SPLICED]),
        (Udp, [COPIED, NET_SPLICED]),
        (Unix, [SPLICED, SPLICED]),
        (OtherSocket, [COPIED, SPLICED]),
        (CharDevice, [ODD, ODD]),
        (Other, [ODD, ODD]),
        (DevNull, [&[PayloadOut], &[PayloadOut]]),
        (UserMemory, [ODD, ODD]),
    ]
};

#[test]
fn the_tables_name_every_fd_kind() {
    assert_every_kind(&READ_FROM);
    assert_every_kind(&WRITE_TO);
    assert_every_kind(&SEND_TO);
    assert_every_kind(&SENDFILE_FROM_FILE_TO);
    assert_every_kind(&SPLICE_FROM_PIPE_TO);
}

#[test]
fn read_from_every_kind() {
    let mut failures = Vec::new();
    for (kind, expect) in READ_FROM {
        check(op(OpClass::Read, kind, Unknown), expect, &mut failures);
    }
    report(failures);
}

#[test]
fn write_to_every_kind() {
    let mut failures = Vec::new();
    for (kind, expect) in WRITE_TO {
        check(op(OpClass::Write, Unknown, kind), expect, &mut failures);
        // A buffer in a file mapping (mmap + write) adds only the strategy's mark.
        let mapped = Op { from_mapping: true, ..op(OpClass::Write, Unknown, kind) };
        check(mapped, &[expect, &[FromFileMapping]].concat(), &mut failures);
    }
    report(failures);
}

#[test]
fn send_to_every_kind_with_and_without_msg_zerocopy() {
    let mut failures = Vec::new();
    for (kind, [plain, zerocopy_no_gather, zerocopy_gather]) in SEND_TO {
        check(op(OpClass::Send, Unknown, kind), plain, &mut failures);
        check(Op { gather: true, ..op(OpClass::Send, Unknown, kind) }, plain, &mut failures);
        check(Op { flags: ZC, ..op(OpClass::Send, Unknown, kind) }, zerocopy_no_gather, &mut failures);
        check(Op { flags: ZC, gather: true, ..op(OpClass::Send, Unknown, kind) }, zerocopy_gather, &mut failures);
        // Other flag bits change nothing (MSG_DONTWAIT | MSG_NOSIGNAL).
        check(Op { flags: 0x40 | 0x4000, ..op(OpClass::Send, Unknown, kind) }, plain, &mut failures);
    }
    report(failures);
}

#[test]
fn recv_counts_only_payload_from_every_kind() {
    let mut failures = Vec::new();
    for from in FdKind::ALL {
        check(op(OpClass::Recv, from, Unknown), &[PayloadIn], &mut failures);
    }
    report(failures);
}

#[test]
fn sendfile_between_every_pair_of_kinds() {
    let mut failures = Vec::new();
    for (to, [no_gather, gather]) in SENDFILE_FROM_FILE_TO {
        check(op(OpClass::Sendfile, File, to), no_gather, &mut failures);
        check(Op { gather: true, ..op(OpClass::Sendfile, File, to) }, gather, &mut failures);
    }
    // Only a page-cache file is a known source (an O_DIRECT one included: not derived).
    for from in FdKind::ALL.into_iter().filter(|&k| k != File) {
        for to in FdKind::ALL {
            for gather in [false, true] {
                check(Op { gather, ..op(OpClass::Sendfile, from, to) }, &[PayloadOut, Unclassified], &mut failures);
            }
        }
    }
    report(failures);
}

#[test]
fn splice_between_every_pair_of_kinds() {
    let mut failures = Vec::new();
    for (to, [no_gather, gather]) in SPLICE_FROM_PIPE_TO {
        check(op(OpClass::Splice, Pipe, to), no_gather, &mut failures);
        check(Op { gather: true, ..op(OpClass::Splice, Pipe, to) }, gather, &mut failures);
    }
    for from in FdKind::ALL.into_iter().filter(|&k| k != Pipe) {
        // Into a pipe, whatever the source, buffers move by reference.
        check(op(OpClass::Splice, from, Pipe), &[IntoPipe, PAGE_REFS], &mut failures);
        // Neither end a pipe: the kernel refuses it, nothing is derived.
        for to in FdKind::ALL.into_iter().filter(|&k| k != Pipe) {
            check(op(OpClass::Splice, from, to), &[PayloadOut, Unclassified], &mut failures);
        }
    }
    report(failures);
}

#[test]
fn vmsplice_tee_and_copy_file_range_for_every_kind() {
    let mut failures = Vec::new();
    for a in FdKind::ALL {
        let vmsplice: &[C] = if a == Pipe { &[IntoPipe, VMSPLICE] } else { &[Unclassified] };
        check(op(OpClass::Vmsplice, a, Unknown), vmsplice, &mut failures);
        for b in FdKind::ALL {
            check(op(OpClass::Tee, a, b), &[IntoPipe, PAGE_REFS], &mut failures);
            for (magic, shares) in [(XFS_SUPER_MAGIC, true), (BTRFS_SUPER_MAGIC, true), (EXT4_MAGIC, false), (0, false)]
            {
                let expect: &[C] = match (a, b, shares) {
                    (File, File, true) => &[PayloadOut, FILE_RANGE],
                    (File, File, false) => &[PayloadOut, Kernel(PAGE_CACHE)],
                    _ => &[PayloadOut, Unclassified],
                };
                check(Op { fs_magic: magic, ..op(OpClass::CopyFileRange, a, b) }, expect, &mut failures);
            }
        }
    }
    report(failures);
}

#[test]
fn classes_without_data_count_nothing() {
    for class in [OpClass::None, OpClass::Mmap, OpClass::IoUring, OpClass::Other, OpClass::Munmap] {
        for a in FdKind::ALL {
            for b in FdKind::ALL {
                let mut probes = FakeProbes { observed: ALL_OBSERVED, ..Default::default() };
                let full = Op { flags: ZC, gather: true, from_mapping: true, ..op(class, a, b) };
                assert_eq!(run(&full, &mut probes), Stats::default(), "{class:?} {a:?} {b:?}");
            }
        }
    }
}

#[test]
fn tcp_sendmsg_by_flags_and_route() {
    let splice = MSG_SPLICE_PAGES;
    let zerocopy = MSG_ZEROCOPY;
    const SPLICED: &[C] = &[SPLICE_PAGES, SplicedToNetwork];
    let rows: [(u32, bool, &[C]); 8] = [
        (0, false, &[FromUser(SOCKET)]),
        (0, true, &[FromUser(SOCKET)]),
        // MSG_ZEROCOPY needs a device that can gather; else tcp_sendmsg_locked copies.
        (zerocopy, false, &[FromUser(SOCKET)]),
        (zerocopy, true, &[PINNED]),
        (splice, false, &[Kernel(SOCKET)]),
        (splice, true, SPLICED),
        // Spliced pages are kernel pages, whatever MSG_ZEROCOPY says.
        (splice | zerocopy, false, &[Kernel(SOCKET)]),
        (splice | zerocopy, true, SPLICED),
    ];
    for (flags, gather, counters) in rows {
        let mut s = Stats::default();
        tcp_sendmsg(&mut s, flags, gather, N);
        let expected: Vec<(C, u64)> = counters.iter().map(|&c| (c, N)).collect();
        assert_eq!(s, stats_of(&expected), "flags {flags:#x} gather {gather}");
    }
}

#[test]
fn pages_into_a_socket_by_kind_and_route() {
    for to in FdKind::ALL {
        for gather in [false, true] {
            let mut s = Stats::default();
            into_socket(&mut s, to, gather, N);
            let counter = if to == Unix || gather { SPLICE_PAGES } else { Kernel(SOCKET) };
            // Pages that stay zero-copy on a network socket are the ones that reach a NIC.
            let network = if gather && matches!(to, Tcp | Udp) { N } else { 0 };
            assert_eq!(s.spliced_to_network, network, "{to:?} gather {gather}");
            s.spliced_to_network = 0;
            assert_eq!(s, stats_of(&[(counter, N)]), "{to:?} gather {gather}");
        }
    }
}

#[test]
fn io_uring_opcodes_follow_their_syscalls() {
    use crate::linux::*;
    let known = [
        (IORING_OP_READV, OpClass::Read),
        (IORING_OP_READ_FIXED, OpClass::Read),
        (IORING_OP_READ, OpClass::Read),
        (IORING_OP_WRITEV, OpClass::Write),
        (IORING_OP_WRITE_FIXED, OpClass::Write),
        (IORING_OP_WRITE, OpClass::Write),
        (IORING_OP_SENDMSG, OpClass::Send),
        (IORING_OP_SEND, OpClass::Send),
        (IORING_OP_SEND_ZC, OpClass::Send),
        (IORING_OP_SENDMSG_ZC, OpClass::Send),
        (IORING_OP_RECVMSG, OpClass::Recv),
        (IORING_OP_RECV, OpClass::Recv),
    ];
    for opcode in 0..=u8::MAX {
        let expected = known.iter().find(|(o, _)| *o == opcode).map_or(OpClass::None, |&(_, c)| c);
        assert_eq!(io_uring_class(opcode), expected, "opcode {opcode}");
        let zc = matches!(opcode, IORING_OP_SEND_ZC | IORING_OP_SENDMSG_ZC);
        assert_eq!(io_uring_zerocopy(opcode), zc, "opcode {opcode}");
    }
}
