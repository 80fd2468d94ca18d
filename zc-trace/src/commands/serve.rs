//! `zc-trace serve`: an OpenMetrics endpoint for Prometheus. Counters are read from the
//! kernel at every scrape (and every few seconds in between, to fold and delete the entries
//! of processes that have exited), so a scrape always sees current totals.
use std::time::Duration;

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use super::Signals;
use crate::{
    cli::{self, ServeArgs},
    kernel::{facts, privileges, target::Target},
    model::exit::Fatal,
    probe::{
        loader::Filter,
        session::{Options, Session},
    },
    render::metrics::Accumulator,
};

pub fn run(args: ServeArgs) -> anyhow::Result<i32> {
    if let Some(pid) = cli::first_repeated(&args.pids) {
        return Err(Fatal::usage(format!("-p names PID {pid} twice: give each PID once")).into());
    }
    if !args.all && args.pids.is_empty() {
        return Err(Fatal::usage("serve what? give -a (every process) or -p PID[,PID...]").into());
    }
    privileges::require_tracing()?;
    facts::require_host_pid_namespace()?;
    let targets: Vec<Target> = args.pids.iter().map(|&pid| Target::existing(pid)).collect::<Result<_, _>>()?;
    facts::prepare_pseudo_filesystems();
    super::runtime()?.block_on(serve(args, targets))
}

async fn serve(args: ServeArgs, targets: Vec<Target>) -> anyhow::Result<i32> {
    let mut signals = Signals::catch()?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| Fatal::usage(format!("cannot listen on {}: {e}; choose another --listen address", args.listen)))?;
    let filter = if args.all { Filter::All } else { Filter::Set(targets.iter().map(|t| t.pid).collect()) };
    let options = Options { stats_entries: Some(args.map_entries), relay: args.relay.settings(), ..Default::default() };
    let mut session = Session::attach_with(filter, args.probe_tier, options)?;
    let mut acc = Accumulator::new(args.max_series as usize);
    eprintln!("zc-trace: serving http://{}/metrics. Ctrl-C to stop.", listener.local_addr()?);
    let mut fold_tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            conn = listener.accept() => {
                let (stream, _) = conn?;
                fold(&mut session, &mut acc)?;
                let body = acc.encode(session.probes(), &session.drops()?, &session.map_occupancy()?);
                // A broken scrape connection is the scraper's problem, not a reason to stop.
                let _ = respond(stream, &body).await;
            }
            _ = fold_tick.tick() => fold(&mut session, &mut acc)?,
            _ = signals.recv() => break,
        }
    }
    Ok(0)
}

/// Folds new counts into the series and deletes the kernel entries of exited processes.
fn fold(session: &mut Session, acc: &mut Accumulator) -> anyhow::Result<()> {
    let stats = session.stats()?;
    let syscalls = session.syscalls()?;
    let comms = session.comms()?;
    let global = session.global_events()?;
    acc.fold(&stats, &syscalls, &comms, session.evidence(), &global);
    // Every key with an entry: a process can have a name and no counters yet.
    let dead: std::collections::BTreeSet<u32> = stats
        .keys()
        .chain(comms.keys())
        .chain(syscalls.keys())
        .copied()
        .filter(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        .collect();
    session.forget(&dead)?;
    for &pid in &dead {
        acc.forget(pid);
    }
    Ok(())
}

/// A minimal HTTP/1.1 answer: `GET /metrics` gets the OpenMetrics text, anything else 404.
async fn respond(mut stream: TcpStream, body: &str) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16384 {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await??;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&request);
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let response = if line.starts_with("GET ") && (path == "/metrics" || path.starts_with("/metrics?")) {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
