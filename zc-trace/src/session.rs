//! A tracing session: the counting programs loaded with their settings and attached, the
//! status of every probe, and reads of what they counted. Dropping it detaches everything.
use anyhow::Context as _;
use aya::{Ebpf, programs::RawTracePoint};

use crate::{
    collect::{self, SyscallCounts},
    exit::{ExitKind, Fatal},
    loader::{self, Settings},
    report::{Drops, ProbeStatus},
};

pub struct Session {
    ebpf: Ebpf,
    probes: Vec<ProbeStatus>,
}

impl Session {
    pub fn attach(settings: Settings) -> anyhow::Result<Self> {
        let mut ebpf = loader::load_probes(settings)?;
        // raw_tracepoint: available on every kernel zc-trace supports, cheaper than the
        // `raw_syscalls:sys_enter` tracepoint (no trace-event record is built), and it needs
        // no tracefs. Without it nothing can be counted, so failing to attach it is fatal.
        let prog: &mut RawTracePoint =
            ebpf.program_mut("sys_enter").context("sys_enter program missing")?.try_into()?;
        prog.load().and_then(|()| prog.attach("sys_enter").map(drop)).map_err(|e| {
            Fatal::new(ExitKind::Kernel, format!("cannot attach raw_tracepoint sys_enter: {e}"))
        })?;
        let probes = vec![ProbeStatus::attached("sys_enter", "raw_tracepoint")];
        Ok(Self { ebpf, probes })
    }

    pub fn probes(&self) -> &[ProbeStatus] {
        &self.probes
    }

    /// Syscall counts of one thread group so far.
    pub fn syscalls_of(&self, tgid: u32) -> anyhow::Result<SyscallCounts> {
        Ok(collect::syscall_counts(&self.ebpf)?.remove(&tgid).unwrap_or_default())
    }

    pub fn drops(&self) -> anyhow::Result<Drops> {
        Ok(Drops::new(collect::drops(&self.ebpf)?))
    }
}
