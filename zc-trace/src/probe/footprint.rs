//! Kernel memory of the counting programs' maps: the most they can take on a machine with N
//! possible CPUs, computed from the map definitions in the embedded object, and what the
//! kernel accounts for them now (`memlock` in /proc/self/fdinfo). The model of what the
//! kernel allocates per map type is in docs/probes.md (Kernel memory); it leaves out the
//! fixed headers of each map (a few hundred bytes).
use anyhow::Context as _;
use zc_trace_common::maps;

use crate::{model::doctor::MapMemory, probe::loader};

/// Machine sizes the report and BENCHMARKS.md compare.
pub const CPU_COUNTS: [u64; 3] = [2, 16, 128];

const HASH: u32 = 1;
const ARRAY: u32 = 2;
const PERCPU_HASH: u32 = 5;
const PERCPU_ARRAY: u32 = 6;
const LRU_HASH: u32 = 9;
const LRU_PERCPU_HASH: u32 = 10;
const BPF_F_NO_PREALLOC: u32 = 1;

/// `struct htab_elem` before its key (x86-64 and arm64: two unions of 16 and 24 bytes and
/// the hash), `struct bucket`, and the free-list node of a map that allocates on insert.
const HTAB_ELEM: u64 = 48;
const BUCKET: u64 = 16;
const LLIST_NODE: u64 = 8;
/// Per hash map: 8 per-CPU lock counters of 4 bytes.
const HTAB_LOCKS: u64 = 8 * 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapDef {
    pub name: String,
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

fn round8(n: u32) -> u64 {
    u64::from(n).div_ceil(8) * 8
}

/// The most `map` can take with `cpus` possible CPUs: every entry present.
pub fn most_bytes(map: &MapDef, cpus: u64) -> u64 {
    bytes(map, cpus, u64::from(map.max_entries))
}

/// What `map` takes with no entry in it yet: what is allocated up front (arrays,
/// preallocated hashes, every hash's buckets). What the kernel accounts at start-up.
pub fn empty_bytes(map: &MapDef, cpus: u64) -> u64 {
    let allocates_on_insert =
        map.flags & BPF_F_NO_PREALLOC != 0 && matches!(map.map_type, HASH | LRU_HASH | PERCPU_HASH | LRU_PERCPU_HASH);
    if allocates_on_insert {
        u64::from(map.max_entries).next_power_of_two() * BUCKET + HTAB_LOCKS * cpus
    } else {
        most_bytes(map, cpus)
    }
}

/// `map` with `present` entries (all of them when it is preallocated).
fn bytes(map: &MapDef, cpus: u64, present: u64) -> u64 {
    let entries = u64::from(map.max_entries);
    let (key, value) = (round8(map.key_size), round8(map.value_size));
    let prealloc = map.flags & BPF_F_NO_PREALLOC == 0;
    match map.map_type {
        ARRAY => value * entries,
        // The values, and a pointer per entry to them.
        PERCPU_ARRAY => value * entries * cpus + 8 * entries,
        HASH | LRU_HASH | PERCPU_HASH | LRU_PERCPU_HASH => {
            let per_cpu = matches!(map.map_type, PERCPU_HASH | LRU_PERCPU_HASH);
            let elem = HTAB_ELEM + key + if per_cpu { 8 } else { value };
            // A preallocated plain hash keeps one spare element per CPU for updates.
            let elems = match (prealloc, map.map_type) {
                (true, HASH) => entries + cpus,
                (true, _) => entries,
                (false, _) => present,
            };
            let mut bytes = entries.next_power_of_two() * BUCKET + HTAB_LOCKS * cpus;
            bytes += elems * (elem + if prealloc { 0 } else { LLIST_NODE });
            if per_cpu {
                bytes += elems * (value * cpus + if prealloc { 0 } else { LLIST_NODE });
            }
            bytes
        }
        // No other map type is used; counted at its values' size.
        _ => value * entries,
    }
}

/// The counting object's maps, with `STATS` at `stats_entries` (its capacity is a setting).
pub fn probe_maps(stats_entries: u32) -> anyhow::Result<Vec<MapDef>> {
    let object = aya_obj::Object::parse(loader::probes_object()?).context("parsing the embedded eBPF object")?;
    let mut defs: Vec<MapDef> = object
        .maps
        .iter()
        .map(|(name, m)| MapDef {
            name: name.clone(),
            map_type: m.map_type(),
            key_size: m.key_size(),
            value_size: m.value_size(),
            max_entries: if name == maps::STATS { stats_entries } else { m.max_entries().max(1) },
            flags: m.map_flags(),
        })
        .collect();
    defs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(defs)
}

/// The report for this machine (`cpus` possible CPUs).
pub fn map_memory(defs: &[MapDef], cpus: u64) -> MapMemory {
    let total = |cpus: u64| defs.iter().map(|d| most_bytes(d, cpus)).sum::<u64>();
    let mut largest: Vec<(String, u64)> = defs.iter().map(|d| (d.name.clone(), most_bytes(d, cpus))).collect();
    largest.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    largest.truncate(5);
    MapMemory {
        cpus,
        most_bytes: total(cpus),
        most_bytes_at: CPU_COUNTS.iter().map(|&c| (c, total(c))).collect(),
        largest,
    }
}

/// Possible CPUs (what per-CPU maps are sized by), not online ones.
pub fn possible_cpus() -> u64 {
    aya::util::nr_cpus().map_or(1, |n| n as u64)
}

/// What the kernel accounts for every BPF map this process holds open: the sum of `memlock`
/// over the fds that are maps.
pub fn memlock_now() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else { return 0 };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|text| map_memlock(&text))
        .sum()
}

/// The `memlock` of one fdinfo text, if the fd is a BPF map.
fn map_memlock(fdinfo: &str) -> Option<u64> {
    let field = |name: &str| fdinfo.lines().find_map(|l| l.strip_prefix(name).map(str::trim));
    field("map_type:")?;
    field("memlock:")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(map_type: u32, key: u32, value: u32, entries: u32, flags: u32) -> MapDef {
        MapDef { name: "m".into(), map_type, key_size: key, value_size: value, max_entries: entries, flags }
    }

    #[test]
    fn per_cpu_values_grow_with_the_cpus_and_the_rest_does_not() {
        let array = def(ARRAY, 4, 12, 100, 0);
        assert_eq!(most_bytes(&array, 2), most_bytes(&array, 128));
        assert_eq!(most_bytes(&array, 2), 16 * 100, "values rounded up to 8 bytes");
        let per_cpu = def(PERCPU_ARRAY, 4, 8, 10, 0);
        assert_eq!(most_bytes(&per_cpu, 128), 8 * 10 * 128 + 8 * 10);
        // A per-CPU hash of 8 KiB entries of 600 bytes: the values dominate, per CPU.
        let stats = def(PERCPU_HASH, 8, 600, 8192, BPF_F_NO_PREALLOC);
        let at = |cpus| most_bytes(&stats, cpus);
        assert_eq!(at(128) - at(2), 8192 * 600 * 126 + HTAB_LOCKS * 126);
        // The same entries in a plain hash: no CPU factor but the locks.
        let shared = def(HASH, 8, 600, 8192, BPF_F_NO_PREALLOC);
        assert_eq!(most_bytes(&shared, 128) - most_bytes(&shared, 2), HTAB_LOCKS * 126);
    }

    #[test]
    fn a_preallocated_plain_hash_keeps_a_spare_element_per_cpu() {
        let h = def(HASH, 4, 4, 1000, 0);
        let elem = HTAB_ELEM + 8 + 8;
        assert_eq!(most_bytes(&h, 4), 1024 * BUCKET + HTAB_LOCKS * 4 + (1000 + 4) * elem);
        let lru = def(LRU_HASH, 4, 4, 1000, 0);
        assert_eq!(most_bytes(&lru, 4), 1024 * BUCKET + HTAB_LOCKS * 4 + 1000 * elem);
    }

    #[test]
    fn fdinfo_of_a_map_gives_its_memlock() {
        let map = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nmap_type:\t5\nkey_size:\t8\n\
                   value_size:\t600\nmax_entries:\t8192\nmap_flags:\t0x1\nmap_extra:\t0x0\nmemlock:\t134720\n\
                   map_id:\t412\nfrozen:\t0\n";
        assert_eq!(map_memlock(map), Some(134_720));
        let prog = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nprog_type:\t17\nmemlock:\t4096\n";
        assert_eq!(map_memlock(prog), None, "a program's fd is no map");
    }

    #[test]
    fn the_embedded_maps_are_all_counted() {
        let defs = probe_maps(zc_trace_common::STATS_MAX_ENTRIES).expect("the embedded object");
        let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        for name in [maps::STATS, maps::SYSCALL_COUNTS, maps::FLOWS, maps::COMMS, maps::SOCK_OWNER] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
        let empty: u64 = defs.iter().map(|d| empty_bytes(d, 2)).sum();
        let report = map_memory(&defs, 2);
        assert!(empty < report.most_bytes);
        assert_eq!(report.most_bytes, report.most_bytes_at[&2]);
        assert!(report.most_bytes_at[&128] > report.most_bytes_at[&2]);
    }
}
