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

/// `O_DIRECT` on x86-64 (and most architectures; arm64 differs and would need its own value).
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
