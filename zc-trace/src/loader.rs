//! The eBPF objects built by `build.rs` and embedded in this binary, and how they are loaded.
use anyhow::Context as _;
use aya::{Ebpf, EbpfLoader};
use zc_trace_common::globals;

use crate::exit::{ExitKind, Fatal};

/// Counting programs (see `zc-trace-ebpf/src/probes`).
static PROBES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/zc-trace-probes"));
/// Do-nothing programs that `doctor` loads to find out what the kernel allows.
static DOCTOR: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/zc-trace-doctor"));

/// Settings the kernel programs read as constants; written before load, never after.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings {
    /// Only count this thread group; `None` counts every process.
    pub filter_tgid: Option<u32>,
}

fn embedded(bytes: &'static [u8]) -> Result<&'static [u8], Fatal> {
    if bytes.is_empty() {
        return Err(Fatal::new(
            ExitKind::Failure,
            "this zc-trace was built without its eBPF programs (bpf-linker was missing): \
             rebuild it with `cargo xtask build`",
        ));
    }
    Ok(bytes)
}

pub fn load_probes(settings: Settings) -> anyhow::Result<Ebpf> {
    raise_memlock_limit();
    let filter_tgid = settings.filter_tgid.unwrap_or(0);
    EbpfLoader::new()
        .override_global(globals::FILTER_TGID, &filter_tgid, true)
        .load(embedded(PROBES)?)
        .context("loading zc-trace's eBPF maps")
}

pub fn load_doctor() -> anyhow::Result<Ebpf> {
    raise_memlock_limit();
    Ebpf::load(embedded(DOCTOR)?).context("loading doctor's test programs")
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK (64 KiB by default), which is too
/// small for our maps; later kernels use memcg accounting and ignore it.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: valid pointer to a local struct. Failure is harmless on memcg kernels.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}
