//! The process being traced: an existing PID, or a command that we start ourselves.
//!
//! A spawned command is forked first and held at a gate (a pipe it blocks on) until every probe
//! is attached, so that its very first system call is counted; then it execs, with default
//! SIGPIPE and no blocked signals. Its end is watched through a pidfd, which cannot be confused
//! with a recycled PID; when zc-trace stops first, it is signalled and waited for.
use std::{
    ffi::CString,
    fs,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use crate::{
    kernel::signals::{Received, Signals},
    model::exit::{ExitKind, Fatal},
};

/// Of these PIDs, the ones whose process no longer exists (no /proc/PID): what a long-running
/// session deletes from its maps.
pub fn gone(pids: impl IntoIterator<Item = u32>) -> std::collections::BTreeSet<u32> {
    pids.into_iter().filter(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()).collect()
}

/// Linux's PF_KTHREAD: the task is a kernel thread (no user space to trace).
const PF_KTHREAD: u64 = 0x0020_0000;

#[derive(Debug)]
pub struct Target {
    pub pid: u32,
    pub comm: String,
    /// The PID it was given as, in another PID namespace (`--pidns`).
    pub ns_pid: Option<u32>,
    pidfd: OwnedFd,
    spawned: Option<Gate>,
}

/// The write end of the gate pipe and the read end of the exec-error pipe of a held child.
#[derive(Debug)]
struct Gate {
    go: Option<OwnedFd>,
    exec_error: OwnedFd,
}

/// How the traced process ended, as far as we can know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Our child: its exit code, or 128 + the signal that killed it (as shells report it).
    Child(i32),
    /// Not our child: the kernel tells only that it is gone.
    Gone,
}

impl Target {
    /// An existing process, checked now so that a typo fails before anything is loaded.
    pub fn existing(pid: u32) -> Result<Self, Fatal> {
        let no_such = || {
            Fatal::new(ExitKind::NoTarget, format!("no process with PID {pid}: check the number with `ps -p {pid}`"))
        };
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|_| no_such())?;
        let (comm, flags) = parse_stat(&stat).ok_or_else(no_such)?;
        if flags & PF_KTHREAD != 0 {
            return Err(Fatal::new(
                ExitKind::NoTarget,
                format!(
                    "PID {pid} ({comm}) is a kernel thread: it makes no system calls to trace; give a user process"
                ),
            ));
        }
        let status = fs::read_to_string(format!("/proc/{pid}/status")).map_err(|_| no_such())?;
        if let Some(tgid) = status_field(&status, "Tgid:").filter(|&t| t != pid) {
            return Err(Fatal::new(
                ExitKind::NoTarget,
                format!("{pid} is a thread of process {tgid}: trace the process with -p {tgid}"),
            ));
        }
        let pidfd = pidfd_open(pid).map_err(|_| no_such())?;
        Ok(Self { pid, comm, ns_pid: None, pidfd, spawned: None })
    }

    /// Forks `argv`, held before exec until [`Target::release`]. Call before any thread exists.
    pub fn spawn_held(argv: &[String]) -> Result<Self, Fatal> {
        let program = argv.first().ok_or_else(|| Fatal::usage("no command given after `--`"))?;
        let not_runnable = |why: &str| Fatal::new(ExitKind::NoTarget, format!("cannot run `{program}`: {why}"));
        // Resolved here rather than by execvp in the child: execvp tries each PATH entry, and
        // every failed attempt would show up as an execve in the traced command's counts.
        let path = if program.contains('/') {
            std::path::PathBuf::from(program)
        } else {
            find_in_path(program).ok_or_else(|| not_runnable("not found in PATH"))?
        };
        let c_path = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| Fatal::usage("arguments must not contain NUL bytes"))?;
        let c_argv: Vec<CString> = argv
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| Fatal::usage("arguments must not contain NUL bytes"))?;
        let mut c_ptrs: Vec<*const libc::c_char> = c_argv.iter().map(|a| a.as_ptr()).collect();
        c_ptrs.push(std::ptr::null());

        let comm = path.file_name().map_or(program.clone(), |n| n.to_string_lossy().into_owned());
        // SAFETY: async-signal-safe calls only; documented single-threaded precondition.
        Self::fork_gated(&comm, |err_wr| unsafe {
            default_signals();
            libc::execv(c_path.as_ptr(), c_ptrs.as_ptr());
            let errno = *libc::__errno_location();
            libc::write(err_wr, errno.to_ne_bytes().as_ptr().cast(), 4);
            127
        })
    }

    /// Forks a child that runs `body` (named `comm` in the kernel) once released, then exits
    /// with its return value. Call while single-threaded.
    pub fn fork_held(comm: &str, body: impl FnOnce() -> i32) -> Result<Self, Fatal> {
        let name = CString::new(comm.chars().take(15).collect::<String>()).unwrap_or_default();
        Self::fork_gated_named(comm, Some(&name), |err_wr| {
            // Nothing to report through the exec-error pipe: closing it lets release() return.
            unsafe { libc::close(err_wr) };
            body()
        })
    }

    /// The gate: the child blocks reading a pipe until [`Target::release`] writes to it; a
    /// second, close-on-exec pipe carries an exec failure back (or closes on success).
    fn fork_gated(comm: &str, body: impl FnOnce(RawFd) -> i32) -> Result<Self, Fatal> {
        Self::fork_gated_named(comm, None, body)
    }

    /// `name`, when given, is set as the child's comm before it waits at the gate, so the
    /// prctl is not among the syscalls traced.
    fn fork_gated_named(comm: &str, name: Option<&CString>, body: impl FnOnce(RawFd) -> i32) -> Result<Self, Fatal> {
        let failed = |e: std::io::Error| Fatal::new(ExitKind::NoTarget, format!("cannot start `{comm}`: {e}"));
        let (gate_rd, gate_wr) = pipe().map_err(failed)?;
        let (err_rd, err_wr) = pipe().map_err(failed)?;
        // SAFETY: single-threaded (documented precondition): the child may run any code.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(failed(std::io::Error::last_os_error()));
        }
        if pid == 0 {
            // SAFETY: in the child; only our own fds are touched.
            unsafe {
                libc::close(gate_wr.as_raw_fd());
                if let Some(name) = name {
                    // PR_SET_NAME takes a NUL-terminated string of at most 16 bytes.
                    libc::prctl(libc::PR_SET_NAME, name.as_ptr());
                }
                let mut byte = 0u8;
                if libc::read(gate_rd.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) != 1 {
                    libc::_exit(127); // zc-trace gave up before attaching: do not run
                }
                libc::close(gate_rd.as_raw_fd());
                let code = body(err_wr.as_raw_fd());
                libc::_exit(code);
            }
        }
        drop((gate_rd, err_wr));
        let pid = pid as u32;
        let pidfd = pidfd_open(pid).map_err(failed)?;
        Ok(Self {
            ns_pid: None,
            pid,
            comm: comm.chars().take(15).collect(),
            pidfd,
            spawned: Some(Gate { go: Some(gate_wr), exec_error: err_rd }),
        })
    }

    /// Lets a held child exec. Returns an error (and reaps the child) when exec failed.
    pub fn release(&mut self) -> Result<(), Fatal> {
        let Some(gate) = self.spawned.as_mut() else { return Ok(()) };
        if let Some(go) = gate.go.take() {
            // SAFETY: writing one byte from a valid buffer to our own pipe.
            unsafe { libc::write(go.as_raw_fd(), b"g".as_ptr().cast(), 1) };
        }
        let mut errno = [0u8; 4];
        // Blocks until exec succeeded (the CLOEXEC write end closes: 0 bytes) or failed (errno).
        let n = unsafe { libc::read(gate.exec_error.as_raw_fd(), errno.as_mut_ptr().cast(), 4) };
        if n == 4 {
            let err = std::io::Error::from_raw_os_error(i32::from_ne_bytes(errno));
            reap(self.pid);
            return Err(Fatal::new(ExitKind::NoTarget, format!("cannot run `{}`: {err}", self.comm)));
        }
        Ok(())
    }

    /// Kills and reaps a process we forked (never one we were pointed at).
    pub fn kill(self) {
        if self.spawned.is_some() {
            self.send(libc::SIGKILL);
            reap(self.pid);
        }
    }

    /// Sends a signal to a process we forked (never to one we were pointed at).
    fn send(&self, signo: i32) {
        if self.spawned.is_some() {
            // SAFETY: signalling our own child, identified by its pidfd (no PID reuse race).
            unsafe { libc::syscall(libc::SYS_pidfd_send_signal, self.pidfd.as_raw_fd(), signo, 0, 0) };
        }
    }

    /// zc-trace stops while the command it spawned still runs: `why` is the signal zc-trace
    /// received (`None`: its `-d` elapsed). The command is sent the same signal (SIGTERM after
    /// `-d`), unless the terminal sent it to a process group it shares with zc-trace (then it
    /// has it already), and is waited for. It gets [`STOP_GRACE`] to exit; after that, or at
    /// another signal to zc-trace, it is killed with SIGKILL. Returns how it ended.
    /// A process zc-trace did not spawn is left alone: `None`.
    pub async fn stop_spawned(&self, why: Option<Received>, signals: &mut Signals) -> std::io::Result<Option<Ended>> {
        if !self.is_spawned() {
            return Ok(None);
        }
        if let Some(signo) = signal_to_forward(why, self.in_our_process_group()) {
            self.send(signo);
        }
        let ended = self.ended();
        tokio::pin!(ended);
        let grace = tokio::time::sleep(STOP_GRACE);
        tokio::pin!(grace);
        let mut killed = false;
        loop {
            tokio::select! {
                ended = &mut ended => return ended.map(Some),
                () = &mut grace, if !killed => {
                    eprintln!(
                        "zc-trace: PID {} ({}) did not exit within {} s; killing it with SIGKILL",
                        self.pid, self.comm, STOP_GRACE.as_secs()
                    );
                    self.send(libc::SIGKILL);
                    killed = true;
                }
                received = signals.recv(), if !killed => {
                    let received = received?;
                    eprintln!(
                        "zc-trace: {} again while PID {} ({}) is exiting; killing it with SIGKILL",
                        received.name(), self.pid, self.comm
                    );
                    self.send(libc::SIGKILL);
                    killed = true;
                }
            }
        }
    }

    /// The command is in zc-trace's process group (it has not moved to one of its own).
    fn in_our_process_group(&self) -> bool {
        // SAFETY: getpgid and getpgrp only read process attributes.
        let (theirs, ours) = unsafe { (libc::getpgid(self.pid as libc::pid_t), libc::getpgrp()) };
        theirs == ours
    }

    /// True when the process has already exited (its pidfd is readable).
    pub fn has_ended(&self) -> bool {
        let mut pfd = libc::pollfd { fd: self.pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: polling our own pidfd without waiting.
        unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
    }

    pub fn is_spawned(&self) -> bool {
        self.spawned.is_some()
    }

    /// Resolves when the process has ended.
    pub async fn ended(&self) -> std::io::Result<Ended> {
        // SAFETY: the pidfd is owned by `self` and outlives this registration, which is
        // dropped at the end of this function.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(self.pidfd.as_raw_fd(), tokio::io::Interest::READABLE)
        }?;
        // A pidfd becomes readable when the process exits.
        let _ready = fd.readable().await?;
        Ok(if self.is_spawned() { Ended::Child(reap(self.pid)) } else { Ended::Gone })
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // A child that was never released must not run the command: closing the gate (the
        // taken fd is dropped at once) makes it exit with 127; reaping it leaves no zombie.
        if let Some(gate) = self.spawned.as_mut()
            && gate.go.take().is_some()
        {
            reap(self.pid);
        }
    }
}

/// How long a spawned command has to exit once zc-trace stops and has signalled it.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The signal a spawned command is sent when zc-trace stops before it ends: the one zc-trace
/// received, SIGTERM when `-d` elapsed; none when the kernel sent it (the terminal: Ctrl-C,
/// hangup) and the command shares zc-trace's process group, so that it got the same one.
fn signal_to_forward(why: Option<Received>, same_group: bool) -> Option<i32> {
    match why {
        None => Some(libc::SIGTERM),
        Some(r) if r.from_kernel && same_group => None,
        Some(r) => Some(r.signo),
    }
}

/// In a forked child before exec: the dispositions and mask a command expects. Rust's runtime
/// ignores SIGPIPE, and an ignored signal stays ignored across exec (a pipeline's writer would
/// see EPIPE and complain instead of dying quietly); signals zc-trace blocks stay blocked
/// across exec. Signals ignored when zc-trace started (e.g. SIGHUP under `nohup`) are left
/// ignored, as they were meant to be.
///
/// # Safety
/// Only async-signal-safe calls: fit for a forked child.
unsafe fn default_signals() {
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// Waits for our child and converts its status the way shells do.
fn reap(pid: u32) -> i32 {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::waitpid(pid as i32, &mut status, 0) };
    if r < 0 {
        return 1;
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn find_in_path(program: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// `(comm, flags)` from /proc/PID/stat. The comm is in parentheses and may itself contain
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    // After ")": state(3) ppid(4) pgrp(5) session(6) tty_nr(7) tpgid(8) flags(9).
    let flags = stat_field(stat, 9)?.parse().ok()?;
    Some((comm, flags))
}

/// When a process started, in clock ticks after boot (/proc/PID/stat field 22; `pid` may be
/// `self`): with its PID, it names one process and not a later one given the same PID.
pub fn start_ticks(pid: &str) -> Option<u64> {
    stat_field(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?, 22)?.parse().ok()
}

/// Field `n` (1-based, as in proc(5)) of /proc/PID/stat, for n >= 3 (after the comm).
fn stat_field(stat: &str, n: usize) -> Option<&str> {
    let close = stat.rfind(')')?;
    stat.get(close + 1..)?.split_whitespace().nth(n.checked_sub(3)?)
}

fn status_field(status: &str, name: &str) -> Option<u32> {
    status.lines().find(|l| l.starts_with(name))?[name.len()..].trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_comm_may_contain_parentheses_and_spaces() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0";
        assert_eq!(parse_stat(stat), Some(("a (b) c".to_string(), 4194560)));
    }

    #[test]
    fn start_time_is_field_22() {
        let stat = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(stat_field(stat, 22), Some("98765"));
        assert!(start_ticks("self").is_some_and(|t| t > 0));
    }

    #[test]
    fn kernel_threads_have_pf_kthread() {
        let stat = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0";
        let (_, flags) = parse_stat(stat).unwrap();
        assert_ne!(flags & PF_KTHREAD, 0);
    }

    #[test]
    fn a_stopping_zc_trace_forwards_its_signal_once() {
        let from = |signo, from_kernel| Some(Received { signo, from_kernel });
        // -d elapsed: SIGTERM.
        assert_eq!(signal_to_forward(None, true), Some(libc::SIGTERM));
        // kill(2) to zc-trace alone: the command is sent the same signal.
        assert_eq!(signal_to_forward(from(libc::SIGTERM, false), true), Some(libc::SIGTERM));
        assert_eq!(signal_to_forward(from(libc::SIGINT, false), true), Some(libc::SIGINT));
        // Ctrl-C at the terminal reached the whole process group: not sent twice ...
        assert_eq!(signal_to_forward(from(libc::SIGINT, true), true), None);
        // ... unless the command left the group, and so did not get it.
        assert_eq!(signal_to_forward(from(libc::SIGHUP, true), false), Some(libc::SIGHUP));
    }

    #[test]
    fn unknown_pid_is_a_no_target_error() {
        let err = Target::existing(4_000_000).unwrap_err();
        assert_eq!(err.kind, ExitKind::NoTarget);
        assert!(err.message.contains("no process with PID 4000000"));
    }
}
