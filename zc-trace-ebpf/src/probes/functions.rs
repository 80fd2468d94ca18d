//! Copy sites observed at their traceable callers, on kernels that allow function probes
//! (`copy_to_user` itself is inlined or notrace everywhere; see docs/probes.md). Each site has
//! an fexit variant and a kretprobe variant; user space loads the first that attaches and
//! none of the others, and tells the syscall-exit derivation to skip that path.
//!
//! - `filemap_read(iocb, iter, already_read)` returns the bytes copied page cache -> user
//!   (plus `already_read`, bytes an earlier direct-I/O attempt of the same call moved);
//!   `generic_file_buffered_read` before 5.12.
//! - `generic_perform_write(iocb, iter)` returns the bytes copied user -> page cache
//!   (`(file, iter, pos)` before 5.19).
//! - `tcp_sendmsg_locked(sk, msg, size)`: `msg->msg_flags` says whether the bytes were copied
//!   from user memory, spliced by reference (`MSG_SPLICE_PAGES`, 6.5+), or pinned
//!   (`MSG_ZEROCOPY`).
//! - `do_tcp_sendpages(sk, page, offset, size, flags)` (before 6.5): pages into TCP by
//!   reference when the route can gather.
//! - `filemap_splice_read` (6.5+) / `generic_file_splice_read` (before): page-cache pages
//!   referenced into a pipe.
//! - `iter_file_splice_write(pipe, out, ppos, len, flags)`: pipe pages copied into a file.
//! - `pipe_read(iocb, to)` / `pipe_write(iocb, from)`: pipe <-> user copies.

use aya_ebpf::{
    EbpfContext,
    macros::{fexit, kretprobe},
    programs::{FExitContext, RetProbeContext},
};
use zc_trace_common::{
    End, FdKind, OpClass, ZeroCopyKind,
    derive::{PendingKind, into_socket, tcp_sendmsg},
};

use super::{
    derive::spliced_by,
    inflight::{add_pending, class_of},
    stacks::note_kernel,
};
use crate::{
    filter::{Traced, traced},
    kmem,
    stats::with_stats,
};

#[inline(always)]
fn file_read(ctx: &impl EbpfContext, ret: i64, already_read: i64) {
    let Some(Traced { key, tid, .. }) = traced() else { return };
    let class = class_of(tid);
    // Before 6.5, generic_file_splice_read (sendfile, splice, copy_file_range) calls
    // filemap_read with an ITER_PIPE iterator, which takes page references: no copy to user
    // memory. Found on Debian 6.1 once the lab's file was on ext4. Outside a data syscall
    // (kernel_read of an executable during execve, an io-wq worker) it is not a copy into
    // the process's buffer either, or not one a syscall result accounts for: not counted,
    // and nothing is left pending for the next syscall to subtract (io_uring completions
    // derive their own bytes).
    if matches!(class, OpClass::None | OpClass::Sendfile | OpClass::Splice | OpClass::CopyFileRange) {
        return;
    }
    let copied = ret - already_read;
    if copied > 0 {
        with_stats(key, class, |s| {
            s.to_user[End::PageCache as usize].add(copied as u64);
            add_pending(tid, PendingKind::Read, copied as u64);
        });
        note_kernel(ctx, tid);
    }
}

#[inline(always)]
fn file_write(ctx: &impl EbpfContext, ret: i64) {
    let Some(Traced { key, tid, .. }) = traced() else { return };
    let class = class_of(tid);
    // As for reads: kernel_write (a core dump, a kernel-internal write) is no user copy.
    if ret > 0 && class != OpClass::None {
        with_stats(key, class, |s| {
            s.from_user[End::PageCache as usize].add(ret as u64);
            add_pending(tid, PendingKind::Write, ret as u64);
        });
        note_kernel(ctx, tid);
    }
}

#[fexit(function = "filemap_read")]
pub fn zc_fexit_filemap_read(ctx: FExitContext) -> i32 {
    let already_read: i64 = ctx.arg(2);
    let ret: i64 = ctx.arg(3);
    file_read(&ctx, ret, already_read);
    0
}

#[kretprobe]
pub fn zc_kretprobe_filemap_read(ctx: RetProbeContext) -> u32 {
    // No entry arguments here: already_read is almost always 0 (it is non-zero only after a
    // partial O_DIRECT read fell back to buffered I/O).
    let ret: i64 = ctx.ret();
    file_read(&ctx, ret, 0);
    0
}

/// Before 5.12 `filemap_read` was `generic_file_buffered_read(iocb, iter, written)`: the
/// same parameters and return value.
#[fexit(function = "generic_file_buffered_read")]
pub fn zc_fexit_generic_file_buffered_read(ctx: FExitContext) -> i32 {
    let already_read: i64 = ctx.arg(2);
    let ret: i64 = ctx.arg(3);
    file_read(&ctx, ret, already_read);
    0
}

#[kretprobe]
pub fn zc_kretprobe_generic_file_buffered_read(ctx: RetProbeContext) -> u32 {
    let ret: i64 = ctx.ret();
    file_read(&ctx, ret, 0);
    0
}

#[fexit(function = "generic_perform_write")]
pub fn zc_fexit_generic_perform_write(ctx: FExitContext) -> i32 {
    let ret: i64 = ctx.arg(2);
    file_write(&ctx, ret);
    0
}

/// Before 5.19 `generic_perform_write(file, iter, pos)` had three parameters: the return
/// value comes after them (user space picks this program by the prototype in BTF).
#[fexit(function = "generic_perform_write")]
pub fn zc_fexit_generic_perform_write_pos(ctx: FExitContext) -> i32 {
    let ret: i64 = ctx.arg(3);
    file_write(&ctx, ret);
    0
}

#[kretprobe]
pub fn zc_kretprobe_generic_perform_write(ctx: RetProbeContext) -> u32 {
    let ret: i64 = ctx.ret();
    file_write(&ctx, ret);
    0
}

#[fexit(function = "tcp_sendmsg_locked")]
pub fn zc_fexit_tcp_sendmsg_locked(ctx: FExitContext) -> i32 {
    let Some(Traced { key, tid, .. }) = traced() else { return 0 };
    let sk: u64 = ctx.arg(0);
    let msg: u64 = ctx.arg(1);
    // tcp_sendmsg_locked returns an int: the trampoline saves the whole register, whose upper
    // half the 32-bit write zeroed, so an error such as -EAGAIN reads as 4294967285 unless
    // taken as the int it is (seen on arm64: 4 GiB copied by an io_uring send).
    let ret = ctx.arg::<u64>(3) as i32 as i64;
    if ret <= 0 {
        return 0;
    }
    let flags: u32 = kmem::read(msg, kmem::off!(msghdr_flags)).unwrap_or(0);
    // Whether the route's device can gather decides copy or reference (see tcp_sendmsg).
    let gather = kmem::sock_can_gather(sk);
    let spliced = spliced_by(key, class_of(tid), |s| tcp_sendmsg(s, flags, gather, ret as u64));
    note_kernel(&ctx, tid);
    if spliced != 0 {
        super::net::add_spliced(sk, spliced);
    }
    0
}

#[inline(always)]
fn tally(ctx: &impl EbpfContext, ret: i64, f: impl FnOnce(&mut zc_trace_common::Stats, u64)) {
    let Some(Traced { key, tid, .. }) = traced() else { return };
    if ret > 0 {
        with_stats(key, class_of(tid), |s| f(s, ret as u64));
        note_kernel(ctx, tid);
    }
}

#[fexit(function = "do_tcp_sendpages")]
pub fn zc_fexit_do_tcp_sendpages(ctx: FExitContext) -> i32 {
    let Some(Traced { key, tid, .. }) = traced() else { return 0 };
    let sk: u64 = ctx.arg(0);
    let ret: i64 = ctx.arg(5);
    if ret <= 0 {
        return 0;
    }
    let gather = kmem::sock_can_gather(sk);
    let spliced = spliced_by(key, class_of(tid), |s| into_socket(s, FdKind::Tcp, gather, ret as u64));
    note_kernel(&ctx, tid);
    if spliced != 0 {
        super::net::add_spliced(sk, spliced);
    }
    0
}

#[inline(always)]
fn page_refs(s: &mut zc_trace_common::Stats, n: u64) {
    s.zero_copy[ZeroCopyKind::PageRefs as usize].add(n);
    add_pending(aya_ebpf::helpers::bpf_get_current_pid_tgid() as u32, PendingKind::SpliceRead, n);
}

#[fexit(function = "filemap_splice_read")]
pub fn zc_fexit_filemap_splice_read(ctx: FExitContext) -> i32 {
    tally(&ctx, ctx.arg(5), page_refs);
    0
}

#[kretprobe]
pub fn zc_kretprobe_filemap_splice_read(ctx: RetProbeContext) -> u32 {
    tally(&ctx, ctx.ret(), page_refs);
    0
}

#[fexit(function = "generic_file_splice_read")]
pub fn zc_fexit_generic_file_splice_read(ctx: FExitContext) -> i32 {
    tally(&ctx, ctx.arg(5), page_refs);
    0
}

#[kretprobe]
pub fn zc_kretprobe_generic_file_splice_read(ctx: RetProbeContext) -> u32 {
    tally(&ctx, ctx.ret(), page_refs);
    0
}

#[inline(always)]
fn into_file(s: &mut zc_trace_common::Stats, n: u64) {
    s.kernel[End::PageCache as usize].add(n);
}

#[fexit(function = "iter_file_splice_write")]
pub fn zc_fexit_iter_file_splice_write(ctx: FExitContext) -> i32 {
    tally(&ctx, ctx.arg(5), into_file);
    0
}

#[kretprobe]
pub fn zc_kretprobe_iter_file_splice_write(ctx: RetProbeContext) -> u32 {
    tally(&ctx, ctx.ret(), into_file);
    0
}

#[inline(always)]
fn pipe_to_user(s: &mut zc_trace_common::Stats, n: u64) {
    s.to_user[End::Pipe as usize].add(n);
}

#[inline(always)]
fn user_to_pipe(s: &mut zc_trace_common::Stats, n: u64) {
    s.from_user[End::Pipe as usize].add(n);
}

#[fexit(function = "pipe_read")]
pub fn zc_fexit_pipe_read(ctx: FExitContext) -> i32 {
    tally(&ctx, ctx.arg(2), pipe_to_user);
    0
}

#[kretprobe]
pub fn zc_kretprobe_pipe_read(ctx: RetProbeContext) -> u32 {
    tally(&ctx, ctx.ret(), pipe_to_user);
    0
}

#[fexit(function = "pipe_write")]
pub fn zc_fexit_pipe_write(ctx: FExitContext) -> i32 {
    tally(&ctx, ctx.arg(2), user_to_pipe);
    0
}

#[kretprobe]
pub fn zc_kretprobe_pipe_write(ctx: RetProbeContext) -> u32 {
    tally(&ctx, ctx.ret(), user_to_pipe);
    0
}
