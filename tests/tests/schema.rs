//! The JSON of `lab --json` and `trace --json` keeps its fields: the same workloads give the
//! field paths that zc-trace gave before the [design] restructure (tests/fixtures/), plus only
//! the additions listed here. README promises these names are stable.
mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

/// Objects whose keys are data, not field names: folded to `*`.
const DATA_KEYED: [&str; 6] = ["syscall_counts", "by_class", "by_reason", "by_end", "by_kind", "system_by_device"];

/// Fields added since the fixtures were made, and why.
const ADDED: [&str; 8] = [
    // The BTF error behind "DMA API bytes: not read" moved out of the evidence text, which
    // takes a fixed vocabulary now.
    ".rows[].dma.dma_layout_error",
    // Pages spliced into network sockets, apart from UNIX ones: what copied-at-transmit
    // compares with the NIC's paged bytes.
    ".rows[].zero_copy.spliced_to_network_bytes",
    // Each traced process's cgroup, and the container and pod its path names ([containers]).
    ".rows[].cgroup.id",
    ".rows[].cgroup.path",
    ".rows[].cgroup.container_id",
    ".rows[].cgroup.runtime",
    ".rows[].cgroup.pod_uid",
    ".rows[].cgroup.qos",
];

fn paths(v: &Value, path: String, data_keyed: bool, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) if map.is_empty() && data_keyed => {
            out.insert(format!("{path}.*"));
        }
        Value::Object(map) if map.is_empty() => {
            out.insert(format!("{path}{{}}"));
        }
        Value::Object(map) => {
            for (key, value) in map {
                let name = if data_keyed { "*" } else { key.as_str() };
                paths(value, format!("{path}.{name}"), DATA_KEYED.contains(&key.as_str()), out);
            }
        }
        Value::Array(items) if items.is_empty() => {
            out.insert(format!("{path}[]"));
        }
        Value::Array(items) => {
            for item in items {
                paths(item, format!("{path}[]"), false, out);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

fn schema_of(report: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    paths(report, String::new(), false, &mut out);
    out
}

fn fixture(name: &str) -> BTreeSet<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(String::from)
        .collect()
}

fn assert_same_fields(what: &str, report: &Value, before: BTreeSet<String>) {
    let now = schema_of(report);
    let missing: Vec<&String> = before.difference(&now).collect();
    let added: Vec<&String> = now.difference(&before).filter(|p| !ADDED.contains(&p.as_str())).collect();
    assert!(
        missing.is_empty() && added.is_empty(),
        "{what}: fields gone: {missing:?}; fields not listed in ADDED: {added:?}"
    );
}

#[test]
fn lab_json_keeps_its_fields() {
    if !privileged("lab_json_keeps_its_fields") {
        return;
    }
    let out = run(&["lab", "--json", "--size", "4MiB", "--chunk", "64KiB", "--sink", "tcp"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_same_fields("lab --json", &json(&out), fixture("lab-schema.txt"));
}

#[test]
fn trace_json_keeps_its_fields() {
    if !privileged("trace_json_keeps_its_fields") {
        return;
    }
    let dir = TempDir::new("schema");
    let src = dir.file("src", 4 << 20);
    let input = format!("if={}", src.display());
    let out = run(&["trace", "--json", "-o", "-", "--", "dd", &input, "of=/dev/null", "bs=64k"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_same_fields("trace --json", &json(&out), fixture("trace-schema.txt"));
}

#[test]
fn data_keyed_objects_fold() {
    let report =
        serde_json::json!({"rows": [{"syscall_counts": {"read": 1, "write": 2}, "by_class": {}, "pid": 7}], "x": {}});
    let schema: Vec<String> = schema_of(&report).into_iter().collect();
    assert_eq!(schema, [".rows[].by_class.*", ".rows[].pid", ".rows[].syscall_counts.*", ".x{}"]);
}
