//! `zc-trace serve` scraped by a real Prometheus (Debian's package), queried through its HTTP
//! API. Everything listens on 127.0.0.1 only; Prometheus is started and stopped by the test.
mod common;

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::*;

/// Kills a child process when dropped, even if the test panics.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn ensure_prometheus() {
    if std::path::Path::new("/usr/bin/prometheus").exists() {
        return;
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "prometheus"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .expect("apt-get");
    assert!(status.success(), "installing Debian's prometheus package failed");
}

/// A PromQL instant query's single value, if there is one.
fn query(port: u16, promql: &str) -> Option<f64> {
    let encoded: String = promql
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"_-.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect();
    let body = http_get(port, &format!("/api/v1/query?query={encoded}"))?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_scrapes_the_workloads_bytes() {
    if !privileged("prometheus_scrapes_the_workloads_bytes") {
        return;
    }
    ensure_prometheus();
    let dir = TempDir::new("fleet");
    let size: u64 = 32 << 20;
    let src = dir.file("src", size as usize);

    let zc_port = free_port();
    let mut serve = Command::new(zc_trace())
        .args(["serve", "-a", "--listen", &format!("127.0.0.1:{zc_port}")])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(serve.stderr.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("serving"), "{line}");
    let _serve = Guard(serve);

    let prom_port = free_port();
    let config = dir.0.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: zc\n    \
             static_configs:\n      - targets: ['127.0.0.1:{zc_port}']\n"
        ),
    )
    .unwrap();
    let prom = Command::new("/usr/bin/prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.0.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _prom = Guard(prom);
    let start = Instant::now();
    while http_get(prom_port, "/-/ready").is_none() {
        assert!(start.elapsed() < Duration::from_secs(30), "prometheus did not become ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The zc-trace target must be up (scraped successfully) before the workload runs.
    while query(prom_port, "up{job=\"zc\"}") != Some(1.0) {
        assert!(start.elapsed() < Duration::from_secs(30), "prometheus never scraped zc-trace");
        std::thread::sleep(Duration::from_millis(200));
    }

    let dst = dir.0.join("dst");
    let status = Command::new("dd")
        .args([format!("if={}", src.display()), format!("of={}", dst.display()), "bs=64k".into(), "status=none".into()])
        .status()
        .unwrap();
    assert!(status.success());

    let to_user = "sum(zc_cpu_copy_bytes_total{comm=\"dd\",direction=\"to_user\",end=\"page_cache\"})";
    let from_user = "sum(zc_cpu_copy_bytes_total{comm=\"dd\",direction=\"from_user\",end=\"page_cache\"})";
    let within_1pct = |v: Option<f64>| v.is_some_and(|v| (v - size as f64).abs() <= size as f64 * 0.01);
    let start = Instant::now();
    while !(within_1pct(query(prom_port, to_user)) && within_1pct(query(prom_port, from_user))) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "prometheus has to_user {:?} and from_user {:?}, expected {size} within 1%",
            query(prom_port, to_user),
            query(prom_port, from_user)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let probe = query(prom_port, "zc_probe_attached{probe=\"raw_syscalls:sys_enter\"}");
    assert_eq!(probe, Some(1.0));
    let syscalls = query(prom_port, "sum(zc_syscalls_total{comm=\"dd\",strategy=\"read-write\"})").unwrap();
    assert!(syscalls >= (2 * size / 65536) as f64, "{syscalls}");
}

/// System-wide mode sees a process it was never told about, with its figures, and not
/// zc-trace itself.
#[test]
fn system_wide_trace_sees_every_process_but_itself() {
    if !privileged("system_wide_trace_sees_every_process_but_itself") {
        return;
    }
    let dir = TempDir::new("allmode");
    let size: u64 = 8 << 20;
    let src = dir.file("src", size as usize);
    let (tracer, _) = start_attached(&["trace", "-a", "--json", "-T", "1000", "-d", "4s"]);
    let status = Command::new("dd")
        .args([
            format!("if={}", src.display()),
            format!("of={}", dir.0.join("dst").display()),
            "bs=64k".into(),
            "status=none".into(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tracer.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    let rows = report["rows"].as_array().unwrap();
    let dd = rows.iter().find(|r| r["comm"] == "dd").expect("a dd row");
    assert_eq!(dd["cpu_copy"]["from_user"]["by_end"]["page_cache"]["bytes"].as_u64(), Some(size));
    assert!(rows.iter().all(|r| r["comm"] != "zc-trace"), "zc-trace does not count itself");
}

#[test]
fn serve_refuses_an_address_in_use() {
    if !privileged("serve_refuses_an_address_in_use") {
        return;
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&["serve", "-a", "--listen", &addr]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot listen") && stderr.contains("--listen"), "{stderr}");
    let out = run(&["serve"]);
    assert_eq!(out.status.code(), Some(2), "neither -a nor -p");
}
