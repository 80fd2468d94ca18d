//! io_uring: the same read-into-a-buffer, write-it-out copies as read(2)/write(2), but
//! submitted through a ring; each operation here is one io_uring_enter(2) that submits and
//! waits, so the syscall count shows what batching would save.
use std::{io, os::fd::RawFd};

use io_uring::{IoUring, opcode, types};

pub fn run(src: RawFd, dst: RawFd, chunk: usize) -> io::Result<u64> {
    let mut ring = IoUring::new(8)?;
    let mut buf = vec![0u8; chunk];
    let mut offset = 0u64;
    loop {
        let read = opcode::Read::new(types::Fd(src), buf.as_mut_ptr(), chunk as u32).offset(offset).build();
        let n = submit_one(&mut ring, &read)?;
        if n == 0 {
            return Ok(offset);
        }
        let mut written = 0;
        while written < n {
            // offset u64::MAX (-1): the destination's own position, valid for sockets and pipes.
            let write = opcode::Write::new(types::Fd(dst), buf[written..].as_ptr(), (n - written) as u32)
                .offset(u64::MAX)
                .build();
            written += submit_one(&mut ring, &write)?;
        }
        offset += n as u64;
    }
}

fn submit_one(ring: &mut IoUring, entry: &io_uring::squeue::Entry) -> io::Result<usize> {
    // SAFETY: the buffers the entry points to outlive the wait below.
    unsafe { ring.submission().push(entry) }.map_err(|_| io::Error::other("submission queue full"))?;
    ring.submit_and_wait(1)?;
    let cqe = ring.completion().next().ok_or_else(|| io::Error::other("no completion"))?;
    let res = cqe.result();
    if res < 0 { Err(io::Error::from_raw_os_error(-res)) } else { Ok(res as usize) }
}
