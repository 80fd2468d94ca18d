//! MSG_ZEROCOPY completions, read where the application reads them: the first control
//! message that `recvmsg(fd, msg, MSG_ERRQUEUE)` put in its buffer. The kernel programs copy
//! the buffer's first bytes (`zc-trace-ebpf/src/probes/syscalls.rs`); the decoding is here.

use crate::linux::{IP_RECVERR, IPV6_RECVERR, SO_EE_CODE_ZEROCOPY_COPIED, SO_EE_ORIGIN_ZEROCOPY, SOL_IP, SOL_IPV6};

/// `struct cmsghdr` (LP64) followed by `struct sock_extended_err`: the first 32 bytes of a
/// control buffer that holds an error-queue entry.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrqueueCmsg {
    pub cmsg_len: u64,
    pub cmsg_level: i32,
    pub cmsg_type: i32,
    pub ee_errno: u32,
    pub ee_origin: u8,
    pub ee_type: u8,
    pub ee_code: u8,
    pub ee_pad: u8,
    pub ee_info: u32,
    pub ee_data: u32,
}

/// The bytes of a control message holding a `sock_extended_err`.
pub const ERRQUEUE_CMSG_LEN: u64 = core::mem::size_of::<ErrqueueCmsg>() as u64;

/// What one completion says: how many sends it covers, and whether the kernel copied them.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    pub sends: u64,
    pub copied: bool,
}

impl ErrqueueCmsg {
    /// The MSG_ZEROCOPY completion this control message holds, if it is one. `controllen` is
    /// what the kernel wrote back to `msg_controllen` (the bytes it filled).
    #[inline(always)]
    pub fn completion(&self, controllen: u64) -> Option<Completion> {
        let recverr = (self.cmsg_level == SOL_IP && self.cmsg_type == IP_RECVERR)
            || (self.cmsg_level == SOL_IPV6 && self.cmsg_type == IPV6_RECVERR);
        if controllen < ERRQUEUE_CMSG_LEN || self.cmsg_len < ERRQUEUE_CMSG_LEN || !recverr {
            return None;
        }
        if self.ee_origin != SO_EE_ORIGIN_ZEROCOPY || self.ee_errno != 0 || self.ee_data < self.ee_info {
            return None;
        }
        Some(Completion {
            sends: (self.ee_data - self.ee_info) as u64 + 1,
            copied: self.ee_code & SO_EE_CODE_ZEROCOPY_COPIED != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zerocopy(level: i32, kind: i32, info: u32, data: u32, code: u8) -> ErrqueueCmsg {
        ErrqueueCmsg {
            cmsg_len: ERRQUEUE_CMSG_LEN,
            cmsg_level: level,
            cmsg_type: kind,
            ee_origin: SO_EE_ORIGIN_ZEROCOPY,
            ee_code: code,
            ee_info: info,
            ee_data: data,
            ..Default::default()
        }
    }

    #[test]
    fn completions_are_decoded_for_ipv4_and_ipv6() {
        let copied = zerocopy(SOL_IP, IP_RECVERR, 0, 127, SO_EE_CODE_ZEROCOPY_COPIED);
        assert_eq!(copied.completion(32), Some(Completion { sends: 128, copied: true }));
        let zero = zerocopy(SOL_IPV6, IPV6_RECVERR, 5, 5, 0);
        assert_eq!(zero.completion(64), Some(Completion { sends: 1, copied: false }));
    }

    #[test]
    fn other_messages_are_not_completions() {
        let ok = zerocopy(SOL_IP, IP_RECVERR, 0, 1, 0);
        // Truncated control buffer or message.
        assert_eq!(ok.completion(31), None);
        assert_eq!(ErrqueueCmsg { cmsg_len: 20, ..ok }.completion(32), None);
        // Another level/type pairing, another origin (an ICMP error), an errno, a bad range.
        assert_eq!(ErrqueueCmsg { cmsg_type: IPV6_RECVERR, ..ok }.completion(32), None);
        assert_eq!(ErrqueueCmsg { ee_origin: 2, ..ok }.completion(32), None);
        assert_eq!(ErrqueueCmsg { ee_errno: 111, ..ok }.completion(32), None);
        assert_eq!(ErrqueueCmsg { ee_info: 3, ee_data: 2, ..ok }.completion(32), None);
        // A range that spans the 32-bit counter is decoded in full.
        let wide = zerocopy(SOL_IP, IP_RECVERR, 0, u32::MAX, 0);
        assert_eq!(wide.completion(32).unwrap().sends, 1 << 32);
    }
}
