//! The copy stacks section of `trace --stacks`: the top stacks of each process's flows, and
//! how complete the stacks are.
use std::collections::BTreeMap;

use crate::{
    model::stacks::{CopyStack, StacksReport},
    render::table::human_bytes,
};

/// Stacks shown per (process, flow); `--folded` and the JSON have them all.
const TOP_PER_FLOW: usize = 3;
/// Innermost user frames shown per stack.
const FRAMES_SHOWN: usize = 5;

pub fn render(report: &StacksReport, raw: bool) -> String {
    let bytes = |n: u64| if raw { n.to_string() } else { human_bytes(n as f64) };
    let mut out = format!("\nCopy stacks (by bytes; [{}]):\n", report.evidence);
    let mut by_flow: BTreeMap<(u32, &str), Vec<&CopyStack>> = BTreeMap::new();
    for s in &report.stacks {
        by_flow.entry((s.pid, s.flow.as_str())).or_default().push(s);
    }
    // Flows with most bytes first.
    let mut flows: Vec<_> = by_flow.into_iter().collect();
    flows.sort_by_key(|(_, stacks)| std::cmp::Reverse(stacks.iter().map(|s| s.bytes).sum::<u64>()));
    for ((pid, flow), stacks) in flows {
        out += &format!("  PID {pid} ({}), {flow}:\n", stacks[0].comm);
        for s in stacks.iter().take(TOP_PER_FLOW) {
            out += &format!(
                "    {:>12} in {:>8} calls  {:<11} {}{}\n",
                bytes(s.bytes),
                s.calls,
                s.kind,
                user_path(s),
                kernel_leaf(s)
            );
        }
        if stacks.len() > TOP_PER_FLOW {
            out += &format!("    ... {} more stacks (all in --folded and the JSON)\n", stacks.len() - TOP_PER_FLOW);
        }
    }
    if report.stacks.is_empty() {
        out += "  none: no data syscall of a traced process moved bytes\n";
    }
    out += &format!("  kernel stacks: {}\n", report.kernel_stacks);
    if report.cut_stacks > 0 {
        out += &format!(
            "  {} of {} stacks ({} of the bytes) stop before a thread's entry point: the program (or a \
             library) was built without frame pointers; rebuild with -fno-omit-frame-pointer for full \
             stacks (docs/stacks.md)\n",
            report.cut_stacks,
            report.stacks.len(),
            bytes(report.cut_bytes)
        );
    }
    if report.no_user_stack_bytes > 0 {
        out += &format!(
            "  {} moved by syscalls without a user stack (none captured, or lost: see drops)\n",
            bytes(report.no_user_stack_bytes)
        );
    }
    if report.unresolved_frames > 0 {
        out += &format!(
            "  {} frames not named: their file was not found by its build id (shown as [build id ...])\n",
            report.unresolved_frames
        );
    }
    out
}

/// The innermost user frames, outermost of them first: `main > serve > read`.
fn user_path(s: &CopyStack) -> String {
    if s.user.is_empty() {
        return "[no user stack]".into();
    }
    let skip = s.user.len().saturating_sub(FRAMES_SHOWN);
    let shown: Vec<&str> = s.user[skip..].iter().map(String::as_str).collect();
    format!("{}{}", if skip > 0 { "... > " } else { "" }, shown.join(" > "))
}

/// The kernel function nearest the copy, if a kernel stack was captured.
fn kernel_leaf(s: &CopyStack) -> String {
    match s.kernel.last() {
        Some(leaf) => format!("  [kernel: {}]", leaf.trim_end_matches("_[k]")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_are_grouped_by_flow_and_cut_ones_are_explained() {
        let stack = |user: &[&str], bytes, cut| CopyStack {
            pid: 7,
            comm: "srv".into(),
            kind: "to_user",
            flow: "read file -> memory".into(),
            bytes,
            calls: 2,
            user: user.iter().map(|s| s.to_string()).collect(),
            kernel: vec!["vfs_read_[k]".into(), "filemap_read_[k]".into()],
            cut,
        };
        let report = StacksReport {
            stacks: vec![stack(&["_start", "main", "serve", "read"], 4096, false), stack(&["read"], 100, true)],
            evidence: "e",
            kernel_stacks: "at the copy".into(),
            cut_stacks: 1,
            cut_bytes: 100,
            no_user_stack_bytes: 0,
            unresolved_frames: 0,
        };
        let text = render(&report, true);
        assert!(text.contains("  PID 7 (srv), read file -> memory:\n"), "{text}");
        assert!(
            text.contains("4096 in        2 calls  to_user     _start > main > serve > read  [kernel: filemap_read]"),
            "{text}"
        );
        assert!(text.contains("1 of 2 stacks (100 of the bytes) stop before"), "{text}");
    }
}
