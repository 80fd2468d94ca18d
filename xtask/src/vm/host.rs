//! The host side of vm-test: the packages QEMU and the initramfs need, and static builds of
//! the binaries that go into the guest (it has no libc).
use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use super::{checks::SPIN_BINARY, progress::say};
use crate::setup;

/// Host packages the runner needs, with the command that shows each is there. All are
/// installed before any guest is prepared: guests are prepared in parallel, and two apt-get
/// runs at once would fight over dpkg's lock.
const HOST_PACKAGES: [(&str, &str); 7] = [
    ("qemu-system-x86", "/usr/bin/qemu-system-x86_64"),
    ("busybox-static", "/bin/busybox"),
    ("cpio", "/usr/bin/cpio"),
    ("xz-utils", "/usr/bin/xz"),
    ("gzip", "/bin/gzip"),
    // Copied into the guest to toggle scatter-gather.
    ("ethtool", "/usr/sbin/ethtool"),
    // mkfs.ext4 for the guest's NVMe disk.
    ("e2fsprogs", "/usr/sbin/mkfs.ext4"),
];

pub fn ensure_host_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> =
        HOST_PACKAGES.iter().filter(|(_, file)| !Path::new(file).exists()).map(|(package, _)| *package).collect();
    if missing.is_empty() {
        return Ok(());
    }
    say(&format!("installing {} (needed to build and boot the test VMs)", missing.join(" ")));
    setup::apt_install(&missing)
}

const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Builds zc-trace with glibc linked in statically: the initramfs has no dynamic loader or libc.
pub fn build_static_zc_trace(root: &Path) -> anyhow::Result<PathBuf> {
    say("building a static zc-trace");
    build_static(&["--package", "zc-trace", "--bins"])?;
    Ok(root.join("target").join(TARGET).join("release/zc-trace"))
}

/// The test-only program that spins in the kernel (`--break-guest lockup`).
pub fn build_static_spinner(root: &Path) -> anyhow::Result<PathBuf> {
    say("building a static zc-spin-in-kernel (test-only: breaks the guest on purpose)");
    build_static(&["--package", "zc-trace-tests", "--bin", SPIN_BINARY])?;
    let binary = root.join("target").join(TARGET).join("release").join(SPIN_BINARY);
    ensure_static(&binary)?;
    Ok(binary)
}

fn build_static(what: &[&str]) -> anyhow::Result<()> {
    let mut cmd = crate::run::cargo(&["build", "--release", "--target", TARGET]);
    cmd.args(what);
    // With an explicit --target, RUSTFLAGS reach only the target crates, not build scripts and
    // proc macros (which would not link statically). CARGO_ENCODED_RUSTFLAGS would win over
    // RUSTFLAGS, so it must not leak in from the environment.
    cmd.env("RUSTFLAGS", "-C target-feature=+crt-static").env_remove("CARGO_ENCODED_RUSTFLAGS");
    crate::run::run_cmd(cmd)
}

/// A binary without a PT_INTERP program header needs no dynamic loader (static or static-pie).
pub fn ensure_static(binary: &Path) -> anyhow::Result<()> {
    let elf = fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    match elf_has_interp(&elf) {
        Some(false) => Ok(()),
        Some(true) => bail!(
            "{} is dynamically linked (it has a PT_INTERP header); the initramfs has no libc: \
             build it with RUSTFLAGS='-C target-feature=+crt-static' and an explicit --target",
            binary.display()
        ),
        None => bail!("{} is not a 64-bit little-endian ELF file", binary.display()),
    }
}

/// Reads the ELF64 program headers; `None` when the bytes are not a 64-bit little-endian ELF.
fn elf_has_interp(elf: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let phoff = usize::try_from(u64::from_le_bytes(elf.get(0x20..0x28)?.try_into().ok()?)).ok()?;
    let (phentsize, phnum) = (usize::from(u16_at(0x36)?), usize::from(u16_at(0x38)?));
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        if u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?) == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_dynamic_binaries() {
        // This test binary is dynamically linked.
        assert_eq!(elf_has_interp(&fs::read(std::env::current_exe().unwrap()).unwrap()), Some(true));
        // An ELF64 header with no program headers at all.
        let mut header = vec![0u8; 64];
        header[..6].copy_from_slice(b"\x7fELF\x02\x01");
        assert_eq!(elf_has_interp(&header), Some(false));
        assert_eq!(elf_has_interp(b"#!/bin/sh"), None);
    }
}
