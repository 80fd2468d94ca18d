//! io_uring operations never pass through read(2)/write(2): their copies are derived at
//! completion instead. `io_uring:io_uring_complete` gives the request (its opcode and file)
//! and the result; the same rules as for the syscalls then apply to the file's kind.
//! Charged to the process in whose context the completion runs: the submitting task when it
//! completes inline, or its io-wq worker threads (same thread group).

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use zc_trace_common::{FdKind, IoUringOffsets, OpClass, derive::io_uring_class};

use super::{derive, flows};
use crate::{
    filter::{Traced, traced},
    kmem,
    stats::with_stats,
};

#[unsafe(no_mangle)]
static IO_URING: IoUringOffsets = IoUringOffsets { valid: 0, req_opcode: 0, req_file: 0, cqe_res: 0, res_in_cqe: 0 };

#[raw_tracepoint(tracepoint = "io_uring_complete")]
pub fn zc_io_uring_complete(ctx: RawTracePointContext) -> i32 {
    let Some(Traced { key, .. }) = traced() else { return 0 };
    let off = unsafe { core::ptr::read_volatile(&IO_URING) };
    if off.valid == 0 {
        return 0;
    }
    let req: u64 = ctx.arg(1);
    let res: i32 = if off.res_in_cqe != 0 {
        let cqe: u64 = ctx.arg(2);
        kmem::read(cqe, off.cqe_res).unwrap_or(0)
    } else {
        let res: u64 = ctx.arg(3);
        res as i32
    };
    if res <= 0 {
        return 0;
    }
    let Some(opcode) = kmem::read::<u8>(req, off.req_opcode) else { return 0 };
    let file: u64 = kmem::read(req, off.req_file).unwrap_or(0);
    let kind = kmem::file_kind(file);
    if kind.is_socket() {
        super::net::remember_owner(kmem::file_sock(file).unwrap_or(0), key);
    }
    let n = res as u64;
    let memory = FdKind::UserMemory;
    // The flow is added inside: when the counters cannot be created, neither is it.
    with_stats(key, OpClass::IoUring, |s| match io_uring_class(opcode) {
        OpClass::Read => {
            derive::read(s, kind, n);
            flows::add_io_uring(key, kind, memory, n);
        }
        OpClass::Write => {
            derive::write(s, kind, n);
            flows::add_io_uring(key, memory, kind, n);
        }
        OpClass::Send => {
            derive::send(s, kind, n);
            flows::add_io_uring(key, memory, kind, n);
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
