//! `zc-trace lab`: for each strategy, prepare the sink, fork the receiver and the sender held
//! at their gates, attach the counting programs filtered to exactly those two processes,
//! release them, and attribute what they cost.
use std::{collections::BTreeMap, path::Path, time::Instant};

use anyhow::Context as _;

use super::{Signals, advised};
use crate::advise::cost::LoadedCostModel;

use crate::{
    attribute::{
        self, classic,
        corrections::copied_at_transmit,
        dma::devices_by_key,
        flows,
        row::{self, Input},
    },
    cli::{self, LabArgs},
    kernel::{
        facts::{self, kernel_info},
        privileges,
        symbols::Symbols,
        target::{Ended, Target},
    },
    model::{
        exit::Fatal,
        report::{AttributionReport, GlobalEvents, LabSettings, Skipped},
        row::{Role, Row},
        run::{Drops, ProbeStatus},
        stacks::StacksReport,
    },
    probe::{
        collect::add_open_sockets,
        loader::Filter,
        session::{Options, Session},
    },
    render::{self, export, output, table},
    workloads::{
        self, Outcome, Strategy,
        harness::{self, SharedResult},
        sinks::{Sink, SinkKind, TcpEndpoint},
    },
};

/// Where the tcp sink's receiver listens, from the command line.
fn endpoint(args: &LabArgs) -> TcpEndpoint {
    TcpEndpoint { addr: args.receiver_addr, netns: args.receiver_netns.clone() }
}

pub fn run(args: LabArgs) -> anyhow::Result<i32> {
    if let Some(strategy) = cli::first_repeated(&args.strategies) {
        return Err(Fatal::usage(format!("--strategies names {strategy} twice: give each strategy once")).into());
    }
    let report_to = output::Sink::choose(args.output.json.as_deref(), args.output.output.as_deref(), false)?;
    for path in [&args.csv, &args.plot, &args.stacks.folded, &args.stacks.flamegraph].into_iter().flatten() {
        output::check_writable(path)?;
    }
    let model = if args.advise.advise { advised::cost_model(&args.advise)? } else { None };
    if args.chunk > args.size {
        return Err(Fatal::usage(format!(
            "--chunk ({}) is larger than --size ({}): choose a chunk no larger than the file",
            args.chunk, args.size
        ))
        .into());
    }
    if args.chunk > 1 << 30 {
        return Err(Fatal::usage("--chunk is larger than 1GiB: choose e.g. 64KiB").into());
    }
    let endpoint = endpoint(&args);
    if (args.port != 0 || endpoint != TcpEndpoint::default()) && args.sink != SinkKind::Tcp {
        return Err(Fatal::usage("--port, --receiver-addr and --receiver-netns apply to the tcp sink only").into());
    }
    workloads::sinks::check_endpoint(&endpoint, args.port).map_err(|e| {
        let netns = endpoint.netns.as_ref().map(|p| format!(" in the network namespace {}", p.display())).unwrap_or_default();
        Fatal::usage(format!(
            "cannot listen on {}:{}{netns}: {e}; choose another --port (0 for a free one), --receiver-addr or --receiver-netns",
            endpoint.addr, args.port
        ))
    })?;
    privileges::require_tracing()?;
    // The workloads are forked here: their PIDs must be the ones the kernel programs see.
    facts::require_host_pid_namespace()?;
    facts::prepare_pseudo_filesystems();
    super::runtime()?.block_on(lab(args, report_to, model))
}

/// One traced run of one strategy.
struct Run {
    rows: Vec<Row>,
    /// `--stacks`: the run's copy stacks, named.
    stacks: Option<StacksReport>,
    probes: Vec<ProbeStatus>,
    drops: Drops,
    system: GlobalEvents,
}

async fn lab(args: LabArgs, report_to: output::Sink, model: Option<LoadedCostModel>) -> anyhow::Result<i32> {
    let started = Instant::now();
    let strategies = if args.strategies.is_empty() { Strategy::ALL.to_vec() } else { args.strategies.clone() };
    // Catch SIGINT/SIGTERM/SIGHUP before anything is created, so that an interruption at any
    // point still removes the temp directory (a pending signal is seen by the first wait below).
    let mut signals = Signals::catch()?;
    let dir = harness::temp_dir()?;
    let src = dir.path().join("source");
    harness::write_random_file(&src, args.size).map_err(|e| {
        Fatal::usage(format!(
            "cannot create the {} source file in {}: {e}; choose a smaller --size or point TMPDIR elsewhere",
            table::human_bytes(args.size as f64),
            std::env::temp_dir().display()
        ))
    })?;
    let progress = Progress::new(strategies.len() as u64 * u64::from(args.runs));
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    let mut stacks = Vec::new();
    let mut last: Option<Run> = None;
    'strategies: for strategy in strategies {
        if let Some(reason) = harness::unsupported(strategy, args.sink, &src) {
            skipped.push(Skipped { strategy: strategy.name(), reason });
            progress.skip(u64::from(args.runs));
            continue;
        }
        let mut runs = Vec::new();
        for i in 0..args.runs {
            progress.start(&format!("{strategy} (run {} of {})", i + 1, args.runs));
            match run_once(strategy, &args, &src, dir.path(), &mut signals).await? {
                Some(run) => runs.push(run),
                None => {
                    progress.finish();
                    eprintln!("zc-trace: interrupted; reporting the strategies that completed");
                    break 'strategies;
                }
            }
            progress.done();
        }
        let mut run = median_by_throughput(runs);
        rows.extend(run.rows.iter().cloned());
        stacks.extend(run.stacks.take());
        last = Some(run);
    }
    progress.finish();
    let (probes, drops, system) = match last {
        Some(run) => (run.probes, run.drops, run.system),
        None => (Vec::new(), Drops::new(Default::default()), Default::default()),
    };
    let chunks = args.size.div_ceil(args.chunk);
    let path = classic::Path {
        loopback: args.sink == SinkKind::Tcp && endpoint(&args).is_loopback(),
        cold: args.cold,
        tcp: args.sink == SinkKind::Tcp,
    };
    let classic =
        rows.iter().filter(|r| r.role == "sender").filter_map(|r| classic::compare(r, path, chunks)).collect();
    let report = AttributionReport {
        kernel: kernel_info(),
        tier: args.session.probe_tier,
        probes,
        rows,
        drops,
        duration_s: started.elapsed().as_secs_f64(),
        system,
        lab: Some(LabSettings {
            size_bytes: args.size,
            chunk_bytes: args.chunk,
            sink: args.sink.name().into(),
            cold: args.cold,
            runs: args.runs,
            skipped,
            classic,
        }),
        stacks: attribute::stacks::combine(stacks),
    };
    if let Some(stacks) = &report.stacks {
        render::flamegraph::write(stacks, args.stacks.folded.as_deref(), args.stacks.flamegraph.as_deref())?;
    }
    if let Some(path) = &args.csv {
        export::write_csv(path, &report.rows)?;
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "zc-trace lab, Linux {}, {} in {} chunks over {}",
            report.kernel.release,
            table::human_bytes(args.size as f64),
            table::human_bytes(args.chunk as f64),
            args.sink
        );
        export::write_plot(path, &report.rows, &title)?;
    }
    let advice = args.advise.advise.then(|| advised::advise(&report, model.as_ref()));
    match (&args.output.json, &advice) {
        (Some(_), Some(advice)) => report_to.write_json(&advised::Advised { report: &report, advice })?,
        (Some(_), None) => report_to.write_json(&report)?,
        (None, _) => {
            let mut text = table::render(&report, args.raw);
            if let Some(stacks) = &report.stacks {
                text += &render::stacks::render(stacks, args.raw);
            }
            if let Some(advice) = &advice {
                text += &advised::render_text(advice);
            }
            report_to.write_text(&text)?
        }
    }
    Ok(0)
}

/// The run whose sender had the median throughput (counts are the same in every run; the
/// time is what varies).
fn median_by_throughput(mut runs: Vec<Run>) -> Run {
    let speed = |r: &Run| r.rows.first().and_then(|r| r.throughput_bytes_per_s).unwrap_or(0.0);
    runs.sort_by(|a, b| speed(a).total_cmp(&speed(b)));
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
}

/// Prepares the sink, forks receiver and sender held at their gates, attaches, releases,
/// waits and attributes. `None` when interrupted.
async fn run_once(
    strategy: Strategy,
    args: &LabArgs,
    src: &Path,
    dir: &Path,
    signals: &mut Signals,
) -> anyhow::Result<Option<Run>> {
    if args.cold {
        harness::drop_page_cache(src)?;
    }
    let mut sink = Sink::prepare_at(args.sink, dir, args.port, &endpoint(args)).context("preparing the sink")?;
    let chunk = args.chunk as usize;
    let recv_result = SharedResult::new()?;
    let send_result = SharedResult::new()?;
    let mut receiver = if args.sink.has_receiver() {
        Some(Target::fork_held(&format!("zc-recv-{strategy}"), || {
            let t = Instant::now();
            let outcome = sink.receive(chunk).map(|bytes| Outcome { bytes, zerocopy: None });
            recv_result.store(&outcome, t.elapsed().as_nanos() as u64);
            i32::from(outcome.is_err())
        })?)
    } else {
        None
    };
    let mut sender = Target::fork_held(&format!("zc-{strategy}"), || {
        let t = Instant::now();
        let outcome = sink.sender_fd().and_then(|dst| workloads::run(strategy, src, dst.0, chunk));
        send_result.store(&outcome, t.elapsed().as_nanos() as u64);
        i32::from(outcome.is_err())
    })?;
    sink.close_parent_ends();

    let mut pids = vec![sender.pid];
    pids.extend(receiver.as_ref().map(|r| r.pid));
    let options = Options {
        stats_entries: Some(args.session.map_entries),
        relay: args.session.relay.settings(),
        stacks: args.stacks.stacks,
        ..Default::default()
    };
    let session = Session::attach_with(Filter::Set(pids), args.session.probe_tier, options)?;
    if let Some(r) = receiver.as_mut() {
        r.release()?;
    }
    sender.release()?;
    tokio::select! {
        done = async {
            let s = sender.ended().await?;
            let r = match &receiver { Some(r) => Some(r.ended().await?), None => None };
            anyhow::Ok((s, r))
        } => {
            let (s, r) = done?;
            if s != Ended::Child(0) {
                anyhow::bail!("the {strategy} sender failed: {}", send_result.error());
            }
            if r.is_some_and(|r| r != Ended::Child(0)) {
                anyhow::bail!("the {strategy} receiver failed: {}", recv_result.error());
            }
        }
        _ = signals.recv() => return Ok(stop(sender, receiver)),
    }
    let mut stats = session.stats()?;
    add_open_sockets(&mut stats, &session.open_sockets_copied()?);
    let syscalls = session.syscalls()?;
    let flows = session.flows()?;
    let stacks = match args.stacks.stacks {
        true => {
            // The workloads are forks of this process: its mappings name their frames.
            let mut symbols = Symbols::new();
            symbols.index_process(std::process::id());
            let mut comms = BTreeMap::from([(sender.pid, sender.comm.clone())]);
            comms.extend(receiver.as_ref().map(|r| (r.pid, r.comm.clone())));
            let sources = attribute::stacks::kernel_stack_sources(session.probes());
            Some(attribute::stacks::report(&session.copy_stacks()?, &mut symbols, &comms, sources))
        }
        false => None,
    };
    let run = Run {
        rows: Vec::new(),
        stacks,
        probes: session.probes().to_vec(),
        drops: session.drops()?,
        system: session.global_events()?,
    };
    let devices = devices_by_key(&session.dma_devices()?);
    let evidence = session.evidence().clone();
    drop(session);
    if let Some(f) = sink.file() {
        let _ = std::fs::remove_file(f);
    }
    let empty = Default::default();
    let empty_counts = Default::default();
    let mut parts = vec![(&sender, Role::Sender, &send_result)];
    if let Some(r) = &receiver {
        parts.push((r, Role::Receiver, &recv_result));
    }
    let rows = parts
        .into_iter()
        .map(|(target, role, result)| {
            row::row(
                Input {
                    strategy: strategy.name().into(),
                    role,
                    pid: target.pid,
                    comm: target.comm.clone(),
                    path: None,
                    by_class: stats.get(&target.pid).unwrap_or(&empty),
                    syscalls: syscalls.get(&target.pid).unwrap_or(&empty_counts),
                    elapsed_s: Some(result.nanos() as f64 / 1e9),
                    msg_zerocopy: result.zerocopy(),
                },
                &evidence,
                &run.system,
            )
        })
        .map(|mut row| {
            // The session covered exactly this run: every device's mappings in that window,
            // shown where the process-context figures are observable at all.
            if row.dma.dma_map_bytes_to_device.is_some() {
                row.dma.system_by_device = Some(devices.clone());
            }
            copied_at_transmit(&mut row);
            row.flows = flows::rows_for(row.pid, &flows, &Default::default());
            row
        })
        .collect();
    Ok(Some(Run { rows, ..run }))
}

/// Interrupted: our own workload processes do not outlive the lab.
fn stop(sender: Target, receiver: Option<Target>) -> Option<Run> {
    sender.kill();
    if let Some(r) = receiver {
        r.kill();
    }
    None
}

/// A progress bar on stderr while workloads run; nothing when stderr is not a terminal.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(total: u64) -> Self {
        use std::io::IsTerminal as _;
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Self(Some(bar))
    }
    fn start(&self, what: &str) {
        if let Some(b) = &self.0 {
            b.set_message(what.to_string());
        }
    }
    fn done(&self) {
        if let Some(b) = &self.0 {
            b.inc(1);
        }
    }
    fn skip(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}
