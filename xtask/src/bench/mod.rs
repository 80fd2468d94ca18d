//! `cargo xtask bench`: what tracing costs the traced program, for zc-trace and for the
//! tools people would otherwise use, measured in one interleaved run and written to
//! BENCHMARKS.md. Every number in that file comes from this run.
//!
//! Each tool runs the same workload command (`zc-trace workload`, which times its own copy
//! loops, so tool start-up is not counted); slowdown = median traced / median untraced of
//! the same workload. Tools too slow for the full workload (strace, perf trace) run a
//! smaller one against an untraced baseline of that same size.
use std::path::Path;

use anyhow::Context as _;

mod extras;
mod measure;
mod memory;
mod render;

use extras::{program_profile, soak, startup_reads, strategy_throughput};
use measure::{RUNS, SOURCE_SIZE, TARGET_SECONDS, Tool, WORKLOADS, measure, startup_and_rss};
use memory::map_memory;
use render::render;

pub fn run(root: &Path, zc_trace: &Path, soak_seconds: u64) -> anyhow::Result<()> {
    crate::setup::apt_install(&["bpftrace", "linux-perf", "strace"])?;
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let src = dir.join("source.bin");
    if std::fs::metadata(&src).map(|m| m.len()).unwrap_or(0) != SOURCE_SIZE {
        let data: Vec<u8> = (0..SOURCE_SIZE).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        std::fs::write(&src, data)?;
    }
    std::fs::read(&src)?; // warm the page cache

    let mut results: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); Tool::ALL.len()]; WORKLOADS.len()];
    let mut baselines: Vec<Vec<(u32, Vec<f64>)>> = vec![Vec::new(); WORKLOADS.len()];
    let mut reports: Vec<Option<serde_json::Value>> = vec![None; WORKLOADS.len()];
    let passes: Vec<u32> = WORKLOADS
        .iter()
        .map(|w| {
            let one = measure(zc_trace, &dir, &src, w, 1, Tool::Untraced).map(|s| s.seconds).unwrap_or(0.01);
            ((TARGET_SECONDS / one.max(1e-4)).ceil() as u32).clamp(1, 10_000)
        })
        .collect();
    for round in 0..RUNS {
        eprintln!("bench: round {} of {RUNS}", round + 1);
        for (wi, w) in WORKLOADS.iter().enumerate() {
            for (ti, &tool) in Tool::ALL.iter().enumerate() {
                let p = (passes[wi] / tool.scale_down()).max(1);
                let sample = measure(zc_trace, &dir, &src, w, p, tool)
                    .with_context(|| format!("{} under {}", w.name, tool.name()))?;
                results[wi][ti].push(sample.seconds);
                if let Some(r) = sample.report {
                    reports[wi] = Some(r);
                }
                // Untraced baselines for the reduced sizes, interleaved with their tools.
                if tool.scale_down() > 1 {
                    let base = measure(zc_trace, &dir, &src, w, p, Tool::Untraced)?.seconds;
                    match baselines[wi].iter_mut().find(|(q, _)| *q == p) {
                        Some((_, v)) => v.push(base),
                        None => baselines[wi].push((p, vec![base])),
                    }
                }
            }
        }
    }
    // The workload's own start-up (dynamic loader, runtime) makes a few reads before its
    // loops: counted once with zero passes, so that "exact" means exact.
    let startup_reads = startup_reads(zc_trace, &dir, &src)?;
    let startup = startup_and_rss(zc_trace)?;
    let profile = program_profile(zc_trace, &dir, &src, passes[0])?;
    let throughput = strategy_throughput(zc_trace, &dir, &src)?;
    let memory = map_memory(zc_trace)?;
    let soak = soak(zc_trace, &src, soak_seconds)?;
    let mut md = render(&passes, &results, &baselines, &reports, &startup, startup_reads)?;
    md += &profile;
    md += &throughput;
    md += &memory;
    md += &soak;
    std::fs::write(root.join("BENCHMARKS.md"), md)?;
    eprintln!("bench: wrote BENCHMARKS.md");
    Ok(())
}
