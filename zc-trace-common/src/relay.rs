//! Relays: a write-side syscall whose buffer lies inside bytes that a receive-side syscall of
//! the same process recently filled is the second leg of a relay (read + write, recv + send,
//! readv + sendmsg, ...), and its source is the first leg's fd.
//!
//! Each process keeps a bounded set of recently filled ranges ([`FilledRanges`], one per
//! process, shared by its threads, so that a server that receives on one thread and writes
//! on another pairs too). A receive records each range it filled (each iovec, each message);
//! a send splits its bytes into what lies inside live ranges (paired, by source) and the rest
//! (unpaired: `write memory -> X`, never guessed). A range lives until a newer fill
//! overwrites it, its slot is reused (round robin) or it is older than the TTL.
//!
//! The kernel programs (`zc-trace-ebpf/src/probes/relay.rs`) keep the map and walk the user
//! iovecs; the decisions are here, so that the host can test them.

/// The most ranges a process can have outstanding (the `--relay-ranges` setting is at most
/// this).
pub const RELAY_SLOTS: usize = 16;
const _: () = assert!(RELAY_SLOTS.is_power_of_two(), "slot indices are masked");
/// Default number of ranges a process keeps.
pub const RELAY_RANGES_DEFAULT: u32 = 16;
/// Default time a filled range can still pair: 5 s.
pub const RELAY_TTL_NS_DEFAULT: u64 = 5_000_000_000;
/// Processes whose filled ranges are remembered (LRU: an evicted process loses pairing hints).
pub const RELAY_MAX_ENTRIES: u32 = 4_096;

/// The settings, a read-only global of the kernel programs.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RelaySettings {
    /// How many of the [`RELAY_SLOTS`] a process uses (1..=RELAY_SLOTS); 0 turns pairing off.
    pub ranges: u32,
    pub _pad: u32,
    /// How long a filled range can pair, in nanoseconds.
    pub ttl_ns: u64,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl RelaySettings {
    pub const DEFAULT: RelaySettings =
        RelaySettings { ranges: RELAY_RANGES_DEFAULT, _pad: 0, ttl_ns: RELAY_TTL_NS_DEFAULT };
}

/// Where a range's bytes came from: the fd kind (as u8) and, with `BY_FD`, the fd and its
/// file's inode number (fd -1 otherwise).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Source {
    pub ino: u64,
    pub fd: i32,
    pub kind: u8,
    /// Padding, as two fields: a `[u8; 3]` of zeros is written by a byte-loop `memset` call
    /// in BPF code.
    pub _pad0: u8,
    pub _pad1: u16,
}

/// One filled range, [start, end) of user memory, filled at `filled_ns` from `source`.
/// `seq` is odd while a writer changes the range: a reader on another CPU skips it then.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct FilledRange {
    pub start: u64,
    pub end: u64,
    pub filled_ns: u64,
    pub seq: u64,
    pub source: Source,
}

/// A process's recently filled ranges, in slots used round robin. Ranges never overlap: a
/// newer fill makes the older ranges it overwrites forgotten.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FilledRanges {
    /// The slot the next new range goes to (modulo the setting).
    pub next: u64,
    pub ranges: [FilledRange; RELAY_SLOTS],
}

impl FilledRanges {
    pub const EMPTY: FilledRanges = FilledRanges {
        next: 0,
        ranges: [FilledRange {
            start: 0,
            end: 0,
            filled_ns: 0,
            seq: 0,
            source: Source { ino: 0, fd: 0, kind: 0, _pad0: 0, _pad1: 0 },
        }; RELAY_SLOTS],
    };
}

/// What one send matched: the bytes that lie in each slot's range, and that range's source
/// (as it was when matched). Slot by slot, without merging equal sources: a merge is a loop
/// inside the range loop, more than the kernel's verifier explores in one program. Equal
/// sources end up in the same flow anyway (the flow map merges them). A slot's source is
/// meaningful only where its bytes are not 0: the kernel clears `bytes` and `total` alone.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Matched {
    pub bytes: [u64; RELAY_SLOTS],
    pub sources: [Source; RELAY_SLOTS],
    /// Bytes matched in all (the rest of the send is unpaired).
    pub total: u64,
}

#[cfg(test)]
impl Matched {
    /// The bytes matched from `source`, whichever slots they were in.
    pub fn from_source(&self, source: &Source) -> u64 {
        (0..RELAY_SLOTS).filter(|&i| self.sources[i] == *source).map(|i| self.bytes[i]).sum()
    }
}

#[inline(always)]
fn begin_write(r: &mut FilledRange) {
    r.seq = r.seq.wrapping_add(1);
}

#[inline(always)]
fn end_write(r: &mut FilledRange) {
    r.seq = r.seq.wrapping_add(1);
}

impl FilledRanges {
    /// A receive filled `len` bytes at `start` from `source`, at `now` (ns). Older ranges it
    /// overlaps are forgotten. Each fill takes a slot of its own, even one that continues
    /// the previous fill: a merged range would be forgotten whole when its first part is
    /// refilled (a ring of buffers in one allocation), its other parts with it.
    #[inline(always)]
    pub fn record(&mut self, start: u64, len: u64, source: &Source, now: u64, settings: &RelaySettings) {
        let slots = settings.ranges.min(RELAY_SLOTS as u32) as u64;
        let end = start.wrapping_add(len);
        if slots == 0 || len == 0 || end < start {
            return;
        }
        if self.refill_last(start, len, source, now, settings) {
            return;
        }
        // Older ranges the new bytes overwrite are forgotten whole (the part of them that
        // was not overwritten no longer pairs: unpaired, never misattributed). Whole, not
        // trimmed: trimming compares the same values again, which makes the kernel's
        // verifier track each outcome as a state of its own, more than it explores.
        // A loop bound the compiler does not know: the loop stays a loop, and the verifier
        // bounds it by the clamp above.
        let mut i = 0;
        while (i as u64) < slots {
            let r = &mut self.ranges[i % RELAY_SLOTS];
            i += 1;
            if r.start < end && start < r.end {
                begin_write(r);
                r.end = r.start;
                end_write(r);
            }
        }
        // Masked after a volatile read: the compiler drops a mask it can prove redundant
        // (`next % slots` < 16), and the kernel's verifier cannot bound `next % slots`.
        let i = self.next % slots;
        let i = unsafe { core::ptr::read_volatile(&i) } as usize & (RELAY_SLOTS - 1);
        self.next = self.next.wrapping_add(1);
        let r = &mut self.ranges[i];
        begin_write(r);
        r.start = start;
        r.end = end;
        r.filled_ns = now;
        r.source.kind = source.kind;
        r.source.fd = source.fd;
        r.source.ino = source.ino;
        end_write(r);
    }

    /// The short cut of [`Self::record`]: the buffer the last fill took, filled again (a read
    /// loop). The one range that overlaps it is that one, as live ranges never overlap, so it
    /// is refreshed in place. False (nothing done) for any other fill.
    #[inline(always)]
    pub fn refill_last(&mut self, start: u64, len: u64, source: &Source, now: u64, settings: &RelaySettings) -> bool {
        let slots = settings.ranges.min(RELAY_SLOTS as u32) as u64;
        if slots == 0 {
            return false;
        }
        let Some(r) = self.last_live(slots) else { return false };
        if r.start != start || r.end != start.wrapping_add(len) {
            return false;
        }
        begin_write(r);
        r.filled_ns = now;
        r.source.kind = source.kind;
        r.source.fd = source.fd;
        r.source.ino = source.ino;
        end_write(r);
        true
    }

    /// The range the last fill took, if it is live (not forgotten, and no writer is in it
    /// on another CPU).
    #[inline(always)]
    fn last_live(&mut self, slots: u64) -> Option<&mut FilledRange> {
        let r = &mut self.ranges[self.last_index(slots)];
        (r.start < r.end && unsafe { core::ptr::read_volatile(&r.seq) } & 1 == 0).then_some(r)
    }

    /// The slot the last fill took, of the first `slots` (> 0). Masked after a volatile read,
    /// as in `record`.
    #[inline(always)]
    fn last_index(&self, slots: u64) -> usize {
        let i = self.next.wrapping_add(slots - 1) % slots;
        (unsafe { core::ptr::read_volatile(&i) }) as usize & (RELAY_SLOTS - 1)
    }

    /// The short cut of [`Self::match_segment`]: a send inside the range the last fill took
    /// (a read + write loop) pairs with it whole, as no other live range can overlap it.
    /// False (nothing done) otherwise.
    #[inline(always)]
    pub fn match_last(&self, start: u64, len: u64, now: u64, settings: &RelaySettings, matched: &mut Matched) -> bool {
        let slots = settings.ranges.min(RELAY_SLOTS as u32) as u64;
        let end = start.wrapping_add(len);
        if end <= start || slots == 0 {
            return false;
        }
        let last = self.last_index(slots);
        let r = &self.ranges[last];
        // SAFETY of the volatile reads: as in `match_segment`.
        let seq = unsafe { core::ptr::read_volatile(&r.seq) };
        let (r_start, r_end) = unsafe { (core::ptr::read_volatile(&r.start), core::ptr::read_volatile(&r.end)) };
        let filled = unsafe { core::ptr::read_volatile(&r.filled_ns) };
        if seq & 1 != 0 || start < r_start || r_end < end || now.wrapping_sub(filled) > settings.ttl_ns {
            return false;
        }
        let (kind, fd, ino) = (r.source.kind, r.source.fd, r.source.ino);
        if unsafe { core::ptr::read_volatile(&r.seq) } != seq {
            return false;
        }
        matched.bytes[last] += len;
        matched.sources[last].kind = kind;
        matched.sources[last].fd = fd;
        matched.sources[last].ino = ino;
        matched.total += len;
        true
    }

    /// A send of `len` bytes at `start`, at `now`: adds what lies inside live ranges to
    /// `matched`, by source. `matched.bytes` must start at zero (the sources are read only
    /// where bytes are).
    #[inline(always)]
    pub fn match_segment(&self, start: u64, len: u64, now: u64, settings: &RelaySettings, matched: &mut Matched) {
        if self.match_last(start, len, now, settings, matched) {
            return;
        }
        let slots = settings.ranges.min(RELAY_SLOTS as u32) as usize;
        let end = start.wrapping_add(len);
        if end <= start {
            return;
        }
        let mut i = 0;
        while i < slots {
            let r = &self.ranges[i % RELAY_SLOTS];
            i += 1;
            // SAFETY of the volatile reads: plain loads of fields of `r`; volatile so that the
            // compiler reads `seq` before and after the range, as written.
            let seq = unsafe { core::ptr::read_volatile(&r.seq) };
            let (r_start, r_end) = unsafe { (core::ptr::read_volatile(&r.start), core::ptr::read_volatile(&r.end)) };
            let filled = unsafe { core::ptr::read_volatile(&r.filled_ns) };
            if seq & 1 != 0 || r_start >= r_end || now.wrapping_sub(filled) > settings.ttl_ns {
                continue;
            }
            let lo = if start > r_start { start } else { r_start };
            let hi = if end < r_end { end } else { r_end };
            if lo >= hi {
                continue;
            }
            // Field by field: a struct copy between two maps' values can become a byte loop.
            let (kind, fd, ino) = (r.source.kind, r.source.fd, r.source.ino);
            if unsafe { core::ptr::read_volatile(&r.seq) } == seq {
                let j = (i - 1) % RELAY_SLOTS;
                matched.bytes[j] += hi - lo;
                matched.sources[j].kind = kind;
                matched.sources[j].fd = fd;
                matched.sources[j].ino = ino;
                matched.total += hi - lo;
            }
        }
    }
}

/// The shape of a syscall's user buffer argument (`SyscallDesc::buf_shape`): where the
/// filled or sent segments are.
pub mod shape {
    /// One buffer (`buf`, the syscall's result is its length).
    pub const PLAIN: u8 = 0;
    /// `struct iovec *` and, in the next argument, the count (readv, writev, preadv, ...).
    pub const IOVEC: u8 = 1;
    /// `struct user_msghdr *` (recvmsg, sendmsg).
    pub const MSGHDR: u8 = 2;
    /// `struct mmsghdr *` and, in the next argument, the count (recvmmsg, sendmmsg); the
    /// syscall returns a number of messages, each with its own length.
    pub const MMSGHDR: u8 = 3;
}

/// User ABI layouts (include/uapi, LP64): not kernel structures, the same on every kernel.
pub mod abi {
    /// `struct iovec { void *iov_base; size_t iov_len; }`.
    pub const IOVEC_SIZE: u64 = 16;
    /// `struct user_msghdr`: `msg_iov` and `msg_iovlen`.
    pub const MSGHDR_IOV: u64 = 16;
    pub const MSGHDR_IOVLEN: u64 = 24;
    /// `msg_control` and `msg_controllen` (which recvmsg sets to the bytes it filled).
    pub const MSGHDR_CONTROL: u64 = 32;
    pub const MSGHDR_CONTROLLEN: u64 = 40;
    /// `struct mmsghdr { struct user_msghdr msg_hdr; unsigned int msg_len; }`: 64 bytes with
    /// padding.
    pub const MMSGHDR_SIZE: u64 = 64;
    pub const MMSGHDR_LEN: u64 = 56;
    /// The iovecs walked per message, the messages walked per recvmmsg/sendmmsg, and the
    /// segments (iovecs with bytes) recorded or paired per syscall: the bytes of further
    /// iovecs and messages are counted (for messages, up to [`MMSG_COUNTED`]) but neither
    /// recorded nor paired. Bounds for the kernel's verifier, which explores each iteration.
    pub const MAX_IOVECS: u32 = 4;
    pub const MAX_MESSAGES: u32 = 4;
    pub const MAX_SEGMENTS: usize = 4;
    /// The messages whose lengths are summed for a recvmmsg/sendmmsg's bytes; further
    /// messages are a counted drop.
    pub const MMSG_COUNTED: u32 = 64;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FdKind;

    const S: RelaySettings = RelaySettings::DEFAULT;

    fn src(kind: FdKind, fd: i32) -> Source {
        Source { ino: 0, fd, kind: kind as u8, _pad0: 0, _pad1: 0 }
    }

    fn matched(r: &FilledRanges, start: u64, len: u64, now: u64) -> Matched {
        let mut m = Matched::default();
        r.match_segment(start, len, now, &S, &mut m);
        m
    }

    #[test]
    fn a_send_inside_a_filled_range_pairs_whole_partly_or_not() {
        let mut r = FilledRanges::EMPTY;
        let tcp = src(FdKind::Tcp, 3);
        r.record(0x1000, 0x1000, &tcp, 10, &S);
        // Whole, a sub-range, a partial overlap at each end, outside.
        assert_eq!(matched(&r, 0x1000, 0x1000, 20).total, 0x1000);
        assert_eq!(matched(&r, 0x1800, 0x100, 20).total, 0x100);
        assert_eq!(matched(&r, 0x800, 0x1000, 20).total, 0x800);
        assert_eq!(matched(&r, 0x1f00, 0x1000, 20).total, 0x100);
        assert_eq!(matched(&r, 0x2000, 0x10, 20).total, 0);
        assert_eq!(matched(&r, 0x1000, 0x1000, 20).from_source(&tcp), 0x1000);
        // Expired.
        assert_eq!(matched(&r, 0x1000, 0x1000, 10 + S.ttl_ns + 1).total, 0);
        assert_eq!(matched(&r, 0x1000, 0x1000, 10 + S.ttl_ns).total, 0x1000);
    }

    #[test]
    fn several_buffers_and_sources_pair_each_with_its_own() {
        let mut r = FilledRanges::EMPTY;
        let (tcp, file) = (src(FdKind::Tcp, 3), src(FdKind::File, 4));
        r.record(0x10_000, 100, &tcp, 1, &S);
        r.record(0x20_000, 200, &file, 2, &S);
        r.record(0x30_000, 300, &tcp, 3, &S);
        let mut m = Matched::default();
        for (start, len) in [(0x10_000, 100), (0x20_000, 200), (0x30_000, 300), (0x40_000, 50)] {
            r.match_segment(start, len, 4, &S, &mut m);
        }
        assert_eq!(m.total, 600);
        assert_eq!((m.from_source(&tcp), m.from_source(&file)), (400, 200));
    }

    #[test]
    fn a_newer_fill_makes_what_it_overwrote_forgotten() {
        let mut r = FilledRanges::EMPTY;
        let (tcp, file) = (src(FdKind::Tcp, 3), src(FdKind::File, 4));
        r.record(0x1000, 0x1000, &tcp, 1, &S);
        // The head overwritten from a file: the rest of tcp's range no longer pairs.
        r.record(0x1000, 0x100, &file, 2, &S);
        let m = matched(&r, 0x1000, 0x1000, 3);
        assert_eq!((m.total, m.from_source(&file), m.from_source(&tcp)), (0x100, 0x100, 0));
        // Overwritten whole: only the new source.
        r.record(0x1000, 0x1000, &file, 4, &S);
        let m = matched(&r, 0x1000, 0x1000, 5);
        assert_eq!((m.from_source(&file), m.from_source(&tcp)), (0x1000, 0));
        // A range next to the new one is kept.
        r.record(0x2000, 0x100, &tcp, 6, &S);
        let m = matched(&r, 0x1000, 0x1100, 7);
        assert_eq!((m.from_source(&file), m.from_source(&tcp)), (0x1000, 0x100));
    }

    /// A read loop into one buffer keeps refreshing one slot (the other ranges stay), and a
    /// send from that buffer pairs with its latest source, whole or in part.
    #[test]
    fn refilling_the_last_buffer_refreshes_its_range_in_place() {
        let mut r = FilledRanges::EMPTY;
        let (tcp, file) = (src(FdKind::Tcp, 3), src(FdKind::File, 4));
        r.record(0x9000, 0x100, &tcp, 1, &S);
        for t in 2..40 {
            r.record(0x1000, 0x1000, &file, t, &S);
        }
        assert_eq!(r.next, 2, "one slot for the loop's buffer");
        assert_eq!(matched(&r, 0x9000, 0x100, 41).from_source(&tcp), 0x100, "the older range stays");
        r.record(0x1000, 0x1000, &tcp, 50, &S);
        let m = matched(&r, 0x1000, 0x1000, 51);
        assert_eq!((m.total, m.from_source(&tcp), m.from_source(&file)), (0x1000, 0x1000, 0));
        assert_eq!(matched(&r, 0x1400, 0x10, 51).from_source(&tcp), 0x10);
        // The loop's range expires from its latest fill.
        assert_eq!(matched(&r, 0x1000, 0x1000, 50 + S.ttl_ns + 1).total, 0);
        // Straddling the last range and the next buffer: both slots pair their part.
        r.record(0x2000, 0x1000, &file, 60, &S);
        r.record(0x1000, 0x1000, &tcp, 61, &S);
        let m = matched(&r, 0x1800, 0x1000, 62);
        assert_eq!((m.from_source(&tcp), m.from_source(&file)), (0x800, 0x800));
    }

    #[test]
    fn adjacent_fills_stay_apart_so_refilling_one_keeps_the_other() {
        let mut r = FilledRanges::EMPTY;
        let tcp = src(FdKind::Tcp, 3);
        // A ring of two buffers in one allocation: fill both, refill the first.
        r.record(0x1000, 0x100, &tcp, 1, &S);
        r.record(0x1100, 0x100, &tcp, 2, &S);
        r.record(0x1000, 0x80, &tcp, 3, &S);
        assert_eq!(r.next, 3);
        assert_eq!(matched(&r, 0x1100, 0x100, 4).total, 0x100, "the second buffer still pairs");
        assert_eq!(matched(&r, 0x1000, 0x100, 4).total, 0x80);
    }

    #[test]
    fn slots_are_reused_round_robin_within_the_setting() {
        let settings = RelaySettings { ranges: 4, ..S };
        let mut r = FilledRanges::EMPTY;
        let tcp = src(FdKind::Tcp, 3);
        // Gaps between the ranges: no extension.
        for i in 0..5u64 {
            r.record(0x10_000 * (i + 1), 10, &tcp, i, &settings);
        }
        let mut m = Matched::default();
        r.match_segment(0x10_000, 10, 5, &settings, &mut m);
        assert_eq!(m.total, 0, "the first range was evicted by the fifth");
        r.match_segment(0x50_000, 10, 5, &settings, &mut m);
        assert_eq!(m.total, 10);
        assert!(r.ranges[4..].iter().all(|x| x.start == 0), "slots past the setting unused");
        // Pairing off.
        let off = RelaySettings { ranges: 0, ..S };
        let mut r = FilledRanges::EMPTY;
        r.record(0x1000, 10, &tcp, 0, &off);
        assert_eq!(r.next, 0);
    }

    #[test]
    fn a_range_being_written_is_skipped() {
        let mut r = FilledRanges::EMPTY;
        r.record(0x1000, 0x100, &src(FdKind::Tcp, 3), 1, &S);
        assert_eq!(r.ranges[0].seq, 2);
        r.ranges[0].seq = 3;
        assert_eq!(matched(&r, 0x1000, 0x100, 2).total, 0);
    }

    #[test]
    fn wrapping_ranges_record_and_match_nothing() {
        let mut r = FilledRanges::EMPTY;
        r.record(u64::MAX - 10, 100, &src(FdKind::Tcp, 3), 1, &S);
        assert_eq!(r.next, 0);
        assert_eq!(matched(&r, u64::MAX - 10, 100, 2).total, 0);
    }
}
