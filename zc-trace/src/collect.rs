//! Reads the in-kernel counters. Per-CPU values are summed here; nothing is counted per event
//! in user space.
use std::collections::BTreeMap;

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{PerCpuArray, PerCpuHashMap},
};
use zc_trace_common::{DropReason, SyscallKey, maps};

/// Syscall counts of one thread group, by syscall number.
pub type SyscallCounts = BTreeMap<u32, u64>;

/// Sums `SYSCALL_COUNTS` over CPUs, grouped by thread group.
pub fn syscall_counts(ebpf: &Ebpf) -> anyhow::Result<BTreeMap<u32, SyscallCounts>> {
    let map: PerCpuHashMap<_, SyscallKey, u64> = PerCpuHashMap::try_from(
        ebpf.map(maps::SYSCALL_COUNTS).context("SYSCALL_COUNTS map missing")?,
    )?;
    let mut by_tgid: BTreeMap<u32, SyscallCounts> = BTreeMap::new();
    for entry in map.iter() {
        let (key, per_cpu) = entry.context("reading SYSCALL_COUNTS")?;
        let calls: u64 = per_cpu.iter().sum();
        *by_tgid.entry(key.tgid).or_default().entry(key.nr).or_default() += calls;
    }
    Ok(by_tgid)
}

/// Events that could not be counted, by reason (every reason listed, zeros included: a zero
/// here is a measurement, the counter exists and was read).
pub fn drops(ebpf: &Ebpf) -> anyhow::Result<BTreeMap<&'static str, u64>> {
    let map: PerCpuArray<_, u64> =
        PerCpuArray::try_from(ebpf.map(maps::DROPS).context("DROPS map missing")?)?;
    DropReason::ALL
        .iter()
        .map(|&reason| {
            let per_cpu = map.get(&(reason as u32), 0).context("reading DROPS")?;
            Ok((reason.name(), per_cpu.iter().sum()))
        })
        .collect()
}
