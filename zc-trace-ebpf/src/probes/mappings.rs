//! File-backed mappings, to tell mmap + write from read + write: mmap(2) of a regular file
//! records the range; a write(2) whose buffer lies in a recorded range copies from the page
//! cache through the mapping. The ranges and their rules are `FileMaps` (zc-trace-common);
//! here they are kept per process in a map, keyed by the thread group id even with
//! `--by thread`: a mapping belongs to the address space, which all threads share.

use aya_ebpf::{bindings::BPF_ANY, macros::map, maps::LruHashMap};
use zc_trace_common::{FILE_MAPS_MAX_ENTRIES, FileMaps};

#[map]
static FILE_MAPS: LruHashMap<u32, FileMaps> = LruHashMap::with_max_entries(FILE_MAPS_MAX_ENTRIES, 0);

#[inline(always)]
pub fn record(tgid: u32, start: u64, len: u64) {
    let mut maps = unsafe { FILE_MAPS.get(&tgid) }.copied().unwrap_or_default();
    maps.record(start, len);
    let _ = FILE_MAPS.insert(&tgid, &maps, BPF_ANY as u64);
}

#[inline(always)]
pub fn forget(tgid: u32, start: u64, len: u64) {
    let Some(p) = FILE_MAPS.get_ptr_mut(&tgid) else { return };
    unsafe { &mut *p }.forget(start, len);
}

#[inline(always)]
pub fn contains(tgid: u32, addr: u64) -> bool {
    unsafe { FILE_MAPS.get(&tgid) }.is_some_and(|maps| maps.contains(addr))
}
