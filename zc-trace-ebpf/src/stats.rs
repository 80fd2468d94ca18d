//! The per-(counter key, op class) counters; the key is a process or a thread (filter.rs).

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{PerCpuArray, PerCpuHashMap},
};
use zc_trace_common::{DropReason, OpClass, STATS_MAX_ENTRIES, Stats, StatsKey};

use crate::{maps::lookup_or_try_init, probes::drops};

/// Not preallocated (BPF_F_NO_PREALLOC): a preallocated per-CPU hash costs
/// entries x CPUs x value size up front (hundreds of MiB on a large machine); entries are
/// created once per (process, class), so allocating on insert costs nothing measurable.
#[map]
static STATS: PerCpuHashMap<StatsKey, Stats> = PerCpuHashMap::with_max_entries(STATS_MAX_ENTRIES, BPF_F_NO_PREALLOC);

/// The counters of the one traced process (`FILTER_TGID` set, counters per process), by op
/// class: an array slot instead of a hash lookup on every data syscall.
#[map]
static STATS_ONE: PerCpuArray<Stats> = PerCpuArray::with_max_entries(OpClass::COUNT as u32, 0);

/// An all-zero `Stats` to insert from: the struct is larger than the 512-byte BPF stack.
#[map]
static ZERO_STATS: PerCpuArray<Stats> = PerCpuArray::with_max_entries(1, 0);

/// Runs `f` on this CPU's counters for (`key`, `class`), created on first use, and returns
/// what it returns. `None` only when the counters could not be created (the map is full),
/// which is counted as a drop.
///
/// A closure rather than a returned `&'static mut`: the reference cannot outlive the update,
/// so a caller cannot hold it while something else fetches the same entry.
#[inline(always)]
pub fn with_stats<R>(key: u32, class: OpClass, f: impl FnOnce(&mut Stats) -> R) -> Option<R> {
    let counters = if crate::filter::single_tgid() {
        // Only the traced process gets here in this mode.
        STATS_ONE.get_ptr_mut(class as u32)?
    } else {
        let stats_key = StatsKey { tgid: key, class: class as u32 };
        let created = lookup_or_try_init(&STATS, &stats_key, || {
            crate::probes::process::first_seen(key);
            // SAFETY: nothing writes ZERO_STATS; the reference lives for the insert only.
            ZERO_STATS.get_ptr(0).map(|zero| unsafe { &*zero })
        });
        match created {
            Some(p) => p,
            None => {
                drops::record(DropReason::StatsMapFull);
                return None;
            }
        }
    };
    // SAFETY: `counters` is this CPU's copy of the entry (per-CPU array slot or per-CPU hash
    // value), so no other CPU touches it, and the reference ends with `f`. No program reaches
    // STATS again from inside `f`. A program of another kind can run on this CPU in the middle
    // of `f` (a softirq's `dma_map` or `net_dev_start_xmit`, or `block_rq_issue`, interrupting
    // a syscall program) and add to the same entry; the counters are plain adds, so the worst
    // case is one lost increment, as with any per-CPU counter that is not updated atomically.
    // The nested program runs to completion before `f` resumes, as a signal handler would.
    Some(f(unsafe { &mut *counters }))
}
