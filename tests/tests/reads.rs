//! The two ways the syscall programs read kernel memory, typed loads (`bpf_rdonly_cast`) and
//! helper calls, count the same workload identically, and the report says which one ran.
mod common;

use common::*;
use serde_json::Value;

const MIB4: usize = 4 << 20;

/// `zc-trace trace --kernel-reads READS -- zc-trace workload ...` moving `src` to a loopback
/// TCP receiver with `strategy`; the report and the row of the workload.
fn traced(reads: &str, strategy: &str, src: &std::path::Path) -> (Value, Value) {
    let (port, receiver) = downstream();
    let bin = zc_trace();
    let sink = format!("tcp:{port}");
    let out = run(&[
        "trace",
        "--json",
        "-o",
        "-",
        "--kernel-reads",
        reads,
        "--",
        bin.to_str().unwrap(),
        "workload",
        "--strategy",
        strategy,
        "--chunk",
        "4KiB",
        "--passes",
        "1",
        "--src",
        src.to_str().unwrap(),
        "--sink",
        &sink,
        "--result",
        "/dev/null",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(receiver.join().unwrap(), MIB4 as u64);
    let report = json(&out);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "one traced process: {rows:?}");
    let row = rows[0].clone();
    (report, row)
}

/// The read path the report's probe list names as attached.
fn read_path(report: &Value) -> String {
    let probes = report["probes"].as_array().unwrap();
    let attached: Vec<&str> = probes
        .iter()
        .filter(|p| p["name"].as_str().unwrap().starts_with("kernel reads:") && p["status"] == "attached")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(attached.len(), 1, "{probes:?}");
    attached[0].to_string()
}

/// What must not depend on how kernel memory is read: counts, bytes, copies, flows (not
/// mode switches: they include page faults, which differ from run to run).
fn counted(row: &Value) -> Value {
    let mut v = serde_json::Map::new();
    for field in ["syscalls", "syscall_counts", "payload_bytes", "cpu_copy", "zero_copy", "flows"] {
        v.insert(field.into(), row[field].clone());
    }
    Value::Object(v)
}

#[test]
fn typed_loads_and_helper_reads_count_alike() {
    if !privileged("typed_loads_and_helper_reads_count_alike") {
        return;
    }
    let dir = TempDir::new("reads");
    let src = dir.file("src.bin", MIB4);
    for strategy in ["read-write", "sendfile"] {
        let (typed_report, typed) = traced("typed", strategy, &src);
        let (helper_report, helper) = traced("helper", strategy, &src);
        assert_eq!(read_path(&typed_report), "kernel reads: typed loads (bpf_rdonly_cast)");
        assert_eq!(read_path(&helper_report), "kernel reads: helper calls (bpf_probe_read_kernel)");
        assert_eq!(counted(&typed), counted(&helper), "{strategy}: typed loads and helper reads disagree");
        // The socket was classified (a TCP destination), not left unknown.
        assert!(
            typed["flows"].as_array().unwrap().iter().any(|f| f["destination"] == "tcp"),
            "{strategy}: no flow to tcp: {}",
            typed["flows"]
        );
        assert_eq!(typed_report["drops"]["total"], 0);
    }
}
