//! The guest's initramfs: busybox, a static zc-trace, ethtool, the device modules and an
//! `/init` that mounts what zc-trace needs and runs each check between markers.
use std::{
    fmt::Write as _,
    fs::{self, File},
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use super::{
    checks::{CHECK_TIMEOUT_SECS, Check},
    debian::{Kernel, find_module},
    devices,
    userland::Userland,
};

/// Lays out the initramfs in `<work>/root` and packs it into `<work>/initramfs.cpio.gz`.
/// `extra_binaries` are copied into /bin beside zc-trace (test-only helpers); `console` is
/// the line the checks talk on (QEMU's stdout), e.g. `ttyS0`.
pub fn build_initramfs(
    work: &Path,
    kernel: &Kernel,
    userland: &Userland,
    zc_trace: &Path,
    extra_binaries: &[PathBuf],
    checks: &[Check],
    console: &str,
) -> anyhow::Result<PathBuf> {
    let _ = fs::remove_dir_all(work);
    let stage = &work.join("root");
    for dir in ["bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "root", "run", "mnt", "lib/modules"]
    {
        fs::create_dir_all(stage.join(dir))?;
    }
    fs::copy(&userland.busybox, stage.join("bin/busybox"))
        .with_context(|| format!("copying {} (busybox-static)", userland.busybox.display()))?;
    install_busybox_links(stage, &userland.applets)?;
    fs::copy(zc_trace, stage.join("bin/zc-trace")).with_context(|| format!("copying {}", zc_trace.display()))?;
    for binary in extra_binaries {
        let name = binary.file_name().context("a binary's path ends in a file name")?;
        fs::copy(binary, stage.join("bin").join(name)).with_context(|| format!("copying {}", binary.display()))?;
    }
    for (host, guest) in &userland.files {
        let dest = stage.join(guest.strip_prefix("/").unwrap_or(guest));
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir)?;
        }
        let _ = fs::remove_file(&dest); // busybox links may sit at the same path
        fs::copy(host, &dest).with_context(|| format!("copying {}", host.display()))?;
    }
    let modules = devices::modules_in_load_order(kernel)?
        .iter()
        .map(|name| add_module(stage, kernel, name))
        .collect::<anyhow::Result<Vec<_>>>()?;
    write_executable(&stage.join("init"), &init_script(checks, &modules, console))?;

    let cpio = work.join("initramfs.cpio");
    pack_cpio(stage, &cpio)?;
    crate::run::run_cmd({
        let mut cmd = Command::new("gzip");
        cmd.args(["-n", "-6"]).arg(&cpio);
        cmd
    })?;
    Ok(work.join("initramfs.cpio.gz"))
}

/// One symlink per applet, made on the host: `busybox --install` at boot would need /proc first.
fn install_busybox_links(stage: &Path, applets: &[String]) -> anyhow::Result<()> {
    for applet in applets {
        let link = stage.join(applet);
        if let Some(dir) = link.parent() {
            fs::create_dir_all(dir)?;
        }
        std::os::unix::fs::symlink("/bin/busybox", &link).with_context(|| format!("linking {}", link.display()))?;
    }
    Ok(())
}

/// Copies a module into `/lib/modules/<name>.ko`, decompressed (busybox insmod cannot read xz),
/// and returns its path in the guest.
fn add_module(stage: &Path, kernel: &Kernel, name: &str) -> anyhow::Result<String> {
    let source = find_module(kernel, name)?;
    let guest = format!("/lib/modules/{name}.ko");
    fs::write(stage.join(guest.trim_start_matches('/')), devices::module_bytes(&source)?)?;
    Ok(guest)
}

fn write_executable(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::write(path, content)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// `cpio -o -H newc` of everything under `stage`, owned by root whoever runs this.
fn pack_cpio(stage: &Path, cpio: &Path) -> anyhow::Result<()> {
    let mut entries = Vec::new();
    list_tree(stage, Path::new(""), &mut entries)?;
    let mut child = Command::new("cpio")
        .args(["--quiet", "-o", "-H", "newc", "-R", "0:0"])
        .current_dir(stage)
        .stdin(Stdio::piped())
        .stdout(File::create(cpio)?)
        .spawn()
        .context("running cpio")?;
    let mut stdin = child.stdin.take().expect("piped");
    for entry in &entries {
        writeln!(stdin, "{}", entry.display())?;
    }
    drop(stdin);
    let status = child.wait()?;
    if !status.success() {
        bail!("cpio failed ({status})");
    }
    Ok(())
}

/// Paths under `dir`, relative, parents before children (cpio must create directories first).
fn list_tree(base: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut names: Vec<_> =
        fs::read_dir(base.join(rel))?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let path = rel.join(name);
        out.push(path.clone());
        if fs::symlink_metadata(base.join(&path))?.is_dir() {
            list_tree(base, &path, out)?;
        }
    }
    Ok(())
}

/// Quotes one word for sh, unless it is plainly safe as it is.
pub fn sh_quote(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=+:,@".contains(c)) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The guest's /init: mounts, loopback up, modules, every check between markers, power off.
pub fn init_script(checks: &[Check], modules: &[String], console: &str) -> String {
    let mut s = format!(
        r#"#!/bin/sh
# Generated by `cargo xtask vm-test` (xtask/src/vm/initramfs.rs).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TMPDIR=/tmp
mount -t devtmpfs devtmpfs /dev
# The kernel's console is a line of its own (watched by the host); the checks talk on
# {console}. A virtio console (arm64) appears once its driver has probed: wait for it.
i=0; while [ ! -c /dev/{console} ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
exec </dev/{console} >/dev/{console} 2>&1
"#
    );
    s.push_str(
        r#"mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t securityfs securityfs /sys/kernel/security
mount -t bpf bpffs /sys/fs/bpf
mount -t tmpfs tmpfs /tmp
ip link set lo up
# Every kernel message to the kernel's console, whatever its level: a lockup's backtraces
# are printed at the default level, below what `quiet` lets through.
dmesg -n 8
echo "@@@ZC-INIT $(uname -r)@@@"

# Output is buffered in files so that stdout stays clean JSON and the markers start lines.
run_check() {
    name=$1; shift
    echo "@@@ZC-BEGIN $name@@@"
    timeout "$CHECK_TIMEOUT" "$@" >/tmp/zc-out 2>/tmp/zc-err
    rc=$?
    cat /tmp/zc-out
    echo "@@@ZC-STDERR $name@@@"
    cat /tmp/zc-err
    echo "@@@ZC-END $name rc=$rc@@@"
    rm -f /tmp/zc-out /tmp/zc-err
}
"#,
    );
    let _ = writeln!(s, "CHECK_TIMEOUT={CHECK_TIMEOUT_SECS}");
    for module in modules {
        let _ = writeln!(s, "insmod {0} || echo \"insmod {0} failed\"", sh_quote(module));
    }
    s.push_str(&devices::init_lines());
    for check in checks {
        let argv: Vec<String> = check.argv.iter().map(|a| sh_quote(a)).collect();
        let _ = writeln!(s, "run_check {} {}", sh_quote(&check.name), argv.join(" "));
    }
    s.push_str("run_check dmesg dmesg\necho \"@@@ZC-DONE@@@\"\npoweroff -f\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_runs_each_check_quoted_and_talks_on_its_own_line() {
        let checks = [Check { name: "a b".into(), argv: vec!["zc-trace".into(), "it's".into()] }];
        let init = init_script(&checks, &["/lib/modules/nvme.ko".into()], "hvc0");
        assert!(init.contains("run_check 'a b' zc-trace 'it'\\''s'\n"), "{init}");
        assert!(init.contains("exec </dev/hvc0 >/dev/hvc0"));
        assert!(init.contains("insmod /lib/modules/nvme.ko"));
        assert!(init.ends_with("poweroff -f\n"));
    }
}
