//! File-backed mappings, to tell mmap + write from read + write: mmap(2) of a regular file
//! records the range; a write(2) whose buffer lies in a recorded range copies from the page
//! cache through the mapping. The ranges and their rules are `FileMaps` (zc-trace-common);
//! here they are kept per process in a map, keyed by the thread group id even with
//! `--by thread`: a mapping belongs to the address space, which all threads share.

use aya_ebpf::{
    bindings::BPF_ANY,
    macros::map,
    maps::{Array, LruHashMap},
};
use zc_trace_common::{FILE_MAPS_MAX_ENTRIES, FileMaps};

use crate::filter;

#[map]
static FILE_MAPS: LruHashMap<u32, FileMaps> = LruHashMap::with_max_entries(FILE_MAPS_MAX_ENTRIES, 0);

/// The mappings of the one traced thread group (`FILTER_TGID`): an array slot instead of a
/// hash lookup on every write(2).
#[map]
static FILE_MAPS_ONE: Array<FileMaps> = Array::with_max_entries(1, 0);

#[inline(always)]
pub fn record(tgid: u32, start: u64, len: u64) {
    if filter::only_tgid() {
        // Only the traced thread group gets here in this mode.
        if let Some(p) = FILE_MAPS_ONE.get_ptr_mut(0) {
            unsafe { &mut *p }.record(start, len);
        }
        return;
    }
    let mut maps = unsafe { FILE_MAPS.get(&tgid) }.copied().unwrap_or_default();
    maps.record(start, len);
    let _ = FILE_MAPS.insert(&tgid, &maps, BPF_ANY as u64);
}

#[inline(always)]
pub fn forget(tgid: u32, start: u64, len: u64) {
    let Some(p) = existing(tgid) else { return };
    unsafe { &mut *p }.forget(start, len);
}

#[inline(always)]
pub fn contains(tgid: u32, addr: u64) -> bool {
    existing(tgid).is_some_and(|p| unsafe { &*p }.contains(addr))
}

/// Thread group `tgid`'s mappings, if it has any recorded (the one traced group's slot
/// always exists).
#[inline(always)]
fn existing(tgid: u32) -> Option<*mut FileMaps> {
    if filter::only_tgid() { FILE_MAPS_ONE.get_ptr_mut(0) } else { FILE_MAPS.get_ptr_mut(&tgid) }
}
