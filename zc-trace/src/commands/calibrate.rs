//! `zc-trace calibrate`: measures what a byte of copy and a syscall cost here and stores the
//! cost model the advisor prices with. Needs no privileges: it only times its own syscalls.
use std::io::IsTerminal as _;

use anyhow::Context as _;

use crate::{
    advise::cost::{self, CostModel, SizeCost},
    cli::{CalibrateArgs, first_repeated},
    model::exit::Fatal,
    render::{self, output, table::human_bytes},
    workloads::copy_cost,
};

/// Larger sizes measure memory bandwidth, not a syscall's copy, and cost as much memory.
const MAX_SIZE: u64 = 64 << 20;

pub fn run(args: CalibrateArgs) -> anyhow::Result<i32> {
    let sizes = checked_sizes(&args.sizes)?;
    let path = match &args.out {
        Some(p) if output::is_stdout(p) => {
            return Err(Fatal::usage("--out - : the cost model is a file; use --json to print it").into());
        }
        Some(p) => p.clone(),
        None => cost::prepare_default_path()?,
    };
    // Before measuring, so that an unwritable path does not throw the measurement away.
    output::check_writable(&path).map_err(|f| match args.out {
        Some(_) => f,
        None => Fatal::usage(format!("{} with --out PATH", f.message)),
    })?;
    let per_repetition = copy_cost::per_repetition(sizes.len());
    if std::io::stderr().is_terminal() {
        let secs = (per_repetition * (3 * copy_cost::REPETITIONS * sizes.len()) as u32).as_secs_f64();
        eprintln!("zc-trace: timing copies and syscalls at {} sizes (about {secs:.0} s)", sizes.len());
    }
    let times = copy_cost::measure(&sizes, per_repetition).context("timing copies on a memfd")?;
    let figures = times.iter().map(|t| SizeCost::from_call_ns(t.bytes, t.pread_ns, t.pwrite_ns, t.empty_ns)).collect();
    let model = CostModel::measured_now(figures, cost::method(per_repetition, copy_cost::REPETITIONS));
    model.save(&path)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&model)?);
    } else {
        print!("{}", render::cost_model::render(&model, &path));
    }
    Ok(0)
}

/// Ascending, each at most [`MAX_SIZE`], none twice (parse_size already refused 0).
fn checked_sizes(sizes: &[u64]) -> Result<Vec<u64>, Fatal> {
    let shown = |b: u64| human_bytes(b as f64);
    if let Some(&big) = sizes.iter().find(|&&s| s > MAX_SIZE) {
        let big = shown(big);
        return Err(Fatal::usage(format!("calibration size {big} is larger than 64MiB: choose sizes up to 64MiB")));
    }
    if let Some(&twice) = first_repeated(sizes) {
        return Err(Fatal::usage(format!("size {} given twice in --sizes: give each size once", shown(twice))));
    }
    let mut sorted = sizes.to_vec();
    sorted.sort_unstable();
    Ok(sorted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_sorted_bounded_and_unique() {
        assert_eq!(checked_sizes(&[65536, 4096]).unwrap(), [4096, 65536]);
        assert!(checked_sizes(&[128 << 20]).unwrap_err().message.contains("64MiB"));
        assert!(checked_sizes(&[4096, 4096]).unwrap_err().message.contains("twice"));
    }
}
