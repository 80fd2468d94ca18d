//! Reads the copy-stack maps (`--stacks`): the (process, stacks, flow) counters summed over
//! CPUs, and the stacks they name (user stacks by their address form's id, with the
//! build-id form the kernel took the first time each was seen). User stacks are build ids and file offsets; aya's
//! `StackTraceMap` refuses build-id maps (it would read their frames as addresses), so their
//! entries are looked up here with the `bpf(2)` syscall directly.
use std::{
    collections::{BTreeMap, BTreeSet},
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd},
};

use crate::model::stacks::UserFrame;
use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Map, PerCpuHashMap, StackTraceMap},
};
use zc_trace_common::{
    FlowValue, maps,
    stacks::{BUILD_ID_FRAME_SIZE, BUILD_ID_IP, BUILD_ID_VALID, NO_STACK, StackKey, USER_STACK_DEPTH},
};

/// What the copy-stack maps held at one moment.
#[derive(Debug, Default, Clone)]
pub struct CopyStacks {
    pub counts: BTreeMap<StackKey, FlowValue>,
    /// Stack id -> frames, innermost first.
    pub user: BTreeMap<i32, Vec<UserFrame>>,
    pub kernel: BTreeMap<i32, Vec<u64>>,
}

impl CopyStacks {
    /// The processes that have stacks.
    pub fn tgids(&self) -> BTreeSet<u32> {
        self.counts.keys().map(|k| k.tgid).collect()
    }
}

/// The thread groups in `COPY_STACKS` now (cheap: keys only), to snapshot their mappings
/// while they live.
pub fn tgids(ebpf: &Ebpf) -> anyhow::Result<BTreeSet<u32>> {
    let map: PerCpuHashMap<_, StackKey, FlowValue> = counts_map(ebpf)?;
    map.keys().map(|k| Ok(k.context("reading COPY_STACKS")?.tgid)).collect()
}

fn counts_map(ebpf: &Ebpf) -> anyhow::Result<PerCpuHashMap<&aya::maps::MapData, StackKey, FlowValue>> {
    Ok(PerCpuHashMap::try_from(ebpf.map(maps::COPY_STACKS).context("COPY_STACKS map missing")?)?)
}

/// Everything in the copy-stack maps.
pub fn read(ebpf: &Ebpf) -> anyhow::Result<CopyStacks> {
    let mut out = CopyStacks::default();
    for entry in counts_map(ebpf)?.iter() {
        let (key, per_cpu) = entry.context("reading COPY_STACKS")?;
        let total = out.counts.entry(key).or_default();
        for v in per_cpu.iter() {
            total.calls += v.calls;
            total.bytes += v.bytes;
        }
    }
    let kernel = StackTraceMap::try_from(ebpf.map(maps::KERNEL_STACKS).context("KERNEL_STACKS map missing")?)?;
    let raw = StackTraceMap::try_from(ebpf.map(maps::RAW_USER_STACKS).context("RAW_USER_STACKS map missing")?)?;
    let resolved: aya::maps::HashMap<_, i32, i32> =
        aya::maps::HashMap::try_from(ebpf.map(maps::BUILD_ID_STACKS).context("BUILD_ID_STACKS map missing")?)?;
    let Some(Map::StackTraceMap(user)) = ebpf.map(maps::USER_STACKS) else {
        anyhow::bail!("USER_STACKS map missing");
    };
    let user_fd = user.fd().as_fd();
    for key in out.counts.keys() {
        if key.user != NO_STACK && !out.user.contains_key(&key.user) {
            // The stack's build-id form where the kernel took one, else its addresses.
            let with_build_ids = match resolved.get(&key.user, 0) {
                Ok(id) if id != NO_STACK => user_stack(user_fd, id)?,
                _ => None,
            };
            let frames = match with_build_ids {
                Some(frames) => Some(frames),
                None => raw
                    .get(&(key.user as u32), 0)
                    .ok()
                    .map(|s| s.frames().iter().map(|f| UserFrame::Ip(f.ip)).collect()),
            };
            if let Some(frames) = frames {
                out.user.insert(key.user, frames);
            }
        }
        if key.kernel != NO_STACK
            && !out.kernel.contains_key(&key.kernel)
            && let Ok(stack) = kernel.get(&(key.kernel as u32), 0)
        {
            out.kernel.insert(key.kernel, stack.frames().iter().map(|f| f.ip).collect());
        }
    }
    Ok(out)
}

/// The frames of user stack `id`, innermost first (`None`: no such stack).
fn user_stack(fd: BorrowedFd, id: i32) -> anyhow::Result<Option<Vec<UserFrame>>> {
    let mut value = vec![0u8; USER_STACK_DEPTH * BUILD_ID_FRAME_SIZE];
    if !lookup(fd, &(id as u32).to_ne_bytes(), &mut value).context("reading USER_STACKS")? {
        return Ok(None);
    }
    Ok(Some(value.chunks_exact(BUILD_ID_FRAME_SIZE).map_while(decode_frame).collect()))
}

/// One `struct bpf_stack_build_id`: `s32 status; u8 build_id[20]; union { u64 offset; u64
/// ip; }` (the union at byte 24). An empty frame (status 0) ends the stack.
fn decode_frame(raw: &[u8]) -> Option<UserFrame> {
    let status = i32::from_ne_bytes(raw[0..4].try_into().ok()?);
    let word = u64::from_ne_bytes(raw[24..32].try_into().ok()?);
    match status {
        BUILD_ID_VALID => Some(UserFrame::BuildId { build_id: raw[4..24].try_into().ok()?, offset: word }),
        BUILD_ID_IP => Some(UserFrame::Ip(word)),
        _ => None,
    }
}

/// `BPF_MAP_LOOKUP_ELEM` of `key` into `value`; false when the key is absent.
fn lookup(fd: BorrowedFd, key: &[u8], value: &mut [u8]) -> std::io::Result<bool> {
    /// The part of `union bpf_attr` that the lookup uses.
    #[repr(C)]
    struct LookupAttr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
    let attr = LookupAttr {
        map_fd: fd.as_raw_fd() as u32,
        _pad: 0,
        key: key.as_ptr() as u64,
        value: value.as_mut_ptr() as u64,
        flags: 0,
    };
    // SAFETY: `attr` points at buffers of the map's key and value sizes, alive for the call.
    let ret = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_MAP_LOOKUP_ELEM, &attr as *const LookupAttr, size_of::<LookupAttr>())
    };
    if ret == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ENOENT) { Ok(false) } else { Err(err) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_decode_by_status_and_an_empty_one_ends_the_stack() {
        let mut raw = [0u8; 3 * BUILD_ID_FRAME_SIZE];
        raw[0..4].copy_from_slice(&BUILD_ID_VALID.to_ne_bytes());
        raw[4..24].copy_from_slice(&[7; 20]);
        raw[24..32].copy_from_slice(&0x1234u64.to_ne_bytes());
        raw[32..36].copy_from_slice(&BUILD_ID_IP.to_ne_bytes());
        raw[56..64].copy_from_slice(&0x7fff_0000u64.to_ne_bytes());
        let frames: Vec<_> = raw.chunks_exact(BUILD_ID_FRAME_SIZE).map_while(decode_frame).collect();
        assert_eq!(frames, vec![UserFrame::BuildId { build_id: [7; 20], offset: 0x1234 }, UserFrame::Ip(0x7fff_0000)]);
    }
}
