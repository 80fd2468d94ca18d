//! Disk DMA: `block_rq_issue(struct request *rq)` fires when a request goes to the device
//! driver; the device then DMAs `rq->__data_len` bytes. Charged to the traced process when it
//! issues the request in its own context (synchronous reads, O_DIRECT, its own plug flush);
//! requests issued by kernel workers (writeback, async readahead) go to a system-wide
//! "unattributed" counter.

use aya_ebpf::{
    macros::{map, raw_tracepoint},
    maps::PerCpuArray,
    programs::RawTracePointContext,
};
use zc_trace_common::{GLOBAL_EVENT_SLOTS, GlobalEvent};

use super::inflight::class_of;
use crate::{
    filter::{Traced, traced},
    kmem,
    stats::with_stats,
};

#[map]
pub static GLOBAL_EVENTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(GLOBAL_EVENT_SLOTS, 0);

#[inline(always)]
pub fn bump_global(event: GlobalEvent, n: u64) {
    if let Some(slot) = GLOBAL_EVENTS.get_ptr_mut(event as u32) {
        // SAFETY: this CPU's slot, added to through the pointer (no reference is made); a
        // program interrupting this add on the same CPU can at worst make it lose one.
        unsafe { *slot += n };
    }
}

const REQ_OP_MASK: u32 = 0xff;
const REQ_OP_READ: u32 = 0;
const REQ_OP_WRITE: u32 = 1;

#[raw_tracepoint(tracepoint = "block_rq_issue")]
pub fn zc_block_rq_issue(ctx: RawTracePointContext) -> i32 {
    let rq: u64 = ctx.arg(0);
    let off = kmem::offsets();
    let Some(bytes) = kmem::read::<u32>(rq, off.request_data_len) else { return 0 };
    let Some(flags) = kmem::read::<u32>(rq, off.request_cmd_flags) else { return 0 };
    let op = flags & REQ_OP_MASK;
    if op != REQ_OP_READ && op != REQ_OP_WRITE {
        return 0;
    }
    let bytes = bytes as u64;
    match traced() {
        Some(Traced { key, tid, .. }) => {
            with_stats(key, class_of(tid), |s| {
                (if op == REQ_OP_READ { &mut s.disk_read } else { &mut s.disk_write }).add(bytes);
            });
        }
        None => bump_global(
            if op == REQ_OP_READ {
                GlobalEvent::DiskReadBytesUnattributed
            } else {
                GlobalEvent::DiskWriteBytesUnattributed
            },
            bytes,
        ),
    }
    0
}
