//! Integration-test support for zc-trace; the tests live in tests/.

use std::io::Write as _;

/// What the test workloads do before their measured part: print `ready`, then wait in
/// poll(2) on stdin without reading it, so that the test can attach zc-trace first and
/// nothing but the workload proper happens after it writes to (or closes) stdin.
pub fn announce_ready_and_wait() {
    let mut out = std::io::stdout();
    out.write_all(b"ready\n").unwrap();
    out.flush().unwrap();
    let mut pfd = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
    // SAFETY: polling stdin with a valid pollfd; EINTR is retried.
    while unsafe { libc::poll(&mut pfd, 1, -1) } < 0 {}
}
