//! io_uring operations never pass through read(2)/write(2): their copies are derived at
//! completion instead. `io_uring:io_uring_complete` gives the request (its opcode and file)
//! and the result; the same rules as for the syscalls then apply to the file's kind.
//! Charged to the process in whose context the completion runs: the submitting task when it
//! completes inline, or its io-wq worker threads (same thread group).

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use zc_trace_common::{
    FdKind, IoUringOffsets, OpClass,
    derive::{io_uring_class, io_uring_zerocopy},
    linux::{
        IORING_CQE_F_NOTIF, IORING_NOTIF_USAGE_ZC_COPIED, IORING_OP_READ, IORING_OP_READ_FIXED, IORING_OP_READV,
        IORING_OP_RECV, IORING_OP_RECVMSG, IORING_OP_SEND, IORING_OP_SEND_ZC, IORING_OP_SENDMSG, IORING_OP_SENDMSG_ZC,
        IORING_OP_WRITE, IORING_OP_WRITE_FIXED, IORING_OP_WRITEV,
    },
    relay::{Matched, Source, shape},
};

use super::{derive, flows, relay};
use crate::{
    filter::{Traced, traced},
    kmem,
    stats::with_stats,
};

#[unsafe(no_mangle)]
static IO_URING: IoUringOffsets = IoUringOffsets {
    valid: 0,
    req_opcode: 0,
    req_file: 0,
    cqe_res: 0,
    res_in_cqe: 0,
    buf_valid: 0,
    rw_addr: 0,
    rw_len: 0,
    sr_buf: 0,
    cqe_flags: 0,
    notif_valid: 0,
    notif_report: 0,
};

/// The request, its result and its CQE flags.
#[inline(always)]
fn completion(ctx: &RawTracePointContext, off: &IoUringOffsets) -> Option<(u64, i32, u32)> {
    if off.valid == 0 {
        return None;
    }
    let req: u64 = ctx.arg(1);
    let (res, flags) = if off.res_in_cqe != 0 {
        let cqe: u64 = ctx.arg(2);
        (kmem::read::<i32>(cqe, off.cqe_res).unwrap_or(0), kmem::read::<u32>(cqe, off.cqe_flags).unwrap_or(0))
    } else {
        let (res, flags): (u64, u64) = (ctx.arg(3), ctx.arg(4));
        (res as i32, flags as u32)
    };
    Some((req, res, flags))
}

#[inline(always)]
fn offsets() -> IoUringOffsets {
    unsafe { core::ptr::read_volatile(&IO_URING) }
}

/// Relays, as for the syscalls (relay.rs): a read records the range it filled, a write is
/// matched against the ranges its buffer lies in, for `zc_io_uring_complete` (attached after
/// this program, so run right after it on the same CPU) to split its flow. A program of its
/// own: with the counting inside the same one, the verifier explores every opcode's path
/// through both, more than it accepts.
#[raw_tracepoint(tracepoint = "io_uring_complete")]
pub fn zc_io_uring_relay(ctx: RawTracePointContext) -> i32 {
    let Some(Traced { tgid, .. }) = traced() else { return 0 };
    let off = offsets();
    let Some((req, res, _)) = completion(&ctx, &off) else { return 0 };
    let Some(scratch) = relay::scratch() else { return 0 };
    scratch.io_uring_req = 0;
    if res <= 0 {
        return 0;
    }
    let n = res as u64;
    let Some(opcode) = kmem::read::<u8>(req, off.req_opcode) else { return 0 };
    let Some(buf) = request_buffer(req, opcode, &off) else { return 0 };
    match io_uring_class(opcode) {
        OpClass::Read | OpClass::Recv => {
            let file: u64 = kmem::read(req, off.req_file).unwrap_or(0);
            let source = Source { ino: 0, fd: -1, kind: kmem::file_kind(file) as u8, _pad0: 0, _pad1: 0 };
            relay::gather(&buf, n, scratch);
            relay::filled(tgid, &source, scratch);
        }
        OpClass::Write | OpClass::Send => {
            relay::gather(&buf, n, scratch);
            relay::sent(tgid, scratch);
            scratch.io_uring_req = req;
        }
        _ => {}
    }
    0
}

#[raw_tracepoint(tracepoint = "io_uring_complete")]
pub fn zc_io_uring_complete(ctx: RawTracePointContext) -> i32 {
    let Some(Traced { key, .. }) = traced() else { return 0 };
    let off = offsets();
    let Some((req, res, flags)) = completion(&ctx, &off) else { return 0 };
    if flags & IORING_CQE_F_NOTIF != 0 {
        zerocopy_notification(key, req, res, &off);
        return 0;
    }
    if res <= 0 {
        return 0;
    }
    let n = res as u64;
    let Some(opcode) = kmem::read::<u8>(req, off.req_opcode) else { return 0 };
    let file: u64 = kmem::read(req, off.req_file).unwrap_or(0);
    let kind = kmem::file_kind(file);
    if kind.is_socket() {
        super::net::remember_owner(kmem::file_sock(file).unwrap_or(0), key);
    }
    let memory = FdKind::UserMemory;
    // What `zc_io_uring_relay` matched for this very request (else: nothing paired).
    let matched = relay::scratch().filter(|s| s.io_uring_req == req && req != 0).map(|s| {
        s.io_uring_req = 0;
        &s.matched
    });
    // The flow is added inside: when the counters cannot be created, neither is it.
    with_stats(key, OpClass::IoUring, |s| match io_uring_class(opcode) {
        OpClass::Read => {
            derive::read(s, kind, n);
            flows::add_io_uring(key, kind, memory, n);
        }
        OpClass::Write => {
            derive::write(s, kind, n);
            add_sent(key, kind, n, matched);
        }
        OpClass::Send => {
            // SEND_ZC pins the pages, as MSG_ZEROCOPY: zero-copy only if the route can gather,
            // and only once its notification says the kernel did not copy after all.
            let zerocopy = io_uring_zerocopy(opcode);
            let gather = zerocopy && kmem::sock_can_gather(kmem::file_sock(file).unwrap_or(0));
            derive::send(s, kind, zerocopy, gather, n);
            add_sent(key, kind, n, matched);
        }
        // The copy itself is observed by skb_copy_datagram_iovec.
        OpClass::Recv => {
            zc_trace_common::derive::recv(s, n);
            flows::add_io_uring(key, kind, memory, n);
        }
        _ => {}
    });
    0
}

/// A zero-copy send's notification (its CQE has `IORING_CQE_F_NOTIF`): counted as a
/// completion, copied or not, when the application asked the kernel to report which
/// (`IORING_SEND_ZC_REPORT_USAGE`, seen as `io_notif_data.zc_report`); without that, nobody
/// knows, and the send stays "outcome unknown".
#[inline(always)]
fn zerocopy_notification(key: u32, req: u64, res: i32, off: &IoUringOffsets) {
    if off.notif_valid == 0 || kmem::read::<u8>(req, off.notif_report).unwrap_or(0) == 0 {
        return;
    }
    with_stats(key, OpClass::IoUring, |s| {
        s.zc_completed += 1;
        if res as u32 & IORING_NOTIF_USAGE_ZC_COPIED != 0 {
            s.zc_copied += 1;
        }
    });
}

/// A write or send's flow: split by what `zc_io_uring_relay` matched, when it did.
#[inline(always)]
fn add_sent(key: u32, dst: FdKind, n: u64, matched: Option<&Matched>) {
    match matched {
        Some(m) => flows::add_io_uring_send(key, dst, n, m),
        None => flows::add_io_uring(key, FdKind::UserMemory, dst, n),
    }
}

/// Where request `req` of `opcode` keeps its user buffer (BTF offsets in `off`), for the
/// opcodes that move data through one; `None` too when pairing is off.
#[inline(always)]
fn request_buffer(req: u64, opcode: u8, off: &IoUringOffsets) -> Option<relay::Buffer> {
    if off.buf_valid == 0 || !relay::enabled() {
        return None;
    }
    let (shape, at, count) = match opcode {
        IORING_OP_READ | IORING_OP_WRITE | IORING_OP_READ_FIXED | IORING_OP_WRITE_FIXED => {
            (shape::PLAIN, off.rw_addr, 0)
        }
        IORING_OP_READV | IORING_OP_WRITEV => {
            (shape::IOVEC, off.rw_addr, kmem::read::<u32>(req, off.rw_len).unwrap_or(0) as u64)
        }
        IORING_OP_SEND | IORING_OP_RECV | IORING_OP_SEND_ZC => (shape::PLAIN, off.sr_buf, 0),
        IORING_OP_SENDMSG | IORING_OP_RECVMSG | IORING_OP_SENDMSG_ZC => (shape::MSGHDR, off.sr_buf, 0),
        _ => return None,
    };
    Some(relay::Buffer { shape, addr: kmem::read::<u64>(req, at)?, count })
}
