//! What the lab runs its workloads with: a private temp dir (`tempfile`) holding a random
//! source file and the name of the process that owns it (so that one left behind by a lab
//! that was killed is removed by the next), page-cache eviction for cold runs, a page of
//! shared memory each forked workload reports its result through, and the strategy/sink
//! pairs that cannot run.
use std::{
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use crate::{
    kernel::target::start_ticks,
    model::row::ZerocopyCompletions,
    workloads::{Outcome, Strategy, direct_io, sinks::SinkKind},
};

/// The lab's temp directories are named this, then random characters.
const PREFIX: &str = "zc-trace-lab.";

/// The file in a lab directory that names the process owning it (see [`Owner`]).
const OWNER_FILE: &str = "owner.pid";

/// A private directory under $TMPDIR (mode 0700), removed with everything in it on drop
/// (also when the lab is interrupted or fails); see [`temp_dir_in`].
pub fn temp_dir() -> anyhow::Result<tempfile::TempDir> {
    temp_dir_in(&std::env::temp_dir())
}

/// The lab's directory under `root`, with its [`OWNER_FILE`]. Directories that labs killed
/// before they could clean up (SIGKILL, a crash) left under `root` are removed first, quietly
/// (stderr stays free for errors).
pub fn temp_dir_in(root: &Path) -> anyhow::Result<tempfile::TempDir> {
    remove_stale(root);
    let dir = tempfile::Builder::new()
        .prefix(PREFIX)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(root)
        .context("creating the lab's temp directory")?;
    let owner = Owner::this().context("reading this process's start time and namespace")?;
    std::fs::write(dir.path().join(OWNER_FILE), owner.to_text()).context("writing the lab directory's owner file")?;
    Ok(dir)
}

/// The process that owns a lab directory. A PID alone could be handed to another process
/// later; with its start time it names one process. PIDs mean something only in their PID
/// namespace and start times only until the next boot, so a directory made in another
/// namespace or boot (a container or a machine sharing the temp dir) is never judged.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    pid: u32,
    /// Clock ticks after boot (/proc/PID/stat field 22).
    start: u64,
    /// `pid:[INODE]`, the link /proc/self/ns/pid.
    pid_ns: String,
    /// /proc/sys/kernel/random/boot_id.
    boot: String,
}

impl Owner {
    fn this() -> Option<Self> {
        Some(Self {
            pid: std::process::id(),
            start: start_ticks("self")?,
            pid_ns: std::fs::read_link("/proc/self/ns/pid").ok()?.to_string_lossy().into_owned(),
            boot: std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?.trim().to_string(),
        })
    }

    fn to_text(&self) -> String {
        format!("pid {}\nstart {}\npidns {}\nboot {}\n", self.pid, self.start, self.pid_ns, self.boot)
    }

    fn parse(text: &str) -> Option<Self> {
        let field = |name: &str| {
            text.lines().find_map(|l| l.split_once(' ').filter(|(k, _)| *k == name).map(|(_, v)| v.trim()))
        };
        Some(Self {
            pid: field("pid")?.parse().ok()?,
            start: field("start")?.parse().ok()?,
            pid_ns: field("pidns")?.to_string(),
            boot: field("boot")?.to_string(),
        })
    }

    /// True only when this owner certainly no longer runs: it was made in our boot and PID
    /// namespace, and its PID is free or now names a process started at another time.
    fn is_gone(&self, here: &Owner) -> bool {
        if self.boot != here.boot || self.pid_ns != here.pid_ns || self.pid == 0 || self.pid > i32::MAX as u32 {
            return false;
        }
        // SAFETY: signal 0 only checks that the process exists.
        if unsafe { libc::kill(self.pid as libc::pid_t, 0) } != 0 {
            return std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        }
        start_ticks(&self.pid.to_string()).is_some_and(|start| start != self.start)
    }
}

/// Removes the lab directories under `root` whose owner is gone, and returns them with the
/// owner's PID (for tests). Only directories of ours are considered: named [`PREFIX`]..., real
/// directories (not symlinks) owned by this user, holding an owner file that parses; any
/// doubt keeps a directory.
fn remove_stale(root: &Path) -> Vec<(PathBuf, u32)> {
    let Some(here) = Owner::this() else { return Vec::new() };
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let Ok(entries) = std::fs::read_dir(root) else { return Vec::new() };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if !meta.is_dir() || meta.uid() != uid {
            continue;
        }
        let Some(owner) = std::fs::read_to_string(path.join(OWNER_FILE)).ok().and_then(|t| Owner::parse(&t)) else {
            continue; // no owner yet (a lab that is starting) or not one of ours
        };
        if owner.is_gone(&here) && std::fs::remove_dir_all(&path).is_ok() {
            removed.push((path, owner.pid));
        }
    }
    removed
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
        let owner = Owner::parse(&std::fs::read_to_string(path.join(OWNER_FILE)).unwrap()).unwrap();
        assert_eq!(owner, Owner::this().unwrap());
        std::fs::write(path.join("source"), b"x").unwrap();
        drop(dir);
        assert!(!path.exists());
    }

    /// A fake temp root with lab directories of every kind: only those whose owner is
    /// certainly gone are removed when the next lab starts there.
    #[test]
    fn stale_lab_dirs_are_removed_and_live_ones_kept() {
        let root = tempfile::tempdir().unwrap();
        let me = Owner::this().unwrap();
        let lab_dir = |name: &str, owner: Option<&Owner>| {
            let path = root.path().join(name);
            std::fs::create_dir(&path).unwrap();
            std::fs::write(path.join("source"), b"data").unwrap();
            if let Some(o) = owner {
                std::fs::write(path.join(OWNER_FILE), o.to_text()).unwrap();
            }
            path
        };
        // No process has a PID above Linux's limit of 4194304.
        let dead = Owner { pid: 4_194_305, ..me.clone() };
        let reused = Owner { start: me.start + 1, ..me.clone() };
        let dead_pid = lab_dir("zc-trace-lab.dead", Some(&dead));
        let reused_pid = lab_dir("zc-trace-lab.reused", Some(&reused));
        let live = lab_dir("zc-trace-lab.live", Some(&me));
        let starting = lab_dir("zc-trace-lab.starting", None);
        let other_boot = lab_dir("zc-trace-lab.otherboot", Some(&Owner { boot: "elsewhere".into(), ..dead.clone() }));
        let other_ns = lab_dir("zc-trace-lab.otherns", Some(&Owner { pid_ns: "pid:[1]".into(), ..dead.clone() }));
        let not_ours = lab_dir("something-else", Some(&dead));
        let file = root.path().join("zc-trace-lab.file");
        std::fs::write(&file, dead.to_text()).unwrap();

        let mut removed = remove_stale(root.path());
        removed.sort();
        assert_eq!(removed, [(dead_pid.clone(), dead.pid), (reused_pid.clone(), me.pid)]);
        let new = temp_dir_in(root.path()).unwrap();
        assert!(!dead_pid.exists(), "a dead owner's directory is removed");
        assert!(!reused_pid.exists(), "so is one whose PID now names another process");
        for kept in [&live, &starting, &other_boot, &other_ns, &not_ours, &file] {
            assert!(kept.exists(), "{} kept", kept.display());
        }
        assert!(new.path().join(OWNER_FILE).exists());
        // A second start keeps the first one's directory while it lives.
        let second = temp_dir_in(root.path()).unwrap();
        assert!(new.path().exists() && second.path().exists());
    }
}
