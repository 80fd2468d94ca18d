//! `zc-trace workload` (hidden): one built-in workload in this process, timed around its copy
//! loops only, so that benchmarks compare tracers on the same code without start-up noise.
use std::{io::Write as _, time::Instant};

use anyhow::Context as _;

use crate::{
    cli::WorkloadArgs,
    model::exit::Fatal,
    workloads::{self, sys},
};

pub fn run(args: WorkloadArgs) -> anyhow::Result<i32> {
    let mut total_ns = 0u128;
    let mut bytes = 0u64;
    for _ in 0..args.passes {
        let dst = open_sink(&args.sink)?;
        let started = Instant::now();
        let outcome = workloads::run(args.strategy, &args.src, dst.0, args.chunk as usize)
            .with_context(|| format!("running {}", args.strategy))?;
        total_ns += started.elapsed().as_nanos();
        bytes += outcome.bytes;
    }
    let mut f = std::fs::File::create(&args.result).with_context(|| format!("writing {}", args.result.display()))?;
    writeln!(f, "elapsed_ns={total_ns} bytes={bytes}")?;
    Ok(0)
}

fn open_sink(sink: &str) -> anyhow::Result<sys::Fd> {
    if sink == "null" {
        return Ok(sys::open_path(std::path::Path::new("/dev/null"), libc::O_WRONLY)?);
    }
    if let Some(path) = sink.strip_prefix("file:") {
        return Ok(sys::open_path(std::path::Path::new(path), libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)?);
    }
    let port: u16 = sink
        .strip_prefix("tcp:")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| Fatal::usage(format!("unknown sink `{sink}`: null, file:PATH or tcp:PORT")))?;
    Ok(workloads::sinks::connect_loopback(port)?)
}
