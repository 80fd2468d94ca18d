//! File-backed mappings, to tell mmap + write from read + write: mmap(2) of a regular file
//! records the range; a write(2) whose buffer lies in a recorded range copies from the page
//! cache through the mapping. The last `FILE_MAP_SLOTS` mappings of each process are kept
//! (round robin); munmap forgets the ranges it covers.

use aya_ebpf::{macros::map, maps::LruHashMap};
use zc_trace_common::{FILE_MAP_SLOTS, FILE_MAPS_MAX_ENTRIES, FileMaps};

#[map]
static FILE_MAPS: LruHashMap<u32, FileMaps> = LruHashMap::with_max_entries(FILE_MAPS_MAX_ENTRIES, 0);

#[inline(always)]
pub fn record(tgid: u32, start: u64, len: u64) {
    let mut maps = unsafe { FILE_MAPS.get(&tgid) }.copied().unwrap_or_default();
    let slot = (maps.next as usize) % FILE_MAP_SLOTS;
    maps.ranges[slot] = [start, start + len];
    maps.next += 1;
    let _ = FILE_MAPS.insert(&tgid, &maps, 0);
}

#[inline(always)]
pub fn forget(tgid: u32, start: u64, len: u64) {
    let Some(p) = FILE_MAPS.get_ptr_mut(&tgid) else { return };
    let maps = unsafe { &mut *p };
    let end = start + len;
    for i in 0..FILE_MAP_SLOTS {
        let r = maps.ranges[i];
        if r[0] < end && start < r[1] {
            maps.ranges[i] = [0, 0];
        }
    }
}

#[inline(always)]
pub fn contains(tgid: u32, addr: u64) -> bool {
    let Some(maps) = (unsafe { FILE_MAPS.get(&tgid) }) else { return false };
    let mut hit = false;
    for i in 0..FILE_MAP_SLOTS {
        let r = maps.ranges[i];
        hit |= r[0] <= addr && addr < r[1];
    }
    hit
}
