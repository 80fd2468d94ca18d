//! The data syscall each thread is in, from `sys_enter` to `sys_exit`: its class and the
//! kinds of its fds, read at entry. Events that happen meanwhile on that thread (copies,
//! faults, block I/O, context switches) are charged to that syscall's class.
//!
//! A plain (not per-CPU) hash keyed by thread id: a thread that blocks may exit the syscall
//! on another CPU than it entered on.

use aya_ebpf::{macros::map, maps::HashMap};
use zc_trace_common::{FdKind, INFLIGHT_MAX_ENTRIES, OpClass};

#[repr(C)]
#[derive(Copy, Clone)]
pub struct InFlight {
    pub class: u32,
    pub kind_in: u8,
    pub kind_out: u8,
    /// The destination socket's route can gather (NETIF_F_SG), read at entry.
    pub gather: u8,
    /// write(2) from a buffer inside a file-backed mapping.
    pub from_mapping: u8,
    pub flags: u64,
    /// copy_file_range: the destination's file-system magic (reflink or copy);
    /// mmap: the length mapped.
    pub extra: u64,
}

#[map]
pub static INFLIGHT: HashMap<u32, InFlight> = HashMap::with_max_entries(INFLIGHT_MAX_ENTRIES, 0);

/// The class of the data syscall thread `tid` is in, or `None` outside one.
#[inline(always)]
pub fn class_of(tid: u32) -> OpClass {
    match unsafe { INFLIGHT.get(&tid) } {
        Some(f) => OpClass::from_u32(f.class),
        None => OpClass::None,
    }
}

impl InFlight {
    pub fn kind_in(&self) -> FdKind {
        FdKind::from_u8(self.kind_in)
    }
    pub fn kind_out(&self) -> FdKind {
        FdKind::from_u8(self.kind_out)
    }
}
