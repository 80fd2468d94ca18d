//! What zc-trace prints with `--json`: the report of each command, made of the row, probe and
//! kernel types beside it. The fields named in the README are stable; more may be added.
//! Terminal tables for them are in `render/`.
use serde::Serialize;

use crate::model::{
    classic::Comparison,
    evidence,
    row::Row,
    run::{Drops, ProbeStatus, Tier},
    stacks::StacksReport,
};

/// The report every attributing command prints with `--json`: the fields named in the README
/// are stable; more may be added.
#[derive(Debug, Clone, Serialize)]
pub struct AttributionReport {
    pub kernel: KernelInfo,
    pub tier: Tier,
    pub probes: Vec<ProbeStatus>,
    pub rows: Vec<Row>,
    pub drops: Drops,
    pub duration_s: f64,
    /// System-wide counters (work no traced process was charged for).
    pub system: GlobalEvents,
    /// Lab runs: what was run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lab: Option<LabSettings>,
    /// `--stacks`: the copy stacks of every traced process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stacks: Option<StacksReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LabSettings {
    pub size_bytes: u64,
    pub chunk_bytes: u64,
    pub sink: String,
    pub cold: bool,
    pub runs: u32,
    pub skipped: Vec<Skipped>,
    /// Each classic strategy's sender beside the classic model, with a verdict.
    pub classic: Vec<Comparison>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub strategy: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyscallRow {
    pub name: String,
    pub nr: u32,
    pub calls: u64,
    pub mode_switches: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    pub pid: u32,
    pub comm: String,
    pub spawned: bool,
    /// The command's exit status when we started it and it ended during the trace.
    pub exit_status: Option<i32>,
}

/// What the syscall report's figures rest on.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub calls: evidence::Evidence,
    pub mode_switches: evidence::Evidence,
}

/// `zc-trace syscalls`: one process's system calls and the mode switches they cost.
#[derive(Debug, Clone, Serialize)]
pub struct SyscallReport {
    pub kernel: KernelInfo,
    pub probes: Vec<ProbeStatus>,
    pub target: TargetInfo,
    pub syscalls: Vec<SyscallRow>,
    pub total_calls: u64,
    pub total_mode_switches: u64,
    pub evidence: Evidence,
    pub drops: Drops,
    pub duration_s: f64,
}

/// Facts about the running kernel that every report carries (`kernel::facts` reads them).
#[derive(Debug, Clone, Serialize)]
pub struct KernelInfo {
    pub release: String,
    /// The active lockdown mode (`none`, `integrity`, `confidentiality`), or `null` when the
    /// kernel has no lockdown LSM or securityfs could not be read.
    pub lockdown: Option<String>,
    pub btf: bool,
}

/// System-wide counters, by `zc_trace_common::GlobalEvent` (`probe::collect` reads them).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct GlobalEvents {
    pub disk_read_bytes_unattributed: u64,
    pub disk_write_bytes_unattributed: u64,
    pub dma_maps_system: u64,
    pub net_tx_packets_system: u64,
}
