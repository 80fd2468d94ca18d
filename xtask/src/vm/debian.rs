//! Debian's kernel packages: choosing the newest image of a series that apt can download,
//! caching the .deb under `target/vm/cache/` and unpacking it.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use super::progress::say;

/// A Debian kernel series and how its package names look.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Series {
    /// Debian 11 (bullseye), from the bullseye suites ([`ensure_apt_sources`] adds them).
    V5_10,
    V6_1,
    V6_12,
}

/// The guest's architecture: Debian's name for it, which ends its kernel packages' names.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub fn debian(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
}

impl Series {
    pub fn label(self) -> &'static str {
        match self {
            Series::V5_10 => "5.10",
            Series::V6_1 => "6.1",
            Series::V6_12 => "6.12",
        }
    }

    /// What `apt-cache pkgnames` is asked for.
    fn name_prefix(self) -> &'static str {
        match self {
            Series::V5_10 => "linux-image-5.10.0-",
            Series::V6_1 => "linux-image-6.1.0-",
            Series::V6_12 => "linux-image-6.12.",
        }
    }

    /// The Debian suite that ships it, when it is not the host's own (bookworm).
    fn foreign_suite(self) -> Option<&'static str> {
        (self == Series::V5_10).then_some("bullseye")
    }

    /// The number that orders this series' generic image packages for `arch` (the ABI number
    /// of `linux-image-6.1.0-56-amd64`, the patch level of `linux-image-6.12.117+deb12-amd64`);
    /// `None` for the cloud/rt flavours, -dbg, -unsigned and meta packages.
    fn order_key(self, package: &str, arch: Arch) -> Option<u32> {
        let rest = package.strip_prefix(self.name_prefix())?.strip_suffix(arch.debian())?.strip_suffix('-')?;
        match self {
            Series::V5_10 | Series::V6_1 => rest.parse().ok(),
            Series::V6_12 => {
                let (patch, suffix) = rest.split_once('+').unwrap_or((rest, ""));
                suffix.chars().all(|c| c.is_ascii_alphanumeric()).then(|| patch.parse().ok())?
            }
        }
    }
}

/// A kernel image package chosen from the apt sources.
pub struct KernelPackage {
    pub name: String,
    pub arch: Arch,
    pub version: String,
    /// The suite it comes from, e.g. `bookworm-security/main`.
    pub suite: String,
}

impl KernelPackage {
    /// `uname -r` of the kernel inside, e.g. `6.12.117+deb12-amd64`; also the name of its
    /// results folder.
    pub fn release(&self) -> &str {
        self.name.strip_prefix("linux-image-").unwrap_or(&self.name)
    }
}

pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.stderr(Stdio::inherit()).output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The apt sources the chosen kernels come from: Debian 11's suites for 5.10 (pinned low, so
/// that they never replace a host package), the arm64 architecture for arm64 guests. Added
/// once; `apt-get update` runs only when something was added.
pub fn ensure_apt_sources(series: &[Series], arch: Arch) -> anyhow::Result<()> {
    let mut changed = false;
    for suite in series.iter().filter_map(|s| s.foreign_suite()) {
        let list = PathBuf::from(format!("/etc/apt/sources.list.d/zc-trace-{suite}.sources"));
        if list.exists() {
            continue;
        }
        say(&format!("adding Debian's {suite} suites to apt's sources (for its kernel package)"));
        let keyring = "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg";
        fs::write(
            &list,
            format!(
                "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: {suite}\nComponents: main\n{keyring}\n\n\
                 Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: {suite}-security\nComponents: main\n{keyring}\n"
            ),
        )
        .with_context(|| format!("writing {} (vm-test adds apt sources as root)", list.display()))?;
        fs::write(
            format!("/etc/apt/preferences.d/zc-trace-{suite}.pref"),
            format!(
                "Package: *\nPin: release n={suite}\nPin-Priority: 100\n\nPackage: *\nPin: release n={suite}-security\nPin-Priority: 100\n"
            ),
        )?;
        changed = true;
    }
    if arch != Arch::Amd64 {
        let foreign = output(Command::new("dpkg").arg("--print-foreign-architectures"))?;
        if !foreign.lines().any(|a| a == arch.debian()) {
            say(&format!("adding the {} architecture to dpkg (for its kernel and busybox packages)", arch.debian()));
            crate::run::run_cmd({
                let mut cmd = Command::new("dpkg");
                cmd.args(["--add-architecture", arch.debian()]);
                cmd
            })?;
            changed = true;
        }
    }
    if changed {
        crate::run::run_cmd({
            let mut cmd = Command::new("apt-get");
            cmd.args(["-q", "update"]);
            cmd
        })?;
    }
    Ok(())
}

/// The newest generic image of a series for `arch` that apt can actually download.
pub fn newest_kernel(series: Series, arch: Arch) -> anyhow::Result<KernelPackage> {
    let names = output(Command::new("apt-cache").args(["pkgnames", series.name_prefix()]))?;
    let mut candidates: Vec<(u32, &str)> =
        names.lines().filter_map(|name| Some((series.order_key(name, arch)?, name))).collect();
    candidates.sort_unstable_by(|a, b| b.cmp(a));
    for (_, name) in candidates {
        if let Some((version, suite)) = candidate_version(&format!("{name}:{}", arch.debian()))? {
            return Ok(KernelPackage { name: name.to_string(), arch, version, suite });
        }
    }
    let policy = output(Command::new("apt-cache").arg("policy")).unwrap_or_default();
    let backports = if policy.contains("bookworm-backports") {
        "bookworm-backports is configured but has none either"
    } else {
        "bookworm-backports is NOT configured (Debian 12 ships 6.12 in bookworm-security; older point \
         releases only in bookworm-backports: add `deb http://deb.debian.org/debian bookworm-backports main` \
         to /etc/apt/sources.list.d/ and run `apt-get update`)"
    };
    bail!(
        "no Debian {} kernel: no {}*-{} package with a download candidate in the configured apt \
         sources; {backports}",
        series.label(),
        series.name_prefix(),
        arch.debian()
    )
}

/// `apt-cache policy`'s candidate version of a package and the suite it comes from.
fn candidate_version(package: &str) -> anyhow::Result<Option<(String, String)>> {
    let policy = output(Command::new("apt-cache").args(["policy", package]))?;
    let Some(version) = policy.lines().find_map(|l| l.trim().strip_prefix("Candidate: ")) else {
        return Ok(None);
    };
    if version == "(none)" {
        return Ok(None);
    }
    // The version table lists `[***] <version> <prio>`, then one ` <prio> <url> <suite> ...` line
    // per source of that version.
    let mut lines = policy
        .lines()
        .map(str::trim)
        .skip_while(|l| l.trim_start_matches("*** ").split_whitespace().next() != Some(version));
    let suite = lines.nth(1).and_then(|l| l.split_whitespace().nth(2)).unwrap_or("(unknown suite)").to_string();
    Ok(Some((version.to_string(), suite)))
}

/// The package's .deb in the cache, downloaded first when it is not there.
pub fn fetch_deb(cache: &Path, package: &KernelPackage) -> anyhow::Result<PathBuf> {
    let prefix = format!("{}_", package.name);
    if let Some(deb) = find_deb(cache, &prefix)? {
        return Ok(deb);
    }
    // Download into a scratch directory and move the finished file: an interrupted download
    // must not look cached.
    let partial = cache.join(".partial");
    let _ = fs::remove_dir_all(&partial);
    fs::create_dir_all(&partial)?;
    say(&format!("downloading {} {}", package.name, package.version));
    crate::run::run_cmd({
        let mut cmd = Command::new("apt-get");
        // As root apt drops to the `_apt` user, which cannot write here; it would warn and go on.
        cmd.args(["-q", "-o", "APT::Sandbox::User=root", "download"])
            .arg(format!("{}:{}={}", package.name, package.arch.debian(), package.version))
            .current_dir(&partial);
        cmd
    })?;
    let downloaded = find_deb(&partial, &prefix)?.context("apt-get download left no .deb")?;
    let deb = cache.join(downloaded.file_name().expect("a file"));
    fs::rename(&downloaded, &deb)?;
    fs::remove_dir_all(&partial)?;
    Ok(deb)
}

fn find_deb(dir: &Path, prefix: &str) -> anyhow::Result<Option<PathBuf>> {
    if !dir.exists() {
        return Ok(None);
    }
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) && name.ends_with(".deb") {
            return Ok(Some(dir.join(name)));
        }
    }
    Ok(None)
}

/// An unpacked kernel package.
pub struct Kernel {
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>` inside the unpacked package.
    pub modules: PathBuf,
}

pub fn unpack_kernel(deb: &Path, into: &Path, release: &str) -> anyhow::Result<Kernel> {
    let kernel = Kernel {
        vmlinuz: into.join(format!("boot/vmlinuz-{release}")),
        modules: into.join(format!("lib/modules/{release}")),
    };
    if kernel.vmlinuz.exists() {
        return Ok(kernel);
    }
    // Unpack beside and rename, so that a half-unpacked tree never looks complete.
    let partial = PathBuf::from(format!("{}.partial", into.display()));
    let _ = fs::remove_dir_all(&partial);
    crate::run::run_cmd({
        let mut cmd = Command::new("dpkg-deb");
        cmd.arg("-x").arg(deb).arg(&partial);
        cmd
    })?;
    let _ = fs::remove_dir_all(into);
    fs::rename(&partial, into)?;
    if !kernel.vmlinuz.exists() {
        bail!("{} has no boot/vmlinuz-{release}", deb.display());
    }
    Ok(kernel)
}

/// The file of a module in the unpacked package; Debian compresses most of them with xz.
/// Module names use `-` and `_` interchangeably, so compare with both folded to `_`.
pub fn find_module(kernel: &Kernel, name: &str) -> anyhow::Result<PathBuf> {
    fn walk(dir: &Path, wanted: &str) -> anyhow::Result<Option<PathBuf>> {
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                if let Some(found) = walk(&path, wanted)? {
                    return Ok(Some(found));
                }
                continue;
            }
            let file = path.file_name().unwrap_or_default().to_string_lossy().replace('-', "_");
            let stem = file.strip_suffix(".xz").unwrap_or(&file);
            if stem.strip_suffix(".ko") == Some(wanted) {
                return Ok(Some(path));
            }
        }
        Ok(None)
    }
    walk(&kernel.modules.join("kernel"), &name.replace('-', "_"))?
        .with_context(|| format!("module {name} is not in {}", kernel.modules.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_order_and_filter() {
        let amd64 = Arch::Amd64;
        assert_eq!(Series::V5_10.order_key("linux-image-5.10.0-46-amd64", amd64), Some(46));
        assert_eq!(Series::V5_10.order_key("linux-image-5.10.0-46-rt-amd64", amd64), None);
        assert_eq!(Series::V6_1.order_key("linux-image-6.1.0-56-amd64", amd64), Some(56));
        assert_eq!(Series::V6_1.order_key("linux-image-6.1.0-56-cloud-amd64", amd64), None);
        assert_eq!(Series::V6_1.order_key("linux-image-6.1.0-56-amd64-dbg", amd64), None);
        assert_eq!(Series::V6_12.order_key("linux-image-6.12.117+deb12-amd64", amd64), Some(117));
        assert_eq!(Series::V6_12.order_key("linux-image-6.12.117+deb12-rt-amd64", amd64), None);
        assert_eq!(Series::V6_12.order_key("linux-image-6.12-amd64", amd64), None);
        assert_eq!(Series::V6_12.order_key("linux-image-6.12.117+deb12-amd64", Arch::Arm64), None);
        assert_eq!(Series::V6_12.order_key("linux-image-6.12.117+deb12-arm64", Arch::Arm64), Some(117));
        assert_eq!(Series::V6_12.order_key("linux-image-6.12.117+deb12-cloud-arm64", Arch::Arm64), None);
    }
}
