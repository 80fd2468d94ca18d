//! `zc-trace trace`: attribute a live process's copies, zero-copy moves, DMA and switches
//! (an existing PID, or a command started held until every probe is attached).
use std::time::Instant;

use crate::{
    attribute::{self, Input, Role},
    cli::TraceArgs,
    exit::Fatal,
    kernel::{self, KernelInfo},
    loader::Filter,
    output, privileges,
    report::AttributionReport,
    session::Session,
    target::{Ended, Target},
    trace_table,
};

pub fn run(args: TraceArgs) -> anyhow::Result<i32> {
    if let Some(path) = &args.output.json {
        output::check_writable(path)?;
    }
    if args.pid.is_none() && args.command.is_empty() {
        return Err(Fatal::usage("nothing to trace: give -p PID or a command after `--`").into());
    }
    privileges::require_tracing()?;
    // Fork before anything else: while single-threaded, and before our private mount
    // namespace exists (the command keeps the system's).
    let mut target = match args.pid {
        Some(pid) => Target::existing(pid)?,
        None => Target::spawn_held(&args.command)?,
    };
    kernel::prepare_pseudo_filesystems();
    super::runtime()?.block_on(trace(args, &mut target))
}

async fn trace(args: TraceArgs, target: &mut Target) -> anyhow::Result<i32> {
    let session = Session::attach(Filter::Tgid(target.pid), args.probe_tier)?;
    target.release()?;
    eprintln!("zc-trace: attached; tracing PID {} ({}). Ctrl-C to stop.", target.pid, target.comm);
    let started = Instant::now();
    let ended = super::wait_for_end(target, args.duration).await?;
    let duration_s = started.elapsed().as_secs_f64();

    let stats = session.stats()?;
    let syscalls = session.syscalls()?;
    let report_probes = session.probes().to_vec();
    let drops = session.drops()?;
    let system = session.global_events()?;
    let evidence = session.evidence().clone();
    drop(session); // detach before printing

    let empty = Default::default();
    let by_class = stats.get(&target.pid).unwrap_or(&empty);
    let empty_counts = Default::default();
    let row = attribute::row(
        Input {
            strategy: attribute::infer_strategy(by_class),
            role: Role::Process,
            pid: target.pid,
            comm: target.comm.clone(),
            path: None,
            by_class,
            syscalls: syscalls.get(&target.pid).unwrap_or(&empty_counts),
            elapsed_s: None,
            msg_zerocopy: None,
        },
        &evidence,
        &system,
    );
    let report = AttributionReport {
        kernel: KernelInfo::read(),
        tier: args.probe_tier,
        probes: report_probes,
        rows: vec![row],
        drops,
        duration_s,
        system,
        lab: None,
    };
    match &args.output.json {
        Some(path) => output::write_json(path, &report)?,
        None => print!("{}", trace_table::render(&report, args.raw)),
    }
    Ok(match ended {
        Some(Ended::Child(code)) => code,
        _ => 0,
    })
}
