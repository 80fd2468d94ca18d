//! `zc-trace serve`: an OpenMetrics endpoint for Prometheus. Counters are read from the
//! kernel at every scrape (and every few seconds in between, to fold and delete the entries
//! of processes that have exited), so a scrape always sees current totals. One loop owns the
//! kernel maps; HTTP connections are served beside it (http.rs) and ask it for the text.
mod http;

use std::time::Duration;

use hyper::body::Bytes;
use tokio::{net::TcpListener, sync::mpsc};

use super::Signals;
use crate::{
    cli::{self, SeriesBy, ServeArgs},
    kernel::{cgroups::CgroupPaths, facts, privileges, target::Target},
    model::exit::Fatal,
    probe::{
        footprint,
        loader::Filter,
        session::{Options, Session},
    },
    render::{
        doctor::mib,
        metrics::{Accumulator, SeriesLabels},
    },
};

pub fn run(args: ServeArgs) -> anyhow::Result<i32> {
    if let Some(pid) = cli::first_repeated(&args.pids) {
        return Err(Fatal::usage(format!("-p names PID {pid} twice: give each PID once")).into());
    }
    if !args.all && args.pids.is_empty() && args.cgroup.is_none() {
        return Err(Fatal::usage("serve what? give -a (every process), -p PID[,PID...] or --cgroup PATH").into());
    }
    let cgroup = args.cgroup.as_deref().map(super::trace::cgroup_filter).transpose()?;
    privileges::require_tracing()?;
    facts::require_host_pid_namespace()?;
    let targets: Vec<Target> = args.pids.iter().map(|&pid| Target::existing(pid)).collect::<Result<_, _>>()?;
    facts::prepare_pseudo_filesystems();
    super::runtime()?.block_on(serve(args, targets, cgroup))
}

async fn serve(args: ServeArgs, targets: Vec<Target>, cgroup: Option<Filter>) -> anyhow::Result<i32> {
    let mut signals = Signals::catch()?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| Fatal::usage(format!("cannot listen on {}: {e}; choose another --listen address", args.listen)))?;
    let filter = match cgroup {
        Some(cgroup) => cgroup,
        None if args.all => Filter::All,
        None => Filter::Set(targets.iter().map(|t| t.pid).collect()),
    };
    let options = Options {
        stats_entries: Some(args.session.map_entries),
        relay: args.session.relay.settings(),
        syscall_buckets: true,
        ..Default::default()
    };
    let mut session = Session::attach_with(filter, args.session.probe_tier, options)?;
    let labels = SeriesLabels { by_cgroup: args.series_by == SeriesBy::Cgroup, container: args.container_labels };
    let mut acc = Accumulator::with_labels(args.max_series as usize, labels);
    // Cgroup paths are read only when a label needs them.
    let with_cgroups = labels != SeriesLabels::default();
    // What the maps cost the node: now (the kernel's own accounting) and at most.
    let cpus = footprint::possible_cpus();
    let defs = footprint::probe_maps(args.session.map_entries)?;
    let model = |f: fn(&footprint::MapDef, u64) -> u64| defs.iter().map(|d| f(d, cpus)).sum::<u64>();
    eprintln!(
        "zc-trace: kernel maps: {} now (the kernel's memlock; the model: {} empty), at most {} with every \
         entry used ({cpus} possible CPUs)",
        mib(footprint::memlock_now()),
        mib(model(footprint::empty_bytes)),
        mib(model(footprint::most_bytes)),
    );
    eprintln!("zc-trace: serving http://{}/metrics. Ctrl-C to stop.", listener.local_addr()?);
    let (scrapes, mut waiting) = mpsc::channel::<http::Scrape>(http::MAX_CONNECTIONS);
    // Dropped with the runtime when the loop ends: open connections are closed then.
    let accepting = tokio::spawn(http::accept(listener, scrapes));
    let mut fold_tick = tokio::time::interval(FOLD_EVERY);
    let mut exits_tick = tokio::time::interval(EXITS_EVERY);
    let fold_after_exits = u64::from(args.session.map_entries / 16).max(16);
    let mut exited_at_fold = 0;
    loop {
        tokio::select! {
            Some(first) = waiting.recv() => {
                exited_at_fold = fold(&mut session, &mut acc, with_cgroups)?;
                let body = Bytes::from(acc.encode(session.probes(), &session.drops()?, &session.map_occupancy()?));
                // Scrapes that arrived meanwhile get the same fresh body.
                let mut next = Some(first);
                while let Some(reply) = next {
                    let _ = reply.send(body.clone());
                    next = waiting.try_recv().ok();
                }
            }
            _ = fold_tick.tick() => exited_at_fold = fold(&mut session, &mut acc, with_cgroups)?,
            // Short-lived processes leave entries until a fold deletes them: a node that
            // starts hundreds a second would fill the maps within one FOLD_EVERY.
            _ = exits_tick.tick() => {
                if session.processes_exited()? >= exited_at_fold + fold_after_exits {
                    exited_at_fold = fold(&mut session, &mut acc, with_cgroups)?;
                }
            }
            _ = signals.recv() => break,
        }
    }
    accepting.abort();
    Ok(0)
}

/// Folded at least this often.
const FOLD_EVERY: Duration = Duration::from_secs(5);
/// How often the count of exited processes is looked at (one array read).
const EXITS_EVERY: Duration = Duration::from_millis(250);

/// Folds new counts into the series and deletes the kernel entries of exited processes.
/// Returns how many traced processes had exited before it began.
fn fold(session: &mut Session, acc: &mut Accumulator, with_cgroups: bool) -> anyhow::Result<u64> {
    let exited = session.processes_exited()?;
    let stats = session.stats()?;
    let syscalls = session.syscalls()?;
    let comms = session.comms()?;
    let global = session.global_events()?;
    let cgroups = match with_cgroups {
        true => {
            let paths = CgroupPaths::read();
            session.cgroups()?.into_iter().map(|(pid, id)| (pid, paths.info(id))).collect()
        }
        false => Default::default(),
    };
    acc.fold(&stats, &syscalls, &comms, &cgroups, session.evidence(), &global);
    // Every key with an entry: a process can have a name and no counters yet.
    let dead = crate::kernel::target::gone(stats.keys().chain(comms.keys()).chain(syscalls.keys()).copied());
    session.forget(&dead)?;
    for &pid in &dead {
        acc.forget(pid);
    }
    Ok(exited)
}
