//! Do-nothing programs used by `zc-trace doctor`: the only reliable way to know whether an
//! attach kind works on a kernel is to load and attach something of that kind (what
//! libbpf-tools' `fentry_can_attach` does). Each returns at once and touches no map.
#![no_std]
#![no_main]

use aya_ebpf::{
    macros::{btf_tracepoint, fentry, fexit, kprobe, kretprobe, raw_tracepoint, tracepoint},
    programs::{
        BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RawTracePointContext, RetProbeContext,
        TracePointContext,
    },
};

#[tracepoint]
pub fn zc_can_tracepoint(_ctx: TracePointContext) -> u32 {
    0
}

#[raw_tracepoint]
pub fn zc_can_raw_tracepoint(_ctx: RawTracePointContext) -> i32 {
    0
}

// The attach target is chosen at load time by user space; the names here are placeholders.
#[btf_tracepoint(function = "sys_enter")]
pub fn zc_can_tp_btf(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[fentry(function = "vfs_read")]
pub fn zc_can_fentry(_ctx: FEntryContext) -> u32 {
    0
}

#[fexit(function = "vfs_read")]
pub fn zc_can_fexit(_ctx: FExitContext) -> u32 {
    0
}

#[kprobe]
pub fn zc_can_kprobe(_ctx: ProbeContext) -> u32 {
    0
}

#[kretprobe]
pub fn zc_can_kretprobe(_ctx: RetProbeContext) -> u32 {
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

/// The floor for benchmarks: attached to the same tracepoints as the counting programs, it
/// does nothing, so it measures what the kernel's tracing path alone costs.
#[raw_tracepoint]
pub fn zc_floor(_ctx: RawTracePointContext) -> i32 {
    0
}
