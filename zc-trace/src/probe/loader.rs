//! The eBPF objects built by `build.rs` and embedded in this binary, and how they are loaded.
use std::{borrow::Cow, cell::OnceCell};

use anyhow::Context as _;
use aya::{Btf, Ebpf, EbpfLoader, Endianness, maps::HashMap};
use zc_trace_common::{
    DmaLayout, IoUringOffsets, KernelOffsets, SyscallTable, TypedLoads, globals, maps,
    relay::RelaySettings,
    stacks::{COPY_STACKS_MAX_ENTRIES, STACKS_MAX_ENTRIES},
};

use super::{kfuncs, prealloc};
use crate::{
    kernel::facts::VmlinuxBtf,
    model::exit::{ExitKind, Fatal},
};

/// Counting programs (see `zc-trace-ebpf/src/probes`).
static PROBES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/zc-trace-probes"));
/// Do-nothing programs that `doctor` loads to find out what the kernel allows.
static DOCTOR: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/zc-trace-doctor"));

/// Which processes the kernel programs count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Every process on the machine.
    All,
    /// One thread group: a constant compare, the cheapest filter.
    Tgid(u32),
    /// Several thread groups, looked up in the `TRACED` map.
    Set(Vec<u32>),
    /// Every process in a cgroup (v2) subtree: its id and how many levels below the root.
    Cgroup { id: u64, level: u32 },
}

/// Settings the kernel programs read as constants; written before load, never after.
#[derive(Debug, Clone)]
pub struct Settings {
    pub filter: Filter,
    pub offsets: KernelOffsets,
    pub syscall_table: SyscallTable,
    pub io_uring: IoUringOffsets,
    /// Where the `dma:*` tracepoints pass size and direction (`valid` 0: count events only).
    pub dma_layout: DmaLayout,
    /// Trace the children traced processes fork (needs `Filter::Set`).
    pub follow_forks: bool,
    /// Key counters by thread instead of process.
    pub by_thread: bool,
    /// Capacity of `STATS`.
    pub stats_entries: u32,
    /// Flows keyed by fd too, with the names of the files behind them.
    pub by_fd: bool,
    /// Syscalls of processes traced together counted by bucket (class), not by number.
    pub syscall_buckets: bool,
    /// Pairing of sends with the receives that filled their buffers.
    pub relay: RelaySettings,
    /// Typed loads as this kernel can have them (`enabled` 1) and the `bpf_rdonly_cast`
    /// kfunc's BTF id; `None` where it cannot.
    pub typed: Option<(TypedLoads, u32)>,
    /// `offsetof(struct task_struct, pid)`, 0 if unknown: used on both read paths.
    pub task_pid: u32,
    /// Count copy stacks (`--stacks`); the stack maps are created with one entry otherwise.
    pub stacks: bool,
    /// The kernel has `bpf_get_current_task_btf` (5.11+): see `TypedLoads::task_btf`.
    pub task_btf: bool,
    /// Create every hash map preallocated: the kernel is one where run-time allocation in
    /// tracing programs is unsafe (see `prealloc`).
    pub preallocate_maps: bool,
}

/// How many times one loader may load the counting object (see [`Constants::observed`]).
pub const MAX_PROBE_LOADS: usize = 4;

/// The constants' values as the kernel programs read them. aya's loader keeps references to
/// the values it is given until it is dropped, so whoever keeps the loader keeps these longer.
pub struct Constants<'s> {
    settings: &'s Settings,
    filter_tgid: u32,
    filter_map: u32,
    filter_cgroup: u64,
    filter_cgroup_level: u32,
    exclude_tgid: u32,
    follow_forks: u32,
    by_thread: u32,
    by_fd: u32,
    syscall_buckets: u32,
    stacks: u32,
    /// `observed::*` bits (copy paths a function probe counts), one slot per load: a function
    /// probe that fails to attach makes the session load again with fewer bits.
    observed: [OnceCell<u32>; MAX_PROBE_LOADS],
    /// `TYPED_LOADS` for a load with helper reads (0) and with typed loads (1).
    typed_loads: [TypedLoads; 2],
}

impl<'s> Constants<'s> {
    pub fn new(settings: &'s Settings) -> Self {
        let (filter_tgid, filter_map) = match &settings.filter {
            Filter::All | Filter::Cgroup { .. } => (0u32, 0u32),
            Filter::Tgid(tgid) => (*tgid, 0),
            Filter::Set(_) => (0, 1),
        };
        let task_btf = u32::from(settings.task_btf);
        let (filter_cgroup, filter_cgroup_level) = match settings.filter {
            Filter::Cgroup { id, level } => (id, level),
            _ => (0, 0),
        };
        Self {
            settings,
            filter_tgid,
            filter_map,
            filter_cgroup,
            filter_cgroup_level,
            exclude_tgid: std::process::id(),
            follow_forks: u32::from(settings.follow_forks),
            by_thread: u32::from(settings.by_thread),
            by_fd: u32::from(settings.by_fd),
            syscall_buckets: u32::from(settings.syscall_buckets),
            stacks: u32::from(settings.stacks),
            observed: Default::default(),
            typed_loads: [
                TypedLoads { task_pid: settings.task_pid, task_btf, ..TypedLoads::default() },
                TypedLoads {
                    task_pid: settings.task_pid,
                    task_btf,
                    ..settings.typed.map_or_else(TypedLoads::default, |t| t.0)
                },
            ],
        }
    }

    /// Keeps one load's `observed` bits in the next free slot, for as long as `self`.
    fn keep_observed(&self, bits: u32) -> anyhow::Result<&u32> {
        let slot = self.observed.iter().find(|slot| slot.get().is_none());
        Ok(slot.context("the counting programs were loaded too many times")?.get_or_init(|| bits))
    }
}

/// The counting programs' object, as embedded.
pub fn probes_object() -> Result<&'static [u8], Fatal> {
    embedded(PROBES)
}

fn embedded(bytes: &'static [u8]) -> Result<&'static [u8], Fatal> {
    if bytes.is_empty() {
        return Err(Fatal::new(
            ExitKind::Failure,
            "this zc-trace was built without its eBPF programs (bpf-linker was missing): \
             rebuild it with `cargo xtask build`",
        ));
    }
    Ok(bytes)
}

/// A loader that has no kernel BTF yet: give it one with `.btf()`.
///
/// aya's `EbpfLoader::new()` always parses /sys/kernel/btf/vmlinux (on a 6.18 kernel ~13 MiB
/// of heap, plus the 5 MiB file it reads, and 15-20 ms), and a session needs a parsed BTF of
/// its own for fentry/fexit. Releasing the loader's parse here, before the caller makes its
/// own, means one parse serves the loads and the attaches and two are never in memory
/// together (the peak RSS of start-up).
pub fn loader_without_btf<'a>() -> EbpfLoader<'a> {
    let mut loader = EbpfLoader::new();
    loader.btf(None);
    loader
}

/// The running kernel's BTF as aya parses it (for loads and fentry/fexit attaches), or `None`
/// when the kernel has none. What `Btf::from_sys_fs()` gives, from a mapping of the file
/// where the kernel allows one instead of a ~6 MiB heap copy.
pub fn parse_kernel_btf() -> Option<Btf> {
    let raw = VmlinuxBtf::open().ok()?;
    Btf::parse(&raw, Endianness::default()).ok()
}

/// Hands freed heap pages back to the system. glibc returns only the top of the heap, and
/// only past a threshold that it raises after large frees, so what set-up freed (a BTF parse,
/// object data) would otherwise stay resident for as long as the session runs.
pub fn release_free_heap() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Loads the counting programs with `observed` as their `observed::*` bits, reading kernel
/// memory by typed loads if `typed` (the settings must have them) or else by helper calls.
/// Later loads by the same loader may pass other bits (at most [`MAX_PROBE_LOADS`] loads).
pub fn load_probes<'a>(
    loader: &mut EbpfLoader<'a>,
    constants: &'a Constants,
    observed: u32,
    typed: bool,
) -> anyhow::Result<Ebpf> {
    raise_memlock_limit();
    let settings = constants.settings;
    let observed = constants.keep_observed(observed)?;
    let kfunc = match (typed, settings.typed) {
        (false, _) => None,
        (true, Some((_, kfunc))) => Some(kfunc),
        (true, None) => anyhow::bail!("typed loads asked for on a kernel that cannot have them"),
    };
    let mut object = kfuncs::patch_rdonly_cast(embedded(PROBES)?, kfunc)?;
    if settings.preallocate_maps {
        object = Cow::Owned(prealloc::preallocate_hash_maps(&object)?.0.into_owned());
    }
    loader
        .override_global(globals::FILTER_TGID, &constants.filter_tgid, true)
        .override_global(globals::FILTER_MAP, &constants.filter_map, true)
        .override_global(globals::FILTER_CGROUP, &constants.filter_cgroup, true)
        .override_global(globals::FILTER_CGROUP_LEVEL, &constants.filter_cgroup_level, true)
        .override_global(globals::EXCLUDE_TGID, &constants.exclude_tgid, true)
        .override_global(globals::OFFSETS, &settings.offsets, true)
        .override_global(globals::OBSERVED, observed, true)
        .override_global(globals::SYSCALL_TABLE, &settings.syscall_table, true)
        .override_global(globals::IO_URING, &settings.io_uring, true)
        .override_global(globals::DMA_LAYOUT, &settings.dma_layout, true)
        .override_global(globals::FOLLOW_FORKS, &constants.follow_forks, true)
        .override_global(globals::BY_THREAD, &constants.by_thread, true)
        .override_global(globals::BY_FD, &constants.by_fd, true)
        .override_global(globals::SYSCALL_BUCKETS, &constants.syscall_buckets, true)
        .override_global(globals::RELAY_SETTINGS, &settings.relay, true)
        .override_global(globals::TYPED_LOADS, &constants.typed_loads[usize::from(kfunc.is_some())], true)
        .override_global(globals::STACKS, &constants.stacks, true)
        .map_max_entries(maps::STATS, settings.stats_entries);
    if settings.stacks {
        loader
            .map_max_entries(maps::USER_STACKS, STACKS_MAX_ENTRIES)
            .map_max_entries(maps::RAW_USER_STACKS, STACKS_MAX_ENTRIES)
            .map_max_entries(maps::BUILD_ID_STACKS, STACKS_MAX_ENTRIES)
            .map_max_entries(maps::KERNEL_STACKS, STACKS_MAX_ENTRIES)
            .map_max_entries(maps::COPY_STACKS, COPY_STACKS_MAX_ENTRIES);
    }
    let mut ebpf = loader.load(&object).context("loading zc-trace's eBPF maps")?;
    if let Filter::Set(tgids) = &settings.filter {
        let mut traced: HashMap<_, u32, u8> =
            HashMap::try_from(ebpf.map_mut(maps::TRACED).context("TRACED map missing")?)?;
        for tgid in tgids {
            traced.insert(tgid, 1, 0).context("filling the TRACED map")?;
        }
    }
    Ok(ebpf)
}

/// Loads the do-nothing test programs with `loader`. Must come before [`load_probes`] with the
/// same loader: the doctor object has none of the counting programs' constants, which that
/// sets as required.
pub fn load_doctor_with(loader: &mut EbpfLoader) -> anyhow::Result<Ebpf> {
    raise_memlock_limit();
    loader.load(embedded(DOCTOR)?).context("loading doctor's test programs")
}

/// Loads the do-nothing test programs with a loader of their own (and its BTF parse).
pub fn load_doctor() -> anyhow::Result<Ebpf> {
    load_doctor_with(&mut EbpfLoader::new())
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK (64 KiB by default), which is too
/// small for our maps; later kernels use memcg accounting and ignore it.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: valid pointer to a local struct. Failure is harmless on memcg kernels.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each load's bits stay where the loader points: a later load never overwrites them.
    #[test]
    fn every_load_keeps_its_own_observed_bits() {
        let settings = Settings {
            filter: Filter::Tgid(7),
            offsets: KernelOffsets::default(),
            syscall_table: SyscallTable::EMPTY,
            io_uring: IoUringOffsets::default(),
            dma_layout: DmaLayout::EMPTY,
            follow_forks: false,
            by_thread: true,
            stats_entries: 16,
            by_fd: false,
            syscall_buckets: false,
            relay: RelaySettings::DEFAULT,
            typed: None,
            stacks: false,
            task_pid: 0,
            task_btf: true,
            preallocate_maps: false,
        };
        let constants = Constants::new(&settings);
        assert_eq!((constants.filter_tgid, constants.filter_map, constants.by_thread), (7, 0, 1));
        let kept: Vec<&u32> = (1..=MAX_PROBE_LOADS as u32).map(|bits| constants.keep_observed(bits).unwrap()).collect();
        let values: Vec<u32> = kept.into_iter().copied().collect();
        assert_eq!(values, (1..=MAX_PROBE_LOADS as u32).collect::<Vec<_>>());
        assert!(constants.keep_observed(99).is_err());
    }
}
