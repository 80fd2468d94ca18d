//! Which tasks are counted, and under which key. The settings are read-only globals written
//! by user space before load, so the verifier sees constants and drops the unused filter
//! entirely.
//!
//! Counter keys. The maps that count per process (`STATS`, `SYSCALL_COUNTS`, `FLOWS`,
//! `FD_NAMES`, `COMMS`, `SOCK_OWNER`'s values) are keyed by a *counter key*: the thread group
//! id (the PID user space sees), or with `BY_THREAD` (`--by thread`) the thread id. Only
//! `counter_key` applies that rule. A variable that holds one is called `key` (`owner` for a
//! socket's); `tgid` and `tid` always mean what the kernel means by them. The shared key
//! structs still call the field `tgid` (`StatsKey`, `SyscallKey`: user space reads them by
//! that name); it holds a counter key.

use aya_ebpf::{
    helpers::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_task_btf},
    macros::map,
    maps::HashMap,
};
use zc_trace_common::TRACED_MAX_ENTRIES;

use crate::{
    kmem::off,
    typed::{self, typed},
};

/// Non-zero: only this thread group.
#[unsafe(no_mangle)]
static FILTER_TGID: u32 = 0;

/// Non-zero: only the thread groups in `TRACED` (e.g. a lab's sender and receiver).
#[unsafe(no_mangle)]
static FILTER_MAP: u32 = 0;

/// Non-zero: only tasks in this cgroup (v2 id) or below it (`--cgroup`), which is
/// `FILTER_CGROUP_LEVEL` levels below the root: a task is in its subtree when its ancestor at
/// that level is it (`bpf_get_current_ancestor_cgroup_id`, 5.6+), new processes included.
#[unsafe(no_mangle)]
static FILTER_CGROUP: u64 = 0;

#[unsafe(no_mangle)]
static FILTER_CGROUP_LEVEL: u32 = 0;

/// System-wide mode: this thread group (zc-trace itself) is not counted.
#[unsafe(no_mangle)]
static EXCLUDE_TGID: u32 = 0;

/// Non-zero: children forked by traced processes are traced too (`FILTER_MAP` mode).
#[unsafe(no_mangle)]
static FOLLOW_FORKS: u32 = 0;

/// Non-zero: counters are keyed by thread id instead of thread group id.
#[unsafe(no_mangle)]
static BY_THREAD: u32 = 0;

#[map]
pub static TRACED: HashMap<u32, u8> = HashMap::with_max_entries(TRACED_MAX_ENTRIES, 0);

// Volatile reads: without them the compiler folds the initial 0 into the code and the value
// that user space writes before load would never be read.
#[inline(always)]
fn setting(v: &u32) -> u32 {
    unsafe { core::ptr::read_volatile(v) }
}

#[inline(always)]
pub fn follow_forks() -> bool {
    setting(&FOLLOW_FORKS) != 0
}

#[inline(always)]
pub fn by_thread() -> bool {
    setting(&BY_THREAD) != 0
}

/// One traced thread group (`FILTER_TGID`), whatever the counter key.
#[inline(always)]
pub fn only_tgid() -> bool {
    setting(&FILTER_TGID) != 0
}

/// One traced process, counters per process: its syscall counts go to an array.
#[inline(always)]
pub fn single_tgid() -> bool {
    setting(&FILTER_TGID) != 0 && !by_thread()
}

#[inline(always)]
pub fn is_traced_tgid(tgid: u32) -> bool {
    let wanted = setting(&FILTER_TGID);
    if wanted != 0 {
        return wanted == tgid;
    }
    if setting(&FILTER_MAP) != 0 {
        return unsafe { TRACED.get(&tgid) }.is_some();
    }
    let cgroup = unsafe { core::ptr::read_volatile(&FILTER_CGROUP) };
    if cgroup != 0 && !in_cgroup(cgroup) {
        return false;
    }
    tgid != setting(&EXCLUDE_TGID) && tgid != 0
}

/// Whether the current task is in cgroup `id` or below it (see `FILTER_CGROUP`). Only ever
/// asked about the current task: every caller of `is_traced_tgid` passes its own tgid.
#[inline(always)]
fn in_cgroup(id: u64) -> bool {
    let level = setting(&FILTER_CGROUP_LEVEL) as i32;
    unsafe { bpf_get_current_ancestor_cgroup_id(level) == id }
}

/// The counter key of a task (see the module doc).
#[inline(always)]
pub fn counter_key(tgid: u32, tid: u32) -> u32 {
    if by_thread() { tid } else { tgid }
}

/// The current task, when it is one we trace.
#[derive(Copy, Clone)]
pub struct Traced {
    /// Its counter key: `tgid`, or `tid` with `BY_THREAD`.
    pub key: u32,
    pub tid: u32,
    pub tgid: u32,
}

/// The current task if it is one we trace. A struct rather than a tuple so that a caller
/// cannot bind the counter key to a name that says it is something else.
#[inline(always)]
pub fn traced() -> Option<Traced> {
    let id = bpf_get_current_pid_tgid();
    traced_ids((id >> 32) as u32, id as u32)
}

#[inline(always)]
fn traced_ids(tgid: u32, tid: u32) -> Option<Traced> {
    if !is_traced_tgid(tgid) {
        return None;
    }
    Some(Traced { key: counter_key(tgid, tid), tid, tgid })
}

/// The current task, as a BTF-typed `struct task_struct *`, and its ids if we trace it. The
/// ids are two loads from the task (where BTF gave their offsets), not a second helper call:
/// the syscall programs need the task pointer anyway, and where the verifier inlines
/// `bpf_get_current_task_btf` (recent x86-64 kernels) getting it costs no call at all.
#[inline(always)]
pub fn current() -> (*const u8, Option<Traced>) {
    let task = unsafe { bpf_get_current_task_btf() } as *const u8;
    let pid_offset = typed!(task_pid);
    if pid_offset == 0 {
        return (task, traced());
    }
    let tgid = typed::load::<u32>(task, off!(task_tgid));
    let tid = typed::load::<u32>(task, pid_offset);
    (task, traced_ids(tgid, tid))
}
