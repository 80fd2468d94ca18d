//! What each syscall does with data, by this architecture's numbering: the table the kernel
//! programs consult at `sys_enter` (the `SYSCALL_TABLE` global). Built here from syscall
//! names so that the kernel side stays architecture-neutral.
use zc_trace_common::{
    NO_ARG, OpClass, SYSCALL_TABLE_LEN, SyscallDesc, SyscallTable,
    relay::shape::{IOVEC, MMSGHDR, MSGHDR, PLAIN},
};

use crate::kernel::syscall_names;

/// (name, class, source-fd argument, destination-fd argument, flags argument, user buffer
/// argument, what the buffer argument is), arguments numbered from 0. Calls that return an
/// address or a count of operations (mmap, io_uring_enter) are classified for attribution
/// only; no bytes are derived from them. recvmmsg/sendmmsg return a count of messages: their
/// bytes are the messages' lengths, read at exit.
pub const DATA_SYSCALLS: &[(&str, OpClass, u8, u8, u8, u8, u8)] = &[
    ("read", OpClass::Read, 0, NO_ARG, NO_ARG, 1, PLAIN),
    ("pread64", OpClass::Read, 0, NO_ARG, NO_ARG, 1, PLAIN),
    ("readv", OpClass::Read, 0, NO_ARG, NO_ARG, 1, IOVEC),
    ("preadv", OpClass::Read, 0, NO_ARG, NO_ARG, 1, IOVEC),
    ("preadv2", OpClass::Read, 0, NO_ARG, NO_ARG, 1, IOVEC),
    ("write", OpClass::Write, NO_ARG, 0, NO_ARG, 1, PLAIN),
    ("pwrite64", OpClass::Write, NO_ARG, 0, NO_ARG, 1, PLAIN),
    ("writev", OpClass::Write, NO_ARG, 0, NO_ARG, 1, IOVEC),
    ("pwritev", OpClass::Write, NO_ARG, 0, NO_ARG, 1, IOVEC),
    ("pwritev2", OpClass::Write, NO_ARG, 0, NO_ARG, 1, IOVEC),
    ("sendfile", OpClass::Sendfile, 1, 0, NO_ARG, NO_ARG, PLAIN),
    ("splice", OpClass::Splice, 0, 2, 5, NO_ARG, PLAIN),
    ("tee", OpClass::Tee, 0, 1, 3, NO_ARG, PLAIN),
    ("vmsplice", OpClass::Vmsplice, 0, NO_ARG, 3, NO_ARG, PLAIN),
    ("copy_file_range", OpClass::CopyFileRange, 0, 2, 5, NO_ARG, PLAIN),
    ("sendto", OpClass::Send, NO_ARG, 0, 3, 1, PLAIN),
    ("sendmsg", OpClass::Send, NO_ARG, 0, 2, 1, MSGHDR),
    ("sendmmsg", OpClass::Send, NO_ARG, 0, 3, 1, MMSGHDR),
    ("recvfrom", OpClass::Recv, 0, NO_ARG, 3, 1, PLAIN),
    ("recvmsg", OpClass::Recv, 0, NO_ARG, 2, 1, MSGHDR),
    ("recvmmsg", OpClass::Recv, 0, NO_ARG, 3, 1, MMSGHDR),
    ("mmap", OpClass::Mmap, 4, NO_ARG, 3, NO_ARG, PLAIN),
    ("munmap", OpClass::Munmap, NO_ARG, NO_ARG, NO_ARG, NO_ARG, PLAIN),
    ("io_uring_enter", OpClass::IoUring, 0, NO_ARG, NO_ARG, NO_ARG, PLAIN),
];

/// Calls into the kernel that never come back to user space: one mode switch, not two.
pub const NO_RETURN: [&str; 2] = ["exit", "exit_group"];

pub fn build() -> SyscallTable {
    let mut table = SyscallTable::EMPTY;
    for entry in table.entries.iter_mut() {
        entry.class = OpClass::Other as u8;
    }
    for &(name, class, fd_in, fd_out, flags_arg, buf_arg, buf_shape) in DATA_SYSCALLS {
        // A name this architecture lacks (e.g. no `sendfile` alias) is simply not classified.
        if let Some(nr) = syscall_names::number(name).filter(|&nr| (nr as usize) < SYSCALL_TABLE_LEN) {
            table.entries[nr as usize] =
                SyscallDesc { class: class as u8, fd_in, fd_out, flags_arg, buf_arg, buf_shape, no_return: 0 };
        }
    }
    for name in NO_RETURN {
        if let Some(nr) = syscall_names::number(name).filter(|&nr| (nr as usize) < SYSCALL_TABLE_LEN) {
            table.entries[nr as usize].no_return = 1;
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x86_64_entries() {
        let t = build();
        let read = t.entries[0];
        assert_eq!((read.class, read.fd_in, read.fd_out), (OpClass::Read as u8, 0, NO_ARG));
        let sendfile = t.entries[40];
        assert_eq!((sendfile.class, sendfile.fd_in, sendfile.fd_out), (OpClass::Sendfile as u8, 1, 0));
        assert_eq!(t.entries[275].class, OpClass::Splice as u8);
        assert_eq!(t.entries[60].class, OpClass::Other as u8, "exit is not a data syscall");
    }

    #[cfg(target_arch = "aarch64")]
    #[test]
    fn aarch64_entries() {
        let t = build();
        let read = t.entries[63];
        assert_eq!((read.class, read.fd_in, read.fd_out), (OpClass::Read as u8, 0, NO_ARG));
        let sendfile = t.entries[71];
        assert_eq!((sendfile.class, sendfile.fd_in, sendfile.fd_out), (OpClass::Sendfile as u8, 1, 0));
        assert_eq!(t.entries[76].class, OpClass::Splice as u8);
        assert_eq!(t.entries[93].class, OpClass::Other as u8, "exit is not a data syscall");
        assert_eq!(t.entries[94].no_return, 1, "exit_group");
    }

    /// The kernel programs read these two at constant positions.
    #[test]
    fn sendfile_and_splice_destinations_are_where_the_kernel_programs_read_them() {
        let fd_out = |name: &str| DATA_SYSCALLS.iter().find(|e| e.0 == name).unwrap().3;
        assert_eq!(fd_out("sendfile"), zc_trace_common::SENDFILE_FD_OUT);
        assert_eq!(fd_out("splice"), zc_trace_common::SPLICE_FD_OUT);
    }

    #[test]
    fn every_name_exists_on_this_architecture() {
        for (name, ..) in DATA_SYSCALLS {
            assert!(syscall_names::number(name).is_some(), "{name}");
        }
    }
}
