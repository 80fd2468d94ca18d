//! Map access shared by the probes: the one "find the entry, else create it" sequence that
//! every counter keyed by something the kernel hands us (a process, a flow, a device) needs.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    maps::{HashMap, LruHashMap, LruPerCpuHashMap, PerCpuHashMap},
};

/// The two operations of aya's hash maps that `lookup_or_try_init` needs. aya has no trait
/// of its own over its hash map types; the methods behind these are spelled alike on each.
pub trait KeyedMap<K, V> {
    /// A pointer to the value of `key` (for a per-CPU map: this CPU's copy), if present.
    fn lookup(&self, key: &K) -> Option<*mut V>;
    /// Creates `key` with `value`; fails if it exists (or the map is full).
    fn insert_new(&self, key: &K, value: &V) -> bool;
}

macro_rules! keyed_map {
    ($($map:ident),*) => {$(
        impl<K, V> KeyedMap<K, V> for $map<K, V> {
            #[inline(always)]
            fn lookup(&self, key: &K) -> Option<*mut V> {
                self.get_ptr_mut(key)
            }

            #[inline(always)]
            fn insert_new(&self, key: &K, value: &V) -> bool {
                self.insert(key, value, BPF_NOEXIST as u64).is_ok()
            }
        }
    )*};
}

keyed_map!(HashMap, LruHashMap, PerCpuHashMap, LruPerCpuHashMap);

/// The value of `key`, created from `init()` if it is not in the map yet. `None` when it could
/// not be created (the map is full, or `init` had nothing); callers count that as a drop
/// where the report has a row for it.
///
/// `init` runs only on the slow path, so it may do work (read names from kernel memory, look
/// up a zero value in a scratch map) that the hot path must not pay for. The value it returns
/// is borrowed, not moved: some values (`Stats`) are larger than the 512-byte BPF stack.
///
/// BPF_NOEXIST, then a second lookup whatever the insert returned: another CPU may create the
/// same key between our lookup and our insert. Our insert then fails, and the lookup finds
/// that CPU's entry (for a per-CPU map, with this CPU's copy zeroed by the kernel). Only when
/// the second lookup fails too was the key really not created. The returned pointer is into
/// the map's value; the caller decides how long a reference to it may live.
#[inline(always)]
pub fn lookup_or_try_init<'a, K, V: 'a>(
    map: &impl KeyedMap<K, V>,
    key: &K,
    init: impl FnOnce() -> Option<&'a V>,
) -> Option<*mut V> {
    if let Some(value) = map.lookup(key) {
        return Some(value);
    }
    let _ = map.insert_new(key, init()?);
    map.lookup(key)
}
