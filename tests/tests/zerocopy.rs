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
    let mut serve = std::process::Command::new(zc_trace())
        .args(["serve", "-p", &sender.id().to_string(), "--listen", &listen.to_string()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(serve.stderr.take().unwrap()), &mut line).unwrap();
    assert!(line.contains("serving"), "{line}");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _serve = Kill(serve);
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
