//! Reading one guest's saved results (`<check>.json`) and the small comparisons every
//! verification uses.
use std::{collections::BTreeMap, fs, path::Path};

use serde_json::Value;

/// Syscalls whose counts a deterministic sender makes exactly the same in every run.
pub const DATA_SYSCALLS: [&str; 9] =
    ["read", "write", "sendfile", "splice", "vmsplice", "mmap", "copy_file_range", "sendto", "io_uring_enter"];

pub fn load(dir: &Path, name: &str) -> Result<Value, String> {
    let path = dir.join(format!("{name}.json"));
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn rows(report: &Value) -> BTreeMap<(String, String), &Value> {
    report["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    (
                        (
                            r["strategy"].as_str().unwrap_or("").to_string(),
                            r["role"].as_str().unwrap_or("").to_string(),
                        ),
                        r,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn within_1pct(a: u64, b: u64) -> bool {
    let (a, b) = (a as f64, b as f64);
    (a - b).abs() <= 0.01 * a.max(b) + 1.0
}

pub fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}
