//! Types shared between the kernel programs (`zc-trace-ebpf`) and user space (`zc-trace`).
//!
//! Everything here is `#[repr(C)]` plain data: the kernel writes it into maps and user space
//! reads the same bytes back. Field order is chosen so that no padding is left uninitialised
//! (the verifier rejects map keys with holes read from the stack).
#![no_std]

pub mod classify;
pub mod derive;
mod dma;
pub mod errqueue;
pub mod flow;
mod layouts;
pub mod linux;
pub mod relay;
pub mod stacks;

pub use dma::*;
pub use layouts::*;

/// Key of the `SYSCALL_COUNTS` map, where processes traced together (`-a`, several PIDs,
/// `--by thread`, the lab) are counted: one counter per (counter key, syscall number), or with
/// `SYSCALL_BUCKETS` (`serve`) per (counter key, bucket). A node agent needs from syscall
/// counts only the class (per-class calls) and whether the call returns (mode switches), so a
/// bucket is a class, or exit/exit_group apart ([`SyscallKey::bucket`]): by number, a process
/// made ~30 entries, a short-lived one in its first millisecond. One traced process is
/// counted by number, in an array (`SYSCALL_COUNTS_ONE`).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SyscallKey {
    /// Thread-group id, i.e. the PID that user space sees.
    pub tgid: u32,
    /// The syscall number (x86-64 numbering on x86-64), or a [`SyscallKey::bucket`]: flagged
    /// with [`SyscallKey::BUCKET`], so that counts by bucket and by number never mix up.
    pub nr: u32,
}

impl SyscallKey {
    /// Set in every bucket; syscall numbers are far below it.
    pub const BUCKET: u32 = 1 << 31;
    /// The bucket of calls that never return (exit, exit_group: one mode switch each).
    pub const NO_RETURN: u32 = Self::BUCKET | 0xff;

    /// The bucket of a syscall of class `class` (an [`OpClass`] value) that returns, or
    /// [`SyscallKey::NO_RETURN`].
    #[inline(always)]
    pub const fn bucket(class: u8, no_return: bool) -> u32 {
        if no_return { Self::NO_RETURN } else { Self::BUCKET | class as u32 }
    }
}

/// What a system call does with data, decided at `sys_enter` from its number. Everything a
/// thread's in-flight syscall causes (copies, faults, block I/O, context switches) is counted
/// under that syscall's class; what happens outside them is `None`.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpClass {
    /// Outside any data syscall: user-space execution, or a syscall of class `Other`.
    None = 0,
    Read = 1,
    Write = 2,
    Sendfile = 3,
    Splice = 4,
    Vmsplice = 5,
    Tee = 6,
    CopyFileRange = 7,
    Send = 8,
    Recv = 9,
    Mmap = 10,
    IoUring = 11,
    /// Any other system call.
    Other = 12,
    /// munmap: forgets file mappings (for telling mmap+write from read+write).
    Munmap = 13,
}

impl OpClass {
    pub const COUNT: usize = 14;
    pub const ALL: [OpClass; Self::COUNT] = [
        OpClass::None,
        OpClass::Read,
        OpClass::Write,
        OpClass::Sendfile,
        OpClass::Splice,
        OpClass::Vmsplice,
        OpClass::Tee,
        OpClass::CopyFileRange,
        OpClass::Send,
        OpClass::Recv,
        OpClass::Mmap,
        OpClass::IoUring,
        OpClass::Other,
        OpClass::Munmap,
    ];

    pub const fn from_u32(v: u32) -> OpClass {
        // A match, not an index into `ALL` (see `FdKind::from_u8`).
        match v {
            0 => OpClass::None,
            1 => OpClass::Read,
            2 => OpClass::Write,
            3 => OpClass::Sendfile,
            4 => OpClass::Splice,
            5 => OpClass::Vmsplice,
            6 => OpClass::Tee,
            7 => OpClass::CopyFileRange,
            8 => OpClass::Send,
            9 => OpClass::Recv,
            10 => OpClass::Mmap,
            11 => OpClass::IoUring,
            13 => OpClass::Munmap,
            _ => OpClass::Other,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            OpClass::None => "none",
            OpClass::Read => "read",
            OpClass::Write => "write",
            OpClass::Sendfile => "sendfile",
            OpClass::Splice => "splice",
            OpClass::Vmsplice => "vmsplice",
            OpClass::Tee => "tee",
            OpClass::CopyFileRange => "copy_file_range",
            OpClass::Send => "send",
            OpClass::Recv => "recv",
            OpClass::Mmap => "mmap",
            OpClass::IoUring => "io_uring",
            OpClass::Other => "other",
            OpClass::Munmap => "munmap",
        }
    }
}

/// What an fd refers to, read from the kernel's own `struct file` at syscall time.
#[repr(u8)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FdKind {
    /// Not looked at, or could not be read.
    Unknown = 0,
    /// A regular file, through the page cache.
    File = 1,
    /// A regular file opened with O_DIRECT: DMA straight to or from user memory.
    FileDirect = 2,
    Pipe = 3,
    Tcp = 4,
    Udp = 5,
    Unix = 6,
    /// Another socket (raw, netlink, ...).
    OtherSocket = 7,
    /// A character device other than /dev/null (a tty, /dev/zero, ...).
    CharDevice = 8,
    /// Anything else (eventfd, directory, block device, anon inode, ...).
    Other = 9,
    /// /dev/null: writes are discarded without a copy.
    DevNull = 10,
    /// Not an fd: the user buffer of a read or write (only in [`FlowKey`]s).
    UserMemory = 11,
}

impl FdKind {
    pub const COUNT: usize = 12;
    pub const ALL: [FdKind; Self::COUNT] = [
        FdKind::Unknown,
        FdKind::File,
        FdKind::FileDirect,
        FdKind::Pipe,
        FdKind::Tcp,
        FdKind::Udp,
        FdKind::Unix,
        FdKind::OtherSocket,
        FdKind::CharDevice,
        FdKind::Other,
        FdKind::DevNull,
        FdKind::UserMemory,
    ];

    pub const fn from_u8(v: u8) -> FdKind {
        // A match, not an index into `ALL`: Linux 6.1's verifier loses the bounds check of
        // a table index that the compiler spilled to the stack, and rejects the program.
        match v {
            1 => FdKind::File,
            2 => FdKind::FileDirect,
            3 => FdKind::Pipe,
            4 => FdKind::Tcp,
            5 => FdKind::Udp,
            6 => FdKind::Unix,
            7 => FdKind::OtherSocket,
            8 => FdKind::CharDevice,
            9 => FdKind::Other,
            10 => FdKind::DevNull,
            11 => FdKind::UserMemory,
            _ => FdKind::Unknown,
        }
    }

    pub const fn is_socket(self) -> bool {
        matches!(self, FdKind::Tcp | FdKind::Udp | FdKind::Unix | FdKind::OtherSocket)
    }

    pub const fn name(self) -> &'static str {
        match self {
            FdKind::Unknown => "unknown",
            FdKind::File => "file",
            FdKind::FileDirect => "file (O_DIRECT)",
            FdKind::Pipe => "pipe",
            FdKind::Tcp => "tcp",
            FdKind::Udp => "udp",
            FdKind::Unix => "unix",
            FdKind::OtherSocket => "socket",
            FdKind::CharDevice => "char device",
            FdKind::Other => "other",
            FdKind::DevNull => "/dev/null",
            FdKind::UserMemory => "memory",
        }
    }
}

/// The kind of memory at the other end of a CPU copy.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum End {
    PageCache = 0,
    Socket = 1,
    Pipe = 2,
    /// Anonymous or user memory (e.g. a device read such as /dev/zero, or vmsplice pages).
    Memory = 3,
    /// A device or something we could not classify.
    Other = 4,
}

impl End {
    pub const COUNT: usize = 5;
    pub const ALL: [End; Self::COUNT] = [End::PageCache, End::Socket, End::Pipe, End::Memory, End::Other];
    pub const fn name(self) -> &'static str {
        match self {
            End::PageCache => "page_cache",
            End::Socket => "socket",
            End::Pipe => "pipe",
            End::Memory => "memory",
            End::Other => "other",
        }
    }
}

/// How bytes moved without a CPU copy.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ZeroCopyKind {
    /// Page-cache pages referenced into a pipe (splice/sendfile read side).
    PageRefs = 0,
    /// Pages handed to a socket by reference (`MSG_SPLICE_PAGES`, formerly sendpage).
    SplicePages = 1,
    /// User pages pinned for transmission (`MSG_ZEROCOPY`).
    MsgZerocopy = 2,
    /// User pages referenced into a pipe (vmsplice).
    Vmsplice = 3,
    /// Extents shared or copied inside the file system (copy_file_range, reflink).
    FileRange = 4,
}

impl ZeroCopyKind {
    pub const COUNT: usize = 5;
    pub const ALL: [ZeroCopyKind; Self::COUNT] = [
        ZeroCopyKind::PageRefs,
        ZeroCopyKind::SplicePages,
        ZeroCopyKind::MsgZerocopy,
        ZeroCopyKind::Vmsplice,
        ZeroCopyKind::FileRange,
    ];
    pub const fn name(self) -> &'static str {
        match self {
            ZeroCopyKind::PageRefs => "page_refs",
            ZeroCopyKind::SplicePages => "splice_pages",
            ZeroCopyKind::MsgZerocopy => "msg_zerocopy",
            ZeroCopyKind::Vmsplice => "vmsplice",
            ZeroCopyKind::FileRange => "file_range",
        }
    }
}

/// Bytes and the number of operations that moved them.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub bytes: u64,
    pub calls: u64,
}

impl Tally {
    /// One more operation, which moved `bytes`.
    #[inline(always)]
    pub fn add(&mut self, bytes: u64) {
        self.bytes += bytes;
        self.calls += 1;
    }
}

/// How the source of a flow was found (see [`FlowKey::how`]).
pub mod how {
    /// The syscall's own fds (or the user buffer) are the ends.
    pub const PLAIN: u8 = 0;
    /// write/send of a buffer that a receive of the same process filled: the source is that
    /// read's fd kind (the read + write strategy).
    pub const AFTER_READ: u8 = 1;
    /// write/send from a buffer inside a file-backed mapping (mmap + write).
    pub const FROM_MAPPING: u8 = 2;
    /// send with MSG_ZEROCOPY.
    pub const MSG_ZEROCOPY: u8 = 3;
}

/// Key of the `FLOWS` map: one data syscall class between two kinds of end, per process
/// (or thread), and with `BY_FD` per pair of fds and the files behind them.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub key: u32,
    /// An [`OpClass`] as u8.
    pub class: u8,
    /// [`FdKind`]s as u8; [`FdKind::UserMemory`] for a user buffer.
    pub src: u8,
    pub dst: u8,
    /// One of the [`how`] constants.
    pub how: u8,
    /// `BY_FD` only (else -1): the fds, and the inode numbers of their files at the time.
    pub fd_in: i32,
    pub fd_out: i32,
    pub ino_in: u64,
    pub ino_out: u64,
}

/// Value of the `FLOWS` map: syscalls that returned data, and the bytes they returned.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowValue {
    pub calls: u64,
    pub bytes: u64,
}

/// Key of the `FD_NAMES` map.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FdKey {
    pub key: u32,
    pub fd: i32,
    pub ino: u64,
}

/// What an fd was when a flow through it was first seen: the file's name (its last path
/// component, from the dentry) or the socket's addresses.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FdIdentity {
    pub kind: u8,
    pub _pad: u8,
    /// AF_INET / AF_INET6 for IP sockets, else 0.
    pub family: u16,
    /// Local and peer ports, host order.
    pub local_port: u16,
    pub peer_port: u16,
    /// IPv4 in the first 4 bytes, or IPv6.
    pub local_addr: [u8; 16],
    pub peer_addr: [u8; 16],
    /// How many components of `path` were read, and whether the walk stopped before the
    /// root (the path is then shown with a leading `...`).
    pub depth: u8,
    pub truncated: u8,
    pub _pad2: [u8; 6],
    /// The file's path from the root of the system's mount tree, one NUL-terminated
    /// component each, last component first (walked up `d_parent` and across mounts).
    pub path: [[u8; PATH_COMPONENT_LEN]; PATH_DEPTH],
}

pub const PATH_COMPONENT_LEN: usize = 48;
pub const PATH_DEPTH: usize = 12;
pub const FLOWS_MAX_ENTRIES: u32 = 8_192;
pub const FD_NAMES_MAX_ENTRIES: u32 = 8_192;

/// Key of the `STATS` map.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatsKey {
    pub tgid: u32,
    /// An [`OpClass`] as u32.
    pub class: u32,
}

/// Everything counted for one (thread group, op class). Per-CPU; user space sums.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Page faults taken in user mode: each is a mode switch (and a return).
    pub user_faults: u64,
    /// Faults taken in kernel mode on user memory (e.g. write() reading an mmap'd page):
    /// real work, but no extra mode switch.
    pub kernel_faults: u64,
    pub ctx_voluntary: u64,
    pub ctx_involuntary: u64,
    /// CPU copies into user memory, by where the bytes came from ([`End`]).
    pub to_user: [Tally; End::COUNT],
    /// CPU copies out of user memory, by where the bytes went.
    pub from_user: [Tally; End::COUNT],
    /// CPU copies from kernel memory to kernel memory, by where the bytes went.
    pub kernel: [Tally; End::COUNT],
    /// Bytes moved by reference, by [`ZeroCopyKind`].
    pub zero_copy: [Tally; ZeroCopyKind::COUNT],
    /// O_DIRECT transfers: the device DMAs to or from user memory.
    pub direct_read: Tally,
    pub direct_write: Tally,
    /// Bytes a data syscall returned whose copy behaviour could not be derived (an fd kind
    /// or a combination the rules do not cover): shown, never guessed.
    pub unclassified: Tally,
    /// Block requests issued in this process's context (bytes = sectors x 512).
    pub disk_read: Tally,
    pub disk_write: Tally,
    /// Packets handed to a network device in this process's context.
    pub net_tx: Tally,
    pub net_tx_linear_bytes: u64,
    pub net_tx_paged_bytes: u64,
    pub net_tx_frags: u64,
    /// DMA-API mappings (`dma:*` map events) in this process's context.
    pub dma_maps: Tally,
    /// Bytes the data syscalls returned: delivered to a destination other than a pipe
    /// (`out`), or read into user memory (`in`).
    pub payload_out: u64,
    pub payload_in: u64,
    /// Bytes moved into pipes (an intermediate step of splice/vmsplice strategies).
    pub into_pipe: u64,
    /// Bytes write(2) took from a file-backed mapping (the mmap + write strategy).
    pub from_file_mapping: u64,
    /// Page-cache copies derived although a function probe watches that path: the file's
    /// read/write did not go through the probed function (tmpfs reads bypass
    /// `filemap_read`, for one). Part of `to_user`/`from_user` page_cache, labelled apart.
    pub to_user_pc_derived: u64,
    pub from_user_pc_derived: u64,
    pub page_refs_derived: u64,
    /// Bytes of the DMA-API mappings made in this process's context (`dma:*` events), by
    /// `enum dma_data_direction`: memory -> device (a NIC transmitting, a disk writing),
    /// device -> memory (a disk read, NIC receive buffers), both.
    pub dma_to_device: Tally,
    pub dma_from_device: Tally,
    pub dma_bidirectional: Tally,
    /// Scatter-gather segments of those mappings (1 per `dma_map_page`/`dma_map_phys`,
    /// the list's entries for `dma_map_sg`).
    pub dma_segments: u64,
    /// MSG_ZEROCOPY completions the process read from its sockets' error queues
    /// (recvmsg with MSG_ERRQUEUE): sends the kernel released the pages of, and of those the
    /// sends it had to copy after all (SO_EE_CODE_ZEROCOPY_COPIED).
    pub zc_completed: u64,
    pub zc_copied: u64,
    /// Of the `SplicePages` bytes, those spliced into network sockets (TCP, UDP), whose
    /// packets reach a device (UNIX sockets' never do): what copied-at-transmit compares
    /// with the NIC's paged bytes.
    pub spliced_to_network: u64,
    /// Bytes copied at transmit, credited per socket when the kernel forgets the socket
    /// ([`SocketTransmit::copied`]; `calls`: those sockets' packets). Sockets still open are
    /// added by user space when it reports.
    pub transmit_copied: Tally,
}

/// A socket's owner (`SOCK_OWNER`, keyed by `struct sock *`): the counter key of the traced
/// task that last used it in a data syscall or io_uring operation, the socket's inode number
/// (taken at its first packet: a freed `struct sock` is soon another socket's), and what went
/// through it since.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SockOwner {
    pub owner: u32,
    pub _pad: u32,
    pub ino: u64,
    pub transmit: SocketTransmit,
}

/// Per socket: pages it took by reference from a splice or sendfile, and the bytes its packets
/// carried to a device in page frags and in the linear head. Added to with atomic adds (the
/// map is shared by all CPUs).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SocketTransmit {
    pub spliced: u64,
    pub paged: u64,
    pub linear: u64,
    pub packets: u64,
}

impl SocketTransmit {
    /// Bytes of this socket's spliced pages that reached the device in linear packets: a
    /// device that cannot gather gets its packets linearized by software GSO, which copies
    /// the pages in. Decided per socket: paged packets of one socket (a gathering device, or
    /// plain writes TCP copied into page frags) say nothing of another's. Retransmissions and
    /// partial frags make small differences either way: 1% of the spliced bytes or less is
    /// no copy.
    pub const fn copied(&self) -> u64 {
        let short = self.spliced.saturating_sub(self.paged);
        let copied = if short < self.linear { short } else { self.linear };
        if copied * 100 <= self.spliced { 0 } else { copied }
    }
}

/// Why an event could not be counted. Index into the per-CPU `DROPS` array.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// `SYSCALL_COUNTS` was full: a new (tgid, syscall) pair could not be inserted.
    SyscallMapFull = 0,
    /// `STATS` was full.
    StatsMapFull = 1,
    /// `INFLIGHT` was full: a data syscall's arguments could not be kept until its exit.
    InflightMapFull = 2,
    /// `TRACED` was full: a child of a followed process could not be added.
    TracedMapFull = 3,
    /// `FLOWS` was full: a data syscall's bytes are in the totals but in no flow row.
    FlowsMapFull = 4,
    /// A recvmmsg/sendmmsg moved more messages than the kernel side sums lengths of.
    MessagesUncounted = 5,
    /// `--stacks`: a stack could not be stored (its bucket of the stack map held another
    /// stack, or the map was full); the syscall is counted under "no stack".
    StackLost = 6,
    /// `--stacks`: `COPY_STACKS` was full: a syscall's bytes are in no copy stack.
    CopyStacksMapFull = 7,
}

impl DropReason {
    pub const ALL: [DropReason; 8] = [
        DropReason::SyscallMapFull,
        DropReason::StatsMapFull,
        DropReason::InflightMapFull,
        DropReason::TracedMapFull,
        DropReason::FlowsMapFull,
        DropReason::MessagesUncounted,
        DropReason::StackLost,
        DropReason::CopyStacksMapFull,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            DropReason::SyscallMapFull => "syscall_counts map full",
            DropReason::StatsMapFull => "stats map full",
            DropReason::InflightMapFull => "in-flight syscall map full",
            DropReason::TracedMapFull => "traced process map full (a followed child was not traced)",
            DropReason::FlowsMapFull => "flows map full (bytes counted in totals, not in a flow row)",
            DropReason::MessagesUncounted => "recvmmsg/sendmmsg messages past the 64 summed (their bytes not counted)",
            DropReason::StackLost => "stack map: a stack not stored (bucket taken or map full; counted as no stack)",
            DropReason::CopyStacksMapFull => "copy stacks map full (bytes counted in totals, not in a stack)",
        }
    }
}

/// Number of slots in the `DROPS` array (one per [`DropReason`]).
pub const DROP_SLOTS: u32 = DropReason::ALL.len() as u32;

/// Map capacities; user space may change them before load.
pub const SYSCALL_COUNTS_MAX_ENTRIES: u32 = 16_384;
pub const STATS_MAX_ENTRIES: u32 = 8_192;
pub const INFLIGHT_MAX_ENTRIES: u32 = 16_384;
pub const TRACED_MAX_ENTRIES: u32 = 4_096;
/// Threads whose bytes a function probe counted during the current syscall or io_uring
/// operation, not yet matched against the operation's result (LRU).
pub const PENDING_MAX_ENTRIES: u32 = 16_384;

/// Sockets of traced processes, for charging transmitted packets to their owner (LRU).
pub const SOCK_OWNER_MAX_ENTRIES: u32 = 8_192;
/// Processes whose recent file mappings are remembered (LRU), and how many per process.
pub const FILE_MAPS_MAX_ENTRIES: u32 = 4_096;
pub const FILE_MAP_SLOTS: usize = 8;

/// The most recent file-backed mappings of a process: [start, end) ranges, filled round robin.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct FileMaps {
    pub next: u64,
    pub ranges: [[u64; 2]; FILE_MAP_SLOTS],
}

/// A process's command name as the kernel knows it (updated at exec).
pub type Comm = [u8; 16];

/// Zero-copy kinds that deliver bytes to their final destination (the others move them into
/// a pipe, an intermediate step): only these count towards a strategy's zero-copy total.
pub const fn delivers(kind: ZeroCopyKind) -> bool {
    matches!(kind, ZeroCopyKind::SplicePages | ZeroCopyKind::MsgZerocopy | ZeroCopyKind::FileRange)
}

/// Which copy paths a function probe observes on this run. Where a bit is set, the syscall
/// exit does not derive that path's copy from syscall semantics (no double count).
pub mod observed {
    /// page cache -> user, by `filemap_read`.
    pub const FILE_READ: u32 = 1 << 0;
    /// user -> page cache, by `generic_perform_write`.
    pub const FILE_WRITE: u32 = 1 << 1;
    /// user -> socket copies (write/send to TCP), by `tcp_sendmsg_locked`.
    pub const TCP_SEND: u32 = 1 << 2;
    /// pages spliced into TCP (sendfile/splice): `tcp_sendmsg_locked` with MSG_SPLICE_PAGES
    /// (6.5+) or `do_tcp_sendpages` (before), whichever this kernel uses.
    pub const TCP_SPLICE: u32 = 1 << 3;
    /// page-cache pages referenced into a pipe, by `filemap_splice_read` /
    /// `generic_file_splice_read`.
    pub const SPLICE_READ: u32 = 1 << 4;
    /// pipe -> file copies, by `iter_file_splice_write`.
    pub const SPLICE_WRITE_FILE: u32 = 1 << 5;
    /// pipe <-> user copies, by `pipe_read` / `pipe_write`.
    pub const PIPE: u32 = 1 << 6;
}

/// Names of the read-only globals that user space sets before load. Keeping them here makes a
/// typo a compile error on one side instead of a silent "global not found" at load time.
pub mod globals {
    /// `u32`: only count tasks of this thread group; 0 counts every process (or see
    /// `FILTER_MAP`).
    pub const FILTER_TGID: &str = "FILTER_TGID";
    /// `u32`: 1 = count the thread groups listed in the `TRACED` map instead.
    pub const FILTER_MAP: &str = "FILTER_MAP";
    /// `u64`: non-zero = count only tasks in this cgroup v2 (id) or below it.
    pub const FILTER_CGROUP: &str = "FILTER_CGROUP";
    /// `u32`: how many levels below the root that cgroup is.
    pub const FILTER_CGROUP_LEVEL: &str = "FILTER_CGROUP_LEVEL";
    /// `u32`: in system-wide mode, a thread group not to count (zc-trace's own).
    pub const EXCLUDE_TGID: &str = "EXCLUDE_TGID";
    /// `u32`: 1 = add the children that traced processes fork to `TRACED`.
    pub const FOLLOW_FORKS: &str = "FOLLOW_FORKS";
    /// `u32`: 1 = key every counter by thread id instead of thread group id.
    pub const BY_THREAD: &str = "BY_THREAD";
    /// `u32`: 1 = flows are keyed by fd (and the file behind it) too.
    pub const BY_FD: &str = "BY_FD";
    /// `u32`: 1 = `SYSCALL_COUNTS` counts by bucket ([`SyscallKey::bucket`](super::SyscallKey::bucket)), not by number.
    pub const SYSCALL_BUCKETS: &str = "SYSCALL_BUCKETS";
    /// [`IoUringOffsets`](super::IoUringOffsets).
    pub const IO_URING: &str = "IO_URING";
    /// [`SyscallTable`](super::SyscallTable): what each syscall number does with data.
    pub const SYSCALL_TABLE: &str = "SYSCALL_TABLE";
    /// [`KernelOffsets`](super::KernelOffsets).
    pub const OFFSETS: &str = "OFFSETS";
    /// `u32`: a set of [`observed`](super::observed) bits.
    pub const OBSERVED: &str = "OBSERVED";
    /// [`DmaLayout`](super::DmaLayout).
    pub const DMA_LAYOUT: &str = "DMA_LAYOUT";
    /// [`RelaySettings`](super::relay::RelaySettings).
    pub const RELAY_SETTINGS: &str = "RELAY_SETTINGS";
    /// [`TypedLoads`](super::TypedLoads).
    pub const TYPED_LOADS: &str = "TYPED_LOADS";
    /// `u32`: 1 = count copy stacks (`--stacks`).
    pub const STACKS: &str = "STACKS";
}

/// Names of the maps, shared for the same reason as [`globals`].
pub mod maps {
    pub const SYSCALL_COUNTS: &str = "SYSCALL_COUNTS";
    /// Per-CPU array indexed by syscall number: the counts of the one traced process when
    /// `FILTER_TGID` is set and counters are per process (no hash lookup per syscall).
    pub const SYSCALL_COUNTS_ONE: &str = "SYSCALL_COUNTS_ONE";
    /// [`FlowKey`](super::FlowKey) -> [`FlowValue`](super::FlowValue), per CPU.
    pub const FLOWS: &str = "FLOWS";
    /// [`FdKey`](super::FdKey) -> [`FdIdentity`](super::FdIdentity) (`BY_FD` only).
    pub const FD_NAMES: &str = "FD_NAMES";
    pub const STATS: &str = "STATS";
    /// Per-CPU array indexed by op class: the counters of the one traced process when
    /// `FILTER_TGID` is set and counters are per process.
    pub const STATS_ONE: &str = "STATS_ONE";
    /// Per-CPU array of [`FlowSlot`](super::flow::FlowSlot)s: the flows of the one traced
    /// process when `FILTER_TGID` is set, counters are per process and flows not by fd.
    pub const FLOWS_ONE: &str = "FLOWS_ONE";
    pub const DROPS: &str = "DROPS";
    pub const TRACED: &str = "TRACED";
    pub const GLOBAL_EVENTS: &str = "GLOBAL_EVENTS";
    pub const COMMS: &str = "COMMS";
    /// Counter key -> cgroup v2 id (`u64`), recorded with the command name.
    pub const CGROUPS: &str = "CGROUPS";
    /// `struct device *` -> [`DmaDevice`](super::DmaDevice), per CPU.
    pub const DMA_DEVICES: &str = "DMA_DEVICES";
    /// `struct sock *` -> [`SockOwner`](super::SockOwner), LRU.
    pub const SOCK_OWNER: &str = "SOCK_OWNER";
    /// Stack ids -> user stacks as build ids and file offsets (`--stacks`).
    pub const USER_STACKS: &str = "USER_STACKS";
    /// Stack ids -> kernel stacks as addresses (`--stacks`).
    pub const KERNEL_STACKS: &str = "KERNEL_STACKS";
    /// Stack ids -> user stacks as addresses: what `COPY_STACKS` keys hold (`--stacks`).
    pub const RAW_USER_STACKS: &str = "RAW_USER_STACKS";
    /// `RAW_USER_STACKS` id -> `USER_STACKS` id (`i32`s; -1: none).
    pub const BUILD_ID_STACKS: &str = "BUILD_ID_STACKS";
    /// [`StackKey`](super::stacks::StackKey) -> [`FlowValue`](super::FlowValue), per CPU.
    pub const COPY_STACKS: &str = "COPY_STACKS";
    /// Thread id -> the kernel stack of its last copy in the current syscall (`--stacks`).
    pub const THREAD_KSTACKS: &str = "THREAD_KSTACKS";
}

/// Events counted for the whole system, not per process: index into `GLOBAL_EVENTS`.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum GlobalEvent {
    /// Block requests issued outside any traced process (writeback, readahead workers).
    DiskReadBytesUnattributed = 0,
    DiskWriteBytesUnattributed = 1,
    /// `dma:*` map events anywhere on the system during the trace.
    DmaMapsSystem = 2,
    /// `net_dev_start_xmit` anywhere on the system.
    NetTxPacketsSystem = 3,
    /// Traced processes that exited (their group leader did): `serve` folds, and so frees
    /// their kernel entries, as soon as many have, not only every few seconds.
    ProcessesExited = 4,
}

pub const GLOBAL_EVENT_SLOTS: u32 = 5;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` integers without padding.
    unsafe impl aya::Pod for super::SyscallKey {}
    unsafe impl aya::Pod for super::StatsKey {}
    unsafe impl aya::Pod for super::Stats {}
    unsafe impl aya::Pod for super::SockOwner {}
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::TypedLoads {}
    unsafe impl aya::Pod for super::flow::FlowSlot {}
    unsafe impl aya::Pod for super::SyscallTable {}
    unsafe impl aya::Pod for super::IoUringOffsets {}
    unsafe impl aya::Pod for super::DmaLayout {}
    unsafe impl aya::Pod for super::DmaDevice {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowValue {}
    unsafe impl aya::Pod for super::FdKey {}
    unsafe impl aya::Pod for super::FdIdentity {}
    unsafe impl aya::Pod for super::relay::RelaySettings {}
    unsafe impl aya::Pod for super::stacks::StackKey {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_inverts_the_discriminants() {
        for kind in FdKind::ALL {
            assert_eq!(FdKind::from_u8(kind as u8), kind);
        }
        assert_eq!(FdKind::from_u8(200), FdKind::Unknown);
        for class in OpClass::ALL {
            assert_eq!(OpClass::from_u32(class as u32), class);
        }
        assert_eq!(OpClass::from_u32(99), OpClass::Other);
    }

    #[test]
    fn a_socket_copied_at_transmit_what_it_took_by_reference_and_sent_linear() {
        let t = |spliced, paged, linear| SocketTransmit { spliced, paged, linear, packets: 1 }.copied();
        // No device that gathers: every spliced byte went out linear.
        assert_eq!(t(8 << 20, 0, (8 << 20) + 4096), 8 << 20);
        // A gathering device: the pages went out as frags.
        assert_eq!(t(8 << 20, 8 << 20, 400_000), 0);
        // Headers written beside sendfile'd bodies are linear too: no copy while paged covers.
        assert_eq!(t(1 << 20, (1 << 20) + 50_000, 300_000), 0);
        // Within 1% (retransmissions, partial frags): no copy.
        assert_eq!(t(1_000_000, 995_000, 10_000), 0);
        // Bounded by the linear bytes seen (the rest not sent yet).
        assert_eq!(t(1 << 20, 0, 65_536), 65_536);
        // Nothing spliced: no copy, however linear.
        assert_eq!(t(0, 0, 1 << 20), 0);
    }
}
