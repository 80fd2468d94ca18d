//! Copy stacks (`trace --stacks`): the user and kernel call stacks of the data syscalls that
//! moved bytes, counted in the kernel by (process, stacks, flow). The kernel programs
//! (`zc-trace-ebpf/src/probes/stacks.rs`) keep the maps; what a stack's bytes were (copied to
//! user, from user, moved without a copy...) is decided here, so that the host can test it.

use crate::{FdKind, OpClass, flow::flow_untag, how};

/// Frames kept per user stack. A frame of a build-id stack map is 32 bytes
/// (`struct bpf_stack_build_id`), so an entry is 1.5 KiB; deeper stacks are cut here.
pub const USER_STACK_DEPTH: usize = 48;
/// Size of one `struct bpf_stack_build_id`: status (s32), build id (20 bytes), offset or ip.
pub const BUILD_ID_FRAME_SIZE: usize = 32;
/// `bpf_stack_build_id.status`: the frame is a build id and a file offset.
pub const BUILD_ID_VALID: i32 = 1;
/// ... the kernel could not read the build id (anonymous memory, a file not in memory, the
/// mmap lock taken): the frame is an instruction pointer.
pub const BUILD_ID_IP: i32 = 2;
/// Distinct stacks kept (the user and the kernel stack maps each) when `--stacks` is given;
/// both maps are created with one entry otherwise.
pub const STACKS_MAX_ENTRIES: u32 = 8_192;
/// (process, stacks, flow) counters kept when `--stacks` is given.
pub const COPY_STACKS_MAX_ENTRIES: u32 = 16_384;
/// Threads whose kernel copy stack is remembered between the copy and the syscall exit.
pub const THREAD_KSTACKS_MAX_ENTRIES: u32 = 4_096;
/// A stack id that stands for "no stack": none was captured (no probe inside the copy path
/// for a kernel stack; a thread without user frames) or it was lost (a drop).
pub const NO_STACK: i32 = -1;

/// Key of the `COPY_STACKS` map: one syscall's flow and where it was called from.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StackKey {
    /// The thread group (not the counter key: stacks are symbolized per process).
    pub tgid: u32,
    /// Ids in the user (build-id) and kernel stack maps, or [`NO_STACK`].
    pub user: i32,
    pub kernel: i32,
    /// The flow, as [`flow_tag`](crate::flow::flow_tag).
    pub tag: u32,
    /// 1: the destination socket's route could gather (NETIF_F_SG), read at entry.
    pub gather: u32,
    pub _pad: u32,
    /// The word at the user stack pointer and the return address in the frame the frame
    /// pointer register points at, both at the syscall (0: not read). A libc syscall wrapper
    /// built without frame pointers sets up no frame, so a frame-pointer walk skips the
    /// function that called it; when the first is a return address (user space checks that a
    /// call precedes it), it is that function's, and goes back into the stack.
    pub leaf_ret: u64,
    pub frame_ret: u64,
}

/// What a stack's bytes were, by the syscall's semantics: the root frame of the folded
/// stacks and the colour of a flame graph.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CopyKind {
    /// Copied by the CPU from the kernel (page cache, socket, pipe) into user memory.
    ToUser,
    /// Copied by the CPU from user memory into the kernel.
    FromUser,
    /// Moved without a CPU copy: page references (sendfile, splice, vmsplice, tee) or pinned
    /// user pages (MSG_ZEROCOPY on a route that can gather).
    ZeroCopy,
    /// Copied by the CPU inside the kernel (sendfile on a route that cannot gather, splice
    /// into a file, copy_file_range without a reflink).
    KernelCopy,
    /// No CPU copy at all: O_DIRECT (the device DMAs to or from the user buffer), /dev/null.
    NoCopy,
}

impl CopyKind {
    pub const ALL: [CopyKind; 5] =
        [CopyKind::ToUser, CopyKind::FromUser, CopyKind::ZeroCopy, CopyKind::KernelCopy, CopyKind::NoCopy];

    pub const fn name(self) -> &'static str {
        match self {
            CopyKind::ToUser => "to_user",
            CopyKind::FromUser => "from_user",
            CopyKind::ZeroCopy => "zero_copy",
            CopyKind::KernelCopy => "kernel_copy",
            CopyKind::NoCopy => "no_copy",
        }
    }
}

/// What the bytes of a syscall of flow `tag` were (`gather`: its destination socket's route
/// can gather). `None` for a tag that is not a flow's.
pub fn copy_kind(tag: u32, gather: bool) -> Option<CopyKind> {
    let (class, src, dst, how) = flow_untag(tag)?;
    let (src, dst) = (FdKind::from_u8(src), FdKind::from_u8(dst));
    let network = matches!(dst, FdKind::Tcp | FdKind::Udp);
    Some(match OpClass::from_u32(u32::from(class)) {
        OpClass::Read | OpClass::Recv if src == FdKind::FileDirect => CopyKind::NoCopy,
        OpClass::Read | OpClass::Recv => CopyKind::ToUser,
        OpClass::Write | OpClass::Send if matches!(dst, FdKind::FileDirect | FdKind::DevNull) => CopyKind::NoCopy,
        // MSG_ZEROCOPY pins the pages only where the route gathers; elsewhere it copies.
        OpClass::Write | OpClass::Send if how == how::MSG_ZEROCOPY && gather => CopyKind::ZeroCopy,
        OpClass::Write | OpClass::Send => CopyKind::FromUser,
        // Page references into a socket are copied at transmit when the device cannot gather.
        OpClass::Sendfile | OpClass::Splice if network && !gather => CopyKind::KernelCopy,
        // Pipe pages written into a file are copied into its page cache (iter_file_splice_write),
        // and sendfile between files goes the same way.
        OpClass::Sendfile | OpClass::Splice if dst == FdKind::File => CopyKind::KernelCopy,
        OpClass::Sendfile | OpClass::Splice | OpClass::Vmsplice | OpClass::Tee => CopyKind::ZeroCopy,
        OpClass::CopyFileRange => CopyKind::KernelCopy,
        OpClass::IoUring if src == FdKind::UserMemory && how == how::MSG_ZEROCOPY && gather => CopyKind::ZeroCopy,
        OpClass::IoUring if src == FdKind::FileDirect || dst == FdKind::FileDirect => CopyKind::NoCopy,
        OpClass::IoUring if dst == FdKind::UserMemory => CopyKind::ToUser,
        OpClass::IoUring => CopyKind::FromUser,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::flow_tag;

    fn kind(class: OpClass, src: FdKind, dst: FdKind, how: u8, gather: bool) -> Option<CopyKind> {
        copy_kind(flow_tag(class as u8, src as u8, dst as u8, how), gather)
    }

    #[test]
    fn the_classic_strategies() {
        let mem = FdKind::UserMemory;
        assert_eq!(kind(OpClass::Read, FdKind::File, mem, how::PLAIN, false), Some(CopyKind::ToUser));
        assert_eq!(kind(OpClass::Write, FdKind::File, FdKind::Tcp, how::AFTER_READ, true), Some(CopyKind::FromUser));
        assert_eq!(kind(OpClass::Sendfile, FdKind::File, FdKind::Tcp, how::PLAIN, true), Some(CopyKind::ZeroCopy));
        assert_eq!(kind(OpClass::Sendfile, FdKind::File, FdKind::Tcp, how::PLAIN, false), Some(CopyKind::KernelCopy));
        assert_eq!(kind(OpClass::Splice, FdKind::Pipe, FdKind::File, how::PLAIN, false), Some(CopyKind::KernelCopy));
        assert_eq!(kind(OpClass::Splice, FdKind::File, FdKind::Pipe, how::PLAIN, false), Some(CopyKind::ZeroCopy));
    }

    #[test]
    fn zero_copy_needs_a_route_that_gathers() {
        let zc = |gather| kind(OpClass::Send, FdKind::UserMemory, FdKind::Tcp, how::MSG_ZEROCOPY, gather);
        assert_eq!(zc(true), Some(CopyKind::ZeroCopy));
        assert_eq!(zc(false), Some(CopyKind::FromUser));
    }

    #[test]
    fn direct_io_and_dev_null_copy_nothing() {
        let mem = FdKind::UserMemory;
        assert_eq!(kind(OpClass::Read, FdKind::FileDirect, mem, how::PLAIN, false), Some(CopyKind::NoCopy));
        assert_eq!(kind(OpClass::Write, mem, FdKind::DevNull, how::PLAIN, false), Some(CopyKind::NoCopy));
        assert_eq!(copy_kind(0, false), None);
    }
}
