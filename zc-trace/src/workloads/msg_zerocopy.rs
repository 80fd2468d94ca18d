//! send(2) with MSG_ZEROCOPY (SO_ZEROCOPY set): the kernel pins the user pages instead of
//! copying them, and reports on the socket's error queue when it is done with them, with
//! SO_EE_CODE_ZEROCOPY_COPIED when it had to copy after all (e.g. delivery to a local socket,
//! or a device that cannot gather). The pages here are a mapping of the source file.
use std::{io, os::fd::RawFd};

use super::sys::{check, for_each_mapped_chunk};
use crate::model::row::ZerocopyCompletions;

const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;

pub fn run(src: RawFd, dst: RawFd, chunk: usize) -> io::Result<(u64, ZerocopyCompletions)> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with a valid int.
    check(
        unsafe { libc::setsockopt(dst, libc::SOL_SOCKET, libc::SO_ZEROCOPY, (&one as *const libc::c_int).cast(), 4) }
            as isize,
    )
    .map_err(|e| io::Error::new(e.kind(), format!("SO_ZEROCOPY: {e} (the sink must be a TCP or UDP socket)")))?;
    let mut sends = 0u64;
    let mut done = ZerocopyCompletions::default();
    let size = for_each_mapped_chunk(src, chunk, |bytes| {
        let mut sent = 0;
        while sent < bytes.len() {
            // SAFETY: the mapping is live; the kernel keeps its own references to the pages.
            let n = check(unsafe {
                libc::send(dst, bytes[sent..].as_ptr().cast(), bytes.len() - sent, libc::MSG_ZEROCOPY)
            });
            match n {
                Ok(n) => {
                    sent += n;
                    sends += 1;
                }
                // ENOBUFS: too many pending notifications; drain some and retry.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => drain(dst, &mut done, true)?,
                Err(e) => return Err(e),
            }
        }
        drain(dst, &mut done, false)
    })?;
    // Every send gets a notification (possibly merged into ranges); wait for all of them.
    while done.completed < sends {
        drain(dst, &mut done, true)?;
    }
    Ok((size, done))
}

/// Reads zero-copy notifications from the error queue. `wait` blocks until one arrives.
fn drain(fd: RawFd, done: &mut ZerocopyCompletions, wait: bool) -> io::Result<()> {
    if wait {
        let mut pfd = libc::pollfd { fd, events: 0, revents: 0 };
        // POLLERR is always reported; 10 s is far beyond any loopback completion.
        if unsafe { libc::poll(&mut pfd, 1, 10_000) } == 0 {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no MSG_ZEROCOPY completion within 10 s"));
        }
    }
    loop {
        let mut control = [0u64; 16];
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: msg points at our control buffer.
        let r = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EAGAIN) {
                return Ok(());
            }
            return Err(e);
        }
        // SAFETY: walking the control messages the kernel wrote into our buffer.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                let err = &*(libc::CMSG_DATA(cmsg) as *const libc::sock_extended_err);
                if err.ee_origin == SO_EE_ORIGIN_ZEROCOPY {
                    // ee_info..=ee_data: the range of send() calls this notification covers.
                    let n = u64::from(err.ee_data.wrapping_sub(err.ee_info)) + 1;
                    done.completed += n;
                    if err.ee_code & SO_EE_CODE_ZEROCOPY_COPIED != 0 {
                        done.copied += n;
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
    }
}
