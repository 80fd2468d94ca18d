//! mmap(2) the source, write(2) straight from the mapping: the page cache -> user copy of
//! read() is gone, paid for with page faults when write() touches the mapping.
//!
//! The file is mapped one chunk at a time, as servers that cap their address-space use do,
//! so the mmap/munmap count scales with the chunk size like read() does.
use std::{io, os::fd::RawFd};

use super::sys::{for_each_mapped_chunk, write_all};

pub fn run(src: RawFd, dst: RawFd, chunk: usize) -> io::Result<u64> {
    for_each_mapped_chunk(src, chunk, |bytes| write_all(dst, bytes))
}
