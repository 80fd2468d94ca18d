//! Running the tools xtask drives: cargo (with the eBPF toolchain on PATH) and any command
//! whose failure must stop the task.
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::setup;

/// A cargo command that must embed real eBPF programs (no placeholder fallback).
pub fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(args).env("ZC_TRACE_REQUIRE_EBPF", "1").env("PATH", setup::path_with_cargo_bin());
    cmd
}

pub fn run_cmd(mut cmd: Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{:?} failed ({status})", cmd.get_program());
    }
    Ok(())
}
