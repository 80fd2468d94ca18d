//! Copy stacks (`--stacks`): where in a program (and in the kernel) its data syscalls' bytes
//! were moved from, weighted by bytes. Built by `attribute::stacks` from the kernel's
//! counters and the symbolized frames.
use serde::Serialize;

/// One user frame as the kernel stored it (a build-id stack map).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UserFrame {
    /// A file with this build id, at this offset in it.
    BuildId { build_id: [u8; 20], offset: u64 },
    /// An address the kernel could not map to a build id (anonymous memory, a file without
    /// one, or its pages not in memory at the time).
    Ip(u64),
}

/// One stack of one process and flow, with what its syscalls moved.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CopyStack {
    pub pid: u32,
    pub comm: String,
    /// What the bytes were, by the syscall's semantics: to_user, from_user, zero_copy,
    /// kernel_copy, no_copy (`zc_trace_common::stacks::CopyKind`).
    pub kind: &'static str,
    /// The flow, as in the row's flows: `strategy source -> destination`.
    pub flow: String,
    pub bytes: u64,
    pub calls: u64,
    /// User frames, outermost first (empty: none captured).
    pub user: Vec<String>,
    /// Kernel frames of the copy, outermost first (empty: none captured, see
    /// `StacksReport::kernel_stacks`).
    pub kernel: Vec<String>,
    /// The user stack does not reach a thread's entry point (`_start`, `start_thread`,
    /// `clone3`...): cut short, most often at a libc wrapper of a binary built without frame
    /// pointers.
    pub cut: bool,
}

/// The copy stacks of a trace, and how complete they are.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StacksReport {
    /// Most bytes first.
    pub stacks: Vec<CopyStack>,
    /// How the stacks were captured and what their kinds rest on.
    pub evidence: &'static str,
    /// Where the kernel stacks come from on this run, or why there are none.
    pub kernel_stacks: String,
    /// Stacks (and their bytes) cut short before a thread's entry point.
    pub cut_stacks: u64,
    pub cut_bytes: u64,
    /// Bytes of syscalls whose user stack could not be captured or stored.
    pub no_user_stack_bytes: u64,
    /// Frames whose file could not be found by its build id (the file is gone or was never
    /// seen mapped): shown as `[build id ...]+offset`.
    pub unresolved_frames: u64,
}
