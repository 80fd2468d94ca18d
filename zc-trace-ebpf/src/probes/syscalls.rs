//! Mode switches caused by system calls: `raw_syscalls:sys_enter` fires once per syscall on
//! every kernel and every architecture, so it is the one place where all of them can be counted.
//!
//! Counted at entry, not exit: `exit`/`exit_group` never return, and a call that was already
//! blocked when we attached (entered before us) is not ours to count.

use aya_ebpf::{macros::{map, raw_tracepoint}, maps::PerCpuHashMap, programs::RawTracePointContext};
use zc_trace_common::{DropReason, SYSCALL_COUNTS_MAX_ENTRIES, SyscallKey};

use super::drops;
use crate::filter::traced_tgid;

#[map]
static SYSCALL_COUNTS: PerCpuHashMap<SyscallKey, u64> =
    PerCpuHashMap::with_max_entries(SYSCALL_COUNTS_MAX_ENTRIES, 0);

/// `sys_enter(struct pt_regs *regs, long id)`: arg 1 is the syscall number.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter(ctx: RawTracePointContext) -> i32 {
    let Some(tgid) = traced_tgid() else { return 0 };
    let nr: u64 = ctx.arg(1);
    let key = SyscallKey { tgid, nr: nr as u32 };
    bump(&key);
    0
}

#[inline(always)]
fn bump(key: &SyscallKey) {
    if let Some(count) = SYSCALL_COUNTS.get_ptr_mut(key) {
        unsafe { *count += 1 };
        return;
    }
    // BPF_NOEXIST: another CPU may have created the key between our lookup and this insert;
    // then the key exists with a zero slot for this CPU, and a second lookup finds it.
    if SYSCALL_COUNTS.insert(key, &1, 1 /* BPF_NOEXIST */).is_ok() {
        return;
    }
    match SYSCALL_COUNTS.get_ptr_mut(key) {
        Some(count) => unsafe { *count += 1 },
        None => drops::record(DropReason::SyscallMapFull),
    }
}
