//! The DMA cell of a row: disk requests and NIC transmits from their tracepoints, DMA-API
//! mappings in the process's context (`dma:*`), and every device's mappings in the window.
use std::collections::BTreeMap;

use zc_trace_common::Stats;

use crate::{
    attribute::sources::{BLOCK_RQ_ISSUE, NET_XMIT},
    model::{
        evidence::{Attach, DmaEvidence, DmaNote, Probe},
        report::GlobalEvents,
        row::{DeviceDma, Dma},
        run,
    },
};

/// The devices' window figures, keyed for the report.
pub fn devices_by_key(devices: &[zc_trace_common::DmaDevice]) -> BTreeMap<String, DeviceDma> {
    devices.iter().map(DeviceDma::from).map(|d| (d.key(), d)).collect()
}

pub(super) fn dma(total: &Stats, ev: &run::Evidence, global: &GlobalEvents) -> Dma {
    let block = ev.tracepoint(BLOCK_RQ_ISSUE);
    let net = ev.tracepoint(NET_XMIT);
    let mut notes = Vec::new();
    if block {
        notes.push(DmaNote::Disk(Probe { name: BLOCK_RQ_ISSUE, attach: Attach::RawTracepoint }));
    }
    if net {
        notes.push(DmaNote::Nic(Probe { name: NET_XMIT, attach: Attach::RawTracepoint }));
    }
    let dma_api_maps = if ev.dma.is_empty() {
        notes.push(DmaNote::NoDmaTracepoint);
        None
    } else if global.dma_maps_system == 0 {
        notes.push(DmaNote::DmaApiSilent(ev.dma.clone()));
        None
    } else {
        notes.push(DmaNote::DmaApi(ev.dma.clone()));
        Some(total.dma_maps.calls)
    };
    // Bytes and direction need the tracepoints' arguments, found in BTF. Why they were not
    // found is run-time text: it has a field of its own, the evidence points to it.
    let dma_bytes = dma_api_maps.is_some() && ev.dma_layout_error.is_none();
    let dma_layout_error = dma_api_maps.and(ev.dma_layout_error.clone());
    if dma_layout_error.is_some() {
        notes.push(DmaNote::DmaApiBytesNotRead);
    }
    Dma {
        disk_read_bytes: block.then_some(total.disk_read.bytes),
        disk_write_bytes: block.then_some(total.disk_write.bytes),
        net_tx_linear_bytes: net.then_some(total.net_tx_linear_bytes),
        net_tx_paged_bytes: net.then_some(total.net_tx_paged_bytes),
        net_tx_frags: net.then_some(total.net_tx_frags),
        net_tx_packets: net.then_some(total.net_tx.calls),
        dma_api_maps,
        direct_io_read_bytes: total.direct_read.bytes,
        direct_io_write_bytes: total.direct_write.bytes,
        evidence: DmaEvidence(notes),
        dma_layout_error,
        dma_map_bytes_to_device: dma_bytes.then_some(total.dma_to_device.bytes),
        dma_map_bytes_from_device: dma_bytes.then_some(total.dma_from_device.bytes),
        dma_map_bytes_bidirectional: dma_bytes.then_some(total.dma_bidirectional.bytes),
        dma_map_segments: dma_bytes.then_some(total.dma_segments),
        dma_attribution: dma_bytes.then(|| {
            "process context: mappings made while this process ran (its syscalls, faults, or softirqs              that interrupted it); system_by_device: every mapping of each device while it was traced"
                .to_string()
        }),
        system_by_device: None,
    }
}
