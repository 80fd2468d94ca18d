//! `zc-many-threads THREADS ITERATIONS FILE`: after `ready` and stdin (as zc-exact-io), starts
//! THREADS short-lived threads in waves, each opening FILE, reading it to EOF (one read of
//! data, one at EOF) and closing it ITERATIONS times: thousands of fds a second, reused.
use std::{ffi::CString, io::Write as _};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args[1].parse().unwrap();
    let iterations: usize = args[2].parse().unwrap();
    let path = CString::new(args[3].as_str()).unwrap();
    let mut out = std::io::stdout();
    out.write_all(b"ready\n").unwrap();
    out.flush().unwrap();
    // SAFETY: poll on stdin without reading it.
    unsafe {
        let mut pfd = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
        while libc::poll(&mut pfd, 1, -1) < 0 {}
    }
    for wave in (0..threads).collect::<Vec<_>>().chunks(16) {
        let handles: Vec<_> = wave
            .iter()
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    for _ in 0..iterations {
                        // SAFETY: raw syscalls on our own fd and buffer.
                        unsafe {
                            let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
                            assert!(fd >= 0);
                            assert!(libc::read(fd, buf.as_mut_ptr().cast(), 4096) > 0);
                            assert_eq!(libc::read(fd, buf.as_mut_ptr().cast(), 4096), 0);
                            libc::close(fd);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
}
