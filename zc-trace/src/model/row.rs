//! A report row and its cells: CPU copies by direction and by the kind of memory at the other
//! end, zero-copy moves, DMA, mode and context switches, flows. Each figure carries the
//! [`Evidence`] it rests on; a figure no attached probe could see is `None` (JSON `null`),
//! never 0. `attribute::row` builds them from the kernel's counters.
use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::evidence::{DmaEvidence, Evidence};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Part {
    pub bytes: u64,
    pub calls: u64,
    pub evidence: Evidence,
    /// Of `bytes`, those derived because the observing probe did not see them (a tmpfs read
    /// never calls filemap_read); evidence then ends in `... for the bytes it did not see`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub derived_bytes: Option<u64>,
    /// Bytes taken out of this part because they were copied at transmit (now in
    /// `cpu_copy.kernel`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copied_at_transmit_bytes: Option<u64>,
    /// MSG_ZEROCOPY: bytes of sends whose completion the process has not read (yet), taken
    /// out of this part: requested as zero-copy, outcome unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome_unknown_bytes: Option<u64>,
}

impl Part {
    pub fn new(bytes: u64, calls: u64, evidence: Evidence) -> Self {
        Self {
            bytes,
            calls,
            evidence,
            derived_bytes: None,
            copied_at_transmit_bytes: None,
            outcome_unknown_bytes: None,
        }
    }
}

/// One direction of CPU copies: totals, the sources that cover it, and a breakdown by the
/// kind of memory at the other end.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CopyCell {
    /// The bytes of the ends that were measured (see `unmeasured_ends`).
    pub bytes: u64,
    pub calls: u64,
    pub evidence: Evidence,
    pub by_end: BTreeMap<&'static str, Part>,
    /// Ends whose copies no attached probe could count and no rule derives (socket ->
    /// user without the skb:skb_copy_datagram_iovec tracepoint): not in `by_end`, not in
    /// `bytes`; tables show the cell as n/a.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unmeasured_ends: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CpuCopy {
    pub to_user: CopyCell,
    pub from_user: CopyCell,
    pub kernel: CopyCell,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ZeroCopy {
    /// Bytes that reached their destination without a CPU copy (moves into intermediate
    /// pipes are in `by_kind` only, so a splice strategy is not counted twice).
    pub bytes: u64,
    pub evidence: Evidence,
    pub by_kind: BTreeMap<&'static str, Part>,
    /// Of `by_kind.splice_pages`, the bytes spliced into network sockets (TCP, UDP), whose
    /// packets reach a device: what is compared with the NIC's paged bytes to find copies at
    /// transmit (UNIX sockets' spliced pages never reach one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spliced_to_network_bytes: Option<u64>,
    /// What the row's sockets copied at transmit, decided socket by socket (bytes, and those
    /// sockets' packets): `None` when no packets could be seen. Reported through the
    /// correction it makes (`copied_at_transmit_bytes`), not as a field of its own.
    #[serde(skip)]
    pub transmit_copied: Option<(u64, u64)>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Dma {
    pub disk_read_bytes: Option<u64>,
    pub disk_write_bytes: Option<u64>,
    pub net_tx_linear_bytes: Option<u64>,
    pub net_tx_paged_bytes: Option<u64>,
    pub net_tx_frags: Option<u64>,
    pub net_tx_packets: Option<u64>,
    pub dma_api_maps: Option<u64>,
    pub direct_io_read_bytes: u64,
    pub direct_io_write_bytes: u64,
    pub evidence: DmaEvidence,
    /// Why the DMA-API mappings are counted without their bytes and direction, when they are
    /// (the tracepoints' arguments or `struct scatterlist` not found in BTF).
    pub dma_layout_error: Option<String>,
    /// Bytes of the DMA-API mappings made in this process's context, by direction
    /// (`dma:*` size and `dir`; `dma_map_sg` lists summed). `None` when not observable: no
    /// `dma:*` tracepoint, none fired system-wide, or their arguments unknown.
    pub dma_map_bytes_to_device: Option<u64>,
    pub dma_map_bytes_from_device: Option<u64>,
    pub dma_map_bytes_bidirectional: Option<u64>,
    /// Scatter-gather segments of those mappings (1 per single-buffer mapping).
    pub dma_map_segments: Option<u64>,
    /// How the DMA-API figures are attributed: `process context` for the fields above;
    /// `system_by_device` covers every mapping while the row's process was traced.
    pub dma_attribution: Option<String>,
    /// Every device's DMA-API mappings during the trace (the lab's time window, system-wide,
    /// whoever's context they were made in), by device; `None` when not collected or not
    /// observable.
    pub system_by_device: Option<BTreeMap<String, DeviceDma>>,
}

/// One device's DMA-API mappings during a trace, system-wide.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeviceDma {
    /// The bound driver (`e1000`, `nvme`) and the device's name (`0000:00:06.0`).
    pub driver: String,
    pub device: String,
    pub to_device_bytes: u64,
    pub to_device_maps: u64,
    pub from_device_bytes: u64,
    pub from_device_maps: u64,
    pub bidirectional_bytes: u64,
    pub segments: u64,
    /// The part of all directions' bytes mapped in a traced process's context.
    pub traced_context_bytes: u64,
    /// `dma_map_sg` lists too long to walk whole: their bytes are undercounted.
    pub sg_truncated: u64,
    /// Mappings that were whole scatterlists (`dma_map_sg`); the rest were single buffers
    /// (`dma_map_page`/`dma_map_phys`).
    pub sg_lists: u64,
}

impl DeviceDma {
    /// The report's key for a device: `driver device`, e.g. `e1000 0000:00:06.0`.
    pub fn key(&self) -> String {
        if self.driver.is_empty() { self.device.clone() } else { format!("{} {}", self.driver, self.device) }
    }
}

impl From<&zc_trace_common::DmaDevice> for DeviceDma {
    fn from(d: &zc_trace_common::DmaDevice) -> Self {
        let text =
            |b: &[u8]| String::from_utf8_lossy(&b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]).into_owned();
        DeviceDma {
            driver: text(&d.driver),
            device: text(&d.name),
            to_device_bytes: d.to_device.bytes,
            to_device_maps: d.to_device.calls,
            from_device_bytes: d.from_device.bytes,
            from_device_maps: d.from_device.calls,
            bidirectional_bytes: d.bidirectional.bytes,
            segments: d.segments,
            traced_context_bytes: d.traced_bytes,
            sg_truncated: d.sg_truncated,
            sg_lists: d.sg_lists,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct ContextSwitches {
    pub voluntary: u64,
    pub involuntary: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModeSwitchDetail {
    pub syscalls: u64,
    pub page_faults: Option<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub strategy: String,
    pub role: String,
    pub pid: u32,
    /// `trace --pidns`: the PID as the process's own namespace sees it (the one given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid_in_namespace: Option<u32>,
    pub comm: String,
    pub path: Option<String>,
    pub payload_bytes: u64,
    pub syscalls: u64,
    /// Syscalls' and user-mode faults' switches; `None` when the user-mode page-fault
    /// tracepoint is not attached (the faults' share is unknown, so the total is too).
    pub mode_switches: Option<u64>,
    pub mode_switch_detail: ModeSwitchDetail,
    /// User-mode plus kernel-mode faults on user memory; `page_fault_detail` splits them.
    pub page_faults: Option<u64>,
    pub page_fault_detail: Option<BTreeMap<&'static str, u64>>,
    pub context_switches: Option<ContextSwitches>,
    pub cpu_copy: CpuCopy,
    pub zero_copy: ZeroCopy,
    pub dma: Dma,
    /// Bytes the process's data syscalls returned that no rule could attribute.
    pub unclassified_bytes: u64,
    pub copies_per_payload_byte: Option<f64>,
    /// What the process did, by op class: syscalls and payload per class.
    pub by_class: BTreeMap<&'static str, ClassSummary>,
    /// Every syscall the process made, by name (raw_tracepoint:sys_enter).
    pub syscall_counts: BTreeMap<String, u64>,
    /// Lab runs: payload / wall time of the workload's copy loop.
    pub elapsed_s: Option<f64>,
    pub throughput_bytes_per_s: Option<f64>,
    /// MSG_ZEROCOPY completions as the kernel reported them to the workload (error queue,
    /// `SO_EE_CODE_ZEROCOPY_COPIED` = the kernel copied after all).
    pub msg_zerocopy_completions: Option<ZerocopyCompletions>,
    /// What moved where: bytes by strategy and source kind -> destination kind (and by fd
    /// with `trace --by fd`), largest first.
    pub flows: Vec<FlowRow>,
    /// The process's cgroup (v2) and what its path says about containers and pods; `None`
    /// where not recorded (the lab's own workloads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<CgroupInfo>,
}

/// A cgroup v2 and the container and pod its path names.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct CgroupInfo {
    /// The cgroup id (its directory's inode number in cgroupfs), recorded in the kernel.
    pub id: u64,
    /// Relative to the v2 hierarchy's root; `None` when the cgroup is gone or unknown.
    pub path: Option<String>,
    /// A container runtime's id (64 hex digits) or an nspawn machine's name, and the runtime:
    /// `docker`, `containerd`, `cri-o`, `podman`, `cri`, `systemd-nspawn`.
    pub container_id: Option<String>,
    pub runtime: Option<&'static str>,
    /// A Kubernetes pod's UID and QoS class (`guaranteed`, `burstable`, `besteffort`).
    pub pod_uid: Option<String>,
    pub qos: Option<&'static str>,
    /// Why there is no path: `no cgroup v2 hierarchy on this host`, `not recorded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ClassSummary {
    pub syscalls: u64,
    pub payload_out: u64,
    pub payload_in: u64,
}

/// Which side of a transfer a process is: a sender's payload is what it delivered, a
/// receiver's what it read; a traced process takes whichever is larger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Sender,
    Receiver,
    Process,
    Thread,
    /// `trace --by cgroup|container`: the processes of a cgroup or a container, summed.
    Cgroup,
    Container,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Sender => "sender",
            Role::Receiver => "receiver",
            Role::Process => "process",
            Role::Thread => "thread",
            Role::Cgroup => "cgroup",
            Role::Container => "container",
        }
    }
}

/// MSG_ZEROCOPY notifications, as the kernel reported them on the error queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ZerocopyCompletions {
    /// send() calls the kernel has released the pages of.
    pub completed: u64,
    /// ... of which it had to copy after all (SO_EE_CODE_ZEROCOPY_COPIED).
    pub copied: u64,
}

/// What one flow moved: bytes by strategy and source kind -> destination kind (built by
/// `attribute::flows`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FlowRow {
    pub strategy: &'static str,
    /// The syscall class that moved the bytes (read, write, sendfile, ...).
    pub syscall: &'static str,
    pub source: String,
    pub destination: String,
    pub calls: u64,
    pub bytes: u64,
    /// `--by fd`: the fds and what they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd_in: Option<FdInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd_out: Option<FdInfo>,
    pub evidence: &'static str,
}

impl FlowRow {
    /// How reports name a flow: `read-write file -> tcp`.
    pub fn label(&self) -> String {
        flow_label(self.strategy, &self.source, &self.destination)
    }
}

/// A flow's name from its strategy and ends: `read-write file -> tcp` (flow rows, copy
/// stacks, advice).
pub fn flow_label(strategy: &str, source: &str, destination: &str) -> String {
    format!("{strategy} {source} -> {destination}")
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FdInfo {
    pub fd: i32,
    /// A file's path (walked up from its dentry by the kernel when the flow was first seen;
    /// /proc's when that walk was cut short) or a socket's `local -> peer` addresses.
    pub name: String,
    pub inode: u64,
}
