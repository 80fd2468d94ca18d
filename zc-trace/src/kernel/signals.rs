//! The signals that stop zc-trace: SIGINT, SIGTERM and SIGHUP, each unless it was ignored when
//! zc-trace started (SIGHUP under `nohup`, SIGINT in a script's background job: it stays
//! ignored, as meant, and so does it in a command zc-trace spawns). They are blocked and read
//! from a signalfd, so each comes with who sent it: a signal the terminal sent to zc-trace's process
//! group (Ctrl-C, a hangup) has also reached a command zc-trace spawned, and is not sent to it
//! a second time. Once caught, they stay blocked until zc-trace exits.
use std::{
    io,
    mem::MaybeUninit,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use tokio::io::{Interest, unix::AsyncFd};

/// One signal received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub signo: i32,
    /// Sent by the kernel rather than by a process with kill(2): the terminal driver sends
    /// Ctrl-C's SIGINT and a hangup's SIGHUP to the whole foreground process group.
    pub from_kernel: bool,
}

impl Received {
    /// The signal's name, e.g. `SIGINT`.
    pub fn name(&self) -> &'static str {
        signal_name(self.signo)
    }
}

pub struct Signals {
    fd: AsyncFd<OwnedFd>,
}

impl Signals {
    /// Blocks the signals and opens the signalfd that receives them. Call inside the tokio
    /// runtime, before any thread is started (threads inherit the blocked mask).
    pub fn catch() -> io::Result<Self> {
        // SAFETY: a zeroed sigset_t is valid storage for sigemptyset/sigaddset.
        let fd = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            // A blocked signal is queued even when ignored: an ignored one is left alone.
            for signo in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                if !ignored(signo) {
                    libc::sigaddset(&mut set, signo);
                }
            }
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(fd)
        };
        // SAFETY: the OwnedFd is moved into the AsyncFd, which keeps it open until dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(io::Error::from)?;
        Ok(Self { fd })
    }

    /// The next signal.
    pub async fn recv(&mut self) -> io::Result<Received> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| read_one(fd.get_ref())) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

fn read_one(fd: &OwnedFd) -> io::Result<Received> {
    let mut info = MaybeUninit::<libc::signalfd_siginfo>::zeroed();
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: reading at most one signalfd_siginfo into storage of that size.
    let n = unsafe { libc::read(fd.as_raw_fd(), info.as_mut_ptr().cast(), size) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != size {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short read from the signalfd"));
    }
    // SAFETY: the kernel filled the whole structure.
    let info = unsafe { info.assume_init() };
    Ok(Received { signo: info.ssi_signo as i32, from_kernel: info.ssi_code == libc::SI_KERNEL })
}

/// True when the signal's disposition is SIG_IGN (inherited, e.g. from `nohup`).
fn ignored(signo: i32) -> bool {
    let mut old = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: querying the current action only (no new action given).
    let rc = unsafe { libc::sigaction(signo, std::ptr::null(), old.as_mut_ptr()) };
    // SAFETY: sigaction filled `old` when it returned 0.
    rc == 0 && unsafe { old.assume_init() }.sa_sigaction == libc::SIG_IGN
}

pub fn signal_name(signo: i32) -> &'static str {
    match signo {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}
