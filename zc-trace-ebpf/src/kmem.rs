//! Reading kernel memory at offsets resolved from the running kernel's BTF (see
//! `KernelOffsets`), and classifying file descriptors with it.

use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};
use zc_trace_common::{FdKind, KernelOffsets};

#[unsafe(no_mangle)]
pub static OFFSETS: KernelOffsets = KernelOffsets {
    valid: 0,
    task_files: 0,
    files_fdt: 0,
    fdtable_max_fds: 0,
    fdtable_fd: 0,
    file_f_inode: 0,
    file_f_flags: 0,
    file_private_data: 0,
    inode_i_mode: 0,
    socket_sk: 0,
    sock_family: 0,
    sock_type: 0,
    sock_protocol: 0,
    skb_len: 0,
    skb_data_len: 0,
    skb_head: 0,
    skb_end: 0,
    shinfo_nr_frags: 0,
    request_data_len: 0,
    request_cmd_flags: 0,
    inode_i_rdev: 0,
    inode_i_sb: 0,
    super_block_s_magic: 0,
    sock_route_caps: 0,
    msghdr_flags: 0,
    skb_sk: 0,
    task_tgid: 0,
    regs_args: [0; 6],
};

/// One offset, read from the global at run time. Volatile: the compiler must not fold the
/// zero initializer in (user space writes the real values before load), and reading one
/// field is much cheaper than copying the whole struct onto the 512-byte stack.
macro_rules! off {
    ($field:ident) => {
        unsafe { core::ptr::read_volatile(&$crate::kmem::OFFSETS.$field) }
    };
    ($field:ident[$i:expr]) => {
        unsafe { core::ptr::read_volatile(&$crate::kmem::OFFSETS.$field[$i]) }
    };
}
pub(crate) use off;

/// All offsets at once, for probes off the hot path.
#[inline(always)]
pub fn offsets() -> KernelOffsets {
    unsafe { core::ptr::read_volatile(&OFFSETS) }
}

/// Reads a `T` at `base + offset`; `None` for a null base or an unreadable address.
#[inline(always)]
pub fn read<T: Copy>(base: u64, offset: u32) -> Option<T> {
    if base == 0 {
        return None;
    }
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T) }.ok()
}

const S_IFMT: u16 = 0o170000;
const S_IFREG: u16 = 0o100000;
const S_IFIFO: u16 = 0o010000;
const S_IFSOCK: u16 = 0o140000;
const S_IFCHR: u16 = 0o020000;
/// O_DIRECT on x86-64 (and most architectures; arm64 differs and would need its own value).
const O_DIRECT: u32 = 0o40000;
const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;
/// MKDEV(1, 3) in the kernel's internal dev_t encoding (major << 20 | minor).
const DEV_NULL: u32 = (1 << 20) | 3;

/// The `struct file *` behind `fd` in the current task's fd table, read at this moment: an
/// fd closed and reused a microsecond later is classified as what it is now.
#[inline(always)]
pub fn current_file(fd: u64) -> Option<u64> {
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read(task, off!(task_files))?;
    let fdt: u64 = read(files, off!(files_fdt))?;
    let max_fds: u32 = read(fdt, off!(fdtable_max_fds))?;
    if fd >= max_fds as u64 {
        return None;
    }
    let fd_array: u64 = read(fdt, off!(fdtable_fd))?;
    let file: u64 = read(fd_array, (fd * 8) as u32)?;
    (file != 0).then_some(file)
}

#[inline(always)]
pub fn fd_kind(fd: u64) -> FdKind {
    if off!(valid) == 0 || fd > i32::MAX as u64 {
        return FdKind::Unknown;
    }
    current_file(fd).and_then(classify_file).unwrap_or(FdKind::Unknown)
}

/// The kind of an open file, from its `struct file *`.
#[inline(always)]
pub fn file_kind(file: u64) -> FdKind {
    if off!(valid) == 0 {
        return FdKind::Unknown;
    }
    classify_file(file).unwrap_or(FdKind::Unknown)
}

#[inline(always)]
fn classify_file(file: u64) -> Option<FdKind> {
    let inode: u64 = read(file, off!(file_f_inode))?;
    let mode: u16 = read(inode, off!(inode_i_mode))?;
    Some(match mode & S_IFMT {
        S_IFREG => {
            let flags: u32 = read(file, off!(file_f_flags))?;
            if flags & O_DIRECT != 0 { FdKind::FileDirect } else { FdKind::File }
        }
        S_IFIFO => FdKind::Pipe,
        S_IFSOCK => socket_kind(file)?,
        S_IFCHR => {
            let rdev: u32 = read(inode, off!(inode_i_rdev))?;
            if rdev == DEV_NULL { FdKind::DevNull } else { FdKind::CharDevice }
        }
        _ => FdKind::Other,
    })
}

#[inline(always)]
fn socket_kind(file: u64) -> Option<FdKind> {
    // For socket files, file->private_data is the `struct socket`.
    let socket: u64 = read(file, off!(file_private_data))?;
    let sk: u64 = read(socket, off!(socket_sk))?;
    let family: u16 = read(sk, off!(sock_family))?;
    let protocol: u16 = read(sk, off!(sock_protocol))?;
    Some(match family {
        AF_UNIX => FdKind::Unix,
        AF_INET | AF_INET6 if protocol == IPPROTO_TCP => FdKind::Tcp,
        AF_INET | AF_INET6 if protocol == IPPROTO_UDP => FdKind::Udp,
        _ => FdKind::OtherSocket,
    })
}

/// The magic number of the file system holding `fd` (e.g. 0xEF53 for ext4).
#[inline(always)]
pub fn fs_magic(fd: u64) -> Option<u64> {
    let file = current_file(fd)?;
    let inode: u64 = read(file, off!(file_f_inode))?;
    let sb: u64 = read(inode, off!(inode_i_sb))?;
    read(sb, off!(super_block_s_magic))
}

/// NETIF_F_SG: bit 0 of netdev_features_t.
const NETIF_F_SG: u64 = 1;

/// Whether the socket's route goes through a device that can gather (scatter-gather DMA):
/// TCP takes spliced pages by reference only then (`tcp_sendmsg_locked`), and copies them
/// into the socket buffer otherwise.
#[inline(always)]
pub fn sock_can_gather(sk: u64) -> bool {
    read::<u64>(sk, off!(sock_route_caps)).is_some_and(|caps| caps & NETIF_F_SG != 0)
}

/// The `struct sock *` behind socket `fd` of the current task.
#[inline(always)]
pub fn fd_sock(fd: u64) -> Option<u64> {
    file_sock(current_file(fd)?)
}

/// The `struct sock *` of a socket file.
#[inline(always)]
pub fn file_sock(file: u64) -> Option<u64> {
    let socket: u64 = read(file, off!(file_private_data))?;
    read(socket, off!(socket_sk))
}
