//! Built-in workloads: one real implementation per strategy of moving a file's bytes to a
//! sink. Each runs in a forked child of zc-trace, so its system calls are its own and nothing
//! else (no exec, no dynamic loader) shows up in its counts.
//!
//! Every workload returns the payload bytes it moved; the lab checks it against the file size.
mod copy_file_range;
pub mod direct_io;
mod io_uring;
mod mmap_write;
mod msg_zerocopy;
mod read_write;
mod sendfile;
pub mod sinks;
mod splice;
mod vmsplice;

use std::{
    ffi::CString,
    fmt,
    io,
    os::{fd::RawFd, unix::ffi::OsStrExt as _},
    path::Path,
    str::FromStr,
};

/// How the bytes travel. The names are the CLI values.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Strategy {
    ReadWrite,
    MmapWrite,
    Sendfile,
    Splice,
    CopyFileRange,
    Vmsplice,
    MsgZerocopy,
    IoUring,
    DirectIo,
}

impl Strategy {
    pub const ALL: [Strategy; 9] = [
        Strategy::ReadWrite,
        Strategy::MmapWrite,
        Strategy::Sendfile,
        Strategy::Splice,
        Strategy::CopyFileRange,
        Strategy::Vmsplice,
        Strategy::MsgZerocopy,
        Strategy::IoUring,
        Strategy::DirectIo,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Strategy::ReadWrite => "read-write",
            Strategy::MmapWrite => "mmap-write",
            Strategy::Sendfile => "sendfile",
            Strategy::Splice => "splice",
            Strategy::CopyFileRange => "copy-file-range",
            Strategy::Vmsplice => "vmsplice",
            Strategy::MsgZerocopy => "msg-zerocopy",
            Strategy::IoUring => "io-uring",
            Strategy::DirectIo => "direct-io",
        }
    }

    /// The system calls that move this strategy's payload, for the lab's "data calls" column.
    pub const fn data_syscalls(self) -> &'static [&'static str] {
        match self {
            Strategy::ReadWrite => &["read", "write"],
            Strategy::MmapWrite => &["mmap", "write"],
            Strategy::Sendfile => &["sendfile"],
            Strategy::Splice => &["splice"],
            Strategy::CopyFileRange => &["copy_file_range"],
            Strategy::Vmsplice => &["vmsplice", "splice"],
            Strategy::MsgZerocopy => &["sendto"],
            Strategy::IoUring => &["io_uring_enter"],
            Strategy::DirectIo => &["read", "write"],
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Strategy::ALL.into_iter().find(|st| st.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Strategy::ALL.iter().map(|s| s.name()).collect();
            format!("unknown strategy `{s}`: choose from {}", names.join(", "))
        })
    }
}

/// MSG_ZEROCOPY notifications, as the kernel reported them on the error queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ZerocopyCompletions {
    /// send() calls the kernel has released the pages of.
    pub completed: u64,
    /// ... of which it had to copy after all (SO_EE_CODE_ZEROCOPY_COPIED).
    pub copied: u64,
}

/// What a workload run reports besides its syscalls (which the kernel counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    pub bytes: u64,
    pub zerocopy: Option<ZerocopyCompletions>,
}

/// Moves the whole of `src` to the already-open `dst` in `chunk`-byte steps, the way
/// `strategy` does, and returns the payload bytes moved.
pub fn run(strategy: Strategy, src: &Path, dst: RawFd, chunk: usize) -> io::Result<Outcome> {
    let src = if strategy == Strategy::DirectIo { direct_io::open_source(src)? } else { open(src, libc::O_RDONLY)? };
    let bytes = |r: io::Result<u64>| r.map(|bytes| Outcome { bytes, zerocopy: None });
    match strategy {
        Strategy::ReadWrite => bytes(read_write::run(src.0, dst, chunk)),
        Strategy::MmapWrite => bytes(mmap_write::run(src.0, dst, chunk)),
        Strategy::Sendfile => bytes(sendfile::run(src.0, dst, chunk)),
        Strategy::Splice => bytes(splice::run(src.0, dst, chunk)),
        Strategy::CopyFileRange => bytes(copy_file_range::run(src.0, dst, chunk)),
        Strategy::Vmsplice => bytes(vmsplice::run(src.0, dst, chunk)),
        Strategy::IoUring => bytes(io_uring::run(src.0, dst, chunk)),
        Strategy::DirectIo => bytes(direct_io::run(src.0, dst, chunk)),
        Strategy::MsgZerocopy => msg_zerocopy::run(src.0, dst, chunk)
            .map(|(bytes, zc)| Outcome { bytes, zerocopy: Some(zc) }),
    }
}

/// An fd closed on drop. Raw fds (not std's File) so that every syscall is one we chose.
pub struct Fd(pub RawFd);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.0) };
    }
}

/// Opens a path with raw flags (O_CLOEXEC added).
pub fn open_path(path: &Path, flags: i32) -> io::Result<Fd> {
    open(path, flags)
}

pub(crate) fn open(path: &Path, flags: i32) -> io::Result<Fd> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o600) };
    if fd < 0 { Err(io::Error::last_os_error()) } else { Ok(Fd(fd)) }
}

/// Turns a syscall's return value into a Result.
pub(crate) fn check(ret: isize) -> io::Result<usize> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret as usize) }
}

/// Writes all of `buf`, looping on short writes.
pub(crate) fn write_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: buf is valid for its length.
        let n = check(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })?;
        buf = &buf[n..];
    }
    Ok(())
}

/// Maps `src` one page-aligned `chunk` at a time (read-only, shared: the page cache itself)
/// and hands each mapping to `f`; the mapping is gone when `f` returns. Returns the file size.
pub(crate) fn for_each_mapped_chunk(
    src: RawFd,
    chunk: usize,
    mut f: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let size = file_size(src)?;
    // Mappings must start on a page boundary.
    let chunk = chunk.div_ceil(4096) * 4096;
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
        // SAFETY: the mapping is `len` readable bytes until the munmap just below.
        let result = f(unsafe { std::slice::from_raw_parts(addr.cast::<u8>(), len) });
        unsafe { libc::munmap(addr, len) };
        result?;
        offset += len as u64;
    }
    Ok(size)
}

pub(crate) fn file_size(fd: RawFd) -> io::Result<u64> {
    // SAFETY: stat is plain data filled by fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstat(fd, &mut st) } as isize)?;
    Ok(st.st_size as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for s in Strategy::ALL {
            assert_eq!(s.name().parse::<Strategy>().unwrap(), s);
        }
        let err = "zerocopy".parse::<Strategy>().unwrap_err();
        assert!(err.contains("read-write") && err.contains("splice"), "{err}");
    }

    /// Every workload really moves the bytes: run each unprivileged on a small file.
    #[test]
    fn every_workload_copies_the_file_exactly() {
        let dir = std::env::temp_dir().join(format!("zc-workloads-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("src");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        // msg-zerocopy needs a socket (tested through the lab); direct-io needs a file
        // system with O_DIRECT (the temp dir may be tmpfs).
        for strategy in Strategy::ALL.into_iter().filter(|s| !matches!(s, Strategy::MsgZerocopy | Strategy::DirectIo)) {
            let dst = dir.join(strategy.name());
            let out = open(&dst, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC).unwrap();
            let moved = run(strategy, &src, out.0, 65536).unwrap().bytes;
            drop(out);
            assert_eq!(moved, data.len() as u64, "{strategy}");
            assert_eq!(std::fs::read(&dst).unwrap(), data, "{strategy}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
