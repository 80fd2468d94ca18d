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
use zc_trace_common::{GlobalEvent, OpClass, SOCK_OWNER_MAX_ENTRIES};

use super::block::bump_global;
use crate::{kmem, stats::with_stats};

/// Who a socket belongs to: the counter key (filter.rs) of the traced task that last used
/// it in a data syscall or io_uring operation (a process, or with `--by thread` a thread),
/// and the socket's inode number then. A freed `struct sock` is soon another socket's (slab
/// reuse hands back the same address): at transmit, the socket's inode number tells.
#[repr(C)]
#[derive(Copy, Clone)]
pub struct SockOwner {
    pub owner: u32,
    pub _pad: u32,
    pub ino: u64,
}

/// `struct sock *` -> its owner.
#[map]
static SOCK_OWNER: LruHashMap<u64, SockOwner> = LruHashMap::with_max_entries(SOCK_OWNER_MAX_ENTRIES, 0);

/// Task `owner` used socket `sk`. The socket's inode number is taken at its first packet,
/// not here: reading it on every socket syscall cost the syscall program more than Linux
/// 6.1's verifier explores. (A socket that never sent a packet before its `sock` was reused
/// is the gap: the new socket's first packet is taken for the owner's.)
#[inline(always)]
pub fn remember_owner(sk: u64, owner: u32) {
    if sk == 0 || unsafe { SOCK_OWNER.get(&sk) }.is_some_and(|v| v.owner == owner) {
        return;
    }
    let entry = SockOwner { owner, _pad: 0, ino: 0 };
    let _ = SOCK_OWNER.insert(&sk, &entry, BPF_ANY as u64);
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
        let _ = SOCK_OWNER.remove(&sk);
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
        let _ = SOCK_OWNER.remove(&sk);
        return 0;
    }
    let Some(len) = kmem::read::<u32>(skb, off.skb_len) else { return 0 };
    let data_len = kmem::read::<u32>(skb, off.skb_data_len).unwrap_or(0);
    let head: u64 = kmem::read(skb, off.skb_head).unwrap_or(0);
    let end = kmem::read::<u32>(skb, off.skb_end).unwrap_or(0);
    let frags = kmem::read::<u8>(head + end as u64, off.shinfo_nr_frags).unwrap_or(0);
    // Not inside the owner's syscall: charged to its "none" class.
    with_stats(owner, OpClass::None, |s| {
        s.net_tx.add(len as u64);
        s.net_tx_linear_bytes += len.saturating_sub(data_len) as u64;
        s.net_tx_paged_bytes += data_len as u64;
        s.net_tx_frags += frags as u64;
    });
    0
}
