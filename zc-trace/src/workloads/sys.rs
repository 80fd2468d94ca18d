//! The few system calls the workloads share, on raw fds (not std's File) so that every
//! syscall a workload makes is one it chose.
use std::{
    ffi::CString,
    io,
    os::{fd::RawFd, unix::ffi::OsStrExt as _},
    path::Path,
};

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
