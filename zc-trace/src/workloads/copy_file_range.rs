//! copy_file_range(2): file to file inside the kernel; file systems that can share extents
//! (reflink) copy nothing at all, others copy through the page cache.
use std::{io, os::fd::RawFd};

use super::sys::check;

pub fn run(src: RawFd, dst: RawFd, chunk: usize) -> io::Result<u64> {
    let mut moved = 0u64;
    loop {
        // SAFETY: plain fds; null offsets use and advance the file positions.
        let n =
            check(unsafe { libc::copy_file_range(src, std::ptr::null_mut(), dst, std::ptr::null_mut(), chunk, 0) }
                as isize)?;
        if n == 0 {
            return Ok(moved);
        }
        moved += n as u64;
    }
}
