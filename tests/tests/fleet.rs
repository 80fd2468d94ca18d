//! `zc-trace serve` scraped by a real Prometheus (Debian's package), queried through its HTTP
//! API. Everything listens on 127.0.0.1 only; Prometheus is started and stopped by the test.
mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
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
    ensure_debian_package("/usr/bin/prometheus", "prometheus");
    let dir = TempDir::new("fleet");
    let size: u64 = 32 << 20;
    let src = dir.file("src", size as usize);

    let zc_port = free_port();
    let _serve = start_serving(&["-a", "--listen", &format!("127.0.0.1:{zc_port}")]);

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
    let _prom = KillOnDrop(prom);
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

/// Labels come from a fixed vocabulary (docs/metrics.md): while a steady workload runs for a
/// minute under `serve -a`, its series are the same set at every scrape: no label value
/// carries a count, a size or anything else that changes as the workload goes on.
#[test]
fn series_stay_the_same_while_a_workload_runs_for_a_minute() {
    if !privileged("series_stay_the_same_while_a_workload_runs_for_a_minute") {
        return;
    }
    let port = free_port();
    let _serve = start_serving(&["-a", "--listen", &format!("127.0.0.1:{port}")]);
    // dd, again and again, for 80 s: a new process every few milliseconds, one series set.
    // From /dev/zero: a file could be evicted from the page cache at any time, and the
    // first disk read in dd's context, minutes in, would be a new (legitimate) series.
    let script = "end=$(( $(date +%s) + 80 )); while [ $(date +%s) -lt $end ]; do \
                  dd if=/dev/zero of=/dev/null bs=64k count=64 status=none; done";
    let _load = KillOnDrop(Command::new("sh").args(["-c", script]).spawn().unwrap());
    // dd's series, without their strategy: which strategy a process's fold is counted
    // under depends on how far it got when the fold caught it (a dd caught after its read
    // and before its write is a receiver for that moment); the labels this test is about
    // (evidence, end, direction) do not. Event families (page faults, context switches,
    // DMA) are left out: a kind that first happens late (a page-in from disk under memory
    // pressure, in CI once) rightly adds its series then, as a counter's first increment.
    let dd_series = || -> std::collections::BTreeSet<String> {
        let text = http_get(port, "/metrics").expect("a scrape");
        let families = ["zc_cpu_copy_", "zc_zero_copy_", "zc_syscalls_", "zc_mode_switches_", "zc_payload_"];
        text.lines()
            .filter(|l| l.contains("comm=\"dd\"") && families.iter().any(|f| l.starts_with(f)))
            .map(|l| {
                let series = l.rsplit_once(' ').unwrap().0;
                let start = series.find("strategy=\"").unwrap();
                let end = start + series[start..].find("\",").map_or(series.len() - start, |e| e + 2);
                format!("{}{}", &series[..start], &series[end..])
            })
            .collect()
    };
    std::thread::sleep(Duration::from_secs(15));
    let first = dd_series();
    assert!(first.len() >= 4, "dd's series after 15 s: {first:?}");
    for _ in 0..12 {
        std::thread::sleep(Duration::from_secs(5));
        let now = dd_series();
        let added: Vec<_> = now.difference(&first).collect();
        let gone: Vec<_> = first.difference(&now).collect();
        assert!(added.is_empty() && gone.is_empty(), "dd's series changed: added {added:?}, gone {gone:?}");
    }
}

/// A node agent outlives the processes it sees: 20,000 short-lived processes under
/// `serve -a` leave no entries behind in the per-process kernel maps (exited processes are
/// deleted at the fold after they are counted), and every one of them keeps its name (a
/// full COMMS map would make them `comm="?"`).
#[test]
fn twenty_thousand_short_processes_leave_no_entries_behind() {
    if !privileged("twenty_thousand_short_processes_leave_no_entries_behind") {
        return;
    }
    let port = free_port();
    let _serve = start_serving(&["-a", "--listen", &format!("127.0.0.1:{port}")]);
    let gauge = |text: &str, name: &str, map: &str| -> u64 {
        let prefix = format!("{name}{{map=\"{map}\"}} ");
        let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {prefix} in {text}"));
        line[prefix.len()..].trim().parse().unwrap()
    };
    let before = http_get(port, "/metrics").expect("a scrape");
    let script = "i=0; while [ $i -lt 20000 ]; do /bin/true; i=$((i+1)); done";
    let status = Command::new("sh").args(["-c", script]).status().unwrap();
    assert!(status.success());
    // Two folds after the last process exited: its counters are folded, then deleted.
    let _ = http_get(port, "/metrics");
    std::thread::sleep(Duration::from_secs(6));
    let after = http_get(port, "/metrics").expect("a scrape");
    assert!(!after.contains("comm=\"?\""), "nameless processes: {after}");
    let true_syscalls: f64 = after
        .lines()
        .filter(|l| l.starts_with("zc_syscalls_total{comm=\"true\""))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    assert!(true_syscalls >= 20_000.0, "true's syscalls: {true_syscalls}");
    for map in ["STATS", "SYSCALL_COUNTS", "FLOWS", "COMMS"] {
        let (start, end) = (gauge(&before, "zc_map_entries", map), gauge(&after, "zc_map_entries", map));
        // The machine's other processes come and go meanwhile: a little slack, far below
        // the 20,000 that a leak would leave.
        assert!(end <= start + 500, "{map}: {start} entries before, {end} after 20,000 processes");
    }
    // Nothing lost to a full map: syscalls are counted per (process, class), a few entries
    // per process (per syscall number, 20,000 processes dropped millions of counts here).
    let drops = |text: &str, reason: &str| -> f64 {
        let prefix = format!("zc_drops_total{{reason=\"{reason}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(prefix.as_str())).map_or(0.0, |v| v.trim().parse().unwrap())
    };
    for reason in ["syscall_counts map full", "stats map full", "flows map full", "in-flight syscall map full"] {
        assert_eq!(drops(&after, reason), drops(&before, reason), "{reason}");
    }
}
