//! Relays: a program that receives bytes on one fd and sends them on another is shown as
//! `read-write SOURCE -> DESTINATION`, whatever receive and send calls it uses and whichever
//! of its threads makes them (pairing in the kernel, see docs/probes.md).
mod common;

use std::path::PathBuf;

use common::*;
use serde_json::Value;

const BYTES: u64 = 8 << 20;

fn relay() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zc-relay"))
}

fn trace_relay(args: &[&str]) -> Value {
    let bin = relay();
    let mut all = vec!["trace", "--json", "-o", "-", "--", bin.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = run(&all);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    json(&out)
}

fn only_row(report: &Value) -> &Value {
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    &rows[0]
}

/// Bytes of the row's `strategy source -> destination` flow, with the flow (for messages).
fn bytes(row: &Value, strategy: &str, source: &str, destination: &str) -> u64 {
    find_flow(row, strategy, source, destination)["bytes"].as_u64().unwrap()
}

/// At least 99% of the relayed bytes are in the relay flow, and all in total.
fn assert_relayed(row: &Value, source: &str, destination: &str, syscall: &str) {
    let relayed = bytes(row, "read-write", source, destination);
    assert!(relayed * 100 >= BYTES * 99, "{relayed} of {BYTES} paired: {}", row["flows"]);
    let unpaired = row["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["strategy"] != "read-write" && f["destination"] == destination && f["source"] == "memory")
        .map(|f| f["bytes"].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(relayed + unpaired, BYTES, "{}", row["flows"]);
    let flow = find_flow(row, "read-write", source, destination);
    assert_eq!(flow["syscall"], syscall, "{flow}");
}

fn tcp_to_tcp(mode: &str) -> Value {
    let (up, up_t) = upstream(BYTES);
    let (down, down_t) = downstream();
    let report = trace_relay(&[mode, &BYTES.to_string(), &up.to_string(), &down.to_string()]);
    up_t.join().unwrap();
    assert_eq!(down_t.join().unwrap(), BYTES);
    report
}

#[test]
fn recv_then_writev_is_a_tcp_to_tcp_relay() {
    if !privileged("recv_then_writev_is_a_tcp_to_tcp_relay") {
        return;
    }
    let report = tcp_to_tcp("recv-writev");
    let row = only_row(&report);
    assert_eq!(bytes(row, "receive", "tcp", "memory"), BYTES);
    assert_relayed(row, "tcp", "tcp", "write");
}

#[test]
fn readv_then_sendmsg_is_a_tcp_to_tcp_relay() {
    if !privileged("readv_then_sendmsg_is_a_tcp_to_tcp_relay") {
        return;
    }
    let report = tcp_to_tcp("readv-sendmsg");
    let row = only_row(&report);
    assert_eq!(bytes(row, "read", "tcp", "memory"), BYTES);
    assert_relayed(row, "tcp", "tcp", "send");
}

#[test]
fn a_relay_whose_threads_differ_pairs_across_them() {
    if !privileged("a_relay_whose_threads_differ_pairs_across_them") {
        return;
    }
    let report = tcp_to_tcp("threads");
    assert_relayed(only_row(&report), "tcp", "tcp", "write");
}

#[test]
fn a_downloader_is_a_tcp_to_file_relay() {
    if !privileged("a_downloader_is_a_tcp_to_file_relay") {
        return;
    }
    let dir = TempDir::new("relay-download");
    let file = dir.0.join("out");
    let (up, up_t) = upstream(BYTES);
    let report = trace_relay(&["download", &BYTES.to_string(), &up.to_string(), file.to_str().unwrap()]);
    up_t.join().unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().len(), BYTES);
    assert_relayed(only_row(&report), "tcp", "file", "write");
}

#[test]
fn an_uploader_is_a_file_to_tcp_relay() {
    if !privileged("an_uploader_is_a_file_to_tcp_relay") {
        return;
    }
    let dir = TempDir::new("relay-upload");
    let file = dir.file("in", BYTES as usize);
    let (down, down_t) = downstream();
    let report = trace_relay(&["upload", &BYTES.to_string(), file.to_str().unwrap(), &down.to_string()]);
    assert_eq!(down_t.join().unwrap(), BYTES);
    let row = only_row(&report);
    // The dynamic loader reads a few KiB of libraries too.
    assert!((BYTES..BYTES + (64 << 10)).contains(&bytes(row, "read", "file", "memory")));
    assert_relayed(row, "file", "tcp", "send");
}

/// Debian's socat, a relay nobody here wrote: `socat -u TCP:upstream TCP:downstream` reads
/// into one buffer and writes it out: `read-write tcp -> tcp`.
#[test]
fn socat_is_a_tcp_to_tcp_relay() {
    if !privileged("socat_is_a_tcp_to_tcp_relay") {
        return;
    }
    ensure_debian_package("/usr/bin/socat", "socat");
    let (up, up_t) = upstream(BYTES);
    let (down, down_t) = downstream();
    let from = format!("TCP:127.0.0.1:{up}");
    let to = format!("TCP:127.0.0.1:{down}");
    let out = run(&["trace", "--json", "-o", "-", "--", "socat", "-u", &from, &to]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    up_t.join().unwrap();
    assert_eq!(down_t.join().unwrap(), BYTES);
    let report = json(&out);
    let row = report["rows"].as_array().unwrap().iter().find(|r| r["comm"] == "socat").expect("a socat row");
    assert_eq!(bytes(row, "read", "tcp", "memory"), BYTES);
    assert_relayed(row, "tcp", "tcp", "write");
}

/// io_uring reads and writes pair too, from their completions: the lab's io-uring sender
/// reads the file into a buffer and writes that buffer to the socket.
#[test]
fn io_uring_reads_and_writes_pair_from_their_completions() {
    if !privileged("io_uring_reads_and_writes_pair_from_their_completions") {
        return;
    }
    let out =
        run(&["lab", "--json", "--size", "8MiB", "--chunk", "64KiB", "--sink", "tcp", "--strategies", "io-uring"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    let sender = report["rows"].as_array().unwrap().iter().find(|r| r["role"] == "sender").unwrap();
    let flow = find_flow(sender, "io-uring", "file", "tcp");
    // A write to a socket can complete short; the workload submits the rest: >= 128 writes.
    assert_eq!(flow["bytes"].as_u64(), Some(BYTES), "{flow}");
    assert!(flow["calls"].as_u64().unwrap() >= 128, "{flow}");
    assert!(flow["evidence"].as_str().unwrap().contains("io_uring_complete"), "{flow}");
    assert_eq!(bytes(sender, "io-uring", "file", "memory"), BYTES);
}
