//! MSG_ZEROCOPY that fell back: sends to a local peer are pinned, then copied when the
//! kernel delivers them (skb_orphan_frags_rx), and the completions the sender reads from its
//! error queue say so. `trace` must report those bytes as kernel copies, read from the
//! sender's own recvmsg(MSG_ERRQUEUE) calls, not as zero-copy.
mod common;

use common::*;

const BYTES: u64 = 4 << 20;

#[test]
fn msg_zerocopy_to_a_loopback_peer_is_a_kernel_copy_under_trace_p() {
    if !privileged("msg_zerocopy_to_a_loopback_peer_is_a_kernel_copy_under_trace_p") {
        return;
    }
    let (port, received) = downstream();
    let mut sender =
        spawn_waiting(env!("CARGO_BIN_EXE_zc-zerocopy-send"), &[&port.to_string(), &BYTES.to_string()], &[]);
    let pid = sender.id().to_string();
    let (tracer, _) = start_attached(&["trace", "--json", "-p", &pid, "-d", "60s"]);
    go(&mut sender);
    assert!(sender.wait().unwrap().success());
    assert_eq!(received.join().unwrap(), BYTES);
    let out = tracer.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    let row = &report["rows"][0];
    assert_eq!(row["strategy"], "msg-zerocopy", "{row}");
    let sends = row["syscall_counts"]["sendto"].as_u64().unwrap();
    // Every send completed, every one copied (loopback), all read by the sender itself.
    let done = &row["msg_zerocopy_completions"];
    assert_eq!((done["completed"].as_u64(), done["copied"].as_u64()), (Some(sends), Some(sends)), "{done}");
    let zc = &row["zero_copy"]["by_kind"]["msg_zerocopy"];
    assert_eq!(zc["bytes"], 0, "{zc}");
    assert!(zc.get("outcome_unknown_bytes").is_none(), "{zc}");
    let socket = &row["cpu_copy"]["kernel"]["by_end"]["socket"];
    assert_eq!(socket["bytes"].as_u64(), Some(BYTES), "{}", row["cpu_copy"]);
    let evidence = socket["evidence"].as_str().unwrap();
    assert!(evidence.contains("sys_exit of recvmsg(MSG_ERRQUEUE)"), "{evidence}");
    assert!(evidence.contains("SO_EE_CODE_ZEROCOPY_COPIED"), "{evidence}");
    let flow = find_flow(row, "msg-zerocopy", "memory", "tcp");
    assert_eq!(flow["bytes"].as_u64(), Some(BYTES));
}

/// `serve` agrees: the same sends scraped from /metrics are kernel copies into the socket,
/// and no zero-copy series is left for them.
#[test]
fn serve_reports_the_fallen_back_zerocopy_sends_as_copies() {
    if !privileged("serve_reports_the_fallen_back_zerocopy_sends_as_copies") {
        return;
    }
    let (port, received) = downstream();
    let mut sender =
        spawn_waiting(env!("CARGO_BIN_EXE_zc-zerocopy-send"), &[&port.to_string(), &BYTES.to_string()], &[]);
    let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let _serve = start_serving(&["-p", &sender.id().to_string(), "--listen", &listen.to_string()]);
    go(&mut sender);
    assert!(sender.wait().unwrap().success());
    assert_eq!(received.join().unwrap(), BYTES);
    let text = http_get(listen.port(), "/metrics").expect("a scrape");
    let value = |line: &str| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
    let copied: f64 = text
        .lines()
        .filter(|l| l.starts_with("zc_cpu_copy_bytes_total{") && l.contains("direction=\"kernel\",end=\"socket\""))
        .map(value)
        .sum();
    assert_eq!(copied, BYTES as f64, "{text}");
    let zero_copy: f64 = text
        .lines()
        .filter(|l| l.starts_with("zc_zero_copy_bytes_total{") && l.contains("msg_zerocopy"))
        .map(value)
        .sum();
    assert_eq!(zero_copy, 0.0, "{text}");
}

/// io_uring's zero-copy send to a loopback peer: copied on delivery, which the notification
/// reports (the sender asks with IORING_SEND_ZC_REPORT_USAGE): kernel copies, not zero-copy.
#[test]
fn io_uring_send_zc_to_a_loopback_peer_is_a_kernel_copy() {
    if !privileged("io_uring_send_zc_to_a_loopback_peer_is_a_kernel_copy") {
        return;
    }
    let (port, received) = downstream();
    let out = run(&[
        "trace",
        "--json",
        "-o",
        "-",
        "--",
        env!("CARGO_BIN_EXE_zc-sendzc"),
        &port.to_string(),
        &BYTES.to_string(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(received.join().unwrap(), BYTES);
    let report = json(&out);
    let row = &report["rows"][0];
    let sends = BYTES / (64 << 10);
    let done = &row["msg_zerocopy_completions"];
    assert_eq!((done["completed"].as_u64(), done["copied"].as_u64()), (Some(sends), Some(sends)), "{done}");
    let socket = &row["cpu_copy"]["kernel"]["by_end"]["socket"];
    assert_eq!(socket["bytes"].as_u64(), Some(BYTES), "{}", row["cpu_copy"]);
    assert_eq!(row["zero_copy"]["by_kind"]["msg_zerocopy"]["bytes"], 0, "{}", row["zero_copy"]);
}
