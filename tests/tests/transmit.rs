//! Copies at transmit are decided socket by socket: pages spliced into a socket whose device
//! cannot gather are copied into linear packets (software GSO), and another socket's paged
//! packets must not hide that copy (see docs/probes.md, Copied at transmit).
mod common;

use std::process::{Command, Stdio};

use common::*;

const SPLICED: u64 = 8 << 20;
const WRITTEN: u64 = 16 << 20;

/// A network namespace with the far end of a veth pair whose near end cannot gather
/// (`ethtool -K sg off`); removed on drop.
struct NoGatherPeer {
    ns: String,
    link: String,
}

impl NoGatherPeer {
    const NEAR: &str = "10.211.7.1";
    const FAR: &str = "10.211.7.2";

    fn new() -> Self {
        let id = std::process::id();
        let peer = NoGatherPeer { ns: format!("zc-tx-{id}"), link: format!("zctx{id}") };
        let far = format!("{}p", peer.link);
        let sh = |args: &[&str]| {
            let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
            assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        sh(&["ip", "netns", "add", &peer.ns]);
        sh(&["ip", "link", "add", &peer.link, "type", "veth", "peer", "name", &far]);
        sh(&["ip", "link", "set", &far, "netns", &peer.ns]);
        sh(&["ip", "addr", "add", &format!("{}/30", Self::NEAR), "dev", &peer.link]);
        sh(&["ip", "link", "set", &peer.link, "up"]);
        sh(&["ip", "netns", "exec", &peer.ns, "ip", "addr", "add", &format!("{}/30", Self::FAR), "dev", &far]);
        sh(&["ip", "netns", "exec", &peer.ns, "ip", "link", "set", &far, "up"]);
        sh(&["ethtool", "-K", &peer.link, "sg", "off"]);
        peer
    }
}

impl Drop for NoGatherPeer {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.link]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// One process sendfile()s 8 MiB through the device that cannot gather and writes 16 MiB to
/// a loopback peer (TCP copies those into page frags: paged packets). Row-wide, the 16 MiB of
/// paged packets would cover the 8 MiB spliced and hide the copy; per socket, the 8 MiB are a
/// kernel copy at transmit, and nothing else is.
#[test]
fn one_sockets_paged_packets_do_not_hide_anothers_copy() {
    if !privileged("one_sockets_paged_packets_do_not_hide_anothers_copy") {
        return;
    }
    ensure_debian_package("/usr/bin/socat", "socat");
    ensure_debian_package("/usr/sbin/ethtool", "ethtool");
    let peer = NoGatherPeer::new();
    let far_port = 9311;
    let mut sink = KillOnDrop(
        Command::new("ip")
            .args(["netns", "exec", &peer.ns, "socat", "-u"])
            .arg(format!("TCP-LISTEN:{far_port},bind={},reuseaddr", NoGatherPeer::FAR))
            .arg("OPEN:/dev/null")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let dir = TempDir::new("transmit");
    let file = dir.file("spliced", SPLICED as usize);
    let (near_port, near) = downstream();
    // socat listens once its namespace is up: wait for the port.
    let far = format!("{}:{far_port}", NoGatherPeer::FAR);
    let listening = (0..100).any(|_| {
        let ok = Command::new("ip")
            .args(["netns", "exec", &peer.ns, "ss", "-Hltn", &format!("sport = :{far_port}")])
            .output()
            .is_ok_and(|o| !o.stdout.is_empty());
        if !ok {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        ok
    });
    assert!(listening, "socat did not listen in {}", peer.ns);

    let bin = env!("CARGO_BIN_EXE_zc-two-sockets");
    let near_addr = format!("127.0.0.1:{near_port}");
    let out =
        run(&["trace", "--json", "-o", "-", "--", bin, file.to_str().unwrap(), &far, &near_addr, &WRITTEN.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(near.join().unwrap(), WRITTEN);
    let _ = sink.0.wait();
    let report = json(&out);
    let row = &report["rows"].as_array().unwrap()[0];

    let paged = row["dma"]["net_tx_paged_bytes"].as_u64().unwrap();
    assert!(paged >= WRITTEN * 99 / 100, "the written socket's packets were paged: {}", row["dma"]);
    let spliced = &row["zero_copy"]["by_kind"]["splice_pages"];
    assert_eq!(spliced["copied_at_transmit_bytes"].as_u64(), Some(SPLICED), "{}", row["zero_copy"]);
    assert_eq!(spliced["bytes"].as_u64(), Some(0), "{spliced}");
    let kernel = &row["cpu_copy"]["kernel"]["by_end"]["socket"];
    assert_eq!(kernel["bytes"].as_u64(), Some(SPLICED), "{}", row["cpu_copy"]["kernel"]);
    // The written bytes stay user -> socket copies, once.
    assert_eq!(row["cpu_copy"]["from_user"]["by_end"]["socket"]["bytes"].as_u64(), Some(WRITTEN));
}
