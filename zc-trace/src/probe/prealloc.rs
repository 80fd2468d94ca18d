//! Preallocated hash maps, for kernels that need them.
//!
//! The counting programs' hash maps allocate their elements as they are first written
//! (`BPF_F_NO_PREALLOC`): a map sized for thousands of processes costs memory only for the
//! few traced. That is safe in tracing programs since the kernel allocates from
//! `bpf_mem_alloc` caches (6.1). Before, a tracepoint can fire inside the allocator itself:
//! the verifier prints a kernel WARNING on load (5.7-6.0) and PREEMPT_RT kernels refuse the
//! program. There every such map is created preallocated, by clearing the flag in the
//! object's map definitions before aya reads them (aya has no per-map flag override).
//! Whether the kernel needs it comes from its BTF (`KernelBtf::runtime_map_alloc`).

use std::borrow::Cow;

use anyhow::{Context as _, bail};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

/// `struct bpf_map_def` as aya-ebpf lays its `#[map]` statics out in the `maps` section:
/// seven `u32`s: type, key size, value size, max entries, flags, id, pinning.
const MAP_DEF_SIZE: usize = 28;
const TYPE_AT: usize = 0;
const FLAGS_AT: usize = 16;
/// `BPF_MAP_TYPE_HASH` and `BPF_MAP_TYPE_PERCPU_HASH`: the map types the flag applies to.
const HASH_TYPES: [u32; 2] = [1, 5];
const BPF_F_NO_PREALLOC: u32 = 1;

/// `object` with `BPF_F_NO_PREALLOC` cleared in every hash map's definition, and the names
/// of the maps changed. Borrowed unchanged when no map has the flag.
pub fn preallocate_hash_maps(object: &[u8]) -> anyhow::Result<(Cow<'_, [u8]>, Vec<String>)> {
    let sites = run_time_allocated(object)?;
    if sites.is_empty() {
        return Ok((Cow::Borrowed(object), Vec::new()));
    }
    let mut out = object.to_vec();
    let mut names = Vec::new();
    for (name, at) in sites {
        let flags = &mut out[at + FLAGS_AT..at + FLAGS_AT + 4];
        let value = u32::from_le_bytes(flags.try_into().expect("4 bytes")) & !BPF_F_NO_PREALLOC;
        flags.copy_from_slice(&value.to_le_bytes());
        names.push(name);
    }
    Ok((Cow::Owned(out), names))
}

/// (map name, file offset of its definition) of each hash map created with
/// `BPF_F_NO_PREALLOC`.
fn run_time_allocated(object: &[u8]) -> anyhow::Result<Vec<(String, usize)>> {
    let file = object::File::parse(object).context("parsing the eBPF object")?;
    if !file.is_little_endian() {
        bail!("the eBPF object is big-endian: map definitions are only rewritten in little-endian objects");
    }
    let Some(maps) = file.section_by_name("maps") else { return Ok(Vec::new()) };
    let (start, size) = maps.file_range().context("the maps section has no file data")?;
    let maps_index = maps.index();
    let mut sites = Vec::new();
    for symbol in file.symbols().filter(|s| s.section_index() == Some(maps_index)) {
        let at = symbol.address() - maps.address();
        if at + MAP_DEF_SIZE as u64 > size {
            bail!("map {} lies outside the maps section", symbol.name().unwrap_or("?"));
        }
        let at = (start + at) as usize;
        let word = |off: usize| u32::from_le_bytes(object[at + off..at + off + 4].try_into().expect("4 bytes"));
        if HASH_TYPES.contains(&word(TYPE_AT)) && word(FLAGS_AT) & BPF_F_NO_PREALLOC != 0 {
            sites.push((symbol.name().unwrap_or("?").to_string(), at));
        }
    }
    Ok(sites)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded counting object: its run-time-allocated hash maps are found and cleared,
    /// and nothing else in the object changes.
    #[test]
    fn clears_the_flag_of_hash_maps_only() {
        let Ok(object) = crate::probe::loader::probes_object() else { return };
        if object.is_empty() {
            return; // built without bpf-linker
        }
        let found = run_time_allocated(object).unwrap();
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        for map in ["FLOWS", "STATS", "SYSCALL_COUNTS", "FD_NAMES"] {
            assert!(names.contains(&map), "{map} not among {names:?}");
        }
        let (patched, changed) = preallocate_hash_maps(object).unwrap();
        assert_eq!(changed.len(), found.len());
        assert!(run_time_allocated(&patched).unwrap().is_empty());
        let differing = object.iter().zip(patched.iter()).filter(|(a, b)| a != b).count();
        assert_eq!(differing, found.len(), "one flag byte per map");
        let (again, none) = preallocate_hash_maps(&patched).unwrap();
        assert!(matches!(again, Cow::Borrowed(_)) && none.is_empty());
    }
}
