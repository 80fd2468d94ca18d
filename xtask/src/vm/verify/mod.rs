//! What `vm-test` asserts on each guest's results (saved as JSON under
//! `target/vm/results/<release>/`): that the kernel allows the function-probe tiers, that the
//! tiers agree, and that the fentry tier observes the copy sites instead of deriving them. Also
//! renders the docs' compatibility table (`--write-docs`).
use std::{fs, path::Path};

use serde_json::Value;

mod classic;
mod results;

pub use classic::{classic_table, verify_classic};
use results::{DATA_SYSCALLS, io_uring_enter_floor, load, n, rows, within_1pct};

const TIERS: [&str; 4] = ["auto", "fentry", "kprobe", "tracepoint"];
/// Every problem found in one guest's results; empty means the kernel passed.
pub fn verify(dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    // Typed loads where the kernel has bpf_rdonly_cast (6.2+), helper calls before.
    let mut expect_typed = None;
    match load(dir, "doctor") {
        Ok(doctor) => {
            for kind in ["fentry", "fexit", "kprobe", "kretprobe"] {
                if doctor["attach_kinds"][kind]["works"] != true {
                    problems.push(format!("doctor: {kind} does not work: {}", doctor["attach_kinds"][kind]["detail"]));
                }
            }
            let typed = at_least(doctor["kernel"]["release"].as_str().unwrap_or(""), (6, 2));
            if doctor["typed_loads"]["works"] != typed {
                problems.push(format!(
                    "doctor: typed loads {} on this kernel, expected {typed}: {}",
                    doctor["typed_loads"]["works"], doctor["typed_loads"]["detail"]
                ));
            }
            expect_typed = Some(typed);
        }
        Err(e) => problems.push(e),
    }
    let reports: Vec<(&str, Value)> = TIERS
        .iter()
        .filter_map(|t| match load(dir, &format!("lab-{t}")) {
            Ok(v) => Some((*t, v)),
            Err(e) => {
                problems.push(e);
                None
            }
        })
        .collect();
    for (tier, report) in &reports {
        let typed = report["probes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["name"] == "kernel reads: typed loads (bpf_rdonly_cast)" && p["status"] == "attached");
        if expect_typed.is_some_and(|expected| typed != expected) {
            problems.push(format!("lab-{tier}: typed loads {typed}, expected {}", !typed));
        }
    }
    // io_uring_enter varies between runs (DATA_SYSCALLS says why): each tier once, against
    // its floor, instead of across tiers.
    for (tier, report) in &reports {
        if let Some(row) = rows(report).get(&("io-uring".to_string(), "sender".to_string())) {
            let (calls, floor) = (n(&row["syscall_counts"]["io_uring_enter"]), io_uring_enter_floor(report));
            if calls < floor {
                problems.push(format!("io-uring sender ({tier}): {calls} io_uring_enter calls, fewer than {floor}"));
            }
        }
    }
    let Some((_, base)) = reports.first() else { return problems };
    let base_rows = rows(base);
    for (tier, report) in &reports[1..] {
        let other = rows(report);
        for (key, a) in &base_rows {
            let Some(b) = other.get(key) else {
                problems.push(format!("{tier}: no {} {} row", key.0, key.1));
                continue;
            };
            let what = format!("{} {} (auto vs {tier})", key.0, key.1);
            if key.1 == "sender" {
                for s in DATA_SYSCALLS {
                    let (x, y) = (n(&a["syscall_counts"][s]), n(&b["syscall_counts"][s]));
                    if x != y {
                        problems.push(format!("{what}: {s} calls {x} vs {y}"));
                    }
                }
            }
            if n(&a["payload_bytes"]) != n(&b["payload_bytes"]) {
                problems.push(format!("{what}: payload {} vs {}", a["payload_bytes"], b["payload_bytes"]));
            }
            for dir in ["to_user", "from_user", "kernel"] {
                // A figure one tier cannot measure is n/a there (5.10's io_uring copies
                // without the function probes), not a disagreement.
                let unmeasured =
                    |r: &Value| r["cpu_copy"][dir]["unmeasured_ends"].as_array().is_some_and(|e| !e.is_empty());
                if unmeasured(a) || unmeasured(b) {
                    continue;
                }
                let (x, y) = (n(&a["cpu_copy"][dir]["bytes"]), n(&b["cpu_copy"][dir]["bytes"]));
                if !within_1pct(x, y) {
                    problems.push(format!("{what}: {dir} copy bytes {x} vs {y}"));
                }
            }
            let (x, y) = (n(&a["zero_copy"]["bytes"]), n(&b["zero_copy"]["bytes"]));
            if !within_1pct(x, y) {
                problems.push(format!("{what}: zero-copy bytes {x} vs {y}"));
            }
        }
    }
    if let Some((_, fentry)) = reports.iter().find(|(t, _)| *t == "fentry") {
        problems.extend(observed_in_fentry_tier(fentry));
    }
    match load(dir, "stacks-fentry") {
        Ok(report) => problems.extend(stacks_at_the_copy(&report)),
        Err(e) => problems.push(e),
    }
    problems
}

/// `dd` of a file to a file with `--stacks` in the fentry tier: every byte of its flows is in
/// a stack of that flow, and the copies' kernel stacks were taken inside `vfs_read` and
/// `vfs_write` (by the filemap_read and generic_perform_write probes).
fn stacks_at_the_copy(report: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let stacks = report["stacks"]["stacks"].as_array().cloned().unwrap_or_default();
    let Some(row) = report["rows"].as_array().and_then(|r| r.first()) else {
        return vec!["stacks-fentry: no row".into()];
    };
    for flow in row["flows"].as_array().into_iter().flatten() {
        let label = format!(
            "{} {} -> {}",
            flow["strategy"].as_str().unwrap_or(""),
            flow["source"].as_str().unwrap_or(""),
            flow["destination"].as_str().unwrap_or("")
        );
        let in_stacks: u64 = stacks.iter().filter(|s| s["flow"] == label.as_str()).map(|s| n(&s["bytes"])).sum();
        if in_stacks != n(&flow["bytes"]) {
            problems
                .push(format!("stacks-fentry: {label}: {in_stacks} bytes in stacks, {} in the flow", flow["bytes"]));
        }
    }
    for (kind, function) in [("to_user", "vfs_read_[k]"), ("from_user", "vfs_write_[k]")] {
        let found = stacks
            .iter()
            .any(|s| s["kind"] == kind && s["kernel"].as_array().into_iter().flatten().any(|f| f == function));
        if !found {
            problems.push(format!(
                "stacks-fentry: no {kind} stack with {function} in its kernel frames: {}",
                report["stacks"]
            ));
        }
    }
    problems
}

/// In the fentry tier, the copy sites docs/kernels.md lists as traceable must be observed
/// (`fexit:...`), not derived.
fn observed_in_fentry_tier(report: &Value) -> Vec<String> {
    let rows = rows(report);
    let mut problems = Vec::new();
    let mut expect = |strategy: &str, path: &[&str], wanted: &str| {
        let Some(row) = rows.get(&(strategy.to_string(), "sender".to_string())) else {
            problems.push(format!("fentry: no {strategy} sender row"));
            return;
        };
        let mut v = *row;
        for p in path {
            v = &v[*p];
        }
        let evidence = v["evidence"].as_str().unwrap_or("(none)");
        if !evidence.contains(wanted) {
            problems.push(format!("fentry: {strategy} {}: evidence `{evidence}`, expected {wanted}", path.join(".")));
        }
    };
    // filemap_read was generic_file_buffered_read before 5.12: either name says fexit.
    expect("read-write", &["cpu_copy", "to_user", "by_end", "page_cache"], "fexit:");
    expect("read-write", &["cpu_copy", "from_user", "by_end", "socket"], "fexit:tcp_sendmsg_locked");
    expect("mmap-write", &["cpu_copy", "from_user", "by_end", "socket"], "fexit:tcp_sendmsg_locked");
    expect("sendfile", &["zero_copy", "by_kind", "splice_pages"], "fexit:");
    expect("splice", &["zero_copy", "by_kind", "splice_pages"], "fexit:");
    expect("splice", &["zero_copy", "by_kind", "page_refs"], "fexit:");
    // Where fexit observed the copies, the classic comparison must say so: its verdict once
    // said "derived from syscall semantics" at every tier.
    for strategy in ["read-write", "mmap-write"] {
        let comparison = report["lab"]["classic"].as_array().and_then(|c| c.iter().find(|c| c["strategy"] == strategy));
        let verdict = comparison.and_then(|c| c["cpu_verdict"].as_str()).unwrap_or("(no classic comparison)");
        if !verdict.contains("(observed)") {
            problems.push(format!("fentry: {strategy} classic verdict `{verdict}`, expected it to say (observed)"));
        }
    }
    // The source lives on ext4 on the NVMe disk, whose reads go through filemap_read: none
    // of its bytes may be derived (on a tmpfs TMPDIR they were).
    if let Some(row) = rows.get(&("read-write".to_string(), "sender".to_string())) {
        let evidence = row["cpu_copy"]["to_user"]["by_end"]["page_cache"]["evidence"].as_str().unwrap_or("");
        if evidence.contains("derived") {
            problems.push(format!(
                "fentry: read-write page cache -> user is partly derived: `{evidence}` (TMPDIR not on the NVMe ext4?)"
            ));
        }
    }
    problems
}

/// docs/compat.md's table: for each kernel (column), each attach kind and copy
/// site (row), whether it works, from `doctor --json`.
pub fn compat_table(kernels: &[(String, Value)]) -> String {
    let mut md = String::from("| probe | attach kind |");
    for (k, _) in kernels {
        md += &format!(" {k} |");
    }
    md += "\n|---|---|";
    md += &"---|".repeat(kernels.len());
    md.push('\n');
    let cell = |v: &Value| if v["works"] == true { "yes" } else { "no" };
    let kinds = ["tracepoint", "raw_tracepoint", "tp_btf", "fentry", "fexit", "kprobe", "kretprobe"];
    for kind in kinds {
        md += &format!("| (any) | {kind} |");
        for (_, d) in kernels {
            md += &format!(" {} |", cell(&d["attach_kinds"][kind]));
        }
        md.push('\n');
    }
    // What each kernel has that changes how the programs are built (doctor's kernel_features).
    for (feature, label) in [
        ("task_btf", "`bpf_get_current_task_btf` helper"),
        ("run_time_map_allocation", "run-time map allocation (else preallocated)"),
        ("sched_switch_prev_state", "`sched_switch` prev_state (argument or task state)"),
        ("page_fault_tracepoints", "`exceptions:page_fault_*` tracepoints"),
    ] {
        md += &format!("| {label} | (kernel) |");
        for (_, d) in kernels {
            let f = &d["kernel_features"][feature];
            let text = match f["detail"].as_str() {
                None => "-",
                // Where sched_switch's program learns the state, as doctor says it.
                Some(detail) if feature == "sched_switch_prev_state" && f["works"] == true => {
                    if detail.starts_with("prev_state argument") { "argument" } else { "task state" }
                }
                Some(_) => cell(f),
            };
            md += &format!(" {text} |");
        }
        md.push('\n');
    }
    md += "| typed loads (`bpf_rdonly_cast`) | (kernel) |";
    for (_, d) in kernels {
        md += &format!(" {} |", cell(&d["typed_loads"]));
    }
    md.push('\n');
    let sites: Vec<String> = kernels
        .first()
        .and_then(|(_, d)| d["copy_sites"].as_array())
        .map(|a| a.iter().filter_map(|s| s["function"].as_str().map(String::from)).collect())
        .unwrap_or_default();
    for site in sites {
        for kind in ["fentry", "fexit", "kprobe", "kretprobe"] {
            md += &format!("| `{site}` | {kind} |");
            for (_, d) in kernels {
                let s = d["copy_sites"].as_array().and_then(|a| a.iter().find(|s| s["function"] == site.as_str()));
                let text = match s {
                    Some(s) if s["attach"][kind]["works"] == true => "yes",
                    Some(s) if s["in_btf"] == false => "no (not in BTF)",
                    Some(_) => "no",
                    None => "-",
                };
                md += &format!(" {text} |");
            }
            md.push('\n');
        }
    }
    md
}

/// Writes a generated table as a whole Markdown file: a heading, where it came from, the body.
pub fn write_doc(path: &Path, heading: &str, source: &str, body: &str) -> anyhow::Result<()> {
    let text = format!(
        "# {heading}\n\n<!-- generated by `cargo xtask vm-test --write-docs`: edit xtask/src/vm/verify, not this file -->\n\n{source}\n\n{body}"
    );
    fs::write(path, text)?;
    Ok(())
}

/// Whether a kernel release ("6.12.118+deb12-amd64") is at least `(major, minor)`.
fn at_least(release: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        assert!(!at_least("6.1.0-57-amd64", (6, 2)));
        assert!(at_least("6.12.118+deb12-amd64", (6, 2)));
        assert!(at_least("6.2.0", (6, 2)) && at_least("7.0.1", (6, 2)) && !at_least("5.10.0-30-amd64", (6, 2)));
    }
    use serde_json::json;

    #[test]
    fn within_one_percent() {
        assert!(within_1pct(100, 100));
        assert!(within_1pct(1000, 1009));
        assert!(!within_1pct(1000, 1100));
    }

    #[test]
    fn compat_table_has_a_column_per_kernel() {
        let d = json!({"attach_kinds": {"fentry": {"works": true}}, "copy_sites": [{"function": "filemap_read", "in_btf": true, "attach": {"fentry": {"works": false}}}]});
        let t = compat_table(&[("6.1".into(), d.clone()), ("6.12".into(), d)]);
        assert!(t.contains("| (any) | fentry | yes | yes |"));
        assert!(t.contains("| `filemap_read` | fentry | no | no |"));
        assert!(t.contains("| `bpf_get_current_task_btf` helper | (kernel) | - | - |"));
    }

    #[test]
    fn fentry_verdicts_must_say_observed() {
        let verdict_problems = |verdict: &str| {
            let report = json!({"rows": [], "lab": {"classic": [
                {"strategy": "read-write", "cpu_verdict": verdict},
                {"strategy": "mmap-write", "cpu_verdict": "matches (observed)"},
            ]}});
            observed_in_fentry_tier(&report).into_iter().filter(|p| p.contains("classic verdict")).collect::<Vec<_>>()
        };
        assert!(verdict_problems("matches (observed)").is_empty());
        let problems = verdict_problems("matches (derived from syscall semantics)");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("read-write"));
    }
}
