//! Developer and CI entry points. `cargo xtask <command>`; every command that needs the eBPF
//! toolchain installs it first (see `setup`), so a fresh machine needs nothing but stable Rust.
mod bench;
mod run;
mod setup;
mod vm;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use run::{cargo, run_cmd};

#[derive(Parser)]
#[command(about = "zc-trace's build, test and lab entry points")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building the eBPF programs needs: nightly + rust-src, LLVM 22, bpf-linker.
    Setup,
    /// Set up, then build the release zc-trace binary (eBPF programs embedded).
    Build,
    /// Set up, build, then run the unit tests, the privileged integration tests, and the
    /// kernel matrix in QEMU (vm-test).
    Test {
        /// Extra arguments for the test harness (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up, build, then run the lab: built-in workloads, traced, in one table.
    Lab {
        /// Arguments passed to `zc-trace lab`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build, then measure tracing overhead (zc-trace, its floor, bpftrace, perf trace,
    /// strace) and zc-trace's start-up, memory and a soak; writes BENCHMARKS.md.
    Bench {
        /// Length of the soak (memory over time under `trace -i 1s`); 0 skips it.
        #[arg(long, default_value_t = 600)]
        soak_seconds: u64,
    },
    /// Set up, build a static zc-trace, boot Debian kernels in QEMU and run checks in them.
    VmTest(vm::VmTestArgs),
}

fn main() {
    if let Err(err) = run(Cli::parse()) {
        eprintln!("xtask: {err:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match cli.command {
        Cmd::Setup => setup::ensure(),
        Cmd::Build => {
            setup::ensure()?;
            build(&root, true).map(drop)
        }
        Cmd::Test { args } => {
            setup::ensure()?;
            test(&root, &args)?;
            // The kernels zc-trace must run on, beyond the host's: fentry and kprobe tiers.
            if std::env::var_os("ZC_TRACE_SKIP_VM").is_some_and(|v| v == "1")
                && std::env::var("CI").as_deref() != Ok("true")
            {
                eprintln!("xtask: ZC_TRACE_SKIP_VM=1: kernel matrix in QEMU skipped (CI never skips it)");
                return Ok(());
            }
            vm::run(&root, &vm::VmTestArgs::all_kernels())?;
            // Debian's arm64 kernel under qemu-system-aarch64: the whole set takes ~1.4x an
            // amd64 guest's time, so it runs entire, not a subset (docs/vm-test.md).
            vm::run(&root, &vm::VmTestArgs::arm64())?;
            // The watchdog that stops a stuck guest in seconds is part of what is tested.
            vm::prove_hang_detection(&root)
        }
        Cmd::Lab { args } => {
            setup::ensure()?;
            let bin = build(&root, true)?;
            let status = Command::new(&bin).arg("lab").args(&args).status()?;
            if !status.success() {
                bail!("zc-trace lab failed ({status})");
            }
            Ok(())
        }
        Cmd::VmTest(args) => vm::run(&root, &args),
        Cmd::Bench { soak_seconds } => {
            setup::ensure()?;
            let bin = build(&root, true)?;
            bench::run(&root, &bin, soak_seconds)
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn build(root: &Path, release: bool) -> anyhow::Result<PathBuf> {
    let mut args = vec!["build", "--package", "zc-trace", "--bins"];
    if release {
        args.push("--release");
    }
    run_cmd(cargo(&args))?;
    Ok(root.join("target").join(if release { "release" } else { "debug" }).join("zc-trace"))
}

fn test(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    hygiene()?;
    let bin = build(root, false)?;
    // Privileged tests share kernel state (attached programs, the tracer's own syscalls):
    // one at a time, as aya's own integration tests do.
    let mut cmd = cargo(&["test"]);
    cmd.env("ZC_TRACE_BIN", &bin).arg("--").arg("--test-threads=1").args(extra);
    run_cmd(cmd)
}

/// The gates every change passes before anything runs: formatting as rustfmt.toml says, and
/// clippy with warnings as errors on the host crates (the eBPF crate builds only for
/// bpfel-unknown-none; its own build warns through zc-trace's build script).
fn hygiene() -> anyhow::Result<()> {
    let mut fmt = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    fmt.args(["fmt", "--all", "--check"]);
    run_cmd(fmt).context("code is not formatted: run `cargo fmt --all`")?;
    run_cmd(cargo(&["clippy", "--all-targets", "--", "-D", "warnings"]))
        .context("clippy found problems (warnings are errors)")
}
