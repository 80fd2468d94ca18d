//! A relay, for the tests of relay pairing: receives bytes on one fd and sends them on
//! another, the way proxies, downloaders and uploaders do, with exact byte counts.
//!
//! `zc-relay MODE BYTES ARGS...`, every mode moving BYTES bytes in 16 KiB pieces:
//! - `recv-writev PORT_IN PORT_OUT`: connects to 127.0.0.1:PORT_IN and :PORT_OUT, receives
//!   with recv(2) into two buffers in turn and sends with writev(2) (two iovecs per send);
//! - `readv-sendmsg PORT_IN PORT_OUT`: the same with readv(2) (two iovecs) and sendmsg(2);
//! - `threads PORT_IN PORT_OUT`: one thread receives (recv into a ring of 8 buffers), another
//!   sends each filled buffer with send(2);
//! - `download PORT FILE`: recv(2) from PORT, write(2) to FILE;
//! - `upload FILE PORT`: readv(2) from FILE into 4 KiB iovecs, sendmsg(2) to PORT.
use std::{fs::File, io::Write as _, net::TcpStream, os::fd::AsRawFd, sync::mpsc, thread};

const PIECE: usize = 16 << 10;

fn check(r: isize, what: &str) -> usize {
    if r < 0 {
        panic!("{what}: {}", std::io::Error::last_os_error());
    }
    r as usize
}

fn iov(buf: &mut [u8]) -> libc::iovec {
    libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() }
}

/// Sends all of `iovs` (advancing over partial sends) with writev or sendmsg.
fn send_all(fd: i32, iovs: &mut [libc::iovec], sendmsg: bool) {
    let mut first = 0;
    while first < iovs.len() {
        let rest = &mut iovs[first..];
        let n = if sendmsg {
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = rest.as_mut_ptr();
            msg.msg_iovlen = rest.len();
            check(unsafe { libc::sendmsg(fd, &msg, 0) }, "sendmsg")
        } else {
            check(unsafe { libc::writev(fd, rest.as_ptr(), rest.len() as i32) }, "writev")
        };
        // Past every iovec the send covered (and empty ones), then into a partly sent one.
        let mut n = n;
        while first < iovs.len() && n >= iovs[first].iov_len {
            n -= iovs[first].iov_len;
            first += 1;
        }
        if n > 0 {
            let v = &mut iovs[first];
            v.iov_base = unsafe { v.iov_base.cast::<u8>().add(n).cast() };
            v.iov_len -= n;
        }
    }
}

/// Receives exactly `buf.len()` bytes (or up to end of stream) with recv(2).
fn recv_full(fd: i32, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        let n = check(unsafe { libc::recv(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got, 0) }, "recv");
        if n == 0 {
            break;
        }
        got += n;
    }
    got
}

fn connect(port: &str) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port.parse::<u16>().expect("port"))).expect("connect")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, bytes) = (args[1].as_str(), args[2].parse::<usize>().expect("bytes"));
    match mode {
        "recv-writev" | "readv-sendmsg" => {
            let (input, output) = (connect(&args[3]), connect(&args[4]));
            let (a, b) = (&mut vec![0u8; PIECE / 2], &mut vec![0u8; PIECE / 2]);
            let mut left = bytes;
            while left > 0 {
                let n = if mode == "recv-writev" {
                    let n = recv_full(input.as_raw_fd(), &mut a[..(PIECE / 2).min(left)]);
                    n + recv_full(input.as_raw_fd(), &mut b[..(PIECE / 2).min(left - n)])
                } else {
                    let want = PIECE.min(left);
                    let iovs = [iov(&mut a[..(PIECE / 2).min(want)]), iov(&mut b[..want.saturating_sub(PIECE / 2)])];
                    check(unsafe { libc::readv(input.as_raw_fd(), iovs.as_ptr(), 2) }, "readv")
                };
                assert!(n > 0, "upstream closed early");
                let (na, nb) = (n.min(PIECE / 2), n.saturating_sub(PIECE / 2));
                let mut iovs = [iov(&mut a[..na]), iov(&mut b[..nb])];
                send_all(output.as_raw_fd(), &mut iovs, mode == "readv-sendmsg");
                left -= n;
            }
        }
        "threads" => {
            let (input, output) = (connect(&args[3]), connect(&args[4]));
            const RING: usize = 8;
            // One allocation, handed between the threads by slot index: a slot is written by
            // the receiving thread only while it is out of the free list.
            let ring: &'static mut [u8] = Vec::leak(vec![0u8; RING * PIECE]);
            let ring_addr = ring.as_mut_ptr() as usize;
            let slot = move |i: usize, n: usize| unsafe {
                std::slice::from_raw_parts_mut((ring_addr + i * PIECE) as *mut u8, n)
            };
            let (filled, filled_rx) = mpsc::sync_channel::<(usize, usize)>(RING - 2);
            let (free, free_rx) = mpsc::sync_channel::<usize>(RING);
            for i in 0..RING {
                free.send(i).unwrap();
            }
            let sender = thread::spawn(move || {
                while let Ok((i, n)) = filled_rx.recv() {
                    let mut iovs = [iov(slot(i, n))];
                    send_all(output.as_raw_fd(), &mut iovs, false);
                    free.send(i).unwrap();
                }
            });
            let mut left = bytes;
            while left > 0 {
                let i = free_rx.recv().unwrap();
                let buf = slot(i, PIECE.min(left));
                let n = check(unsafe { libc::recv(input.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) }, "recv");
                assert!(n > 0, "upstream closed early");
                filled.send((i, n)).unwrap();
                left -= n;
            }
            drop(filled);
            sender.join().unwrap();
        }
        "download" => {
            let input = connect(&args[3]);
            let mut out = File::create(&args[4]).expect("create");
            let buf = &mut vec![0u8; PIECE];
            let mut left = bytes;
            while left > 0 {
                let n = check(
                    unsafe { libc::recv(input.as_raw_fd(), buf.as_mut_ptr().cast(), PIECE.min(left), 0) },
                    "recv",
                );
                assert!(n > 0, "upstream closed early");
                out.write_all(&buf[..n]).expect("write");
                left -= n;
            }
        }
        "upload" => {
            let input = File::open(&args[3]).expect("open");
            let output = connect(&args[4]);
            let mut bufs: Vec<Vec<u8>> = (0..4).map(|_| vec![0u8; 4096]).collect();
            let mut left = bytes;
            while left > 0 {
                let mut iovs: Vec<libc::iovec> = bufs.iter_mut().map(|b| iov(b)).collect();
                let n = check(unsafe { libc::readv(input.as_raw_fd(), iovs.as_ptr(), 4) }, "readv");
                assert!(n > 0, "file ended early");
                // The filled part of each iovec, in order.
                let mut rest = n;
                for v in iovs.iter_mut() {
                    v.iov_len = v.iov_len.min(rest);
                    rest -= v.iov_len;
                }
                let used = iovs.iter().take_while(|v| v.iov_len > 0).count();
                send_all(output.as_raw_fd(), &mut iovs[..used], true);
                left -= n;
            }
        }
        _ => panic!("unknown mode {mode}"),
    }
}
