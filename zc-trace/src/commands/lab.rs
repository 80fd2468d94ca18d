//! `zc-trace lab`: for each strategy, fork a workload held at the gate, attach the counting
//! programs filtered to it, release it, and read what it cost.
use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    cli::LabArgs,
    exit::Fatal,
    kernel::{self, KernelInfo},
    lab::{self, LabReport, LabRow, Skipped},
    loader::Settings,
    output, privileges,
    report::{Drops, SyscallReport},
    session::Session,
    target::{Ended, Target},
    workloads::{self, Spec, Strategy},
};

pub fn run(args: LabArgs) -> anyhow::Result<i32> {
    if let Some(path) = &args.output.json {
        output::check_writable(path)?;
    }
    if args.chunk > args.size {
        return Err(Fatal::usage(format!(
            "--chunk ({}) is larger than --size ({}): choose a chunk no larger than the file",
            args.chunk, args.size
        ))
        .into());
    }
    if args.chunk > 1 << 30 {
        return Err(Fatal::usage("--chunk is larger than 1GiB: choose e.g. 64KiB").into());
    }
    privileges::require_tracing()?;
    kernel::prepare_pseudo_filesystems();
    super::runtime()?.block_on(lab(args))
}

async fn lab(args: LabArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    let strategies = if args.strategies.is_empty() { Strategy::ALL.to_vec() } else { args.strategies.clone() };
    let dir = TempDir::create()?;
    let src = dir.path().join("source");
    write_random_file(&src, args.size).context("creating the source file")?;

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    let mut probes = Vec::new();
    let mut drops = Drops::new(Default::default());
    for strategy in strategies {
        if let Some(reason) = lab::unsupported(strategy, &args.sink) {
            skipped.push(Skipped { strategy: strategy.name(), reason });
            continue;
        }
        let dst = match args.sink.as_str() {
            "null" => PathBuf::from("/dev/null"),
            _ => dir.path().join(format!("sink-{strategy}")),
        };
        let spec = Spec { strategy, src: src.clone(), dst: dst.clone(), chunk: args.chunk as usize };
        let result = SharedResult::new()?;
        let mut target = Target::fork_held(&format!("zc-{strategy}"), || {
            let t = Instant::now();
            let outcome = workloads::run(&spec);
            result.store(&outcome, t.elapsed().as_nanos() as u64);
            if outcome.is_ok() { 0 } else { 1 }
        })?;
        let session = Session::attach(Settings { filter_tgid: Some(target.pid) })?;
        target.release()?;
        let interrupted = tokio::select! {
            ended = target.ended() => {
                if ended? != Ended::Child(0) {
                    anyhow::bail!("the {strategy} workload failed: {}", result.error());
                }
                false
            }
            _ = sigint.recv() => true,
            _ = sigterm.recv() => true,
        };
        if interrupted {
            eprintln!("zc-trace: interrupted; reporting the strategies that completed");
            break;
        }
        let counts = session.syscalls_of(target.pid)?;
        drops = session.drops()?;
        probes = session.probes().to_vec();
        drop(session);
        if dst != Path::new("/dev/null") {
            let _ = std::fs::remove_file(&dst);
        }
        let all = SyscallReport::rows(&counts);
        let (moved, nanos) = result.load();
        let elapsed_s = nanos as f64 / 1e9;
        rows.push(LabRow {
            strategy: strategy.name(),
            role: "sender",
            pid: target.pid,
            comm: target.comm.clone(),
            payload_bytes: moved,
            syscalls: all.iter().map(|r| r.calls).sum(),
            mode_switches: all.iter().map(|r| r.mode_switches).sum(),
            data_calls: strategy
                .data_syscalls()
                .iter()
                .filter_map(|name| all.iter().find(|r| r.name == *name).cloned())
                .collect(),
            elapsed_s,
            throughput_bytes_per_s: if elapsed_s > 0.0 { moved as f64 / elapsed_s } else { 0.0 },
        });
    }
    let report = LabReport {
        kernel: KernelInfo::read(),
        probes,
        size_bytes: args.size,
        chunk_bytes: args.chunk,
        sink: args.sink.clone(),
        rows,
        skipped,
        drops,
        duration_s: started.elapsed().as_secs_f64(),
    };
    match &args.output.json {
        Some(path) => output::write_json(path, &report)?,
        None => print!("{}", lab::render(&report, args.raw)),
    }
    Ok(0)
}

/// A private directory under $TMPDIR, removed with everything in it on drop (also when the
/// lab is interrupted or fails).
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> anyhow::Result<Self> {
        let template = std::env::temp_dir().join("zc-trace-lab.XXXXXX");
        let mut bytes = template.into_os_string().into_encoded_bytes();
        bytes.push(0);
        // SAFETY: a NUL-terminated, writable template; mkdtemp creates the dir with mode 0700.
        let p = unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) };
        if p.is_null() {
            return Err(std::io::Error::last_os_error()).context("creating the lab's temp directory");
        }
        bytes.pop();
        Ok(Self(PathBuf::from(unsafe { std::ffi::OsString::from_encoded_bytes_unchecked(bytes) })))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Random (incompressible) data, so that no layer can shortcut the copy.
fn write_random_file(path: &Path, size: u64) -> std::io::Result<()> {
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

/// A page shared with the forked workload, which writes its result there: reporting through
/// memory costs the workload no system call, so its counts stay exactly its own.
struct SharedResult(*mut u64);

impl SharedResult {
    fn new() -> anyhow::Result<Self> {
        // SAFETY: a fresh anonymous shared mapping of one page.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0)
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mapping the result page");
        }
        Ok(Self(p.cast()))
    }
    /// [bytes moved, nanoseconds, errno]
    fn store(&self, outcome: &std::io::Result<u64>, nanos: u64) {
        let (moved, errno) = match outcome {
            Ok(n) => (*n, 0),
            Err(e) => (0, e.raw_os_error().unwrap_or(-1) as u64),
        };
        // SAFETY: the page holds at least three u64s.
        unsafe {
            self.0.write_volatile(moved);
            self.0.add(1).write_volatile(nanos);
            self.0.add(2).write_volatile(errno);
        }
    }
    fn load(&self) -> (u64, u64) {
        unsafe { (self.0.read_volatile(), self.0.add(1).read_volatile()) }
    }
    fn error(&self) -> String {
        let errno = unsafe { self.0.add(2).read_volatile() } as i32;
        std::io::Error::from_raw_os_error(errno).to_string()
    }
}

impl Drop for SharedResult {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping once.
        unsafe { libc::munmap(self.0.cast(), 4096) };
    }
}
