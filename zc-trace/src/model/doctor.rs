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
}
