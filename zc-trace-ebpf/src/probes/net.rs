//! NIC transmit: `net_dev_start_xmit(skb, dev)` fires when a packet is handed to a device.
//! `skb->len - skb->data_len` bytes are linear (in the skb head), `data_len` are in page
//! fragments that a scatter-gather device DMAs from directly; `nr_frags` comes from
//! `skb_shinfo(skb)` (at skb->head + skb->end). Paged bytes alone do not prove zero-copy: TCP
//! copies user data into page frags too.
//!
//! A packet is charged to the owner of its socket (`skb->sk`), remembered when a traced
//! process used that socket in a data syscall: the context a packet is sent in is often
//! someone else's (on loopback, an ACK processed by the peer pushes our data out). The
//! `struct sock *` is the key, and a freed one is reused: the socket's inode number, taken at
//! its first packet, is checked at every later one, and a TCP socket's entry is deleted when it
//! closes (`inet_sock_set_state`). Raw tracepoints cannot ask for the socket cookie
//! (`bpf_get_socket_cookie` wants a BTF-typed socket, and 6.1 has no `bpf_rdonly_cast`),
//! hence the inode number: unique while the socket lives, not reused soon after.

use aya_ebpf::{
    bindings::BPF_ANY,
    macros::{map, raw_tracepoint},
    maps::LruHashMap,
    programs::RawTracePointContext,
};
use zc_trace_common::{GlobalEvent, OpClass, SOCK_OWNER_MAX_ENTRIES, SockOwner, SocketTransmit};

use super::block::bump_global;
use crate::{
    atomic, kmem,
    stats::{with_existing_stats, with_stats},
};

/// `struct sock *` -> its owner (a process, or with `--by thread` a thread) and what went
/// through it. A freed `struct sock` is soon another socket's (slab reuse hands back the same
/// address): at transmit, the socket's inode number tells.
#[map]
static SOCK_OWNER: LruHashMap<u64, SockOwner> = LruHashMap::with_max_entries(SOCK_OWNER_MAX_ENTRIES, 0);

/// Adds `n` to a counter of a `SOCK_OWNER` value, which every CPU may update at once.
#[inline(always)]
fn add(counter: *mut u64, n: u64) {
    // SAFETY: a field of a map value, alive for the program's run.
    unsafe { atomic::add(counter, n) };
}

/// The socket `sk` took `n` bytes of pages by reference (splice, sendfile): they will reach
/// its device in page frags if the device can gather, else copied into linear packets.
#[inline(always)]
pub fn add_spliced(sk: u64, n: u64) {
    if let Some(entry) = SOCK_OWNER.get_ptr_mut(&sk) {
        add(unsafe { &raw mut (*entry).transmit.spliced }, n);
    }
}

/// As [`add_spliced`], for the socket behind the calling task's fd `fd`.
#[inline(always)]
pub fn add_spliced_fd(fd: i32, n: u64) {
    if fd < 0 {
        return;
    }
    let (file, kind) = kmem::fd_file_kind(fd as u64);
    if file != 0 && kind.is_socket() {
        add_spliced(kmem::file_sock(file).unwrap_or(0), n);
    }
}

/// The kernel is done with this entry (the socket closed, or its `struct sock` is another
/// socket's now): what the socket copied at transmit is credited to its owner, if the owner
/// still has counters (a process folded away by `serve` after it exited does not: lost).
#[inline(always)]
fn credit(entry: *const SockOwner) {
    // SAFETY: a map value, read field by field (a struct copy can become a byte loop).
    let (owner, transmit) = unsafe {
        let t = &raw const (*entry).transmit;
        let transmit =
            SocketTransmit { spliced: (*t).spliced, paged: (*t).paged, linear: (*t).linear, packets: (*t).packets };
        ((*entry).owner, transmit)
    };
    let copied = transmit.copied();
    if copied != 0 {
        with_existing_stats(owner, OpClass::None, |s| {
            s.transmit_copied.bytes += copied;
            s.transmit_copied.calls += transmit.packets;
        });
    }
}

/// Task `owner` used socket `sk`. The socket's inode number is taken at its first packet,
/// not here: reading it on every socket syscall cost the syscall program more than Linux
/// 6.1's verifier explores. (A socket that never sent a packet before its `sock` was reused
/// is the gap: the new socket's first packet is taken for the owner's.)
#[inline(always)]
pub fn remember_owner(sk: u64, owner: u32) {
    if sk == 0 || unsafe { SOCK_OWNER.get(&sk) }.is_some_and(|v| v.owner == owner) {
        return;
    }
    // Field by field: a struct literal with zeros becomes a memset, which BPF runs as a byte
    // loop, and the syscall program cannot afford its verifier states (Linux 6.1).
    let mut entry = core::mem::MaybeUninit::<SockOwner>::uninit();
    let p = entry.as_mut_ptr();
    // SAFETY: every field of the repr(C) struct is written before it is read.
    let entry = unsafe {
        core::ptr::write_volatile(&raw mut (*p).owner, owner);
        core::ptr::write_volatile(&raw mut (*p)._pad, 0);
        core::ptr::write_volatile(&raw mut (*p).ino, 0);
        core::ptr::write_volatile(&raw mut (*p).transmit.spliced, 0);
        core::ptr::write_volatile(&raw mut (*p).transmit.paged, 0);
        core::ptr::write_volatile(&raw mut (*p).transmit.linear, 0);
        core::ptr::write_volatile(&raw mut (*p).transmit.packets, 0);
        entry.assume_init_ref()
    };
    let _ = SOCK_OWNER.insert(&sk, entry, BPF_ANY as u64);
}

/// The inode number of the socket `sk` is now (0 if unknown or orphaned).
#[inline(always)]
fn sock_ino(sk: u64, off: &zc_trace_common::KernelOffsets) -> u64 {
    if off.socket_ino == 0 {
        return 0;
    }
    kmem::read::<u64>(sk, off.sock_socket).and_then(|socket| kmem::read::<u64>(socket, off.socket_ino)).unwrap_or(0)
}

/// `TCP_CLOSE` (include/net/tcp_states.h).
const TCP_CLOSE: i32 = 7;

/// `inet_sock_set_state(sk, oldstate, newstate)`: a TCP socket that reaches TCP_CLOSE is done
/// (freed soon, its `struct sock` reused by whatever socket comes next): its owner is
/// forgotten, so that a new socket at the same address, maybe an untraced process's, is not
/// charged to the old owner. The next data syscall on a live socket remembers it again.
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn zc_inet_sock_set_state(ctx: RawTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let newstate: u64 = ctx.arg(2);
    if newstate as i32 == TCP_CLOSE {
        if let Some(entry) = SOCK_OWNER.get_ptr(&sk) {
            credit(entry);
            let _ = SOCK_OWNER.remove(&sk);
        }
    }
    0
}

#[raw_tracepoint(tracepoint = "net_dev_start_xmit")]
pub fn zc_net_dev_start_xmit(ctx: RawTracePointContext) -> i32 {
    bump_global(GlobalEvent::NetTxPacketsSystem, 1);
    let skb: u64 = ctx.arg(0);
    let off = kmem::offsets();
    let sk: u64 = kmem::read(skb, off.skb_sk).unwrap_or(0);
    let Some(entry) = SOCK_OWNER.get_ptr_mut(&sk) else { return 0 };
    // SAFETY: the entry's two fields are read and one written through the pointer; a
    // concurrent writer (the owner's syscall replacing the entry) makes this packet's
    // check use either version, both of which name a live owner.
    let (owner, ino) = unsafe { ((*entry).owner, (*entry).ino) };
    // Another socket now lives at this address: not the recorded owner's. (An orphaned
    // socket, closed by its owner with data still to send, has no `struct socket` any more,
    // hence no number: still alive, so still the owner's.)
    let now = sock_ino(sk, &off);
    if ino == 0 {
        unsafe { (*entry).ino = now };
    } else if now != 0 && now != ino {
        credit(entry);
        let _ = SOCK_OWNER.remove(&sk);
        return 0;
    }
    let Some(len) = kmem::read::<u32>(skb, off.skb_len) else { return 0 };
    let data_len = kmem::read::<u32>(skb, off.skb_data_len).unwrap_or(0);
    let head: u64 = kmem::read(skb, off.skb_head).unwrap_or(0);
    let end = kmem::read::<u32>(skb, off.skb_end).unwrap_or(0);
    let frags = kmem::read::<u8>(head + end as u64, off.shinfo_nr_frags).unwrap_or(0);
    let linear = len.saturating_sub(data_len) as u64;
    add(unsafe { &raw mut (*entry).transmit.paged }, data_len as u64);
    add(unsafe { &raw mut (*entry).transmit.linear }, linear);
    add(unsafe { &raw mut (*entry).transmit.packets }, 1);
    // Not inside the owner's syscall: charged to its "none" class.
    with_stats(owner, OpClass::None, |s| {
        s.net_tx.add(len as u64);
        s.net_tx_linear_bytes += linear;
        s.net_tx_paged_bytes += data_len as u64;
        s.net_tx_frags += frags as u64;
    });
    0
}
