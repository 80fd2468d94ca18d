//! An io_uring zero-copy sender, for the test that SEND_ZC sends the kernel copied after all
//! are reported as copies: `zc-sendzc PORT BYTES` connects to 127.0.0.1:PORT and sends BYTES
//! bytes in 64 KiB IORING_OP_SEND_ZC requests with IORING_SEND_ZC_REPORT_USAGE, waiting for
//! each request's result and its notification (which says whether the kernel copied).
use std::{net::TcpStream, os::fd::AsRawFd};

use io_uring::{IoUring, cqueue, opcode, types};

const CHUNK: usize = 64 << 10;
/// `IORING_SEND_ZC_REPORT_USAGE` (include/uapi/linux/io_uring.h).
const REPORT_USAGE: u16 = 1 << 3;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (port, bytes) = (args[1].parse::<u16>().expect("port"), args[2].parse::<usize>().expect("bytes"));
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut ring = IoUring::new(8).expect("io_uring");
    let buf = vec![5u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let len = CHUNK.min(left);
        let send = opcode::SendZc::new(types::Fd(stream.as_raw_fd()), buf.as_ptr(), len as u32)
            .zc_flags(REPORT_USAGE)
            .build()
            .user_data(1);
        unsafe { ring.submission().push(&send).expect("queue") };
        // The result, then (with F_MORE) the notification.
        let (mut sent, mut notified) = (None, false);
        while sent.is_none() || !notified {
            ring.submit_and_wait(1).expect("io_uring_enter");
            for cqe in ring.completion() {
                if cqueue::notif(cqe.flags()) {
                    notified = true;
                } else {
                    assert!(cqe.result() > 0, "send_zc: {}", std::io::Error::from_raw_os_error(-cqe.result()));
                    sent = Some(cqe.result() as usize);
                    notified |= !cqueue::more(cqe.flags());
                }
            }
        }
        left -= sent.unwrap();
    }
}
