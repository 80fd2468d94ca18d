//! A MSG_ZEROCOPY sender, for the test that zero-copy sends the kernel copied after all are
//! reported as copies: `zc-zerocopy-send PORT BYTES` prints `ready`, waits until something
//! is written to its stdin, then connects to 127.0.0.1:PORT, sends BYTES bytes in 64 KiB
//! sends with MSG_ZEROCOPY, and reads the error queue until every send is completed (its
//! stdout is closed by then: it prints nothing more).
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    os::fd::AsRawFd,
};

const CHUNK: usize = 64 << 10;
const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;

/// Reads error-queue entries until none is left (`wait`: until one arrives first).
fn drain(fd: i32, completed: &mut u64, copied: &mut u64, wait: bool) {
    loop {
        let mut control = [0u64; 16];
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        let flags = libc::MSG_ERRQUEUE | if wait { 0 } else { libc::MSG_DONTWAIT };
        if unsafe { libc::recvmsg(fd, &mut msg, flags) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EAGAIN) {
                if wait {
                    let mut p = libc::pollfd { fd, events: 0, revents: 0 };
                    unsafe { libc::poll(&mut p, 1, 100) };
                    continue;
                }
                return;
            }
            panic!("recvmsg(MSG_ERRQUEUE): {e}");
        }
        let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        assert!(!cmsg.is_null(), "an error-queue entry without a control message");
        let err = unsafe { &*(libc::CMSG_DATA(cmsg) as *const libc::sock_extended_err) };
        assert_eq!(err.ee_origin, SO_EE_ORIGIN_ZEROCOPY, "not a zerocopy completion");
        let n = u64::from(err.ee_data - err.ee_info) + 1;
        *completed += n;
        if err.ee_code & SO_EE_CODE_ZEROCOPY_COPIED != 0 {
            *copied += n;
        }
        if wait {
            return;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (port, bytes) = (args[1].parse::<u16>().expect("port"), args[2].parse::<usize>().expect("bytes"));
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut go = [0u8; 2];
    let _ = std::io::stdin().read(&mut go);
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let fd = stream.as_raw_fd();
    let one: libc::c_int = 1;
    let r =
        unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_ZEROCOPY, (&one as *const libc::c_int).cast(), 4) };
    assert_eq!(r, 0, "SO_ZEROCOPY: {}", std::io::Error::last_os_error());
    let buf = vec![9u8; CHUNK];
    let (mut sends, mut completed, mut copied, mut left) = (0u64, 0u64, 0u64, bytes);
    while left > 0 {
        let n = unsafe { libc::send(fd, buf.as_ptr().cast(), CHUNK.min(left), libc::MSG_ZEROCOPY) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            // ENOBUFS: too many pages pinned; completions free them.
            assert_eq!(e.raw_os_error(), Some(libc::ENOBUFS), "send: {e}");
            drain(fd, &mut completed, &mut copied, true);
            continue;
        }
        sends += 1;
        left -= n as usize;
        drain(fd, &mut completed, &mut copied, false);
    }
    while completed < sends {
        drain(fd, &mut completed, &mut copied, true);
    }
    assert!(copied <= completed);
}
