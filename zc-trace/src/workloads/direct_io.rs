//! O_DIRECT: the device DMAs straight into (and out of) user memory, bypassing the page
//! cache, so there is no page cache -> user copy; the block layer issues a request for every
//! read, warm cache or not. The buffer must be aligned to the logical block size (a page is
//! always enough).
use std::{io, os::fd::RawFd, path::Path};

use super::sys::{Fd, check, open, write_all};

/// Fails with the kernel's EINVAL when the file system does not support O_DIRECT.
pub fn open_source(path: &Path) -> io::Result<Fd> {
    open(path, libc::O_RDONLY | libc::O_DIRECT)
}

pub fn run(src: RawFd, dst: RawFd, chunk: usize) -> io::Result<u64> {
    let chunk = chunk.div_ceil(4096) * 4096;
    // SAFETY: an anonymous private mapping is page-aligned, as O_DIRECT needs.
    let buf = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            chunk,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if buf == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let result = (|| {
        let mut moved = 0u64;
        loop {
            let n = check(unsafe { libc::read(src, buf, chunk) })?;
            if n == 0 {
                return Ok(moved);
            }
            write_all(dst, unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), n) })?;
            moved += n as u64;
        }
    })();
    unsafe { libc::munmap(buf, chunk) };
    result
}
