//! Mode switches caused by system calls, and the data syscalls' in-flight record.
//!
//! `raw_syscalls:sys_enter`/`sys_exit` fire once per syscall on every kernel and architecture,
//! so they are where every syscall is counted. Counted at entry: `exit`/`exit_group` never
//! return, and a call that was already blocked when we attached is not ours to count.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::{map, raw_tracepoint},
    maps::{PerCpuArray, PerCpuHashMap},
    programs::RawTracePointContext,
};
use zc_trace_common::{
    DropReason, FdKind, NO_ARG, OpClass, SENDFILE_FD_OUT, SPLICE_FD_OUT, SYSCALL_COUNTS_MAX_ENTRIES, SYSCALL_TABLE_LEN,
    SyscallDesc, SyscallKey, SyscallTable,
    linux::MSG_ERRQUEUE,
    relay::{Source, shape},
};

use super::{derive, drops, errqueue, flows, inflight, inflight::InFlight, mappings, net, relay};
use crate::{
    filter::{self, Traced, counter_key},
    kmem,
    maps::lookup_or_try_init,
    typed,
};

#[map]
static SYSCALL_COUNTS: PerCpuHashMap<SyscallKey, u64> =
    PerCpuHashMap::with_max_entries(SYSCALL_COUNTS_MAX_ENTRIES, BPF_F_NO_PREALLOC);

/// The counts of the one traced process (`FILTER_TGID` set, counters per process), by
/// syscall number: an array slot per syscall instead of a hash lookup.
#[map]
static SYSCALL_COUNTS_ONE: PerCpuArray<u64> = PerCpuArray::with_max_entries(SYSCALL_TABLE_LEN as u32, 0);

#[unsafe(no_mangle)]
static SYSCALL_TABLE: SyscallTable = SyscallTable::EMPTY;

/// 1: `SYSCALL_COUNTS` counts by bucket (class, or calls that never return), not by number.
#[unsafe(no_mangle)]
static SYSCALL_BUCKETS: u32 = 0;

#[inline(always)]
fn describe(nr: u64) -> SyscallDesc {
    if nr >= SYSCALL_TABLE_LEN as u64 {
        return SyscallDesc::NONE;
    }
    unsafe { core::ptr::read_volatile(&SYSCALL_TABLE.entries[nr as usize]) }
}

/// A syscall's arguments in the saved user registers. On x86-64 the first three (di, si, dx)
/// sit next to each other in `struct pt_regs`, in reverse order: they are read with one
/// `bpf_probe_read_kernel` instead of one each (the layout is checked, from BTF offsets).
///
/// With typed loads (typed.rs) the registers are a `struct pt_regs` cast from the tracepoint's
/// argument, and each argument is a load.
struct Args {
    regs: u64,
    /// Arguments 2, 1, 0, when read together.
    first: Option<[u64; 3]>,
}

impl Args {
    #[inline(always)]
    fn read(regs: u64) -> Self {
        if typed::enabled() {
            return Args { regs: typed::cast(regs, typed::typed!(pt_regs_id)) as u64, first: None };
        }
        let (a0, a1, a2) = (kmem::off!(regs_args[0]), kmem::off!(regs_args[1]), kmem::off!(regs_args[2]));
        let adjacent = a1 == a2 + 8 && a0 == a1 + 8;
        Args { regs, first: if adjacent { kmem::read::<[u64; 3]>(regs, a2) } else { None } }
    }

    #[inline(always)]
    fn get(&self, index: u8) -> Option<u64> {
        if typed::enabled() {
            return typed_arg(self.regs as *const u8, index);
        }
        // Constant indices: the verifier refuses a computed index into the stack.
        match (self.first, index) {
            (Some(a), 0) => Some(a[2]),
            (Some(a), 1) => Some(a[1]),
            (Some(a), 2) => Some(a[0]),
            _ => arg(self.regs, index),
        }
    }
}

/// Syscall argument `index` from the saved user registers, `regs` a typed `struct pt_regs *`.
#[inline(always)]
fn typed_arg(regs: *const u8, index: u8) -> Option<u64> {
    Some(typed::load(regs, reg_offset(index)?))
}

/// Syscall argument `index` from the saved user registers.
#[inline(always)]
fn arg(regs: u64, index: u8) -> Option<u64> {
    kmem::read(regs, reg_offset(index)?)
}

/// Where in `struct pt_regs` argument `index` is: a constant to the verifier per arm.
#[inline(always)]
fn reg_offset(index: u8) -> Option<u32> {
    Some(match index {
        0 => kmem::off!(regs_args[0]),
        1 => kmem::off!(regs_args[1]),
        2 => kmem::off!(regs_args[2]),
        3 => kmem::off!(regs_args[3]),
        4 => kmem::off!(regs_args[4]),
        5 => kmem::off!(regs_args[5]),
        _ => return None,
    })
}

/// `sys_enter(struct pt_regs *regs, long id)`.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn zc_sys_enter(ctx: RawTracePointContext) -> i32 {
    // Typed loads take the ids from the task pointer that the fd walk needs anyway; helper
    // reads keep to the code that 6.1's verifier was measured to accept (it explores the
    // program past its limit when the pointer is carried from here).
    let (task, traced) = if typed::enabled() { filter::current() } else { (core::ptr::null(), filter::traced()) };
    let Some(Traced { key, tid, tgid }) = traced else { return 0 };
    let nr: u64 = ctx.arg(1);
    let desc = describe(nr);
    count_syscall(key, nr, &desc);
    let class = OpClass::from_u32(desc.class as u32);
    // Per-class syscall counts follow from the syscall counts and the table in user space:
    // no second map update on the hottest path.
    if class == OpClass::None || class == OpClass::Other {
        return 0;
    }
    let args = Args::read(ctx.arg(0));
    if class == OpClass::Munmap {
        if let (Some(addr), Some(len)) = (args.get(0), args.get(1)) {
            mappings::forget(tgid, addr, len);
        }
        return 0;
    }
    let Some(slot) = inflight::adopt(tid) else { return 0 };
    let by_fd = flows::by_fd();
    // The fd in argument `index`: its number, file, kind, and for sockets whether their route
    // can gather. Sockets are also remembered as ours, so that the packets they transmit can
    // be charged to this process (net.rs). With BY_FD, the file's inode number and name too.
    let fd_of = |index: u8, slot: u32| -> (i32, u64, u8, bool) {
        let Some(fd) = (index != NO_ARG).then(|| args.get(index)).flatten() else { return (-1, 0, 0, false) };
        let (file, kind) = if typed::enabled() { kmem::typed_fd(task, fd) } else { kmem::fd_file_kind(fd) };
        let mut ino = 0;
        if by_fd && file != 0 {
            ino = kmem::file_ino(file);
            flows::remember_name(slot, key, fd as i32, ino, file, kind);
        }
        if !kind.is_socket() {
            return (fd as i32, ino, kind as u8, false);
        }
        if typed::enabled() {
            let (sk, gather) = kmem::typed_socket(file);
            net::remember_owner(sk, key);
            return (fd as i32, ino, kind as u8, gather);
        }
        let sk = kmem::file_sock(file).unwrap_or(0);
        net::remember_owner(sk, key);
        (fd as i32, ino, kind as u8, kmem::sock_can_gather(sk))
    };
    let flags = if desc.flags_arg == NO_ARG { 0 } else { args.get(desc.flags_arg).unwrap_or(0) };
    let extra = match class {
        OpClass::CopyFileRange if desc.fd_out != NO_ARG => args.get(desc.fd_out).and_then(kmem::fs_magic).unwrap_or(0),
        OpClass::Mmap => args.get(1).unwrap_or(0),
        // The destination fd, whose socket spliced pages are added to at exit (net.rs): the
        // first argument of sendfile, the third of splice (SENDFILE_FD_OUT, SPLICE_FD_OUT;
        // user space checks its table agrees). Constant positions: its `struct sock *`,
        // carried from below, or a position read from the table cost this program twice the
        // verifier's work on 6.18 and more than 6.1 explores.
        OpClass::Sendfile => args.get(SENDFILE_FD_OUT).unwrap_or(u64::MAX),
        OpClass::Splice => args.get(SPLICE_FD_OUT).unwrap_or(u64::MAX),
        _ => 0,
    };
    let buf = if desc.buf_arg == NO_ARG { 0 } else { args.get(desc.buf_arg).unwrap_or(0) };
    let count = match desc.buf_shape {
        shape::IOVEC | shape::MMSGHDR => args.get(desc.buf_arg + 1).unwrap_or(0),
        _ => 0,
    };
    // write(fd, buf, n) with buf inside a file mapping: mmap + write. (Whether a receive
    // filled buf is decided at exit, when the bytes written are known: relay.rs.)
    let from_mapping = class == OpClass::Write && desc.buf_shape == shape::PLAIN && mappings::contains(tgid, buf);
    let (fd_out, ino_out, kind_out, gather) = fd_of(desc.fd_out, 0);
    let (fd_in, ino_in, kind_in, _) = fd_of(desc.fd_in, 1);
    let record = InFlight {
        class: class as u32,
        kind_in,
        kind_out,
        gather: gather as u8,
        from_mapping: from_mapping as u8,
        flags,
        extra,
        buf,
        shape: desc.buf_shape,
        _pad0: 0,
        _pad1: 0,
        fd_in: if by_fd { fd_in } else { -1 },
        fd_out: if by_fd { fd_out } else { -1 },
        count: count.min(u32::MAX as u64) as u32,
        ino_in,
        ino_out,
    };
    slot.begin(&record);
    0
}

/// `sys_exit(struct pt_regs *regs, long ret)`.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn zc_sys_exit(ctx: RawTracePointContext) -> i32 {
    // Only data syscalls of traced tasks have a record, but looking for one costs a hash
    // lookup when the thread's is not in this CPU's slot: with one traced process, every
    // other process's syscall exit stops at the filter's compare instead.
    let traced = if typed::enabled() { filter::current().1 } else { filter::traced() };
    let Some(Traced { tid, tgid, .. }) = traced else { return 0 };
    let Some(mut record) = inflight::end(tid) else { return 0 };
    // Whatever the function probes counted in this syscall is matched below or not at all
    // (nothing to clear when no function probe is attached: no map operation then).
    let _guard = derive::any_observed().then_some(ClearPending(tid));
    let ret: i64 = ctx.arg(1);
    let class = OpClass::from_u32(record.class);
    if class == OpClass::Recv && record.flags & MSG_ERRQUEUE as u64 != 0 {
        // The error queue: MSG_ZEROCOPY completions (no payload; the result is 0).
        if ret >= 0 && record.shape == shape::MSGHDR {
            errqueue::read(counter_key(tgid, tid), record.buf);
        }
        return 0;
    }
    if ret <= 0 {
        return 0;
    }
    if class == OpClass::Mmap {
        // A mapping of a regular file: remember where it is (ret is the address).
        if record.kind_in() == FdKind::File {
            mappings::record(tgid, ret as u64, record.extra);
        }
        return 0;
    }
    let key = counter_key(tgid, tid);
    let buf = relay::Buffer { shape: record.shape, addr: record.buf, count: record.count as u64 };
    let Some(scratch) = relay::scratch() else { return 0 };
    match class {
        OpClass::Read | OpClass::Recv => {
            let n = relay::gather(&buf, ret as u64, scratch);
            let source = Source { ino: record.ino_in, fd: record.fd_in, kind: record.kind_in, _pad0: 0, _pad1: 0 };
            relay::filled(tgid, &source, scratch);
            account(key, &record, n);
            flows::add(key, &record, n);
        }
        OpClass::Write | OpClass::Send => {
            let n = relay::gather(&buf, ret as u64, scratch);
            relay::sent(tgid, scratch);
            let matched = &scratch.matched;
            if matched.total >= n {
                // Every byte came from a receive: not a write from a file mapping.
                record.from_mapping = 0;
            }
            account(key, &record, n);
            flows::add_send(key, &record, n, matched);
        }
        _ => {
            let spliced = account(key, &record, ret as u64);
            if spliced != 0 && matches!(class, OpClass::Sendfile | OpClass::Splice) {
                net::add_spliced_fd(record.extra as i32, spliced);
            }
            flows::add(key, &record, ret as u64);
        }
    }
    0
}

/// The copies a data syscall that moved `n` bytes made (none for an empty mmsg batch), and
/// how many of its bytes were pages spliced into a network socket.
#[inline(always)]
fn account(key: u32, record: &InFlight, n: u64) -> u64 {
    if n != 0 { derive::account(key, record, n) } else { 0 }
}

#[inline(always)]
fn count_syscall(key: u32, nr: u64, desc: &SyscallDesc) {
    if crate::filter::single_tgid() && nr < SYSCALL_TABLE_LEN as u64 {
        if let Some(count) = SYSCALL_COUNTS_ONE.get_ptr_mut(nr as u32) {
            unsafe { *count += 1 };
        }
        return;
    }
    let counts_key = if unsafe { core::ptr::read_volatile(&SYSCALL_BUCKETS) } != 0 {
        // Numbers past the table are class Other (describe), as user space classes them.
        let class = if nr >= SYSCALL_TABLE_LEN as u64 { OpClass::Other as u8 } else { desc.class };
        SyscallKey { tgid: key, nr: SyscallKey::bucket(class, desc.no_return != 0) }
    } else {
        SyscallKey { tgid: key, nr: nr as u32 }
    };
    // Created at zero, then counted like an existing one. `&0` is a constant in .rodata:
    // nothing is stored on the hot path for it.
    match lookup_or_try_init(&SYSCALL_COUNTS, &counts_key, || Some(&0)) {
        // SAFETY: this CPU's copy of the count; no reference is made.
        Some(count) => unsafe { *count += 1 },
        None => drops::record(DropReason::SyscallMapFull),
    }
}

/// Clears the thread's pending observed bytes when the syscall exit is done with them.
struct ClearPending(u32);

impl Drop for ClearPending {
    fn drop(&mut self) {
        super::inflight::clear_pending(self.0);
    }
}
