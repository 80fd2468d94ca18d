//! Running one workload under one tool (zc-trace, its floor, bpftrace, perf trace, strace),
//! zc-trace's own start-up time and peak memory, and the small statistics every table uses.
use std::{
    io::{BufRead as _, BufReader, Read as _},
    net::TcpListener,
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};

pub const RUNS: usize = 5;
pub const SOURCE_SIZE: u64 = 64 << 20;
/// Untraced duration the full workloads are scaled to.
pub const TARGET_SECONDS: f64 = 0.5;

#[derive(Clone, Copy, PartialEq)]
pub enum Tool {
    Untraced,
    Floor,
    ZcTrace,
    ZcTraceAll,
    Bpftrace,
    PerfTrace,
    Strace,
    /// `trace --stacks`: what copy stacks add (last, so that the others keep their index).
    ZcTraceStacks,
}

impl Tool {
    pub const ALL: [Tool; 8] = [
        Tool::Untraced,
        Tool::Floor,
        Tool::ZcTrace,
        Tool::ZcTraceAll,
        Tool::Bpftrace,
        Tool::PerfTrace,
        Tool::Strace,
        Tool::ZcTraceStacks,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Tool::Untraced => "untraced",
            Tool::Floor => "floor (empty programs, same tracepoints)",
            Tool::ZcTrace => "zc-trace trace",
            Tool::ZcTraceAll => "zc-trace trace -a (system-wide)",
            Tool::Bpftrace => "bpftrace (per-process syscall count)",
            Tool::PerfTrace => "perf trace -s",
            Tool::Strace => "strace -c",
            Tool::ZcTraceStacks => "zc-trace trace --stacks (copy stacks)",
        }
    }
    /// The slow tools get a smaller workload (1 in this many passes).
    pub fn scale_down(self) -> u32 {
        match self {
            Tool::PerfTrace => 10,
            Tool::Strace => 50,
            _ => 1,
        }
    }
}

pub struct Workload {
    pub name: &'static str,
    pub strategy: &'static str,
    pub chunk: &'static str,
    pub tcp: bool,
}

pub const WORKLOADS: [Workload; 3] = [
    Workload { name: "read-write 4 KiB to /dev/null", strategy: "read-write", chunk: "4KiB", tcp: false },
    Workload { name: "read-write 64 KiB to /dev/null", strategy: "read-write", chunk: "64KiB", tcp: false },
    Workload { name: "sendfile 64 KiB to a loopback TCP peer", strategy: "sendfile", chunk: "64KiB", tcp: true },
];

pub struct Sample {
    pub seconds: f64,
    /// zc-trace runs: its JSON report.
    pub report: Option<serde_json::Value>,
}

/// Runs one workload under one tool and returns the workload's own timing.
pub fn measure(
    zc_trace: &Path,
    dir: &Path,
    src: &Path,
    w: &Workload,
    passes: u32,
    tool: Tool,
) -> anyhow::Result<Sample> {
    let result = dir.join("result.txt");
    let _ = std::fs::remove_file(&result);
    let json = dir.join("zc.json");
    let receiver = w.tcp.then(Receiver::start).transpose()?;
    let sink = receiver.as_ref().map_or("null".to_string(), |r| format!("tcp:{}", r.port));
    let workload: Vec<String> = [
        zc_trace.to_str().unwrap(),
        "workload",
        "--strategy",
        w.strategy,
        "--src",
        src.to_str().unwrap(),
        "--chunk",
        w.chunk,
        "--passes",
        &passes.to_string(),
        "--sink",
        &sink,
        "--result",
        result.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let zc = zc_trace.to_str().unwrap().to_string();
    let mut system_wide = None;
    let argv: Vec<String> = match tool {
        Tool::Untraced => workload.clone(),
        Tool::Floor => [vec![zc, "trace".into(), "--floor".into(), "--".into()], workload.clone()].concat(),
        Tool::ZcTrace => {
            [vec![zc, "trace".into(), "--json".into(), json.to_str().unwrap().into(), "--".into()], workload.clone()]
                .concat()
        }
        Tool::ZcTraceStacks => [
            vec![zc, "trace".into(), "--stacks".into(), "-o".into(), "/dev/null".into(), "--".into()],
            workload.clone(),
        ]
        .concat(),
        Tool::ZcTraceAll => {
            system_wide = Some(SystemWide::start(zc_trace)?);
            workload.clone()
        }
        Tool::Bpftrace => vec![
            "bpftrace".into(),
            "-q".into(),
            "-e".into(),
            "tracepoint:raw_syscalls:sys_enter /pid == cpid/ { @[args->id] = count(); }".into(),
            "-c".into(),
            workload.join(" "),
        ],
        Tool::PerfTrace => [
            vec!["perf".into(), "trace".into(), "-s".into(), "-o".into(), "/dev/null".into(), "--".into()],
            workload.clone(),
        ]
        .concat(),
        Tool::Strace => {
            [vec!["strace".into(), "-c".into(), "-o".into(), "/dev/null".into(), "--".into()], workload.clone()]
                .concat()
        }
    };
    let status = with_tracefs(&argv).stdout(Stdio::null()).stderr(Stdio::null()).status()?;
    drop(system_wide);
    drop(receiver);
    if !status.success() {
        bail!("{:?} failed ({status})", argv);
    }
    let text = std::fs::read_to_string(&result).context("the workload wrote no result")?;
    let ns: f64 = text
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("elapsed_ns="))
        .and_then(|v| v.parse().ok())
        .context("no elapsed_ns")?;
    let report = (tool == Tool::ZcTrace)
        .then(|| std::fs::read_to_string(&json).ok())
        .flatten()
        .and_then(|t| serde_json::from_str(&t).ok());
    Ok(Sample { seconds: ns / 1e9, report })
}

/// perf and bpftrace need tracefs; when the host has not mounted it, run them in a private
/// mount namespace that has it (nothing changes outside).
pub fn with_tracefs(argv: &[String]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("[ -d /sys/kernel/tracing/events ] || mount -t tracefs none /sys/kernel/tracing; exec \"$@\"")
        .arg("sh")
        .args(argv);
    cmd
}

/// A loopback TCP receiver draining one connection, for the sendfile workload.
pub struct Receiver {
    pub port: u16,
    pub thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    pub fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let thread = std::thread::spawn(move || {
            // One connection per pass: accept until the workload is done and we are dropped.
            listener.set_nonblocking(false).ok();
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut buf = vec![0u8; 1 << 16];
                while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
            }
        });
        Ok(Self { port, thread: Some(thread) })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Unblock accept() with a last connection that closes at once.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        drop(self.thread.take());
    }
}

/// `zc-trace trace -a` running in the background for the duration of one workload run.
pub struct SystemWide(pub std::process::Child);

impl SystemWide {
    pub fn start(zc_trace: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(zc_trace)
            .args(["trace", "-a", "--json", "/dev/null"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap()).read_line(&mut line)?;
        if !line.contains("attached") {
            bail!("zc-trace -a did not attach: {line}");
        }
        Ok(Self(child))
    }
}

impl Drop for SystemWide {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let _ = self.0.wait();
    }
}

pub struct Startup {
    pub attach_ms: Vec<f64>,
    pub idle_rss_kib: Vec<u64>,
    pub busy_rss_kib: u64,
}

/// Time from exec to "attached" with every probe in place, and peak RSS (idle, and while
/// tracing the 4 KiB workload), from wait4's rusage.
pub fn startup_and_rss(zc_trace: &Path) -> anyhow::Result<Startup> {
    let mut attach_ms = Vec::new();
    let mut idle_rss_kib = Vec::new();
    for _ in 0..RUNS {
        let mut sleeper = Command::new("sleep").arg("30").spawn()?;
        let started = Instant::now();
        let mut child = Command::new(zc_trace)
            .args(["trace", "-p", &sleeper.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap()).read_line(&mut line)?;
        attach_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        idle_rss_kib.push(wait_rss(child.id())?);
        let _ = sleeper.kill();
        let _ = sleeper.wait();
    }
    let dir = std::env::temp_dir();
    let src = dir.join("zc-bench-rss.bin");
    std::fs::write(&src, vec![7u8; 16 << 20])?;
    let child = Command::new(zc_trace)
        .args(["trace", "--json", "/dev/null", "--"])
        .arg(zc_trace)
        .args(["workload", "--strategy", "read-write", "--chunk", "4KiB", "--passes", "20", "--src"])
        .arg(&src)
        .args(["--result", "/dev/null"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let busy_rss_kib = wait_rss(child.id())?;
    std::fs::remove_file(&src)?;
    Ok(Startup { attach_ms, idle_rss_kib, busy_rss_kib })
}

/// Waits for a child and returns its peak resident set size in KiB: the largest `VmHWM` (the
/// high-water mark of its own address space) read from /proc every 10 ms until it exits.
/// Not wait4's `ru_maxrss`: Linux carries the high-water mark of the address space replaced
/// at exec into it, so a child of this (large) process would report our RSS, not its own.
pub fn wait_rss(pid: u32) -> anyhow::Result<u64> {
    let hwm = || -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
    };
    let mut peak = 0;
    loop {
        peak = peak.max(hwm().unwrap_or(0));
        let mut status = 0;
        // SAFETY: waiting for our own child with a valid out-pointer.
        match unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) } {
            0 => std::thread::sleep(std::time::Duration::from_millis(10)),
            r if r == pid as i32 => return Ok(peak),
            _ => bail!("waitpid: {}", std::io::Error::last_os_error()),
        }
    }
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

pub fn min(v: &[f64]) -> f64 {
    v.iter().cloned().fold(f64::INFINITY, f64::min)
}

pub fn max(v: &[f64]) -> f64 {
    v.iter().cloned().fold(0.0, f64::max)
}
