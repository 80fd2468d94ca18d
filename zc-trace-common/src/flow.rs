//! How a data syscall's flow is named: its two ends and how its source was found (the
//! strategy a program used), decided from what `sys_enter` recorded. The kernel programs
//! (`zc-trace-ebpf/src/probes/flows.rs`, `syscalls.rs`, `mappings.rs`) keep the maps; the
//! decisions are here, so that the host can test them.

use crate::{FILE_MAP_SLOTS, FdKind, FileMaps, OpClass, how, linux::MSG_ZEROCOPY};

/// A flow's ends and strategy, as they go into a [`FlowKey`](crate::FlowKey): [`FdKind`]s as
/// u8 ([`FdKind::UserMemory`] for a user buffer) and one of the [`how`] constants.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FlowEnds {
    pub src: u8,
    pub dst: u8,
    pub how: u8,
}

const MEMORY: u8 = FdKind::UserMemory as u8;

/// The flow of a data syscall of class `class` whose fds were of kinds `kind_in` and
/// `kind_out` (as recorded: u8, 0 for none). For a write or send, `after_read` is the kind of
/// the fd a receive of the same process filled its buffer from (0: none, see
/// [`relay`](crate::relay)) and `from_mapping` whether the buffer lies in a file mapping;
/// `flags` are its flags argument.
/// `None` for classes that are not flows.
#[inline(always)]
pub fn flow_ends(
    class: OpClass,
    kind_in: u8,
    kind_out: u8,
    after_read: u8,
    from_mapping: bool,
    flags: u64,
) -> Option<FlowEnds> {
    let (src, dst, how) = match class {
        OpClass::Read | OpClass::Recv => (kind_in, MEMORY, how::PLAIN),
        OpClass::Write | OpClass::Send => {
            // The buffer's origin: the fd a receive of this process filled it from, a file
            // mapping, or plain user memory. MSG_ZEROCOPY names the strategy whatever it is.
            let paired = after_read != FdKind::Unknown as u8;
            let (src, how) = if paired {
                (after_read, how::AFTER_READ)
            } else if from_mapping {
                (FdKind::File as u8, how::FROM_MAPPING)
            } else {
                (MEMORY, how::PLAIN)
            };
            let zerocopy = class == OpClass::Send && flags & MSG_ZEROCOPY as u64 != 0;
            (src, kind_out, if zerocopy { how::MSG_ZEROCOPY } else { how })
        }
        // vmsplice(pipe, iov): user pages into the pipe (argument 0 is the pipe).
        OpClass::Vmsplice => (MEMORY, kind_in, how::PLAIN),
        OpClass::Sendfile | OpClass::Splice | OpClass::Tee | OpClass::CopyFileRange => (kind_in, kind_out, how::PLAIN),
        _ => return None,
    };
    Some(FlowEnds { src, dst, how })
}

/// The recent file-backed mappings of a process, for telling mmap + write from read + write:
/// mmap(2) of a regular file records the range; a write(2) whose buffer lies in a recorded
/// range copies from the page cache through the mapping. The last `FILE_MAP_SLOTS` are kept,
/// round robin; munmap forgets the ranges it overlaps.
impl FileMaps {
    /// mmap returned `start` for `len` bytes of a regular file.
    #[inline(always)]
    pub fn record(&mut self, start: u64, len: u64) {
        let slot = (self.next as usize) % FILE_MAP_SLOTS;
        self.ranges[slot] = [start, start.wrapping_add(len)];
        self.next = self.next.wrapping_add(1);
    }

    /// munmap of `len` bytes at `start`: every recorded range it overlaps is forgotten whole.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // the loop shape of the kernel program, unchanged
    pub fn forget(&mut self, start: u64, len: u64) {
        let end = start.wrapping_add(len);
        for i in 0..FILE_MAP_SLOTS {
            let r = self.ranges[i];
            if r[0] < end && start < r[1] {
                self.ranges[i] = [0, 0];
            }
        }
    }

    /// Whether `addr` lies in a recorded mapping.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // the loop shape of the kernel program, unchanged
    pub fn contains(&self, addr: u64) -> bool {
        let mut hit = false;
        for i in 0..FILE_MAP_SLOTS {
            let r = self.ranges[i];
            hit |= r[0] <= addr && addr < r[1];
        }
        hit
    }
}

/// Slots of `FLOWS_ONE`, the flows of the one traced process: a per-CPU array that a flow
/// takes a slot of by its tag (direct-mapped, a few flows per process), instead of a hash
/// update per data syscall. A flow whose slot another flow took on that CPU goes to `FLOWS`.
pub const FLOW_SLOTS: u32 = 256;

/// One `FLOWS_ONE` slot: `tag` 0 is free, else [`flow_tag`] of the flow counted here.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowSlot {
    pub tag: u32,
    pub _pad: u32,
    pub calls: u64,
    pub bytes: u64,
}

/// A flow of the one traced process as a non-zero number: class, source, destination, how.
#[inline(always)]
pub fn flow_tag(class: u8, src: u8, dst: u8, how: u8) -> u32 {
    1 << 31 | (class as u32) << 24 | (src as u32) << 16 | (dst as u32) << 8 | how as u32
}

/// The slot a tag takes: its fields mixed so that a process's few flows rarely meet.
#[inline(always)]
pub fn flow_slot(tag: u32) -> u32 {
    (tag.wrapping_mul(0x9e37_79b1) >> 24) & (FLOW_SLOTS - 1)
}

/// (class, src, dst, how) of a tag; `None` for a free slot.
pub fn flow_untag(tag: u32) -> Option<(u8, u8, u8, u8)> {
    (tag >> 31 == 1).then_some(((tag >> 24) as u8 & 0x7f, (tag >> 16) as u8, (tag >> 8) as u8, tag as u8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FdKind::*;

    const ZC: u64 = MSG_ZEROCOPY as u64;

    fn ends(src: FdKind, dst: FdKind, how: u8) -> Option<FlowEnds> {
        Some(FlowEnds { src: src as u8, dst: dst as u8, how })
    }

    #[test]
    fn flow_ends_by_class_and_strategy() {
        let none = Unknown as u8;
        // (class, kind_in, kind_out, after_read, from_mapping, flags, expected)
        let rows = [
            (OpClass::Read, File, Unknown, none, false, 0, ends(File, UserMemory, how::PLAIN)),
            (OpClass::Read, FileDirect, Unknown, none, false, 0, ends(FileDirect, UserMemory, how::PLAIN)),
            (OpClass::Recv, Tcp, Unknown, none, false, 0, ends(Tcp, UserMemory, how::PLAIN)),
            // A read's own strategy does not depend on what a write would look at.
            (OpClass::Read, Pipe, Unknown, File as u8, true, ZC, ends(Pipe, UserMemory, how::PLAIN)),
            (OpClass::Write, Unknown, File, none, false, 0, ends(UserMemory, File, how::PLAIN)),
            (OpClass::Write, Unknown, Tcp, File as u8, false, 0, ends(File, Tcp, how::AFTER_READ)),
            (OpClass::Write, Unknown, File, FileDirect as u8, false, 0, ends(FileDirect, File, how::AFTER_READ)),
            (OpClass::Write, Unknown, Tcp, none, true, 0, ends(File, Tcp, how::FROM_MAPPING)),
            // A buffer a read filled wins over a mapping it may lie in.
            (OpClass::Write, Unknown, Tcp, Pipe as u8, true, 0, ends(Pipe, Tcp, how::AFTER_READ)),
            // write(2) has no MSG_ flags: a flags value never names MSG_ZEROCOPY for it.
            (OpClass::Write, Unknown, Tcp, none, false, ZC, ends(UserMemory, Tcp, how::PLAIN)),
            (OpClass::Send, Unknown, Tcp, none, false, 0, ends(UserMemory, Tcp, how::PLAIN)),
            (OpClass::Send, Unknown, Tcp, none, false, ZC, ends(UserMemory, Tcp, how::MSG_ZEROCOPY)),
            (OpClass::Send, Unknown, Udp, none, false, 0x40, ends(UserMemory, Udp, how::PLAIN)),
            // MSG_ZEROCOPY names the strategy whatever the buffer's origin.
            (OpClass::Send, Unknown, Tcp, File as u8, false, ZC, ends(File, Tcp, how::MSG_ZEROCOPY)),
            (OpClass::Send, Unknown, Tcp, File as u8, false, 0, ends(File, Tcp, how::AFTER_READ)),
            (OpClass::Send, Unknown, Tcp, none, true, 0, ends(File, Tcp, how::FROM_MAPPING)),
            // vmsplice(pipe, iov): the pipe is argument 0, recorded as the source fd.
            (OpClass::Vmsplice, Pipe, Unknown, none, false, 0, ends(UserMemory, Pipe, how::PLAIN)),
            (OpClass::Sendfile, File, Tcp, none, false, 0, ends(File, Tcp, how::PLAIN)),
            (OpClass::Splice, Pipe, File, none, false, 0, ends(Pipe, File, how::PLAIN)),
            (OpClass::Tee, Pipe, Pipe, none, false, 0, ends(Pipe, Pipe, how::PLAIN)),
            (OpClass::CopyFileRange, File, File, none, false, 0, ends(File, File, how::PLAIN)),
            (OpClass::None, File, File, none, false, 0, None),
            (OpClass::Mmap, File, Unknown, none, false, 0, None),
            (OpClass::IoUring, File, Unknown, none, false, 0, None),
            (OpClass::Other, File, File, none, false, 0, None),
            (OpClass::Munmap, Unknown, Unknown, none, false, 0, None),
        ];
        for (class, kind_in, kind_out, after, mapped, flags, expected) in rows {
            let got = flow_ends(class, kind_in as u8, kind_out as u8, after, mapped, flags);
            assert_eq!(
                got, expected,
                "{class:?} {kind_in:?} -> {kind_out:?} after {after} mapped {mapped} flags {flags:#x}"
            );
        }
        // Every class is a flow or explicitly not one.
        for class in OpClass::ALL {
            assert!(rows.iter().any(|r| r.0 == class), "{class:?} has no row");
        }
    }

    #[test]
    fn file_mappings_are_kept_round_robin_and_forgotten_by_overlap() {
        let mut maps = FileMaps::default();
        assert!(!maps.contains(0x1000));
        maps.record(0x10_000, 0x4000);
        assert!(maps.contains(0x10_000) && maps.contains(0x13_fff));
        assert!(!maps.contains(0xf_fff) && !maps.contains(0x14_000));
        // The ninth mapping takes the first one's slot.
        for i in 1..=FILE_MAP_SLOTS as u64 {
            maps.record(0x100_000 * i, 0x1000);
        }
        assert!(!maps.contains(0x10_000));
        assert!((1..=FILE_MAP_SLOTS as u64).all(|i| maps.contains(0x100_000 * i)));
        assert_eq!(maps.next, FILE_MAP_SLOTS as u64 + 1);
        // munmap of part of a mapping forgets it whole; a range touching none forgets none.
        maps.forget(0x200_800, 0x10);
        assert!(!maps.contains(0x200_000));
        maps.forget(0x301_000, 0x1000);
        assert!(maps.contains(0x300_000));
        // One munmap across several mappings.
        maps.forget(0x400_000, 0x300_000);
        assert!(!maps.contains(0x400_000) && !maps.contains(0x600_000));
        assert!(maps.contains(0x700_000) && maps.contains(0x100_000));
    }

    /// Every flow a process can have gets a tag that decodes to itself and a slot in range;
    /// the flows of a read + write loop do not share a slot.
    #[test]
    fn flow_tags_round_trip_and_spread() {
        use crate::FdKind;
        for class in 0..OpClass::COUNT as u8 {
            for src in 0..FdKind::COUNT as u8 {
                for dst in 0..FdKind::COUNT as u8 {
                    for how in 0..4u8 {
                        let tag = flow_tag(class, src, dst, how);
                        assert_ne!(tag, 0);
                        assert_eq!(flow_untag(tag), Some((class, src, dst, how)));
                        assert!(flow_slot(tag) < FLOW_SLOTS);
                    }
                }
            }
        }
        assert_eq!(flow_untag(0), None);
        let read = flow_tag(OpClass::Read as u8, FdKind::File as u8, MEMORY, how::PLAIN);
        let write = flow_tag(OpClass::Write as u8, FdKind::File as u8, FdKind::DevNull as u8, how::AFTER_READ);
        assert_ne!(flow_slot(read), flow_slot(write));
    }
}
