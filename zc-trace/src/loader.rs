//! The eBPF objects built by `build.rs` and embedded in this binary, and how they are loaded.
use anyhow::Context as _;
use aya::{Ebpf, EbpfLoader, maps::HashMap};
use zc_trace_common::{DmaLayout, IoUringOffsets, KernelOffsets, SyscallTable, globals, maps};

use crate::exit::{ExitKind, Fatal};

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
}

/// Settings the kernel programs read as constants; written before load, never after.
#[derive(Debug, Clone)]
pub struct Settings {
    pub filter: Filter,
    pub offsets: KernelOffsets,
    /// `observed::*` bits: copy paths a function probe counts on this run.
    pub observed: u32,
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

pub fn load_probes(settings: &Settings) -> anyhow::Result<Ebpf> {
    raise_memlock_limit();
    let (filter_tgid, filter_map) = match &settings.filter {
        Filter::All => (0u32, 0u32),
        Filter::Tgid(tgid) => (*tgid, 0),
        Filter::Set(_) => (0, 1),
    };
    let mut ebpf = EbpfLoader::new()
        .override_global(globals::FILTER_TGID, &filter_tgid, true)
        .override_global(globals::FILTER_MAP, &filter_map, true)
        .override_global(globals::EXCLUDE_TGID, &std::process::id(), true)
        .override_global(globals::OFFSETS, &settings.offsets, true)
        .override_global(globals::OBSERVED, &settings.observed, true)
        .override_global(globals::SYSCALL_TABLE, &settings.syscall_table, true)
        .override_global(globals::IO_URING, &settings.io_uring, true)
        .override_global(globals::DMA_LAYOUT, &settings.dma_layout, true)
        .override_global(globals::FOLLOW_FORKS, &u32::from(settings.follow_forks), true)
        .override_global(globals::BY_THREAD, &u32::from(settings.by_thread), true)
        .override_global(globals::BY_FD, &u32::from(settings.by_fd), true)
        .map_max_entries(maps::STATS, settings.stats_entries)
        .load(embedded(PROBES)?)
        .context("loading zc-trace's eBPF maps")?;
    if let Filter::Set(tgids) = &settings.filter {
        let mut traced: HashMap<_, u32, u8> =
            HashMap::try_from(ebpf.map_mut(maps::TRACED).context("TRACED map missing")?)?;
        for tgid in tgids {
            traced.insert(tgid, 1, 0).context("filling the TRACED map")?;
        }
    }
    Ok(ebpf)
}

pub fn load_doctor() -> anyhow::Result<Ebpf> {
    raise_memlock_limit();
    Ebpf::load(embedded(DOCTOR)?).context("loading doctor's test programs")
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK (64 KiB by default), which is too
/// small for our maps; later kernels use memcg accounting and ignore it.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: valid pointer to a local struct. Failure is harmless on memcg kernels.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}
