//! Copy stacks -> report: each (process, user stack, kernel stack, flow) counter of the kernel
//! named, labelled with what its bytes were, and ordered by bytes; plus how complete the
//! stacks are (cut short for want of frame pointers, not captured, not resolved).
use std::collections::BTreeMap;

use zc_trace_common::{
    FlowKey,
    flow::flow_untag,
    stacks::{CopyKind, NO_STACK, copy_kind},
};

use crate::{
    attribute::flows::classify,
    kernel::symbols::{Symbols, is_cut},
    model::{
        row::flow_label as flow_label_of,
        run::{ProbeState, ProbeStatus},
        stacks::{CopyStack, StacksReport},
    },
    probe::{catalogue, stack_maps::CopyStacks},
};

/// How the stacks are captured and what their kind rests on, for the evidence line.
pub const EVIDENCE: &str = "raw_tracepoint:sys_exit and io_uring:io_uring_complete (copy stacks) bpf_get_stackid \
     (user stack as build ids, BPF_F_STACK_BUILD_ID); kind derived from syscall semantics (the flow and its \
     route's scatter-gather)";

/// The flow a stack's syscalls belong to, as the flow rows label it.
pub fn flow_label(tag: u32) -> String {
    let Some((class, src, dst, how)) = flow_untag(tag) else { return "other".into() };
    let key = FlowKey { class, src, dst, how, ..FlowKey::default() };
    let (strategy, _, source, destination) = classify(&key);
    flow_label_of(strategy, &source, &destination)
}

/// Which attached probes capture the kernel stack of a copy on this run.
pub fn kernel_stack_sources(probes: &[ProbeStatus]) -> String {
    let inside: Vec<String> = probes
        .iter()
        .filter(|p| p.status == ProbeState::Attached && catalogue::copies_inside(&p.name))
        .map(|p| format!("{} ({})", p.name, p.attach))
        .collect();
    if inside.is_empty() {
        return "none: no probe inside a copy path is attached on this run".into();
    }
    format!("at the copy, by {}; copies on other paths have no kernel stack on this run", inside.join(", "))
}

/// The report of `raw`, its frames named by `symbols`; `kernel_stacks` says where kernel
/// stacks come from on this run (or why there are none).
pub fn report(
    raw: &CopyStacks,
    symbols: &mut Symbols,
    comms: &BTreeMap<u32, String>,
    kernel_stacks: String,
) -> StacksReport {
    let mut stacks: Vec<CopyStack> = Vec::new();
    let mut no_user_stack_bytes = 0;
    for (key, value) in &raw.counts {
        let kind = copy_kind(key.tag, key.gather != 0).map_or("other", CopyKind::name);
        let mut user = match raw.user.get(&key.user) {
            Some(frames) => {
                let frames = symbols.with_leaf_caller(frames, key.leaf_ret, key.frame_ret);
                symbols.user(key.tgid, &frames)
            }
            None => Vec::new(),
        };
        if key.user == NO_STACK || user.is_empty() {
            no_user_stack_bytes += value.bytes;
        }
        let mut kernel = raw.kernel.get(&key.kernel).map(|addrs| symbols.kernel(addrs)).unwrap_or_default();
        // Stored innermost first; shown outermost first, as folded stacks are.
        user.reverse();
        kernel.reverse();
        let cut = is_cut(&user);
        stacks.push(CopyStack {
            pid: key.tgid,
            comm: comms.get(&key.tgid).cloned().unwrap_or_else(|| "?".into()),
            kind,
            flow: flow_label(key.tag),
            bytes: value.bytes,
            calls: value.calls,
            user,
            kernel,
            cut,
        });
    }
    let stacks = merge(stacks);
    let cut: Vec<&CopyStack> = stacks.iter().filter(|s| s.cut).collect();
    StacksReport {
        evidence: EVIDENCE,
        kernel_stacks,
        cut_stacks: cut.len() as u64,
        cut_bytes: cut.iter().map(|s| s.bytes).sum(),
        no_user_stack_bytes,
        unresolved_frames: symbols.unresolved,
        stacks,
    }
}

/// What makes two stacks one: process, kind, flow, user and kernel frames.
type StackIdentity = (u32, &'static str, String, Vec<String>, Vec<String>);

/// Stacks that name the same frames are one (two kernel stack ids can symbolize alike, and
/// the gather bit splits counters that show the same kind), most bytes first.
fn merge(stacks: Vec<CopyStack>) -> Vec<CopyStack> {
    let mut merged: BTreeMap<StackIdentity, CopyStack> = BTreeMap::new();
    for s in stacks {
        let key = (s.pid, s.kind, s.flow.clone(), s.user.clone(), s.kernel.clone());
        match merged.get_mut(&key) {
            Some(m) => {
                m.bytes += s.bytes;
                m.calls += s.calls;
            }
            None => {
                merged.insert(key, s);
            }
        }
    }
    let mut out: Vec<CopyStack> = merged.into_values().collect();
    out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.pid.cmp(&b.pid)));
    out
}

/// The stacks of several sessions (the lab's runs, one per strategy) as one report.
pub fn combine(reports: Vec<StacksReport>) -> Option<StacksReport> {
    let mut reports = reports.into_iter();
    let mut out = reports.next()?;
    for r in reports {
        out.stacks.extend(r.stacks);
        out.cut_stacks += r.cut_stacks;
        out.cut_bytes += r.cut_bytes;
        out.no_user_stack_bytes += r.no_user_stack_bytes;
        out.unresolved_frames += r.unresolved_frames;
    }
    out.stacks.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.pid.cmp(&b.pid)));
    Some(out)
}

/// One line of folded stacks: `kind;comm;user frames;[flow];kernel frames bytes`, the
/// frames outermost first, so that a flame graph's first level is what the bytes were.
pub fn folded_line(s: &CopyStack) -> String {
    let mut frames: Vec<String> = vec![s.kind.to_string(), s.comm.clone()];
    if s.user.is_empty() {
        frames.push("[no user stack]".into());
    }
    frames.extend(s.user.iter().cloned());
    frames.push(format!("[{}]", s.flow));
    frames.extend(s.kernel.iter().cloned());
    // `;` separates frames (the count follows the last space, so frames may hold spaces).
    let frames: Vec<String> = frames.iter().map(|f| f.replace(';', ":")).collect();
    format!("{} {}", frames.join(";"), s.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zc_trace_common::{FdKind, FlowValue, OpClass, flow::flow_tag, how, stacks::StackKey};

    #[test]
    fn stacks_are_named_kinded_merged_and_folded() {
        let read = flow_tag(OpClass::Read as u8, FdKind::File as u8, FdKind::UserMemory as u8, how::PLAIN);
        let mut raw = CopyStacks::default();
        // Two counters of one stack (one per gather bit) and a stack without user frames.
        raw.counts.insert(
            StackKey { tgid: 9, user: NO_STACK, kernel: NO_STACK, tag: read, gather: 0, ..Default::default() },
            FlowValue { calls: 2, bytes: 100 },
        );
        raw.counts.insert(
            StackKey { tgid: 9, user: NO_STACK, kernel: NO_STACK, tag: read, gather: 1, ..Default::default() },
            FlowValue { calls: 1, bytes: 50 },
        );
        let comms = BTreeMap::from([(9, "srv".to_string())]);
        let report = report(&raw, &mut Symbols::new(), &comms, "none".into());
        assert_eq!(report.stacks.len(), 1);
        let s = &report.stacks[0];
        assert_eq!((s.kind, s.flow.as_str(), s.bytes, s.calls), ("to_user", "read file -> memory", 150, 3));
        assert_eq!(report.no_user_stack_bytes, 150);
        assert_eq!(folded_line(s), "to_user;srv;[no user stack];[read file -> memory] 150");
    }
}
