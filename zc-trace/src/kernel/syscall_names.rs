//! Syscall numbers to names, for the architecture zc-trace was built for (the kernel reports
//! the native numbering in `raw_syscalls:sys_enter`).

/// The syscall's name, or `syscall_N` for a number this table does not know (newer kernel).
pub fn name(nr: u32) -> String {
    syscalls::Sysno::new(nr as usize).map(|s| s.name().to_string()).unwrap_or_else(|| format!("syscall_{nr}"))
}

/// The number of a named syscall on this architecture.
pub fn number(name: &str) -> Option<u32> {
    name.parse::<syscalls::Sysno>().ok().map(|s| s.id() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x86_64_numbers() {
        assert_eq!(name(0), "read");
        assert_eq!(name(1), "write");
        assert_eq!(name(40), "sendfile");
        assert_eq!(name(275), "splice");
        assert_eq!(name(326), "copy_file_range");
        assert_eq!(name(426), "io_uring_enter");
        assert_eq!(number("read"), Some(0));
        assert_eq!(number("sendfile"), Some(40));
    }

    /// arm64 has the generic numbering (include/uapi/asm-generic/unistd.h).
    #[cfg(target_arch = "aarch64")]
    #[test]
    fn aarch64_numbers() {
        assert_eq!(name(63), "read");
        assert_eq!(name(64), "write");
        assert_eq!(name(71), "sendfile");
        assert_eq!(name(76), "splice");
        assert_eq!(name(285), "copy_file_range");
        assert_eq!(name(426), "io_uring_enter");
        assert_eq!(number("read"), Some(63));
        assert_eq!(number("sendfile"), Some(71));
    }

    #[test]
    fn unknown_numbers_are_named_by_number() {
        assert_eq!(name(9999), "syscall_9999");
    }

    #[test]
    fn names_round_trip() {
        for call in ["read", "sendfile", "splice", "io_uring_enter"] {
            assert_eq!(number(call).map(name).as_deref(), Some(call));
        }
        assert_eq!(number("no_such_call"), None);
    }
}
