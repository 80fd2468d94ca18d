//! Page faults. `exceptions:page_fault_user` (x86) is a fault taken in user mode: a mode
//! switch. `page_fault_kernel` on a user address is the kernel touching user memory that is
//! not mapped yet (e.g. write() reading from an mmap'd file): real work, but no extra switch.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

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
