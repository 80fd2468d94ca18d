//! The host side of vm-test: the packages QEMU and the initramfs need, and static builds of
//! the binaries that go into the guest (it has no libc).
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use super::{
    checks::SPIN_BINARY,
    debian::{Arch, output},
    progress::say,
};
use crate::setup;

/// Host packages the runner needs, with the command that shows each is there. All are
/// installed before any guest is prepared: guests are prepared in parallel, and two apt-get
/// runs at once would fight over dpkg's lock.
const HOST_PACKAGES: [(&str, &str); 7] = [
    ("qemu-system-x86", "/usr/bin/qemu-system-x86_64"),
    // The amd64 guests' busybox; every guest's applet list (see `userland`).
    ("busybox-static", "/bin/busybox"),
    ("cpio", "/usr/bin/cpio"),
    ("xz-utils", "/usr/bin/xz"),
    ("gzip", "/bin/gzip"),
    // Copied into the amd64 guests to toggle scatter-gather.
    ("ethtool", "/usr/sbin/ethtool"),
    // mkfs.ext4 for the guest's NVMe disk.
    ("e2fsprogs", "/usr/sbin/mkfs.ext4"),
];

/// What arm64 guests need on top: the cross linker and glibc for the static aarch64 build
/// (its binutils read the guest's ELF files too), and QEMU's arm machines. Only `--arch
/// arm64` installs them, so that amd64 runs do not pay for them.
const ARM64_HOST_PACKAGES: [(&str, &str); 3] = [
    ("gcc-aarch64-linux-gnu", "/usr/bin/aarch64-linux-gnu-gcc"),
    ("libc6-dev-arm64-cross", "/usr/aarch64-linux-gnu/lib/libc.a"),
    ("qemu-system-arm", "/usr/bin/qemu-system-aarch64"),
];

pub fn ensure_host_packages(arch: Arch) -> anyhow::Result<()> {
    let extra: &[(&str, &str)] = match arch {
        Arch::Amd64 => &[],
        Arch::Arm64 => &ARM64_HOST_PACKAGES,
    };
    let missing: Vec<&str> = HOST_PACKAGES
        .iter()
        .chain(extra)
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(package, _)| *package)
        .collect();
    if !missing.is_empty() {
        say(&format!("installing {} (needed to build and boot the test VMs)", missing.join(" ")));
        setup::apt_install(&missing)?;
    }
    if arch != Arch::Amd64 {
        ensure_rust_target(arch)?;
    }
    Ok(())
}

/// Rust's target for a guest architecture, and the cross linker its static build needs
/// (`None`: the host's own).
fn rust_target(arch: Arch) -> (&'static str, Option<&'static str>) {
    match arch {
        Arch::Amd64 => ("x86_64-unknown-linux-gnu", None),
        Arch::Arm64 => ("aarch64-unknown-linux-gnu", Some("aarch64-linux-gnu-gcc")),
    }
}

/// The standard library for the guest's target, added to the toolchain that builds the host
/// crates (rustup's), unless it is there.
fn ensure_rust_target(arch: Arch) -> anyhow::Result<()> {
    let (target, _) = rust_target(arch);
    let libdir = output(Command::new("rustc").args(["--print", "target-libdir", "--target", target]))?;
    if Path::new(libdir.trim()).exists() {
        return Ok(());
    }
    say(&format!("adding the {target} target to the Rust toolchain (the {} guest's zc-trace)", arch.debian()));
    crate::run::run_cmd({
        let mut cmd = Command::new("rustup");
        cmd.args(["target", "add", target]);
        cmd
    })
}

/// Builds zc-trace for the guest's architecture with glibc linked in statically: the
/// initramfs has no dynamic loader or libc. zc-trace's build script builds the embedded eBPF
/// programs for the same architecture (aya-build passes them the target's `bpf_target_arch`).
pub fn build_static_zc_trace(root: &Path, arch: Arch) -> anyhow::Result<PathBuf> {
    say(&format!("building a static zc-trace for {}", arch.debian()));
    build_static(arch, &["--package", "zc-trace", "--bins"])?;
    Ok(root.join("target").join(rust_target(arch).0).join("release/zc-trace"))
}

/// The test-only program that spins in the kernel (`--break-guest lockup`).
pub fn build_static_spinner(root: &Path, arch: Arch) -> anyhow::Result<PathBuf> {
    say("building a static zc-spin-in-kernel (test-only: breaks the guest on purpose)");
    build_static(arch, &["--package", "zc-trace-tests", "--bin", SPIN_BINARY])?;
    let binary = root.join("target").join(rust_target(arch).0).join("release").join(SPIN_BINARY);
    ensure_static(&binary, arch)?;
    Ok(binary)
}

fn build_static(arch: Arch, what: &[&str]) -> anyhow::Result<()> {
    let (target, linker) = rust_target(arch);
    let mut cmd = crate::run::cargo(&["build", "--release", "--target", target]);
    cmd.args(what);
    // With an explicit --target, RUSTFLAGS reach only the target crates, not build scripts and
    // proc macros (which would not link statically). CARGO_ENCODED_RUSTFLAGS would win over
    // RUSTFLAGS, so it must not leak in from the environment.
    cmd.env("RUSTFLAGS", "-C target-feature=+crt-static").env_remove("CARGO_ENCODED_RUSTFLAGS");
    if let Some(linker) = linker {
        // Cargo's default linker (`cc`) would link for the host.
        let var = format!("CARGO_TARGET_{}_LINKER", target.to_uppercase().replace('-', "_"));
        cmd.env(var, linker);
    }
    crate::run::run_cmd(cmd)
}

/// ELF's `e_machine` of an architecture's binaries.
fn elf_machine(arch: Arch) -> u16 {
    match arch {
        Arch::Amd64 => 62,  // EM_X86_64
        Arch::Arm64 => 183, // EM_AARCH64
    }
}

/// A binary for `arch` without a PT_INTERP program header: it runs in the guest without a
/// dynamic loader (static or static-pie).
pub fn ensure_static(binary: &Path, arch: Arch) -> anyhow::Result<()> {
    let elf = fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    let Some(header) = read_elf(&elf) else {
        bail!("{} is not a 64-bit little-endian ELF file", binary.display());
    };
    if header.machine != elf_machine(arch) {
        bail!(
            "{} is not an {} binary (ELF machine {}, not {})",
            binary.display(),
            arch.debian(),
            header.machine,
            elf_machine(arch)
        );
    }
    if header.interp {
        bail!(
            "{} is dynamically linked (it has a PT_INTERP header); the initramfs has no libc: \
             build it with RUSTFLAGS='-C target-feature=+crt-static' and an explicit --target",
            binary.display()
        );
    }
    Ok(())
}

/// What [`ensure_static`] needs of an ELF header.
#[derive(Debug, PartialEq)]
struct ElfHeader {
    machine: u16,
    interp: bool,
}

/// Reads the ELF64 header and program headers; `None` when the bytes are not a 64-bit
/// little-endian ELF.
fn read_elf(elf: &[u8]) -> Option<ElfHeader> {
    const PT_INTERP: u32 = 3;
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let phoff = usize::try_from(u64::from_le_bytes(elf.get(0x20..0x28)?.try_into().ok()?)).ok()?;
    let (phentsize, phnum) = (usize::from(u16_at(0x36)?), usize::from(u16_at(0x38)?));
    let mut interp = false;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        interp |= u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?) == PT_INTERP;
    }
    Some(ElfHeader { machine: u16_at(0x12)?, interp })
}

pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_dynamic_binaries() {
        // This test binary is dynamically linked, for the host.
        let this = read_elf(&fs::read(std::env::current_exe().unwrap()).unwrap()).unwrap();
        assert!(this.interp);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(this.machine, elf_machine(Arch::Amd64));
        // An aarch64 ELF64 header with no program headers at all.
        let mut header = vec![0u8; 64];
        header[..6].copy_from_slice(b"\x7fELF\x02\x01");
        header[0x12..0x14].copy_from_slice(&183u16.to_le_bytes());
        assert_eq!(read_elf(&header), Some(ElfHeader { machine: elf_machine(Arch::Arm64), interp: false }));
        assert_eq!(read_elf(b"#!/bin/sh"), None);
    }
}
