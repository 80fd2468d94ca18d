//! Shared helpers for the privileged integration tests.
#![allow(dead_code)]

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    thread::{self, JoinHandle},
    time::Duration,
};

/// The zc-trace binary under test: `ZC_TRACE_BIN` (set by `cargo xtask test`), else the
/// workspace's debug build.
pub fn zc_trace() -> PathBuf {
    if let Some(p) = std::env::var_os("ZC_TRACE_BIN") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/zc-trace");
    assert!(p.exists(), "{} missing: run `cargo xtask test`", p.display());
    p
}

/// Tests stop zc-trace with SIGINT as Ctrl-C at a terminal would. A test run started as a
/// background job of a non-interactive shell inherits SIGINT ignored, and zc-trace keeps an
/// ignored SIGINT ignored on purpose (kernel/signals.rs): such a run waited forever. The
/// child gets the default disposition back, whatever the test run inherited.
pub fn sigint_as_at_a_terminal(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: signal(2) is async-signal-safe; nothing else runs between fork and exec here.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        })
    }
}

pub fn exact_io() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zc-exact-io"))
}

/// True when the test may go on. Privileged tests need root; in CI (CI=true) not having it is
/// a failure, never a silent skip. Elsewhere the skip is printed.
pub fn privileged(test: &str) -> bool {
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: needs root to load eBPF programs, and CI must run it");
    }
    eprintln!("SKIPPED {test}: needs root (run `sudo cargo xtask test`)");
    false
}

/// zc-trace's programs in the kernel's list (every one is named `zc_...`).
pub fn our_programs() -> Vec<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|p| p.name_as_str().map(str::to_owned))
        .filter(|n| n.starts_with("zc_"))
        .collect()
}

/// Waits up to 5 s for `check` to hold (what was there is gone): the kernel frees programs
/// once their last reference goes, a moment after zc-trace exits.
pub fn wait_gone(what: &str, mut check: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !check() {
        assert!(start.elapsed() < Duration::from_secs(5), "{what} still there after 5 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("zc-trace-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    /// A file of `size` pseudo-random bytes.
    pub fn file(&self, name: &str, size: usize) -> PathBuf {
        let path = self.0.join(name);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let data: Vec<u8> = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(&path, data).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts a test workload that prints `ready` and then waits in poll(2) on stdin without
/// reading it (zc-exact-io --wait, zc-fd-kinds, zc-many-threads), and returns once it is
/// ready: everything it does from then on is the workload proper. Release it with [`go`].
pub fn spawn_waiting(program: impl AsRef<std::ffi::OsStr>, args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the workload");
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut ready).unwrap();
    assert_eq!(ready, "ready\n");
    child
}

/// Lets a workload started by [`spawn_waiting`] run.
pub fn go(child: &mut Child) {
    child.stdin.take().unwrap().write_all(b"go").unwrap();
}

/// Runs zc-trace to completion.
pub fn run(args: &[&str]) -> Output {
    Command::new(zc_trace()).args(args).output().expect("running zc-trace")
}

/// Parses stdout as JSON, with the whole output in the panic message when it is not.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}); status {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Starts zc-trace and returns once it says it is attached (its stderr line), with the
/// stderr lines read so far.
pub fn start_attached(args: &[&str]) -> (Child, Vec<String>) {
    let mut child = sigint_as_at_a_terminal(&mut Command::new(zc_trace()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting zc-trace");
    let mut lines = Vec::new();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            let mut out = String::new();
            child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
            panic!("zc-trace ended before attaching: {lines:?} {out}");
        }
        let attached = line.contains("attached");
        lines.push(line);
        if attached {
            break;
        }
    }
    child.stderr = Some(stderr.into_inner());
    (child, lines)
}

/// The number of calls to `name` in a `syscalls --json` report (0 when absent: the report
/// leaves out syscalls that were never made, and the probe was attached).
pub fn calls(report: &serde_json::Value, name: &str) -> u64 {
    report["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .map_or(0, |r| r["calls"].as_u64().unwrap())
}

/// A report row's flow of `strategy` from `source` to `destination` (panics if it has none).
pub fn find_flow<'a>(
    row: &'a serde_json::Value,
    strategy: &str,
    source: &str,
    destination: &str,
) -> &'a serde_json::Value {
    row["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["strategy"] == strategy && f["source"] == source && f["destination"] == destination)
        .unwrap_or_else(|| panic!("no {strategy} {source} -> {destination} flow in {}", row["flows"]))
}

/// A server on 127.0.0.1 that sends `bytes` bytes to the first client, then closes.
pub fn upstream(bytes: u64) -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let chunk = vec![7u8; 64 << 10];
        let mut left = bytes as usize;
        while left > 0 {
            let n = left.min(chunk.len());
            s.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
    });
    (port, t)
}

/// A server on 127.0.0.1 that reads its first client to the end; joins with the byte count.
pub fn downstream() -> (u16, JoinHandle<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf).unwrap() {
                0 => return total,
                n => total += n as u64,
            }
        }
    });
    (port, t)
}

/// The body of a 200 answer to `GET path` from 127.0.0.1:`port`.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    // Generous: a debug build folding thousands of exited processes (serve -a on a busy
    // machine) has taken 24 s for one scrape here.
    s.set_read_timeout(Some(Duration::from_secs(90))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Installs a Debian package the test needs (a real program nobody here wrote) unless
/// `binary` is already there. In CI the tests run as root, so a missing package is
/// installed, never a reason to skip.
pub fn ensure_debian_package(binary: &str, package: &str) {
    if std::path::Path::new(binary).exists() {
        return;
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .expect("apt-get")
            .success()
    };
    // A fresh machine's package lists may be stale or empty: refreshed once, then again.
    let installed = install() || {
        let _ = Command::new("apt-get").arg("update").status();
        install()
    };
    assert!(installed, "installing Debian's {package} package failed");
}

/// Kills a child process when dropped, even if the test panics.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `zc-trace serve ARGS` and returns once it says it is serving.
pub fn start_serving(args: &[&str]) -> KillOnDrop {
    let mut serve = sigint_as_at_a_terminal(&mut Command::new(zc_trace()))
        .arg("serve")
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(serve.stderr.take().unwrap());
    let mut lines = String::new();
    while !lines.contains("serving") {
        assert!(stderr.read_line(&mut lines).unwrap() > 0, "serve ended before serving: {lines}");
    }
    assert!(lines.contains("kernel maps: "), "the maps' memory is reported at start-up: {lines}");
    KillOnDrop(serve)
}

/// Compiles `tests/fixtures/c/NAME.c` into `dir` with Debian's gcc and `flags` (installed
/// when missing: CI runs as root).
pub fn build_c(dir: &TempDir, name: &str, flags: &[&str]) -> PathBuf {
    ensure_debian_package("/usr/bin/cc", "gcc");
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/c/{name}.c"));
    let out = dir.0.join(name);
    let status = Command::new("cc").args(flags).arg("-o").arg(&out).arg(&source).status().expect("cc");
    assert!(status.success(), "compiling {}", source.display());
    out
}
