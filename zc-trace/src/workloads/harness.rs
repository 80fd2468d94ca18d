//! What the lab runs its workloads with: a private temp dir (`tempfile`) holding a random
//! source file, page-cache eviction for cold runs, a page of shared memory each forked
//! workload reports its result through, and the strategy/sink pairs that cannot run.
use std::{os::unix::fs::PermissionsExt as _, path::Path};

use anyhow::Context as _;

use crate::{
    model::row::ZerocopyCompletions,
    workloads::{Outcome, Strategy, direct_io, sinks::SinkKind},
};

/// A private directory under $TMPDIR (mode 0700), removed with everything in it on drop
/// (also when the lab is interrupted or fails).
pub fn temp_dir() -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("zc-trace-lab.")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .context("creating the lab's temp directory")
}

/// Strategies that cannot run against a sink (or a source on this file system), and why;
/// checked before anything runs.
pub fn unsupported(strategy: Strategy, sink: SinkKind, src: &std::path::Path) -> Option<String> {
    match (strategy, sink) {
        (Strategy::CopyFileRange, SinkKind::File) => None,
        (Strategy::CopyFileRange, _) => {
            Some(format!("copy_file_range(2) copies file to file; the {sink} sink is not a regular file"))
        }
        (Strategy::MsgZerocopy, SinkKind::Tcp) => None,
        (Strategy::MsgZerocopy, _) => Some(format!("MSG_ZEROCOPY needs a TCP socket; the {sink} sink is not one")),
        (Strategy::DirectIo, _) => direct_io::open_source(src)
            .err()
            .map(|e| format!("the source's file system refuses O_DIRECT ({e}); set TMPDIR to a disk-backed directory")),
        _ => None,
    }
}

/// Evicts the file's pages from the page cache (and only this file's: the rest of the
/// system's cache is left alone), so the next read goes to the disk. Pages under writeback
/// or briefly held elsewhere survive a DONTNEED, so residency is checked with mincore(2)
/// and the eviction retried.
pub fn drop_page_cache(path: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::open(path)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    for _ in 0..20 {
        file.sync_all()?;
        // SAFETY: a valid fd; advice on the whole file.
        let rc = unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc)).context("posix_fadvise(DONTNEED)");
        }
        if resident_pages(&file)? == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    eprintln!("zc-trace: warning: part of {} stayed in the page cache; disk figures cover the rest", path.display());
    Ok(())
}

/// How many of the file's pages are in the page cache (mincore on a mapping of it).
fn resident_pages(file: &std::fs::File) -> anyhow::Result<usize> {
    let len = file.metadata()?.len() as usize;
    if len == 0 {
        return Ok(0);
    }
    let fd = std::os::fd::AsRawFd::as_raw_fd(file);
    // SAFETY: a read-only shared mapping of the whole file, unmapped below; mincore fills one
    // byte per page.
    unsafe {
        let addr = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, fd, 0);
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mmap for mincore");
        }
        let mut vec = vec![0u8; len.div_ceil(4096)];
        let rc = libc::mincore(addr, len, vec.as_mut_ptr());
        libc::munmap(addr, len);
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("mincore");
        }
        Ok(vec.iter().filter(|&&b| b & 1 != 0).count())
    }
}

/// Random (incompressible) data, so that no layer can shortcut the copy.
pub fn write_random_file(path: &Path, size: u64) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut state: u64 = 0x2545_F491_4F6C_DD1D ^ u64::from(std::process::id());
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_ne_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.into_inner()?.sync_data()
}

/// A page shared with a forked workload, which writes its result there: reporting through
/// memory costs the workload no system call, so its counts stay exactly its own.
pub struct SharedResult(*mut Shared);

#[repr(C)]
#[derive(Clone, Copy)]
struct Shared {
    bytes: u64,
    nanos: u64,
    errno: i64,
    has_zerocopy: u64,
    zc_completed: u64,
    zc_copied: u64,
}

impl SharedResult {
    pub fn new() -> anyhow::Result<Self> {
        // SAFETY: a fresh anonymous shared mapping of one page, zero-filled.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mapping the result page");
        }
        Ok(Self(p.cast()))
    }

    pub fn store(&self, outcome: &std::io::Result<Outcome>, nanos: u64) {
        let zc = outcome.as_ref().ok().and_then(|o| o.zerocopy);
        let shared = Shared {
            bytes: outcome.as_ref().map_or(0, |o| o.bytes),
            nanos,
            errno: outcome.as_ref().err().map_or(0, |e| e.raw_os_error().unwrap_or(-1) as i64),
            has_zerocopy: u64::from(zc.is_some()),
            zc_completed: zc.map_or(0, |z| z.completed),
            zc_copied: zc.map_or(0, |z| z.copied),
        };
        // SAFETY: the page is ours and large enough; the parent reads it after the child exits.
        unsafe { self.0.write_volatile(shared) };
    }

    fn load(&self) -> Shared {
        unsafe { self.0.read_volatile() }
    }

    pub fn nanos(&self) -> u64 {
        self.load().nanos
    }

    pub fn zerocopy(&self) -> Option<ZerocopyCompletions> {
        let s = self.load();
        (s.has_zerocopy != 0).then_some(ZerocopyCompletions { completed: s.zc_completed, copied: s.zc_copied })
    }

    pub fn error(&self) -> String {
        match self.load().errno {
            -1 => "failed (no errno)".into(),
            e => std::io::Error::from_raw_os_error(e as i32).to_string(),
        }
    }
}

impl Drop for SharedResult {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping once.
        unsafe { libc::munmap(self.0.cast(), 4096) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_that_need_a_particular_sink() {
        let src = std::path::Path::new("/nonexistent");
        assert!(unsupported(Strategy::CopyFileRange, SinkKind::Tcp, src).is_some());
        assert!(unsupported(Strategy::CopyFileRange, SinkKind::File, src).is_none());
        assert!(unsupported(Strategy::MsgZerocopy, SinkKind::Pipe, src).is_some());
        assert!(unsupported(Strategy::MsgZerocopy, SinkKind::Tcp, src).is_none());
        assert!(unsupported(Strategy::Sendfile, SinkKind::Null, src).is_none());
    }

    #[test]
    fn the_temp_dir_is_private_and_goes_away_with_its_files() {
        let dir = temp_dir().unwrap();
        let path = dir.path().to_path_buf();
        assert!(path.file_name().unwrap().to_string_lossy().starts_with("zc-trace-lab."), "{}", path.display());
        assert_eq!(path.metadata().unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::write(path.join("source"), b"x").unwrap();
        drop(dir);
        assert!(!path.exists());
    }
}
