//! The guest's tools besides zc-trace, for its architecture: busybox (the shell and every
//! command `/init` runs) and ethtool (the classic checks take scatter-gather away from the
//! sending NIC with it; busybox has no ethtool applet), with the shared libraries and the
//! dynamic loader ethtool needs, copied to the same paths in the initramfs.
//!
//! amd64 guests get the host's own (Debian amd64, like them). For arm64 the same Debian
//! packages of the arm64 architecture are downloaded with `apt-get download` into
//! `target/vm/cache/` and unpacked there, never installed: dpkg knows the architecture
//! (`debian::ensure_apt_sources`) only so that apt can download them.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use super::{
    debian::{Arch, output},
    progress::say,
};
use crate::setup;

/// What goes into the initramfs besides zc-trace.
pub struct Userland {
    /// A static busybox for the guest.
    pub busybox: PathBuf,
    /// Its applets as `busybox --list-full` prints them (`bin/sh`, `sbin/ip`, ...).
    pub applets: Vec<String>,
    /// ethtool and what it loads: (file on the host, absolute path in the guest).
    pub files: Vec<(PathBuf, PathBuf)>,
}

/// The host's busybox-static (installed by `host::ensure_host_packages`).
const HOST_BUSYBOX: &str = "/bin/busybox";

/// Resolves (and for arm64 downloads) the guest's tools. Runs once per vm-test, before the
/// guests are prepared in parallel: two apt-get runs at once would fight over their lock.
pub fn prepare(arch: Arch, cache: &Path) -> anyhow::Result<Userland> {
    // Debian builds busybox-static with one configuration for every architecture, so the
    // host's binary lists the applets of the arm64 one too (which cannot run here).
    let applets = output(Command::new(HOST_BUSYBOX).arg("--list-full"))?
        .lines()
        .filter(|l| !l.is_empty() && *l != "bin/busybox")
        .map(String::from)
        .collect();
    match arch {
        Arch::Amd64 => Ok(Userland { busybox: HOST_BUSYBOX.into(), applets, files: host_ethtool()? }),
        Arch::Arm64 => {
            let root = unpack_packages(cache, arch, &ARM64_PACKAGES)?;
            let ethtool = ["sbin/ethtool", "usr/sbin/ethtool"]
                .into_iter()
                .find(|p| root.join(p).exists())
                .context("the ethtool package has no sbin/ethtool")?;
            Ok(Userland {
                busybox: root.join("bin/busybox"),
                applets,
                files: with_libraries(&root, Path::new(ethtool), "aarch64-linux-gnu")?,
            })
        }
    }
}

/// Debian's ethtool on the host with the shared libraries it needs and the dynamic loader,
/// as `ldd` lists them (resolved from symlinks on the host: `libfoo.so.1 -> libfoo.so.1.2.3`
/// is copied as the name the loader asks for).
fn host_ethtool() -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    let binary = ["/usr/sbin/ethtool", "/sbin/ethtool"].into_iter().map(Path::new).find(|p| p.exists());
    let binary = match binary {
        Some(b) => b.to_path_buf(),
        None => {
            say("installing ethtool (copied into the guest to toggle scatter-gather)");
            setup::apt_install(&["ethtool"])?;
            PathBuf::from("/usr/sbin/ethtool")
        }
    };
    let listing = output(Command::new("ldd").arg(&binary))?;
    let libraries = listing.lines().filter_map(|line| {
        // `libmnl.so.0 => /lib/x86_64-linux-gnu/libmnl.so.0 (0x...)` or
        // `/lib64/ld-linux-x86-64.so.2 (0x...)`; linux-vdso has no file.
        let path = line.split("=>").last()?.split_whitespace().next()?;
        path.starts_with('/').then(|| PathBuf::from(path))
    });
    Ok(std::iter::once(binary).chain(libraries).map(|p| (p.clone(), p)).collect())
}

/// The arm64 packages the guest's tools come from: busybox, ethtool and the libraries
/// ethtool links (libmnl, glibc with its dynamic loader).
const ARM64_PACKAGES: [&str; 4] = ["busybox-static", "ethtool", "libmnl0", "libc6"];

/// Downloads (once per version) and unpacks `packages` of `arch` into one directory,
/// `<cache>/userland-<arch>`, made afresh each time (a second or less): nothing stale from
/// an older version stays in it.
fn unpack_packages(cache: &Path, arch: Arch, packages: &[&str]) -> anyhow::Result<PathBuf> {
    let root = cache.join(format!("userland-{}", arch.debian()));
    let _ = fs::remove_dir_all(&root);
    for package in packages {
        let deb = fetch(cache, package, arch)?;
        crate::run::run_cmd({
            let mut cmd = Command::new("dpkg-deb");
            cmd.arg("-x").arg(&deb).arg(&root);
            cmd
        })?;
    }
    Ok(root)
}

/// `<cache>/<package>_<version>_<arch>.deb` of apt's candidate version, downloaded when it
/// is not there yet.
fn fetch(cache: &Path, package: &str, arch: Arch) -> anyhow::Result<PathBuf> {
    let qualified = format!("{package}:{}", arch.debian());
    let policy = output(Command::new("apt-cache").args(["policy", &qualified]))?;
    let version =
        policy.lines().find_map(|l| l.trim().strip_prefix("Candidate: ")).filter(|v| *v != "(none)").with_context(
            || format!("apt has no {qualified} to download (is the {} architecture added?)", arch.debian()),
        )?;
    // apt-get names the file after the version, with the epoch's colon escaped.
    let deb = cache.join(format!("{package}_{}_{}.deb", version.replace(':', "%3a"), arch.debian()));
    if deb.exists() {
        return Ok(deb);
    }
    // Downloaded into a scratch directory and moved: an interrupted download must not look
    // cached.
    let partial = cache.join(".partial-userland");
    let _ = fs::remove_dir_all(&partial);
    fs::create_dir_all(&partial)?;
    say(&format!("downloading {qualified} {version} (for the guest, not installed)"));
    crate::run::run_cmd({
        let mut cmd = Command::new("apt-get");
        // As root apt drops to the `_apt` user, which cannot write here; it would warn and go on.
        cmd.args(["-q", "-o", "APT::Sandbox::User=root", "download"])
            .arg(format!("{qualified}={version}"))
            .current_dir(&partial);
        cmd
    })?;
    let downloaded = partial.join(deb.file_name().expect("a file name"));
    if !downloaded.exists() {
        bail!("apt-get download {qualified}={version} left no {}", downloaded.display());
    }
    fs::rename(&downloaded, &deb)?;
    fs::remove_dir_all(&partial)?;
    Ok(deb)
}

/// `binary` (a path in `root`) with the libraries it needs, transitively, and its dynamic
/// loader, found in `root`'s multiarch library directories: (file on the host, path in the
/// guest). The files are read by the cross binutils' readelf: they cannot run here, so `ldd`
/// cannot list them.
fn with_libraries(root: &Path, binary: &Path, multiarch: &str) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    let lib_dirs = [format!("lib/{multiarch}"), format!("usr/lib/{multiarch}")];
    let mut files = vec![(root.join(binary), Path::new("/").join(binary))];
    let mut next = 0;
    while next < files.len() {
        let (host, _) = files[next].clone();
        next += 1;
        let (interp, needed) = dynamic_needs(&host, multiarch)?;
        let interp = interp.map(|path| (root.join(path.trim_start_matches('/')), PathBuf::from(path)));
        let libraries = needed.into_iter().map(|name| {
            lib_dirs
                .iter()
                .map(|dir| (root.join(dir).join(&name), Path::new("/").join(dir).join(&name)))
                .find(|(host, _)| host.exists())
                .with_context(|| format!("{} needs {name}, which no unpacked package has", host.display()))
        });
        for file in interp.into_iter().map(Ok).chain(libraries) {
            let file = file?;
            if !files.iter().any(|(_, guest)| *guest == file.1) {
                files.push(file);
            }
        }
    }
    Ok(files)
}

/// A dynamically linked ELF file's program interpreter and `DT_NEEDED` libraries.
fn dynamic_needs(file: &Path, multiarch: &str) -> anyhow::Result<(Option<String>, Vec<String>)> {
    let listing = output(Command::new(format!("{multiarch}-readelf")).args(["-W", "-l", "-d"]).arg(file))?;
    Ok(parse_readelf(&listing))
}

/// From `readelf -l -d`: `[Requesting program interpreter: /lib/ld-linux-aarch64.so.1]` and
/// `0x0000000000000001 (NEEDED)  Shared library: [libc.so.6]`.
fn parse_readelf(listing: &str) -> (Option<String>, Vec<String>) {
    let bracketed = |line: &str, after: &str| {
        let rest = &line[line.find(after)? + after.len()..];
        Some(rest.trim().trim_start_matches('[').split(']').next()?.to_string())
    };
    let interp = listing.lines().find_map(|l| bracketed(l, "Requesting program interpreter:"));
    let needed = listing.lines().filter(|l| l.contains("(NEEDED)")).filter_map(|l| bracketed(l, "Shared library:"));
    (interp, needed.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readelf_listing_gives_the_loader_and_libraries() {
        let listing = "\
Program Headers:
  INTERP         0x000238 0x0000000000000238 0x0000000000000238 0x00001b 0x00001b R   0x1
      [Requesting program interpreter: /lib/ld-linux-aarch64.so.1]
Dynamic section at offset 0x3fd20 contains 29 entries:
  Tag        Type                         Name/Value
 0x0000000000000001 (NEEDED)             Shared library: [libmnl.so.0]
 0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]
 0x000000000000000c (INIT)               0x4a10
";
        let (interp, needed) = parse_readelf(listing);
        assert_eq!(interp.as_deref(), Some("/lib/ld-linux-aarch64.so.1"));
        assert_eq!(needed, ["libmnl.so.0", "libc.so.6"]);
        assert_eq!(parse_readelf("Dynamic section: none"), (None, vec![]));
    }
}
