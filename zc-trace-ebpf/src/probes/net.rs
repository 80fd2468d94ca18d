//! NIC transmit: `net_dev_start_xmit(skb, dev)` fires when a packet is handed to a device.
//! `skb->len - skb->data_len` bytes are linear (in the skb head), `data_len` are in page
//! fragments that a scatter-gather device DMAs from directly; `nr_frags` comes from
//! `skb_shinfo(skb)` (at skb->head + skb->end). Paged bytes alone do not prove zero-copy: TCP
//! copies user data into page frags too. Charged to the process in whose context the packet
//! is sent (on loopback and most TCP sends, the sender's).

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use zc_trace_common::GlobalEvent;

use super::{block::bump_global, inflight::class_of};
use crate::{filter::traced, kmem, stats::{add, stats}};

#[raw_tracepoint(tracepoint = "net_dev_start_xmit")]
pub fn net_dev_start_xmit(ctx: RawTracePointContext) -> i32 {
    bump_global(GlobalEvent::NetTxPacketsSystem, 1);
    let Some((tgid, tid)) = traced() else { return 0 };
    let skb: u64 = ctx.arg(0);
    let off = kmem::offsets();
    let Some(len) = kmem::read::<u32>(skb, off.skb_len) else { return 0 };
    let data_len = kmem::read::<u32>(skb, off.skb_data_len).unwrap_or(0);
    let head: u64 = kmem::read(skb, off.skb_head).unwrap_or(0);
    let end = kmem::read::<u32>(skb, off.skb_end).unwrap_or(0);
    let frags = kmem::read::<u8>(head + end as u64, off.shinfo_nr_frags).unwrap_or(0);
    if let Some(s) = stats(tgid, class_of(tid)) {
        add(&mut s.net_tx, len as u64);
        s.net_tx_linear_bytes += len.saturating_sub(data_len) as u64;
        s.net_tx_paged_bytes += data_len as u64;
        s.net_tx_frags += frags as u64;
    }
    0
}
