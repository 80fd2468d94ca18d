//! DMA-API mappings: the `dma:*` map events (`dma_map_page`/`dma_map_phys`, `dma_map_sg`,
//! `dma_map_resource`; names differ by kernel, and 6.1 has none). A driver maps a buffer just
//! before its device DMAs to or from it, so a mapping's size and direction are the DMA
//! transfer: a disk read maps the page-cache pages `FROM_DEVICE`, a NIC maps each packet's
//! head and frags `TO_DEVICE`.
//!
//! The arguments' positions come from BTF (`DMA_LAYOUT`, written by user space): the
//! tracepoints' prototypes differ between kernels. Every mapping is counted per device
//! (`DMA_DEVICES`, system-wide while attached: the lab's time window), and also per process
//! when it is made in a traced process's context (synchronous disk reads are; packets
//! transmitted from softirq context are not: irq.rs tells interrupt context apart). Devices that bypass the DMA API (virtio
//! without an IOMMU) fire nothing, which the report says instead of showing a zero.

use core::mem::MaybeUninit;

use aya_ebpf::{
    EbpfContext as _,
    bindings::BPF_F_NO_PREALLOC,
    helpers::bpf_probe_read_kernel_str_bytes,
    macros::{map, raw_tracepoint},
    maps::PerCpuHashMap,
    programs::RawTracePointContext,
};
use zc_trace_common::{
    DMA_DEVICES_MAX_ENTRIES, DMA_SG_MAX_WALK, DmaDevice, DmaLayout, GlobalEvent, Stats, Tally, dma_dir,
};

use super::{block::bump_global, inflight::class_of, irq::in_interrupt};
use crate::{
    filter::{Traced, traced},
    kmem,
    maps::lookup_or_try_init,
    stats::with_stats,
};

#[unsafe(no_mangle)]
static DMA_LAYOUT: DmaLayout = DmaLayout::EMPTY;

#[map]
static DMA_DEVICES: PerCpuHashMap<u64, DmaDevice> =
    PerCpuHashMap::with_max_entries(DMA_DEVICES_MAX_ENTRIES, BPF_F_NO_PREALLOC);

/// `page_link` low bits (include/linux/scatterlist.h): this entry points to the next array,
/// and this entry is the last.
const SG_CHAIN: u64 = 0x01;
const SG_END: u64 = 0x02;

#[inline(always)]
fn layout() -> DmaLayout {
    unsafe { core::ptr::read_volatile(&DMA_LAYOUT) }
}

/// The tracepoint's six arguments (every `dma:*` map event has six: reading past the last
/// one would make attaching fail). Each is loaded at a constant offset: the verifier refuses
/// a context read at a computed one, which a `match` on the index compiles into.
#[inline(always)]
fn args(ctx: &RawTracePointContext) -> [u64; 6] {
    let p = ctx.as_ptr() as *const u64;
    // SAFETY: the raw tracepoint context is an array of the tracepoint's u64 arguments.
    unsafe {
        [
            core::ptr::read_volatile(p),
            core::ptr::read_volatile(p.add(1)),
            core::ptr::read_volatile(p.add(2)),
            core::ptr::read_volatile(p.add(3)),
            core::ptr::read_volatile(p.add(4)),
            core::ptr::read_volatile(p.add(5)),
        ]
    }
}

/// Argument `n` (from `DMA_LAYOUT`), if the event has it.
#[inline(always)]
fn arg(args: &[u64; 6], n: u32) -> Option<u64> {
    args.get(n as usize).copied()
}

/// One mapping of one buffer: `dma_map_page` (6.12), `dma_map_phys` (6.18),
/// `dma_map_resource`.
#[raw_tracepoint]
pub fn zc_dma_map(ctx: RawTracePointContext) -> i32 {
    bump_global(GlobalEvent::DmaMapsSystem, 1);
    let l = layout();
    let mapping = if l.valid == 0 {
        None
    } else {
        let a = args(&ctx);
        match (arg(&a, l.map_dev_arg), arg(&a, l.map_size_arg), arg(&a, l.map_dir_arg)) {
            (Some(dev), Some(size), Some(dir)) => {
                Some(Mapping { dev, bytes: size, dir: dir as u32, segments: 1, sg: false, truncated: false })
            }
            _ => None,
        }
    };
    record(mapping, &l);
    0
}

/// A scatter-gather list mapped at once (`dma_map_sg`): its entries' lengths are summed.
#[raw_tracepoint]
pub fn zc_dma_map_sg(ctx: RawTracePointContext) -> i32 {
    bump_global(GlobalEvent::DmaMapsSystem, 1);
    let l = layout();
    let mapping = if l.valid == 0 {
        None
    } else {
        let a = args(&ctx);
        match (arg(&a, l.sg_dev_arg), arg(&a, l.sg_list_arg), arg(&a, l.sg_nents_arg), arg(&a, l.sg_dir_arg)) {
            (Some(dev), Some(sgl), Some(nents), Some(dir)) => {
                let (bytes, segments, truncated) = walk_sg(sgl, nents as u32, &l);
                Some(Mapping { dev, bytes, dir: dir as u32, segments, sg: true, truncated })
            }
            _ => None,
        }
    };
    record(mapping, &l);
    0
}

struct Mapping {
    dev: u64,
    bytes: u64,
    dir: u32,
    segments: u64,
    /// A `dma_map_sg` list (else a single buffer).
    sg: bool,
    truncated: bool,
}

/// (bytes, entries, whether the walk stopped before the end) of the first `nents` entries
/// of a scatterlist, following chain links as `sg_next()` does.
#[inline(always)]
fn walk_sg(mut sg: u64, nents: u32, l: &DmaLayout) -> (u64, u64, bool) {
    let (mut bytes, mut seen) = (0u64, 0u32);
    for _ in 0..DMA_SG_MAX_WALK {
        if seen >= nents || sg == 0 {
            return (bytes, seen as u64, false);
        }
        let Some(link) = kmem::read::<u64>(sg, l.sg_page_link) else { break };
        if link & SG_CHAIN != 0 {
            // Not an entry: the pointer to the next array of entries.
            sg = link & !(SG_CHAIN | SG_END);
            continue;
        }
        bytes += kmem::read::<u32>(sg, l.sg_length).unwrap_or(0) as u64;
        seen += 1;
        if link & SG_END != 0 {
            return (bytes, seen as u64, false);
        }
        sg += l.sg_stride as u64;
    }
    (bytes, seen as u64, seen < nents)
}

/// Counts a mapping for its device and, in a traced process's context (not an interrupt
/// that landed on it), for that process.
#[inline(always)]
fn record(mapping: Option<Mapping>, l: &DmaLayout) {
    let traced = if in_interrupt() { None } else { traced() };
    if let Some(Traced { key, tid, .. }) = traced {
        with_stats(key, class_of(tid), |s| {
            s.dma_maps.add(0);
            if let Some(m) = &mapping {
                charge_process(s, m);
            }
        });
    }
    let Some(m) = mapping else { return };
    let Some(d) = device(m.dev, l) else { return };
    // SAFETY: this CPU's copy of the device's counters (per-CPU map), used for these updates
    // only. A mapping made in a softirq on this CPU can run the other `dma_*` program in the
    // middle of them and add to the same device: it finishes before this one goes on, and the
    // worst case is a lost increment, as for `with_stats`.
    let d = unsafe { &mut *d };
    direction(&mut d.to_device, &mut d.from_device, &mut d.bidirectional, m.dir).add(m.bytes);
    d.segments += m.segments;
    if traced.is_some() {
        d.traced_bytes += m.bytes;
    }
    if m.sg {
        d.sg_lists += 1;
    }
    if m.truncated {
        d.sg_truncated += 1;
    }
}

#[inline(always)]
fn charge_process(s: &mut Stats, m: &Mapping) {
    direction(&mut s.dma_to_device, &mut s.dma_from_device, &mut s.dma_bidirectional, m.dir).add(m.bytes);
    s.dma_segments += m.segments;
}

#[inline(always)]
fn direction<'a>(to: &'a mut Tally, from: &'a mut Tally, both: &'a mut Tally, dir: u32) -> &'a mut Tally {
    match dir {
        dma_dir::TO_DEVICE => to,
        dma_dir::FROM_DEVICE => from,
        _ => both,
    }
}

/// This CPU's counters of a device, created (with its names read once) on first use. A full
/// map loses this device's figures (no drop is counted); the report shows the devices it has.
#[inline(always)]
fn device(dev: u64, l: &DmaLayout) -> Option<*mut DmaDevice> {
    // Written only if the device is new (`named`): a known device costs no stack clearing.
    let mut fresh = MaybeUninit::<DmaDevice>::uninit();
    let fresh = &mut fresh;
    lookup_or_try_init(&DMA_DEVICES, &dev, move || Some(&*named(fresh, dev, l)))
}

/// A zeroed `DmaDevice` in `fresh`, with the names of `dev` and its driver.
#[inline(always)]
fn named<'a>(fresh: &'a mut MaybeUninit<DmaDevice>, dev: u64, l: &DmaLayout) -> &'a mut DmaDevice {
    let fresh = fresh.write(DmaDevice::ZERO);
    if let Some(driver) = kmem::read::<u64>(dev, l.device_driver)
        && let Some(name) = kmem::read::<u64>(driver, l.driver_name)
        && name != 0
    {
        let _ = unsafe { bpf_probe_read_kernel_str_bytes(name as *const u8, &mut fresh.driver) };
    }
    if let Some(name) = kmem::read::<u64>(dev, l.device_name)
        && name != 0
    {
        let _ = unsafe { bpf_probe_read_kernel_str_bytes(name as *const u8, &mut fresh.name) };
    }
    fresh
}
