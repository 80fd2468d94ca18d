//! A tracing session: pick, per probe, the best attach kind the running kernel allows (or the
//! one forced by `--probe-tier`), load the counting programs with their settings, attach
//! them, and read what they counted. Dropping the session detaches and unloads everything.
use std::collections::BTreeMap;

use anyhow::Context as _;
use aya::{
    Btf, Ebpf,
    programs::{FExit, KProbe, RawTracePoint},
};
use serde::Serialize;
use zc_trace_common::{KernelOffsets, OpClass, Stats, StatsKey, maps};

use crate::{
    btf_offsets::KernelBtf,
    collect::{self, SyscallCounts},
    doctor,
    exit::{ExitKind, Fatal},
    loader::{self, Filter, Settings},
    probes::{self, FunctionProbe},
    report::{Drops, ProbeStatus},
    syscall_table,
};

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

/// Where each kind of figure comes from on this run; attribution labels cells with it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evidence {
    /// Function probe that observes each copy site, by function name (absent = derived).
    pub functions: BTreeMap<&'static str, String>,
    /// Tracepoints that attached, by `category:name`.
    pub tracepoints: Vec<&'static str>,
    /// `dma:*` tracepoints that attached.
    pub dma: Vec<String>,
    /// Why fd classification is off, when it is (no BTF, an unknown struct layout).
    pub fd_classification_error: Option<String>,
}

impl Evidence {
    pub fn tracepoint(&self, name: &str) -> bool {
        self.tracepoints.contains(&name)
    }
    /// `fexit:filemap_read`, or the derived label when no function probe observes it.
    pub fn function_or(&self, function: &str, derived: &str) -> String {
        self.functions.get(function).cloned().unwrap_or_else(|| derived.to_string())
    }
}

/// How a session counts, beyond which processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub follow_forks: bool,
    pub by_thread: bool,
    /// Capacity of the per-(process, class) counters; default `STATS_MAX_ENTRIES`.
    pub stats_entries: Option<u32>,
}

pub struct Session {
    ebpf: Ebpf,
    probes: Vec<ProbeStatus>,
    evidence: Evidence,
}

impl Session {
    pub fn attach(filter: Filter, tier: Tier) -> anyhow::Result<Self> {
        Self::attach_with(filter, tier, Options::default())
    }

    pub fn attach_with(filter: Filter, tier: Tier, options: Options) -> anyhow::Result<Self> {
        if options.follow_forks && !matches!(filter, Filter::Set(_)) {
            anyhow::bail!("following forks needs a set filter");
        }
        let kernel_btf = KernelBtf::load();
        let (offsets, fd_error) = match kernel_btf.as_ref().map_err(|e| e.to_string()).and_then(|b| {
            b.kernel_offsets().map_err(|e| e.to_string())
        }) {
            Ok(o) => (o, None),
            Err(e) => (KernelOffsets::default(), Some(e)),
        };
        let io_uring = kernel_btf.as_ref().ok().and_then(|b| b.io_uring_offsets().ok()).unwrap_or_default();
        let btf = Btf::from_sys_fs().ok();
        let mut settings = Settings {
            filter,
            offsets,
            observed: 0,
            syscall_table: syscall_table::build(),
            io_uring,
            follow_forks: options.follow_forks,
            by_thread: options.by_thread,
            stats_entries: options.stats_entries.unwrap_or(zc_trace_common::STATS_MAX_ENTRIES),
        };

        // Function probes are tried in the loaded object; where one fails, the object is
        // loaded again without its `observed` bit so that the syscall-exit derivation counts
        // that path instead. Two passes at most in practice (host: all refused, then none).
        let mut failures: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        // A function this kernel does not have (renamed, inlined) is not tried at all.
        let in_kernel = |f: &&FunctionProbe| match kernel_btf.as_ref() {
            Ok(b) => b.has_function(f.function),
            Err(_) => true,
        };
        for f in probes::FUNCTIONS.iter().filter(|f| !in_kernel(f)) {
            failures.insert(f.function, vec!["not in this kernel's BTF (renamed, inlined or absent)".into()]);
        }
        let mut viable: Vec<&FunctionProbe> =
            probes::FUNCTIONS.iter().filter(|f| !candidates(f, tier).is_empty() && in_kernel(f)).collect();
        // Pages spliced into TCP go through tcp_sendmsg_locked (MSG_SPLICE_PAGES) since 6.5,
        // through do_tcp_sendpages before: probing the former covers splices only where the
        // latter does not exist.
        let sendpage_kernel = kernel_btf.as_ref().is_ok_and(|b| b.has_function("do_tcp_sendpages"));
        for _pass in 0..3 {
            settings.observed = viable.iter().fold(0, |bits, f| bits | f.observed);
            if settings.observed & zc_trace_common::observed::TCP_SEND != 0 && !sendpage_kernel {
                settings.observed |= zc_trace_common::observed::TCP_SPLICE;
            }
            let mut ebpf = loader::load_probes(&settings)?;
            let mut probes = Vec::new();
            let mut evidence = Evidence { fd_classification_error: fd_error.clone(), ..Default::default() };
            attach_tracepoints(&mut ebpf, &mut probes, &mut evidence)?;
            let mut failed = Vec::new();
            for f in &viable {
                match attach_function(&mut ebpf, btf.as_ref(), f, tier) {
                    Ok(kind) => {
                        evidence.functions.insert(f.function, format!("{kind}:{}", f.function));
                        probes.push(ProbeStatus::attached(f.function, kind));
                    }
                    Err(reasons) => {
                        failures.insert(f.function, reasons);
                        failed.push(f.function);
                    }
                }
            }
            if !failed.is_empty() {
                viable.retain(|f| !failed.contains(&f.function));
                continue; // reload: the derivation must cover what the probes could not
            }
            for f in probes::FUNCTIONS.iter().filter(|f| !evidence.functions.contains_key(f.function)) {
                let tried = failures.get(f.function).map(|r| r.join("; ")).unwrap_or_else(|| {
                    format!("not tried: --probe-tier {}", tier_name(tier))
                });
                probes.push(ProbeStatus::unavailable(
                    f.function,
                    &candidates(f, Tier::Auto).iter().map(|(k, _)| *k).collect::<Vec<_>>().join("/"),
                    format!("{tried}; counted as {}", f.derived),
                ));
            }
            probes.extend(copy_primitive_status());
            probes.push(match &evidence.fd_classification_error {
                None => ProbeStatus::attached("fd classification (struct offsets)", "btf"),
                Some(e) => ProbeStatus::unavailable("fd classification (struct offsets)", "btf", e.clone()),
            });
            return Ok(Self { ebpf, probes, evidence });
        }
        Err(Fatal::new(ExitKind::Kernel, "function probes kept failing to attach; try --probe-tier tracepoint").into())
    }

    pub fn probes(&self) -> &[ProbeStatus] {
        &self.probes
    }

    pub fn evidence(&self) -> &Evidence {
        &self.evidence
    }

    /// Syscall counts of one thread group so far.
    pub fn syscalls_of(&self, tgid: u32) -> anyhow::Result<SyscallCounts> {
        Ok(collect::syscall_counts(&self.ebpf)?.remove(&tgid).unwrap_or_default())
    }

    pub fn syscalls(&self) -> anyhow::Result<BTreeMap<u32, SyscallCounts>> {
        collect::syscall_counts(&self.ebpf)
    }

    /// Everything counted, by thread group and op class, summed over CPUs.
    pub fn stats(&self) -> anyhow::Result<BTreeMap<u32, BTreeMap<OpClass, Stats>>> {
        let map: aya::maps::PerCpuHashMap<_, StatsKey, Stats> =
            aya::maps::PerCpuHashMap::try_from(self.ebpf.map(maps::STATS).context("STATS map missing")?)?;
        let mut out: BTreeMap<u32, BTreeMap<OpClass, Stats>> = BTreeMap::new();
        for entry in map.iter() {
            let (key, per_cpu) = entry.context("reading STATS")?;
            let total = out.entry(key.tgid).or_default().entry(OpClass::from_u32(key.class)).or_default();
            for cpu in per_cpu.iter() {
                collect::add_stats(total, cpu);
            }
        }
        Ok(out)
    }

    /// Command names the kernel recorded, by counter key (process, or thread with by_thread).
    pub fn comms(&self) -> anyhow::Result<BTreeMap<u32, String>> {
        collect::comms(&self.ebpf)
    }

    /// Deletes a process's counters from the kernel maps (once they have been folded
    /// elsewhere): keeps long-running system-wide sessions from filling the maps.
    pub fn forget(&mut self, key: u32, nrs: impl IntoIterator<Item = u32>) -> anyhow::Result<()> {
        {
            let mut stats: aya::maps::PerCpuHashMap<_, StatsKey, Stats> =
                aya::maps::PerCpuHashMap::try_from(self.ebpf.map_mut(maps::STATS).context("STATS map missing")?)?;
            for class in OpClass::ALL {
                let _ = stats.remove(&StatsKey { tgid: key, class: class as u32 });
            }
        }
        let mut counts: aya::maps::PerCpuHashMap<_, zc_trace_common::SyscallKey, u64> =
            aya::maps::PerCpuHashMap::try_from(self.ebpf.map_mut(maps::SYSCALL_COUNTS).context("SYSCALL_COUNTS map missing")?)?;
        for nr in nrs {
            let _ = counts.remove(&zc_trace_common::SyscallKey { tgid: key, nr });
        }
        Ok(())
    }

    pub fn global_events(&self) -> anyhow::Result<collect::GlobalEvents> {
        collect::global_events(&self.ebpf)
    }

    pub fn drops(&self) -> anyhow::Result<Drops> {
        Ok(Drops::new(collect::drops(&self.ebpf)?))
    }
}

fn tier_name(tier: Tier) -> &'static str {
    match tier {
        Tier::Auto => "auto",
        Tier::Fentry => "fentry",
        Tier::Kprobe => "kprobe",
        Tier::Tracepoint => "tracepoint",
    }
}

/// (attach kind, program) pairs to try for a function probe, best first.
fn candidates(f: &FunctionProbe, tier: Tier) -> Vec<(&'static str, &'static str)> {
    let fexit = ("fexit", f.fexit);
    let kret = f.kretprobe.map(|p| ("kretprobe", p));
    match tier {
        Tier::Auto => std::iter::once(fexit).chain(kret).collect(),
        Tier::Fentry => vec![fexit],
        Tier::Kprobe => kret.into_iter().collect(),
        Tier::Tracepoint => vec![],
    }
}

fn attach_function(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    f: &FunctionProbe,
    tier: Tier,
) -> Result<&'static str, Vec<String>> {
    let mut reasons = Vec::new();
    for (kind, program) in candidates(f, tier) {
        let result = match kind {
            "fexit" => match btf {
                None => Err("no kernel BTF".to_string()),
                Some(btf) => (|| {
                    let p: &mut FExit = ebpf.program_mut(program).ok_or("program missing")?.try_into().map_err(|e| format!("{e}"))?;
                    p.load(f.function, btf).map_err(|e| doctor::explain(&e, "fexit"))?;
                    p.attach().map(drop).map_err(|e| doctor::explain(&e, "fexit"))
                })()
                .map_err(|e: String| e),
            },
            _ if !doctor::kprobes_built() => Err("kprobes not built into this kernel".to_string()),
            _ => (|| {
                let p: &mut KProbe = ebpf.program_mut(program).ok_or("program missing")?.try_into().map_err(|e| format!("{e}"))?;
                p.load().map_err(|e| doctor::explain(&e, "kretprobe"))?;
                p.attach(f.function, 0).map(drop).map_err(|e| doctor::explain(&e, "kretprobe"))
            })(),
        };
        match result {
            Ok(()) => return Ok(kind),
            Err(e) => reasons.push(format!("{kind}: {e}")),
        }
    }
    Err(reasons)
}

fn attach_tracepoints(ebpf: &mut Ebpf, probes: &mut Vec<ProbeStatus>, evidence: &mut Evidence) -> anyhow::Result<()> {
    for tp in probes::TRACEPOINTS {
        let (_, event) = tp.name.split_once(':').unwrap_or(("", tp.name));
        match attach_raw(ebpf, tp.program, event) {
            Ok(()) => {
                probes.push(ProbeStatus::attached(tp.name, "raw_tracepoint"));
                evidence.tracepoints.push(tp.name);
            }
            Err(e) if tp.required => {
                return Err(Fatal::new(ExitKind::Kernel, format!("cannot attach raw_tracepoint {}: {e}", tp.name)).into());
            }
            Err(e) => probes.push(ProbeStatus::unavailable(tp.name, "raw_tracepoint", e)),
        }
    }
    let mut loaded = false;
    for event in probes::DMA_TRACEPOINTS {
        let name = format!("dma:{event}");
        let prog: &mut RawTracePoint = ebpf.program_mut(probes::DMA_PROGRAM).context("dma program missing")?.try_into()?;
        if !loaded {
            prog.load().map_err(|e| Fatal::new(ExitKind::Kernel, format!("loading dma_map: {e}")))?;
            loaded = true;
        }
        match prog.attach(event) {
            Ok(_) => {
                probes.push(ProbeStatus::attached(&name, "raw_tracepoint"));
                evidence.dma.push(name);
            }
            Err(e) => probes.push(ProbeStatus::unavailable(&name, "raw_tracepoint", no_such_tracepoint(&doctor::explain(&e, "raw_tracepoint")))),
        }
    }
    Ok(())
}

fn attach_raw(ebpf: &mut Ebpf, program: &str, event: &str) -> Result<(), String> {
    let prog: &mut RawTracePoint = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("program {program} missing"))?
        .try_into()
        .map_err(|e| format!("{e}"))?;
    prog.load().map_err(|e| doctor::explain(&e, "raw_tracepoint"))?;
    prog.attach(event).map(drop).map_err(|e| no_such_tracepoint(&doctor::explain(&e, "raw_tracepoint")))
}

/// raw_tracepoint_open answers ENOENT for a tracepoint this kernel does not have.
fn no_such_tracepoint(reason: &str) -> String {
    if reason.contains("os error 2") { "no such tracepoint on this kernel".into() } else { reason.into() }
}

/// `_copy_to_user`/`_copy_from_user`, tried with do-nothing programs on every run.
fn copy_primitive_status() -> Vec<ProbeStatus> {
    let mut doctor_obj = match loader::load_doctor() {
        Ok(o) => o,
        Err(e) => {
            return probes::COPY_PRIMITIVES
                .iter()
                .map(|f| ProbeStatus::unavailable(f, "fentry/kprobe", format!("not tried: {e}")))
                .collect();
        }
    };
    let btf = Btf::from_sys_fs().ok();
    probes::COPY_PRIMITIVES
        .iter()
        .map(|f| {
            let mut reasons = Vec::new();
            for kind in ["fentry", "kprobe"] {
                match doctor::try_function(&mut doctor_obj, btf.as_ref(), kind, f) {
                    Ok(_) => return ProbeStatus::unavailable(f, kind, "attachable on this kernel, but not used: its callers are probed instead"),
                    Err(e) => reasons.push(format!("{kind}: {e}")),
                }
            }
            ProbeStatus::unavailable(f, "fentry/kprobe", format!("not traceable on this kernel ({})", reasons.join("; ")))
        })
        .collect()
}

/// The benchmark floor: one do-nothing program attached to every tracepoint the counting
/// programs use (those this kernel has). Detached when dropped.
pub fn attach_floor() -> anyhow::Result<Ebpf> {
    let mut ebpf = loader::load_doctor()?;
    let prog: &mut RawTracePoint = ebpf.program_mut("zc_floor").context("zc_floor missing")?.try_into()?;
    prog.load()?;
    let events = probes::TRACEPOINTS
        .iter()
        .map(|tp| tp.name.split_once(':').map_or(tp.name, |(_, e)| e))
        .chain(probes::DMA_TRACEPOINTS.iter().copied());
    for event in events {
        let _ = prog.attach(event); // a tracepoint this kernel lacks is not in the floor either
    }
    Ok(ebpf)
}
