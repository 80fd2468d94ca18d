//! A command started by `trace -- CMD` / `syscalls -- CMD` (README, "A spawned command"): it
//! runs with the default SIGPIPE, and when zc-trace stops first (-d, a signal) it is sent the
//! same signal (SIGTERM after -d), waited for, and its exit status is zc-trace's.
mod common;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::*;

/// 128 + the signal, as shells and the README report a command killed by it.
fn killed_by(signo: i32) -> Option<i32> {
    Some(128 + signo)
}

/// The children of `parent` named `comm`, from /proc/PID/stat (field 4 is the parent).
fn children_named(parent: u32, comm: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let ppid = stat[close + 1..].split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok());
        if &stat[open + 1..close] == comm && ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// Waits (up to 10 s) for zc-trace's child to have exec'd `comm`, and returns its PID.
fn wait_for_child(zc_trace: u32, comm: &str) -> u32 {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let [pid] = children_named(zc_trace, comm)[..] {
            return pid;
        }
        assert!(Instant::now() < until, "no `{comm}` child of zc-trace ({zc_trace}) after 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for zc-trace to exit, at most `limit`; kills it (and `command`) if it does not.
fn wait_at_most(child: &mut Child, limit: Duration, command: u32) -> std::process::ExitStatus {
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            unsafe { libc::kill(command as i32, libc::SIGKILL) };
            panic!("zc-trace did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True when `pid` no longer names the `sleep` we started (reaped, not re-parented to init);
/// one that is still there is killed, not left behind.
fn gone(pid: u32) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() == "sleep" {
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        return false;
    }
    true
}

#[test]
fn the_command_runs_with_the_default_sigpipe() {
    if !privileged("the_command_runs_with_the_default_sigpipe") {
        return;
    }
    // A shell cannot catch or reset a signal that was ignored when it started, so `kill -PIPE
    // $$` kills it only when SIGPIPE has its default action.
    for command in ["trace", "syscalls"] {
        let out = run(&[command, "--json", "/dev/null", "--", "sh", "-c", "kill -PIPE $$"]);
        assert_eq!(out.status.code(), killed_by(libc::SIGPIPE), "{command}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // And a pipeline's writer dies quietly once the reader is done, instead of failing on EPIPE.
    let out = run(&["trace", "--json", "/dev/null", "--", "sh", "-c", "yes | head -1 >/dev/null"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("Broken pipe") && !stderr.contains("write error"), "{stderr}");
}

#[test]
fn after_d_the_command_is_sent_sigterm_and_its_status_is_ours() {
    if !privileged("after_d_the_command_is_sent_sigterm_and_its_status_is_ours") {
        return;
    }
    for command in ["trace", "syscalls"] {
        let started = Instant::now();
        let mut zc = Command::new(zc_trace())
            .args([command, "-d", "1s", "--json", "-o", "-", "--", "sleep", "30"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let sleep = wait_for_child(zc.id(), "sleep");
        let status = wait_at_most(&mut zc, Duration::from_secs(15), sleep);
        let gone = gone(sleep); // before any assertion, so that a failure leaves nothing behind
        let out = zc.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(gone, "{command}: sleep ({sleep}) outlived zc-trace");
        assert_eq!(status.code(), killed_by(libc::SIGTERM), "{command}: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(10), "{command}: took {:?}", started.elapsed());
        // The summary is still printed, and says how the command ended.
        let report = json(&out);
        if command == "syscalls" {
            assert_eq!(report["target"]["exit_status"], 143, "{report}");
        } else {
            assert_eq!(report["rows"][0]["comm"], "sleep", "{report}");
        }
    }
}

#[test]
fn sigterm_to_zc_trace_is_forwarded_to_the_command() {
    if !privileged("sigterm_to_zc_trace_is_forwarded_to_the_command") {
        return;
    }
    let (mut zc, _) = start_attached(&["trace", "--json", "-o", "-", "--", "sleep", "30"]);
    let sleep = wait_for_child(zc.id(), "sleep");
    let sent = Instant::now();
    unsafe { libc::kill(zc.id() as i32, libc::SIGTERM) };
    let status = wait_at_most(&mut zc, Duration::from_secs(15), sleep);
    assert!(gone(sleep), "sleep ({sleep}) outlived zc-trace");
    assert_eq!(status.code(), killed_by(libc::SIGTERM));
    assert!(sent.elapsed() < Duration::from_secs(5), "took {:?}: sleep was not sent SIGTERM", sent.elapsed());
    let out = zc.wait_with_output().unwrap();
    assert_eq!(json(&out)["rows"][0]["comm"], "sleep");
}

/// The command's standard output is its own: the report goes to standard error beside it
/// (as strace and `perf stat` do), or to the file `-o` / `--json FILE` names.
#[test]
fn the_report_never_interleaves_with_the_commands_stdout() {
    if !privileged("the_report_never_interleaves_with_the_commands_stdout") {
        return;
    }
    for command in ["trace", "syscalls"] {
        for format in [&["--json"][..], &[][..]] {
            let mut args = vec![command];
            args.extend_from_slice(format);
            args.extend_from_slice(&["--", "sh", "-c", "echo from-the-command"]);
            let out = run(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{command} {format:?}: {stderr}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), "from-the-command\n", "{command} {format:?}");
            let report = if format.is_empty() { "mode sw" } else { "\"kernel\"" };
            assert!(stderr.contains(report), "{command} {format:?}: no report on stderr: {stderr}");
        }
        let dir = TempDir::new("spawned-output");
        let file = dir.0.join("report.json");
        let out = run(&[command, "--json", "-o", file.to_str().unwrap(), "--", "sh", "-c", "echo from-the-command"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "from-the-command\n");
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert!(report["kernel"].is_object(), "{report}");
    }
}
