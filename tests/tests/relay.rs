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
