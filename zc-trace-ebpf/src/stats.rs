//! The per-(thread group, op class) counters.

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST},
    macros::map,
    maps::{PerCpuArray, PerCpuHashMap},
};
use zc_trace_common::{DropReason, OpClass, STATS_MAX_ENTRIES, Stats, StatsKey};

use crate::probes::drops;

/// Not preallocated (BPF_F_NO_PREALLOC): a preallocated per-CPU hash costs
/// entries x CPUs x value size up front (hundreds of MiB on a large machine); entries are
/// created once per (process, class), so allocating on insert costs nothing measurable.
#[map]
static STATS: PerCpuHashMap<StatsKey, Stats> =
    PerCpuHashMap::with_max_entries(STATS_MAX_ENTRIES, BPF_F_NO_PREALLOC);

/// The counters of the one traced process (`FILTER_TGID` set, counters per process), by op
/// class: an array slot instead of a hash lookup on every data syscall.
#[map]
static STATS_ONE: PerCpuArray<Stats> = PerCpuArray::with_max_entries(OpClass::COUNT as u32, 0);

/// An all-zero `Stats` to insert from: the struct is larger than the 512-byte BPF stack.
#[map]
static ZERO_STATS: PerCpuArray<Stats> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's counters for (tgid, class), created on first use. `None` only when the map is
/// full, which is counted as a drop.
#[inline(always)]
pub fn stats(tgid: u32, class: OpClass) -> Option<&'static mut Stats> {
    if crate::filter::single_tgid() {
        // Only the traced process gets here in this mode.
        return STATS_ONE.get_ptr_mut(class as u32).map(|p| unsafe { &mut *p });
    }
    let key = StatsKey { tgid, class: class as u32 };
    if let Some(p) = STATS.get_ptr_mut(&key) {
        return Some(unsafe { &mut *p });
    }
    crate::probes::process::first_seen(tgid);
    let zero = ZERO_STATS.get_ptr(0)?;
    // Another CPU may insert the same key first: then our insert fails and the lookup below
    // finds the entry (with a zero slot for this CPU).
    let _ = STATS.insert(&key, unsafe { &*zero }, BPF_NOEXIST as u64);
    match STATS.get_ptr_mut(&key) {
        Some(p) => Some(unsafe { &mut *p }),
        None => {
            drops::record(DropReason::StatsMapFull);
            None
        }
    }
}
