//! Context switches: `sched_switch(bool preempt, prev, next, unsigned int prev_state)` fires
//! in the context of `prev`, so the current task is the one leaving the CPU. Voluntary when
//! it was not preempted and was going to sleep (the kernel's own nvcsw/nivcsw rule).

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

use aya_ebpf::helpers::bpf_get_current_pid_tgid;

use super::inflight::{class_of, leave_cpu};
use crate::{
    filter::{Traced, traced},
    kmem,
    stats::with_stats,
};

/// Kernels from 5.18, whose tracepoint passes `prev_state` as its fourth argument.
#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn zc_sched_switch(ctx: RawTracePointContext) -> i32 {
    // Whoever leaves the CPU takes its per-thread state out of this CPU's slot (inflight.rs),
    // after the switch is charged to the syscall it is in.
    let leaving = bpf_get_current_pid_tgid() as u32;
    count_switch(&ctx, || ctx.arg::<u64>(3) as u32);
    leave_cpu(leaving);
    0
}

/// Kernels before 5.18: the tracepoint has three arguments, and a program that reads a
/// fourth cannot attach. The state is read from `prev` (argument 1) instead, still as the
/// scheduler left it: nothing wakes the task before the switch completes.
#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn zc_sched_switch_task_state(ctx: RawTracePointContext) -> i32 {
    let leaving = bpf_get_current_pid_tgid() as u32;
    count_switch(&ctx, || kmem::read::<u32>(ctx.arg::<u64>(1), kmem::off!(task_state)).unwrap_or(0));
    leave_cpu(leaving);
    0
}

#[inline(always)]
fn count_switch(ctx: &RawTracePointContext, prev_state: impl FnOnce() -> u32) {
    let Some(Traced { key, tid, .. }) = traced() else { return };
    // tid 0 is the idle task: never a traced process.
    if tid == 0 {
        return;
    }
    let preempt: u64 = ctx.arg(0);
    let prev_state = prev_state();
    with_stats(key, class_of(tid), |s| {
        if preempt & 0xff == 0 && prev_state != 0 {
            s.ctx_voluntary += 1;
        } else {
            s.ctx_involuntary += 1;
        }
    });
}
