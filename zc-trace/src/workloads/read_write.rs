//! read(2) into a user buffer, write(2) it out: the classic two CPU copies
//! (page cache -> user, user -> destination).
use std::{io, os::fd::RawFd};

use super::sys::{check, write_all};

pub fn run(src: RawFd, dst: RawFd, chunk: usize) -> io::Result<u64> {
    let mut buf = vec![0u8; chunk];
    let mut moved = 0u64;
    loop {
        // SAFETY: buf is valid for `chunk` bytes.
        let n = check(unsafe { libc::read(src, buf.as_mut_ptr().cast(), chunk) })?;
        if n == 0 {
            return Ok(moved);
        }
        write_all(dst, &buf[..n])?;
        moved += n as u64;
    }
}
