//! What the probes did on one run: the tier asked for, each probe's status, which probes each
//! kind of figure can cite ([`Evidence`]), and the events that could not be counted.
use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::evidence::{Attach, Probe};

/// Which attach kind function probes may use. `tracepoint` uses none: copies on paths that
/// only a function probe could see are then derived from syscall semantics (and say so).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The best that loads: fentry/fexit, else kprobe/kretprobe, else tracepoints only.
    #[default]
    Auto,
    Fentry,
    Kprobe,
    Tracepoint,
}

impl Tier {
    /// As `--probe-tier` spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Tier::Auto => "auto",
            Tier::Fentry => "fentry",
            Tier::Kprobe => "kprobe",
            Tier::Tracepoint => "tracepoint",
        }
    }
}

/// How the syscall programs read kernel memory (fds' files, syscall arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelReads {
    /// Typed loads where the kernel has `bpf_rdonly_cast` (6.2+) and they verify, else helper reads.
    #[default]
    Auto,
    /// Loads through BTF-typed pointers (`bpf_rdonly_cast`): no helper call per read.
    Typed,
    /// A `bpf_probe_read_kernel` call per read (every kernel).
    Helper,
}

/// Where each kind of figure comes from on this run; attribution labels cells with it. The
/// session fills it as probes attach; each cell's [`crate::model::evidence::Evidence`] is
/// made from it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evidence {
    /// How the function probe that observes each copy site is attached, by function name
    /// (absent = derived).
    pub functions: BTreeMap<&'static str, Attach>,
    /// Tracepoints that attached, by `category:name`.
    pub tracepoints: Vec<&'static str>,
    /// Page faults are counted by the `page-faults` perf event (arm64), not tracepoints.
    pub page_faults_perf: bool,
    /// `dma:*` tracepoints that attached, by their name after `dma:`.
    pub dma: Vec<&'static str>,
    /// Why DMA mappings are counted without bytes and direction, when they are (the
    /// tracepoints' parameters or `struct scatterlist` not found in BTF).
    pub dma_layout_error: Option<String>,
    /// Why fd classification is off, when it is (no BTF, an unknown struct layout).
    pub fd_classification_error: Option<String>,
}

impl Evidence {
    pub fn tracepoint(&self, name: &str) -> bool {
        self.tracepoints.contains(&name)
    }
    /// The probe that observes this function's copies, if one is attached.
    pub fn probe(&self, function: &str) -> Option<Probe> {
        self.functions.get_key_value(function).map(|(&name, &attach)| Probe { name, attach })
    }
}

/// One probe as every report lists it: how it is attached, or why it could not be.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProbeStatus {
    pub name: String,
    /// `tracepoint`, `raw_tracepoint`, `tp_btf`, `fentry`, `fexit`, `kprobe`, `kretprobe`.
    pub attach: String,
    pub status: ProbeState,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProbeState {
    Attached,
    Unavailable,
}

impl ProbeStatus {
    pub fn attached(name: &str, attach: &str) -> Self {
        Self { name: name.into(), attach: attach.into(), status: ProbeState::Attached, reason: None }
    }
    pub fn unavailable(name: &str, attach: &str, reason: impl Into<String>) -> Self {
        Self { name: name.into(), attach: attach.into(), status: ProbeState::Unavailable, reason: Some(reason.into()) }
    }
}

/// How full a per-process kernel map is: long-running sessions must not fill them (exited
/// processes' entries are deleted).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct MapOccupancy {
    pub map: &'static str,
    pub entries: u64,
    pub max_entries: u32,
}

/// Events the kernel side could not count, by reason (every reason listed, zeros included).
#[derive(Debug, Clone, Serialize)]
pub struct Drops {
    pub total: u64,
    pub by_reason: BTreeMap<&'static str, u64>,
}

impl Drops {
    pub fn new(by_reason: BTreeMap<&'static str, u64>) -> Self {
        Self { total: by_reason.values().sum(), by_reason }
    }
}
