//! Which tasks are counted. The settings are read-only globals written by user space before
//! load, so the verifier sees constants and drops the filter entirely when it is off.

use aya_ebpf::helpers::bpf_get_current_pid_tgid;

/// 0 = every process; otherwise only this thread group.
#[unsafe(no_mangle)]
static FILTER_TGID: u32 = 0;

/// Returns the current thread group id if the task is one we trace.
#[inline(always)]
pub fn traced_tgid() -> Option<u32> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // Volatile: without it the compiler folds the initial 0 into the code and the value that
    // user space writes before load would never be read.
    let wanted = unsafe { core::ptr::read_volatile(&FILTER_TGID) };
    if wanted != 0 && wanted != tgid {
        return None;
    }
    Some(tgid)
}
