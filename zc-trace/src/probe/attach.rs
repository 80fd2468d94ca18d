//! Attaching, probe by probe: the attach kinds a function probe may try at a tier, best first
//! (fexit, else kretprobe), the tracepoints and `dma:*` events, why a kind is refused here,
//! and the benchmark floor. `probe::session` drives it.
use std::collections::BTreeMap;

use anyhow::Context as _;
use aya::{
    Btf, Ebpf,
    programs::{
        FExit, KProbe, PerfEvent, Program, RawTracePoint,
        perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
    },
};

use crate::{
    model::{
        evidence::Attach,
        exit::{ExitKind, Fatal},
        run::{Evidence, ProbeState, ProbeStatus, Tier},
    },
    probe::{
        catalogue::{self, FunctionProbe},
        doctor, loader,
    },
};

/// (attach kind, program) pairs to try for a function probe, best first.
pub(super) fn candidates(f: &FunctionProbe, tier: Tier) -> Vec<(Attach, &'static str)> {
    let fexit = (Attach::Fexit, f.fexit);
    let kret = f.kretprobe.map(|p| (Attach::Kretprobe, p));
    match tier {
        Tier::Auto => std::iter::once(fexit).chain(kret).collect(),
        Tier::Fentry => vec![fexit],
        Tier::Kprobe => kret.into_iter().collect(),
        Tier::Tracepoint => vec![],
    }
}

pub(super) fn attach_function(
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
                    let p: &mut FExit =
                        ebpf.program_mut(program).ok_or("program missing")?.try_into().map_err(|e| format!("{e}"))?;
                    p.load(f.function, btf).map_err(|e| doctor::explain(&e, "fexit"))?;
                    p.attach().map(drop).map_err(|e| doctor::explain(&e, "fexit"))
                })()
                .map_err(|e: String| e),
            },
            _ if !doctor::kprobes_built() => Err("kprobes not built into this kernel".to_string()),
            _ => (|| {
                let p: &mut KProbe =
                    ebpf.program_mut(program).ok_or("program missing")?.try_into().map_err(|e| format!("{e}"))?;
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

/// arm64 (no page-fault tracepoints): the `page-faults` software perf event on every online
/// CPU, each fault sampled into the program that counts it. CPUs brought online later are
/// not covered. Elsewhere nothing is attached: the program reads arm64's context layout.
pub(super) fn attach_page_faults_perf(ebpf: &mut Ebpf, probes: &mut Vec<ProbeStatus>, evidence: &mut Evidence) {
    if !cfg!(target_arch = "aarch64") {
        return;
    }
    let attached = (|| -> anyhow::Result<()> {
        let name = catalogue::PAGE_FAULTS_PERF_PROGRAM;
        let prog: &mut PerfEvent =
            ebpf.program_mut(name).with_context(|| format!("{name} missing from the object"))?.try_into()?;
        prog.load()?;
        for cpu in aya::util::online_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))? {
            let scope = PerfEventScope::AllProcessesOneCpu { cpu };
            prog.attach(PerfEventConfig::Software(SoftwareEvent::PageFaults), scope, SamplePolicy::Period(1), false)
                .with_context(|| format!("perf_event_open on CPU {cpu}"))?;
        }
        Ok(())
    })();
    match attached {
        Ok(()) => {
            probes.push(ProbeStatus::attached(catalogue::PAGE_FAULTS_PERF, "perf_event"));
            evidence.page_faults_perf = true;
        }
        Err(e) => probes.push(ProbeStatus::unavailable(catalogue::PAGE_FAULTS_PERF, "perf_event", format!("{e:#}"))),
    }
}

/// What this kernel's BTF decided about the tracepoint programs.
pub(super) struct KernelChoices<'a> {
    /// Which `sched_switch` program its tracepoint takes.
    pub sched_switch: catalogue::SchedSwitch,
    /// Why io_uring completions cannot be attributed here, when they cannot: their programs
    /// are then not attached, and the probe list says why.
    pub io_uring_error: Option<&'a str>,
    /// BTF says the kernel has no `exceptions:page_fault_*` tracepoints (arm64): they are not
    /// tried, and the probe list says why. Unknown (no BTF): they are tried.
    pub no_page_fault_tracepoints: bool,
}

pub(super) fn attach_tracepoints(
    ebpf: &mut Ebpf,
    probes: &mut Vec<ProbeStatus>,
    evidence: &mut Evidence,
    dma_event_ok: &dyn Fn(&str) -> bool,
    choices: &KernelChoices,
) -> anyhow::Result<()> {
    let mut programs: BTreeMap<&str, &mut Program> = ebpf.programs_mut().collect();
    for tp in catalogue::TRACEPOINTS {
        if choices.no_page_fault_tracepoints && catalogue::is_page_fault_tracepoint(tp.name) {
            probes.push(ProbeStatus::unavailable(tp.name, "raw_tracepoint", catalogue::NO_PAGE_FAULT_TRACEPOINTS));
            continue;
        }
        if tp.event() == "io_uring_complete"
            && let Some(why) = choices.io_uring_error
        {
            probes.push(ProbeStatus::unavailable(tp.name, "raw_tracepoint", why.to_string()));
            continue;
        }
        // sched_switch's program is the one this kernel's tracepoint takes.
        let program =
            if tp.program == catalogue::SCHED_SWITCH_PROGRAM { choices.sched_switch.program() } else { Ok(tp.program) };
        let attached = program
            .map_err(str::to_string)
            .and_then(|program| attach_raw(programs.get_mut(program).map(|p| &mut **p), program, tp.event()));
        match attached {
            Ok(()) => {
                probes.push(ProbeStatus::attached(tp.name, "raw_tracepoint"));
                evidence.tracepoints.push(tp.name);
            }
            Err(e) if tp.required => {
                return Err(
                    Fatal::new(ExitKind::Kernel, format!("cannot attach raw_tracepoint {}: {e}", tp.name)).into()
                );
            }
            Err(e) => probes.push(ProbeStatus::unavailable(tp.name, "raw_tracepoint", e)),
        }
    }
    drop(programs);
    // dma_map_sg has a program of its own (it walks the scatterlist); the single-buffer
    // events share one. Each program is loaded once, on the first event this kernel has.
    let mut loaded: Vec<&str> = Vec::new();
    for event in catalogue::DMA_TRACEPOINTS {
        let name = format!("dma:{event}");
        if !dma_event_ok(event) {
            let why = "its arguments are not where dma_map_page's are (BTF): not attached";
            probes.push(ProbeStatus::unavailable(&name, "raw_tracepoint", why.to_string()));
            continue;
        }
        let program = if *event == "dma_map_sg" { DMA_SG_PROGRAM } else { catalogue::DMA_PROGRAM };
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
            Err(e) => probes.push(ProbeStatus::unavailable(
                &name,
                "raw_tracepoint",
                no_such_tracepoint(&doctor::explain(&e, "raw_tracepoint")),
            )),
        }
    }
    // With DMA events: interrupt context, so that mappings made there are not charged to the
    // task an interrupt landed on. Without it they would be (the report says it is missing).
    if !evidence.dma.is_empty() {
        for &(name, program) in catalogue::IRQ_TRACEPOINTS {
            let (_, event) = name.split_once(':').unwrap_or(("", name));
            let prog: &mut RawTracePoint = ebpf.program_mut(program).context("irq program missing")?.try_into()?;
            let load = if prog.fd().is_ok() { Ok(()) } else { prog.load() };
            let attached = load.map_err(|e| doctor::explain(&e, "raw_tracepoint")).and_then(|()| {
                prog.attach(event).map_err(|e| no_such_tracepoint(&doctor::explain(&e, "raw_tracepoint")))
            });
            match attached {
                Ok(_) => probes.push(ProbeStatus::attached(name, "raw_tracepoint")),
                Err(why) => probes.push(ProbeStatus::unavailable(name, "raw_tracepoint", why)),
            }
        }
    }
    Ok(())
}

/// A program that runs right after another on the same tracepoint and takes over from it
/// (attached later, so run later): what the first hands it in a per-CPU slot.
struct Follower {
    /// As the probe list names it.
    name: &'static str,
    program: &'static str,
    event: &'static str,
    /// The probe it follows, when that one is optional (absent: a required one, and failing
    /// to attach the follower is fatal, since the option was asked for).
    after: Option<&'static str>,
}

/// `--by fd`: names the files behind fds (zc-trace-ebpf/src/probes/flows.rs).
const FD_NAMER: Follower = Follower {
    name: "raw_syscalls:sys_enter (fd names)",
    program: "zc_sys_enter_names",
    event: "sys_enter",
    after: None,
};

/// `--stacks`: counts copy stacks of syscalls and io_uring completions
/// (zc-trace-ebpf/src/probes/stacks.rs).
const STACK_COUNTERS: [Follower; 2] = [
    Follower {
        name: "raw_syscalls:sys_exit (copy stacks)",
        program: "zc_sys_exit_stacks",
        event: "sys_exit",
        after: None,
    },
    Follower {
        name: "io_uring:io_uring_complete (copy stacks)",
        program: "zc_io_uring_stacks",
        event: "io_uring_complete",
        after: Some("io_uring:io_uring_complete"),
    },
];

/// Attaches the followers the options ask for, after the tracepoints they follow.
pub(super) fn attach_followers(
    ebpf: &mut Ebpf,
    by_fd: bool,
    stacks: bool,
    probes: &mut Vec<ProbeStatus>,
) -> anyhow::Result<()> {
    let wanted = by_fd.then_some(&FD_NAMER).into_iter().chain(STACK_COUNTERS.iter().filter(|_| stacks));
    for f in wanted {
        let followed =
            f.after.is_none_or(|after| probes.iter().any(|p| p.name == after && p.status == ProbeState::Attached));
        if !followed {
            let why = format!("{} is not attached", f.after.unwrap_or_default());
            probes.push(ProbeStatus::unavailable(f.name, "raw_tracepoint", why));
            continue;
        }
        match attach_raw(ebpf.program_mut(f.program), f.program, f.event) {
            Ok(()) => probes.push(ProbeStatus::attached(f.name, "raw_tracepoint")),
            Err(e) if f.after.is_none() => {
                return Err(Fatal::new(ExitKind::Kernel, format!("cannot attach {}: {e}", f.name)).into());
            }
            Err(e) => probes.push(ProbeStatus::unavailable(f.name, "raw_tracepoint", e)),
        }
    }
    Ok(())
}

/// The program for `dma:dma_map_sg` (zc-trace-ebpf/src/probes/dma.rs).
const DMA_SG_PROGRAM: &str = "zc_dma_map_sg";

fn attach_raw(prog: Option<&mut Program>, program: &str, event: &str) -> Result<(), String> {
    let prog: &mut RawTracePoint =
        prog.ok_or_else(|| format!("program {program} missing"))?.try_into().map_err(|e| format!("{e}"))?;
    // The heavy programs have been loaded ahead (`preload`).
    if prog.fd().is_err() {
        prog.load().map_err(|e| load_error(&e))?;
    }
    prog.attach(event).map(drop).map_err(|e| no_such_tracepoint(&doctor::explain(&e, "raw_tracepoint")))
}

/// The raw tracepoint programs the verifier takes longest over (measured on 6.18: tens of
/// ms each, the syscall exit's ~100 ms), in two groups of about equal verifying time.
const HEAVY: [&[&str]; 2] =
    [&[catalogue::SYS_EXIT_PROGRAM], &[catalogue::SYS_ENTER_PROGRAM, "zc_io_uring_complete", DMA_SG_PROGRAM]];

/// Loads (verifies) the heavy programs ahead of their attach, one group per thread: start-up
/// waits for the slower group instead of for all of them. Returns why each program that did
/// not load was refused; the attach steps meet the same programs loaded, or load them again
/// and report the error where it belongs.
pub(super) fn preload(ebpf: &mut Ebpf) -> BTreeMap<&'static str, String> {
    let mut programs: BTreeMap<&str, &mut Program> = ebpf.programs_mut().collect();
    let mut take = |names: &[&'static str]| -> Vec<(&'static str, &mut Program)> {
        names.iter().filter_map(|&name| programs.remove(name).map(|p| (name, p))).collect()
    };
    let (first, second) = (take(HEAVY[0]), take(HEAVY[1]));
    let load = |group: Vec<(&'static str, &mut Program)>| -> Vec<(&'static str, String)> {
        group
            .into_iter()
            .filter_map(|(name, prog)| {
                let prog: &mut RawTracePoint = prog.try_into().ok()?;
                prog.load().err().map(|e| (name, load_error(&e)))
            })
            .collect()
    };
    std::thread::scope(|scope| {
        let other = scope.spawn(|| load(first));
        let mut failed: BTreeMap<&'static str, String> = load(second).into_iter().collect();
        failed.extend(other.join().unwrap_or_default());
        failed
    })
}

/// Why a raw tracepoint program did not load, with the verifier's last lines.
pub(super) fn load_error(e: &aya::programs::ProgramError) -> String {
    format!("{}{}", doctor::explain(e, "raw_tracepoint"), verifier_tail(e))
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

/// Kinds of function probe this kernel refuses, with the reason: an fexit program for
/// `vfs_read` (exists everywhere, not notrace) is loaded once, not attached (see
/// `doctor::try_load_fexit`); kprobes are refused when not built.
pub(super) fn refused_kinds(
    doctor_obj: Option<&mut Ebpf>,
    btf: Option<&Btf>,
    tier: Tier,
) -> BTreeMap<&'static str, String> {
    let mut refused = BTreeMap::new();
    if matches!(tier, Tier::Auto | Tier::Fentry)
        && let Some(d) = doctor_obj
        && let Err(e) = doctor::try_load_fexit(d, btf, "vfs_read")
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
pub(super) fn copy_primitive_status(
    doctor_obj: Option<&mut Ebpf>,
    btf: Option<&Btf>,
    refused: &BTreeMap<&'static str, String>,
) -> Vec<ProbeStatus> {
    let Some(doctor_obj) = doctor_obj else {
        return catalogue::COPY_PRIMITIVES
            .iter()
            .map(|f| ProbeStatus::unavailable(f, "fentry/kprobe", "not tried: the test programs did not load"))
            .collect();
    };
    catalogue::COPY_PRIMITIVES
        .iter()
        .map(|f| {
            let mut reasons = Vec::new();
            for (kind, same_as) in [("fentry", "fexit"), ("kprobe", "kretprobe")] {
                if let Some(why) = refused.get(same_as) {
                    reasons.push(format!("{kind}: {why}"));
                    continue;
                }
                match doctor::try_function(doctor_obj, btf, kind, f) {
                    Ok(_) => {
                        return ProbeStatus::unavailable(
                            f,
                            kind,
                            "attachable on this kernel, but not used: its callers are probed instead",
                        );
                    }
                    Err(e) => reasons.push(format!("{kind}: {e}")),
                }
            }
            ProbeStatus::unavailable(
                f,
                "fentry/kprobe",
                format!("not traceable on this kernel ({})", reasons.join("; ")),
            )
        })
        .collect()
}

/// The benchmark floor: one do-nothing program attached to every tracepoint the counting
/// programs use (those this kernel has). Detached when dropped.
pub fn attach_floor() -> anyhow::Result<Ebpf> {
    let mut ebpf = loader::load_doctor()?;
    let prog: &mut RawTracePoint = ebpf.program_mut("zc_floor").context("zc_floor missing")?.try_into()?;
    prog.load()?;
    let events = catalogue::TRACEPOINTS
        .iter()
        .map(|tp| tp.event())
        .chain(catalogue::DMA_TRACEPOINTS.iter().copied())
        .chain(catalogue::IRQ_TRACEPOINTS.iter().map(|(name, _)| name.split_once(':').map_or(*name, |(_, e)| e)));
    for event in events {
        let _ = prog.attach(event); // a tracepoint this kernel lacks is not in the floor either
    }
    Ok(ebpf)
}
