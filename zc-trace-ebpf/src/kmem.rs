//! Reading kernel memory at offsets resolved from the running kernel's BTF (see
//! `KernelOffsets`), and classifying file descriptors with it (the reads are here, the
//! decision is `zc_trace_common::classify`).

use crate::typed::{self, typed};
use aya_ebpf::helpers::{
    bpf_get_current_task, bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes, generated,
};
use zc_trace_common::{
    FdIdentity, FdKind, KernelOffsets, PATH_DEPTH,
    classify::{FileFields, classify},
    linux::{AF_INET, AF_INET6},
};

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
    file_dentry: 0,
    dentry_name: 0,
    inode_i_ino: 0,
    sock_daddr: 0,
    sock_rcv_saddr: 0,
    sock_dport: 0,
    sock_num: 0,
    sock_v6_daddr: 0,
    sock_v6_rcv_saddr: 0,
    file_mnt: 0,
    dentry_parent: 0,
    vfsmount_mnt_root: 0,
    mount_mnt: 0,
    mount_mnt_parent: 0,
    mount_mnt_mountpoint: 0,
    regs_args: [0; 6],
    sock_socket: 0,
    socket_ino: 0,
    regs_sp: 0,
    regs_fp: 0,
    task_state: 0,
    o_direct: 0,
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

/// The `struct file *` behind `fd` in the current task's fd table, read at this moment: an
/// fd closed and reused a microsecond later is classified as what it is now.
///
/// `task->files->fdt->{max_fds, fd}` are plain loads: `bpf_get_current_task_btf()` returns a
/// pointer the verifier knows as `struct task_struct`, and the offsets (from the read-only,
/// frozen `OFFSETS`) are constants to it, so it checks each load against the kernel's BTF and
/// turns it into a fault-safe move instead of a `bpf_probe_read_kernel` call (~25 ns each
/// here). The fd array holds `struct file *`s, which the verifier does not type: that read
/// and the ones after it go through the helper.
///
/// Kernels without `bpf_get_current_task_btf` (before 5.11) walk the same chain with helper
/// reads from `bpf_get_current_task`; `TYPED_LOADS.task_btf` is a constant to the verifier,
/// which never explores (and the kernel then drops) the path this kernel cannot have.
#[inline(always)]
pub fn current_file(fd: u64) -> Option<u64> {
    let (o_files, o_fdt, o_max, o_fd) = (off!(task_files), off!(files_fdt), off!(fdtable_max_fds), off!(fdtable_fd));
    let (max_fds, fd_array) = if typed!(task_btf) != 0 {
        let task = unsafe { bpf_get_current_task_btf() } as *const u8;
        let files = unsafe { load::<*const u8>(task, o_files) };
        if files.is_null() {
            return None;
        }
        let fdt = unsafe { load::<*const u8>(files, o_fdt) };
        if fdt.is_null() {
            return None;
        }
        unsafe { (load::<u32>(fdt, o_max), load::<u64>(fdt, o_fd)) }
    } else {
        // Reads that cannot fail, not `read`s that return None: a chain of reads that each
        // fork the verifier's paths was more than 5.10's verifier could explore (1M insns in
        // zc_sys_enter). An unreadable pointer reads as 0, and the reads after it as 0 too,
        // so an fd table that is not there has 0 fds.
        let task = unsafe { bpf_get_current_task() };
        let files: u64 = read_or_zero(task, o_files);
        let fdt: u64 = read_or_zero(files, o_fdt);
        (read_or_zero::<u32>(fdt, o_max), read_or_zero::<u64>(fdt, o_fd))
    };
    if fd >= max_fds as u64 {
        return None;
    }
    let file: u64 = read(fd_array, (fd * 8) as u32)?;
    (file != 0).then_some(file)
}

/// A `T` at `base + offset`, or 0 (all zero bytes) when unreadable: the kernel zeroes the
/// destination of a failed read, so the caller has one path where `read` gives two.
#[inline(always)]
fn read_or_zero<T: Copy + Default>(base: u64, offset: u32) -> T {
    let mut value = T::default();
    // SAFETY: the helper writes at most size_of::<T>() bytes into `value`, zeroes on failure.
    unsafe {
        generated::bpf_probe_read_kernel(
            (&mut value as *mut T).cast(),
            core::mem::size_of::<T>() as u32,
            (base.wrapping_add(offset as u64)) as *const core::ffi::c_void,
        )
    };
    value
}

/// A direct load of a `T` at `base + offset`, for `base` a BTF-typed kernel pointer (see
/// `current_file`); the verifier rejects the program if `base` is not one.
#[inline(always)]
unsafe fn load<T: Copy>(base: *const u8, offset: u32) -> T {
    unsafe { core::ptr::read_volatile(base.add(offset as usize) as *const T) }
}

/// With typed loads: a socket file's `struct sock *` (0 if unreadable) and whether its route
/// can gather.
#[inline(always)]
pub fn typed_socket(file: u64) -> (u64, bool) {
    let sk = typed_sock(file as *const u8);
    let caps = if sk.is_null() { 0 } else { typed::load::<u64>(sk, off!(sock_route_caps)) };
    (sk as u64, caps & NETIF_F_SG != 0)
}

/// `file_sock` by typed loads: a socket file's `private_data` is its `struct socket`, cast so
/// that its `sk` is typed (null if unset).
#[inline(always)]
fn typed_sock(file: *const u8) -> *const u8 {
    let socket = typed::cast(typed::load::<u64>(file, off!(file_private_data)), typed!(socket_id));
    typed::load::<*const u8>(socket, off!(socket_sk))
}

/// `fd_file_kind` by typed loads (`typed.rs`): the `struct file *` behind `fd` (0 if none) of
/// the current task, `task` (`bpf_get_current_task_btf()`), and its kind. The task's fd array
/// slot is cast so that the verifier types the pointer in it, and every read after that is a
/// load.
#[inline(always)]
pub fn typed_fd(task: *const u8, fd: u64) -> (u64, FdKind) {
    if off!(valid) == 0 || fd > i32::MAX as u64 {
        return (0, FdKind::Unknown);
    }
    let files = typed::load::<*const u8>(task, off!(task_files));
    if files.is_null() {
        return (0, FdKind::Unknown);
    }
    let fdt = typed::load::<*const u8>(files, off!(files_fdt));
    if fdt.is_null() || fd >= typed::load::<u32>(fdt, off!(fdtable_max_fds)) as u64 {
        return (0, FdKind::Unknown);
    }
    // `fdt->fd` is a `struct file **`, which the verifier gives as a number: the slot's
    // address, minus where `fd_array` sits in a `files_struct`, cast to a `files_struct`, has
    // the slot as its `fd_array[0]`, a `struct file *` to the verifier.
    let slot = typed::load::<u64>(fdt, off!(fdtable_fd)) + fd * 8;
    let shifted = typed::cast(slot.wrapping_sub(typed!(files_fd_array) as u64), typed!(files_struct_id));
    let file = typed::load::<*const u8>(shifted, typed!(files_fd_array));
    if file.is_null() {
        return (0, FdKind::Unknown);
    }
    let inode = typed::load::<*const u8>(file, off!(file_f_inode));
    if inode.is_null() {
        return (file as u64, FdKind::Unknown);
    }
    let mode = typed::load::<u16>(inode, off!(inode_i_mode));
    let kind = classify(mode, &TypedFile { file, inode }).unwrap_or(FdKind::Unknown);
    (file as u64, kind)
}

/// An open file and its inode as typed pointers, read field by field as `classify` asks.
struct TypedFile {
    file: *const u8,
    inode: *const u8,
}

impl FileFields for TypedFile {
    #[inline(always)]
    fn o_direct(&self) -> u32 {
        off!(o_direct)
    }

    #[inline(always)]
    fn f_flags(&self) -> Option<u32> {
        Some(typed::load(self.file, off!(file_f_flags)))
    }

    #[inline(always)]
    fn i_rdev(&self) -> Option<u32> {
        Some(typed::load(self.inode, off!(inode_i_rdev)))
    }

    #[inline(always)]
    fn sock_family_protocol(&self) -> Option<(u16, u16)> {
        let sk = typed_sock(self.file);
        if sk.is_null() {
            return None;
        }
        Some((typed::load(sk, off!(sock_family)), typed::load(sk, off!(sock_protocol))))
    }
}

/// The `struct file *` behind `fd` (0 if none) and its kind, by helper reads.
#[inline(always)]
pub fn fd_file_kind(fd: u64) -> (u64, FdKind) {
    if off!(valid) == 0 || fd > i32::MAX as u64 {
        return (0, FdKind::Unknown);
    }
    let Some(file) = current_file(fd) else { return (0, FdKind::Unknown) };
    (file, classify_file(file).unwrap_or(FdKind::Unknown))
}

/// The inode number of an open file (0 if unreadable).
#[inline(always)]
pub fn file_ino(file: u64) -> u64 {
    read::<u64>(file, off!(file_f_inode)).and_then(|inode| read::<u64>(inode, off!(inode_i_ino))).unwrap_or(0)
}

/// Fills `id` with what names the open file `file` of kind `kind` for a person: a socket's
/// addresses, or the file's last path component.
#[inline(always)]
pub fn describe_file(file: u64, kind: FdKind, id: &mut FdIdentity) {
    id.kind = kind as u8;
    if matches!(kind, FdKind::Tcp | FdKind::Udp) {
        let Some(sk) = file_sock(file) else { return };
        let family: u16 = read(sk, off!(sock_family)).unwrap_or(0);
        id.family = family;
        id.local_port = read::<u16>(sk, off!(sock_num)).unwrap_or(0);
        id.peer_port = u16::from_be(read::<u16>(sk, off!(sock_dport)).unwrap_or(0));
        if family == AF_INET {
            id.local_addr[..4].copy_from_slice(&read::<[u8; 4]>(sk, off!(sock_rcv_saddr)).unwrap_or([0; 4]));
            id.peer_addr[..4].copy_from_slice(&read::<[u8; 4]>(sk, off!(sock_daddr)).unwrap_or([0; 4]));
        } else if family == AF_INET6 && off!(sock_v6_daddr) != 0 {
            id.local_addr = read(sk, off!(sock_v6_rcv_saddr)).unwrap_or([0; 16]);
            id.peer_addr = read(sk, off!(sock_v6_daddr)).unwrap_or([0; 16]);
        }
        return;
    }
    file_path(file, id);
}

/// The path of an open file, as `d_path` finds it: up the dentries to the root of their
/// mount, then from the mount point in the parent mount, until the root of the mount tree.
/// Component by component, last first; at most `PATH_DEPTH` of them.
#[inline(always)]
fn file_path(file: u64, id: &mut FdIdentity) {
    let (Some(mut dentry), Some(vfsmount)) = (read::<u64>(file, off!(file_dentry)), read::<u64>(file, off!(file_mnt)))
    else {
        return;
    };
    // struct vfsmount is embedded in struct mount.
    let mut mount = vfsmount.wrapping_sub(off!(mount_mnt) as u64);
    let mut depth = 0usize;
    // Mount hops do not add a component: allow a few more steps than components.
    for _ in 0..PATH_DEPTH + 4 {
        let root: u64 = read(mount + off!(mount_mnt) as u64, off!(vfsmount_mnt_root)).unwrap_or(0);
        if dentry == root {
            let parent: u64 = read(mount, off!(mount_mnt_parent)).unwrap_or(mount);
            if parent == mount {
                id.depth = depth as u8;
                return; // the root of the mount tree
            }
            dentry = read(mount, off!(mount_mnt_mountpoint)).unwrap_or(0);
            mount = parent;
            continue;
        }
        if depth >= PATH_DEPTH {
            break;
        }
        let name: u64 = read(dentry, off!(dentry_name)).unwrap_or(0);
        if name != 0 {
            // SAFETY: the helper bounds the copy to the component and NUL-terminates it.
            let _ = unsafe { bpf_probe_read_kernel_str_bytes(name as *const u8, &mut id.path[depth]) };
        }
        depth += 1;
        let parent: u64 = read(dentry, off!(dentry_parent)).unwrap_or(0);
        if parent == 0 || parent == dentry {
            id.depth = depth as u8; // a dentry that is its own parent: a filesystem root
            return;
        }
        dentry = parent;
    }
    id.depth = depth as u8;
    id.truncated = 1;
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
    classify(mode, &OpenFile { file, inode })
}

/// An open file and its inode, read field by field as `classify` asks.
struct OpenFile {
    file: u64,
    inode: u64,
}

impl FileFields for OpenFile {
    #[inline(always)]
    fn o_direct(&self) -> u32 {
        off!(o_direct)
    }

    #[inline(always)]
    fn f_flags(&self) -> Option<u32> {
        read(self.file, off!(file_f_flags))
    }

    #[inline(always)]
    fn i_rdev(&self) -> Option<u32> {
        read(self.inode, off!(inode_i_rdev))
    }

    #[inline(always)]
    fn sock_family_protocol(&self) -> Option<(u16, u16)> {
        // For socket files, file->private_data is the `struct socket`.
        let sk = file_sock(self.file)?;
        let family: u16 = read(sk, off!(sock_family))?;
        let protocol: u16 = read(sk, off!(sock_protocol))?;
        Some((family, protocol))
    }
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

/// The `struct sock *` of a socket file.
#[inline(always)]
pub fn file_sock(file: u64) -> Option<u64> {
    let socket: u64 = read(file, off!(file_private_data))?;
    read(socket, off!(socket_sk))
}
