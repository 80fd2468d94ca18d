//! `zc-fd-kinds N DIR`: opens, uses and closes N short-lived fds of rotating kinds, so that
//! the same fd numbers are reused for a different kind every few microseconds:
//!   i % 5 == 0: a regular file in DIR, read(2) 100 bytes, then a read at EOF
//!   i % 5 == 1: a pipe, 10 bytes written and read back
//!   i % 5 == 2: a UNIX socket pair, 10 bytes written and read back
//!   i % 5 == 3: /dev/zero, 16 bytes read
//!   i % 5 == 4: /dev/null, 16 bytes written
//! Prints `ready` and waits in poll(2) on stdin first (see zc-exact-io).
use std::ffi::CString;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args[1].parse().expect("N");
    let dir = &args[2];
    let file = CString::new(format!("{dir}/small")).unwrap();
    std::fs::write(format!("{dir}/small"), [b'x'; 100]).unwrap();
    let zero = CString::new("/dev/zero").unwrap();
    let null = CString::new("/dev/null").unwrap();
    let mut buf = [0u8; 128];
    zc_trace_tests::announce_ready_and_wait();
    // SAFETY: raw syscalls on valid buffers and fds we own; each call is exactly one syscall.
    unsafe {
        for i in 0..n {
            match i % 5 {
                0 => {
                    let fd = libc::open(file.as_ptr(), libc::O_RDONLY);
                    assert_eq!(libc::read(fd, buf.as_mut_ptr().cast(), 128), 100);
                    assert_eq!(libc::read(fd, buf.as_mut_ptr().cast(), 128), 0);
                    libc::close(fd);
                }
                1 | 2 => {
                    let mut fds = [0; 2];
                    if i % 5 == 1 {
                        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
                    } else {
                        assert_eq!(libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()), 0);
                    }
                    assert_eq!(libc::write(fds[1], buf.as_ptr().cast(), 10), 10);
                    assert_eq!(libc::read(fds[0], buf.as_mut_ptr().cast(), 128), 10);
                    libc::close(fds[0]);
                    libc::close(fds[1]);
                }
                3 => {
                    let fd = libc::open(zero.as_ptr(), libc::O_RDONLY);
                    assert_eq!(libc::read(fd, buf.as_mut_ptr().cast(), 16), 16);
                    libc::close(fd);
                }
                _ => {
                    let fd = libc::open(null.as_ptr(), libc::O_WRONLY);
                    assert_eq!(libc::write(fd, buf.as_ptr().cast(), 16), 16);
                    libc::close(fd);
                }
            }
        }
    }
}
