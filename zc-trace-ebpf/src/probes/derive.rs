//! Copies derived from syscall semantics at `sys_exit` (and io_uring completion): what a
//! syscall that returned N bytes must have done, given the kinds of its fds (read at entry).
//! The rules themselves are `zc_trace_common::derive`, tested on the host; this module finds
//! the counters and answers the rules' questions about the function probes: which paths they
//! observe on this run (`OBSERVED`, set by user space) and what they counted on this thread
//! (`PENDING`, see inflight.rs), so that nothing is counted twice.

use zc_trace_common::{
    FdKind, OpClass, Stats,
    derive::{self as rules, Op, PendingKind, Probes},
    linux::MSG_ZEROCOPY,
};

use aya_ebpf::helpers::bpf_get_current_pid_tgid;

use super::inflight::{InFlight, take_pending};
use crate::stats::with_stats;

#[unsafe(no_mangle)]
static OBSERVED: u32 = 0;

/// True when some function probe observes a copy path on this run.
#[inline(always)]
pub fn any_observed() -> bool {
    let observed = unsafe { core::ptr::read_volatile(&OBSERVED) };
    observed != 0
}

/// The function probes of this run, as the rules ask about them.
struct Kernel;

impl Probes for Kernel {
    #[inline(always)]
    fn observes(&self, bit: u32) -> bool {
        let observed = unsafe { core::ptr::read_volatile(&OBSERVED) };
        observed & bit != 0
    }

    #[inline(always)]
    fn take_pending(&mut self, kind: PendingKind, n: u64) -> u64 {
        take_pending(bpf_get_current_pid_tgid() as u32, kind, n)
    }
}

/// Counts what the syscall recorded in `f`, which returned `n` > 0 bytes, did, under the
/// counter key `key` (filter.rs). Returns the bytes it spliced into a network socket.
#[inline(always)]
pub fn account(key: u32, f: &InFlight, n: u64) -> u64 {
    let class = OpClass::from_u32(f.class);
    let op = Op {
        class,
        from: f.kind_in(),
        to: f.kind_out(),
        flags: f.flags,
        gather: f.gather != 0,
        from_mapping: f.from_mapping != 0,
        fs_magic: f.extra,
    };
    spliced_by(key, class, |s| rules::account(s, &op, n, &mut Kernel))
}

/// Runs the rule `f` on the counters of (`key`, `class`) and returns the bytes it counted as
/// spliced into a network socket: that socket's own totals need them too (net.rs).
#[inline(always)]
pub fn spliced_by(key: u32, class: OpClass, f: impl FnOnce(&mut Stats)) -> u64 {
    with_stats(key, class, |s| {
        let before = s.spliced_to_network;
        f(s);
        s.spliced_to_network - before
    })
    .unwrap_or(0)
}

/// An io_uring read of `n` bytes from a `from` file.
#[inline(always)]
pub fn read(s: &mut Stats, from: FdKind, n: u64) {
    rules::read(s, from, n, &mut Kernel);
}

/// An io_uring write of `n` bytes to a `to` file.
#[inline(always)]
pub fn write(s: &mut Stats, to: FdKind, n: u64) {
    rules::write(s, to, n, &mut Kernel);
}

/// An io_uring send: a copy unless a probe observes it, or pinned pages for a zero-copy
/// send (`SEND_ZC`, as MSG_ZEROCOPY) when the route can gather.
#[inline(always)]
pub fn send(s: &mut Stats, to: FdKind, zerocopy: bool, gather: bool, n: u64) {
    let flags = if zerocopy { MSG_ZEROCOPY as u64 } else { 0 };
    rules::send(s, to, flags, gather, n, &Kernel);
}
