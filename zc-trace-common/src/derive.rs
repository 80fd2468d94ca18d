//! Copies derived from syscall semantics: what a data syscall that returned N bytes must have
//! done, given the kinds of its fds (read at `sys_enter`). Each rule is what the kernel source
//! does for that combination; `docs/probes.md` lists them with their evidence label.
//!
//! The rules live here, not in the eBPF crate, so that the host can test them: the kernel
//! programs (`zc-trace-ebpf/src/probes/derive.rs`) keep the map lookups and hand the rules a
//! [`Probes`], through which the rules ask which paths a function probe observes on this run
//! (the `OBSERVED` bits) and take the bytes a probe already counted on this thread (the
//! `PENDING` map). Paths a probe observes are not derived again, so nothing is counted twice,
//! but what the probe did not see (a file system whose read_iter bypasses `filemap_read`) still
//! is. Socket receives are never derived: the tracepoint `skb:skb_copy_datagram_iovec`
//! observes that copy on every kernel.
//!
//! Everything is `#[inline(always)]`, branch-only and indexes the `Stats` arrays with enum
//! constants: the eBPF verifier sees the same code as if it were written in the program.

use crate::{
    End, FdKind, OpClass, Stats, ZeroCopyKind,
    linux::{
        BTRFS_SUPER_MAGIC, IORING_OP_READ, IORING_OP_READ_FIXED, IORING_OP_READV, IORING_OP_RECV, IORING_OP_RECVMSG,
        IORING_OP_SEND, IORING_OP_SEND_ZC, IORING_OP_SENDMSG, IORING_OP_SENDMSG_ZC, IORING_OP_WRITE,
        IORING_OP_WRITE_FIXED, IORING_OP_WRITEV, MSG_SPLICE_PAGES, MSG_ZEROCOPY, XFS_SUPER_MAGIC,
    },
    observed,
};

/// Which of a thread's probe-counted bytes a derivation consumes: those of `filemap_read`,
/// of `generic_perform_write`, or of the splice-read functions.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PendingKind {
    Read,
    Write,
    SpliceRead,
}

/// What the function probes of this run did, as the rules need to know it.
pub trait Probes {
    /// Whether a function probe observes the path of this [`observed`] bit on this run.
    fn observes(&self, bit: u32) -> bool;
    /// Takes up to `n` of the bytes of `kind` that a function probe counted on this thread
    /// and returns how many of the `n` it did not count. Called only for an observed path:
    /// on the kernel side it is a map operation.
    fn take_pending(&mut self, kind: PendingKind, n: u64) -> u64;
}

/// A data syscall at its exit, as the rules see it: what was recorded at its entry.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub class: OpClass,
    /// The source fd's kind (vmsplice: the pipe, argument 0).
    pub from: FdKind,
    /// The destination fd's kind.
    pub to: FdKind,
    /// The flags argument (send: the `MSG_*` flags), else 0.
    pub flags: u64,
    /// The destination socket's route can gather (NETIF_F_SG), read at entry.
    pub gather: bool,
    /// write(2) from a buffer inside a file-backed mapping (the mmap + write strategy).
    pub from_mapping: bool,
    /// copy_file_range: the destination's file-system magic (`super_block->s_magic`).
    pub fs_magic: u64,
}

/// The bytes of `n` that no function probe counted on this thread (all of them when the
/// path is not probed).
#[inline(always)]
fn unobserved<P: Probes>(probes: &mut P, bit: u32, kind: PendingKind, n: u64) -> u64 {
    if !probes.observes(bit) {
        return n;
    }
    probes.take_pending(kind, n)
}

/// Counts what the syscall `op`, which returned `n` > 0 bytes, did.
#[inline(always)]
pub fn account<P: Probes>(s: &mut Stats, op: &Op, n: u64, probes: &mut P) {
    match op.class {
        OpClass::Read => read(s, op.from, n, probes),
        OpClass::Write => {
            if op.from_mapping {
                s.from_file_mapping += n;
            }
            write(s, op.to, n, probes)
        }
        OpClass::Send => send(s, op.to, op.flags, op.gather, n, probes),
        OpClass::Recv => recv(s, n),
        OpClass::Sendfile => sendfile(s, op.from, op.to, op.gather, n, probes),
        OpClass::Splice => splice(s, op.from, op.to, op.gather, n, probes),
        OpClass::Vmsplice => vmsplice(s, op.from, n),
        OpClass::Tee => tee(s, n),
        OpClass::CopyFileRange => copy_file_range(s, op.from, op.to, op.fs_magic, n),
        _ => {}
    }
}

/// read(2) family: bytes into user memory from the fd's kind.
#[inline(always)]
pub fn read<P: Probes>(s: &mut Stats, from: FdKind, n: u64, probes: &mut P) {
    s.payload_in += n;
    match from {
        FdKind::File => {
            let rest = unobserved(probes, observed::FILE_READ, PendingKind::Read, n);
            if rest > 0 {
                s.to_user[End::PageCache as usize].add(rest);
                if probes.observes(observed::FILE_READ) {
                    s.to_user_pc_derived += rest;
                }
            }
        }
        // O_DIRECT: the device DMAs into the user buffer; the CPU copies nothing.
        FdKind::FileDirect => s.direct_read.add(n),
        FdKind::Pipe if !probes.observes(observed::PIPE) => s.to_user[End::Pipe as usize].add(n),
        FdKind::Pipe => {}
        // Observed by skb:skb_copy_datagram_iovec.
        FdKind::Tcp | FdKind::Udp | FdKind::Unix | FdKind::OtherSocket => {}
        // /dev/zero, ttys, ...: the driver fills the user buffer.
        FdKind::CharDevice | FdKind::DevNull => s.to_user[End::Other as usize].add(n),
        _ => s.unclassified.add(n),
    }
}

/// write(2) family: bytes out of user memory into the fd's kind.
#[inline(always)]
pub fn write<P: Probes>(s: &mut Stats, to: FdKind, n: u64, probes: &mut P) {
    if to == FdKind::Pipe {
        s.into_pipe += n;
    } else {
        s.payload_out += n;
    }
    match to {
        FdKind::File => {
            let rest = unobserved(probes, observed::FILE_WRITE, PendingKind::Write, n);
            if rest > 0 {
                s.from_user[End::PageCache as usize].add(rest);
                if probes.observes(observed::FILE_WRITE) {
                    s.from_user_pc_derived += rest;
                }
            }
        }
        FdKind::FileDirect => s.direct_write.add(n),
        FdKind::Pipe if !probes.observes(observed::PIPE) => s.from_user[End::Pipe as usize].add(n),
        FdKind::Pipe => {}
        FdKind::Tcp if probes.observes(observed::TCP_SEND) => {}
        FdKind::Tcp | FdKind::Udp | FdKind::Unix | FdKind::OtherSocket => s.from_user[End::Socket as usize].add(n),
        // write_null() returns the count without touching the buffer.
        FdKind::DevNull => {}
        FdKind::CharDevice => s.from_user[End::Other as usize].add(n),
        _ => s.unclassified.add(n),
    }
}

/// sendto/sendmsg: a copy into the socket buffer, unless MSG_ZEROCOPY pins the user pages,
/// which TCP honours only when the route can gather (the kernel may still copy later, e.g.
/// when delivering to a local socket: the completion notification tells).
#[inline(always)]
pub fn send<P: Probes>(s: &mut Stats, to: FdKind, flags: u64, gather: bool, n: u64, probes: &P) {
    s.payload_out += n;
    if to == FdKind::Tcp && probes.observes(observed::TCP_SEND) {
        return; // tcp_sendmsg_locked counted it, copy or zero-copy
    }
    if flags & MSG_ZEROCOPY as u64 != 0 && (gather || to != FdKind::Tcp) {
        s.zero_copy[ZeroCopyKind::MsgZerocopy as usize].add(n);
    } else {
        s.from_user[End::Socket as usize].add(n);
    }
}

/// recvfrom/recvmsg: payload only; the copy is observed by skb:skb_copy_datagram_iovec.
#[inline(always)]
pub fn recv(s: &mut Stats, n: u64) {
    s.payload_in += n;
}

/// sendfile(out, in): splice_direct_to_actor moves page-cache pages into an internal pipe by
/// reference; what happens next depends on the destination.
#[inline(always)]
pub fn sendfile<P: Probes>(s: &mut Stats, from: FdKind, to: FdKind, gather: bool, n: u64, probes: &P) {
    if from != FdKind::File {
        s.payload_out += n;
        s.unclassified.add(n);
        return;
    }
    match to {
        FdKind::Tcp if probes.observes(observed::TCP_SPLICE) => s.payload_out += n,
        FdKind::Tcp | FdKind::Udp | FdKind::Unix | FdKind::OtherSocket => {
            s.payload_out += n;
            into_socket(s, to, gather, n);
        }
        // iter_file_splice_write -> write_iter: the pages are copied into the destination's
        // page cache.
        FdKind::File => {
            s.payload_out += n;
            if !probes.observes(observed::SPLICE_WRITE_FILE) {
                s.kernel[End::PageCache as usize].add(n);
            }
        }
        FdKind::Pipe => {
            s.into_pipe += n;
            if !probes.observes(observed::SPLICE_READ) {
                s.zero_copy[ZeroCopyKind::PageRefs as usize].add(n);
            }
        }
        // splice_write_null discards the pages.
        FdKind::DevNull => s.payload_out += n,
        _ => {
            s.payload_out += n;
            s.unclassified.add(n);
        }
    }
}

/// Pages spliced into a socket (splice_to_socket -> sendmsg(MSG_SPLICE_PAGES), sendpage
/// before 6.5). TCP takes them by reference only when the route's device can gather
/// (NETIF_F_SG, read from the socket at entry); otherwise it copies them into the socket
/// buffer, kernel -> kernel. UNIX sockets always take references (no device involved).
/// Also the rule of the `do_tcp_sendpages` probe (with `to` = TCP).
#[inline(always)]
pub fn into_socket(s: &mut Stats, to: FdKind, gather: bool, n: u64) {
    if to == FdKind::Unix || gather {
        s.zero_copy[ZeroCopyKind::SplicePages as usize].add(n);
        if matches!(to, FdKind::Tcp | FdKind::Udp) {
            s.spliced_to_network += n;
        }
    } else {
        s.kernel[End::Socket as usize].add(n);
    }
}

/// splice(in, out): one end is a pipe.
#[inline(always)]
pub fn splice<P: Probes>(s: &mut Stats, from: FdKind, to: FdKind, gather: bool, n: u64, probes: &mut P) {
    if to == FdKind::Pipe {
        s.into_pipe += n;
        // filemap_splice_read / skb_splice_bits / pipe-to-pipe: buffers move by reference.
        let rest = if from == FdKind::File {
            unobserved(probes, observed::SPLICE_READ, PendingKind::SpliceRead, n)
        } else {
            n
        };
        if rest > 0 {
            s.zero_copy[ZeroCopyKind::PageRefs as usize].add(rest);
            if from == FdKind::File && probes.observes(observed::SPLICE_READ) {
                s.page_refs_derived += rest;
            }
        }
        return;
    }
    s.payload_out += n;
    if from != FdKind::Pipe {
        s.unclassified.add(n);
        return;
    }
    match to {
        FdKind::Tcp if probes.observes(observed::TCP_SPLICE) => {}
        FdKind::Tcp | FdKind::Udp | FdKind::Unix | FdKind::OtherSocket => into_socket(s, to, gather, n),
        FdKind::File if probes.observes(observed::SPLICE_WRITE_FILE) => {}
        FdKind::File => s.kernel[End::PageCache as usize].add(n),
        FdKind::DevNull => {}
        _ => s.unclassified.add(n),
    }
}

/// vmsplice(pipe, iov): into a pipe, the user pages are referenced, not copied. (Out of a
/// pipe, the pipe being the source, vmsplice copies to user memory; that direction is not
/// told apart here: the fd's access mode is not recorded.)
#[inline(always)]
pub fn vmsplice(s: &mut Stats, pipe: FdKind, n: u64) {
    if pipe != FdKind::Pipe {
        s.unclassified.add(n);
        return;
    }
    s.into_pipe += n;
    s.zero_copy[ZeroCopyKind::Vmsplice as usize].add(n);
}

/// tee(in, out): pipe buffers are duplicated into the other pipe by reference.
#[inline(always)]
pub fn tee(s: &mut Stats, n: u64) {
    s.zero_copy[ZeroCopyKind::PageRefs as usize].add(n);
    s.into_pipe += n;
}

/// copy_file_range: file systems that share extents (XFS, Btrfs) remap instead of copying;
/// others fall back to a splice copy through the page cache.
#[inline(always)]
pub fn copy_file_range(s: &mut Stats, from: FdKind, to: FdKind, fs_magic: u64, n: u64) {
    s.payload_out += n;
    if from != FdKind::File || to != FdKind::File {
        s.unclassified.add(n);
    } else if fs_magic == XFS_SUPER_MAGIC || fs_magic == BTRFS_SUPER_MAGIC {
        s.zero_copy[ZeroCopyKind::FileRange as usize].add(n);
    } else {
        s.kernel[End::PageCache as usize].add(n);
    }
}

/// The `tcp_sendmsg_locked` probe: `msg_flags` says how the `n` bytes it sent went in.
/// It honours MSG_SPLICE_PAGES and MSG_ZEROCOPY only when the route's device can gather;
/// otherwise it copies (spliced page-cache pages: kernel -> kernel; user pages: user ->
/// socket).
#[inline(always)]
pub fn tcp_sendmsg(s: &mut Stats, msg_flags: u32, gather: bool, n: u64) {
    match (msg_flags & MSG_SPLICE_PAGES != 0, msg_flags & MSG_ZEROCOPY != 0, gather) {
        (true, _, true) => {
            s.zero_copy[ZeroCopyKind::SplicePages as usize].add(n);
            s.spliced_to_network += n;
        }
        (true, _, false) => s.kernel[End::Socket as usize].add(n),
        (false, true, true) => s.zero_copy[ZeroCopyKind::MsgZerocopy as usize].add(n),
        _ => s.from_user[End::Socket as usize].add(n),
    }
}

/// The syscall whose rule an io_uring operation follows at its completion: io_uring reads,
/// writes, sends and receives never pass through read(2)/write(2), but do the same copies.
/// [`OpClass::None`] for every other opcode (no data the rules know of).
#[inline(always)]
pub const fn io_uring_class(opcode: u8) -> OpClass {
    match opcode {
        IORING_OP_READ | IORING_OP_READV | IORING_OP_READ_FIXED => OpClass::Read,
        IORING_OP_WRITE | IORING_OP_WRITEV | IORING_OP_WRITE_FIXED => OpClass::Write,
        IORING_OP_SEND | IORING_OP_SENDMSG | IORING_OP_SEND_ZC | IORING_OP_SENDMSG_ZC => OpClass::Send,
        IORING_OP_RECV | IORING_OP_RECVMSG => OpClass::Recv,
        _ => OpClass::None,
    }
}

/// Whether an io_uring send opcode asks for zero-copy (pinned pages, as MSG_ZEROCOPY).
#[inline(always)]
pub const fn io_uring_zerocopy(opcode: u8) -> bool {
    matches!(opcode, IORING_OP_SEND_ZC | IORING_OP_SENDMSG_ZC)
}

#[cfg(test)]
mod tests;
