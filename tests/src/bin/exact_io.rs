//! A workload whose system calls are known exactly, for the integration tests:
//! `zc-exact-io FILE CHUNK [--wait]` reads FILE in CHUNK-byte read(2) calls until one returns
//! 0 and writes every chunk to /dev/null with one write(2) each. Nothing else reads or writes.
//!
//! With `--wait` it prints `ready` and blocks in poll(2) on stdin (it never reads it) until
//! the test has attached zc-trace and closes or writes to stdin; then it does the I/O.
use std::ffi::CString;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: zc-exact-io FILE CHUNK [--wait]");
        std::process::exit(2);
    }
    let chunk: usize = args[2].parse().expect("CHUNK must be a number");
    let wait = args.get(3).is_some_and(|a| a == "--wait");
    let path = CString::new(args[1].as_str()).unwrap();
    let null = CString::new("/dev/null").unwrap();
    let mut buf = vec![0u8; chunk];
    // SAFETY: raw syscalls on valid buffers; raw so that each call is exactly one syscall.
    unsafe {
        let src = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        let dst = libc::open(null.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        assert!(src >= 0 && dst >= 0, "cannot open {}", args[1]);
        if wait {
            zc_trace_tests::announce_ready_and_wait();
        }
        loop {
            let n = libc::read(src, buf.as_mut_ptr().cast(), chunk);
            assert!(n >= 0, "read failed");
            if n == 0 {
                break;
            }
            let w = libc::write(dst, buf.as_ptr().cast(), n as usize);
            assert_eq!(w, n, "short write to /dev/null");
        }
    }
}
