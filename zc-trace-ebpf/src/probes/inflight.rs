//! Per-thread state: the data syscall each thread is in, from `sys_enter` to `sys_exit` (its
//! class, the kinds of its fds and its user buffer, read at entry). Events that happen
//! meanwhile on that thread (copies, faults, block I/O, context switches) are charged to that
//! syscall's class.
//!
//! Where it lives, for speed: in a per-CPU slot while the thread runs. A thread that leaves
//! the CPU (`sched_switch`, see sched.rs) takes its state out of the slot into hash maps, and
//! takes it back on its next syscall on whichever CPU it runs. A syscall that neither blocks
//! nor is preempted, the common case, costs two stores and no hash operation; the hash maps
//! are touched once per context switch instead of twice per syscall.
//!
//! The slot is written only in the task's own process context (sys_enter, sys_exit,
//! sched_switch), which never nest on one CPU; interrupt-context probes only read it. It is
//! handed around as a raw pointer, never as a long-lived reference (see `slot`).

use aya_ebpf::{
    bindings::BPF_ANY,
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use zc_trace_common::{DropReason, FdKind, INFLIGHT_MAX_ENTRIES, OpClass, derive::PendingKind};

use super::drops;

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
    /// mmap: the length mapped; sendfile, splice: the destination fd.
    pub extra: u64,
    /// The user buffer argument (read/write-like calls), or 0: a buffer, an iovec array, a
    /// msghdr or an mmsghdr array, as `shape` (`relay::shape`) says; `count` is the iovec or
    /// message count argument.
    pub buf: u64,
    pub shape: u8,
    /// Padding, as two fields: a `[u8; 3]` of zeros is written by a byte-loop `memset` call
    /// in BPF code.
    pub _pad0: u8,
    pub _pad1: u16,
    /// `BY_FD`: the fds (-1: none) and the inode numbers of their files.
    pub fd_in: i32,
    pub fd_out: i32,
    pub count: u32,
    pub ino_in: u64,
    pub ino_out: u64,
}

#[repr(C)]
#[derive(Copy, Clone)]
pub struct ThreadState {
    /// The thread this slot belongs to; 0 = free.
    pub tid: u32,
    pub in_syscall: u32,
    pub record: InFlight,
}

#[map]
static CURRENT: PerCpuArray<ThreadState> = PerCpuArray::with_max_entries(1, 0);

/// In-flight syscalls of threads that left the CPU inside them (blocked or preempted). Not
/// LRU: a long-blocked thread's record must not be evicted; a full map is a counted drop.
#[map]
pub static INFLIGHT: HashMap<u32, InFlight> = HashMap::with_max_entries(INFLIGHT_MAX_ENTRIES, 0);

/// This CPU's slot, as a raw pointer. Several paths reach it within one program (`end` looks
/// before it adopts, and the charging probes' `class_of`), so a `&'static mut` handed out here
/// could be alive twice at once; each function below makes a reference for the few
/// statements that use it instead.
///
/// SAFETY of those references: a per-CPU slot, so no other CPU touches it. On this CPU it is
/// written only in the thread's own process context (sys_enter, sys_exit, sched_switch, which
/// never nest in each other), and no reference to it is held across a call that reaches it
/// again. Programs that can interrupt those (a softirq's `dma_map`, a page fault in a helper)
/// only read it, through `class_of`, and run to completion before the interrupted program
/// goes on; one that arrives in the middle of an update charges its event to the class the
/// slot had just before or just after it (or to none).
#[inline(always)]
fn slot() -> Option<*mut ThreadState> {
    CURRENT.get_ptr_mut(0)
}

/// This CPU's slot once it holds the current thread's state: what `zc_sys_enter` gets
/// from `adopt`. Not `Clone`; the reference each method makes ends with the method.
pub struct Slot(*mut ThreadState);

impl Slot {
    /// sys_enter of a data syscall: its record, until `end`.
    #[inline(always)]
    pub fn begin(self, record: &InFlight) {
        // SAFETY: see `slot`.
        let s = unsafe { &mut *self.0 };
        s.record = *record;
        s.in_syscall = 1;
    }
}

/// Moves the slot's state into the hash maps and frees the slot.
#[inline(always)]
fn spill(s: &mut ThreadState) {
    if s.in_syscall != 0 && INFLIGHT.insert(&s.tid, &s.record, BPF_ANY as u64).is_err() {
        drops::record(DropReason::InflightMapFull);
    }
    s.tid = 0;
    s.in_syscall = 0;
}

/// The slot, holding `tid`'s state: taken back from the hash maps if the thread left a CPU
/// since its last syscall.
#[inline(always)]
pub fn adopt(tid: u32) -> Option<Slot> {
    let p = slot()?;
    take_over(p, tid);
    Some(Slot(p))
}

/// Makes the slot at `p` hold `tid`'s state.
#[inline(always)]
fn take_over(p: *mut ThreadState, tid: u32) {
    // SAFETY: see `slot`; the only reference to the slot until this function returns.
    let s = unsafe { &mut *p };
    if s.tid == tid {
        return;
    }
    if s.tid != 0 {
        spill(s); // defensive: sched_switch frees the slot of a thread leaving the CPU
    }
    s.tid = tid;
    s.in_syscall = 0;
    if let Some(r) = unsafe { INFLIGHT.get(&tid) } {
        s.record = *r;
        s.in_syscall = 1;
        let _ = INFLIGHT.remove(&tid);
    }
}

/// sys_exit: the record of the syscall `tid` is leaving, if it entered one we recorded.
#[inline(always)]
pub fn end(tid: u32) -> Option<InFlight> {
    let p = slot()?;
    // SAFETY: see `slot`; a read of one field, no reference kept.
    if unsafe { (*p).tid } != tid {
        // Not this thread's slot: only a thread that left the CPU inside a data syscall has
        // a record elsewhere (one failed lookup for every other syscall exit).
        unsafe { INFLIGHT.get(&tid) }?;
    }
    // The same slot as above: one lookup serves both (the program cannot change CPU).
    take_over(p, tid);
    // SAFETY: see `slot`; ends before the slot is handed on.
    let s = unsafe { &mut *p };
    if s.in_syscall == 0 {
        return None;
    }
    s.in_syscall = 0;
    Some(s.record)
}

/// sched_switch, in the context of the thread leaving the CPU.
#[inline(always)]
pub fn leave_cpu(tid: u32) {
    let Some(p) = slot() else { return };
    // SAFETY: see `slot`; the only reference to the slot in this program.
    let s = unsafe { &mut *p };
    if s.tid == tid {
        spill(s);
    }
}

/// The class of the data syscall thread `tid` is in, or `None` outside one.
#[inline(always)]
pub fn class_of(tid: u32) -> OpClass {
    if let Some(p) = slot() {
        // SAFETY: see `slot`; read-only, and no reference outlives this block.
        let s = unsafe { &*p };
        if s.tid == tid {
            return if s.in_syscall != 0 { OpClass::from_u32(s.record.class) } else { OpClass::None };
        }
    }
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

/// Called by function probes: remember what they counted on this thread.
#[inline(always)]
pub fn add_pending(tid: u32, kind: PendingKind, n: u64) {
    let mut p = unsafe { PENDING.get(&tid) }.copied().unwrap_or_default();
    match kind {
        PendingKind::Read => p.read += n,
        PendingKind::Write => p.write += n,
        PendingKind::SpliceRead => p.splice_read += n,
    }
    let _ = PENDING.insert(&tid, &p, BPF_ANY as u64);
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
