//! The receive-side copy, socket -> user: `skb:skb_copy_datagram_iovec(skb, len)` fires in
//! skb_copy_datagram_iter for every receive into user memory (TCP, UDP, UNIX), on every
//! kernel. Observed, not derived.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use zc_trace_common::End;

use super::inflight::class_of;
use crate::{
    filter::{Traced, traced},
    stats::with_stats,
};

#[raw_tracepoint(tracepoint = "skb_copy_datagram_iovec")]
pub fn zc_skb_copy_datagram_iovec(ctx: RawTracePointContext) -> i32 {
    let Some(Traced { key, tid, .. }) = traced() else { return 0 };
    let len: i64 = ctx.arg(1);
    if len <= 0 {
        return 0;
    }
    with_stats(key, class_of(tid), |s| s.to_user[End::Socket as usize].add(len as u64));
    super::stacks::note_kernel(&ctx, tid);
    0
}
