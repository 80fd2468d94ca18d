//! One module per subcommand, glue only: each validates its arguments, checks privileges, sets
//! up, runs, and returns the process exit code; the work is in the layers below. May use:
//! every layer (model/, kernel/, probe/, attribute/, render/, workloads/, cli).
pub mod advised;
pub mod calibrate;
pub mod doctor;
pub mod lab;
mod live;
pub mod serve;
pub mod syscalls;
pub mod top;
pub mod trace;
pub mod workload;

use std::time::Duration;

pub(crate) use crate::kernel::signals::Signals;
use crate::kernel::{
    signals::Received,
    target::{Ended, Target},
};

/// A single-threaded runtime: zc-trace only waits on a few fds and timers, and one thread
/// keeps the tracer's own footprint (and its noise in system-wide traces) small. It also
/// keeps the process single-threaded, which forking workloads relies on.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// How waiting for the traced processes came to an end.
pub(crate) enum Stop<T> {
    /// They ended by themselves.
    Ended(T),
    /// zc-trace stops first: on this signal, or `None` when `-d` elapsed. A command it
    /// spawned is then stopped too ([`Target::stop_spawned`]).
    Early(Option<Received>),
}

/// Waits until the target ends, the duration elapses, or SIGINT/SIGTERM/SIGHUP arrives
/// (caught from the moment `signals` was created, before attaching, so that a signal arriving
/// just after cannot kill zc-trace before it prints its summary).
pub(crate) async fn wait_for_end(
    target: &Target,
    duration: Option<Duration>,
    signals: &mut Signals,
) -> anyhow::Result<Stop<Ended>> {
    let sleep = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    Ok(tokio::select! {
        ended = target.ended() => Stop::Ended(ended?),
        () = sleep => Stop::Early(None),
        received = signals.recv() => Stop::Early(Some(received?)),
    })
}

/// How the target ended: by itself, or (a command zc-trace spawned) once signalled after
/// zc-trace stopped early. `None` for a process zc-trace did not spawn, which goes on.
pub(crate) async fn finish(target: &Target, stop: Stop<Ended>, signals: &mut Signals) -> anyhow::Result<Option<Ended>> {
    Ok(match stop {
        Stop::Ended(ended) => Some(ended),
        Stop::Early(why) => target.stop_spawned(why, signals).await?,
    })
}
