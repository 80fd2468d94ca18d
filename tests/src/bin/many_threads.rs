//! `zc-many-threads THREADS ITERATIONS FILE`: after `ready` and stdin (as zc-exact-io), starts
//! THREADS short-lived threads in waves, each opening FILE, reading it to EOF (one read of
//! data, one at EOF) and closing it ITERATIONS times: thousands of fds a second, reused.
use std::ffi::CString;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args[1].parse().unwrap();
    let iterations: usize = args[2].parse().unwrap();
    let path = CString::new(args[3].as_str()).unwrap();
    zc_trace_tests::announce_ready_and_wait();
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
