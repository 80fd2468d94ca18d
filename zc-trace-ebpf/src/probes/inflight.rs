//! The data syscall each thread is in, from `sys_enter` to `sys_exit`: its class and the
//! kinds of its fds, read at entry. Events that happen meanwhile on that thread (copies,
//! faults, block I/O, context switches) are charged to that syscall's class.
//!
//! A plain (not per-CPU) hash keyed by thread id: a thread that blocks may exit the syscall
//! on another CPU than it entered on.

use aya_ebpf::{macros::map, maps::HashMap};
use zc_trace_common::{FdKind, INFLIGHT_MAX_ENTRIES, OpClass};

#[repr(C)]
#[derive(Copy, Clone)]
pub struct InFlight {
    pub class: u32,
    pub kind_in: u8,
    pub kind_out: u8,
    /// The destination socket's route can gather (NETIF_F_SG), read at entry.
    pub gather: u8,
    /// write(2) from a buffer inside a file-backed mapping.
    pub from_mapping: u8,
    pub flags: u64,
    /// copy_file_range: the destination's file-system magic (reflink or copy);
    /// mmap: the length mapped.
    pub extra: u64,
}

#[map]
pub static INFLIGHT: HashMap<u32, InFlight> = HashMap::with_max_entries(INFLIGHT_MAX_ENTRIES, 0);

/// The class of the data syscall thread `tid` is in, or `None` outside one.
#[inline(always)]
pub fn class_of(tid: u32) -> OpClass {
    match unsafe { INFLIGHT.get(&tid) } {
        Some(f) => OpClass::from_u32(f.class),
        None => OpClass::None,
    }
}

impl InFlight {
    pub fn kind_in(&self) -> FdKind {
        FdKind::from_u8(self.kind_in)
    }
    pub fn kind_out(&self) -> FdKind {
        FdKind::from_u8(self.kind_out)
    }
}

/// Bytes a function probe counted on this thread since the last syscall exit (or io_uring
/// completion) consumed them. The syscall-semantics derivation subtracts them, so a path
/// a probe watches is counted once, and what the probe did not see (a file system whose
/// read_iter bypasses filemap_read) is still derived.
#[repr(C)]
#[derive(Copy, Clone, Default)]
pub struct Pending {
    pub read: u64,
    pub write: u64,
    pub splice_read: u64,
}

#[map]
pub static PENDING: aya_ebpf::maps::LruHashMap<u32, Pending> =
    aya_ebpf::maps::LruHashMap::with_max_entries(zc_trace_common::PENDING_MAX_ENTRIES, 0);

#[derive(Copy, Clone)]
pub enum PendingKind {
    Read,
    Write,
    SpliceRead,
}

/// Called by function probes: remember what they counted on this thread.
#[inline(always)]
pub fn add_pending(tid: u32, kind: PendingKind, n: u64) {
    let mut p = unsafe { PENDING.get(&tid) }.copied().unwrap_or_default();
    match kind {
        PendingKind::Read => p.read += n,
        PendingKind::Write => p.write += n,
        PendingKind::SpliceRead => p.splice_read += n,
    }
    let _ = PENDING.insert(&tid, &p, 0);
}

/// Called by the derivation: takes up to `n` observed bytes of `kind` and returns how many of
/// the `n` were not observed.
#[inline(always)]
pub fn take_pending(tid: u32, kind: PendingKind, n: u64) -> u64 {
    let Some(p) = PENDING.get_ptr_mut(&tid) else { return n };
    let p = unsafe { &mut *p };
    let slot = match kind {
        PendingKind::Read => &mut p.read,
        PendingKind::Write => &mut p.write,
        PendingKind::SpliceRead => &mut p.splice_read,
    };
    let seen = (*slot).min(n);
    *slot -= seen;
    n - seen
}

/// At syscall exit: whatever the probes counted has been matched or belongs to no syscall.
#[inline(always)]
pub fn clear_pending(tid: u32) {
    let _ = PENDING.remove(&tid);
}
