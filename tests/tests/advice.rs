//! The priced advisor (`--advise`) on programs built here with Debian's gcc: a file server
//! using read + write is told to use sendfile, a recv/send relay to splice through a pipe,
//! each with the copy bytes the trace measured and a CPU saving priced by a cost model that
//! `zc-trace calibrate` measures in the test; a MSG_ZEROCOPY sender to a loopback peer is
//! told that zero-copy does not pay there, and why.
mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// Enough bytes that the saving is above the advisor's "too few to matter".
const SIZE: u64 = 32 << 20;

/// A cost model measured now, in `dir`.
fn calibrate(dir: &TempDir) -> String {
    let path = dir.0.join("cost-model.json");
    let out = run(&["calibrate", "--out", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    path.to_str().unwrap().to_string()
}

/// `trace --advise --json` of a command.
fn advise(model: &str, command: &[&str]) -> Value {
    let mut args = vec!["trace", "--advise", "--cost-model", model, "--json", "-o", "-", "--"];
    args.extend_from_slice(command);
    let out = run(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    json(&out)
}

/// The advice for `flow` in the report's only advised row.
fn advice_for<'a>(report: &'a Value, flow: &str) -> &'a Value {
    let rows = report["advice"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows[0]["advice"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["flow"] == flow)
        .unwrap_or_else(|| panic!("no advice for {flow}: {}", report["advice"]))
}

/// Priced by the model measured in the test, and worth it.
fn assert_priced(advice: &Value, model: &str) {
    assert!(advice["cpu_ns_saved"].as_u64().unwrap() > 0, "{advice}");
    assert!(advice["model"].as_str().unwrap().starts_with(model), "{advice}");
    assert_eq!(advice["verdict"], "pays", "{advice}");
}

fn copied(row: &Value, direction: &str, end: &str) -> u64 {
    row["cpu_copy"][direction]["by_end"][end]["bytes"].as_u64().unwrap_or(0)
}

#[test]
fn a_read_write_file_server_is_told_to_use_sendfile() {
    if !privileged("a_read_write_file_server_is_told_to_use_sendfile") {
        return;
    }
    let dir = TempDir::new("advice-file");
    let model = calibrate(&dir);
    let server = build_c(&dir, "file_server", &["-O2", "-fno-omit-frame-pointer"]);
    let file = dir.file("served", SIZE as usize);
    let (port, down) = downstream();
    let report = advise(&model, &[server.to_str().unwrap(), file.to_str().unwrap(), &port.to_string(), "65536"]);
    assert_eq!(down.join().unwrap(), 2 * SIZE);
    let row = &report["rows"][0];
    let a = advice_for(&report, "read-write file -> tcp");
    assert_eq!(a["recommend"], "sendfile", "{a}");
    // The copies sendfile removes are the ones measured: the file read into the buffer and
    // written from it to the socket (the page cache also gave the loader its libraries).
    assert_eq!(a["from_user_bytes_removed"].as_u64(), Some(copied(row, "from_user", "socket")), "{a}");
    assert_eq!(a["from_user_bytes_removed"].as_u64(), Some(SIZE), "{a}");
    assert_eq!(a["to_user_bytes_removed"].as_u64(), Some(SIZE), "{a}");
    let read = copied(row, "to_user", "page_cache");
    assert!(read >= SIZE && read - SIZE < SIZE / 100, "page cache -> user {read}");
    assert_eq!(a["copy_bytes_removed"].as_u64(), Some(2 * SIZE), "{a}");
    assert_eq!(a["syscalls_removed"].as_u64(), Some(SIZE / 65536), "{a}");
    assert_priced(a, &model);
    // The sendfile half already moves the file without a CPU copy: nothing to advise there.
    assert!(report["advice"][0]["advice"].as_array().unwrap().iter().all(|a| a["flow"] != "sendfile file -> tcp"));
}

#[test]
fn a_recv_send_relay_is_told_to_splice_through_a_pipe() {
    if !privileged("a_recv_send_relay_is_told_to_splice_through_a_pipe") {
        return;
    }
    let dir = TempDir::new("advice-relay");
    let model = calibrate(&dir);
    let relay = build_c(&dir, "relay", &["-O2", "-fno-omit-frame-pointer"]);
    let (up, up_t) = upstream(SIZE);
    let (down, down_t) = downstream();
    let report = advise(&model, &[relay.to_str().unwrap(), &up.to_string(), &down.to_string()]);
    up_t.join().unwrap();
    assert_eq!(down_t.join().unwrap(), SIZE);
    let row = &report["rows"][0];
    let a = advice_for(&report, "read-write tcp -> tcp");
    assert_eq!(a["recommend"], "splice through a pipe", "{a}");
    // The measured copies: socket -> user (skb:skb_copy_datagram_iovec) and user -> socket.
    assert_eq!(copied(row, "to_user", "socket"), SIZE);
    assert_eq!(a["to_user_bytes_removed"].as_u64(), Some(SIZE), "{a}");
    assert_eq!(a["from_user_bytes_removed"].as_u64(), Some(copied(row, "from_user", "socket")), "{a}");
    assert_eq!(a["copy_bytes_removed"].as_u64(), Some(2 * SIZE), "{a}");
    assert_priced(a, &model);
}

#[test]
fn msg_zerocopy_to_a_loopback_peer_is_told_it_does_not_pay() {
    if !privileged("msg_zerocopy_to_a_loopback_peer_is_told_it_does_not_pay") {
        return;
    }
    let dir = TempDir::new("advice-zerocopy");
    let model = calibrate(&dir);
    let (port, received) = downstream();
    let sender = Path::new(env!("CARGO_BIN_EXE_zc-zerocopy-send"));
    let mut child = spawn_waiting(sender, &[&port.to_string(), &SIZE.to_string()], &[]);
    let pid = child.id().to_string();
    let (tracer, _) = start_attached(&["trace", "--advise", "--cost-model", &model, "--json", "-p", &pid, "-d", "60s"]);
    go(&mut child);
    assert!(child.wait().unwrap().success());
    assert_eq!(received.join().unwrap(), SIZE);
    let out = tracer.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    let a = advice_for(&report, "msg-zerocopy memory -> tcp");
    assert_eq!(a["verdict"], "does not pay", "{a}");
    let reason = a["reason"].as_str().unwrap();
    assert!(reason.contains("the kernel copied the zero-copy sends anyway"), "{reason}");
    let sends = report["rows"][0]["syscall_counts"]["sendto"].as_u64().unwrap();
    assert!(reason.contains(&format!("{sends} of {sends}")), "every send was copied: {reason}");
}
