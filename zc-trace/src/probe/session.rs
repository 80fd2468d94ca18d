//! A tracing session: pick, per probe, the best attach kind the running kernel allows (or the
//! one forced by `--probe-tier`), load the counting programs with their settings, attach
//! them, and read what they counted. Dropping the session detaches and unloads everything.
use std::collections::BTreeMap;

use anyhow::Context as _;
use aya::{
    Btf, Ebpf,
    programs::{FExit, KProbe, Program, RawTracePoint},
};
use serde::Serialize;
use zc_trace_common::{DmaDevice, DmaLayout, IoUringOffsets, KernelOffsets, OpClass, Stats, StatsKey, maps};

use crate::{
    btf_offsets::KernelBtf,
    collect::{self, SyscallCounts},
    doctor,
    evidence::{Attach, Probe},
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
    /// How the function probe that observes each copy site is attached, by function name
    /// (absent = derived).
    pub functions: BTreeMap<&'static str, Attach>,
    /// Tracepoints that attached, by `category:name`.
    pub tracepoints: Vec<&'static str>,
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

/// How a session counts, beyond which processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub follow_forks: bool,
    pub by_thread: bool,
    /// Flows by fd, with the names of the files and sockets behind them.
    pub by_fd: bool,
    /// Capacity of the per-(process, class) counters; default `STATS_MAX_ENTRIES`.
    pub stats_entries: Option<u32>,
}

/// What a session needs from the kernel's BTF by way of btf-rs, read in one go so that btf-rs's
/// copy is gone before aya parses its own: a mapping that costs no RSS since Linux 6.16, but
/// a full parse (~40 MiB) on older kernels, whose sysfs cannot be mapped.
struct BtfFacts {
    offsets: KernelOffsets,
    /// Why fd classification is off, when it is.
    fd_error: Option<String>,
    io_uring: IoUringOffsets,
    dma_layout: DmaLayout,
    dma_layout_error: Option<String>,
    /// `dma:*` events not to attach: dma_map_resource shares dma_map_page's program, so it is
    /// attached only if its arguments sit where that program reads them.
    dma_mismatched: Vec<&'static str>,
    /// Function probes whose function the kernel does not have (renamed, inlined); none when
    /// BTF could not be read (then every probe is tried).
    absent_functions: Vec<&'static str>,
    /// The kernel has `do_tcp_sendpages` (before Linux 6.5).
    sendpage_kernel: bool,
}

impl BtfFacts {
    fn read() -> Self {
        let kernel_btf = KernelBtf::load_for(probes::FUNCTIONS.iter().map(|f| f.function));
        let (offsets, fd_error) = match kernel_btf.as_ref().map_err(|e| format!("{e:#}")).and_then(|b| {
            b.kernel_offsets().map_err(|e| format!("{e:#}"))
        }) {
            Ok(o) => (o, None),
            Err(e) => (KernelOffsets::default(), Some(e)),
        };
        let io_uring = kernel_btf.as_ref().ok().and_then(|b| b.io_uring_offsets().ok()).unwrap_or_default();
        let (dma_layout, dma_layout_error) = match kernel_btf.as_ref().map_err(|e| format!("{e:#}")).and_then(|b| {
            b.dma_layout().map_err(|e| format!("{e:#}"))
        }) {
            Ok(l) => (l, None),
            Err(e) => (DmaLayout::EMPTY, Some(e)),
        };
        let btf = kernel_btf.as_ref().ok();
        let dma_mismatched = match btf {
            Some(b) if dma_layout.valid == 1 => probes::DMA_TRACEPOINTS
                .iter()
                .copied()
                .filter(|&event| event != "dma_map_sg" && !b.dma_event_matches(event, &dma_layout))
                .collect(),
            _ => Vec::new(),
        };
        let absent_functions = btf
            .map(|b| probes::FUNCTIONS.iter().map(|f| f.function).filter(|&f| !b.has_function(f)).collect())
            .unwrap_or_default();
        let sendpage_kernel = btf.is_some_and(|b| b.has_function("do_tcp_sendpages"));
        Self { offsets, fd_error, io_uring, dma_layout, dma_layout_error, dma_mismatched, absent_functions, sendpage_kernel }
    }
}

pub struct Session {
    ebpf: Ebpf,
    probes: Vec<ProbeStatus>,
    evidence: Evidence,
    /// The one traced process whose syscall counts the kernel keeps in an array
    /// (`SYSCALL_COUNTS_ONE`), if that is the mode.
    single_tgid: Option<u32>,
}

impl Session {
    pub fn attach(filter: Filter, tier: Tier) -> anyhow::Result<Self> {
        Self::attach_with(filter, tier, Options::default())
    }

    pub fn attach_with(filter: Filter, tier: Tier, options: Options) -> anyhow::Result<Self> {
        let session = Self::load_and_attach(filter, tier, options);
        // The BTF parse and the objects' load data are free now.
        loader::release_free_heap();
        session
    }

    fn load_and_attach(filter: Filter, tier: Tier, options: Options) -> anyhow::Result<Self> {
        if options.follow_forks && !matches!(filter, Filter::Set(_)) {
            anyhow::bail!("following forks needs a set filter");
        }
        let facts = BtfFacts::read();
        let single_tgid = match &filter {
            Filter::Tgid(tgid) if !options.by_thread => Some(*tgid),
            _ => None,
        };
        let settings = Settings {
            filter,
            offsets: facts.offsets,
            syscall_table: syscall_table::build(),
            io_uring: facts.io_uring,
            dma_layout: facts.dma_layout,
            follow_forks: options.follow_forks,
            by_thread: options.by_thread,
            by_fd: options.by_fd,
            stats_entries: options.stats_entries.unwrap_or(zc_trace_common::STATS_MAX_ENTRIES),
        };
        // The loader points at these until it is dropped: declared before it, they outlive it.
        let constants = loader::Constants::new(&settings);
        // Initialised late on purpose: one loader serves every load, and it is created before
        // the session's BTF is parsed, so that its own parse is gone by then (see
        // `loader_without_btf`).
        #[allow(clippy::needless_late_init)]
        let btf: Option<Btf>;
        let mut loader = loader::loader_without_btf();
        btf = loader::parse_kernel_btf();
        loader.btf(btf.as_ref());

        // Function probes are tried in the loaded object; where one fails, the object is
        // loaded again without its `observed` bit so that the syscall-exit derivation counts
        // that path instead. Two passes at most in practice (host: all refused, then none).
        let mut failures: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        // A function this kernel does not have (renamed, inlined) is not tried at all.
        let in_kernel = |f: &&FunctionProbe| !facts.absent_functions.contains(&f.function);
        for f in probes::FUNCTIONS.iter().filter(|f| !in_kernel(f)) {
            failures.insert(f.function, vec!["not in this kernel's BTF (renamed, inlined or absent)".into()]);
        }
        // Which function-probe kinds this kernel allows at all, asked once with a do-nothing
        // program: a kernel that refuses fexit (lockdown) or has no kprobes then needs one
        // load of the counting object, not one more per refused kind.
        let mut doctor_obj = loader::load_doctor_with(&mut loader).ok();
        let refused = refused_kinds(doctor_obj.as_mut(), btf.as_ref(), tier);
        let usable = |f: &FunctionProbe| candidates(f, tier).iter().any(|(k, _)| !refused.contains_key(k.name()));
        for f in probes::FUNCTIONS.iter().filter(|f| in_kernel(f) && !candidates(f, tier).is_empty() && !usable(f)) {
            let reasons = candidates(f, tier).iter().map(|(k, _)| format!("{k}: {}", refused[k.name()])).collect();
            failures.insert(f.function, reasons);
        }
        let mut viable: Vec<&FunctionProbe> =
            probes::FUNCTIONS.iter().filter(|f| !candidates(f, tier).is_empty() && in_kernel(f) && usable(f)).collect();
        let dma_event_ok = |event: &str| !facts.dma_mismatched.contains(&event);
        for _pass in 0..loader::MAX_PROBE_LOADS {
            let mut observed = viable.iter().fold(0, |bits, f| bits | f.observed);
            // Pages spliced into TCP go through tcp_sendmsg_locked (MSG_SPLICE_PAGES) since
            // 6.5, through do_tcp_sendpages before: probing the former covers splices only
            // where the latter does not exist.
            if observed & zc_trace_common::observed::TCP_SEND != 0 && !facts.sendpage_kernel {
                observed |= zc_trace_common::observed::TCP_SPLICE;
            }
            let mut ebpf = loader::load_probes(&mut loader, &constants, observed)?;
            let mut probes = Vec::new();
            let mut evidence = Evidence {
                fd_classification_error: facts.fd_error.clone(),
                dma_layout_error: facts.dma_layout_error.clone(),
                ..Default::default()
            };
            attach_tracepoints(&mut ebpf, &mut probes, &mut evidence, &dma_event_ok)?;
            if options.by_fd {
                // After zc_sys_enter, which it follows on every syscall (flows.rs).
                attach_raw(ebpf.program_mut(FD_NAMES_PROGRAM), FD_NAMES_PROGRAM, "sys_enter").map_err(|e| {
                    Fatal::new(ExitKind::Kernel, format!("cannot attach the --by fd namer to raw_syscalls:sys_enter: {e}"))
                })?;
                probes.push(ProbeStatus::attached("raw_syscalls:sys_enter (fd names)", "raw_tracepoint"));
            }
            let mut failed = Vec::new();
            for f in &viable {
                match attach_function(&mut ebpf, btf.as_ref(), f, tier, &refused) {
                    Ok(kind) => {
                        evidence.functions.insert(f.function, kind);
                        probes.push(ProbeStatus::attached(f.function, kind.name()));
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
                    &candidates(f, Tier::Auto).iter().map(|(k, _)| k.name()).collect::<Vec<_>>().join("/"),
                    format!("{tried}; counted as {}", f.derived),
                ));
            }
            probes.extend(copy_primitive_status(doctor_obj.as_mut(), btf.as_ref(), &refused));
            probes.push(match &evidence.fd_classification_error {
                None => ProbeStatus::attached("fd classification (struct offsets)", "btf"),
                Some(e) => ProbeStatus::unavailable("fd classification (struct offsets)", "btf", e.clone()),
            });
            return Ok(Self { ebpf, probes, evidence, single_tgid });
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
        Ok(self.syscalls()?.remove(&tgid).unwrap_or_default())
    }

    pub fn syscalls(&self) -> anyhow::Result<BTreeMap<u32, SyscallCounts>> {
        collect::syscall_counts(&self.ebpf, self.single_tgid)
    }

    /// Bytes by flow (process, class, source kind -> destination kind, fds with `--by fd`),
    /// and what the files behind the fds were.
    pub fn flows(&self) -> anyhow::Result<collect::Flows> {
        collect::flows(&self.ebpf)
    }

    /// Everything counted, by thread group and op class, summed over CPUs.
    pub fn stats(&self) -> anyhow::Result<BTreeMap<u32, BTreeMap<OpClass, Stats>>> {
        if let Some(tgid) = self.single_tgid {
            // One traced process: the kernel keeps its counters in an array by class.
            let map: aya::maps::PerCpuArray<_, Stats> =
                aya::maps::PerCpuArray::try_from(self.ebpf.map(maps::STATS_ONE).context("STATS_ONE map missing")?)?;
            let mut by_class = BTreeMap::new();
            for class in OpClass::ALL {
                let per_cpu = map.get(&(class as u32), 0).context("reading STATS_ONE")?;
                let mut total = Stats::default();
                for cpu in per_cpu.iter() {
                    collect::add_stats(&mut total, cpu);
                }
                if total != Stats::default() {
                    by_class.insert(class, total);
                }
            }
            let mut out = BTreeMap::new();
            if !by_class.is_empty() {
                out.insert(tgid, by_class);
            }
            return Ok(out);
        }
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
        // Its flows too, or a long system-wide session fills FLOWS with the dead.
        let mut flows: aya::maps::PerCpuHashMap<_, zc_trace_common::FlowKey, zc_trace_common::FlowValue> =
            aya::maps::PerCpuHashMap::try_from(self.ebpf.map_mut(maps::FLOWS).context("FLOWS map missing")?)?;
        let theirs: Vec<_> = flows.keys().filter_map(Result::ok).filter(|k| k.key == key).collect();
        for k in theirs {
            let _ = flows.remove(&k);
        }
        Ok(())
    }

    pub fn global_events(&self) -> anyhow::Result<collect::GlobalEvents> {
        collect::global_events(&self.ebpf)
    }

    /// Every device's DMA-API mappings since attach (system-wide), summed over CPUs.
    pub fn dma_devices(&self) -> anyhow::Result<Vec<DmaDevice>> {
        let map: aya::maps::PerCpuHashMap<_, u64, DmaDevice> = aya::maps::PerCpuHashMap::try_from(
            self.ebpf.map(maps::DMA_DEVICES).context("DMA_DEVICES map missing")?,
        )?;
        let mut out = Vec::new();
        for entry in map.iter() {
            let (_, per_cpu) = entry.context("reading DMA_DEVICES")?;
            out.push(sum_dma_device(per_cpu.iter()));
        }
        Ok(out)
    }

    pub fn program_costs(&self) -> Vec<collect::ProgramCost> {
        collect::program_costs(&self.ebpf)
    }

    pub fn drops(&self) -> anyhow::Result<Drops> {
        Ok(Drops::new(collect::drops(&self.ebpf)?))
    }
}

/// One device's per-CPU values summed; the names are those of whichever CPU saw it first.
fn sum_dma_device<'a>(per_cpu: impl Iterator<Item = &'a DmaDevice>) -> DmaDevice {
    let mut total = DmaDevice::ZERO;
    for cpu in per_cpu {
        if total.driver[0] == 0 && total.name[0] == 0 {
            (total.driver, total.name) = (cpu.driver, cpu.name);
        }
        for (t, c) in [
            (&mut total.to_device, &cpu.to_device),
            (&mut total.from_device, &cpu.from_device),
            (&mut total.bidirectional, &cpu.bidirectional),
        ] {
            t.bytes += c.bytes;
            t.calls += c.calls;
        }
        total.segments += cpu.segments;
        total.traced_bytes += cpu.traced_bytes;
        total.sg_truncated += cpu.sg_truncated;
        total.sg_lists += cpu.sg_lists;
    }
    total
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
fn candidates(f: &FunctionProbe, tier: Tier) -> Vec<(Attach, &'static str)> {
    let fexit = (Attach::Fexit, f.fexit);
    let kret = f.kretprobe.map(|p| (Attach::Kretprobe, p));
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
    refused: &BTreeMap<&'static str, String>,
) -> Result<Attach, Vec<String>> {
    let mut reasons = Vec::new();
    for (kind, program) in candidates(f, tier) {
        if let Some(why) = refused.get(kind.name()) {
            reasons.push(format!("{kind}: {why}"));
            continue;
        }
        let result = match kind {
            Attach::Fexit => match btf {
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

fn attach_tracepoints(
    ebpf: &mut Ebpf,
    probes: &mut Vec<ProbeStatus>,
    evidence: &mut Evidence,
    dma_event_ok: &dyn Fn(&str) -> bool,
) -> anyhow::Result<()> {
    // The verifier takes longer over dma_map_sg's program (it walks the scatterlist: ~30 ms on
    // 6.18) than over all the others together, so it is loaded on a second thread while the
    // tracepoints below load here. A failure there is met again, and reported, further down.
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let mut programs: BTreeMap<&str, &mut Program> = ebpf.programs_mut().collect();
        if let Some(sg) = programs.remove(DMA_SG_PROGRAM) {
            scope.spawn(move || {
                if let Ok(prog) = <&mut RawTracePoint>::try_from(sg) {
                    let _ = prog.load();
                }
            });
        }
        for tp in probes::TRACEPOINTS {
            let (_, event) = tp.name.split_once(':').unwrap_or(("", tp.name));
            match attach_raw(programs.get_mut(tp.program).map(|p| &mut **p), tp.program, event) {
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
        Ok(())
    })?;
    // dma_map_sg has a program of its own (it walks the scatterlist); the single-buffer
    // events share one. Each program is loaded once, on the first event this kernel has.
    let mut loaded: Vec<&str> = Vec::new();
    for event in probes::DMA_TRACEPOINTS {
        let name = format!("dma:{event}");
        if !dma_event_ok(event) {
            let why = "its arguments are not where dma_map_page's are (BTF): not attached";
            probes.push(ProbeStatus::unavailable(&name, "raw_tracepoint", why.to_string()));
            continue;
        }
        let program = if *event == "dma_map_sg" { DMA_SG_PROGRAM } else { probes::DMA_PROGRAM };
        let prog: &mut RawTracePoint = ebpf.program_mut(program).context("dma program missing")?.try_into()?;
        if !loaded.contains(&program) {
            let load = if prog.fd().is_ok() { Ok(()) } else { prog.load() }; // loaded ahead, above
            if let Err(e) = load {
                // The verifier's log says why a program was rejected: keep its last lines.
                let why = format!("loading {program}: {}{}", doctor::explain(&e, "raw_tracepoint"), verifier_tail(&e));
                probes.push(ProbeStatus::unavailable(&name, "raw_tracepoint", why));
                continue;
            }
            loaded.push(program);
        }
        match prog.attach(event) {
            Ok(_) => {
                probes.push(ProbeStatus::attached(&name, "raw_tracepoint"));
                evidence.dma.push(*event);
            }
            Err(e) => probes.push(ProbeStatus::unavailable(&name, "raw_tracepoint", no_such_tracepoint(&doctor::explain(&e, "raw_tracepoint")))),
        }
    }
    Ok(())
}

/// With `--by fd`: names the files behind fds (zc-trace-ebpf/src/probes/flows.rs).
const FD_NAMES_PROGRAM: &str = "zc_sys_enter_names";

/// The program for `dma:dma_map_sg` (zc-trace-ebpf/src/probes/dma.rs).
const DMA_SG_PROGRAM: &str = "zc_dma_map_sg";

fn attach_raw(prog: Option<&mut Program>, program: &str, event: &str) -> Result<(), String> {
    let prog: &mut RawTracePoint = prog
        .ok_or_else(|| format!("program {program} missing"))?
        .try_into()
        .map_err(|e| format!("{e}"))?;
    prog.load().map_err(|e| format!("{}{}", doctor::explain(&e, "raw_tracepoint"), verifier_tail(&e)))?;
    prog.attach(event).map(drop).map_err(|e| no_such_tracepoint(&doctor::explain(&e, "raw_tracepoint")))
}

/// The verifier's last lines when it rejected a program: they say why.
fn verifier_tail(e: &aya::programs::ProgramError) -> String {
    match e {
        aya::programs::ProgramError::LoadError { verifier_log, .. } => {
            let text = verifier_log.to_string();
            let tail: Vec<&str> = text.lines().rev().take(12).collect();
            format!(" (verifier: {})", tail.into_iter().rev().collect::<Vec<_>>().join(" / "))
        }
        _ => String::new(),
    }
}

/// raw_tracepoint_open answers ENOENT for a tracepoint this kernel does not have.
fn no_such_tracepoint(reason: &str) -> String {
    if reason.contains("os error 2") { "no such tracepoint on this kernel".into() } else { reason.into() }
}

/// Kinds of function probe this kernel refuses, with the reason: fexit is tried once on
/// `vfs_read` (exists everywhere, not notrace); kprobes are refused when not built.
fn refused_kinds(doctor_obj: Option<&mut Ebpf>, btf: Option<&Btf>, tier: Tier) -> BTreeMap<&'static str, String> {
    let mut refused = BTreeMap::new();
    if matches!(tier, Tier::Auto | Tier::Fentry)
        && let Some(d) = doctor_obj
        && let Err(e) = doctor::try_function(d, btf, "fexit", "vfs_read")
    {
        refused.insert("fexit", e);
    }
    if !doctor::kprobes_built() {
        refused.insert("kretprobe", "kprobes not built into this kernel".to_string());
    }
    refused
}

/// `_copy_to_user`/`_copy_from_user`, tried with do-nothing programs on every run (kinds the
/// kernel refuses outright are reported with that refusal, without trying again).
fn copy_primitive_status(
    doctor_obj: Option<&mut Ebpf>,
    btf: Option<&Btf>,
    refused: &BTreeMap<&'static str, String>,
) -> Vec<ProbeStatus> {
    let Some(doctor_obj) = doctor_obj else {
        return probes::COPY_PRIMITIVES
            .iter()
            .map(|f| ProbeStatus::unavailable(f, "fentry/kprobe", "not tried: the test programs did not load"))
            .collect();
    };
    probes::COPY_PRIMITIVES
        .iter()
        .map(|f| {
            let mut reasons = Vec::new();
            for (kind, same_as) in [("fentry", "fexit"), ("kprobe", "kretprobe")] {
                if let Some(why) = refused.get(same_as) {
                    reasons.push(format!("{kind}: {why}"));
                    continue;
                }
                match doctor::try_function(doctor_obj, btf, kind, f) {
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
