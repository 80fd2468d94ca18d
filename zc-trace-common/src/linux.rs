//! Numbers from the kernel's headers that the kernel programs and the rules compare against,
//! defined once here so that the eBPF side and the host tests cannot disagree about them.
//! Each is the kernel's own value; where it is architecture-specific, the comment says so.

/// `MSG_ZEROCOPY` (include/linux/socket.h): send(2) pins the user pages instead of copying
/// them. The kernel's `msg_flags` is an `unsigned int`; syscall flags arrive as a 64-bit
/// register and are compared as `flags & MSG_ZEROCOPY as u64`.
pub const MSG_ZEROCOPY: u32 = 0x400_0000;
/// `MSG_SPLICE_PAGES` (include/linux/socket.h, 6.5+, kernel-internal): a sendmsg from
/// splice/sendfile whose pages the protocol may take by reference.
pub const MSG_SPLICE_PAGES: u32 = 0x800_0000;

/// `O_DIRECT` on x86-64 (include/uapi/asm-generic/fcntl.h). arm64 defines its own,
/// 0o200000 (arch/arm64/include/uapi/asm/fcntl.h, where 0o40000 is O_DIRECTORY): the kernel
/// programs compare `f_flags` with `KernelOffsets::o_direct`, which user space sets to its
/// architecture's value.
pub const O_DIRECT: u32 = 0o40000;

/// File types in `inode->i_mode` (include/uapi/linux/stat.h).
pub const S_IFMT: u16 = 0o170000;
pub const S_IFREG: u16 = 0o100000;
pub const S_IFIFO: u16 = 0o010000;
pub const S_IFSOCK: u16 = 0o140000;
pub const S_IFCHR: u16 = 0o020000;

/// Socket families (`sk->sk_family`) and protocols (`sk->sk_protocol`).
pub const AF_UNIX: u16 = 1;
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const IPPROTO_TCP: u16 = 6;
pub const IPPROTO_UDP: u16 = 17;

/// /dev/null, MKDEV(1, 3) in the kernel's internal dev_t encoding (major << 20 | minor) that
/// `inode->i_rdev` holds.
pub const DEV_NULL: u32 = (1 << 20) | 3;

/// `super_block->s_magic` of the file systems whose copy_file_range shares extents
/// (include/uapi/linux/magic.h).
pub const XFS_SUPER_MAGIC: u64 = 0x5846_5342;
pub const BTRFS_SUPER_MAGIC: u64 = 0x9123_683E;

/// io_uring opcodes that move data (include/uapi/linux/io_uring.h): stable numbers.
pub const IORING_OP_READV: u8 = 1;
pub const IORING_OP_WRITEV: u8 = 2;
pub const IORING_OP_READ_FIXED: u8 = 4;
pub const IORING_OP_WRITE_FIXED: u8 = 5;
pub const IORING_OP_SENDMSG: u8 = 9;
pub const IORING_OP_RECVMSG: u8 = 10;
pub const IORING_OP_READ: u8 = 22;
pub const IORING_OP_WRITE: u8 = 23;
pub const IORING_OP_SEND: u8 = 26;
pub const IORING_OP_RECV: u8 = 27;
/// Zero-copy sends (6.0, 6.1): a first completion with the bytes sent, then a notification
/// (`IORING_CQE_F_NOTIF` in its flags) once the pages are released; with
/// `IORING_SEND_ZC_REPORT_USAGE` asked for, its result has `IORING_NOTIF_USAGE_ZC_COPIED`
/// when the kernel copied after all.
pub const IORING_OP_SEND_ZC: u8 = 47;
pub const IORING_OP_SENDMSG_ZC: u8 = 48;
pub const IORING_CQE_F_NOTIF: u32 = 1 << 3;
pub const IORING_NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;

/// `MSG_ERRQUEUE` (include/linux/socket.h): recvmsg reads the socket's error queue, where
/// MSG_ZEROCOPY completions arrive.
pub const MSG_ERRQUEUE: u32 = 0x2000;
/// The control message of an error-queue entry: `SOL_IP`/`IP_RECVERR` or
/// `SOL_IPV6`/`IPV6_RECVERR` (include/uapi/linux/in.h, in6.h).
pub const SOL_IP: i32 = 0;
pub const IP_RECVERR: i32 = 11;
pub const SOL_IPV6: i32 = 41;
pub const IPV6_RECVERR: i32 = 25;
/// `struct sock_extended_err` (include/uapi/linux/errqueue.h): a MSG_ZEROCOPY completion has
/// origin `SO_EE_ORIGIN_ZEROCOPY`, covers the sends numbered `ee_info..=ee_data`, and has
/// `SO_EE_CODE_ZEROCOPY_COPIED` in `ee_code` when the kernel copied them after all.
pub const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
pub const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;

/// arm64's perf-event program context, `struct bpf_perf_event_data`
/// (include/uapi/linux/bpf_perf_event.h), in u64 words: `bpf_user_pt_regs_t regs` is arm64's
/// `struct user_pt_regs` (arch/arm64/include/uapi/asm/bpf_perf_event.h and ptrace.h:
/// `regs[31], sp, pc, pstate`), then `sample_period`, then `addr`. UAPI: the same on every
/// arm64 kernel.
pub const ARM64_PERF_PSTATE_WORD: usize = 33;
pub const ARM64_PERF_ADDR_WORD: usize = 35;
/// `PSR_MODE_MASK` (arch/arm64/include/uapi/asm/ptrace.h): PSTATE's exception level and
/// stack pointer; `PSR_MODE_EL0t` (0) is user mode.
pub const ARM64_PSR_MODE_MASK: u64 = 0xf;
/// Bit 55 of a virtual address picks the translation table on arm64: clear, TTBR0, the
/// user half (whatever the top byte holds: it is ignored for user pointers, TBI).
pub const ARM64_VA_KERNEL_HALF: u64 = 1 << 55;

/// What a page fault was, for mode switches: taken in user mode (one round trip into the
/// kernel), or taken by the kernel on a user address (inside a syscall: no extra switch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    User,
    KernelOnUserAddress,
    /// On a kernel address: not the process's memory.
    Other,
}

/// arm64: a page fault from the `page-faults` perf event's registers and address.
pub fn arm64_fault(pstate: u64, addr: u64) -> FaultKind {
    if pstate & ARM64_PSR_MODE_MASK == 0 {
        FaultKind::User
    } else if addr & ARM64_VA_KERNEL_HALF == 0 {
        FaultKind::KernelOnUserAddress
    } else {
        FaultKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm64_faults_by_exception_level_and_address_half() {
        // EL0t (0b0000) with interrupts unmasked: user mode.
        assert_eq!(arm64_fault(0x0000_0000, 0x0000_ffff_a000_0000), FaultKind::User);
        // EL1h (0b0101), a user address (tagged pointers keep bit 55 clear).
        assert_eq!(arm64_fault(0x6000_0005, 0x0000_aaaa_0000_1000), FaultKind::KernelOnUserAddress);
        assert_eq!(arm64_fault(0x6000_0005, 0x0f00_aaaa_0000_1000), FaultKind::KernelOnUserAddress);
        // EL1h on a kernel address (vmalloc, linear map).
        assert_eq!(arm64_fault(0x6000_0005, 0xffff_8000_1000_0000), FaultKind::Other);
    }
}
