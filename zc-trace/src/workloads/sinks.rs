//! Where the lab's bytes go. A sink is set up in zc-trace before the workload processes are
//! forked (so the receiver can listen before the sender connects), then each side takes its
//! end: the sender a destination fd, the receiver (for tcp, unix and pipe) a source it reads
//! until end of file, as a separate process with its own row in the report.
use std::{
    io,
    net::Ipv4Addr,
    os::fd::RawFd,
    path::{Path, PathBuf},
    str::FromStr,
};

use super::sys::{Fd, check, open};

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SinkKind {
    Tcp,
    Unix,
    Pipe,
    File,
    Null,
}

impl SinkKind {
    pub const ALL: [SinkKind; 5] = [SinkKind::Tcp, SinkKind::Unix, SinkKind::Pipe, SinkKind::File, SinkKind::Null];

    pub const fn name(self) -> &'static str {
        match self {
            SinkKind::Tcp => "tcp",
            SinkKind::Unix => "unix",
            SinkKind::Pipe => "pipe",
            SinkKind::File => "file",
            SinkKind::Null => "null",
        }
    }

    /// Sinks read by a receiver process of their own.
    pub const fn has_receiver(self) -> bool {
        matches!(self, SinkKind::Tcp | SinkKind::Unix | SinkKind::Pipe)
    }
}

impl FromStr for SinkKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SinkKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown sink `{s}`: choose from tcp, unix, pipe, file, null"))
    }
}

impl std::fmt::Display for SinkKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the tcp sink's receiver listens: an address, and optionally the network namespace
/// (a `/proc/<pid>/ns/net` or `ip netns` path) its listening socket is created in, so that
/// the bytes cross a real NIC instead of loopback. The sender connects from zc-trace's own
/// namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpEndpoint {
    pub addr: Ipv4Addr,
    pub netns: Option<PathBuf>,
}

impl Default for TcpEndpoint {
    fn default() -> Self {
        TcpEndpoint { addr: Ipv4Addr::LOCALHOST, netns: None }
    }
}

impl TcpEndpoint {
    /// Bytes sent to it go through the loopback device (no NIC, no NIC DMA).
    pub fn is_loopback(&self) -> bool {
        self.addr.is_loopback() && self.netns.is_none()
    }
}

/// A prepared sink: the fds both sides will use, created before the fork.
pub struct Sink {
    pub kind: SinkKind,
    /// tcp: the listening socket; unix/pipe: the receiver's end.
    receiver_end: Option<Fd>,
    /// unix/pipe: the sender's end.
    sender_end: Option<Fd>,
    /// tcp: the address and port the listener is bound to.
    addr: Ipv4Addr,
    port: u16,
    /// file: the destination path.
    path: Option<PathBuf>,
}

impl Sink {
    /// `port` 0 lets the kernel pick a free one (tcp only, on 127.0.0.1).
    pub fn prepare(kind: SinkKind, dir: &Path, port: u16) -> io::Result<Self> {
        Self::prepare_at(kind, dir, port, &TcpEndpoint::default())
    }

    /// As [`Sink::prepare`], with the tcp receiver listening at `endpoint`. The listening
    /// socket is made here, before the fork, so the sender can connect at once and the
    /// receiver's system calls stay only its accept and reads.
    pub fn prepare_at(kind: SinkKind, dir: &Path, port: u16, endpoint: &TcpEndpoint) -> io::Result<Self> {
        let mut sink = Sink { kind, receiver_end: None, sender_end: None, addr: endpoint.addr, port: 0, path: None };
        match kind {
            SinkKind::Tcp => {
                let (fd, port) = match &endpoint.netns {
                    Some(ns) => in_netns(ns, || tcp_listener(endpoint.addr, port))?,
                    None => tcp_listener(endpoint.addr, port)?,
                };
                sink.receiver_end = Some(fd);
                sink.port = port;
            }
            SinkKind::Unix => {
                let mut sv = [0; 2];
                // SAFETY: sv is a valid 2-element array.
                check(unsafe {
                    libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr())
                } as isize)?;
                (sink.sender_end, sink.receiver_end) = (Some(Fd(sv[0])), Some(Fd(sv[1])));
            }
            SinkKind::Pipe => {
                let mut p = [0; 2];
                // SAFETY: p is a valid 2-element array.
                check(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } as isize)?;
                (sink.receiver_end, sink.sender_end) = (Some(Fd(p[0])), Some(Fd(p[1])));
            }
            SinkKind::File => sink.path = Some(dir.join("sink")),
            SinkKind::Null => sink.path = Some(PathBuf::from("/dev/null")),
        }
        Ok(sink)
    }

    /// In the sender process: the destination fd (connecting, for tcp). The receiver's end is
    /// closed first, or a pipe or socket pair would never see end of file.
    pub fn sender_fd(&mut self) -> io::Result<Fd> {
        drop(self.receiver_end.take());
        match self.kind {
            SinkKind::Tcp => tcp_connect(self.addr, self.port),
            SinkKind::Unix | SinkKind::Pipe => Ok(self.sender_end.take().expect("prepared")),
            SinkKind::File | SinkKind::Null => {
                open(self.path.as_deref().expect("prepared"), libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)
            }
        }
    }

    /// In the receiver process: reads everything the sender sends in `chunk`-byte read(2)s
    /// into a user buffer, and returns the byte count.
    pub fn receive(&mut self, chunk: usize) -> io::Result<u64> {
        drop(self.sender_end.take());
        let end = self.receiver_end.take().expect("only sinks with a receiver are received");
        let fd = if self.kind == SinkKind::Tcp {
            // SAFETY: accepting on our listening socket; peer address not needed.
            let conn =
                check(unsafe { libc::accept4(end.0, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) }
                    as isize)?;
            drop(end);
            Fd(conn as RawFd)
        } else {
            end
        };
        let mut buf = vec![0u8; chunk];
        let mut total = 0u64;
        loop {
            // SAFETY: buf is valid for `chunk` bytes.
            let n = check(unsafe { libc::read(fd.0, buf.as_mut_ptr().cast(), chunk) })?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    }

    /// In zc-trace after both forks: our copies of the ends are not needed (and would keep a
    /// pipe open).
    pub fn close_parent_ends(&mut self) {
        drop(self.receiver_end.take());
        drop(self.sender_end.take());
    }

    /// The destination file, when the sink is one (to remove it afterwards).
    pub fn file(&self) -> Option<&Path> {
        (self.kind == SinkKind::File).then_some(self.path.as_deref()).flatten()
    }
}

fn sockaddr(addr: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(addr).to_be() },
        sin_zero: [0; 8],
    }
}

/// A listening socket on `addr` (127.0.0.1 unless asked otherwise), on `port` or, for 0, on
/// one the kernel picks.
fn tcp_listener(addr: Ipv4Addr, port: u16) -> io::Result<(Fd, u16)> {
    // SAFETY: plain socket calls on a fresh fd and a local sockaddr.
    unsafe {
        let fd = Fd(check(libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) as isize)? as RawFd);
        let bind_to = sockaddr(addr, port);
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        check(libc::bind(fd.0, (&bind_to as *const libc::sockaddr_in).cast(), len) as isize)?;
        check(libc::listen(fd.0, 1) as isize)?;
        let mut bound = sockaddr(Ipv4Addr::UNSPECIFIED, 0);
        let mut blen = len;
        check(libc::getsockname(fd.0, (&mut bound as *mut libc::sockaddr_in).cast(), &mut blen) as isize)?;
        Ok((fd, u16::from_be(bound.sin_port)))
    }
}

/// A TCP connection to 127.0.0.1:`port`.
pub fn connect_loopback(port: u16) -> io::Result<Fd> {
    tcp_connect(Ipv4Addr::LOCALHOST, port)
}

fn tcp_connect(addr: Ipv4Addr, port: u16) -> io::Result<Fd> {
    // SAFETY: plain socket calls on a fresh fd and a local sockaddr.
    unsafe {
        let fd = Fd(check(libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) as isize)? as RawFd);
        let to = sockaddr(addr, port);
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        check(libc::connect(fd.0, (&to as *const libc::sockaddr_in).cast(), len) as isize)?;
        Ok(fd)
    }
}

/// Runs `f` with the calling thread in the network namespace at `ns`, then moves it back.
/// Sockets keep the namespace they were made in, so a listener made here stays there.
/// setns(CLONE_NEWNET) affects only the calling thread, so other threads never see it.
fn in_netns<T>(ns: &Path, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let home = open(Path::new("/proc/thread-self/ns/net"), libc::O_RDONLY | libc::O_CLOEXEC)?;
    let target = open(ns, libc::O_RDONLY | libc::O_CLOEXEC)
        .map_err(|e| io::Error::new(e.kind(), format!("opening the network namespace {}: {e}", ns.display())))?;
    // SAFETY: setns on fds we own.
    check(unsafe { libc::setns(target.0, libc::CLONE_NEWNET) } as isize)
        .map_err(|e| io::Error::new(e.kind(), format!("entering the network namespace {}: {e}", ns.display())))?;
    let result = f();
    // Staying in the wrong namespace would silently send everything else elsewhere.
    if let Err(e) = check(unsafe { libc::setns(home.0, libc::CLONE_NEWNET) } as isize) {
        panic!("cannot return to zc-trace's own network namespace: {e}");
    }
    result
}

/// Fails when `port` cannot be listened on at `endpoint` (in use, privileged, an address or
/// namespace that does not exist), checked before anything runs.
pub fn check_endpoint(endpoint: &TcpEndpoint, port: u16) -> io::Result<()> {
    if port == 0 && endpoint == &TcpEndpoint::default() {
        return Ok(());
    }
    let listen = || tcp_listener(endpoint.addr, port).map(drop);
    match &endpoint.netns {
        Some(ns) => in_netns(ns, listen),
        None => listen(),
    }
}

/// Fails when `port` cannot be listened on at 127.0.0.1.
pub fn check_port(port: u16) -> io::Result<()> {
    check_endpoint(&TcpEndpoint::default(), port)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sink delivers every byte, in-process (a thread plays the receiver).
    #[test]
    fn sinks_deliver_everything() {
        let dir = tempfile::tempdir().unwrap();
        for kind in [SinkKind::Tcp, SinkKind::Unix, SinkKind::Pipe] {
            let mut sink = Sink::prepare(kind, dir.path(), 0).unwrap();
            let mut receiver = Sink {
                kind,
                receiver_end: sink.receiver_end.take(),
                sender_end: None,
                addr: sink.addr,
                port: sink.port,
                path: None,
            };
            let handle = std::thread::spawn(move || receiver.receive(4096).unwrap());
            let out = sink.sender_fd().unwrap();
            super::super::sys::write_all(out.0, &vec![7u8; 100_000]).unwrap();
            drop(out);
            assert_eq!(handle.join().unwrap(), 100_000, "{kind}");
        }
    }
}
