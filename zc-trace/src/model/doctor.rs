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
