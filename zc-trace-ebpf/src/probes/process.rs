//! Process lifecycle: with `FOLLOW_FORKS`, children of traced processes are traced from
//! their first instruction (`sched_process_fork` fires in the parent before the child runs);
//! command names are recorded at fork and exec so that rows of processes that have exited
//! still have a name.

use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid},
    macros::{map, raw_tracepoint},
    maps::HashMap,
    programs::RawTracePointContext,
};
use zc_trace_common::{Comm, DropReason, GlobalEvent, TRACED_MAX_ENTRIES};

use super::{block::bump_global, drops};
use crate::{
    filter::{TRACED, Traced, follow_forks, is_traced_tgid, traced},
    kmem,
};

/// Counter key (filter.rs) -> command name.
#[map]
static COMMS: HashMap<u32, Comm> = HashMap::with_max_entries(TRACED_MAX_ENTRIES * 4, 0);

/// Counter key -> the cgroup v2 id the process was in when its name was recorded (user space
/// names rows' cgroups, containers and pods from it).
#[map]
static CGROUPS: HashMap<u32, u64> = HashMap::with_max_entries(TRACED_MAX_ENTRIES * 4, 0);

/// Records the current task's name and cgroup under `key` (at fork, in the parent: the child
/// starts in the parent's cgroup; at exec and first sight, in the task itself).
#[inline(always)]
fn remember_comm(key: u32) {
    if let Ok(comm) = bpf_get_current_comm() {
        let _ = COMMS.insert(&key, &comm, BPF_ANY as u64);
    }
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    let _ = CGROUPS.insert(&key, &cgroup, BPF_ANY as u64);
}

/// `sched_process_fork(struct task_struct *parent, struct task_struct *child)`.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn zc_sched_process_fork(ctx: RawTracePointContext) -> i32 {
    let parent_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !follow_forks() || !is_traced_tgid(parent_tgid) {
        return 0;
    }
    let child: u64 = ctx.arg(1);
    let Some(child_tgid) = kmem::read::<u32>(child, kmem::offsets().task_tgid) else { return 0 };
    if child_tgid == parent_tgid {
        return 0; // a new thread: already traced with its group
    }
    if TRACED.insert(&child_tgid, &1, BPF_ANY as u64).is_err() {
        drops::record(DropReason::TracedMapFull);
        return 0;
    }
    // The child starts with the parent's name; exec will update it. Its thread group id is
    // also the counter key of its first thread, so this names its row in either mode.
    remember_comm(child_tgid);
    0
}

/// `sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`:
/// fires in the task after exec, with its new name.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn zc_sched_process_exec(_ctx: RawTracePointContext) -> i32 {
    if let Some(Traced { key, .. }) = traced() {
        remember_comm(key);
    }
    0
}

/// `sched_process_exit(struct task_struct *p)`, in the exiting task: a traced process whose
/// group leader exits is counted (its entries can go at the next fold; `serve` folds early
/// when many processes have exited, so that short-lived ones do not fill the maps).
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn zc_sched_process_exit(_ctx: RawTracePointContext) -> i32 {
    if let Some(Traced { tid, tgid, .. }) = traced() {
        if tid == tgid {
            bump_global(GlobalEvent::ProcessesExited, 1);
        }
    }
    0
}

/// Called when a process's counters are first created, so every row has a name.
#[inline(always)]
pub fn first_seen(key: u32) {
    if unsafe { COMMS.get(&key) }.is_none() {
        remember_comm(key);
    }
}
