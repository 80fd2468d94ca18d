//! splice(2) file -> pipe -> destination: pages are moved into the pipe by reference and on
//! to the destination, the building block sendfile itself is made of.
use std::{io, os::fd::RawFd};

use super::sys::{Fd, check};

pub fn run(src: RawFd, dst: RawFd, chunk: usize) -> io::Result<u64> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-element array.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } as isize)?;
    let (rd, wr) = (Fd(fds[0]), Fd(fds[1]));
    // A pipe holds 16 pages by default; make it hold a whole chunk so one splice in and one
    // splice out move a chunk each (fcntl fails harmlessly above pipe-max-size).
    unsafe { libc::fcntl(wr.0, libc::F_SETPIPE_SZ, chunk as libc::c_int) };
    let mut moved = 0u64;
    loop {
        // SAFETY: plain fds and null offsets (use the file positions).
        let n = check(unsafe {
            libc::splice(src, std::ptr::null_mut(), wr.0, std::ptr::null_mut(), chunk, libc::SPLICE_F_MOVE)
        })?;
        if n == 0 {
            return Ok(moved);
        }
        let mut left = n;
        while left > 0 {
            let out = check(unsafe {
                libc::splice(rd.0, std::ptr::null_mut(), dst, std::ptr::null_mut(), left, libc::SPLICE_F_MOVE)
            })?;
            left -= out;
        }
        moved += n as u64;
    }
}
