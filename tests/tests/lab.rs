//! `zc-trace lab` on the host kernel: every strategy runs for real and its figures are
//! asserted, exactly where the workload makes them exact (64 MiB in 64 KiB chunks).
mod common;

use std::sync::OnceLock;

use common::*;
use serde_json::Value;

const SIZE: u64 = 64 << 20;
const CHUNKS: u64 = 1024;

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn row<'a>(report: &'a Value, strategy: &str, role: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["strategy"] == strategy && r["role"] == role)
        .unwrap_or_else(|| panic!("no {strategy} {role} row"))
}

/// (bytes, calls) of the row's flow of `strategy` from `source` to `destination`.
fn flow(row: &Value, strategy: &str, source: &str, destination: &str) -> (u64, u64) {
    let f = find_flow(row, strategy, source, destination);
    (n(&f["bytes"]), n(&f["calls"]))
}

fn calls(row: &Value, name: &str) -> u64 {
    row["syscall_counts"][name].as_u64().unwrap_or(0)
}

fn copies(row: &Value) -> (u64, u64, u64) {
    let c = &row["cpu_copy"];
    (n(&c["to_user"]["bytes"]), n(&c["from_user"]["bytes"]), n(&c["kernel"]["bytes"]))
}

/// One lab run of every strategy over TCP, shared by the tests below (it takes seconds).
fn tcp_lab() -> Option<&'static Value> {
    static REPORT: OnceLock<Value> = OnceLock::new();
    if !privileged("lab over tcp") {
        return None;
    }
    Some(REPORT.get_or_init(|| {
        let out = run(&["lab", "--json", "--size", "64MiB", "--chunk", "64KiB", "--sink", "tcp"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        json(&out)
    }))
}

#[test]
fn every_receiver_copies_the_payload_to_user_once() {
    let Some(report) = tcp_lab() else { return };
    let receivers: Vec<&Value> =
        report["rows"].as_array().unwrap().iter().filter(|r| r["role"] == "receiver").collect();
    assert_eq!(receivers.len(), 8, "every strategy but copy-file-range has a tcp receiver");
    for r in receivers {
        assert_eq!(n(&r["payload_bytes"]), SIZE, "{}", r["strategy"]);
        assert_eq!(copies(r), (SIZE, 0, 0), "{}", r["strategy"]);
    }
    let skipped = &report["lab"]["skipped"][0];
    assert_eq!(skipped["strategy"], "copy-file-range");
}

#[test]
fn read_write_and_io_uring_copy_twice() {
    let Some(report) = tcp_lab() else { return };
    let rw = row(report, "read-write", "sender");
    assert_eq!(calls(rw, "read"), CHUNKS + 1);
    assert_eq!(calls(rw, "write"), CHUNKS);
    assert_eq!(copies(rw), (SIZE, SIZE, 0));
    // 2 switches per syscall, 1 for exit_group (never returns), 2 per user-mode fault.
    let faults = n(&rw["page_fault_detail"]["user"]);
    assert_eq!(n(&rw["mode_switches"]), 2 * n(&rw["syscalls"]) - 1 + 2 * faults);
    assert_eq!(n(&rw["mode_switch_detail"]["syscalls"]), 2 * n(&rw["syscalls"]) - 1);
    // Every write sends the buffer the read before it filled.
    assert_eq!(flow(rw, "read-write", "file", "tcp"), (SIZE, CHUNKS));
    assert_eq!(flow(rw, "read", "file", "memory").0, SIZE);

    let uring = row(report, "io-uring", "sender");
    assert_eq!(copies(uring), (SIZE, SIZE, 0));
    assert!(calls(uring, "io_uring_enter") > 2 * CHUNKS, "one enter per read and per write");
    assert_eq!(calls(uring, "read") + calls(uring, "write"), 0, "no read(2)/write(2): the ring does the I/O");
    assert!(
        uring["cpu_copy"]["to_user"]["by_end"]["page_cache"]["evidence"]
            .as_str()
            .unwrap()
            .contains("io_uring_complete")
    );
}

#[test]
fn mmap_write_copies_once_and_faults() {
    let Some(report) = tcp_lab() else { return };
    let r = row(report, "mmap-write", "sender");
    assert_eq!(calls(r, "mmap"), CHUNKS);
    assert_eq!(calls(r, "write"), CHUNKS);
    assert_eq!(copies(r), (0, SIZE, 0));
    assert!(n(&r["page_faults"]) > 0);
    assert_eq!(flow(r, "mmap-write", "file (mapped)", "tcp"), (SIZE, CHUNKS));
}

#[test]
fn sendfile_splice_and_vmsplice_copy_nothing() {
    let Some(report) = tcp_lab() else { return };
    for (strategy, syscall, count) in
        [("sendfile", "sendfile", CHUNKS + 1), ("splice", "splice", 2 * CHUNKS + 1), ("vmsplice", "vmsplice", CHUNKS)]
    {
        let r = row(report, strategy, "sender");
        assert_eq!(copies(r), (0, 0, 0), "{strategy}");
        assert_eq!(n(&r["zero_copy"]["bytes"]), SIZE, "{strategy}");
        assert_eq!(calls(r, syscall), count, "{strategy}");
        assert_eq!(r["copies_per_payload_byte"], 0.0);
    }
    let v = row(report, "vmsplice", "sender");
    assert_eq!(n(&v["zero_copy"]["by_kind"]["vmsplice"]["bytes"]), SIZE);
    assert_eq!(flow(v, "vmsplice", "memory", "pipe"), (SIZE, CHUNKS));
    assert_eq!(flow(row(report, "sendfile", "sender"), "sendfile", "file", "tcp").0, SIZE);
    assert_eq!(flow(row(report, "splice", "sender"), "splice", "file", "pipe").0, SIZE);
    assert_eq!(flow(row(report, "splice", "sender"), "splice", "pipe", "tcp").0, SIZE);
}

/// MSG_ZEROCOPY over loopback: the kernel pins the pages, then copies them when it delivers
/// to the local receiver, and says so on the error queue for every send.
#[test]
fn msg_zerocopy_over_loopback_is_copied_and_says_so() {
    let Some(report) = tcp_lab() else { return };
    let r = row(report, "msg-zerocopy", "sender");
    let sends = calls(r, "sendto");
    assert!(sends >= CHUNKS);
    let done = &r["msg_zerocopy_completions"];
    assert_eq!(n(&done["completed"]), sends, "one completion per send");
    let (to_user, from_user, kernel) = copies(r);
    assert_eq!((to_user, from_user), (0, 0), "the user pages are pinned, not copied at send time");
    assert_eq!(kernel + n(&r["zero_copy"]["bytes"]), SIZE);
    assert_eq!(kernel, SIZE * n(&done["copied"]) / sends);
}

/// O_DIRECT: the device DMAs into the user buffer, no page cache -> user copy, and the block
/// layer is asked for every byte even with a warm cache.
#[test]
fn direct_io_reads_by_dma_into_user_memory() {
    let Some(report) = tcp_lab() else { return };
    let r = row(report, "direct-io", "sender");
    assert_eq!(copies(r), (0, SIZE, 0));
    assert_eq!(n(&r["dma"]["direct_io_read_bytes"]), SIZE);
    assert!(n(&r["dma"]["disk_read_bytes"]) >= SIZE);
}

#[test]
fn the_classic_model_is_set_beside_each_classic_sender() {
    let Some(report) = tcp_lab() else { return };
    let classic = report["lab"]["classic"].as_array().unwrap();
    let verdict = |s: &str| classic.iter().find(|c| c["strategy"] == s).unwrap().clone();
    assert!(verdict("read-write")["cpu_verdict"].as_str().unwrap().starts_with("matches"));
    assert!(verdict("mmap-write")["cpu_verdict"].as_str().unwrap().starts_with("matches"));
    let sf = verdict("sendfile");
    assert_eq!(sf["classic"]["strategy"], "sendfile() + SG-DMA");
    assert!(sf["cpu_verdict"].as_str().unwrap().contains("NETIF_F_SG"));
    assert!(verdict("read-write")["dma_verdict"].as_str().unwrap().starts_with("differs"), "warm cache, loopback");
}

#[test]
fn copy_file_range_copies_in_the_kernel_to_a_file_sink() {
    if !privileged("copy_file_range_copies_in_the_kernel_to_a_file_sink") {
        return;
    }
    let out =
        run(&["lab", "--json", "--size", "64MiB", "--sink", "file", "--strategies", "copy-file-range,read-write"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    let r = row(&report, "copy-file-range", "sender");
    assert_eq!(calls(r, "copy_file_range"), CHUNKS + 1);
    let (to_user, from_user, kernel) = copies(r);
    assert_eq!((to_user, from_user), (0, 0));
    // ext4 (and tmpfs) copy through the page cache; XFS/Btrfs share extents instead.
    assert_eq!(kernel + n(&r["zero_copy"]["bytes"]), SIZE);
    let rw = row(&report, "read-write", "sender");
    assert_eq!(n(&rw["cpu_copy"]["from_user"]["by_end"]["page_cache"]["bytes"]), SIZE, "write(2) into a file");
}

/// With the source evicted from the page cache, reading it is disk DMA.
#[test]
fn cold_cache_shows_disk_dma() {
    if !privileged("cold_cache_shows_disk_dma") {
        return;
    }
    let out = run(&["lab", "--json", "--cold", "--size", "64MiB", "--strategies", "read-write,sendfile"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    for s in ["read-write", "sendfile"] {
        let r = row(&report, s, "sender");
        assert!(n(&r["dma"]["disk_read_bytes"]) >= SIZE, "{s}: {}", r["dma"]);
    }
    assert_eq!(report["lab"]["cold"], true);
}

#[test]
fn csv_plot_and_runs() {
    if !privileged("csv_plot_and_runs") {
        return;
    }
    let dir = TempDir::new("labout");
    let (csv, svg) = (dir.0.join("lab.csv"), dir.0.join("lab.svg"));
    let out = run(&[
        "lab",
        "--size",
        "4MiB",
        "--runs",
        "3",
        "--strategies",
        "read-write,sendfile",
        "--csv",
        csv.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("median of 3 runs") && table.contains("read-write") && table.contains("4.0 MiB"), "{table}");
    assert!(out.stderr.is_empty(), "no progress bar when stderr is not a terminal");
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 4, "header + sender and receiver of two strategies");
    assert!(lines[0].starts_with("strategy,role,pid"));
    assert!(lines[1].starts_with("read-write,sender,"));
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.starts_with("<svg") && svg_text.contains("CPU copies per payload byte"));
}

#[test]
fn model_prints_the_classic_table() {
    let out = run(&["model"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["read() + write()", "mmap() + write()", "sendfile() + SG-DMA", "copy_to_user"] {
        assert!(text.contains(needle), "{needle}");
    }
}

/// Every sender's packets are charged to it, whatever context sends them, including those
/// still leaving after it closed its socket (an orphaned socket has no inode any more, and
/// is still the sender's): on loopback TCP puts the payload in page frags, so each sender's
/// paged bytes cover its payload. io_uring names a socket's owner at the first completion,
/// after that write's packets left: one chunk short (docs/probes.md).
#[test]
fn every_senders_packets_are_charged_to_it() {
    let Some(report) = tcp_lab() else { return };
    for r in report["rows"].as_array().unwrap().iter().filter(|r| r["role"] == "sender") {
        let paged = n(&r["dma"]["net_tx_paged_bytes"]);
        let expected = if r["strategy"] == "io-uring" { SIZE - (64 << 10) } else { SIZE };
        assert!(paged >= expected, "{}: {paged} bytes in frags, payload {SIZE}", r["strategy"]);
    }
}
