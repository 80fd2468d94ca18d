//! DMA-API mappings: the `dma:*` map events (`dma_map_page`/`dma_map_phys`, `dma_map_sg`,
//! `dma_map_resource`; names differ by kernel, and 6.1 has none). One program, attached to
//! whichever exist. Their arguments differ between kernels, so only events are counted here;
//! bytes come from the block and net probes. Devices that bypass the DMA API (virtio without
//! an IOMMU) fire nothing, which the report says instead of showing a zero.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use zc_trace_common::GlobalEvent;

use super::{block::bump_global, inflight::class_of};
use crate::{filter::traced, stats::{add, stats}};

#[raw_tracepoint]
pub fn zc_dma_map(_ctx: RawTracePointContext) -> i32 {
    bump_global(GlobalEvent::DmaMapsSystem, 1);
    let Some((tgid, tid)) = traced() else { return 0 };
    if let Some(s) = stats(tgid, class_of(tid)) {
        add(&mut s.dma_maps, 0);
    }
    0
}
