//! One module per subcommand, glue only: each validates its arguments, checks privileges, sets
//! up, runs, and returns the process exit code; the work is in the layers below. May use:
//! every layer (model/, kernel/, probe/, attribute/, render/, workloads/, cli).
pub mod doctor;
pub mod lab;
pub mod serve;
pub mod syscalls;
pub mod trace;
pub mod workload;

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use crate::kernel::target::{Ended, Target};

/// A single-threaded runtime: zc-trace only waits on a few fds and timers, and one thread
/// keeps the tracer's own footprint (and its noise in system-wide traces) small. It also
/// keeps the process single-threaded, which forking workloads relies on.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// SIGINT and SIGTERM, caught from the moment this is created (before attaching, so that a
/// signal arriving just after cannot kill zc-trace before it prints its summary).
pub(crate) struct Signals {
    pub int: tokio::signal::unix::Signal,
    pub term: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn catch() -> anyhow::Result<Self> {
        Ok(Self { int: signal(SignalKind::interrupt())?, term: signal(SignalKind::terminate())? })
    }
}

/// Waits until the target ends, the duration elapses, or SIGINT/SIGTERM arrives. Returns how
/// the target ended, if it did.
pub(crate) async fn wait_for_end(
    target: &Target,
    duration: Option<Duration>,
    signals: &mut Signals,
) -> anyhow::Result<Option<Ended>> {
    let sleep = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    Ok(tokio::select! {
        ended = target.ended() => Some(ended?),
        () = sleep => None,
        _ = signals.int.recv() => None,
        _ = signals.term.recv() => None,
    })
}
