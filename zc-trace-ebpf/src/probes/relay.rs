//! Relays: the ranges of user memory that receives filled, kept per process, and the sends
//! whose buffers lie inside them (the second leg of a relay). The rules are
//! `zc_trace_common::relay`; this module keeps the map and walks the user buffers of a
//! syscall (one buffer, iovecs, a msghdr's iovecs, an array of mmsghdrs) at its exit, when
//! the result says how much of them was filled or sent.

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray},
};
use zc_trace_common::{
    DropReason,
    relay::{
        FilledRanges, Matched, RELAY_MAX_ENTRIES, RELAY_SLOTS, RelaySettings, Source,
        abi::{
            IOVEC_SIZE, MAX_IOVECS, MAX_MESSAGES, MAX_SEGMENTS, MMSG_COUNTED, MMSGHDR_LEN, MMSGHDR_SIZE, MSGHDR_IOV,
            MSGHDR_IOVLEN,
        },
        shape,
    },
};

use super::drops;
use crate::{
    filter,
    maps::lookup_or_try_init,
    umem::{read_user, user},
};

/// By thread group id (the address space the ranges are in), even with `--by thread`.
#[map]
static RELAY: LruHashMap<u32, FilledRanges> = LruHashMap::with_max_entries(RELAY_MAX_ENTRIES, 0);

/// The ranges of the one traced thread group (`FILTER_TGID`): an array slot, shared by its
/// threads as `RELAY`'s entries are, instead of a hash lookup per receive and send.
#[map]
static RELAY_ONE: Array<FilledRanges> = Array::with_max_entries(1, 0);

/// The ranges of thread group `tgid`, made empty if it has none yet and `create`.
#[inline(always)]
fn ranges_of(tgid: u32, create: bool) -> Option<*mut FilledRanges> {
    if filter::only_tgid() {
        // Only the traced thread group gets here in this mode.
        return RELAY_ONE.get_ptr_mut(0);
    }
    if create { lookup_or_try_init(&RELAY, &tgid, || Some(&NO_RANGES)) } else { RELAY.get_ptr_mut(&tgid) }
}

#[unsafe(no_mangle)]
static RELAY_SETTINGS: RelaySettings = RelaySettings::DEFAULT;

/// What a process's ranges start as: read from `.rodata` by the insert.
static NO_RANGES: FilledRanges = FilledRanges::EMPTY;

#[inline(always)]
fn settings() -> RelaySettings {
    unsafe { core::ptr::read_volatile(&RELAY_SETTINGS) }
}

/// Whether pairing is on (`--relay-ranges` above 0).
#[inline(always)]
pub fn enabled() -> bool {
    settings().ranges != 0
}

/// A syscall's user buffer argument, as `sys_enter` recorded it.
#[derive(Copy, Clone)]
pub struct Buffer {
    /// One of `relay::shape`.
    pub shape: u8,
    /// The buffer, the iovec array, the msghdr or the mmsghdr array.
    pub addr: u64,
    /// The iovec or message count argument (IOVEC, MMSGHDR).
    pub count: u64,
}

/// The segments of user memory a syscall filled or sent, in order (at most
/// `MAX_SEGMENTS`), gathered before any is compared with the ranges: the verifier then
/// explores the iovec walk and the range loop one after the other, not one inside the other.
#[repr(C)]
pub struct Segments {
    pub count: u64,
    pub start: [u64; MAX_SEGMENTS],
    pub len: [u64; MAX_SEGMENTS],
}

/// Per-CPU scratch space of the syscall exit (too large for its stack).
#[repr(C)]
pub struct Scratch {
    pub segments: Segments,
    pub matched: Matched,
    /// A vectored call's first iovecs, read in one go.
    pub iov: [[u64; 2]; MAX_IOVECS as usize],
    /// An mmsghdr, read in one go.
    pub mmsghdr: [u64; (MMSGHDR_SIZE / 8) as usize],
    /// io_uring: the request whose write `matched` belongs to (0: none), handed from the
    /// pairing program to the counting one, which run one after the other on this CPU.
    pub io_uring_req: u64,
}

#[map]
static RELAY_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's scratch space.
#[inline(always)]
pub fn scratch() -> Option<&'static mut Scratch> {
    // SAFETY: this CPU's slot, used from one syscall exit at a time (they do not nest).
    RELAY_SCRATCH.get_ptr_mut(0).map(|m| unsafe { &mut *m })
}

/// Fills `scratch.segments` with the segments of `buf` that the syscall's result `ret`
/// covers, and returns the bytes the syscall moved: `ret`, or for recvmmsg/sendmmsg (whose
/// result counts messages) the sum of the first `ret` messages' lengths. A vectored call's
/// segments are its first `MAX_IOVECS` iovecs; an mmsg call's, the first iovec of each of
/// its first `MAX_MESSAGES` messages (one iovec per message is what datagram batching does).
/// The bytes of the rest count, but are neither recorded nor paired.
///
/// A plain buffer, the common case, takes three stores here; the walks are a subprogram.
#[inline(always)]
pub fn gather(buf: &Buffer, ret: u64, scratch: &mut Scratch) -> u64 {
    if buf.shape == shape::PLAIN {
        scratch.segments.start[0] = buf.addr;
        scratch.segments.len[0] = ret;
        scratch.segments.count = 1;
        return ret;
    }
    gather_vectored(buf, ret, scratch)
}

/// `gather`'s walks of iovecs and messages. Not inlined: one subprogram, explored once per
/// call (each loop here multiplies what the verifier explores after it when inlined into each
/// caller). User memory is read in as few helper calls as possible, and segment `i` is
/// written at index `i`.
#[inline(never)]
fn gather_vectored(buf: &Buffer, ret: u64, scratch: &mut Scratch) -> u64 {
    scratch.segments.count = 0;
    if buf.shape == shape::MMSGHDR {
        return messages(buf, ret, scratch);
    }
    let (iov, count) = if buf.shape == shape::MSGHDR {
        (user::<u64>(buf.addr + MSGHDR_IOV), user::<u64>(buf.addr + MSGHDR_IOVLEN))
    } else {
        (buf.addr, buf.count)
    };
    let count = if count < MAX_IOVECS as u64 { count } else { MAX_IOVECS as u64 };
    read_user(scratch.iov.as_mut_ptr() as *mut u8, (count * IOVEC_SIZE) as u32 & 0xff, iov);
    let mut left = ret;
    for i in 0..MAX_IOVECS as usize {
        if i as u64 >= count || left == 0 {
            break;
        }
        let [base, len] = scratch.iov[i];
        let len = if len < left { len } else { left };
        left -= len;
        scratch.segments.start[i % MAX_SEGMENTS] = base;
        scratch.segments.len[i % MAX_SEGMENTS] = len;
        scratch.segments.count = i as u64 + 1;
    }
    ret
}

/// recvmmsg/sendmmsg: the bytes of the first `ret` messages, and their first iovecs.
#[inline(always)]
fn messages(buf: &Buffer, ret: u64, scratch: &mut Scratch) -> u64 {
    let messages = if ret < buf.count { ret } else { buf.count };
    if messages > MMSG_COUNTED as u64 {
        drops::record(DropReason::MessagesUncounted);
    }
    // Two loops, not one: the long one only adds lengths.
    let mut moved = 0u64;
    for m in 0..MMSG_COUNTED as u64 {
        if m >= messages {
            break;
        }
        moved += user::<u32>(buf.addr + m * MMSGHDR_SIZE + MMSGHDR_LEN) as u64;
    }
    for m in 0..MAX_MESSAGES as usize {
        if m as u64 >= messages {
            break;
        }
        let hdr = &mut scratch.mmsghdr;
        read_user(hdr.as_mut_ptr() as *mut u8, MMSGHDR_SIZE as u32, buf.addr + m as u64 * MMSGHDR_SIZE);
        let (iov, len) = (hdr[(MSGHDR_IOV / 8) as usize], hdr[(MMSGHDR_LEN / 8) as usize] & 0xffff_ffff);
        let (base, iov_len) = (user::<u64>(iov), user::<u64>(iov + 8));
        scratch.segments.start[m % MAX_SEGMENTS] = base;
        scratch.segments.len[m % MAX_SEGMENTS] = if iov_len < len { iov_len } else { len };
        scratch.segments.count = m as u64 + 1;
    }
    moved
}

/// A receive of process `tgid` filled the segments `gather` found from `source`: records
/// them (nothing when pairing is off). A read loop's refill of the buffer the last fill took
/// is handled here (`FilledRanges::refill_last`); anything else in a subprogram.
#[inline(always)]
pub fn filled(tgid: u32, source: &Source, scratch: &mut Scratch) {
    if !enabled() {
        return;
    }
    let Some(ranges) = ranges_of(tgid, true) else { return };
    let now = unsafe { bpf_ktime_get_ns() };
    let segs = &scratch.segments;
    // SAFETY: the process's entry; other threads of it may change other slots meanwhile
    // (the seq of each range tells a reader), see `relay::FilledRanges`.
    if segs.count == 1 && unsafe { &mut *ranges }.refill_last(segs.start[0], segs.len[0], source, now, &settings()) {
        return;
    }
    record(ranges, source, now, scratch);
}

/// Not inlined, nor is `pair`: each is a BPF subprogram with a stack frame of its own, which
/// the syscall exit program's 512 bytes could not hold beside everything else.
#[inline(never)]
fn record(ranges: *mut FilledRanges, source: &Source, now: u64, scratch: &mut Scratch) {
    let segs = &scratch.segments;
    // SAFETY: as in `filled`.
    let ranges = unsafe { &mut *ranges };
    for k in 0..MAX_SEGMENTS {
        if k as u64 >= segs.count {
            break;
        }
        record_one(ranges, segs.start[k], segs.len[k], source, now);
    }
}

/// One segment's `FilledRanges::record`, as a subprogram: its branches end with its frame,
/// so the verifier sees one state per outcome after the call, not each path's spills.
#[inline(never)]
fn record_one(ranges: &mut FilledRanges, start: u64, len: u64, source: &Source, now: u64) {
    ranges.record(start, len, source, now, &settings());
}

/// One segment's `FilledRanges::match_segment`, as a subprogram (see `record_one`).
#[inline(never)]
fn match_one(ranges: &FilledRanges, start: u64, len: u64, now: u64, m: &mut Matched) {
    ranges.match_segment(start, len, now, &settings(), m);
}

/// A send of process `tgid` from the segments `gather` found: sets `scratch.matched` to what
/// of them lies in ranges its receives filled. A match of nothing is `total` 0 (readers look
/// no further): the rest is cleared only when there are ranges to match. A send from inside
/// the buffer the last fill took is paired here (`FilledRanges::match_last`).
#[inline(always)]
pub fn sent(tgid: u32, scratch: &mut Scratch) {
    scratch.matched.total = 0;
    if !enabled() {
        return;
    }
    let Some(ranges) = ranges_of(tgid, false) else { return };
    // SAFETY: a map value, alive for the program's run; read only.
    let ranges = unsafe { &*ranges };
    // The empty match: sources are read only where bytes are (`Matched`). Volatile stores,
    // one per slot: an array assignment of zeros becomes a byte-loop `memset` call in BPF.
    for i in 0..RELAY_SLOTS {
        // SAFETY: a plain store into the scratch slot.
        unsafe { core::ptr::write_volatile(&mut scratch.matched.bytes[i], 0) };
    }
    let now = unsafe { bpf_ktime_get_ns() };
    let segs = &scratch.segments;
    if segs.count == 1 && ranges.match_last(segs.start[0], segs.len[0], now, &settings(), &mut scratch.matched) {
        return;
    }
    pair(ranges, now, scratch);
}

#[inline(never)]
fn pair(ranges: &FilledRanges, now: u64, scratch: &mut Scratch) {
    let segs = &scratch.segments;
    let m = &mut scratch.matched;
    for k in 0..MAX_SEGMENTS {
        if k as u64 >= segs.count {
            break;
        }
        match_one(ranges, segs.start[k], segs.len[k], now, m);
    }
}
