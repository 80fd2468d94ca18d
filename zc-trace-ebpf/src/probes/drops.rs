//! Counting what could not be counted: every failed map insert lands here, and user space
//! reports the totals instead of silently under-counting.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use zc_trace_common::{DROP_SLOTS, DropReason};

#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_SLOTS, 0);

#[inline(always)]
pub fn record(reason: DropReason) {
    if let Some(slot) = DROPS.get_ptr_mut(reason as u32) {
        // SAFETY: this CPU's slot, added to through the pointer (no reference is made). No
        // other CPU writes it. A program of another kind that interrupts this one on the same
        // CPU (a softirq's `dma_map` inside a syscall program) could record a drop between our
        // load and store and have it lost; drops are rare enough that a plain add is kept.
        unsafe { *slot += 1 };
    }
}
