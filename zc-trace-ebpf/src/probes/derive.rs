//! Copies derived from syscall semantics at `sys_exit`: what a syscall that returned N bytes
//! must have done, given the kinds of its fds (read at entry). Each rule is what the kernel
//! source does for that combination; `docs/probes.md` lists them with their evidence label.
//!
//! Paths that a function probe observes on this run (the `OBSERVED` bits) are skipped here,
//! so that nothing is counted twice. Socket receives are never derived: the tracepoint
//! `skb:skb_copy_datagram_iovec` observes that copy on every kernel.

use zc_trace_common::{End, FdKind, OpClass, Stats, ZeroCopyKind, observed};

use aya_ebpf::helpers::bpf_get_current_pid_tgid;

use super::inflight::{InFlight, PendingKind, take_pending};
use crate::stats::{add, stats};

#[unsafe(no_mangle)]
static OBSERVED: u32 = 0;

/// True when some function probe observes a copy path on this run.
#[inline(always)]
pub fn any_observed() -> bool {
    let observed = unsafe { core::ptr::read_volatile(&OBSERVED) };
    observed != 0
}

#[inline(always)]
fn is_observed(bit: u32) -> bool {
    let observed = unsafe { core::ptr::read_volatile(&OBSERVED) };
    observed & bit != 0
}

const MSG_ZEROCOPY: u64 = 0x400_0000;
const XFS_MAGIC: u64 = 0x5846_5342;
const BTRFS_MAGIC: u64 = 0x9123_683E;

/// The bytes of `n` that no function probe counted on this thread (all of them when the
/// path is not probed).
#[inline(always)]
fn unobserved(bit: u32, kind: PendingKind, n: u64) -> u64 {
    if !is_observed(bit) {
        return n;
    }
    take_pending(bpf_get_current_pid_tgid() as u32, kind, n)
}

#[inline(always)]
pub fn account(tgid: u32, f: &InFlight, n: u64) {
    let class = OpClass::from_u32(f.class);
    let Some(s) = stats(tgid, class) else { return };
    match class {
        OpClass::Read => read(s, f.kind_in(), n),
        OpClass::Write => {
            if f.from_mapping != 0 {
                s.from_file_mapping += n;
            }
            write(s, f.kind_out(), n)
        }
        OpClass::Send => send(s, f.kind_out(), f.flags, f.gather != 0, n),
        OpClass::Recv => s.payload_in += n,
        OpClass::Sendfile => sendfile(s, f.kind_in(), f.kind_out(), f.gather != 0, n),
        OpClass::Splice => splice(s, f.kind_in(), f.kind_out(), f.gather != 0, n),
        OpClass::Vmsplice => vmsplice(s, f.kind_in(), n),
        OpClass::Tee => {
            add(&mut s.zero_copy[ZeroCopyKind::PageRefs as usize], n);
            s.into_pipe += n;
        }
        OpClass::CopyFileRange => copy_file_range(s, f, n),
        _ => {}
    }
}

/// read(2) family: bytes into user memory from the fd's kind.
#[inline(always)]
pub fn read(s: &mut Stats, from: FdKind, n: u64) {
    s.payload_in += n;
    match from {
        FdKind::File => {
            let rest = unobserved(observed::FILE_READ, PendingKind::Read, n);
            if rest > 0 {
                add(&mut s.to_user[End::PageCache as usize], rest);
                if is_observed(observed::FILE_READ) {
                    s.to_user_pc_derived += rest;
                }
            }
        }
        // O_DIRECT: the device DMAs into the user buffer; the CPU copies nothing.
        FdKind::FileDirect => add(&mut s.direct_read, n),
        FdKind::Pipe if !is_observed(observed::PIPE) => add(&mut s.to_user[End::Pipe as usize], n),
        FdKind::Pipe => {}
        // Observed by skb:skb_copy_datagram_iovec (socket_copy.rs).
        FdKind::Tcp | FdKind::Udp | FdKind::Unix | FdKind::OtherSocket => {}
        // /dev/zero, ttys, ...: the driver fills the user buffer.
        FdKind::CharDevice | FdKind::DevNull => add(&mut s.to_user[End::Other as usize], n),
        _ => add(&mut s.unclassified, n),
    }
}

/// write(2) family: bytes out of user memory into the fd's kind.
#[inline(always)]
pub fn write(s: &mut Stats, to: FdKind, n: u64) {
    if to == FdKind::Pipe {
        s.into_pipe += n;
    } else {
        s.payload_out += n;
    }
    match to {
        FdKind::File => {
            let rest = unobserved(observed::FILE_WRITE, PendingKind::Write, n);
            if rest > 0 {
                add(&mut s.from_user[End::PageCache as usize], rest);
                if is_observed(observed::FILE_WRITE) {
                    s.from_user_pc_derived += rest;
                }
            }
        }
        FdKind::FileDirect => add(&mut s.direct_write, n),
        FdKind::Pipe if !is_observed(observed::PIPE) => add(&mut s.from_user[End::Pipe as usize], n),
        FdKind::Pipe => {}
        FdKind::Tcp if is_observed(observed::TCP_SEND) => {}
        FdKind::Tcp | FdKind::Udp | FdKind::Unix | FdKind::OtherSocket => {
            add(&mut s.from_user[End::Socket as usize], n)
        }
        // write_null() returns the count without touching the buffer.
        FdKind::DevNull => {}
        FdKind::CharDevice => add(&mut s.from_user[End::Other as usize], n),
        _ => add(&mut s.unclassified, n),
    }
}

/// sendto/sendmsg: a copy into the socket buffer, unless MSG_ZEROCOPY pins the user pages,
/// which TCP honours only when the route can gather (the kernel may still copy later, e.g.
/// when delivering to a local socket: the completion notification tells).
#[inline(always)]
pub fn send(s: &mut Stats, to: FdKind, flags: u64, gather: bool, n: u64) {
    s.payload_out += n;
    if to == FdKind::Tcp && is_observed(observed::TCP_SEND) {
        return; // tcp_sendmsg_locked counted it, copy or zero-copy
    }
    if flags & MSG_ZEROCOPY != 0 && (gather || to != FdKind::Tcp) {
        add(&mut s.zero_copy[ZeroCopyKind::MsgZerocopy as usize], n);
    } else {
        add(&mut s.from_user[End::Socket as usize], n);
    }
}

/// sendfile(out, in): splice_direct_to_actor moves page-cache pages into an internal pipe by
/// reference; what happens next depends on the destination.
#[inline(always)]
fn sendfile(s: &mut Stats, from: FdKind, to: FdKind, gather: bool, n: u64) {
    if from != FdKind::File {
        s.payload_out += n;
        add(&mut s.unclassified, n);
        return;
    }
    match to {
        FdKind::Tcp if is_observed(observed::TCP_SPLICE) => s.payload_out += n,
        FdKind::Tcp | FdKind::Udp | FdKind::Unix | FdKind::OtherSocket => {
            s.payload_out += n;
            to_socket(s, to, gather, n);
        }
        // iter_file_splice_write -> write_iter: the pages are copied into the destination's
        // page cache.
        FdKind::File => {
            s.payload_out += n;
            if !is_observed(observed::SPLICE_WRITE_FILE) {
                add(&mut s.kernel[End::PageCache as usize], n);
            }
        }
        FdKind::Pipe => {
            s.into_pipe += n;
            if !is_observed(observed::SPLICE_READ) {
                add(&mut s.zero_copy[ZeroCopyKind::PageRefs as usize], n);
            }
        }
        // splice_write_null discards the pages.
        FdKind::DevNull => s.payload_out += n,
        _ => {
            s.payload_out += n;
            add(&mut s.unclassified, n);
        }
    }
}

/// Pages spliced into a socket (splice_to_socket -> sendmsg(MSG_SPLICE_PAGES), sendpage
/// before 6.5). TCP takes them by reference only when the route's device can gather
/// (NETIF_F_SG, read from the socket at entry); otherwise it copies them into the socket
/// buffer, kernel -> kernel. UNIX sockets always take references (no device involved).
#[inline(always)]
fn to_socket(s: &mut Stats, to: FdKind, gather: bool, n: u64) {
    if to == FdKind::Unix || gather {
        add(&mut s.zero_copy[ZeroCopyKind::SplicePages as usize], n);
    } else {
        add(&mut s.kernel[End::Socket as usize], n);
    }
}

/// splice(in, out): one end is a pipe.
#[inline(always)]
fn splice(s: &mut Stats, from: FdKind, to: FdKind, gather: bool, n: u64) {
    if to == FdKind::Pipe {
        s.into_pipe += n;
        // filemap_splice_read / skb_splice_bits / pipe-to-pipe: buffers move by reference.
        let rest = if from == FdKind::File { unobserved(observed::SPLICE_READ, PendingKind::SpliceRead, n) } else { n };
        if rest > 0 {
            add(&mut s.zero_copy[ZeroCopyKind::PageRefs as usize], rest);
            if from == FdKind::File && is_observed(observed::SPLICE_READ) {
                s.page_refs_derived += rest;
            }
        }
        return;
    }
    s.payload_out += n;
    if from != FdKind::Pipe {
        add(&mut s.unclassified, n);
        return;
    }
    match to {
        FdKind::Tcp if is_observed(observed::TCP_SPLICE) => {}
        FdKind::Tcp | FdKind::Udp | FdKind::Unix | FdKind::OtherSocket => to_socket(s, to, gather, n),
        FdKind::File if is_observed(observed::SPLICE_WRITE_FILE) => {}
        FdKind::File => add(&mut s.kernel[End::PageCache as usize], n),
        FdKind::DevNull => {}
        _ => add(&mut s.unclassified, n),
    }
}

/// vmsplice(pipe, iov): into a pipe, the user pages are referenced, not copied; out of a pipe
/// (the pipe is the source), the data is copied to user memory.
#[inline(always)]
fn vmsplice(s: &mut Stats, pipe: FdKind, n: u64) {
    if pipe != FdKind::Pipe {
        add(&mut s.unclassified, n);
        return;
    }
    s.into_pipe += n;
    add(&mut s.zero_copy[ZeroCopyKind::Vmsplice as usize], n);
}

/// copy_file_range: file systems that share extents (XFS, Btrfs) remap instead of copying;
/// others fall back to a splice copy through the page cache.
#[inline(always)]
fn copy_file_range(s: &mut Stats, f: &InFlight, n: u64) {
    s.payload_out += n;
    if f.kind_in() != FdKind::File || f.kind_out() != FdKind::File {
        add(&mut s.unclassified, n);
    } else if f.extra == XFS_MAGIC || f.extra == BTRFS_MAGIC {
        add(&mut s.zero_copy[ZeroCopyKind::FileRange as usize], n);
    } else {
        add(&mut s.kernel[End::PageCache as usize], n);
    }
}
