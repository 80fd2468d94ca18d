//! Whether this CPU is in interrupt context (a hard IRQ handler or a softirq), from the
//! `irq:irq_handler_entry/exit` and `irq:softirq_entry/exit` tracepoints: a per-CPU depth.
//! Attached only when `dma:*` events are: a DMA mapping made in interrupt context (a NIC
//! transmitting from the NET_TX softirq, a completion handler) is not charged to whatever
//! task the interrupt happened to land on; the device's figures still count it.
//!
//! A handler that was already running when we attached exits without an entry: the depth
//! does not go below zero. NMIs are not tracked (no driver maps DMA in an NMI).

use aya_ebpf::{
    macros::{map, raw_tracepoint},
    maps::PerCpuArray,
    programs::RawTracePointContext,
};

#[map]
static IRQ_DEPTH: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

#[raw_tracepoint]
pub fn zc_irq_enter(_ctx: RawTracePointContext) -> i32 {
    if let Some(d) = IRQ_DEPTH.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; an interrupt that nests finishes before we go on.
        unsafe { *d += 1 };
    }
    0
}

#[raw_tracepoint]
pub fn zc_irq_exit(_ctx: RawTracePointContext) -> i32 {
    if let Some(d) = IRQ_DEPTH.get_ptr_mut(0) {
        // SAFETY: as above.
        unsafe { *d = (*d).saturating_sub(1) };
    }
    0
}

/// True inside a hard IRQ handler or a softirq on this CPU (false when not tracked).
#[inline(always)]
pub fn in_interrupt() -> bool {
    IRQ_DEPTH.get(0).is_some_and(|d| *d > 0)
}
