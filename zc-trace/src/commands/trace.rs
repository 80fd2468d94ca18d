//! `zc-trace trace`: attribute live processes' copies, zero-copy moves, DMA and switches
//! (existing PIDs, or a command started held until every probe is attached), optionally
//! following their children, per process or per thread, per interval and in total.
use std::time::Instant;

use crate::{
    attribute::{self, flows},
    cli::{self, By, TraceArgs},
    kernel::{
        cgroups::{self, CgroupPaths},
        facts, pidns, privileges,
        symbols::{Symbols, resolve_command},
        target::{Ended, Target},
    },
    model::exit::Fatal,
    probe::{
        attach::attach_floor,
        collect,
        loader::Filter,
        session::{Options, Session},
    },
    render::{self, output},
};

use super::{
    Signals, Stop, advised,
    live::{Shape, Snapshot, build_report},
};
use crate::advise::cost::LoadedCostModel;

pub fn run(args: TraceArgs) -> anyhow::Result<i32> {
    if let Some(pid) = cli::first_repeated(&args.pids) {
        return Err(Fatal::usage(format!("-p names PID {pid} twice: give each PID once")).into());
    }
    let sink =
        output::Sink::choose(args.output.json.as_deref(), args.output.output.as_deref(), !args.command.is_empty())?;
    if args.pids.is_empty() && args.command.is_empty() && !args.all && args.cgroup.is_none() {
        return Err(
            Fatal::usage("nothing to trace: give -p PID[,PID...], -a, --cgroup PATH, or a command after `--`").into()
        );
    }
    let cgroup = args.cgroup.as_deref().map(cgroup_filter).transpose()?;
    for path in [&args.stacks.folded, &args.stacks.flamegraph].into_iter().flatten() {
        output::check_writable(path)?;
    }
    // Read before tracing: a --cost-model that is not one fails now, not after the trace.
    let model = if args.advise.advise { advised::cost_model(&args.advise)? } else { None };
    privileges::require_tracing()?;
    facts::require_host_pid_namespace()?;
    // Fork before anything else: while single-threaded, and before our private mount
    // namespace exists (the command keeps the system's).
    let mut targets: Vec<Target> = if args.all || cgroup.is_some() {
        Vec::new()
    } else if args.pids.is_empty() {
        vec![Target::spawn_held(&args.command)?]
    } else {
        let existing = |(pid, ns_pid): (u32, Option<u32>)| {
            Target::existing(pid).map(|mut t| {
                t.ns_pid = ns_pid;
                t
            })
        };
        host_pids(&args)?.into_iter().map(existing).collect::<Result<_, _>>()?
    };
    facts::prepare_pseudo_filesystems();
    super::runtime()?.block_on(trace(args, &mut targets, sink, model, cgroup))
}

/// The -p PIDs as host PIDs, each with the PID it was given as when `--pidns` names the
/// namespace it was given in.
fn host_pids(args: &TraceArgs) -> Result<Vec<(u32, Option<u32>)>, Fatal> {
    match &args.pidns {
        Some(ns) => args.pids.iter().map(|&inner| Ok((pidns::host_pid(ns, inner)?, Some(inner)))).collect(),
        None => Ok(args.pids.iter().map(|&pid| (pid, None)).collect()),
    }
}

/// `--cgroup PATH` as the kernel programs filter: the cgroup's id and depth.
pub(super) fn cgroup_filter(path: &std::path::Path) -> Result<Filter, Fatal> {
    let Some(root) = cgroups::v2_root() else {
        return Err(Fatal::usage("--cgroup needs a cgroup v2 hierarchy, and this host has none (cgroup v1 only)"));
    };
    let relative = path.strip_prefix(&root).unwrap_or(path);
    let level = relative.components().filter(|c| matches!(c, std::path::Component::Normal(_))).count() as u32;
    match CgroupPaths::id_of(path) {
        Some(id) => Ok(Filter::Cgroup { id, level }),
        None => Err(Fatal::usage(format!(
            "no cgroup `{}` under the v2 hierarchy at {}: give its path there, e.g. /system.slice/nginx.service",
            path.display(),
            root.display()
        ))),
    }
}

async fn trace(
    args: TraceArgs,
    targets: &mut [Target],
    sink: output::Sink,
    model: Option<LoadedCostModel>,
    cgroup: Option<Filter>,
) -> anyhow::Result<i32> {
    let pids: Vec<u32> = targets.iter().map(|t| t.pid).collect();
    let filter = match (cgroup, pids.as_slice()) {
        (Some(cgroup), _) => cgroup,
        _ if args.all => Filter::All,
        (None, [pid]) if !args.follow => Filter::Tgid(*pid),
        _ => Filter::Set(pids.clone()),
    };
    let options = Options {
        follow_forks: args.follow && !args.all && args.cgroup.is_none(),
        by_thread: args.by == By::Thread,
        by_fd: args.by == By::Fd,
        stats_entries: Some(args.session.map_entries),
        syscall_buckets: false,
        relay: args.session.relay.settings(),
        kernel_reads: args.kernel_reads,
        stacks: args.stacks.stacks,
    };
    // Signals first: a Ctrl-C that arrives the instant we are attached must still produce the
    // summary, not kill us with the default action.
    let mut signals = Signals::catch()?;
    // --prog-stats: the kernel keeps run-time statistics while this fd is open.
    let _stats = match &args.prog_stats {
        Some(path) => {
            output::check_writable(path)?;
            Some(
                aya::sys::enable_stats(aya::sys::Stats::RunTime)
                    .map_err(|e| anyhow::anyhow!("enabling BPF statistics: {e}"))?,
            )
        }
        None => None,
    };
    if args.floor {
        return floor(targets, &mut signals, args.prog_stats.as_deref()).await;
    }
    let session = Session::attach_with(filter, args.session.probe_tier, options)?;
    let whole_system = args.all || args.cgroup.is_some();
    let shape = Shape { by: args.by, tier: args.session.probe_tier, top: whole_system.then_some(args.top) };
    for t in targets.iter_mut() {
        t.release()?;
    }
    for t in targets.iter().filter(|t| t.has_ended()) {
        eprintln!(
            "zc-trace: PID {} ({}) ended before the probes were attached: nothing of it was traced",
            t.pid, t.comm
        );
    }
    let mut symbols = args.stacks.stacks.then(|| stack_symbols(&args.command, targets));
    let mut stack_ticker = symbols.is_some().then(|| tokio::time::interval(std::time::Duration::from_secs(1)));
    let names: Vec<String> = targets.iter().map(|t| format!("{} ({})", t.pid, t.comm)).collect();
    eprintln!(
        "zc-trace: attached; tracing {}{}. Ctrl-C to stop.",
        match &args.cgroup {
            Some(path) => format!("every process in cgroup {}", path.display()),
            None if args.all => "every process".to_string(),
            None => names.join(", "),
        },
        if args.follow { " and their children" } else { "" }
    );
    let started = Instant::now();
    let deadline = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut ticker = args.interval.map(|i| tokio::time::interval_at(tokio::time::Instant::now() + i, i));
    let mut previous = Snapshot::default();
    // --by fd: paths deeper than the kernel walks are read from /proc while the processes
    // still have the files open.
    let mut paths = flows::PathCache::default();
    let mut path_ticker = (args.by == By::Fd).then(|| tokio::time::interval(std::time::Duration::from_secs(1)));
    // Boxed so that it can be dropped, with its registration of the pidfds, before a spawned
    // command is waited for again below.
    let mut all_ended = Box::pin(all_ended(targets));
    let stop = loop {
        tokio::select! {
            status = &mut all_ended => break Stop::Ended(status?),
            () = &mut deadline => break Stop::Early(None),
            received = signals.recv() => break Stop::Early(Some(received?)),
            _ = async { path_ticker.as_mut().unwrap().tick().await }, if path_ticker.is_some() => {
                paths.refresh(&session.flows()?);
            }
            _ = async { stack_ticker.as_mut().unwrap().tick().await }, if stack_ticker.is_some() => {
                index_stack_processes(&session, symbols.as_mut())?;
            }
            _ = async { ticker.as_mut().unwrap().tick().await }, if ticker.is_some() => {
                let now = Snapshot::take(&session)?;
                paths.refresh(&now.flows);
                let delta = now.minus(&previous);
                let report = build_report(&shape, &session, &delta, started.elapsed().as_secs_f64(), targets, &paths)?;
                let table = format!(
                    "--- interval ending at {:.1} s\n{}",
                    started.elapsed().as_secs_f64(),
                    render::trace::render_rows(&report, args.raw)
                );
                // Beside a JSON report, the interval tables go to standard error.
                match args.output.json {
                    Some(_) => eprint!("{table}"),
                    None => sink.write_text(&table)?,
                }
                previous = now;
            }
        }
    };
    drop(all_ended);
    // The mappings of processes that have copy stacks, while they still exist.
    index_stack_processes(&session, symbols.as_mut())?;
    // A spawned command still running is signalled and waited for, still traced: its exit is
    // part of the summary, and its status is ours.
    let exit_status = stop_spawned(targets, stop, &mut signals).await?;
    let mut total = Snapshot::take(&session)?;
    // Sockets still open: what they copied at transmit so far (closed ones are in the stats).
    collect::add_open_sockets(&mut total.stats, &session.open_sockets_copied()?);
    paths.refresh(&total.flows);
    let mut report = build_report(&shape, &session, &total, started.elapsed().as_secs_f64(), targets, &paths)?;
    if let Some(symbols) = symbols.as_mut() {
        let comms = session.comms()?;
        let stacks = attribute::stacks::report(
            &session.copy_stacks()?,
            symbols,
            &comms,
            attribute::stacks::kernel_stack_sources(session.probes()),
        );
        render::flamegraph::write(&stacks, args.stacks.folded.as_deref(), args.stacks.flamegraph.as_deref())?;
        report.stacks = Some(stacks);
    }
    if let Some(path) = &args.prog_stats {
        output::write_json(path, &session.program_costs())?;
    }
    drop(session); // detach before printing
    let advice = args.advise.advise.then(|| advised::advise(&report, model.as_ref()));
    match (&args.output.json, &advice) {
        (Some(_), Some(advice)) => sink.write_json(&advised::Advised { report: &report, advice })?,
        (Some(_), None) => sink.write_json(&report)?,
        (None, _) => {
            let mut text = render::trace::render(&report, args.raw);
            if let Some(advice) = &advice {
                text += &advised::render_text(advice);
            }
            sink.write_text(&text)?
        }
    }
    Ok(exit_status.unwrap_or(0))
}

/// The symbolizer of a `--stacks` trace, with the spawned command's executable and libraries
/// (found from its name: it may exit before its mappings can be read) and the targets'
/// mappings indexed.
fn stack_symbols(command: &[String], targets: &[Target]) -> Symbols {
    let mut symbols = Symbols::new();
    if let Some(exe) = command.first().and_then(|program| resolve_command(program)) {
        symbols.index_command(&exe);
    }
    for t in targets {
        symbols.index_process(t.pid);
    }
    symbols
}

/// Indexes the files mapped by every process that has copy stacks so far.
fn index_stack_processes(session: &Session, symbols: Option<&mut Symbols>) -> anyhow::Result<()> {
    if let Some(symbols) = symbols {
        for tgid in session.stack_tgids()? {
            symbols.index_process(tgid);
        }
    }
    Ok(())
}

/// Resolves when every target has ended, with the exit status of the last command we spawned
/// (`-a` has no targets: never).
async fn all_ended(targets: &[Target]) -> anyhow::Result<Option<i32>> {
    if targets.is_empty() {
        std::future::pending::<()>().await; // -a: until -d or a signal
    }
    let mut status = None;
    for t in targets {
        if let Ended::Child(code) = t.ended().await? {
            status = Some(code);
        }
    }
    Ok(status)
}

/// After tracing stopped: the exit status of the command we spawned (signalled and waited for
/// when zc-trace stopped first), if any.
async fn stop_spawned(
    targets: &[Target],
    stop: Stop<Option<i32>>,
    signals: &mut Signals,
) -> anyhow::Result<Option<i32>> {
    let why = match stop {
        Stop::Ended(status) => return Ok(status),
        Stop::Early(why) => why,
    };
    let mut status = None;
    for t in targets.iter().filter(|t| t.is_spawned()) {
        if let Some(Ended::Child(code)) = t.stop_spawned(why, signals).await? {
            status = Some(code);
        }
    }
    Ok(status)
}

/// `--floor`: the same tracepoints with do-nothing programs, until the targets end.
async fn floor(
    targets: &mut [Target],
    signals: &mut Signals,
    prog_stats: Option<&std::path::Path>,
) -> anyhow::Result<i32> {
    let floor = attach_floor()?;
    for t in targets.iter_mut() {
        t.release()?;
    }
    eprintln!("zc-trace: attached (floor: do-nothing programs)");
    let stop = {
        let mut all_ended = Box::pin(all_ended(targets));
        tokio::select! {
            status = &mut all_ended => Stop::Ended(status?),
            received = signals.recv() => Stop::Early(Some(received?)),
        }
    };
    let status = stop_spawned(targets, stop, signals).await?.unwrap_or(0);
    if let Some(path) = prog_stats {
        output::write_json(path, &collect::program_costs(&floor))?;
    }
    Ok(status)
}
