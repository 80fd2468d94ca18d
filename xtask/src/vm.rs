//! `cargo xtask vm-test`: runs zc-trace on the Debian kernels it must support, in QEMU.
//!
//! The host kernel allows tracepoints only (see ../shared/KERNEL-NOTES.md), so fentry and kprobe
//! code paths can only be exercised in a guest. Per kernel:
//!
//! 1. the newest `linux-image-6.1.0-*-amd64` / `linux-image-6.12.*-amd64` is downloaded with
//!    `apt-get download` (kept in `target/vm/cache/`) and unpacked with `dpkg-deb -x`;
//! 2. a gzip'ed newc initramfs is built: busybox-static, a statically linked zc-trace and an
//!    `/init` script that mounts what zc-trace needs and runs every check of [`checks`];
//! 3. QEMU (TCG: nested KVM dies in the decompressor on our machines) boots it with an emulated
//!    NVMe disk (ext4, the checks' TMPDIR) and two e1000 NICs joined by a QEMU hub, one of them
//!    in a network namespace of its own (see [`devices`]); no other network backend, nothing
//!    leaves QEMU. The tier checks use loopback TCP; the classic-story checks cross the NICs;
//! 4. the serial console is parsed: each check's output sits between `@@@ZC-BEGIN <name>@@@` and
//!    `@@@ZC-END <name> rc=<code>@@@` and is saved under `target/vm/results/<kernel-release>/`.
use std::{
    collections::HashMap,
    fmt::Write as _,
    fs::{self, File},
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::ValueEnum;

use crate::setup;

pub(crate) mod devices;

/// One command run inside every guest. Its stdout is saved as `<name>.out` (and `<name>.json`
/// when it parses), its stderr as `<name>.err`; a non-zero exit code fails the run.
struct Check {
    name: String,
    argv: Vec<String>,
}

impl Check {
    fn new(name: impl Into<String>, argv: &[&str]) -> Self {
        Check { name: name.into(), argv: argv.iter().map(|s| s.to_string()).collect() }
    }
}

/// The checks, in the order the guest runs them. Extend here.
fn checks() -> Vec<Check> {
    let mut checks = vec![Check::new("doctor", &["zc-trace", "doctor", "--json"])];
    for tier in ["auto", "fentry", "kprobe", "tracepoint"] {
        checks.push(Check::new(
            format!("lab-{tier}"),
            &["zc-trace", "lab", "--json", "--size", "8MiB", "--chunk", "64KiB", "--sink", "tcp", "--probe-tier", tier],
        ));
    }
    checks.push(Check::new("syscalls", &["zc-trace", "syscalls", "--json", "--", "/bin/busybox", "true"]));
    checks.extend(classic_checks());
    checks
}

/// The classic zero-copy story over real (emulated) devices: the source is read cold from
/// the NVMe disk and sent over the e1000 path to a receiver in the other namespace, first
/// with scatter-gather on the sending NIC, then with it off (sendfile must then copy).
/// `vm_checks::verify_classic` asserts on what they report.
fn classic_checks() -> Vec<Check> {
    let lab = |strategies: &str| {
        [
            "zc-trace", "lab", "--json", "--size", CLASSIC_SIZE, "--chunk", CLASSIC_CHUNK, "--sink", "tcp", "--cold",
            "--strategies", strategies, "--receiver-netns", devices::RX_NETNS, "--receiver-addr", devices::RX_ADDR,
        ]
        .map(String::from)
        .to_vec()
    };
    let nic = |args: &[&str]| ["ethtool"].iter().chain(args).map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        Check { name: "nic-driver".into(), argv: nic(&["-i", devices::TX_NIC]) },
        Check { name: "classic-sg-on".into(), argv: lab("read-write,mmap-write,sendfile") },
        Check { name: "nic-sg-off".into(), argv: nic(&["-K", devices::TX_NIC, "sg", "off"]) },
        Check { name: "nic-features".into(), argv: nic(&["-k", devices::TX_NIC]) },
        Check { name: "classic-sg-off".into(), argv: lab("sendfile") },
    ]
}

/// The classic runs' file size and chunk: 128 data calls, small enough for TCG.
pub const CLASSIC_SIZE: &str = "8MiB";
pub const CLASSIC_CHUNK: &str = "64KiB";

/// Inside the guest each check is stopped after this long, so that one hanging check still
/// lets the others run and report (the host-side `--timeout` covers the whole boot).
const CHECK_TIMEOUT_SECS: u64 = 600;

/// Host packages the runner needs, with the command that shows each is there.
const HOST_PACKAGES: [(&str, &str); 5] = [
    ("qemu-system-x86", "/usr/bin/qemu-system-x86_64"),
    ("busybox-static", "/bin/busybox"),
    ("cpio", "/usr/bin/cpio"),
    ("xz-utils", "/usr/bin/xz"),
    ("gzip", "/bin/gzip"),
];

const MARK: &str = "@@@ZC-";

#[derive(clap::Args)]
pub struct VmTestArgs {
    /// Which kernel series to boot.
    #[arg(long, value_enum, default_value = "all")]
    kernel: KernelChoice,
    /// Keep the unpacked kernels and initramfs under target/vm/{kernels,work} and print the QEMU
    /// command that boots them again (the downloaded .debs and the results are always kept).
    #[arg(long)]
    keep: bool,
    /// Kill QEMU after this many minutes per kernel (everything runs under TCG, so it is slow).
    #[arg(long, value_name = "MINUTES", default_value_t = 15)]
    timeout: u64,
    /// Use this statically linked zc-trace instead of building one.
    #[arg(long, value_name = "PATH")]
    zc_trace: Option<PathBuf>,
}

impl VmTestArgs {
    /// What `cargo xtask test` runs: every kernel, default timeout, a fresh static build.
    pub fn all_kernels() -> Self {
        VmTestArgs { kernel: KernelChoice::All, keep: false, timeout: 15, zc_trace: None }
    }
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum KernelChoice {
    #[value(name = "6.1")]
    V6_1,
    #[value(name = "6.12")]
    V6_12,
    All,
}

/// A Debian kernel series and how its package names look.
#[derive(Clone, Copy)]
enum Series {
    V6_1,
    V6_12,
}

impl Series {
    fn label(self) -> &'static str {
        match self {
            Series::V6_1 => "6.1",
            Series::V6_12 => "6.12",
        }
    }

    /// What `apt-cache pkgnames` is asked for.
    fn name_prefix(self) -> &'static str {
        match self {
            Series::V6_1 => "linux-image-6.1.0-",
            Series::V6_12 => "linux-image-6.12.",
        }
    }

    /// The number that orders this series' generic amd64 image packages (the ABI number of
    /// `linux-image-6.1.0-56-amd64`, the patch level of `linux-image-6.12.117+deb12-amd64`);
    /// `None` for the cloud/rt flavours, -dbg, -unsigned and meta packages.
    fn order_key(self, package: &str) -> Option<u32> {
        let rest = package.strip_prefix(self.name_prefix())?.strip_suffix("-amd64")?;
        match self {
            Series::V6_1 => rest.parse().ok(),
            Series::V6_12 => {
                let (patch, suffix) = rest.split_once('+').unwrap_or((rest, ""));
                suffix.chars().all(|c| c.is_ascii_alphanumeric()).then(|| patch.parse().ok())?
            }
        }
    }
}

/// A kernel image package chosen from the apt sources.
struct KernelPackage {
    name: String,
    version: String,
    /// The suite it comes from, e.g. `bookworm-security/main`.
    suite: String,
}

impl KernelPackage {
    /// `uname -r` of the kernel inside, e.g. `6.12.117+deb12-amd64`.
    fn release(&self) -> &str {
        self.name.strip_prefix("linux-image-").unwrap_or(&self.name)
    }
}

/// Where everything lives, all under `target/vm/`.
struct Dirs {
    cache: PathBuf,
    kernels: PathBuf,
    work: PathBuf,
    results: PathBuf,
}

impl Dirs {
    fn new(root: &Path) -> Self {
        let vm = root.join("target/vm");
        Dirs { cache: vm.join("cache"), kernels: vm.join("kernels"), work: vm.join("work"), results: vm.join("results") }
    }
}

/// What one kernel's run produced, for the summary.
struct KernelRun {
    release: String,
    boot_secs: Option<f64>,
    total_secs: f64,
    results: Vec<CheckResult>,
    /// Why the run as a whole failed (timeout, missing markers, QEMU error), if it did.
    problems: Vec<String>,
    doctor_summary: Option<String>,
}

struct CheckResult {
    name: String,
    outcome: Outcome,
}

enum Outcome {
    /// `output`: the first lines of stderr (or stdout), kept when rc != 0.
    Ended { rc: i32, secs: f64, output: Option<String> },
    /// BEGIN without END: still running when QEMU stopped, or the guest died during it.
    Unfinished,
    /// No BEGIN: the guest never got to it.
    NotRun,
}

impl CheckResult {
    fn passed(&self) -> bool {
        matches!(self.outcome, Outcome::Ended { rc: 0, .. })
    }

    /// Why it failed, in one or more lines; `None` when it passed.
    fn failure(&self) -> Option<String> {
        match &self.outcome {
            Outcome::Ended { rc: 0, .. } => None,
            Outcome::Ended { rc, output, .. } => {
                Some(format!("rc={rc}\n{}", output.as_deref().unwrap_or_default()).trim_end().to_string())
            }
            Outcome::Unfinished => Some("started but never ended (QEMU stopped, or the guest died)".into()),
            Outcome::NotRun => Some("never started".into()),
        }
    }
}

pub fn run(root: &Path, args: &VmTestArgs) -> anyhow::Result<()> {
    setup::ensure()?;
    ensure_host_packages()?;
    let zc_trace = match &args.zc_trace {
        Some(path) => path.clone(),
        None => build_static_zc_trace(root)?,
    };
    ensure_static(&zc_trace)?;

    let series: &[Series] = match args.kernel {
        KernelChoice::V6_1 => &[Series::V6_1],
        KernelChoice::V6_12 => &[Series::V6_12],
        KernelChoice::All => &[Series::V6_1, Series::V6_12],
    };
    // Resolve every kernel before booting any, so a missing suite is reported at once.
    let packages = series.iter().map(|&s| newest_kernel(s)).collect::<anyhow::Result<Vec<_>>>()?;

    let dirs = Dirs::new(root);
    let timeout = Duration::from_secs(args.timeout * 60);
    let mut runs: Vec<KernelRun> = Vec::new();
    for package in &packages {
        say(&format!("{}: {} {} from {}", package.release(), package.name, package.version, package.suite));
        // One kernel failing to download or boot must not hide the other kernel's results.
        let attempt = || {
            run_kernel(&dirs, package, &zc_trace, timeout, args.keep).unwrap_or_else(|err| {
                let results = checks().into_iter().map(|c| CheckResult { name: c.name, outcome: Outcome::NotRun }).collect();
                let problems = vec![format!("{err:#}")];
                KernelRun { release: package.release().to_string(), boot_secs: None, total_secs: 0.0, results, problems, doctor_summary: None }
            })
        };
        let mut run = attempt();
        // A guest that died mid-run (seen once in four runs: an int3 in __schedule while the
        // kernel patches its own code under TCG emulation) says nothing about zc-trace: boot
        // it once more. A check that ran and failed is never retried.
        if let Some(why) = died(&run) {
            say(&format!("{}: the guest died ({why}); booting it once more", run.release));
            run = attempt();
            if let Some(why) = died(&run) {
                run.problems.push(format!("the guest died twice: {why}"));
            }
        }
        runs.push(run);
    }
    print_summary(&runs);

    // What the runs mean: tiers agree, the fentry tier observes; then the README's table.
    for run in runs.iter_mut().filter(|r| r.problems.is_empty()) {
        let dir = dirs.results.join(&run.release);
        for problem in crate::vm_checks::verify(&dir) {
            run.problems.push(format!("check: {problem}"));
        }
        for problem in crate::vm_checks::verify_classic(&dir) {
            run.problems.push(format!("classic: {problem}"));
        }
    }
    // The README's classic story comes from the newest kernel (the one with dma:* tracepoints),
    // when everything on it passed.
    if let Some(run) = runs.iter().rev().find(|r| r.release.starts_with("6.12"))
        && run.problems.is_empty()
        && run.results.iter().all(CheckResult::passed)
    {
        match crate::vm_checks::classic_table(&dirs.results.join(&run.release), &run.release) {
            Ok(table) => {
                crate::vm_checks::update_readme_classic(&root.join("README.md"), &table)?;
                say("README.md classic-story table updated");
            }
            Err(e) => say(&format!("classic-story table not written: {e}")),
        }
    }
    if runs.iter().all(|r| r.problems.is_empty() && r.results.iter().all(CheckResult::passed)) && series.len() == 2 {
        let mut kernels = Vec::new();
        if let Ok(out) = Command::new(&zc_trace).args(["doctor", "--json"]).output()
            && let Ok(v) = serde_json::from_slice(&out.stdout)
        {
            kernels.push((format!("host {}", kernel_release()), v));
        }
        for run in &runs {
            let path = dirs.results.join(&run.release).join("doctor.json");
            if let Ok(v) = fs::read_to_string(&path).map(|t| serde_json::from_str(&t).unwrap_or_default()) {
                kernels.push((run.release.clone(), v));
            }
        }
        crate::vm_checks::update_readme(&root.join("README.md"), &crate::vm_checks::compat_table(&kernels))?;
        say("README.md compatibility table updated");
    }

    let failures: Vec<String> = runs
        .iter()
        .flat_map(|r| {
            let failed_checks = r.results.iter().filter(|c| !c.passed()).map(move |c| {
                let why = c.failure().unwrap_or_default();
                format!("{}: {}: {}", r.release, c.name, why.lines().next().unwrap_or_default())
            });
            r.problems.iter().map(move |p| format!("{}: {p}", r.release)).chain(failed_checks)
        })
        .collect();
    if !failures.is_empty() {
        bail!("vm-test failed:\n  {}", failures.join("\n  "));
    }
    say("all checks passed");
    Ok(())
}

fn say(what: &str) {
    eprintln!("xtask vm-test: {what}");
}

// ---------------------------------------------------------------------------------------------
// Host preparation

fn ensure_host_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> =
        HOST_PACKAGES.iter().filter(|(_, file)| !Path::new(file).exists()).map(|(package, _)| *package).collect();
    if missing.is_empty() {
        return Ok(());
    }
    say(&format!("installing {} (needed to build and boot the test VMs)", missing.join(" ")));
    setup::apt_install(&missing)
}

/// Builds zc-trace with glibc linked in statically: the initramfs has no dynamic loader or libc.
fn build_static_zc_trace(root: &Path) -> anyhow::Result<PathBuf> {
    let target = "x86_64-unknown-linux-gnu";
    say("building a static zc-trace");
    let mut cmd = crate::cargo(&["build", "--release", "--package", "zc-trace", "--bins", "--target", target]);
    // With an explicit --target, RUSTFLAGS reach only the target crates, not build scripts and
    // proc macros (which would not link statically). CARGO_ENCODED_RUSTFLAGS would win over
    // RUSTFLAGS, so it must not leak in from the environment.
    cmd.env("RUSTFLAGS", "-C target-feature=+crt-static").env_remove("CARGO_ENCODED_RUSTFLAGS");
    crate::run_cmd(cmd)?;
    Ok(root.join("target").join(target).join("release/zc-trace"))
}

/// A binary without a PT_INTERP program header needs no dynamic loader (static or static-pie).
fn ensure_static(binary: &Path) -> anyhow::Result<()> {
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

// ---------------------------------------------------------------------------------------------
// Kernels from the apt sources

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.stderr(Stdio::inherit()).output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The newest generic amd64 image of a series that apt can actually download.
fn newest_kernel(series: Series) -> anyhow::Result<KernelPackage> {
    let names = output(Command::new("apt-cache").args(["pkgnames", series.name_prefix()]))?;
    let mut candidates: Vec<(u32, &str)> =
        names.lines().filter_map(|name| Some((series.order_key(name)?, name))).collect();
    candidates.sort_unstable_by(|a, b| b.cmp(a));
    for (_, name) in candidates {
        if let Some((version, suite)) = candidate_version(name)? {
            return Ok(KernelPackage { name: name.to_string(), version, suite });
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
        "no Debian {} kernel: no {}*-amd64 package with a download candidate in the configured apt \
         sources; {backports}",
        series.label(),
        series.name_prefix()
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
    let mut lines = policy.lines().map(str::trim).skip_while(|l| {
        l.trim_start_matches("*** ").split_whitespace().next() != Some(version)
    });
    let suite = lines
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("(unknown suite)")
        .to_string();
    Ok(Some((version.to_string(), suite)))
}

/// The package's .deb in the cache, downloaded first when it is not there.
fn fetch_deb(cache: &Path, package: &KernelPackage) -> anyhow::Result<PathBuf> {
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
    crate::run_cmd({
        let mut cmd = Command::new("apt-get");
        // As root apt drops to the `_apt` user, which cannot write here; it would warn and go on.
        cmd.args(["-q", "-o", "APT::Sandbox::User=root", "download"])
            .arg(format!("{}={}", package.name, package.version))
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
struct Kernel {
    vmlinuz: PathBuf,
    /// `lib/modules/<release>` inside the unpacked package.
    modules: PathBuf,
}

fn unpack_kernel(deb: &Path, into: &Path, release: &str) -> anyhow::Result<Kernel> {
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
    crate::run_cmd({
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
fn find_module(kernel: &Kernel, name: &str) -> anyhow::Result<PathBuf> {
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

// ---------------------------------------------------------------------------------------------
// The initramfs

/// Lays out the initramfs in `<work>/root` and packs it into `<work>/initramfs.cpio.gz`.
fn build_initramfs(work: &Path, kernel: &Kernel, zc_trace: &Path, checks: &[Check]) -> anyhow::Result<PathBuf> {
    let _ = fs::remove_dir_all(work);
    let stage = &work.join("root");
    for dir in ["bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "root", "run", "mnt", "lib/modules"] {
        fs::create_dir_all(stage.join(dir))?;
    }
    fs::copy("/bin/busybox", stage.join("bin/busybox")).context("copying /bin/busybox (busybox-static)")?;
    install_busybox_links(stage)?;
    fs::copy(zc_trace, stage.join("bin/zc-trace")).with_context(|| format!("copying {}", zc_trace.display()))?;
    devices::install_ethtool(stage)?;
    let modules = devices::modules_in_load_order(kernel)?
        .iter()
        .map(|name| add_module(stage, kernel, name))
        .collect::<anyhow::Result<Vec<_>>>()?;
    write_executable(&stage.join("init"), &init_script(checks, &modules))?;

    let cpio = work.join("initramfs.cpio");
    pack_cpio(stage, &cpio)?;
    crate::run_cmd({
        let mut cmd = Command::new("gzip");
        cmd.args(["-n", "-6"]).arg(&cpio);
        cmd
    })?;
    Ok(work.join("initramfs.cpio.gz"))
}

/// One symlink per applet, made on the host: `busybox --install` at boot would need /proc first.
fn install_busybox_links(stage: &Path) -> anyhow::Result<()> {
    let applets = output(Command::new("/bin/busybox").arg("--list-full"))?;
    for applet in applets.lines().filter(|l| !l.is_empty() && *l != "bin/busybox") {
        let link = stage.join(applet);
        if let Some(dir) = link.parent() {
            fs::create_dir_all(dir)?;
        }
        std::os::unix::fs::symlink("/bin/busybox", &link)
            .with_context(|| format!("linking {}", link.display()))?;
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
    let mut names: Vec<_> = fs::read_dir(base.join(rel))?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
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
fn sh_quote(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=+:,@".contains(c)) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The guest's /init: mounts, loopback up, modules, every check between markers, power off.
fn init_script(checks: &[Check], modules: &[String]) -> String {
    let mut s = String::from(
        r#"#!/bin/sh
# Generated by `cargo xtask vm-test` (xtask/src/vm.rs).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TMPDIR=/tmp
mount -t devtmpfs devtmpfs /dev
# The initramfs has no /dev/console node, so the kernel could not give us stdio: take it now.
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t securityfs securityfs /sys/kernel/security
mount -t bpf bpffs /sys/fs/bpf
mount -t tmpfs tmpfs /tmp
ip link set lo up
# Kernel messages would land in the middle of the checks' output on the same serial line;
# they are dumped as a section of their own at the end instead.
dmesg -n 1
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

// ---------------------------------------------------------------------------------------------
// Booting and reading the console

fn run_kernel(
    dirs: &Dirs,
    package: &KernelPackage,
    zc_trace: &Path,
    timeout: Duration,
    keep: bool,
) -> anyhow::Result<KernelRun> {
    let release = package.release().to_string();
    fs::create_dir_all(&dirs.cache)?;
    fs::create_dir_all(&dirs.kernels)?;
    fs::create_dir_all(&dirs.work)?;
    let deb = fetch_deb(&dirs.cache, package)?;
    let kernel = unpack_kernel(&deb, &dirs.kernels.join(&release), &release)?;
    let checks = checks();
    let initrd = build_initramfs(&dirs.work.join(&release), &kernel, zc_trace, &checks)?;
    let disk = devices::make_disk(&dirs.work.join(&release))?;

    // Stale results from an earlier run must not pass for this one's.
    let results_dir = dirs.results.join(&release);
    let _ = fs::remove_dir_all(&results_dir);
    fs::create_dir_all(&results_dir)?;

    let qemu = qemu_command(&kernel, &initrd, &disk);
    say(&format!("{release}: booting (TCG; the whole run is killed after {} min)", timeout.as_secs() / 60));
    let boot = boot(qemu, &release, timeout, &results_dir.join("console.log"))?;
    let run = evaluate(&release, &checks, &boot, &results_dir)?;

    if keep {
        let cmd = qemu_command(&kernel, &initrd, &disk);
        let argv: Vec<String> = cmd.get_args().map(|a| sh_quote(&a.to_string_lossy())).collect();
        say(&format!("{release}: kept; boot it again with:\n  qemu-system-x86_64 {}", argv.join(" ")));
    } else {
        let _ = fs::remove_dir_all(dirs.kernels.join(&release));
        let _ = fs::remove_dir_all(dirs.work.join(&release));
    }
    Ok(run)
}

fn qemu_command(kernel: &Kernel, initrd: &Path, disk: &Path) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    // TCG: nested KVM dies in the kernel decompressor on our machines (KERNEL-NOTES.md).
    cmd.args(["-accel", "tcg", "-cpu", "max", "-m", "1024", "-smp", "2", "-nographic", "-no-reboot"])
        // No default NIC and no network backend: the only NICs are the two e1000s on a hub,
        // so nothing can leave QEMU.
        .args(["-nic", "none"])
        .args(devices::qemu_args(disk))
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        // panic=-1 reboots at once on a panic, and -no-reboot turns that into QEMU exiting.
        .args(["-append", "console=ttyS0 quiet panic=-1"]);
    cmd
}

/// Kills QEMU when dropped, so that no error path (or panic) leaves a VM running.
struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One console line and when the host read it.
struct Line {
    at: Instant,
    text: String,
}

/// How a boot went: every console line and how QEMU ended.
struct Boot {
    started: Instant,
    ended: Instant,
    lines: Vec<Line>,
    /// `None` when it was killed after the timeout.
    exit: Option<ExitStatus>,
}

/// Runs QEMU until it exits or `timeout` passes, saving the console to `log` as it comes and
/// reporting the checks' progress.
fn boot(mut qemu: Command, release: &str, timeout: Duration, log: &Path) -> anyhow::Result<Boot> {
    let mut log = File::create(log)?;
    // stdin must not be the terminal: -nographic would put it in raw mode and read keys.
    qemu.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let started = Instant::now();
    let mut vm = Vm(qemu.spawn().context("starting qemu-system-x86_64")?);
    let stdout = vm.0.stdout.take().expect("piped");

    // A reader thread, so the main thread can wait with a deadline.
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut buf = Vec::new();
        while stdout.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_string();
            if tx.send(Line { at: Instant::now(), text }).is_err() {
                break;
            }
            buf.clear();
        }
    });

    let deadline = started + timeout;
    let mut lines = Vec::new();
    let mut progress = Transcript::default();
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                writeln!(log, "{}", line.text)?;
                for event in progress.feed(&line) {
                    report_progress(release, started, &event);
                }
                lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // QEMU closes the console before it exits: give it a moment to finish on its own.
    if !timed_out {
        let grace = Instant::now() + Duration::from_secs(10);
        while vm.0.try_wait()?.is_none() && Instant::now() < grace {
            thread::sleep(Duration::from_millis(50));
        }
    }
    // Still running (timed out, or hung after closing the console): kill it, which also ends
    // the reader.
    let _ = vm.0.kill();
    let status = vm.0.wait()?;
    let ended = Instant::now();
    let _ = reader.join();
    Ok(Boot { started, ended, lines, exit: (!timed_out).then_some(status) })
}

fn report_progress(release: &str, started: Instant, event: &Event) {
    match event {
        Event::Init(at) => say(&format!("{release}: /init started {:.1}s after QEMU", secs(started, *at))),
        Event::Begin(name) => say(&format!("{release}: {name} ...")),
        Event::End { name, rc, secs } => say(&format!("{release}: {name} rc={rc} ({secs:.1}s)")),
        // Kernel messages, errors of /init itself: rare (quiet, dmesg -n 1), and telling when
        // the guest fails to get anywhere.
        Event::Console(text) => {
            let text = strip_escapes(text);
            if !text.trim().is_empty() {
                eprintln!("  [{release}] {text}");
            }
        }
    }
}

/// Drops terminal escape sequences (SeaBIOS clears the screen) and other control characters.
fn strip_escapes(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            // CSI: ESC [ parameters, ended by a letter; otherwise ESC and one character.
            '\x1b' => {
                if chars.next() == Some('[') {
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn secs(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64()
}

enum Event {
    Init(Instant),
    Begin(String),
    End { name: String, rc: i32, secs: f64 },
    Console(String),
}

/// One section between BEGIN and END markers.
struct Section {
    stdout: String,
    stderr: String,
    in_stderr: bool,
    begun: Instant,
    end: Option<(i32, Instant)>,
}

/// The console parsed into sections. Markers are searched anywhere in a line, not only at its
/// start: output without a final newline, or a stray kernel message, can precede one.
#[derive(Default)]
struct Transcript {
    init: Option<Instant>,
    done: bool,
    sections: HashMap<String, Section>,
    current: Option<String>,
}

impl Transcript {
    fn feed(&mut self, line: &Line) -> Vec<Event> {
        let mut events = Vec::new();
        let mut rest = line.text.as_str();
        while let Some(start) = rest.find(MARK) {
            let Some(len) = rest[start + MARK.len()..].find("@@@") else { break };
            self.text(&rest[..start], false, &mut events);
            let marker = &rest[start + MARK.len()..start + MARK.len() + len];
            self.marker(marker, line.at, &mut events);
            rest = &rest[start + MARK.len() + len + 3..];
        }
        // What follows the last marker is a line of its own only if it is not empty, or if the
        // whole line had no marker (an empty output line).
        if !rest.is_empty() || rest.len() == line.text.len() {
            self.text(rest, true, &mut events);
        }
        events
    }

    fn text(&mut self, text: &str, newline: bool, events: &mut Vec<Event>) {
        let Some(section) = self.current.as_ref().and_then(|name| self.sections.get_mut(name)) else {
            if !text.is_empty() {
                events.push(Event::Console(text.to_string()));
            }
            return;
        };
        let out = if section.in_stderr { &mut section.stderr } else { &mut section.stdout };
        out.push_str(text);
        if newline {
            out.push('\n');
        }
    }

    fn marker(&mut self, marker: &str, at: Instant, events: &mut Vec<Event>) {
        let (kind, arg) = marker.split_once(' ').unwrap_or((marker, ""));
        match kind {
            "INIT" => {
                self.init = Some(at);
                events.push(Event::Init(at));
            }
            "BEGIN" => {
                let section = Section { stdout: String::new(), stderr: String::new(), in_stderr: false, begun: at, end: None };
                self.sections.insert(arg.to_string(), section);
                self.current = Some(arg.to_string());
                events.push(Event::Begin(arg.to_string()));
            }
            "STDERR" => {
                if let Some(section) = self.sections.get_mut(arg) {
                    section.in_stderr = true;
                }
            }
            "END" => {
                let (name, rc) = arg.rsplit_once(" rc=").unwrap_or((arg, ""));
                if let Some(section) = self.sections.get_mut(name) {
                    // An unparsable rc cannot be success.
                    let rc = rc.parse().unwrap_or(-1);
                    section.end = Some((rc, at));
                    events.push(Event::End { name: name.to_string(), rc, secs: secs(section.begun, at) });
                }
                self.current = None;
            }
            "DONE" => self.done = true,
            _ => {}
        }
    }
}

/// Saves each section's output and judges the run: every check must have ended with rc 0.
fn evaluate(release: &str, checks: &[Check], boot: &Boot, results_dir: &Path) -> anyhow::Result<KernelRun> {
    let mut transcript = Transcript::default();
    for line in &boot.lines {
        transcript.feed(line);
    }
    for (name, section) in &transcript.sections {
        save_section(results_dir, name, section)?;
    }

    let mut problems = Vec::new();
    match boot.exit {
        None => {
            let running = transcript.current.as_deref().unwrap_or("(no check: the guest never reached one)");
            problems.push(format!(
                "QEMU killed after {:.0}s (the --timeout); running at the time: {running}",
                secs(boot.started, boot.ended)
            ));
        }
        Some(status) if !status.success() => problems.push(format!("QEMU exited with {status}")),
        Some(_) => {}
    }
    if transcript.init.is_none() {
        problems.push("the guest never reached /init (see console.log)".to_string());
    } else if !transcript.done && boot.exit.is_some() {
        problems.push("the guest stopped before /init finished (panic? see console.log)".to_string());
    }

    let results = checks.iter().map(|check| check_result(&check.name, transcript.sections.get(&check.name))).collect();
    let doctor_summary = transcript.sections.get("doctor").and_then(|s| doctor_summary(&s.stdout));
    Ok(KernelRun {
        release: release.to_string(),
        boot_secs: transcript.init.map(|at| secs(boot.started, at)),
        total_secs: secs(boot.started, boot.ended),
        results,
        problems,
        doctor_summary,
    })
}

fn check_result(name: &str, section: Option<&Section>) -> CheckResult {
    let outcome = match section {
        None => Outcome::NotRun,
        // The guest prints a check's output only when it ends: there is nothing to show.
        Some(Section { end: None, .. }) => Outcome::Unfinished,
        Some(section @ Section { end: Some((rc, at)), .. }) => {
            let output = (*rc != 0).then(|| {
                let shown = if section.stderr.trim().is_empty() { &section.stdout } else { &section.stderr };
                first_lines(shown, 10)
            });
            Outcome::Ended { rc: *rc, secs: secs(section.begun, *at), output }
        }
    };
    CheckResult { name: name.to_string(), outcome }
}

fn first_lines(text: &str, n: usize) -> String {
    text.lines().take(n).collect::<Vec<_>>().join("\n")
}

fn save_section(dir: &Path, name: &str, section: &Section) -> anyhow::Result<()> {
    // Names come from the guest's console: keep them to one plain file name.
    let file: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    fs::write(dir.join(format!("{file}.out")), &section.stdout)?;
    fs::write(dir.join(format!("{file}.err")), &section.stderr)?;
    let rc = section.end.map_or("none (no END marker)".to_string(), |(rc, _)| rc.to_string());
    fs::write(dir.join(format!("{file}.rc")), format!("{rc}\n"))?;
    if serde_json::from_str::<serde_json::Value>(&section.stdout).is_ok() {
        fs::write(dir.join(format!("{file}.json")), &section.stdout)?;
    }
    Ok(())
}

/// Which attach kinds `doctor --json` found working, in one line.
fn doctor_summary(json: &str) -> Option<String> {
    let doctor: serde_json::Value = serde_json::from_str(json).ok()?;
    let kinds = doctor.get("attach_kinds")?.as_object()?;
    let (mut works, mut refused) = (Vec::new(), Vec::new());
    for (kind, result) in kinds {
        if result.get("works").and_then(|w| w.as_bool()) == Some(true) {
            works.push(kind.as_str());
        } else {
            refused.push(kind.as_str());
        }
    }
    Some(format!("attach kinds working: {}; not working: {}", list_or_none(&works), list_or_none(&refused)))
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() { "none".to_string() } else { items.join(", ") }
}

// ---------------------------------------------------------------------------------------------
// Summary

fn print_summary(runs: &[KernelRun]) {
    let Some(first) = runs.first() else { return };
    let width = runs.iter().map(|r| r.release.len()).max().unwrap_or(0).max(20);
    let name_width = first.results.iter().map(|c| c.name.len()).max().unwrap_or(0).max(8);
    let mut out = format!("\n{:<name_width$}", "check");
    for run in runs {
        let _ = write!(out, " {:<width$}", run.release);
    }
    out.push('\n');
    for (i, check) in first.results.iter().enumerate() {
        let _ = write!(out, "{:<name_width$}", check.name);
        for run in runs {
            let cell = match run.results.get(i).map(|c| &c.outcome) {
                Some(Outcome::Ended { rc, secs, .. }) => format!("rc={rc} {secs:>7.1}s"),
                Some(Outcome::Unfinished) => "unfinished".to_string(),
                Some(Outcome::NotRun) | None => "not run".to_string(),
            };
            let _ = write!(out, " {cell:<width$}");
        }
        out.push('\n');
    }
    let _ = write!(out, "{:<name_width$}", "boot");
    for run in runs {
        let cell = run.boot_secs.map_or("no /init".to_string(), |s| format!("{s:.1}s to /init"));
        let _ = write!(out, " {cell:<width$}");
    }
    let _ = write!(out, "\n{:<name_width$}", "total");
    for run in runs {
        let _ = write!(out, " {:<width$}", format!("{:.1}s", run.total_secs));
    }
    out.push('\n');
    eprintln!("{out}");

    for run in runs {
        if let Some(doctor) = &run.doctor_summary {
            eprintln!("{}: doctor: {doctor}", run.release);
        }
        for check in &run.results {
            if let Some(why) = check.failure() {
                eprintln!("{}: {} failed: {}", run.release, check.name, why.replace('\n', "\n    "));
            }
        }
        for problem in &run.problems {
            eprintln!("{}: {problem}", run.release);
        }
    }
    eprintln!("(results in target/vm/results/<kernel>/)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_order_and_filter() {
        assert_eq!(Series::V6_1.order_key("linux-image-6.1.0-56-amd64"), Some(56));
        assert_eq!(Series::V6_1.order_key("linux-image-6.1.0-56-cloud-amd64"), None);
        assert_eq!(Series::V6_1.order_key("linux-image-6.1.0-56-amd64-dbg"), None);
        assert_eq!(Series::V6_12.order_key("linux-image-6.12.117+deb12-amd64"), Some(117));
        assert_eq!(Series::V6_12.order_key("linux-image-6.12.117+deb12-rt-amd64"), None);
        assert_eq!(Series::V6_12.order_key("linux-image-6.12-amd64"), None);
    }

    #[test]
    fn markers_split_sections_even_mid_line() {
        let t0 = Instant::now();
        let mut transcript = Transcript::default();
        for text in ["noise", "@@@ZC-INIT 6.1@@@", "@@@ZC-BEGIN a@@@", "{\"x\":1}", "", "tail@@@ZC-STDERR a@@@", "oops", "@@@ZC-END a rc=3@@@"] {
            transcript.feed(&Line { at: t0, text: text.to_string() });
        }
        let a = &transcript.sections["a"];
        assert_eq!(a.stdout, "{\"x\":1}\n\ntail");
        assert_eq!(a.stderr, "oops\n");
        assert_eq!(a.end.map(|e| e.0), Some(3));
        assert!(transcript.init.is_some());
    }

    #[test]
    fn escapes_are_stripped() {
        assert_eq!(strip_escapes("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (1.16)"), "SeaBIOS (1.16)");
    }

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

fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Why a run ended without every check ending (the guest crashed, hung or never booted).
fn died(run: &KernelRun) -> Option<String> {
    if let Some(p) = run.problems.first() {
        return Some(p.clone());
    }
    run.results
        .iter()
        .find(|c| matches!(c.outcome, Outcome::Unfinished | Outcome::NotRun))
        .map(|c| format!("{} did not finish", c.name))
}
