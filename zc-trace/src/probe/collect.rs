//! Reads the in-kernel counters. Per-CPU values are summed here; nothing is counted per event
//! in user space.
use std::collections::BTreeMap;

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{PerCpuArray, PerCpuHashMap},
};
use zc_trace_common::{
    Comm, DropReason, FdIdentity, FdKey, FlowKey, FlowValue, GlobalEvent, OpClass, SockOwner, Stats, StatsKey,
    SyscallKey, Tally,
    flow::{FlowSlot, flow_untag},
    maps,
};

use crate::model::{report::GlobalEvents, run::MapOccupancy};

/// Syscall counts of one thread group: by syscall number when it is the one traced process,
/// else by bucket (`SyscallKey::bucket`: class, or calls that never return).
pub type SyscallCounts = BTreeMap<u32, u64>;

/// Sums `SYSCALL_COUNTS` over CPUs, grouped by thread group; with `single`, the one traced
/// process's counts are read from the `SYSCALL_COUNTS_ONE` array instead.
pub fn syscall_counts(ebpf: &Ebpf, single: Option<u32>) -> anyhow::Result<BTreeMap<u32, SyscallCounts>> {
    if let Some(tgid) = single {
        let map: PerCpuArray<_, u64> =
            PerCpuArray::try_from(ebpf.map(maps::SYSCALL_COUNTS_ONE).context("SYSCALL_COUNTS_ONE map missing")?)?;
        let mut counts = SyscallCounts::new();
        for (nr, per_cpu) in map.iter().enumerate() {
            let calls: u64 = per_cpu.context("reading SYSCALL_COUNTS_ONE")?.iter().sum();
            if calls > 0 {
                counts.insert(nr as u32, calls);
            }
        }
        let mut out = BTreeMap::new();
        if !counts.is_empty() {
            out.insert(tgid, counts);
        }
        return Ok(out);
    }
    let map: PerCpuHashMap<_, SyscallKey, u64> =
        PerCpuHashMap::try_from(ebpf.map(maps::SYSCALL_COUNTS).context("SYSCALL_COUNTS map missing")?)?;
    let mut by_tgid: BTreeMap<u32, SyscallCounts> = BTreeMap::new();
    for entry in map.iter() {
        let (key, per_cpu) = entry.context("reading SYSCALL_COUNTS")?;
        let calls: u64 = per_cpu.iter().sum();
        *by_tgid.entry(key.tgid).or_default().entry(key.nr).or_default() += calls;
    }
    Ok(by_tgid)
}

/// The `FLOWS` map summed over CPUs, and the `FD_NAMES` map.
#[derive(Debug, Clone, Default)]
pub struct Flows {
    pub flows: BTreeMap<FlowKey, FlowValue>,
    pub names: BTreeMap<FdKey, FdIdentity>,
}

/// `single`: the one traced process whose flows the kernel counts in `FLOWS_ONE` slots too.
pub fn flows(ebpf: &Ebpf, single: Option<u32>) -> anyhow::Result<Flows> {
    let map: PerCpuHashMap<_, FlowKey, FlowValue> =
        PerCpuHashMap::try_from(ebpf.map(maps::FLOWS).context("FLOWS map missing")?)?;
    let mut out = Flows::default();
    if let Some(tgid) = single {
        let slots: PerCpuArray<_, FlowSlot> =
            PerCpuArray::try_from(ebpf.map(maps::FLOWS_ONE).context("FLOWS_ONE map missing")?)?;
        for per_cpu in slots.iter() {
            // Each CPU's slot holds whichever flow took it there first.
            for slot in per_cpu.context("reading FLOWS_ONE")?.iter() {
                let Some((class, src, dst, how)) = flow_untag(slot.tag) else { continue };
                let key = FlowKey { key: tgid, class, src, dst, how, fd_in: -1, fd_out: -1, ino_in: 0, ino_out: 0 };
                let total = out.flows.entry(key).or_default();
                total.calls += slot.calls;
                total.bytes += slot.bytes;
            }
        }
    }
    for entry in map.iter() {
        let (key, per_cpu) = entry.context("reading FLOWS")?;
        let total = out.flows.entry(key).or_default();
        for v in per_cpu.iter() {
            total.calls += v.calls;
            total.bytes += v.bytes;
        }
    }
    let names: aya::maps::HashMap<_, FdKey, FdIdentity> =
        aya::maps::HashMap::try_from(ebpf.map(maps::FD_NAMES).context("FD_NAMES map missing")?)?;
    for entry in names.iter() {
        let (key, id) = entry.context("reading FD_NAMES")?;
        out.names.insert(key, id);
    }
    Ok(out)
}

/// Events that could not be counted, by reason (every reason listed, zeros included: a zero
/// here is a measurement, the counter exists and was read).
pub fn drops(ebpf: &Ebpf) -> anyhow::Result<BTreeMap<&'static str, u64>> {
    let map: PerCpuArray<_, u64> = PerCpuArray::try_from(ebpf.map(maps::DROPS).context("DROPS map missing")?)?;
    DropReason::ALL
        .iter()
        .map(|&reason| {
            let per_cpu = map.get(&(reason as u32), 0).context("reading DROPS")?;
            Ok((reason.name(), per_cpu.iter().sum()))
        })
        .collect()
}

/// Adds one CPU's `Stats` into a total, field by field.
pub fn add_stats(total: &mut Stats, cpu: &Stats) {
    // `Stats` is `#[repr(C)]` and made only of u64s (Tally is two u64s): view both as u64
    // slices instead of listing forty fields by hand.
    const WORDS: usize = std::mem::size_of::<Stats>() / 8;
    const _: () = assert!(std::mem::size_of::<Stats>().is_multiple_of(8));
    // SAFETY: same type, properly aligned, every bit pattern is a valid u64.
    let total = unsafe { std::slice::from_raw_parts_mut((total as *mut Stats).cast::<u64>(), WORDS) };
    let cpu = unsafe { std::slice::from_raw_parts((cpu as *const Stats).cast::<u64>(), WORDS) };
    for (t, c) in total.iter_mut().zip(cpu) {
        *t += c;
    }
}

/// The `COMMS` map: counter key -> command name.
pub fn comms(ebpf: &Ebpf) -> anyhow::Result<BTreeMap<u32, String>> {
    let map: aya::maps::HashMap<_, u32, [u8; 16]> =
        aya::maps::HashMap::try_from(ebpf.map(maps::COMMS).context("COMMS map missing")?)?;
    let mut out = BTreeMap::new();
    for entry in map.iter() {
        let (key, comm) = entry.context("reading COMMS")?;
        let len = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
        out.insert(key, String::from_utf8_lossy(&comm[..len]).into_owned());
    }
    Ok(out)
}

/// The `CGROUPS` map: counter key -> cgroup v2 id.
pub fn cgroups(ebpf: &Ebpf) -> anyhow::Result<BTreeMap<u32, u64>> {
    let map: aya::maps::HashMap<_, u32, u64> =
        aya::maps::HashMap::try_from(ebpf.map(maps::CGROUPS).context("CGROUPS map missing")?)?;
    map.iter().map(|entry| entry.context("reading CGROUPS")).collect()
}

/// Subtracts an earlier reading of the same counters (for per-interval figures).
pub fn sub_stats(total: &mut Stats, earlier: &Stats) {
    const WORDS: usize = std::mem::size_of::<Stats>() / 8;
    // SAFETY: as in add_stats.
    let total = unsafe { std::slice::from_raw_parts_mut((total as *mut Stats).cast::<u64>(), WORDS) };
    let earlier = unsafe { std::slice::from_raw_parts((earlier as *const Stats).cast::<u64>(), WORDS) };
    for (t, e) in total.iter_mut().zip(earlier) {
        *t = t.saturating_sub(*e);
    }
}

/// System-wide counters, by [`GlobalEvent`].
pub fn global_events(ebpf: &Ebpf) -> anyhow::Result<GlobalEvents> {
    let map: PerCpuArray<_, u64> =
        PerCpuArray::try_from(ebpf.map(maps::GLOBAL_EVENTS).context("GLOBAL_EVENTS map missing")?)?;
    let sum = |e: GlobalEvent| -> anyhow::Result<u64> {
        Ok(map.get(&(e as u32), 0).context("reading GLOBAL_EVENTS")?.iter().sum())
    };
    Ok(GlobalEvents {
        disk_read_bytes_unattributed: sum(GlobalEvent::DiskReadBytesUnattributed)?,
        disk_write_bytes_unattributed: sum(GlobalEvent::DiskWriteBytesUnattributed)?,
        dma_maps_system: sum(GlobalEvent::DmaMapsSystem)?,
        net_tx_packets_system: sum(GlobalEvent::NetTxPacketsSystem)?,
    })
}

/// What the sockets still open copied at transmit so far, by owner (counter key): bytes, and
/// those sockets' packets as calls. Closed sockets were credited in the kernel
/// (`Stats::transmit_copied`); these are added at the end of a trace, not per interval (an
/// open socket's figure can still shrink as its paged packets catch up).
pub fn open_sockets_copied(ebpf: &Ebpf) -> anyhow::Result<BTreeMap<u32, Tally>> {
    let map: aya::maps::HashMap<_, u64, SockOwner> =
        aya::maps::HashMap::try_from(ebpf.map(maps::SOCK_OWNER).context("SOCK_OWNER map missing")?)?;
    let mut out: BTreeMap<u32, Tally> = BTreeMap::new();
    for entry in map.iter() {
        let Ok((_, socket)) = entry else { continue }; // removed while we walked
        let copied = socket.transmit.copied();
        if copied > 0 {
            let t = out.entry(socket.owner).or_default();
            t.bytes += copied;
            t.calls += socket.transmit.packets;
        }
    }
    Ok(out)
}

/// Adds [`open_sockets_copied`] to the counters of owners that have counters.
pub fn add_open_sockets(stats: &mut BTreeMap<u32, BTreeMap<OpClass, Stats>>, copied: &BTreeMap<u32, Tally>) {
    for (owner, t) in copied {
        if let Some(classes) = stats.get_mut(owner) {
            let none = &mut classes.entry(OpClass::None).or_default().transmit_copied;
            none.bytes += t.bytes;
            none.calls += t.calls;
        }
    }
}

/// Traced processes that have exited since attach (a cheap read: one array slot).
pub fn processes_exited(ebpf: &Ebpf) -> anyhow::Result<u64> {
    let map: PerCpuArray<_, u64> =
        PerCpuArray::try_from(ebpf.map(maps::GLOBAL_EVENTS).context("GLOBAL_EVENTS map missing")?)?;
    Ok(map.get(&(GlobalEvent::ProcessesExited as u32), 0).context("reading GLOBAL_EVENTS")?.iter().sum())
}

/// The entries of the per-process hash maps (keys counted one by one: fine at their sizes)
/// and their capacity.
pub fn map_occupancy(ebpf: &Ebpf) -> anyhow::Result<Vec<MapOccupancy>> {
    fn occupancy<K: aya::Pod, V: aya::Pod>(
        ebpf: &Ebpf,
        name: &'static str,
        per_cpu: bool,
    ) -> anyhow::Result<MapOccupancy> {
        let map = ebpf.map(name).with_context(|| format!("{name} map missing"))?;
        let max_entries = match map {
            aya::maps::Map::HashMap(d) | aya::maps::Map::PerCpuHashMap(d) => d.info()?.max_entries(),
            _ => anyhow::bail!("{name} is not a hash map"),
        };
        let entries = if per_cpu {
            let m: PerCpuHashMap<_, K, V> = PerCpuHashMap::try_from(map)?;
            m.keys().filter(Result::is_ok).count()
        } else {
            let m: aya::maps::HashMap<_, K, V> = aya::maps::HashMap::try_from(map)?;
            m.keys().filter(Result::is_ok).count()
        };
        Ok(MapOccupancy { map: name, entries: entries as u64, max_entries })
    }
    Ok(vec![
        occupancy::<StatsKey, Stats>(ebpf, maps::STATS, false)?,
        occupancy::<SyscallKey, u64>(ebpf, maps::SYSCALL_COUNTS, true)?,
        occupancy::<FlowKey, FlowValue>(ebpf, maps::FLOWS, true)?,
        occupancy::<u32, Comm>(ebpf, maps::COMMS, false)?,
    ])
}

/// One loaded program's cost, from the kernel's BPF statistics (`--prog-stats`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProgramCost {
    pub name: String,
    pub runs: u64,
    pub run_time_ns: u64,
    pub mean_ns: Option<f64>,
    pub verified_insns: Option<u32>,
    pub jited_bytes: u32,
}

/// The cost of every program of `ebpf` that is loaded (run counts need statistics enabled).
pub fn program_costs(ebpf: &Ebpf) -> Vec<ProgramCost> {
    let mut out: Vec<ProgramCost> = ebpf
        .programs()
        .filter_map(|(name, p)| p.info().ok().map(|info| (name, info)))
        .map(|(name, info)| {
            let (runs, ns) = (info.run_count(), info.run_time().as_nanos() as u64);
            ProgramCost {
                name: name.to_string(),
                runs,
                run_time_ns: ns,
                mean_ns: (runs > 0).then(|| ns as f64 / runs as f64),
                verified_insns: info.verified_instruction_count(),
                jited_bytes: info.size_jitted(),
            }
        })
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.run_time_ns));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_add_field_by_field() {
        let mut total = Stats::default();
        let mut cpu = Stats { user_faults: 2, payload_in: 7, ..Default::default() };
        cpu.to_user[1].bytes = 100;
        cpu.to_user[1].calls = 1;
        add_stats(&mut total, &cpu);
        add_stats(&mut total, &cpu);
        assert_eq!(total.user_faults, 4);
        assert_eq!(total.payload_in, 14);
        assert_eq!(total.to_user[1].bytes, 200);
        assert_eq!(total.to_user[1].calls, 2);
    }
}
