//! Flows: bytes that data syscalls returned, by (process, syscall class, source kind,
//! destination kind), so a process that reads files and writes sockets shows that as one
//! read + write flow file -> tcp beside, say, its log writes. With `BY_FD` the key also
//! holds the fds and the inode numbers of their files, and `FD_NAMES` remembers what each
//! of those files was called (or, for sockets, its addresses) while it was open.

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_F_NO_PREALLOC},
    macros::{map, raw_tracepoint},
    maps::{HashMap, PerCpuArray, PerCpuHashMap},
    programs::RawTracePointContext,
};
use zc_trace_common::{
    DropReason, FD_NAMES_MAX_ENTRIES, FLOWS_MAX_ENTRIES, FdIdentity, FdKey, FdKind, FlowKey, FlowValue, OpClass,
    flow::{FLOW_SLOTS, FlowEnds, FlowSlot, flow_ends, flow_slot, flow_tag},
    how,
    relay::{Matched, RELAY_SLOTS, Source},
};

use super::{drops, inflight::InFlight};
use crate::{kmem, maps::lookup_or_try_init};

#[map]
static FLOWS: PerCpuHashMap<FlowKey, FlowValue> = PerCpuHashMap::with_max_entries(FLOWS_MAX_ENTRIES, BPF_F_NO_PREALLOC);

/// Not preallocated: an identity is ~600 bytes and most runs name a handful of fds.
#[map]
static FD_NAMES: HashMap<FdKey, FdIdentity> = HashMap::with_max_entries(FD_NAMES_MAX_ENTRIES, BPF_F_NO_PREALLOC);

/// Scratch space: an `FdIdentity` is built here rather than on the 512-byte stack.
#[map]
static SCRATCH_IDENTITY: PerCpuArray<FdIdentity> = PerCpuArray::with_max_entries(1, 0);

#[unsafe(no_mangle)]
static BY_FD: u32 = 0;

#[inline(always)]
pub fn by_fd() -> bool {
    unsafe { core::ptr::read_volatile(&BY_FD) != 0 }
}

/// Adds a data syscall that moved `n` bytes to its flow.
#[inline(always)]
pub fn add(key: u32, f: &InFlight, n: u64) {
    add_from(key, f, FdKind::Unknown as u8, f.fd_in, f.ino_in, n, 1);
}

/// Adds a write or send that moved `n` bytes: what of them lies in ranges that receives
/// filled (`m`, by slot) to relay flows from those ranges' sources, the rest to the send's
/// own flow. The call counts once: in the relay flow of the first slot it matched, or in
/// its own flow when nothing matched.
#[inline(always)]
pub fn add_send(key: u32, f: &InFlight, n: u64, m: &Matched) {
    split(n, m, |source, bytes, calls| match source {
        Some(s) => add_from(key, f, s.kind, s.fd, s.ino, bytes, calls),
        None => add_from(key, f, FdKind::Unknown as u8, f.fd_in, f.ino_in, bytes, calls),
    });
}

/// `n` bytes sent, split into what `m` matched (by the source of each range) and the rest
/// (`None`): `f(source, bytes, calls)`, with the one call given to the first part.
#[inline(always)]
fn split(n: u64, m: &Matched, mut f: impl FnMut(Option<&Source>, u64, u64)) {
    let mut rest = n;
    let mut calls = 1;
    if m.total != 0 {
        for i in 0..RELAY_SLOTS {
            let (bytes, source) = (m.bytes[i], &m.sources[i]);
            if bytes == 0 || source.kind == FdKind::Unknown as u8 || rest == 0 {
                continue;
            }
            let bytes = if bytes < rest { bytes } else { rest };
            f(Some(source), bytes, calls);
            calls = 0;
            rest -= bytes;
        }
    }
    if rest != 0 {
        f(None, rest, calls);
    }
}

/// An io_uring write or send that completed with `n` bytes to a `dst`: paired like a
/// syscall's (`add_send`), without fds.
#[inline(always)]
pub fn add_io_uring_send(key: u32, dst: FdKind, n: u64, m: &Matched) {
    split(n, m, |source, bytes, calls| {
        let (src, how) = match source {
            Some(s) => (s.kind, how::AFTER_READ),
            None => (FdKind::UserMemory as u8, how::PLAIN),
        };
        io_uring_bump(key, src, dst as u8, how, bytes, calls);
    });
}

/// `n` bytes of the syscall `f` whose user buffer a receive from a `paired` fd (as u8;
/// `FdKind::Unknown`: none) filled, with that fd and inode as the source.
#[inline(always)]
fn add_from(key: u32, f: &InFlight, paired: u8, fd_in: i32, ino_in: u64, n: u64, calls: u64) {
    let class = OpClass::from_u32(f.class);
    let from_mapping = paired == FdKind::Unknown as u8 && f.from_mapping != 0;
    let Some(FlowEnds { src, dst, how }) = flow_ends(class, f.kind_in, f.kind_out, paired, from_mapping, f.flags)
    else {
        return;
    };
    if super::stacks::enabled() {
        super::stacks::hand_over(flow_tag(class as u8, src, dst, how), f.gather, n, calls);
    }
    if crate::filter::single_tgid() && !by_fd() && bump_one(flow_tag(class as u8, src, dst, how), n, calls) {
        return;
    }
    let flow = FlowKey { key, class: class as u8, src, dst, how, fd_in, fd_out: f.fd_out, ino_in, ino_out: f.ino_out };
    bump(&flow, n, calls);
}

/// The one traced process's flows (see `FlowSlot`).
#[map]
static FLOWS_ONE: PerCpuArray<FlowSlot> = PerCpuArray::with_max_entries(FLOW_SLOTS, 0);

/// Counts a flow of the one traced process in its slot on this CPU, taking the slot if it is
/// free; false when another flow has it (then the flow goes to `FLOWS`).
#[inline(always)]
fn bump_one(tag: u32, n: u64, calls: u64) -> bool {
    let Some(slot) = FLOWS_ONE.get_ptr_mut(flow_slot(tag)) else { return false };
    // SAFETY: this CPU's slot, for these few statements. Only syscall programs (process
    // context, which do not nest on a CPU) and io_uring completions of that task write it.
    let slot = unsafe { &mut *slot };
    if slot.tag != tag {
        if slot.tag != 0 {
            return false;
        }
        slot.tag = tag;
    }
    slot.calls += calls;
    slot.bytes += n;
    true
}

/// An io_uring operation that completed with `n` bytes: `src` -> `dst`, no fds.
#[inline(always)]
pub fn add_io_uring(key: u32, src: FdKind, dst: FdKind, n: u64) {
    io_uring_bump(key, src as u8, dst as u8, how::PLAIN, n, 1);
}

/// Counts an io_uring flow (no fds), and hands it to the copy-stack program with `--stacks`.
#[inline(always)]
fn io_uring_bump(key: u32, src: u8, dst: u8, how: u8, n: u64, calls: u64) {
    if super::stacks::enabled() {
        let tag = flow_tag(OpClass::IoUring as u8, src, dst, how);
        super::stacks::hand_over_at(super::stacks::IO_URING, tag, 0, n, calls);
    }
    let flow =
        FlowKey { key, class: OpClass::IoUring as u8, src, dst, how, fd_in: -1, fd_out: -1, ino_in: 0, ino_out: 0 };
    bump(&flow, n, calls);
}

/// What a flow is created with. A named static, read by the insert from `.rodata` (no stores
/// on the hot path); a promoted `&FlowValue { .. }` would do the same but lands in a
/// `.rodata.cst16` section of its own, one more global-data map at load.
static NO_FLOW: FlowValue = FlowValue { calls: 0, bytes: 0 };

#[inline(always)]
fn bump(flow: &FlowKey, n: u64, calls: u64) {
    // A new flow is created empty, then counted like an existing one.
    let Some(v) = lookup_or_try_init(&FLOWS, flow, || Some(&NO_FLOW)) else {
        drops::record(DropReason::FlowsMapFull);
        return;
    };
    // SAFETY: this CPU's copy of the flow (per-CPU map), used for these two adds only.
    let v = unsafe { &mut *v };
    v.calls += calls;
    v.bytes += n;
}

/// A file to name, handed from `zc_sys_enter` to `zc_sys_enter_names` (which runs right
/// after it on the same CPU, for the same syscall): walking a path is a loop the verifier
/// explores step by step, too much to add to the syscall program itself.
#[repr(C)]
#[derive(Copy, Clone)]
pub struct PendingName {
    pub valid: u32,
    pub kind: u32,
    pub key: FdKey,
    pub file: u64,
}

/// Two slots: a syscall has at most a source and a destination fd.
#[map]
static PENDING_NAMES: PerCpuArray<PendingName> = PerCpuArray::with_max_entries(2, 0);

/// `BY_FD`: asks for the name of the open file `file` behind `fd`, the first time a flow
/// uses it (slot 0: destination fd, 1: source fd).
#[inline(always)]
pub fn remember_name(slot: u32, key: u32, fd: i32, ino: u64, file: u64, kind: FdKind) {
    let fd_key = FdKey { key, fd, ino };
    if unsafe { FD_NAMES.get(&fd_key) }.is_some() {
        return;
    }
    if let Some(p) = PENDING_NAMES.get_ptr_mut(slot) {
        unsafe { *p = PendingName { valid: 1, kind: kind as u32, key: fd_key, file } };
    }
}

/// Attached to `sys_enter` after `zc_sys_enter`, with `--by fd` only: names the files the
/// syscall program asked for.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn zc_sys_enter_names(_ctx: RawTracePointContext) -> i32 {
    for slot in 0..2u32 {
        let Some(p) = PENDING_NAMES.get_ptr_mut(slot) else { continue };
        // SAFETY (both references): per-CPU slots, distinct from each other, that only this
        // program and `zc_sys_enter` (which runs before it, never inside it) touch; each
        // reference ends with its loop iteration.
        let pending = unsafe { &mut *p };
        if pending.valid == 0 {
            continue;
        }
        pending.valid = 0;
        let Some(id) = SCRATCH_IDENTITY.get_ptr_mut(0) else { return 0 };
        let id = unsafe { &mut *id };
        // Field by field: the whole struct is larger than the BPF stack, and a slot is
        // reused. Path components past `depth` are never read, so they need no clearing.
        id.family = 0;
        id.local_port = 0;
        id.peer_port = 0;
        id.local_addr = [0; 16];
        id.peer_addr = [0; 16];
        id.depth = 0;
        id.truncated = 0;
        kmem::describe_file(pending.file, FdKind::from_u8(pending.kind as u8), id);
        let _ = FD_NAMES.insert(&pending.key, id, BPF_ANY as u64);
    }
    0
}
