//! Which tasks are counted. The settings are read-only globals written by user space before
//! load, so the verifier sees constants and drops the unused filter entirely.

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::map, maps::HashMap};
use zc_trace_common::TRACED_MAX_ENTRIES;

/// Non-zero: only this thread group.
#[unsafe(no_mangle)]
static FILTER_TGID: u32 = 0;

/// Non-zero: only the thread groups in `TRACED` (e.g. a lab's sender and receiver).
#[unsafe(no_mangle)]
static FILTER_MAP: u32 = 0;

#[map]
static TRACED: HashMap<u32, u8> = HashMap::with_max_entries(TRACED_MAX_ENTRIES, 0);

/// (tgid, tid) of the current task if it is one we trace.
#[inline(always)]
pub fn traced() -> Option<(u32, u32)> {
    let id = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((id >> 32) as u32, id as u32);
    // Volatile: without it the compiler folds the initial 0 into the code and the value that
    // user space writes before load would never be read.
    let wanted = unsafe { core::ptr::read_volatile(&FILTER_TGID) };
    if wanted != 0 {
        return (wanted == tgid).then_some((tgid, tid));
    }
    if unsafe { core::ptr::read_volatile(&FILTER_MAP) } != 0 {
        return unsafe { TRACED.get(&tgid) }.map(|_| (tgid, tid));
    }
    Some((tgid, tid))
}
