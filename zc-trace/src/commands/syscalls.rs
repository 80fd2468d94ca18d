use std::time::Instant;

use crate::{
    attribute::syscalls,
    cli::SyscallsArgs,
    kernel::{
        facts::{self, kernel_info},
        privileges,
        target::{Ended, Target},
    },
    model::{
        exit::Fatal,
        report::{SyscallReport, TargetInfo},
        run::Tier,
    },
    probe::{loader::Filter, session::Session},
    render::{self, output},
};

pub fn run(args: SyscallsArgs) -> anyhow::Result<i32> {
    let sink =
        output::Sink::choose(args.output.json.as_deref(), args.output.output.as_deref(), !args.command.is_empty())?;
    if args.pid.is_none() && args.command.is_empty() {
        return Err(Fatal::usage("nothing to trace: give -p PID or a command after `--`").into());
    }
    privileges::require_tracing()?;
    facts::require_host_pid_namespace()?;
    // Fork before anything else: the child must be forked while we are single-threaded and
    // before our private mount namespace exists.
    let mut target = match args.pid {
        Some(pid) => Target::existing(pid)?,
        None => Target::spawn_held(&args.command)?,
    };
    facts::prepare_pseudo_filesystems();
    super::runtime()?.block_on(trace(args, &mut target, sink))
}

async fn trace(args: SyscallsArgs, target: &mut Target, sink: output::Sink) -> anyhow::Result<i32> {
    let mut signals = super::Signals::catch()?;
    let session = Session::attach(Filter::Tgid(target.pid), Tier::Auto)?;

    target.release()?;
    eprintln!("zc-trace: attached; tracing PID {} ({}). Ctrl-C to stop.", target.pid, target.comm);
    let started = Instant::now();
    let stop = super::wait_for_end(target, args.duration, &mut signals).await?;
    // A spawned command still running is signalled and waited for: its exit is counted too.
    let ended = super::finish(target, stop, &mut signals).await?;
    let duration_s = started.elapsed().as_secs_f64();

    let counts = session.syscalls_of(target.pid)?;
    let drops = session.drops()?;
    let probes = session.probes().to_vec();
    drop(session); // detach before printing: nothing stays attached longer than needed

    let syscalls = syscalls::rows(&counts);
    let exit_status = match ended {
        Some(Ended::Child(code)) => Some(code),
        _ => None,
    };
    let report = SyscallReport {
        kernel: kernel_info(),
        probes,
        target: TargetInfo { pid: target.pid, comm: target.comm.clone(), spawned: target.is_spawned(), exit_status },
        total_calls: syscalls.iter().map(|r| r.calls).sum(),
        total_mode_switches: syscalls.iter().map(|r| r.mode_switches).sum(),
        syscalls,
        evidence: syscalls::evidence(),
        drops,
        duration_s,
    };
    match &args.output.json {
        Some(_) => sink.write_json(&report)?,
        None => sink.write_text(&render::syscalls::render(&report))?,
    }
    Ok(exit_status.unwrap_or(0))
}
