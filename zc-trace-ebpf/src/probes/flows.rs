//! Flows: bytes that data syscalls returned, by (process, syscall class, source kind,
//! destination kind), so a process that reads files and writes sockets shows that as one
//! read + write flow file -> tcp beside, say, its log writes. With `BY_FD` the key also
//! holds the fds and the inode numbers of their files, and `FD_NAMES` remembers what each
//! of those files was called (or, for sockets, its addresses) while it was open.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray, PerCpuHashMap},
};
use zc_trace_common::{
    DropReason, FD_NAMES_MAX_ENTRIES, FLOWS_MAX_ENTRIES, FdIdentity, FdKey, FdKind, FlowKey, FlowValue, OpClass, how,
};

use super::{drops, inflight::InFlight};
use crate::{kmem, stats::BPF_F_NO_PREALLOC};

#[map]
static FLOWS: PerCpuHashMap<FlowKey, FlowValue> = PerCpuHashMap::with_max_entries(FLOWS_MAX_ENTRIES, BPF_F_NO_PREALLOC);

#[map]
static FD_NAMES: HashMap<FdKey, FdIdentity> = HashMap::with_max_entries(FD_NAMES_MAX_ENTRIES, 0);

/// Scratch space: an `FdIdentity` is built here rather than on the 512-byte stack.
#[map]
static SCRATCH_IDENTITY: PerCpuArray<FdIdentity> = PerCpuArray::with_max_entries(1, 0);

#[unsafe(no_mangle)]
static BY_FD: u32 = 0;

#[inline(always)]
pub fn by_fd() -> bool {
    unsafe { core::ptr::read_volatile(&BY_FD) != 0 }
}

const MSG_ZEROCOPY: u64 = 0x400_0000;
const MEMORY: u8 = FdKind::UserMemory as u8;

/// Adds a data syscall that returned `n` bytes to its flow.
#[inline(always)]
pub fn add(key: u32, f: &InFlight, n: u64) {
    let class = OpClass::from_u32(f.class);
    let (src, dst, how) = match class {
        OpClass::Read | OpClass::Recv => (f.kind_in, MEMORY, how::PLAIN),
        OpClass::Write | OpClass::Send => {
            let src = if f.after_read != FdKind::Unknown as u8 { f.after_read } else { MEMORY };
            let how = if class == OpClass::Send && f.flags & MSG_ZEROCOPY != 0 {
                how::MSG_ZEROCOPY
            } else if f.after_read != FdKind::Unknown as u8 {
                how::AFTER_READ
            } else if f.from_mapping != 0 {
                how::FROM_MAPPING
            } else {
                how::PLAIN
            };
            let src = if how == how::FROM_MAPPING { FdKind::File as u8 } else { src };
            (src, f.kind_out, how)
        }
        // vmsplice(pipe, iov): user pages into the pipe (argument 0 is the pipe).
        OpClass::Vmsplice => (MEMORY, f.kind_in, how::PLAIN),
        OpClass::Sendfile | OpClass::Splice | OpClass::Tee | OpClass::CopyFileRange => (f.kind_in, f.kind_out, how::PLAIN),
        _ => return,
    };
    let flow = FlowKey {
        key,
        class: class as u8,
        src,
        dst,
        how,
        fd_in: f.fd_in,
        fd_out: f.fd_out,
        ino_in: f.ino_in,
        ino_out: f.ino_out,
    };
    if let Some(v) = FLOWS.get_ptr_mut(&flow) {
        let v = unsafe { &mut *v };
        v.calls += 1;
        v.bytes += n;
        return;
    }
    let first = FlowValue { calls: 1, bytes: n };
    // BPF_NOEXIST: another CPU may have created the key meanwhile; then add to it.
    if FLOWS.insert(&flow, &first, 1).is_ok() {
        return;
    }
    match FLOWS.get_ptr_mut(&flow) {
        Some(v) => {
            let v = unsafe { &mut *v };
            v.calls += 1;
            v.bytes += n;
        }
        None => drops::record(DropReason::FlowsMapFull),
    }
}

/// `BY_FD`: remembers what the open file `file` behind `fd` is, the first time a flow uses it.
#[inline(always)]
pub fn remember_name(key: u32, fd: i32, ino: u64, file: u64, kind: FdKind) {
    let fd_key = FdKey { key, fd, ino };
    if unsafe { FD_NAMES.get(&fd_key) }.is_some() {
        return;
    }
    let Some(id) = SCRATCH_IDENTITY.get_ptr_mut(0) else { return };
    let id = unsafe { &mut *id };
    *id = FdIdentity {
        kind: 0,
        _pad: 0,
        family: 0,
        local_port: 0,
        peer_port: 0,
        local_addr: [0; 16],
        peer_addr: [0; 16],
        name: [0; zc_trace_common::FD_NAME_LEN],
    };
    kmem::describe_file(file, kind, id);
    let _ = FD_NAMES.insert(&fd_key, id, 0);
}
