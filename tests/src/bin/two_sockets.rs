//! One process, two TCP sockets, for the test that copies at transmit are decided socket by
//! socket: `zc-two-sockets FILE HOST:PORT HOST:PORT BYTES` sendfile()s FILE to the first
//! address, write()s BYTES bytes to the second in 64 KiB writes, then half-closes both and
//! reads each to its end, so that both have closed before it exits.
use std::{
    fs::File,
    io::{Read as _, Write as _},
    net::{Shutdown, TcpStream},
    os::fd::AsRawFd,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, file, spliced_to, written_to, bytes] = &args[..] else {
        panic!("usage: zc-two-sockets FILE HOST:PORT HOST:PORT BYTES");
    };
    let bytes: usize = bytes.parse().expect("BYTES");
    let file = File::open(file).expect("FILE");
    let size = file.metadata().unwrap().len() as usize;

    let mut spliced = TcpStream::connect(spliced_to).expect("the first address");
    let mut sent = 0;
    while sent < size {
        let n = unsafe { libc::sendfile(spliced.as_raw_fd(), file.as_raw_fd(), std::ptr::null_mut(), size - sent) };
        assert!(n > 0, "sendfile: {}", std::io::Error::last_os_error());
        sent += n as usize;
    }

    let mut written = TcpStream::connect(written_to).expect("the second address");
    let chunk = vec![5u8; 64 << 10];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        written.write_all(&chunk[..n]).unwrap();
        left -= n;
    }

    for s in [&mut spliced, &mut written] {
        s.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
    }
}
