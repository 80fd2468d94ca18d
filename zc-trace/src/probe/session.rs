//! A tracing session: pick, per probe, the best attach kind the running kernel allows (or the
//! one forced by `--probe-tier`), load the counting programs with their settings, attach
//! them, and read what they counted. Dropping the session detaches and unloads everything.
use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use aya::{Btf, Ebpf};
use zc_trace_common::{
    DmaDevice, DmaLayout, IoUringOffsets, KernelOffsets, OpClass, Stats, StatsKey, TypedLoads, maps,
    relay::RelaySettings,
};

use crate::{
    kernel::{btf::KernelBtf, syscall_table},
    model::{
        doctor::{Check, KernelFeatures},
        evidence::Attach,
        exit::{ExitKind, Fatal},
        report::GlobalEvents,
        run::{Drops, Evidence, KernelReads, MapOccupancy, ProbeStatus, Tier},
    },
    probe::{
        attach::{
            self, attach_followers, attach_function, attach_tracepoints, candidates, copy_primitive_status,
            refused_kinds,
        },
        catalogue::{self, FunctionProbe},
        collect::{self, SyscallCounts},
        loader::{self, Filter, Settings},
    },
};

/// How a session counts, beyond which processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub follow_forks: bool,
    pub by_thread: bool,
    /// Flows by fd, with the names of the files and sockets behind them.
    pub by_fd: bool,
    /// Syscalls counted by class (and whether they return), not by number: what a node agent
    /// needs, in a few entries per process instead of ~30.
    pub syscall_buckets: bool,
    /// Capacity of the per-(process, class) counters; default `STATS_MAX_ENTRIES`.
    pub stats_entries: Option<u32>,
    /// Pairing of sends with the receives that filled their buffers.
    pub relay: RelaySettings,
    /// How the syscall programs read kernel memory.
    pub kernel_reads: KernelReads,
    /// Count copy stacks (`--stacks`).
    pub stacks: bool,
}

/// What a session needs from the kernel's BTF by way of btf-rs, read in one go so that btf-rs's
/// copy is gone before aya parses its own: a mapping that costs no RSS since Linux 6.16, but
/// a full parse (~40 MiB) on older kernels, whose sysfs cannot be mapped.
struct BtfFacts {
    offsets: KernelOffsets,
    /// Why fd classification is off, when it is.
    fd_error: Option<String>,
    io_uring: IoUringOffsets,
    /// Why io_uring completions cannot be attributed on this kernel (its tracepoint is read
    /// by BTF), when they cannot.
    io_uring_error: Option<String>,
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
    /// What typed loads need and the `bpf_rdonly_cast` kfunc's BTF id, or why the kernel
    /// cannot have them.
    typed: Result<(TypedLoads, u32), String>,
    /// `offsetof(struct task_struct, pid)` (0: unknown): the programs take the current
    /// task's ids from it on either read path.
    task_pid: u32,
    /// The kernel has `bpf_get_current_task_btf` (5.11+).
    task_btf: bool,
    /// Hash maps must be preallocated (no `bpf_mem_alloc`: before 6.1, or BTF unreadable).
    preallocate_maps: bool,
    /// Which `sched_switch` program this kernel's tracepoint takes.
    sched_switch: catalogue::SchedSwitch,
    /// The kernel has the `exceptions:page_fault_*` tracepoints (x86); `None`: BTF unread.
    page_fault_tracepoints: Option<bool>,
    /// The function probes with the fexit program this kernel's prototypes take.
    functions: Vec<FunctionProbe>,
}

/// The probe-list names of the two ways the syscall programs read kernel memory.
pub const TYPED_LOADS: &str = "kernel reads: typed loads (bpf_rdonly_cast)";
pub const HELPER_READS: &str = "kernel reads: helper calls (bpf_probe_read_kernel)";

/// What the probe list says of the read path: typed loads, or helper reads and why not typed.
fn kernel_reads_status(typed_refusal: Option<&str>) -> Vec<ProbeStatus> {
    match typed_refusal {
        None => vec![ProbeStatus::attached(TYPED_LOADS, "kfunc")],
        Some(why) => {
            vec![ProbeStatus::attached(HELPER_READS, "helper"), ProbeStatus::unavailable(TYPED_LOADS, "kfunc", why)]
        }
    }
}

fn typed_refused(why: &str) -> Fatal {
    Fatal::new(ExitKind::Kernel, format!("--kernel-reads typed: {why}; use --kernel-reads auto or helper"))
}

/// For `doctor`, from one reading of the kernel's BTF: how the syscall programs read kernel
/// memory here ([`typed_loads_check`]) and the kernel facts that decide how the counting
/// programs are built ([`kernel_features`]).
pub fn doctor_checks() -> (Check, KernelFeatures) {
    let facts = BtfFacts::read();
    let (works, detail) = typed_loads_check(&facts);
    (Check { works, detail }, kernel_features(&facts))
}

/// Whether the syscall programs read kernel memory by typed loads on this kernel (they are
/// loaded with them to find out) and what was found.
fn typed_loads_check(facts: &BtfFacts) -> (bool, String) {
    if let Err(why) = &facts.typed {
        return (false, format!("typed loads unavailable: {why}"));
    }
    // What `trace -p` loads: relay pairing on, as by default, so that its code is verified too.
    let options = Options { relay: RelaySettings::DEFAULT, ..Options::default() };
    let settings = facts.settings(Filter::Tgid(std::process::id()), &options);
    let constants = loader::Constants::new(&settings);
    let mut loader = loader::loader_without_btf();
    match loader::load_probes(&mut loader, &constants, 0, true)
        .map_err(|e| format!("{e:#}"))
        .and_then(|mut ebpf| syscall_programs_refused(&attach::preload(&mut ebpf)).map_or(Ok(()), Err))
    {
        Ok(()) => (true, "bpf_rdonly_cast is in this kernel's BTF and the syscall programs verify with it".into()),
        Err(why) => (false, format!("typed loads refused: {why}")),
    }
}

/// The kernel facts that decide how the counting programs are built here.
fn kernel_features(facts: &BtfFacts) -> KernelFeatures {
    let check = |works: bool, detail: &str| Check { works, detail: detail.to_string() };
    KernelFeatures {
        task_btf: if facts.task_btf {
            check(true, "bpf_get_current_task_btf in this kernel's enum bpf_func_id: the fd-table walk is plain loads")
        } else {
            check(false, "no bpf_get_current_task_btf (it came in 5.11): the fd-table walk uses helper reads")
        },
        run_time_map_allocation: if facts.preallocate_maps {
            check(false, "no bpf_mem_alloc in BTF (before 6.1): every hash map is preallocated")
        } else {
            check(true, "bpf_mem_alloc in BTF: hash maps allocate entries as they are written")
        },
        sched_switch_prev_state: match facts.sched_switch.program() {
            Ok(program) => check(true, &format!("{} ({program})", facts.sched_switch.state_source())),
            Err(why) => check(false, why),
        },
        page_fault_tracepoints: match facts.page_fault_tracepoints {
            Some(true) => check(true, "exceptions:page_fault_user/kernel in BTF"),
            Some(false) if cfg!(target_arch = "aarch64") => check(
                false,
                &format!("{}: faults are counted by the page-faults perf event", catalogue::NO_PAGE_FAULT_TRACEPOINTS),
            ),
            Some(false) => {
                check(false, &format!("{}: page faults are not counted", catalogue::NO_PAGE_FAULT_TRACEPOINTS))
            }
            None => check(false, "kernel BTF unreadable: not known"),
        },
    }
}

/// Why the syscall programs (the ones with typed loads) did not load, if they did not: a
/// kernel whose verifier refuses typed loads says so here, with the verifier's last lines.
fn syscall_programs_refused(refused: &BTreeMap<&str, String>) -> Option<String> {
    [catalogue::SYS_ENTER_PROGRAM, catalogue::SYS_EXIT_PROGRAM]
        .iter()
        .find_map(|name| refused.get(name).map(|why| format!("the verifier refused {name}: {why}")))
}

impl BtfFacts {
    /// The load settings of a session counting `filter` with `options` on this kernel.
    fn settings(&self, filter: Filter, options: &Options) -> Settings {
        Settings {
            filter,
            offsets: self.offsets,
            syscall_table: syscall_table::build(),
            io_uring: self.io_uring,
            dma_layout: self.dma_layout,
            follow_forks: options.follow_forks,
            by_thread: options.by_thread,
            by_fd: options.by_fd,
            syscall_buckets: options.syscall_buckets,
            stats_entries: options.stats_entries.unwrap_or(zc_trace_common::STATS_MAX_ENTRIES),
            relay: options.relay,
            typed: self.typed.clone().ok(),
            task_pid: self.task_pid,
            stacks: options.stacks,
            task_btf: self.task_btf,
            preallocate_maps: self.preallocate_maps,
        }
    }

    fn read() -> Self {
        let kernel_btf =
            KernelBtf::load_for(catalogue::FUNCTIONS.iter().map(|f| f.function), catalogue::DMA_TRACEPOINTS);
        let (offsets, fd_error) = match kernel_btf
            .as_ref()
            .map_err(|e| format!("{e:#}"))
            .and_then(|b| b.kernel_offsets().map_err(|e| format!("{e:#}")))
        {
            Ok(o) => (o, None),
            Err(e) => (KernelOffsets::default(), Some(e)),
        };
        let (io_uring, io_uring_error) = match kernel_btf.as_ref().map(|b| b.io_uring_offsets()) {
            Ok(Ok(o)) => (o, None),
            Ok(Err(e)) => (IoUringOffsets::default(), Some(format!("{e:#}"))),
            Err(_) => (IoUringOffsets::default(), None),
        };
        let (dma_layout, dma_layout_error) = match kernel_btf
            .as_ref()
            .map_err(|e| format!("{e:#}"))
            .and_then(|b| b.dma_layout().map_err(|e| format!("{e:#}")))
        {
            Ok(l) => (l, None),
            Err(e) => (DmaLayout::EMPTY, Some(e)),
        };
        let btf = kernel_btf.as_ref().ok();
        let dma_mismatched = match btf {
            Some(b) if dma_layout.valid == 1 => catalogue::DMA_TRACEPOINTS
                .iter()
                .copied()
                .filter(|&event| event != "dma_map_sg" && !b.dma_event_matches(event, &dma_layout))
                .collect(),
            _ => Vec::new(),
        };
        let absent_functions = btf
            .map(|b| catalogue::FUNCTIONS.iter().map(|f| f.function).filter(|&f| !b.has_function(f)).collect())
            .unwrap_or_default();
        let sendpage_kernel = btf.is_some_and(|b| b.has_function("do_tcp_sendpages"));
        let typed = match &kernel_btf {
            Ok(b) if fd_error.is_none() => b.typed_loads().map_err(|e| format!("{e:#}")),
            Ok(_) => Err("no struct offsets (see fd classification)".to_string()),
            Err(e) => Err(format!("no kernel BTF: {e:#}")),
        };
        let task_pid =
            btf.filter(|_| fd_error.is_none()).and_then(|b| b.offset("task_struct", &["pid"]).ok()).unwrap_or(0);
        let sched_switch = catalogue::SchedSwitch::for_kernel(
            btf.map(|b| b.sched_switch_prev_state().is_some()),
            offsets.task_state != 0,
        );
        Self {
            task_btf: btf.is_some_and(|b| b.has_helper("get_current_task_btf")),
            preallocate_maps: !btf.is_some_and(|b| b.runtime_map_alloc()),
            sched_switch,
            page_fault_tracepoints: btf.map(|b| b.tracepoint_args("page_fault_user").is_some()),
            functions: catalogue::FUNCTIONS
                .iter()
                .map(|f| f.for_params(btf.and_then(|b| b.function_params(f.function))))
                .collect(),
            offsets,
            fd_error,
            io_uring,
            io_uring_error,
            dma_layout,
            dma_layout_error,
            dma_mismatched,
            absent_functions,
            sendpage_kernel,
            typed,
            task_pid,
        }
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
        let settings = facts.settings(filter, &options);
        // Typed loads unless asked not to or the kernel cannot (then why); a kernel whose
        // verifier refuses them anyway is found out by loading the syscall programs below.
        let mut typed_refusal: Option<String> = match (options.kernel_reads, &facts.typed) {
            (KernelReads::Helper, _) => Some("--kernel-reads helper".into()),
            (_, Ok(_)) => None,
            (KernelReads::Typed, Err(why)) => return Err(typed_refused(why).into()),
            (KernelReads::Auto, Err(why)) => Some(why.clone()),
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
        for f in facts.functions.iter().filter(|f| !in_kernel(f)) {
            failures.insert(f.function, vec!["not in this kernel's BTF (renamed, inlined or absent)".into()]);
        }
        // Which function-probe kinds this kernel allows at all, asked once with a do-nothing
        // program: a kernel that refuses fexit (lockdown) or has no kprobes then needs one
        // load of the counting object, not one more per refused kind.
        let mut doctor_obj = loader::load_doctor_with(&mut loader).ok();
        let refused = refused_kinds(doctor_obj.as_mut(), btf.as_ref(), tier);
        // A tier asked for by name never runs at another one while saying it is that tier:
        // a kernel that refuses its attach kind outright ends the run here.
        if let Some(kind) = forced_kind(tier)
            && let Some(why) = refused.get(kind.name())
        {
            return Err(forced_tier_refused(tier, kind, why).into());
        }
        let usable = |f: &FunctionProbe| candidates(f, tier).iter().any(|(k, _)| !refused.contains_key(k.name()));
        for f in facts.functions.iter().filter(|f| in_kernel(f) && !candidates(f, tier).is_empty() && !usable(f)) {
            let reasons = candidates(f, tier).iter().map(|(k, _)| format!("{k}: {}", refused[k.name()])).collect();
            failures.insert(f.function, reasons);
        }
        let mut viable: Vec<&FunctionProbe> =
            facts.functions.iter().filter(|f| !candidates(f, tier).is_empty() && in_kernel(f) && usable(f)).collect();
        let dma_event_ok = |event: &str| !facts.dma_mismatched.contains(&event);
        for _pass in 0..loader::MAX_PROBE_LOADS {
            let mut observed = viable.iter().fold(0, |bits, f| bits | f.observed);
            // Pages spliced into TCP go through tcp_sendmsg_locked (MSG_SPLICE_PAGES) since
            // 6.5, through do_tcp_sendpages before: probing the former covers splices only
            // where the latter does not exist.
            if observed & zc_trace_common::observed::TCP_SEND != 0 && !facts.sendpage_kernel {
                observed |= zc_trace_common::observed::TCP_SPLICE;
            }
            let typed = typed_refusal.is_none();
            let mut ebpf = loader::load_probes(&mut loader, &constants, observed, typed)?;
            let refused = attach::preload(&mut ebpf);
            if typed && let Some(why) = syscall_programs_refused(&refused) {
                if options.kernel_reads == KernelReads::Typed {
                    return Err(typed_refused(&why).into());
                }
                typed_refusal = Some(why);
                continue; // again, with helper reads
            }
            let mut probes = Vec::new();
            let mut evidence = Evidence {
                fd_classification_error: facts.fd_error.clone(),
                dma_layout_error: facts.dma_layout_error.clone(),
                ..Default::default()
            };
            let choices = attach::KernelChoices {
                sched_switch: facts.sched_switch,
                io_uring_error: facts.io_uring_error.as_deref(),
                no_page_fault_tracepoints: facts.page_fault_tracepoints == Some(false),
            };
            attach_tracepoints(&mut ebpf, &mut probes, &mut evidence, &dma_event_ok, &choices)?;
            if choices.no_page_fault_tracepoints {
                attach::attach_page_faults_perf(&mut ebpf, &mut probes, &mut evidence);
            }
            attach_followers(&mut ebpf, options.by_fd, options.stacks, &mut probes)?;
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
            // ... and one where not a single function probe attached at it either.
            if let Some(kind) = forced_kind(tier)
                && evidence.functions.is_empty()
            {
                let reasons = || failures.values().flatten();
                let why = reasons()
                    .find(|r| r.starts_with(kind.name()))
                    .or_else(|| reasons().next())
                    .map_or("no function probe to attach", |r| r.as_str());
                return Err(forced_tier_refused(tier, kind, why).into());
            }
            for f in facts.functions.iter().filter(|f| !evidence.functions.contains_key(f.function)) {
                let tried = failures
                    .get(f.function)
                    .map(|r| r.join("; "))
                    .unwrap_or_else(|| format!("not tried: --probe-tier {}", tier.name()));
                probes.push(ProbeStatus::unavailable(
                    f.function,
                    &candidates(f, Tier::Auto).iter().map(|(k, _)| k.name()).collect::<Vec<_>>().join("/"),
                    format!("{tried}; counted as {}", f.derived),
                ));
            }
            probes.extend(copy_primitive_status(doctor_obj.as_mut(), btf.as_ref(), &refused));
            probes.extend(kernel_reads_status(typed_refusal.as_deref()));
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
        collect::flows(&self.ebpf, self.single_tgid)
    }

    /// The copy stacks counted so far (`--stacks`).
    pub fn copy_stacks(&self) -> anyhow::Result<super::stack_maps::CopyStacks> {
        super::stack_maps::read(&self.ebpf)
    }

    /// The processes that have copy stacks so far (`--stacks`).
    pub fn stack_tgids(&self) -> anyhow::Result<std::collections::BTreeSet<u32>> {
        super::stack_maps::tgids(&self.ebpf)
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
        // Shared by the CPUs: one value per entry (see the kernel side's stats.rs).
        let map: aya::maps::HashMap<_, StatsKey, Stats> =
            aya::maps::HashMap::try_from(self.ebpf.map(maps::STATS).context("STATS map missing")?)?;
        let mut out: BTreeMap<u32, BTreeMap<OpClass, Stats>> = BTreeMap::new();
        for entry in map.iter() {
            let (key, value) = entry.context("reading STATS")?;
            let total = out.entry(key.tgid).or_default().entry(OpClass::from_u32(key.class)).or_default();
            collect::add_stats(total, &value);
        }
        Ok(out)
    }

    /// Command names the kernel recorded, by counter key (process, or thread with by_thread).
    pub fn comms(&self) -> anyhow::Result<BTreeMap<u32, String>> {
        collect::comms(&self.ebpf)
    }

    /// Counter key -> cgroup v2 id, recorded with the command names.
    pub fn cgroups(&self) -> anyhow::Result<BTreeMap<u32, u64>> {
        collect::cgroups(&self.ebpf)
    }

    /// Deletes exited processes' entries from the kernel maps (once they have been folded
    /// elsewhere): their counters, syscall counts, flows and command names. Keeps
    /// long-running system-wide sessions from filling the maps. Each map is scanned once for
    /// all of them: a scan per process made one scrape of a busy host take seconds.
    pub fn forget(&mut self, dead: &BTreeSet<u32>) -> anyhow::Result<()> {
        if dead.is_empty() {
            return Ok(());
        }
        {
            let mut stats: aya::maps::HashMap<_, StatsKey, Stats> =
                aya::maps::HashMap::try_from(self.ebpf.map_mut(maps::STATS).context("STATS map missing")?)?;
            for &key in dead {
                for class in OpClass::ALL {
                    let _ = stats.remove(&StatsKey { tgid: key, class: class as u32 });
                }
            }
        }
        {
            // Every entry of theirs, not only the numbers a snapshot saw: counts made between
            // the snapshot and now would stay behind.
            let mut counts: aya::maps::PerCpuHashMap<_, zc_trace_common::SyscallKey, u64> =
                aya::maps::PerCpuHashMap::try_from(
                    self.ebpf.map_mut(maps::SYSCALL_COUNTS).context("SYSCALL_COUNTS map missing")?,
                )?;
            let theirs: Vec<_> = counts.keys().filter_map(Result::ok).filter(|k| dead.contains(&k.tgid)).collect();
            for k in theirs {
                let _ = counts.remove(&k);
            }
        }
        {
            let mut flows: aya::maps::PerCpuHashMap<_, zc_trace_common::FlowKey, zc_trace_common::FlowValue> =
                aya::maps::PerCpuHashMap::try_from(self.ebpf.map_mut(maps::FLOWS).context("FLOWS map missing")?)?;
            let theirs: Vec<_> = flows.keys().filter_map(Result::ok).filter(|k| dead.contains(&k.key)).collect();
            for k in theirs {
                let _ = flows.remove(&k);
            }
        }
        let mut comms: aya::maps::HashMap<_, u32, zc_trace_common::Comm> =
            aya::maps::HashMap::try_from(self.ebpf.map_mut(maps::COMMS).context("COMMS map missing")?)?;
        for key in dead {
            let _ = comms.remove(key);
        }
        let mut cgroups: aya::maps::HashMap<_, u32, u64> =
            aya::maps::HashMap::try_from(self.ebpf.map_mut(maps::CGROUPS).context("CGROUPS map missing")?)?;
        for key in dead {
            let _ = cgroups.remove(key);
        }
        Ok(())
    }

    pub fn global_events(&self) -> anyhow::Result<GlobalEvents> {
        collect::global_events(&self.ebpf)
    }

    /// What open sockets copied at transmit so far, by owner ([`collect::open_sockets_copied`]).
    pub fn open_sockets_copied(&self) -> anyhow::Result<BTreeMap<u32, zc_trace_common::Tally>> {
        collect::open_sockets_copied(&self.ebpf)
    }

    /// Traced processes that have exited since attach.
    pub fn processes_exited(&self) -> anyhow::Result<u64> {
        collect::processes_exited(&self.ebpf)
    }

    /// Every device's DMA-API mappings since attach (system-wide), summed over CPUs.
    pub fn dma_devices(&self) -> anyhow::Result<Vec<DmaDevice>> {
        let map: aya::maps::PerCpuHashMap<_, u64, DmaDevice> =
            aya::maps::PerCpuHashMap::try_from(self.ebpf.map(maps::DMA_DEVICES).context("DMA_DEVICES map missing")?)?;
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

    /// How full the per-process maps are.
    pub fn map_occupancy(&self) -> anyhow::Result<Vec<MapOccupancy>> {
        collect::map_occupancy(&self.ebpf)
    }
}

/// The attach kind that `--probe-tier fentry` or `kprobe` stands for (none for auto, which
/// takes the best that works, and tracepoint, which attaches no function probe).
fn forced_kind(tier: Tier) -> Option<Attach> {
    match tier {
        Tier::Fentry => Some(Attach::Fexit),
        Tier::Kprobe => Some(Attach::Kretprobe),
        Tier::Auto | Tier::Tracepoint => None,
    }
}

/// Exit 5: the tier that was asked for cannot run on this kernel.
fn forced_tier_refused(tier: Tier, kind: Attach, why: &str) -> Fatal {
    let why = why.strip_prefix(&format!("{kind}: ")).unwrap_or(why);
    let why = why.strip_prefix("refused: ").unwrap_or(why);
    Fatal::new(
        ExitKind::Kernel,
        format!(
            "--probe-tier {} cannot run on this kernel: it refuses {kind} programs ({why}); use --probe-tier auto \
             (the best this kernel allows) or --probe-tier tracepoint",
            tier.name()
        ),
    )
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
