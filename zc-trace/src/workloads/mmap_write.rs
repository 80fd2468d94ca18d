//! mmap(2) the source, write(2) straight from the mapping: the page cache -> user copy of
//! read() is gone, paid for with page faults when write() touches the mapping.
//!
//! The file is mapped one chunk at a time, as servers that cap their address-space use do,
//! so the mmap/munmap count scales with the chunk size like read() does.
use std::{io, os::fd::RawFd};

use super::{file_size, write_all};

pub fn run(src: RawFd, dst: RawFd, chunk: usize) -> io::Result<u64> {
    let size = file_size(src)?;
    // Mappings must start on a page boundary.
    let page = 4096usize;
    let chunk = chunk.div_ceil(page) * page;
    let mut offset = 0u64;
    while offset < size {
        let len = chunk.min((size - offset) as usize);
        // SAFETY: a fresh read-only shared mapping of a range inside the file.
        let addr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, src, offset as libc::off_t)
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the mapping is `len` readable bytes until munmap below.
        let result = write_all(dst, unsafe { std::slice::from_raw_parts(addr.cast::<u8>(), len) });
        unsafe { libc::munmap(addr, len) };
        result?;
        offset += len as u64;
    }
    Ok(size)
}
