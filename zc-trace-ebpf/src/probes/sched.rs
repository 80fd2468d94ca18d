//! Context switches: `sched_switch(bool preempt, prev, next, unsigned int prev_state)` fires
//! in the context of `prev`, so the current task is the one leaving the CPU. Voluntary when
//! it was not preempted and was going to sleep (the kernel's own nvcsw/nivcsw rule).

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

use aya_ebpf::helpers::bpf_get_current_pid_tgid;

use super::inflight::{class_of, leave_cpu};
use crate::{
    filter::{Traced, traced},
    stats::with_stats,
};

#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn zc_sched_switch(ctx: RawTracePointContext) -> i32 {
    // Whoever leaves the CPU takes its per-thread state out of this CPU's slot (inflight.rs),
    // after the switch is charged to the syscall it is in.
    let leaving = bpf_get_current_pid_tgid() as u32;
    count_switch(&ctx);
    leave_cpu(leaving);
    0
}

#[inline(always)]
fn count_switch(ctx: &RawTracePointContext) {
    let Some(Traced { key, tid, .. }) = traced() else { return };
    // tid 0 is the idle task: never a traced process.
    if tid == 0 {
        return;
    }
    let preempt: u64 = ctx.arg(0);
    let prev_state: u64 = ctx.arg(3);
    with_stats(key, class_of(tid), |s| {
        if preempt & 0xff == 0 && prev_state as u32 != 0 {
            s.ctx_voluntary += 1;
        } else {
            s.ctx_involuntary += 1;
        }
    });
}
