//! Attribution on the host kernel (tracepoints only), exact where the workload is exact.
mod common;

use common::*;
use serde_json::Value;

const MIB8: u64 = 8 << 20;
const CHUNKS: u64 = 128; // 8 MiB in 64 KiB

fn lab(strategy: &str, extra: &[&str]) -> Value {
    let mut args =
        vec!["lab", "--json", "--size", "8MiB", "--chunk", "64KiB", "--sink", "tcp", "--strategies", strategy];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    json(&out)
}

fn row<'a>(report: &'a Value, role: &str) -> &'a Value {
    report["rows"].as_array().unwrap().iter().find(|r| r["role"] == role).unwrap()
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn syscall(row: &Value, name: &str) -> u64 {
    row["syscall_counts"][name].as_u64().unwrap_or(0)
}

/// The mode switches of a row follow from its counts: 2 per syscall (1 for exit_group,
/// which never returns) and 2 per user-mode fault.
fn assert_mode_switches(row: &Value) {
    let syscalls = n(&row["syscalls"]);
    let faults = n(&row["page_fault_detail"]["user"]);
    assert_eq!(n(&row["mode_switches"]), 2 * syscalls - syscall(row, "exit_group") + 2 * faults);
}

fn assert_receiver_copied_everything(report: &Value) {
    let recv = row(report, "receiver");
    assert_eq!(n(&recv["payload_bytes"]), MIB8);
    assert_eq!(n(&recv["cpu_copy"]["to_user"]["by_end"]["socket"]["bytes"]), MIB8);
    assert_eq!(
        recv["cpu_copy"]["to_user"]["by_end"]["socket"]["evidence"],
        "raw_tracepoint:skb:skb_copy_datagram_iovec"
    );
    assert_mode_switches(recv);
}

#[test]
fn read_write_copies_twice_on_the_sender() {
    if !privileged("read_write_copies_twice_on_the_sender") {
        return;
    }
    let report = lab("read-write", &[]);
    let sender = row(&report, "sender");
    assert_eq!(syscall(sender, "read"), CHUNKS + 1, "128 reads of data + 1 at EOF");
    assert_eq!(syscall(sender, "write"), CHUNKS);
    assert_eq!(n(&sender["payload_bytes"]), MIB8);
    let to_user = &sender["cpu_copy"]["to_user"]["by_end"]["page_cache"];
    assert_eq!((n(&to_user["bytes"]), n(&to_user["calls"])), (MIB8, CHUNKS));
    assert_eq!(to_user["evidence"], "derived:read(2)");
    let from_user = &sender["cpu_copy"]["from_user"]["by_end"]["socket"];
    assert_eq!((n(&from_user["bytes"]), n(&from_user["calls"])), (MIB8, CHUNKS));
    assert_eq!(n(&sender["cpu_copy"]["to_user"]["bytes"]), MIB8);
    assert_eq!(n(&sender["cpu_copy"]["from_user"]["bytes"]), MIB8);
    assert_eq!(n(&sender["cpu_copy"]["kernel"]["bytes"]), 0);
    assert_eq!(n(&sender["zero_copy"]["bytes"]), 0);
    assert_eq!(sender["copies_per_payload_byte"], 2.0);
    assert_mode_switches(sender);
    assert_receiver_copied_everything(&report);
    assert_eq!(report["drops"]["total"], 0);
}

#[test]
fn sendfile_copies_nothing_on_the_sender() {
    if !privileged("sendfile_copies_nothing_on_the_sender") {
        return;
    }
    let report = lab("sendfile", &[]);
    let sender = row(&report, "sender");
    assert_eq!(syscall(sender, "sendfile"), CHUNKS + 1);
    for dir in ["to_user", "from_user", "kernel"] {
        assert_eq!(n(&sender["cpu_copy"][dir]["bytes"]), 0, "{dir}");
    }
    assert_eq!(n(&sender["zero_copy"]["bytes"]), MIB8);
    let spliced = &sender["zero_copy"]["by_kind"]["splice_pages"];
    assert_eq!((n(&spliced["bytes"]), n(&spliced["calls"])), (MIB8, CHUNKS));
    assert!(spliced["evidence"].as_str().unwrap().contains("NETIF_F_SG"), "loopback can gather");
    assert_eq!(sender["copies_per_payload_byte"], 0.0);
    assert_mode_switches(sender);
    assert_receiver_copied_everything(&report);
}

#[test]
fn mmap_write_copies_once_from_the_mapping() {
    if !privileged("mmap_write_copies_once_from_the_mapping") {
        return;
    }
    let report = lab("mmap-write", &[]);
    let sender = row(&report, "sender");
    assert_eq!(syscall(sender, "mmap"), CHUNKS);
    assert_eq!(syscall(sender, "write"), CHUNKS);
    assert!(n(&sender["page_faults"]) > 0);
    // write() reads the mapping in kernel mode: those faults are the kernel's, not switches.
    assert!(n(&sender["page_fault_detail"]["kernel"]) >= CHUNKS);
    assert_eq!(n(&sender["cpu_copy"]["to_user"]["bytes"]), 0);
    assert_eq!(n(&sender["cpu_copy"]["from_user"]["bytes"]), MIB8, "the mapped bytes, counted once");
    assert_eq!(sender["copies_per_payload_byte"], 1.0);
    assert_mode_switches(sender);
    assert_receiver_copied_everything(&report);
}

#[test]
fn splice_moves_pages_twice_but_delivers_once() {
    if !privileged("splice_moves_pages_twice_but_delivers_once") {
        return;
    }
    let report = lab("splice", &[]);
    let sender = row(&report, "sender");
    assert_eq!(syscall(sender, "splice"), 2 * CHUNKS + 1);
    assert_eq!(n(&sender["zero_copy"]["bytes"]), MIB8);
    assert_eq!(n(&sender["zero_copy"]["by_kind"]["page_refs"]["bytes"]), MIB8);
    assert_eq!(n(&sender["cpu_copy"]["from_user"]["bytes"]) + n(&sender["cpu_copy"]["to_user"]["bytes"]), 0);
    assert_receiver_copied_everything(&report);
}

/// The tier can be forced; on a kernel without function probes every tier gives the same
/// figures, and the report says which probes could not attach and why.
#[test]
fn forced_tiers_agree_and_say_what_is_unavailable() {
    if !privileged("forced_tiers_agree_and_say_what_is_unavailable") {
        return;
    }
    let auto = lab("read-write", &["--probe-tier", "auto"]);
    let tp = lab("read-write", &["--probe-tier", "tracepoint"]);
    assert_eq!(tp["tier"], "tracepoint");
    let (a, t) = (row(&auto, "sender"), row(&tp, "sender"));
    assert_eq!(a["syscall_counts"]["read"], t["syscall_counts"]["read"]);
    assert_eq!(a["cpu_copy"]["to_user"]["bytes"], t["cpu_copy"]["to_user"]["bytes"]);
    let probe =
        |r: &Value, name: &str| r["probes"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned().unwrap();
    let filemap = probe(&tp, "filemap_read");
    assert_eq!(filemap["status"], "unavailable");
    assert!(filemap["reason"].as_str().unwrap().contains("--probe-tier tracepoint"));
    // Every probe has a status; unavailable ones say why.
    for p in auto["probes"].as_array().unwrap() {
        assert!(p["status"] == "attached" || p["reason"].as_str().is_some_and(|r| !r.is_empty()), "{p}");
    }
    let copy_to_user = probe(&auto, "_copy_to_user");
    assert!(copy_to_user["reason"].as_str().unwrap().contains("not traceable on this kernel"));
}

/// 1,000 fds opened, used and closed within microseconds, their numbers reused for another
/// kind each time: every one classified right, at the moment of the syscall.
#[test]
fn short_lived_reused_fds_are_classified_right() {
    if !privileged("short_lived_reused_fds_are_classified_right") {
        return;
    }
    let dir = TempDir::new("fdkinds");
    let mut workload = spawn_waiting(env!("CARGO_BIN_EXE_zc-fd-kinds"), &["1000", dir.0.to_str().unwrap()], &[]);
    let pid = workload.id().to_string();
    let (tracer, _) = start_attached(&["trace", "--json", "-p", &pid, "-d", "60s"]);
    go(&mut workload);
    assert!(workload.wait().unwrap().success());
    let out = tracer.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    let r = &report["rows"][0];
    let part = |dir: &str, end: &str| {
        let p = &r["cpu_copy"][dir]["by_end"][end];
        (p["bytes"].as_u64().unwrap_or(0), p["calls"].as_u64().unwrap_or(0))
    };
    // 200 of each kind.
    assert_eq!(part("to_user", "page_cache"), (200 * 100, 200), "regular files");
    assert_eq!(part("to_user", "pipe"), (200 * 10, 200), "pipes");
    assert_eq!(part("from_user", "pipe"), (200 * 10, 200), "pipes");
    assert_eq!(part("to_user", "socket"), (200 * 10, 200), "unix sockets (observed)");
    assert_eq!(part("from_user", "socket"), (200 * 10, 200), "unix sockets");
    assert_eq!(part("to_user", "other"), (200 * 16, 200), "/dev/zero");
    assert_eq!(part("from_user", "other"), (0, 0), "/dev/null copies nothing");
    assert_eq!(n(&r["unclassified_bytes"]), 0);
    assert_eq!(n(&r["syscall_counts"]["read"]), 200 * 2 + 200 + 200 + 200);
    assert_eq!(report["drops"]["total"], 0);
}
