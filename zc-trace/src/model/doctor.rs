//! What `zc-trace doctor` reports: which attach kinds work on this kernel, and which copy-site
//! functions each can reach (found out by `probe::doctor`).
use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::report::KernelInfo;

/// Attach kinds in the order zc-trace prefers them for function probes (cheapest first).
pub const FUNCTION_KINDS: [&str; 4] = ["fentry", "fexit", "kprobe", "kretprobe"];

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    pub works: bool,
    /// What was attached, or the kernel's error.
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CopySite {
    pub function: &'static str,
    /// Present as a function in the kernel's BTF; absent usually means inlined everywhere.
    pub in_btf: bool,
    pub attach: BTreeMap<&'static str, Check>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    pub kernel: KernelInfo,
    /// Kind -> result of a real load + attach.
    pub attach_kinds: BTreeMap<&'static str, Check>,
    pub copy_sites: Vec<CopySite>,
    /// How the syscall programs read kernel memory here: `works` for typed loads (they loaded),
    /// else helper calls, and why. `None` until the caller has tried (`probe::session`).
    pub typed_loads: Option<Check>,
    /// What the counting programs' maps can take; `None` if the embedded object could not be
    /// read (the report says why elsewhere: it cannot run then either).
    pub map_memory: Option<MapMemory>,
    /// What this kernel has that decides how the counting programs are built; `None` until
    /// the caller has read them (`probe::session::kernel_features`).
    pub kernel_features: Option<KernelFeatures>,
}

/// Kernel facts, read from its BTF, that change how the counting programs are built: a user
/// sees here why an older kernel or another architecture runs differently.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KernelFeatures {
    /// The `bpf_get_current_task_btf` helper (5.11+): the walk from the task to its fd table
    /// is plain loads; without it, helper reads.
    pub task_btf: Check,
    /// Hash maps allocated at run time are safe in tracing programs (`bpf_mem_alloc`, 6.1+);
    /// without it every hash map is preallocated.
    pub run_time_map_allocation: Check,
    /// Where `sched_switch` learns whether the task went to sleep (`prev_state` is an
    /// argument since 5.18; before, the task's state is read).
    pub sched_switch_prev_state: Check,
    /// The `exceptions:page_fault_*` tracepoints (x86 only): without them page faults are
    /// not counted, and say so.
    pub page_fault_tracepoints: Check,
}

/// Kernel memory zc-trace's maps can take ([`crate::probe::footprint`]).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MapMemory {
    /// Possible CPUs of this machine: per-CPU maps hold a value per possible CPU.
    pub cpus: u64,
    /// The most every map together can take here, with the default capacities, in bytes.
    pub most_bytes: u64,
    /// The same on machines of 2, 16 and 128 CPUs.
    pub most_bytes_at: BTreeMap<u64, u64>,
    /// The maps that can take most here, largest first: (map, bytes).
    pub largest: Vec<(String, u64)>,
}
