//! The per-(counter key, op class) counters; the key is a process or a thread (filter.rs).

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use zc_trace_common::{DropReason, OpClass, STATS_MAX_ENTRIES, Stats, StatsKey};

use crate::{atomic, maps::lookup_or_try_init, probes::drops};

/// Shared by every CPU (a plain hash, added to atomically): a per-CPU hash holds a value per
/// possible CPU in every entry, 8,192 x 600 B x 128 CPUs = 640 MiB on a large host. Not
/// preallocated: entries are made once per (process, class).
#[map]
static STATS: HashMap<StatsKey, Stats> = HashMap::with_max_entries(STATS_MAX_ENTRIES, BPF_F_NO_PREALLOC);

/// This CPU's counts of the program running now, before [`merge`] adds them to `STATS`
/// (zero between uses). `busy`: a program is between its counting and its merge here.
#[repr(C)]
pub struct Delta {
    busy: u64,
    stats: Stats,
}

#[map]
static STATS_DELTA: PerCpuArray<Delta> = PerCpuArray::with_max_entries(1, 0);

/// The counters of the one traced process (`FILTER_TGID` set, counters per process), by op
/// class: an array slot instead of a hash lookup on every data syscall.
#[map]
static STATS_ONE: PerCpuArray<Stats> = PerCpuArray::with_max_entries(OpClass::COUNT as u32, 0);

/// An all-zero `Stats` to insert from: the struct is larger than the 512-byte BPF stack.
#[map]
static ZERO_STATS: PerCpuArray<Stats> = PerCpuArray::with_max_entries(1, 0);

/// Runs `f` on the counters for (`key`, `class`), created on first use, and returns what it
/// returns. `None` only when the counters could not be created (the map is full), which is
/// counted as a drop.
///
/// With one traced process, `f` adds to this CPU's slot of a per-CPU array: no other CPU
/// touches it. Otherwise the counters are shared: `f` adds to this CPU's zeroed [`Delta`],
/// whose non-zero words are then added to the entry atomically. The rules (`derive`) stay
/// plain `+=` code either way.
///
/// A closure rather than a returned `&'static mut`: the reference cannot outlive the update,
/// so a caller cannot hold it while something else fetches the same entry.
#[inline(always)]
pub fn with_stats<R>(key: u32, class: OpClass, f: impl FnOnce(&mut Stats) -> R) -> Option<R> {
    if crate::filter::single_tgid() {
        // Only the traced process gets here in this mode.
        return with_one(class, f);
    }
    let stats_key = StatsKey { tgid: key, class: class as u32 };
    let created = lookup_or_try_init(&STATS, &stats_key, || {
        crate::probes::process::first_seen(key);
        // SAFETY: nothing writes ZERO_STATS; the reference lives for the insert only.
        ZERO_STATS.get_ptr(0).map(|zero| unsafe { &*zero })
    });
    let Some(shared) = created else {
        drops::record(DropReason::StatsMapFull);
        return None;
    };
    update(shared, f)
}

/// Runs `f` on this CPU's slot of the one traced process's counters for `class`.
#[inline(always)]
fn with_one<R>(class: OpClass, f: impl FnOnce(&mut Stats) -> R) -> Option<R> {
    let counters = STATS_ONE.get_ptr_mut(class as u32)?;
    // SAFETY: this CPU's slot; the reference ends with `f`. A program of another kind can run
    // on this CPU in the middle of `f` (a softirq's `net_dev_start_xmit` interrupting a
    // syscall program) and add to the same slot: the worst case is one lost increment, as
    // with any per-CPU counter that is not updated atomically.
    Some(f(unsafe { &mut *counters }))
}

/// Runs `f` on this CPU's [`Delta`] and adds what it counted to the shared `counters`.
#[inline(always)]
fn update<R>(shared: *mut Stats, f: impl FnOnce(&mut Stats) -> R) -> Option<R> {
    let delta = STATS_DELTA.get_ptr_mut(0)?;
    // SAFETY: this CPU's delta, used by one program at a time (`busy`); `shared` is a map
    // value, alive for the program's run.
    unsafe {
        if (*delta).busy != 0 {
            // This program interrupted another between its counting and its merge (a softirq
            // on the syscall's CPU): its counts must not be merged under our key. Added to the
            // entry directly; racing with another CPU's merge, an increment may be lost.
            return Some(f(&mut *shared));
        }
        (*delta).busy = 1;
        let r = f(&mut (*delta).stats);
        merge(&mut (*delta).stats, shared);
        (*delta).busy = 0;
        Some(r)
    }
}

/// Adds every non-zero word of `delta` to `shared` atomically, and zeroes it.
#[inline(never)]
fn merge(delta: &mut Stats, shared: *mut Stats) {
    const WORDS: usize = core::mem::size_of::<Stats>() / 8;
    let (from, to) = ((delta as *mut Stats).cast::<u64>(), shared.cast::<u64>());
    let mut i = 0;
    while i < WORDS {
        // SAFETY: `Stats` is repr(C) and made of u64s: word `i` < WORDS of both values.
        unsafe {
            let n = core::ptr::read_volatile(from.add(i));
            if n != 0 {
                core::ptr::write_volatile(from.add(i), 0);
                atomic::add(to.add(i), n);
            }
        }
        i += 1;
    }
}

/// As [`with_stats`], but only if the counters for (`key`, `class`) exist already: for
/// programs that run outside the key's task (a socket closing in softirq context), which must
/// not create counters named after whatever task they interrupted.
#[inline(always)]
pub fn with_existing_stats<R>(key: u32, class: OpClass, f: impl FnOnce(&mut Stats) -> R) -> Option<R> {
    if crate::filter::single_tgid() {
        return with_one(class, f);
    }
    update(STATS.get_ptr_mut(&StatsKey { tgid: key, class: class as u32 })?, f)
}
