//! Page faults. `exceptions:page_fault_user` (x86) is a fault taken in user mode: a mode
//! switch. `page_fault_kernel` on a user address is the kernel touching user memory that is
//! not mapped yet (e.g. write() reading from an mmap'd file): real work, but no extra switch.
//! arm64 has no such tracepoints: there the `page-faults` software perf event, one per CPU
//! sampling every fault, runs `zc_page_fault_arm64`, which tells the two apart by the
//! faulting context's exception level.

use aya_ebpf::{
    macros::{perf_event, raw_tracepoint},
    programs::{PerfEventContext, RawTracePointContext},
};
use zc_trace_common::linux::{ARM64_PERF_ADDR_WORD, ARM64_PERF_PSTATE_WORD, FaultKind, arm64_fault};

use super::inflight::class_of;
use crate::{
    filter::{Traced, traced},
    stats::with_stats,
};

/// Top of the x86-64 user address space (47-bit; 5-level paging raises it, never lowers it).
const USER_ADDRESS_LIMIT: u64 = 0x0000_8000_0000_0000;

#[raw_tracepoint(tracepoint = "page_fault_user")]
pub fn zc_page_fault_user(_ctx: RawTracePointContext) -> i32 {
    let Some(Traced { key, tid, .. }) = traced() else { return 0 };
    with_stats(key, class_of(tid), |s| s.user_faults += 1);
    0
}

/// `page_fault_kernel(unsigned long address, struct pt_regs *regs, unsigned long error_code)`.
#[raw_tracepoint(tracepoint = "page_fault_kernel")]
pub fn zc_page_fault_kernel(ctx: RawTracePointContext) -> i32 {
    let Some(Traced { key, tid, .. }) = traced() else { return 0 };
    let address: u64 = ctx.arg(0);
    // Faults of our own user-stack walk (`--stacks`) are the measurement's, not the process's.
    if address >= USER_ADDRESS_LIMIT || super::stacks::walking() {
        return 0;
    }
    with_stats(key, class_of(tid), |s| s.kernel_faults += 1);
    0
}

/// arm64 only (its context's layout is arm64's `bpf_perf_event_data`; user space attaches it
/// on arm64 kernels without the page-fault tracepoints).
#[perf_event]
pub fn zc_page_fault_arm64(ctx: PerfEventContext) -> u32 {
    let Some(Traced { key, tid, .. }) = traced() else { return 0 };
    let words = ctx.ctx.cast::<u64>();
    // SAFETY: constant offsets inside the context, which the verifier checks against its size.
    let (pstate, addr) = unsafe { (*words.add(ARM64_PERF_PSTATE_WORD), *words.add(ARM64_PERF_ADDR_WORD)) };
    match arm64_fault(pstate, addr) {
        FaultKind::User => {
            with_stats(key, class_of(tid), |s| s.user_faults += 1);
        }
        // As on x86: faults of our own user-stack walk are the measurement's.
        FaultKind::KernelOnUserAddress if !super::stacks::walking() => {
            with_stats(key, class_of(tid), |s| s.kernel_faults += 1);
        }
        _ => {}
    }
    0
}
