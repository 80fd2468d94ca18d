//! `zc-trace syscalls` against workloads whose system calls are known exactly.
mod common;

use common::*;

const MIB: usize = 1 << 20;
const CHUNK: usize = 4096;

/// 1 MiB in 4 KiB chunks: 256 reads that return data, 1 that returns 0, 256 writes.
#[test]
fn pid_mode_counts_reads_and_writes_exactly() {
    if !privileged("pid_mode_counts_reads_and_writes_exactly") {
        return;
    }
    let dir = TempDir::new("pid");
    let file = dir.file("src", MIB);
    // Once ready, the workload is blocked in poll(2): nothing it does from then on is
    // anything but the exact I/O loop and its exit.
    let mut workload = spawn_waiting(exact_io(), &[file.to_str().unwrap(), &CHUNK.to_string(), "--wait"], &[]);

    let pid = workload.id().to_string();
    let (tracer, _) = start_attached(&["syscalls", "--json", "-p", &pid, "-d", "60s"]);
    go(&mut workload);
    assert!(workload.wait().unwrap().success());
    let out = tracer.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let report = json(&out);
    assert_eq!(calls(&report, "read"), 257, "256 reads of data + 1 at EOF");
    assert_eq!(calls(&report, "write"), 256);
    assert_eq!(calls(&report, "exit_group"), 1);
    let read = report["syscalls"].as_array().unwrap().iter().find(|r| r["name"] == "read").unwrap();
    assert_eq!(read["mode_switches"], 514);
    assert_eq!(report["target"]["pid"].as_u64().unwrap().to_string(), pid);
    assert_eq!(report["drops"]["total"], 0);
    assert_eq!(report["probes"][0]["attach"], "raw_tracepoint");
    assert_eq!(report["probes"][0]["status"], "attached");
}

/// Started by zc-trace itself, the command is held until the probe is attached: its execve
/// and every write are counted, and zc-trace exits with the command's status.
#[test]
fn spawn_mode_counts_from_exec_and_returns_the_exit_status() {
    if !privileged("spawn_mode_counts_from_exec_and_returns_the_exit_status") {
        return;
    }
    let dir = TempDir::new("spawn");
    let file = dir.file("src", MIB);
    let out =
        run(&["syscalls", "--json", "-o", "-", "--", exact_io().to_str().unwrap(), file.to_str().unwrap(), "4096"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    assert_eq!(calls(&report, "execve"), 1, "the path is resolved before exec: one execve");
    assert_eq!(calls(&report, "write"), 256);
    // The dynamic loader also read(2)s each shared library's ELF header before main; those
    // are real reads of this process, on top of the workload's 257.
    assert!(calls(&report, "read") >= 257);
    assert_eq!(calls(&report, "exit_group"), 1);
    assert_eq!(report["target"]["exit_status"], 0);

    let out = run(&["syscalls", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", String::from_utf8_lossy(&out.stderr));
    // Beside a command it starts, the table goes to stderr.
    let table = String::from_utf8_lossy(&out.stderr);
    assert!(table.contains("exit_group") && table.contains("raw_tracepoint:sys_enter"), "{table}");
}
