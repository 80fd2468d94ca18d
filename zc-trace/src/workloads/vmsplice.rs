//! vmsplice(2) + splice(2): user pages are handed to a pipe by reference, then spliced on to
//! the destination. The user pages here are a mapping of the source file, so the bytes never
//! pass through a user buffer: the user-space side of zero-copy.
use std::{io, os::fd::RawFd};

use super::sys::{Fd, check, for_each_mapped_chunk};

pub fn run(src: RawFd, dst: RawFd, chunk: usize) -> io::Result<u64> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-element array.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } as isize)?;
    let (rd, wr) = (Fd(fds[0]), Fd(fds[1]));
    // Room for a whole chunk, so one vmsplice and one splice move a chunk each.
    unsafe { libc::fcntl(wr.0, libc::F_SETPIPE_SZ, (chunk.div_ceil(4096) * 4096) as libc::c_int) };
    for_each_mapped_chunk(src, chunk, |bytes| move_chunk(bytes.as_ptr(), bytes.len(), rd.0, wr.0, dst))
}

fn move_chunk(addr: *const u8, len: usize, rd: RawFd, wr: RawFd, dst: RawFd) -> io::Result<()> {
    let mut done = 0;
    while done < len {
        let iov = libc::iovec { iov_base: unsafe { addr.add(done) } as *mut _, iov_len: len - done };
        // SAFETY: iov points into our live mapping.
        let n = check(unsafe { libc::vmsplice(wr, &iov, 1, 0) })?;
        let mut left = n;
        while left > 0 {
            let out = check(unsafe {
                libc::splice(rd, std::ptr::null_mut(), dst, std::ptr::null_mut(), left, libc::SPLICE_F_MOVE)
            })?;
            left -= out;
        }
        done += n;
    }
    Ok(())
}
