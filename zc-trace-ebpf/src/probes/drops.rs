//! Counting what could not be counted: every failed map insert lands here, and user space
//! reports the totals instead of silently under-counting.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use zc_trace_common::{DROP_SLOTS, DropReason};

#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_SLOTS, 0);

#[inline(always)]
pub fn record(reason: DropReason) {
    if let Some(slot) = DROPS.get_ptr_mut(reason as u32) {
        // Per-CPU slot: no other CPU writes it, and programs do not nest on one CPU for the
        // same attach point, so a plain add is exact.
        unsafe { *slot += 1 };
    }
}
