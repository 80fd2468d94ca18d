//! The copy rules when function probes observe some paths on the run: the probes' bytes are
//! subtracted, the rest derived and labelled; then properties that hold for every
//! combination of class, fd kinds, flags and probes.

use super::*;

/// A case with function probes: what they observe, what they counted on the thread
/// (`[read, write, splice_read]`), and the counters expected with their bytes.
struct Probed {
    op: Op,
    observed: u32,
    pending: [u64; 3],
    expect: &'static [(C, u64)],
}

fn probed_cases() -> Vec<Probed> {
    let file_read = observed::FILE_READ;
    let file_write = observed::FILE_WRITE;
    let splice_read = observed::SPLICE_READ;
    let all_but = |bit: u32| ALL_OBSERVED & !bit;
    let rows = [
        // filemap_read saw every byte: nothing left to derive.
        (op(OpClass::Read, File, Unknown), file_read, [N, 0, 0], &[(PayloadIn, N)][..]),
        // It saw part (more pending than returned is capped at what was returned).
        (op(OpClass::Read, File, Unknown), file_read, [5 * N, 0, 0], &[(PayloadIn, N)]),
        (
            op(OpClass::Read, File, Unknown),
            file_read,
            [600, 0, 0],
            &[(PayloadIn, N), (ToUser(PAGE_CACHE), 400), (ToUserPcDerived, 400)],
        ),
        // It saw nothing (tmpfs reads bypass filemap_read): all derived, and labelled so.
        (
            op(OpClass::Read, File, Unknown),
            file_read,
            [0, 700, 700],
            &[(PayloadIn, N), (ToUser(PAGE_CACHE), N), (ToUserPcDerived, N)],
        ),
        // Other probes do not change the file read rule.
        (op(OpClass::Read, File, Unknown), all_but(file_read), [N, N, N], &[(PayloadIn, N), (ToUser(PAGE_CACHE), N)]),
        (op(OpClass::Read, FileDirect, Unknown), ALL_OBSERVED, [N, N, N], &[(PayloadIn, N), (DirectRead, N)]),
        (op(OpClass::Read, Pipe, Unknown), observed::PIPE, [0, 0, 0], &[(PayloadIn, N)]),
        (op(OpClass::Read, Tcp, Unknown), ALL_OBSERVED, [0, 0, 0], &[(PayloadIn, N)]),
        (op(OpClass::Write, Unknown, File), file_write, [0, N, 0], &[(PayloadOut, N)]),
        (
            op(OpClass::Write, Unknown, File),
            file_write,
            [0, 250, 0],
            &[(PayloadOut, N), (FromUser(PAGE_CACHE), 750), (FromUserPcDerived, 750)],
        ),
        (
            op(OpClass::Write, Unknown, File),
            file_write,
            [N, 0, N],
            &[(PayloadOut, N), (FromUser(PAGE_CACHE), N), (FromUserPcDerived, N)],
        ),
        (
            op(OpClass::Write, Unknown, File),
            all_but(file_write),
            [N, N, N],
            &[(PayloadOut, N), (FromUser(PAGE_CACHE), N)],
        ),
        (
            Op { from_mapping: true, ..op(OpClass::Write, Unknown, File) },
            file_write,
            [0, N, 0],
            &[(PayloadOut, N), (FromFileMapping, N)],
        ),
        (op(OpClass::Write, Unknown, FileDirect), ALL_OBSERVED, [N, N, N], &[(PayloadOut, N), (DirectWrite, N)]),
        (op(OpClass::Write, Unknown, Pipe), observed::PIPE, [0, 0, 0], &[(IntoPipe, N)]),
        // tcp_sendmsg_locked counts TCP writes; other sockets are still derived.
        (op(OpClass::Write, Unknown, Tcp), observed::TCP_SEND, [0, 0, 0], &[(PayloadOut, N)]),
        (op(OpClass::Write, Unknown, Udp), observed::TCP_SEND, [0, 0, 0], &[(PayloadOut, N), (FromUser(SOCKET), N)]),
        (op(OpClass::Write, Unknown, Unix), observed::TCP_SEND, [0, 0, 0], &[(PayloadOut, N), (FromUser(SOCKET), N)]),
        (op(OpClass::Send, Unknown, Tcp), observed::TCP_SEND, [0, 0, 0], &[(PayloadOut, N)]),
        (
            Op { flags: ZC, gather: true, ..op(OpClass::Send, Unknown, Tcp) },
            observed::TCP_SEND,
            [0, 0, 0],
            &[(PayloadOut, N)],
        ),
        (
            Op { flags: ZC, ..op(OpClass::Send, Unknown, Udp) },
            observed::TCP_SEND,
            [0, 0, 0],
            &[(PayloadOut, N), (PINNED, N)],
        ),
        (
            op(OpClass::Send, Unknown, Tcp),
            all_but(observed::TCP_SEND),
            [N, N, N],
            &[(PayloadOut, N), (FromUser(SOCKET), N)],
        ),
        // TCP splicing observed (tcp_sendmsg_locked with MSG_SPLICE_PAGES, do_tcp_sendpages).
        (Op { gather: true, ..op(OpClass::Sendfile, File, Tcp) }, observed::TCP_SPLICE, [0, 0, 0], &[(PayloadOut, N)]),
        (op(OpClass::Sendfile, File, Udp), observed::TCP_SPLICE, [0, 0, 0], &[(PayloadOut, N), (Kernel(SOCKET), N)]),
        (op(OpClass::Sendfile, File, File), observed::SPLICE_WRITE_FILE, [0, 0, 0], &[(PayloadOut, N)]),
        // sendfile into a pipe: an observed splice read counts it all (no pending taken).
        (op(OpClass::Sendfile, File, Pipe), splice_read, [0, 0, 0], &[(IntoPipe, N)]),
        (op(OpClass::Splice, Pipe, Tcp), observed::TCP_SPLICE, [0, 0, 0], &[(PayloadOut, N)]),
        (op(OpClass::Splice, Pipe, Unix), observed::TCP_SPLICE, [0, 0, 0], &[(PayloadOut, N), (SPLICE_PAGES, N)]),
        (op(OpClass::Splice, Pipe, File), observed::SPLICE_WRITE_FILE, [0, 0, 0], &[(PayloadOut, N)]),
        // splice file -> pipe: what filemap_splice_read did not see is derived and labelled.
        (op(OpClass::Splice, File, Pipe), splice_read, [0, 0, N], &[(IntoPipe, N)]),
        (
            op(OpClass::Splice, File, Pipe),
            splice_read,
            [0, 0, 100],
            &[(IntoPipe, N), (PAGE_REFS, 900), (PageRefsDerived, 900)],
        ),
        (
            op(OpClass::Splice, File, Pipe),
            splice_read,
            [N, N, 0],
            &[(IntoPipe, N), (PAGE_REFS, N), (PageRefsDerived, N)],
        ),
        // From a socket or a pipe the splice-read probes see nothing: no pending taken.
        (op(OpClass::Splice, Tcp, Pipe), splice_read, [0, 0, N], &[(IntoPipe, N), (PAGE_REFS, N)]),
        (op(OpClass::Splice, Pipe, Pipe), splice_read, [0, 0, N], &[(IntoPipe, N), (PAGE_REFS, N)]),
        // Probes never replace the vmsplice, tee and copy_file_range rules.
        (op(OpClass::Vmsplice, Pipe, Unknown), ALL_OBSERVED, [N, N, N], &[(IntoPipe, N), (VMSPLICE, N)]),
        (op(OpClass::Tee, Pipe, Pipe), ALL_OBSERVED, [N, N, N], &[(IntoPipe, N), (PAGE_REFS, N)]),
        (
            Op { fs_magic: XFS_SUPER_MAGIC, ..op(OpClass::CopyFileRange, File, File) },
            ALL_OBSERVED,
            [N, N, N],
            &[(PayloadOut, N), (FILE_RANGE, N)],
        ),
        (
            Op { fs_magic: EXT4_MAGIC, ..op(OpClass::CopyFileRange, File, File) },
            ALL_OBSERVED,
            [N, N, N],
            &[(PayloadOut, N), (Kernel(PAGE_CACHE), N)],
        ),
    ];
    rows.into_iter().map(|(op, observed, pending, expect)| Probed { op, observed, pending, expect }).collect()
}

#[test]
fn function_probes_replace_what_they_observe() {
    let mut failures = Vec::new();
    for case in probed_cases() {
        let mut probes = FakeProbes { observed: case.observed, pending: case.pending, takes: 0 };
        let got = run(&case.op, &mut probes);
        if got != stats_of(case.expect) {
            failures.push(format!(
                "{:?} observed {:#x} pending {:?}: expected {:?}, got {got:?}",
                case.op, case.observed, case.pending, case.expect
            ));
        }
    }
    report(failures);
}

#[test]
fn pending_bytes_are_taken_once_and_only_what_was_returned() {
    // 1500 pending, 1000 returned: 1000 taken, 500 left for whatever comes next.
    let mut probes = FakeProbes { observed: observed::FILE_READ, pending: [1500, 0, 0], takes: 0 };
    run(&op(OpClass::Read, File, Unknown), &mut probes);
    assert_eq!((probes.pending, probes.takes), ([500, 0, 0], 1));
    // Without function probes the map is never touched.
    let mut probes = FakeProbes::default();
    for class in OpClass::ALL {
        for a in FdKind::ALL {
            for b in FdKind::ALL {
                run(&op(class, a, b), &mut probes);
            }
        }
    }
    assert_eq!(probes.takes, 0);
}

/// Every class, pair of kinds, flag and probe variant: a syscall's bytes are delivered
/// (payload or into a pipe) once, at most one counter of copies or moves counts the call,
/// with no more bytes than returned, and the derived labels stay within what they label.
#[test]
fn every_combination_counts_each_byte_once() {
    let data_classes = [
        OpClass::Read,
        OpClass::Write,
        OpClass::Sendfile,
        OpClass::Splice,
        OpClass::Vmsplice,
        OpClass::Tee,
        OpClass::CopyFileRange,
        OpClass::Send,
        OpClass::Recv,
    ];
    let mut combinations = 0;
    for class in OpClass::ALL {
        for from in FdKind::ALL {
            for to in FdKind::ALL {
                for variant in 0..64u32 {
                    let op = Op {
                        class,
                        from,
                        to,
                        flags: if variant & 1 != 0 { ZC } else { 0 },
                        gather: variant & 2 != 0,
                        from_mapping: variant & 4 != 0,
                        fs_magic: if variant & 8 != 0 { XFS_SUPER_MAGIC } else { EXT4_MAGIC },
                    };
                    let observed = if variant & 16 != 0 { ALL_OBSERVED } else { 0 };
                    let pending = if variant & 32 != 0 { [N / 2; 3] } else { [0; 3] };
                    let mut probes = FakeProbes { observed, pending, takes: 0 };
                    let s = run(&op, &mut probes);
                    combinations += 1;

                    let tallies: Vec<Tally> = [&s.to_user[..], &s.from_user[..], &s.kernel[..], &s.zero_copy[..]]
                        .concat()
                        .into_iter()
                        .chain([s.direct_read, s.direct_write, s.unclassified])
                        .collect();
                    assert!(tallies.iter().map(|t| t.calls).sum::<u64>() <= 1, "{op:?}: {s:?}");
                    assert!(tallies.iter().all(|t| t.bytes <= N), "{op:?}: {s:?}");
                    assert!(probes.takes <= 1, "{op:?}");

                    let delivered = s.payload_in + s.payload_out + s.into_pipe;
                    let expected = match class {
                        // vmsplice on anything but a pipe fails in the kernel: unclassified only.
                        OpClass::Vmsplice if from != Pipe => 0,
                        c if data_classes.contains(&c) => N,
                        _ => 0,
                    };
                    assert_eq!(delivered, expected, "{op:?}: {s:?}");
                    let mapped = class == OpClass::Write && op.from_mapping;
                    assert_eq!(s.from_file_mapping, if mapped { N } else { 0 }, "{op:?}");

                    assert!(s.to_user_pc_derived <= s.to_user[End::PageCache as usize].bytes);
                    assert!(s.from_user_pc_derived <= s.from_user[End::PageCache as usize].bytes);
                    assert!(s.page_refs_derived <= s.zero_copy[ZeroCopyKind::PageRefs as usize].bytes);
                    if observed == 0 {
                        assert_eq!(s.to_user_pc_derived + s.from_user_pc_derived + s.page_refs_derived, 0, "{op:?}");
                    }
                }
            }
        }
    }
    assert_eq!(combinations, OpClass::COUNT * FdKind::COUNT * FdKind::COUNT * 64);
}
