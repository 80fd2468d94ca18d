//! Reading one guest's saved results (`<check>.json`) and the small comparisons every
//! verification uses.
use std::{collections::BTreeMap, fs, path::Path};

use serde_json::Value;

/// Syscalls whose counts a deterministic sender makes exactly the same in every run.
/// `io_uring_enter` is not one: an io_uring write to a socket can complete short, and the
/// io-uring sender then submits the rest with one more enter (258 against 257 was seen in
/// one of two tiers of the same boot); it is checked against its least count instead
/// (`IO_URING_SENDER`).
pub const DATA_SYSCALLS: [&str; 8] =
    ["read", "write", "sendfile", "splice", "vmsplice", "mmap", "copy_file_range", "sendto"];

/// The io-uring sender makes at least one `io_uring_enter` per read (and one for the read
/// that finds the end of the file) and one per write: `2 * chunks + 1`.
pub fn io_uring_enter_floor(report: &Value) -> u64 {
    let (size, chunk) = (n(&report["lab"]["size_bytes"]), n(&report["lab"]["chunk_bytes"]).max(1));
    2 * size.div_ceil(chunk) + 1
}

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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn io_uring_floor_is_one_enter_per_read_write_and_the_last_read() {
        let report = json!({"lab": {"size_bytes": 8 << 20, "chunk_bytes": 64 << 10}});
        assert_eq!(io_uring_enter_floor(&report), 257);
        let odd = json!({"lab": {"size_bytes": 100, "chunk_bytes": 64}});
        assert_eq!(io_uring_enter_floor(&odd), 5);
    }
}
