//! Faults, load and bad input: nothing lost, nothing left attached, nothing disturbed.
mod common;

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

fn signal(child: &Child, sig: i32) {
    // SAFETY: signalling a child of ours.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

fn processes_named(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
        .filter(|c| c.starts_with(prefix))
        .collect()
}

/// A workload that stays alive until its stdin is closed: `zc-exact-io` waiting in poll.
fn idle_workload(dir: &TempDir) -> Child {
    let file = dir.file("idle", 4096);
    spawn_waiting(exact_io(), &[file.to_str().unwrap(), "4096", "--wait"], &[])
}

#[test]
fn sigint_and_sigterm_during_trace_print_the_summary_and_detach() {
    if !privileged("sigint_and_sigterm_during_trace_print_the_summary_and_detach") {
        return;
    }
    // Programs are freed after their last fd closes and an RCU grace period: allow a moment.
    wait_gone("programs of earlier runs", || our_programs().is_empty());
    let dir = TempDir::new("sigtrace");
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let mut w = idle_workload(&dir);
        let pid = w.id().to_string();
        let (tracer, _) = start_attached(&["trace", "-p", &pid]);
        assert!(!our_programs().is_empty(), "attached while tracing");
        signal(&tracer, sig);
        let out = tracer.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("where the figures come from") && text.contains(&pid), "{text}");
        wait_gone("zc_ programs after exit", || our_programs().is_empty());
        assert!(w.try_wait().unwrap().is_none(), "the traced process was not disturbed");
        drop(w.stdin.take());
        assert!(w.wait().unwrap().success());
    }
}

/// SIGKILL cannot be caught: the kernel itself must drop every program and link with the
/// process's fds; the traced process's output is exactly what it would have been.
#[test]
fn sigkill_leaves_nothing_attached_and_the_target_undisturbed() {
    if !privileged("sigkill_leaves_nothing_attached_and_the_target_undisturbed") {
        return;
    }
    let dir = TempDir::new("sigkill");
    let out_file = dir.0.join("out");
    let script =
        format!("i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); sleep 0.005; done > {}", out_file.display());
    let mut target = Command::new("sh").args(["-c", &script]).spawn().unwrap();
    let pid = target.id().to_string();
    let (tracer, _) = start_attached(&["trace", "-p", &pid]);
    std::thread::sleep(Duration::from_millis(300));
    let mut tracer = tracer;
    tracer.kill().unwrap();
    tracer.wait().unwrap();
    wait_gone("zc_ programs", || our_programs().is_empty());
    assert!(target.wait().unwrap().success());
    let expected: String = (0..300).map(|i| format!("line {i}\n")).collect();
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), expected);
}

/// SIGTERM in the middle of a lab: the completed strategies are reported, the workload
/// processes and the temp directory are gone, nothing is attached.
#[test]
fn sigterm_during_lab_cleans_up() {
    if !privileged("sigterm_during_lab_cleans_up") {
        return;
    }
    let tmp = TempDir::new("labtmp");
    let lab = Command::new(zc_trace())
        .args(["lab", "--size", "512MiB", "--chunk", "4KiB", "--strategies", "read-write,sendfile", "--runs", "5"])
        .env("TMPDIR", &tmp.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Long enough to be inside a run (the source file takes a moment to write).
    std::thread::sleep(Duration::from_millis(2500));
    signal(&lab, libc::SIGTERM);
    let out = lab.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
    assert_eq!(std::fs::read_dir(&tmp.0).unwrap().count(), 0, "temp directory removed");
    wait_gone("workload processes", || {
        processes_named("zc-read-write").is_empty()
            && processes_named("zc-recv-").is_empty()
            && processes_named("zc-sendfile").is_empty()
    });
    wait_gone("zc_ programs", || our_programs().is_empty());
}

#[test]
fn a_target_that_exits_mid_trace_ends_the_trace_with_its_summary() {
    if !privileged("a_target_that_exits_mid_trace_ends_the_trace_with_its_summary") {
        return;
    }
    let mut target = Command::new("sh").args(["-c", "sleep 1.5"]).spawn().unwrap();
    let pid = target.id().to_string();
    let started = Instant::now();
    let out = run(&["trace", "--json", "-p", &pid, "-d", "60s"]);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(out.status.success());
    assert_eq!(json(&out)["rows"][0]["pid"].as_u64().unwrap().to_string(), pid);
    target.wait().unwrap();
}

#[test]
fn bad_lab_values_are_one_line_usage_errors() {
    for (args, says) in [
        (&["lab", "--chunk", "0"][..], "zero"),
        (&["lab", "--size", "0"], "zero"),
        (&["lab", "--size", "1MiB", "--chunk", "2MiB"], "larger than --size"),
        (&["lab", "--size", "100GiB"], "16GiB"),
        (&["lab", "--size", "12XB"], "not a size"),
        (&["lab", "--strategies", "telepathy"], "unknown strategy"),
        (&["lab", "--sink", "carrier-pigeon"], "unknown sink"),
        (&["lab", "--runs", "0"], "runs"),
        (&["lab", "--csv", "/proc/nope/x.csv"], "cannot write"),
        (&["lab", "--plot", "/nonexistent-zc/x.svg"], "cannot write"),
        (&["lab", "--json", "/proc/x.json"], "cannot write"),
        (&["lab", "--port", "80", "--sink", "file"], "tcp sink only"),
        (&["trace", "-p", "1", "-i", "soon"], "not a duration"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn the_sinks_port_already_in_use() {
    if !privileged("the_sinks_port_already_in_use") {
        return;
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run(&["lab", "--size", "1MiB", "--port", &port]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use") && stderr.contains("--port"), "{stderr}");
}

/// A file system that fills up while the source file is written.
#[test]
fn disk_full_while_creating_the_source() {
    if !privileged("disk_full_while_creating_the_source") {
        return;
    }
    let dir = TempDir::new("full");
    let mnt = dir.0.join("tmpfs");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "zc-test", mnt.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(mounted.success());
    let out = Command::new(zc_trace()).args(["lab", "--size", "64MiB"]).env("TMPDIR", &mnt).output().unwrap();
    let leftovers = std::fs::read_dir(&mnt).unwrap().count();
    Command::new("umount").arg(&mnt).status().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("No space left") && stderr.contains("--size"), "{stderr}");
    assert_eq!(leftovers, 0, "the half-written source was removed");
}

fn traced_exact_run(dir: &Path, name: &str) -> (Child, Child) {
    let file = dir.join(name);
    std::fs::write(&file, vec![1u8; 1 << 20]).unwrap();
    let w = spawn_waiting(exact_io(), &[file.to_str().unwrap(), "4096", "--wait"], &[]);
    let (tracer, _) = start_attached(&["trace", "--json", "-p", &w.id().to_string(), "-d", "60s"]);
    (w, tracer)
}

/// Two zc-trace instances tracing different processes at the same time: both exact.
#[test]
fn two_instances_at_once_both_exact() {
    if !privileged("two_instances_at_once_both_exact") {
        return;
    }
    let dir = TempDir::new("two");
    let runs = [traced_exact_run(&dir.0, "a"), traced_exact_run(&dir.0, "b")];
    let mut reports = Vec::new();
    for (mut w, tracer) in runs {
        go(&mut w);
        assert!(w.wait().unwrap().success());
        let out = tracer.wait_with_output().unwrap();
        assert!(out.status.success());
        reports.push(json(&out));
    }
    for r in &reports {
        let row = &r["rows"][0];
        assert_eq!(row["syscall_counts"]["read"], 257);
        assert_eq!(row["syscall_counts"]["write"], 256);
        assert_eq!(r["rows"].as_array().unwrap().len(), 1, "each sees only its own process");
    }
}

/// Thousands of fds a second from hundreds of short-lived threads: every read counted and
/// classified.
#[test]
fn many_short_lived_threads_and_fds_stay_exact() {
    if !privileged("many_short_lived_threads_and_fds_stay_exact") {
        return;
    }
    let dir = TempDir::new("threads");
    let file = dir.file("small", 1000);
    let (threads, iterations) = (256u64, 40u64);
    // MALLOC_ARENA_MAX: otherwise glibc's malloc, the first time threads contend for an arena,
    // reads /sys/devices/system/cpu/online (one more open and read, depending on timing).
    let mut w = spawn_waiting(
        env!("CARGO_BIN_EXE_zc-many-threads"),
        &[&threads.to_string(), &iterations.to_string(), file.to_str().unwrap()],
        &[("MALLOC_ARENA_MAX", "1")],
    );
    let (tracer, _) = start_attached(&["trace", "--json", "-p", &w.id().to_string(), "-d", "120s"]);
    go(&mut w);
    assert!(w.wait().unwrap().success());
    let out = tracer.wait_with_output().unwrap();
    let report: Value = json(&out);
    let row = &report["rows"][0];
    let opens = threads * iterations;
    assert_eq!(row["syscall_counts"]["read"], 2 * opens);
    assert_eq!(row["syscall_counts"]["openat"], opens);
    let p = &row["cpu_copy"]["to_user"]["by_end"]["page_cache"];
    assert_eq!((p["bytes"].as_u64().unwrap(), p["calls"].as_u64().unwrap()), (1000 * opens, opens));
    assert_eq!(report["drops"]["total"], 0);
}

/// When the per-process map is full, what did not fit is counted and reported.
#[test]
fn a_full_map_reports_drops() {
    if !privileged("a_full_map_reports_drops") {
        return;
    }
    let out = run(&[
        "trace",
        "--json",
        "-o",
        "-",
        "-f",
        "--map-entries",
        "4",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6; do /bin/true; done",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    assert!(report["drops"]["total"].as_u64().unwrap() > 0, "{}", report["drops"]);
    assert!(report["drops"]["by_reason"]["stats map full"].as_u64().unwrap() > 0);
    let out = run(&["trace", "-f", "--map-entries", "4", "--", "sh", "-c", "for i in 1 2 3 4 5 6; do /bin/true; done"]);
    // Beside a command it starts, the table goes to stderr.
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOT counted"));
}
