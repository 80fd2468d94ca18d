//! `cargo xtask setup`: the eBPF toolchain, installed only where missing. A second run only
//! checks, in well under a second.
//!
//! Why each piece (see docs/kernels.md, "The build toolchain"):
//! - nightly + rust-src: the eBPF crate is built with `-Z build-std=core` for bpfel-unknown-none;
//! - LLVM 22 from Debian: bpf-linker links against the same LLVM major as nightly's rustc;
//! - bpf-linker: links the eBPF crate's LLVM bitcode into a BPF object.
use std::{
    ffi::OsString,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

const NIGHTLY: &str = "nightly";
const LLVM_MAJOR: &str = "22";
const LLVM_PACKAGES: [&str; 2] = ["llvm-22-dev", "libpolly-22-dev"];
const BPF_LINKER_VERSION: &str = "0.13";

pub fn ensure() -> anyhow::Result<()> {
    ensure_gates()?;
    ensure_nightly()?;
    ensure_llvm()?;
    ensure_bpf_linker()
}

/// `$CARGO_HOME/bin` (where `cargo install` puts bpf-linker) ahead of the inherited PATH.
pub fn path_with_cargo_bin() -> OsString {
    let mut dirs = vec![cargo_home().join("bin")];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).expect("PATH entries contain no ':'")
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo"))
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// rustfmt and clippy for the toolchain that builds the host crates (`cargo xtask test` runs
/// both as gates); a minimal rustup profile has neither.
fn ensure_gates() -> anyhow::Result<()> {
    for (component, probe) in [("rustfmt", "fmt"), ("clippy", "clippy")] {
        if output(Command::new("cargo").args([probe, "--version"])).is_none() {
            say(&format!("adding {component} (cargo xtask test checks formatting and lints)"));
            run(Command::new("rustup").args(["component", "add", component]))?;
        }
    }
    Ok(())
}

fn ensure_nightly() -> anyhow::Result<()> {
    let installed = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup not found: zc-trace's eBPF build needs rustup to run a nightly toolchain")?;
    if !installed.lines().any(|l| l.starts_with(&format!("{NIGHTLY}-"))) {
        say(&format!("installing the {NIGHTLY} toolchain (the eBPF crate needs -Z build-std)"));
        run(Command::new("rustup").args(["toolchain", "install", NIGHTLY, "--profile", "minimal"]))?;
    }
    let components = output(Command::new("rustup").args(["component", "list", "--installed", "--toolchain", NIGHTLY]))
        .unwrap_or_default();
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        say("adding rust-src to nightly (build-std compiles core for bpfel-unknown-none)");
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))?;
    }
    let version = output(Command::new("rustup").args(["run", NIGHTLY, "rustc", "-vV"])).unwrap_or_default();
    let llvm = version.lines().find_map(|l| l.strip_prefix("LLVM version: ")).unwrap_or("?");
    if !llvm.starts_with(&format!("{LLVM_MAJOR}.")) {
        bail!(
            "nightly rustc uses LLVM {llvm}, but bpf-linker is built against LLVM {LLVM_MAJOR}: \
             install a nightly whose `rustc -vV` says LLVM {LLVM_MAJOR}.x"
        );
    }
    Ok(())
}

fn llvm_prefix() -> PathBuf {
    PathBuf::from(format!("/usr/lib/llvm-{LLVM_MAJOR}"))
}

fn ensure_llvm() -> anyhow::Result<()> {
    if llvm_prefix().join("lib/libLLVM.so").exists() && llvm_prefix().join("bin/llvm-config").exists() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "LLVM {LLVM_MAJOR} is missing and installing it needs root: run `sudo apt-get install {}` \
             or run this command as root",
            LLVM_PACKAGES.join(" ")
        );
    }
    say(&format!("installing {} from Debian (bpf-linker links against it)", LLVM_PACKAGES.join(" ")));
    apt_install(&LLVM_PACKAGES)
}

/// Installs Debian packages, refreshing the package lists once if they are stale or empty.
pub fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    if install().is_ok_and(|s| s.success()) {
        return Ok(());
    }
    run(Command::new("apt-get").arg("update"))?;
    let status = install()?;
    if !status.success() {
        bail!("apt-get install {} failed ({status})", packages.join(" "));
    }
    Ok(())
}

fn ensure_bpf_linker() -> anyhow::Result<()> {
    let linker = cargo_home().join("bin/bpf-linker");
    let version = output(Command::new(&linker).arg("--version")).unwrap_or_default();
    if version.trim().starts_with(&format!("bpf-linker {BPF_LINKER_VERSION}")) {
        return Ok(());
    }
    say(&format!("building bpf-linker {BPF_LINKER_VERSION} against LLVM {LLVM_MAJOR} (about a minute)"));
    let prefix = llvm_prefix();
    let path = {
        let mut p = OsString::from(prefix.join("bin"));
        p.push(":");
        p.push(path_with_cargo_bin());
        p
    };
    run(Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["install", "bpf-linker", "--locked", "--version", &format!("~{BPF_LINKER_VERSION}")])
        .args(["--no-default-features", "--features", &format!("llvm-{LLVM_MAJOR}")])
        // Without PATH pointing at llvm-22's bin, llvm-sys finds no llvm-config and the link
        // fails with `unable to find library -lLLVM`.
        .env("PATH", path)
        .env(format!("LLVM_SYS_{LLVM_MAJOR}1_PREFIX"), &prefix))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

fn say(what: &str) {
    eprintln!("xtask setup: {what}");
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} failed ({status})", cmd.get_program());
    }
    Ok(())
}
