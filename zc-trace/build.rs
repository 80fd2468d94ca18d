//! Builds the kernel programs (nightly, bpfel-unknown-none, -Z build-std=core, bpf-linker) and
//! leaves them in OUT_DIR, where `src/probe/loader.rs` embeds them with
//! `include_bytes_aligned!`: the zc-trace binary is self-contained.
//!
//! Without bpf-linker (a fresh checkout before `cargo xtask setup`) an empty placeholder is
//! embedded instead, so that `cargo build` / `cargo test` of the pure logic still work; every
//! command that needs the kernel side then says how to get it. `cargo xtask` sets
//! ZC_TRACE_REQUIRE_EBPF=1, which turns that fallback into a build error.
use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};

const OBJECTS: [&str; 2] = ["zc-trace-probes", "zc-trace-doctor"];

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=ZC_TRACE_REQUIRE_EBPF");
    println!("cargo:rerun-if-env-changed=PATH");
    let required = env::var_os("ZC_TRACE_REQUIRE_EBPF").is_some_and(|v| v == "1");
    if which::which("bpf-linker").is_err() {
        if required {
            return Err(anyhow!("bpf-linker not found on PATH; run `cargo xtask setup`"));
        }
        println!(
            "cargo:warning=bpf-linker not found: building zc-trace without its eBPF programs \
             (run `cargo xtask setup` for a working binary)"
        );
        let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
        for name in OBJECTS {
            fs::write(out_dir.join(name), b"")?;
        }
        return Ok(());
    }

    let metadata = cargo_metadata::MetadataCommand::new().no_deps().exec().context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == "zc-trace-ebpf")
        .ok_or_else(|| anyhow!("zc-trace-ebpf package not found"))?;
    let root_dir = ebpf.manifest_path.parent().ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    let package = aya_build::Package { name: ebpf.name.as_str(), root_dir: root_dir.as_str(), ..Default::default() };
    aya_build::build_ebpf([package], aya_build::Toolchain::Custom("nightly"))
}
