//! Copy stacks (`--stacks`): where in the program and in the kernel a data syscall's bytes
//! were moved from. `zc_sys_exit` hands the syscall's flow and bytes over (`hand_over`), and
//! `zc_sys_exit_stacks`, attached after it, stores the user stack once in `USER_STACKS` (as
//! build ids and file offsets, resolved by the kernel while the process's mappings exist, so
//! that a process that has exited by the end of the trace is still symbolized) and adds the
//! bytes and the call to `COPY_STACKS` under (process, user stack, kernel stack, flow). A
//! program of its own: sys_exit's verification is already its largest.
//!
//! The kernel stack at `sys_exit` is only the syscall-exit path; the informative one is where
//! the copy happened. The probes inside the copy path (`skb:skb_copy_datagram_iovec` on every
//! kernel, the function probes where they attach) store theirs per thread in
//! `THREAD_KSTACKS`, and the syscall's exit takes it.
//!
//! Without `--stacks` the `STACKS` constant is 0, the verifier drops every branch that reads
//! it, and the maps are created with one entry.

use core::cell::UnsafeCell;

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_ANY, BPF_F_NO_PREALLOC, BPF_F_USER_STACK, BPF_NOEXIST, bpf_map_def, bpf_map_type::BPF_MAP_TYPE_STACK_TRACE,
    },
    helpers::{bpf_get_current_pid_tgid, bpf_get_stackid, bpf_probe_read_user},
    macros::{map, raw_tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, StackTrace},
    programs::RawTracePointContext,
};
use zc_trace_common::{
    DropReason, FlowValue,
    stacks::{BUILD_ID_FRAME_SIZE, NO_STACK, StackKey, THREAD_KSTACKS_MAX_ENTRIES, USER_STACK_DEPTH},
};

use super::drops;
use crate::{kmem, maps::lookup_or_try_init};

#[unsafe(no_mangle)]
static STACKS: u32 = 0;

/// True with `--stacks`.
#[inline(always)]
pub fn enabled() -> bool {
    unsafe { core::ptr::read_volatile(&STACKS) != 0 }
}

/// `BPF_F_STACK_BUILD_ID`: entries are `struct bpf_stack_build_id` frames (uapi bpf.h).
const BPF_F_STACK_BUILD_ID: u32 = 1 << 5;
/// `-EFAULT`: the stack had no frames to store (a thread without user frames).
const EFAULT: i64 = -14;

/// A stack-trace map of build-id frames. aya-ebpf's `StackTrace` has a fixed value of 127
/// instruction pointers, which a build-id map refuses (its value must be whole 32-byte
/// frames), so the definition is written here; it is the same `bpf_map_def` in the `maps`
/// section that aya's own map types are.
#[repr(transparent)]
pub struct BuildIdStacks(UnsafeCell<bpf_map_def>);

// SAFETY: the definition is read by the loader and only ever used by address afterwards.
unsafe impl Sync for BuildIdStacks {}

impl BuildIdStacks {
    const fn new(max_entries: u32) -> Self {
        Self(UnsafeCell::new(bpf_map_def {
            type_: BPF_MAP_TYPE_STACK_TRACE,
            key_size: 4,
            value_size: (USER_STACK_DEPTH * BUILD_ID_FRAME_SIZE) as u32,
            max_entries,
            map_flags: BPF_F_STACK_BUILD_ID,
            id: 0,
            pinning: 0,
        }))
    }
}

#[unsafe(link_section = "maps")]
#[unsafe(export_name = "USER_STACKS")]
static USER_STACKS: BuildIdStacks = BuildIdStacks::new(1);

#[map]
static KERNEL_STACKS: StackTrace = StackTrace::with_max_entries(1, 0);

/// User stacks as addresses: what each syscall records (see `user_stack`).
#[map]
static RAW_USER_STACKS: StackTrace = StackTrace::with_max_entries(1, 0);

/// `RAW_USER_STACKS` id -> `USER_STACKS` id (its frames as build ids and offsets, taken the
/// first time the stack was seen), or `NO_STACK`.
#[map]
static BUILD_ID_STACKS: HashMap<i32, i32> = HashMap::with_max_entries(1, 0);

#[map]
static COPY_STACKS: PerCpuHashMap<StackKey, FlowValue> = PerCpuHashMap::with_max_entries(1, BPF_F_NO_PREALLOC);

/// Not per CPU: a thread may copy on one CPU and leave the syscall on another.
#[map]
static THREAD_KSTACKS: LruHashMap<u32, i32> = LruHashMap::with_max_entries(THREAD_KSTACKS_MAX_ENTRIES, 0);

/// A stack id, or `NO_STACK` (counted as a drop when the stack existed but was not stored).
#[inline(always)]
fn stack_id(ret: i64) -> i32 {
    if ret >= 0 {
        return ret as i32;
    }
    if ret != EFAULT {
        drops::record(DropReason::StackLost);
    }
    NO_STACK
}

/// Called by a probe inside the copy path of thread `tid`: its kernel stack is the one the
/// syscall's bytes are charged to.
#[inline(always)]
pub fn note_kernel<C: EbpfContext>(ctx: &C, tid: u32) {
    if !enabled() {
        return;
    }
    let ret = unsafe { bpf_get_stackid(ctx.as_ptr(), core::ptr::addr_of!(KERNEL_STACKS) as *mut _, 0) };
    let _ = THREAD_KSTACKS.insert(&tid, &stack_id(ret), BPF_ANY as u64);
}

/// What `zc_sys_exit` leaves for `zc_sys_exit_stacks`, which runs right after it on the same
/// CPU for the same syscall exit: the flow the syscall's call counts in and its bytes.
#[repr(C)]
#[derive(Copy, Clone)]
pub struct HandOver {
    pub tag: u32,
    pub gather: u32,
    pub bytes: u64,
}

/// Slot 0 for syscall exits ([`SYSCALL`]), 1 for io_uring completions ([`IO_URING`]): each
/// program reads its own, so one whose stack program could not attach leaves nothing for
/// the other.
#[map]
static HAND_OVER: PerCpuArray<HandOver> = PerCpuArray::with_max_entries(2, 0);

pub const SYSCALL: u32 = 0;
pub const IO_URING: u32 = 1;

/// Called where `zc_sys_exit` counts `n` bytes (and `calls`) of flow `tag`. Kept in memory,
/// not carried to the end of the program: a value that differs per path in a register keeps
/// the verifier from merging paths (sys_exit explored past a million instructions that way).
#[inline(always)]
pub fn hand_over(tag: u32, gather: u8, n: u64, calls: u64) {
    hand_over_at(SYSCALL, tag, gather, n, calls);
}

/// `hand_over` into slot `at`.
#[inline(always)]
pub fn hand_over_at(at: u32, tag: u32, gather: u8, n: u64, calls: u64) {
    let Some(h) = HAND_OVER.get_ptr_mut(at) else { return };
    // SAFETY: this CPU's slot; written by sys_exit, read and cleared by the program after it,
    // both in the task's context, which does not nest.
    let h = unsafe { &mut *h };
    if calls != 0 {
        h.tag = tag;
        h.gather = gather as u32;
    }
    h.bytes += n;
}

/// Attached to `sys_exit` after `zc_sys_exit`, with `--stacks` only: counts the syscall's
/// bytes under its user and kernel stacks.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn zc_sys_exit_stacks(ctx: RawTracePointContext) -> i32 {
    count(&ctx, SYSCALL, true)
}

/// Attached to `io_uring_complete` after `zc_io_uring_complete`, with `--stacks` only: the
/// completion's bytes under the stacks of the task it completes in (the `io_uring_enter`
/// call that reaps it; none in an io-wq worker, which has no user stack).
#[raw_tracepoint(tracepoint = "io_uring_complete")]
pub fn zc_io_uring_stacks(ctx: RawTracePointContext) -> i32 {
    count(&ctx, IO_URING, false)
}

/// Counts what slot `at` was handed under the current stacks. `syscall`: the context's
/// first argument is the syscall's saved user registers (for the leaf fix-up).
#[inline(always)]
fn count(ctx: &RawTracePointContext, at: u32, syscall: bool) -> i32 {
    let Some(h) = HAND_OVER.get_ptr_mut(at) else { return 0 };
    // SAFETY: see `hand_over`.
    let h = unsafe { &mut *h };
    let (tag, gather, n) = (h.tag, h.gather, h.bytes);
    if n == 0 || tag == 0 {
        return 0;
    }
    h.tag = 0;
    h.bytes = 0;
    let id = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((id >> 32) as u32, id as u32);
    let user = user_stack(ctx);
    let kernel = match unsafe { THREAD_KSTACKS.get(&tid) } {
        Some(id) => {
            let id = *id;
            let _ = THREAD_KSTACKS.remove(&tid);
            id
        }
        None => NO_STACK,
    };
    let (leaf_ret, frame_ret) = if syscall { leaf_words(ctx.arg(0)) } else { (0, 0) };
    let key = StackKey { tgid, user, kernel, tag, gather, _pad: 0, leaf_ret, frame_ret };
    let Some(v) = lookup_or_try_init(&COPY_STACKS, &key, || Some(&NO_BYTES)) else {
        drops::record(DropReason::CopyStacksMapFull);
        return 0;
    };
    // SAFETY: this CPU's copy of the entry (per-CPU map), for these two adds.
    let v = unsafe { &mut *v };
    v.calls += 1;
    v.bytes += n;
    0
}

/// The current user stack's id in `RAW_USER_STACKS`, its build-id form stored the first time
/// it is seen. Resolving every frame to its file's build id on each syscall cost ~1.7 us here
/// (and page faults, charged to the traced process, where the file's first page was not
/// mapped); a stack of addresses is a walk and a hash, and a given stack's addresses map to
/// the same files for as long as the process has them mapped.
#[inline(always)]
fn user_stack(ctx: &RawTracePointContext) -> i32 {
    let Some(flag) = WALKING.get_ptr_mut(0) else { return NO_STACK };
    // SAFETY: this CPU's flag; the fault program that reads it runs nested on this CPU.
    unsafe { *flag = 1 };
    let raw = core::ptr::addr_of!(RAW_USER_STACKS) as *mut core::ffi::c_void;
    let id = stack_id(unsafe { bpf_get_stackid(ctx.as_ptr(), raw, BPF_F_USER_STACK as u64) });
    if id != NO_STACK && unsafe { BUILD_ID_STACKS.get(&id) }.is_none() {
        let with_build_ids = core::ptr::addr_of!(USER_STACKS) as *mut core::ffi::c_void;
        let resolved = stack_id(unsafe { bpf_get_stackid(ctx.as_ptr(), with_build_ids, BPF_F_USER_STACK as u64) });
        // Kept even when it failed (NO_STACK): the frames are then named from the addresses.
        let _ = BUILD_ID_STACKS.insert(&id, &resolved, BPF_NOEXIST as u64);
    }
    unsafe { *flag = 0 };
    id
}

/// Set on this CPU while a stack is walked: a frame-pointer walk through code built without
/// frame pointers reads wherever the register pointed and faults (`page_fault_kernel` on a
/// user address, handled without paging anything in); `faults.rs` does not charge those to
/// the process.
#[map]
static WALKING: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// True while this CPU walks a user stack for `--stacks`.
#[inline(always)]
pub fn walking() -> bool {
    enabled() && WALKING.get(0).is_some_and(|w| *w != 0)
}

/// The word at the user stack pointer and the return address above the saved frame pointer,
/// from the user registers `regs` saved at the syscall (see `StackKey::leaf_ret`).
#[inline(always)]
fn leaf_words(regs: u64) -> (u64, u64) {
    let (sp_off, fp_off) = (kmem::off!(regs_sp), kmem::off!(regs_fp));
    if sp_off == 0 || fp_off == 0 {
        return (0, 0);
    }
    let sp: u64 = kmem::read(regs, sp_off).unwrap_or(0);
    let fp: u64 = kmem::read(regs, fp_off).unwrap_or(0);
    let word = |addr: u64| unsafe { bpf_probe_read_user(addr as *const u64) }.unwrap_or(0);
    let leaf = if sp != 0 { word(sp) } else { 0 };
    let frame = if fp != 0 { word(fp + 8) } else { 0 };
    (leaf, frame)
}

/// What an entry is created with (read from .rodata by the insert).
static NO_BYTES: FlowValue = FlowValue { calls: 0, bytes: 0 };
