//! What user space writes into the kernel programs' read-only globals before load: the
//! running kernel's struct layouts (from its BTF) and the syscall table. Re-exported at the
//! crate root.

/// Byte offsets of the kernel struct members the programs read, resolved by user space from
/// the running kernel's BTF (`/sys/kernel/btf/vmlinux`) and written before load. A zero
/// `valid` means BTF was unavailable and fd classification is off.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub valid: u32,
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_max_fds: u32,
    pub fdtable_fd: u32,
    pub file_f_inode: u32,
    pub file_f_flags: u32,
    pub file_private_data: u32,
    pub inode_i_mode: u32,
    pub socket_sk: u32,
    pub sock_family: u32,
    pub sock_type: u32,
    pub sock_protocol: u32,
    pub skb_len: u32,
    pub skb_data_len: u32,
    pub skb_head: u32,
    pub skb_end: u32,
    pub shinfo_nr_frags: u32,
    pub request_data_len: u32,
    pub request_cmd_flags: u32,
    pub inode_i_rdev: u32,
    pub inode_i_sb: u32,
    pub super_block_s_magic: u32,
    pub sock_route_caps: u32,
    pub msghdr_flags: u32,
    pub skb_sk: u32,
    pub task_tgid: u32,
    /// For `--by fd` names: file -> f_path.dentry -> d_name.name, inode -> i_ino, and the
    /// socket's addresses (`skc_v6_*` are 0 on kernels built without IPv6).
    pub file_dentry: u32,
    pub dentry_name: u32,
    pub inode_i_ino: u32,
    pub sock_daddr: u32,
    pub sock_rcv_saddr: u32,
    pub sock_dport: u32,
    pub sock_num: u32,
    pub sock_v6_daddr: u32,
    pub sock_v6_rcv_saddr: u32,
    /// For `--by fd` paths: walking up dentries and across mounts (as d_path does).
    pub file_mnt: u32,
    pub dentry_parent: u32,
    pub vfsmount_mnt_root: u32,
    pub mount_mnt: u32,
    pub mount_mnt_parent: u32,
    pub mount_mnt_mountpoint: u32,
    /// The six syscall argument registers in `struct pt_regs`, in argument order.
    pub regs_args: [u32; 6],
    /// A socket's identity at transmit: `sock->sk_socket`, and from a `struct socket *` to
    /// its inode's `i_ino` (`struct socket_alloc` holds both). 0 when BTF lacks them.
    pub sock_socket: u32,
    pub socket_ino: u32,
    /// The user stack pointer and frame pointer in `struct pt_regs` (x86-64 `sp`, `bp`); 0
    /// where BTF lacks them (copy stacks then go without the leaf fix-up, see `StackKey`).
    pub regs_sp: u32,
    pub regs_fp: u32,
    /// `task_struct.__state` (`state` before 5.14), for `sched_switch` on kernels whose
    /// tracepoint does not pass `prev_state` (before 5.18); 0 where BTF has neither.
    pub task_state: u32,
    /// Not an offset: the architecture's `O_DIRECT` bit in `file->f_flags` (it differs
    /// between x86 and arm64), for telling O_DIRECT files apart.
    pub o_direct: u32,
}

/// How the syscall programs read kernel memory, chosen by user space before load.
///
/// `bpf_probe_read_kernel` costs a helper call per read. Kernels from 6.2 have the kfunc
/// `bpf_rdonly_cast`, which turns an untyped address into a pointer the verifier knows by its
/// BTF type: loads through it are plain moves (the kernel makes them fault-safe), no call.
/// aya cannot emit kfunc calls, so the programs call a placeholder helper number,
/// [`RDONLY_CAST_PLACEHOLDER`], that user space rewrites into the kfunc call (or, on the
/// helper-read path, into a register move the programs never reach).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TypedLoads {
    /// 1: typed loads (the placeholder is `bpf_rdonly_cast`); 0: helper reads.
    pub enabled: u32,
    /// BTF type ids, in the running kernel's vmlinux BTF, of the structs cast to.
    pub files_struct_id: u32,
    pub socket_id: u32,
    pub pt_regs_id: u32,
    /// `offsetof(struct files_struct, fd_array)`: an fd array slot is cast to a
    /// `files_struct` placed so that its `fd_array[0]` is the slot, which the verifier then
    /// types as a `struct file *`.
    pub files_fd_array: u32,
    /// `offsetof(struct task_struct, pid)` (0: unknown), on both paths: the task's ids are
    /// loads from the task pointer wherever BTF gave the offset.
    pub task_pid: u32,
    /// 1: the kernel has the `bpf_get_current_task_btf` helper (5.11+), so the walk from the
    /// current task to its fd table is plain loads on either read path; 0: helper reads from
    /// `bpf_get_current_task`.
    pub task_btf: u32,
}

/// The helper number the programs call where they mean `bpf_rdonly_cast` (see
/// [`TypedLoads`]); no kernel has a helper near it.
pub const RDONLY_CAST_PLACEHOLDER: u32 = 0x7a63_0001;

/// Where `io_uring:io_uring_complete` finds what it needs, from BTF (separate from
/// [`KernelOffsets`] because kernels without io_uring lack these structs).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct IoUringOffsets {
    pub valid: u32,
    pub req_opcode: u32,
    pub req_file: u32,
    pub cqe_res: u32,
    /// 1: the tracepoint passes `struct io_uring_cqe *` as argument 2 (5.19+ style);
    /// 0: it passes `int res` as argument 3 (older kernels).
    pub res_in_cqe: u32,
    /// Where a request keeps its user buffer, for pairing reads with writes (relays):
    /// 1 when the offsets below were found. `io_rw.addr` (buffer, or iovec array for the
    /// vectored opcodes) and `io_rw.len` (length, or iovec count), `io_sr_msg.buf` (buffer,
    /// or `user_msghdr *` for sendmsg/recvmsg), each from the start of `struct io_kiocb`.
    pub buf_valid: u32,
    pub rw_addr: u32,
    pub rw_len: u32,
    pub sr_buf: u32,
    /// `io_uring_cqe.flags` (with `res_in_cqe`; else the flags are argument 4).
    pub cqe_flags: u32,
    /// 1 when `io_notif_data.zc_report` was found (6.2+): whether a zero-copy send's
    /// notification reports if the kernel copied; its offset from the start of the
    /// notification's `struct io_kiocb`.
    pub notif_valid: u32,
    pub notif_report: u32,
}

/// Argument index meaning "this syscall has no such argument".
pub const NO_ARG: u8 = 0xff;

/// How a syscall number moves data: its [`OpClass`](crate::OpClass) and which arguments hold the source fd,
/// the destination fd and the flags. Written by user space (which knows the architecture's
/// numbering) so that the kernel programs are architecture-neutral.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SyscallDesc {
    pub class: u8,
    pub fd_in: u8,
    pub fd_out: u8,
    pub flags_arg: u8,
    /// The user buffer argument of read/write-like calls (to pair a send with the receive
    /// that filled its buffer, see [`relay`](crate::relay)); [`NO_ARG`] for the rest. For
    /// iovec and mmsghdr arrays the count is the next argument.
    pub buf_arg: u8,
    /// What `buf_arg` points to: one of [`relay::shape`](crate::relay::shape).
    pub buf_shape: u8,
    /// 1 for calls that never return to user space (exit, exit_group).
    pub no_return: u8,
}

impl SyscallDesc {
    pub const NONE: SyscallDesc = SyscallDesc {
        class: 0,
        fd_in: NO_ARG,
        fd_out: NO_ARG,
        flags_arg: NO_ARG,
        buf_arg: NO_ARG,
        buf_shape: 0,
        no_return: 0,
    };
}

/// The destination fd's argument position of sendfile(out_fd, in_fd, offset, count) and of
/// splice(fd_in, off_in, fd_out, off_out, len, flags), the same on every architecture: the
/// kernel programs read it at a constant position (see `SyscallDesc::fd_out`).
pub const SENDFILE_FD_OUT: u8 = 0;
pub const SPLICE_FD_OUT: u8 = 2;

/// Syscall numbers at or above this are class `Other`.
pub const SYSCALL_TABLE_LEN: usize = 512;

#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct SyscallTable {
    pub entries: [SyscallDesc; SYSCALL_TABLE_LEN],
}

impl SyscallTable {
    pub const EMPTY: SyscallTable = SyscallTable { entries: [SyscallDesc::NONE; SYSCALL_TABLE_LEN] };
}
