//! A file sender at a fixed rate, for `top`'s test: sends FILE (over and over) to
//! 127.0.0.1:PORT in 64 KiB chunks with read(2)+write(2) or sendfile(2) (at its own offset), no faster than RATE
//! bytes per second, for SECONDS; then writes `bytes=N elapsed_ns=N` (what it sent, over how
//! long) to RESULT, the rate the test compares with what `top` showed.
//!
//! usage: zc-paced read-write|sendfile FILE PORT RATE SECONDS RESULT
use std::{
    fs::File,
    io::{Read as _, Seek as _, SeekFrom, Write as _},
    net::TcpStream,
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

const CHUNK: u64 = 64 << 10;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, strategy, file, port, rate, seconds, result] = &args[..] else {
        eprintln!("usage: zc-paced read-write|sendfile FILE PORT RATE SECONDS RESULT");
        std::process::exit(2);
    };
    let sendfile = match strategy.as_str() {
        "read-write" => false,
        "sendfile" => true,
        other => panic!("unknown strategy {other}"),
    };
    let src = File::open(file).expect("opening FILE");
    let size = src.metadata().unwrap().len();
    assert!(size >= CHUNK, "FILE must hold at least one chunk");
    let mut sock = TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).expect("connecting");
    let rate: f64 = rate.parse().unwrap();
    let duration = Duration::from_secs(seconds.parse().unwrap());
    let mut buf = vec![0u8; CHUNK as usize];
    let (mut sent, mut offset) = (0u64, 0u64);
    let started = Instant::now();
    while started.elapsed() < duration {
        // The next chunk is due when the bytes sent so far, at RATE, have taken their time.
        let due = Duration::from_secs_f64(sent as f64 / rate);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let n = CHUNK.min(size - offset);
        if sendfile {
            let mut off = offset as libc::off_t;
            let done = unsafe { libc::sendfile(sock.as_raw_fd(), src.as_raw_fd(), &mut off, n as usize) };
            assert!(done > 0, "sendfile: {}", std::io::Error::last_os_error());
            sent += done as u64;
            offset += done as u64;
        } else {
            let got = (&src).read(&mut buf[..n as usize]).expect("read");
            sock.write_all(&buf[..got]).expect("write");
            sent += got as u64;
            offset += got as u64;
        }
        if offset == size {
            offset = 0;
            (&src).seek(SeekFrom::Start(0)).expect("seek");
        }
    }
    let elapsed = started.elapsed();
    std::fs::write(result, format!("bytes={sent} elapsed_ns={}\n", elapsed.as_nanos())).expect("writing RESULT");
}
