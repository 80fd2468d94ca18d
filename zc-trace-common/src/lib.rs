//! Types shared between the kernel programs (`zc-trace-ebpf`) and user space (`zc-trace`).
//!
//! Everything here is `#[repr(C)]` plain data: the kernel writes it into maps and user space
//! reads the same bytes back. Field order is chosen so that no padding is left uninitialised
//! (the verifier rejects map keys with holes read from the stack).
#![no_std]

/// Key of the `SYSCALL_COUNTS` map: one counter per (thread group, syscall number).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SyscallKey {
    /// Thread-group id, i.e. the PID that user space sees.
    pub tgid: u32,
    /// Architecture syscall number (x86-64 numbering on x86-64).
    pub nr: u32,
}

/// Why an event could not be counted. Index into the per-CPU `DROPS` array.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// `SYSCALL_COUNTS` was full: a new (tgid, syscall) pair could not be inserted.
    SyscallMapFull = 0,
}

impl DropReason {
    pub const ALL: [DropReason; 1] = [DropReason::SyscallMapFull];

    pub const fn name(self) -> &'static str {
        match self {
            DropReason::SyscallMapFull => "syscall_counts map full",
        }
    }
}

/// Number of slots in the `DROPS` array (one per [`DropReason`]).
pub const DROP_SLOTS: u32 = DropReason::ALL.len() as u32;

/// Capacity of `SYSCALL_COUNTS`; user space may raise it before load.
pub const SYSCALL_COUNTS_MAX_ENTRIES: u32 = 16_384;

/// Names of the read-only globals that user space sets before load. Keeping them here makes a
/// typo a compile error on one side instead of a silent "global not found" at load time.
pub mod globals {
    /// `u32`: only count tasks of this thread group; 0 counts every process.
    pub const FILTER_TGID: &str = "FILTER_TGID";
}

/// Names of the maps, shared for the same reason as [`globals`].
pub mod maps {
    pub const SYSCALL_COUNTS: &str = "SYSCALL_COUNTS";
    pub const DROPS: &str = "DROPS";
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` integers without padding.
    unsafe impl aya::Pod for super::SyscallKey {}
}
