//! What an fd is, from the fields of its `struct file` and inode: the decision behind
//! [`FdKind`]. The kernel programs (`zc-trace-ebpf/src/kmem.rs`) do the memory reads and
//! answer [`FileFields`]; the decision is here, so that the host can test it.
//!
//! Each field is asked for only when the file type needs it (a regular file's `f_flags`, a
//! character device's `i_rdev`, a socket's family and protocol): every answer is a kernel
//! memory read on the eBPF side. A field that cannot be read makes the kind unknown.

use crate::{
    FdKind,
    linux::{
        AF_INET, AF_INET6, AF_UNIX, DEV_NULL, IPPROTO_TCP, IPPROTO_UDP, S_IFCHR, S_IFIFO, S_IFMT, S_IFREG, S_IFSOCK,
    },
};

/// The fields of an open file that its kind depends on besides `inode->i_mode`; `None` when
/// unreadable.
pub trait FileFields {
    /// `file->f_flags`.
    fn f_flags(&self) -> Option<u32>;
    /// The `O_DIRECT` bit of `f_flags` on this architecture (not a memory read: a constant
    /// user space sets before load, since it differs by architecture, see `linux::O_DIRECT`).
    fn o_direct(&self) -> u32;
    /// `inode->i_rdev`, in the kernel's internal dev_t encoding.
    fn i_rdev(&self) -> Option<u32>;
    /// A socket file's `sk->sk_family` and `sk->sk_protocol`.
    fn sock_family_protocol(&self) -> Option<(u16, u16)>;
}

/// The kind of an open file whose inode has mode `i_mode`; `None` when a field it needs could
/// not be read.
#[inline(always)]
pub fn classify<F: FileFields>(i_mode: u16, file: &F) -> Option<FdKind> {
    Some(match i_mode & S_IFMT {
        S_IFREG => regular_file_kind(file.f_flags()?, file.o_direct()),
        S_IFIFO => FdKind::Pipe,
        S_IFSOCK => {
            let (family, protocol) = file.sock_family_protocol()?;
            socket_kind(family, protocol)
        }
        S_IFCHR => char_device_kind(file.i_rdev()?),
        _ => FdKind::Other,
    })
}

/// A regular file: O_DIRECT I/O bypasses the page cache (the device DMAs to or from user
/// memory), so it is a kind of its own.
#[inline(always)]
pub const fn regular_file_kind(f_flags: u32, o_direct: u32) -> FdKind {
    if f_flags & o_direct != 0 { FdKind::FileDirect } else { FdKind::File }
}

/// A character device: /dev/null apart, because `write_null()` returns the count without
/// touching the buffer (no copy), unlike other drivers.
#[inline(always)]
pub const fn char_device_kind(i_rdev: u32) -> FdKind {
    if i_rdev == DEV_NULL { FdKind::DevNull } else { FdKind::CharDevice }
}

/// A socket, by family and protocol: TCP and UDP over IPv4 or IPv6, UNIX of any type, and
/// the rest (raw, netlink, SCTP, ...).
#[inline(always)]
pub const fn socket_kind(family: u16, protocol: u16) -> FdKind {
    match family {
        AF_UNIX => FdKind::Unix,
        AF_INET | AF_INET6 if protocol == IPPROTO_TCP => FdKind::Tcp,
        AF_INET | AF_INET6 if protocol == IPPROTO_UDP => FdKind::Udp,
        _ => FdKind::OtherSocket,
    }
}

#[cfg(test)]
mod tests {
    use core::cell::Cell;

    use super::*;
    use crate::{FdKind::*, linux::O_DIRECT};

    /// A file whose fields are given (`None`: unreadable), counting which were asked for.
    #[derive(Default)]
    struct Fields {
        f_flags: Option<u32>,
        i_rdev: Option<u32>,
        sock: Option<(u16, u16)>,
        asked: Cell<[u32; 3]>,
    }

    impl Fields {
        fn ask(&self, field: usize) {
            let mut asked = self.asked.get();
            asked[field] += 1;
            self.asked.set(asked);
        }
    }

    impl FileFields for Fields {
        fn f_flags(&self) -> Option<u32> {
            self.ask(0);
            self.f_flags
        }
        fn o_direct(&self) -> u32 {
            O_DIRECT
        }
        fn i_rdev(&self) -> Option<u32> {
            self.ask(1);
            self.i_rdev
        }
        fn sock_family_protocol(&self) -> Option<(u16, u16)> {
            self.ask(2);
            self.sock
        }
    }

    const O_RDWR: u32 = 2;
    const O_WRONLY_APPEND: u32 = 0o1 | 0o2000;
    const S_IFDIR: u16 = 0o040000;
    const S_IFBLK: u16 = 0o060000;
    const S_IFLNK: u16 = 0o120000;
    const AF_NETLINK: u16 = 16;
    const AF_PACKET: u16 = 17;
    const AF_VSOCK: u16 = 40;
    const IPPROTO_ICMP: u16 = 1;
    const IPPROTO_SCTP: u16 = 132;
    const IPPROTO_RAW: u16 = 255;
    /// MKDEV in the kernel's internal encoding.
    const fn mkdev(major: u32, minor: u32) -> u32 {
        (major << 20) | minor
    }

    fn regular(f_flags: u32) -> Fields {
        Fields { f_flags: Some(f_flags), ..Default::default() }
    }
    fn char_device(rdev: u32) -> Fields {
        Fields { i_rdev: Some(rdev), ..Default::default() }
    }
    fn socket(family: u16, protocol: u16) -> Fields {
        Fields { sock: Some((family, protocol)), ..Default::default() }
    }

    #[test]
    fn kinds_from_mode_flags_rdev_and_socket() {
        // (i_mode with permission bits, fields, expected kind, the one field it reads)
        let rows: [(u16, Fields, Option<FdKind>, Option<usize>); 30] = [
            (S_IFREG | 0o644, regular(O_RDWR), Some(File), Some(0)),
            (S_IFREG | 0o600, regular(O_WRONLY_APPEND), Some(File), Some(0)),
            (S_IFREG | 0o644, regular(O_DIRECT), Some(FileDirect), Some(0)),
            (S_IFREG | 0o644, regular(O_DIRECT | O_RDWR), Some(FileDirect), Some(0)),
            (S_IFREG | 0o644, Fields::default(), None, Some(0)),
            // Permission and setuid bits do not change the type.
            (S_IFREG | 0o7777, regular(0), Some(File), Some(0)),
            (S_IFIFO | 0o600, Fields::default(), Some(Pipe), None),
            (S_IFSOCK | 0o777, socket(AF_INET, IPPROTO_TCP), Some(Tcp), Some(2)),
            (S_IFSOCK | 0o777, socket(AF_INET6, IPPROTO_TCP), Some(Tcp), Some(2)),
            (S_IFSOCK | 0o777, socket(AF_INET, IPPROTO_UDP), Some(Udp), Some(2)),
            (S_IFSOCK | 0o777, socket(AF_INET6, IPPROTO_UDP), Some(Udp), Some(2)),
            // UNIX sockets report protocol 0, whatever their type.
            (S_IFSOCK | 0o777, socket(AF_UNIX, 0), Some(Unix), Some(2)),
            (S_IFSOCK | 0o777, socket(AF_UNIX, IPPROTO_TCP), Some(Unix), Some(2)),
            (S_IFSOCK | 0o777, socket(AF_INET, IPPROTO_ICMP), Some(OtherSocket), Some(2)),
            (S_IFSOCK | 0o777, socket(AF_INET, IPPROTO_SCTP), Some(OtherSocket), Some(2)),
            (S_IFSOCK | 0o777, socket(AF_INET6, IPPROTO_RAW), Some(OtherSocket), Some(2)),
            (S_IFSOCK | 0o777, socket(AF_NETLINK, 0), Some(OtherSocket), Some(2)),
            (S_IFSOCK | 0o777, socket(AF_PACKET, 0x0300), Some(OtherSocket), Some(2)),
            (S_IFSOCK | 0o777, socket(AF_VSOCK, IPPROTO_TCP), Some(OtherSocket), Some(2)),
            (S_IFSOCK | 0o777, Fields::default(), None, Some(2)),
            (S_IFCHR | 0o666, char_device(DEV_NULL), Some(DevNull), Some(1)),
            (S_IFCHR | 0o666, char_device(mkdev(1, 3)), Some(DevNull), Some(1)),
            // /dev/zero, /dev/urandom, a pty.
            (S_IFCHR | 0o666, char_device(mkdev(1, 5)), Some(CharDevice), Some(1)),
            (S_IFCHR | 0o666, char_device(mkdev(1, 9)), Some(CharDevice), Some(1)),
            (S_IFCHR | 0o620, char_device(mkdev(136, 0)), Some(CharDevice), Some(1)),
            // The user-space encoding of 1:3 (0x103) is not the kernel's i_rdev.
            (S_IFCHR | 0o666, char_device(0x103), Some(CharDevice), Some(1)),
            (S_IFCHR | 0o666, Fields::default(), None, Some(1)),
            (S_IFDIR | 0o755, Fields::default(), Some(Other), None),
            (S_IFBLK | 0o660, Fields::default(), Some(Other), None),
            (S_IFLNK | 0o777, Fields::default(), Some(Other), None),
        ];
        for (mode, fields, expected, reads) in rows {
            assert_eq!(classify(mode, &fields), expected, "mode {mode:o}");
            let mut want = [0; 3];
            if let Some(field) = reads {
                want[field] = 1;
            }
            assert_eq!(fields.asked.get(), want, "mode {mode:o}: fields read");
        }
        // Anonymous inodes (eventfd, epoll, io_uring) have no file type bits.
        let anon = Fields::default();
        assert_eq!(classify(0o600, &anon), Some(Other));
        assert_eq!(anon.asked.get(), [0; 3]);
    }

    #[test]
    fn every_file_type_value_is_classified() {
        // All 16 values of the type nibble: the five known types and Other for the rest.
        let all = Fields { f_flags: Some(0), i_rdev: Some(0), sock: Some((AF_UNIX, 0)), ..Default::default() };
        let mut seen = [0usize; FdKind::COUNT];
        for nibble in 0..16u16 {
            let kind = classify(nibble << 12, &all).expect("every field readable");
            seen[kind as usize] += 1;
        }
        assert_eq!(
            (seen[File as usize], seen[Pipe as usize], seen[Unix as usize], seen[CharDevice as usize]),
            (1, 1, 1, 1)
        );
        assert_eq!(seen[Other as usize], 12);
    }
}
