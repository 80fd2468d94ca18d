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

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn x86_64_numbers() {
        assert_eq!(name(0), "read");
        assert_eq!(name(1), "write");
        assert_eq!(name(40), "sendfile");
        assert_eq!(name(275), "splice");
        assert_eq!(name(326), "copy_file_range");
        assert_eq!(name(426), "io_uring_enter");
    }

    #[test]
    fn unknown_numbers_are_named_by_number() {
        assert_eq!(name(9999), "syscall_9999");
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(number("read"), Some(0));
        assert_eq!(number("sendfile"), Some(40));
        assert_eq!(number("no_such_call"), None);
    }
}
