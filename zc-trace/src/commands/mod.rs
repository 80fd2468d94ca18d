//! One module per subcommand: each validates its arguments, checks privileges, sets up, runs,
//! and returns the process exit code.
pub mod doctor;
pub mod lab;
pub mod syscalls;

/// A single-threaded runtime: zc-trace only waits on a few fds and timers, and one thread
/// keeps the tracer's own footprint (and its noise in system-wide traces) small.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}
