//! `cargo xtask vm-test`: runs zc-trace on the Debian kernels it must support, in QEMU.
//!
//! The host kernel allows tracepoints only (docs/vm-test.md), so fentry and kprobe code paths
//! can only be exercised in a guest. Per kernel:
//!
//! 1. [`debian`]: the newest `linux-image-6.1.0-*-amd64` / `linux-image-6.12.*-amd64` is
//!    downloaded with `apt-get download` (kept in `target/vm/cache/`) and unpacked;
//! 2. [`initramfs`]: busybox-static and ethtool of the guest's architecture ([`userland`]), a
//!    statically linked zc-trace ([`host`] builds it for amd64 or arm64) and an `/init` that
//!    mounts what zc-trace needs and runs each check of [`checks`] between markers;
//! 3. [`qemu`]: TCG boots it with the devices of [`devices`] (NVMe, two e1000 on a hub; nothing
//!    leaves QEMU). The checks talk on one serial line ([`transcript`]), the kernel on another,
//!    which [`watchdog`] reads as it comes: a lockup, stall or oops stops the run in seconds;
//! 4. [`outcome`]: each check's output is saved under `target/vm/results/<kernel-release>/`
//!    and judged, then [`verify`] asserts what the results mean (tiers agree, the fentry tier
//!    observes, the classic story over the NICs).
//!
//! Imports point down this list: `mod.rs` uses every module; `verify` and `outcome` use only
//! plain data and [`devices`]' constants.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::bail;
use clap::ValueEnum;

use crate::setup;

mod checks;
mod debian;
pub(crate) mod devices;
mod host;
mod initramfs;
mod outcome;
mod progress;
mod qemu;
mod transcript;
mod userland;
mod verify;
mod watchdog;

use checks::{Break, Plan};
use debian::{Arch, KernelPackage, Series};
use outcome::{CheckResult, KernelRun, Outcome};
use progress::say;
use qemu::{Machine, TcgThread};
use userland::Userland;

#[derive(clap::Args)]
pub struct VmTestArgs {
    /// Which kernel series to boot (`all`: 5.10, 6.1 and 6.12 on amd64; 6.12 on arm64).
    #[arg(long, value_enum, default_value = "all")]
    kernel: KernelChoice,
    /// The guest's architecture. arm64 boots Debian's arm64 kernel under qemu-system-aarch64.
    #[arg(long, value_enum, default_value = "amd64")]
    arch: ArchChoice,
    /// Keep the unpacked kernels and initramfs under target/vm/{kernels,work} and print the QEMU
    /// command that boots them again (the downloaded .debs and the results are always kept).
    #[arg(long)]
    keep: bool,
    /// Kill QEMU after this many minutes per kernel (everything runs under TCG, so it is slow;
    /// an arm64 guest takes about 1.4 times as long as an amd64 one, see docs/vm-test.md).
    #[arg(long, value_name = "MINUTES", default_value_t = 25)]
    timeout: u64,
    /// Use this statically linked zc-trace instead of building one.
    #[arg(long, value_name = "PATH")]
    zc_trace: Option<PathBuf>,
    /// Run only these checks (comma-separated names, as in the summary), e.g. `lab-fentry`.
    /// The results are then not verified as a whole.
    #[arg(long, value_delimiter = ',', value_name = "CHECKS")]
    only: Vec<String>,
    /// Run the selected checks this many times each in one boot (to reproduce rare failures).
    #[arg(long, value_name = "N", default_value_t = 1)]
    repeat: u32,
    /// Do the whole vm-test this many times and count the runs that passed and those whose
    /// guest kernel reported trouble. Nothing is retried: every failure counts.
    #[arg(long, value_name = "N", default_value_t = 1)]
    runs: u32,
    /// Extra kernel command-line parameters, e.g. `loglevel=7 softlockup_panic=1`.
    #[arg(long, value_name = "PARAMS")]
    append: Option<String>,
    /// The guest's vCPUs.
    #[arg(long, value_name = "N", default_value_t = 2)]
    smp: u32,
    /// How TCG runs the vCPUs: `single` (they take turns on one host thread) or `multi` (a
    /// host thread each, which runs stale translations of live-patched kernel text: soft
    /// lockups and int3 oopses; see docs/vm-test.md).
    #[arg(long, value_enum, default_value = "single")]
    tcg_thread: TcgThread,
    /// How many guests run at once (each is one QEMU; with `--tcg-thread single`, one host
    /// core each).
    #[arg(long, value_name = "N", default_value_t = 2)]
    jobs: u32,
    /// Test-only: break the guest on purpose after the checks, to see the hang detection stop
    /// the run within seconds (the run then fails, as it must).
    #[arg(long, value_enum)]
    break_guest: Option<Break>,
    /// Only check that a guest broken on purpose is stopped within seconds (what
    /// `cargo xtask test` does after the matrix).
    #[arg(long)]
    prove_hang_detection: bool,
    /// Regenerate docs/compat.md and docs/classic-story.md from this run (every kernel, every
    /// check passed).
    #[arg(long)]
    write_docs: bool,
}

impl VmTestArgs {
    /// What `cargo xtask test` runs: every kernel, every check once, a fresh static build.
    /// What `cargo xtask test` runs after the amd64 kernels: the arm64 guest, every check.
    pub fn arm64() -> Self {
        VmTestArgs { arch: ArchChoice::Arm64, ..Self::all_kernels() }
    }

    pub fn all_kernels() -> Self {
        VmTestArgs {
            kernel: KernelChoice::All,
            arch: ArchChoice::Amd64,
            keep: false,
            timeout: 25,
            zc_trace: None,
            only: Vec::new(),
            repeat: 1,
            runs: 1,
            append: None,
            smp: 2,
            tcg_thread: TcgThread::Single,
            jobs: 2,
            break_guest: None,
            prove_hang_detection: false,
            write_docs: false,
        }
    }
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum KernelChoice {
    #[value(name = "5.10")]
    V5_10,
    #[value(name = "6.1")]
    V6_1,
    #[value(name = "6.12")]
    V6_12,
    All,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum ArchChoice {
    Amd64,
    Arm64,
}

impl ArchChoice {
    fn arch(self) -> Arch {
        match self {
            ArchChoice::Amd64 => Arch::Amd64,
            ArchChoice::Arm64 => Arch::Arm64,
        }
    }
}

/// The series a `--kernel` choice boots on an architecture. Debian's arm64 guests run the
/// newest series only: what differs on arm64 (registers, syscall numbers, trampolines, no
/// page-fault tracepoints) differs on every series, and each guest costs a host core for
/// about 5.5 minutes (1.4 times an amd64 guest under TCG, docs/vm-test.md).
fn series_for(kernel: KernelChoice, arch: Arch) -> anyhow::Result<&'static [Series]> {
    Ok(match (kernel, arch) {
        (KernelChoice::V5_10, Arch::Amd64) => &[Series::V5_10],
        (KernelChoice::V6_1, Arch::Amd64) => &[Series::V6_1],
        (KernelChoice::V6_12, _) => &[Series::V6_12],
        (KernelChoice::All, Arch::Amd64) => &[Series::V5_10, Series::V6_1, Series::V6_12],
        (KernelChoice::All, Arch::Arm64) => &[Series::V6_12],
        (_, Arch::Arm64) => bail!("--arch arm64 boots Debian's 6.12 kernel only (--kernel 6.12 or all)"),
    })
}

/// The file a guest's results folder gets when its complete run passed.
const PASSED_MARKER: &str = "passed";

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
        Dirs {
            cache: vm.join("cache"),
            kernels: vm.join("kernels"),
            work: vm.join("work"),
            results: vm.join("results"),
        }
    }
}

/// Everything one run of every kernel needs, resolved once.
struct Setup {
    plan: Plan,
    packages: Vec<KernelPackage>,
    zc_trace: PathBuf,
    extra_binaries: Vec<PathBuf>,
    /// busybox and ethtool for the guest's architecture.
    userland: Userland,
    machine: Machine,
    dirs: Dirs,
    timeout: Duration,
}

/// How one run of every kernel went.
struct Verdict {
    failures: Vec<String>,
    /// The guest kernels' trouble lines (lockups, stalls, oopses), one per boot that had any.
    troubles: Vec<String>,
}

pub fn run(root: &Path, args: &VmTestArgs) -> anyhow::Result<()> {
    if args.prove_hang_detection {
        setup::ensure()?;
        host::ensure_host_packages(Arch::Amd64)?;
        return prove_hang_detection(root);
    }
    // Bad selections fail before anything is built or downloaded.
    let plan = checks::plan(&args.only, args.repeat, args.break_guest)?;
    if args.write_docs && args.arch != ArchChoice::Amd64 {
        bail!("--write-docs writes the docs from the amd64 kernels (--arch amd64)");
    }
    if args.runs == 0 || args.smp == 0 || args.jobs == 0 {
        bail!("--runs, --smp and --jobs must be at least 1");
    }
    let arch = args.arch.arch();
    let series = series_for(args.kernel, arch)?;
    setup::ensure()?;
    host::ensure_host_packages(arch)?;
    let zc_trace = match &args.zc_trace {
        Some(path) => path.clone(),
        None => host::build_static_zc_trace(root, arch)?,
    };
    host::ensure_static(&zc_trace, arch)?;
    let extra_binaries = if args.break_guest == Some(Break::Lockup) {
        vec![host::build_static_spinner(root, arch)?]
    } else {
        Vec::new()
    };

    debian::ensure_apt_sources(series, arch)?;
    // Resolve every kernel before booting any, so a missing suite is reported at once.
    let packages = series.iter().map(|&s| debian::newest_kernel(s, arch)).collect::<anyhow::Result<Vec<_>>>()?;
    // Downloads one at a time, before the guests are prepared in parallel.
    let dirs = Dirs::new(root);
    std::fs::create_dir_all(&dirs.cache)?;
    for package in &packages {
        debian::fetch_deb(&dirs.cache, package)?;
    }
    let userland = userland::prepare(arch, &dirs.cache)?;
    let machine = Machine { arch, smp: args.smp, tcg_thread: args.tcg_thread, append: args.append.clone() };
    say(&format!("guest: {}, {} vCPU(s), TCG thread={:?}", arch.debian(), machine.smp, machine.tcg_thread)
        .to_lowercase());
    let setup = Setup {
        plan,
        packages,
        zc_trace,
        extra_binaries,
        userland,
        machine,
        dirs,
        timeout: Duration::from_secs(args.timeout * 60),
    };

    if args.runs == 1 {
        // A guest broken on purpose is not booted again.
        let verdict = run_all_kernels(root, &setup, args, args.break_guest.is_none())?;
        if !verdict.failures.is_empty() {
            bail!("vm-test failed:\n  {}", verdict.failures.join("\n  "));
        }
        say("all checks passed");
        return Ok(());
    }

    // The loop: every run counts, nothing is retried.
    let (mut passed, mut with_trouble) = (0, 0);
    let mut lines = Vec::new();
    for n in 1..=args.runs {
        say(&format!("run {n} of {}", args.runs));
        let verdict = run_all_kernels(root, &setup, args, false)?;
        let ok = verdict.failures.is_empty();
        if !ok {
            // The next run would replace them: a failed run's results are kept.
            for package in &setup.packages {
                set_aside(&setup.dirs.results, package.release(), &format!("run{n}"));
            }
        }
        passed += u32::from(ok);
        with_trouble += u32::from(!verdict.troubles.is_empty());
        let line = if ok {
            format!("run {n}: passed")
        } else {
            format!(
                "run {n}: FAILED: {}",
                verdict.failures.first().map(|f| f.lines().next().unwrap_or_default()).unwrap_or_default()
            )
        };
        let line = verdict.troubles.iter().fold(line, |line, t| format!("{line}\n    kernel trouble: {t}"));
        say(&line);
        lines.push(line);
    }
    let kernels: Vec<&str> = setup.packages.iter().map(|p| p.release()).collect();
    eprintln!("\nvm-test loop on {}:", kernels.join(", "));
    for line in &lines {
        eprintln!("  {line}");
    }
    eprintln!(
        "vm-test loop: {} runs, {passed} passed, {} failed; {with_trouble} with a lockup, stall or oops on a guest console",
        args.runs,
        args.runs - passed
    );
    if passed != args.runs {
        bail!("{} of {} runs failed", args.runs - passed, args.runs);
    }
    Ok(())
}

/// Boots every kernel once (a guest whose kernel broke is booted once more when `retry`),
/// prints the summary, verifies the results and, when asked, writes the docs' tables.
fn run_all_kernels(root: &Path, setup: &Setup, args: &VmTestArgs, retry: bool) -> anyhow::Result<Verdict> {
    // Each guest is one QEMU process; with single-threaded TCG each takes one host core, so
    // the kernels boot side by side (`--jobs`), each with its own work and results folders.
    let mut booted: Vec<(KernelRun, Vec<String>)> = Vec::new();
    for batch in setup.packages.chunks(args.jobs.max(1) as usize) {
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .iter()
                .map(|package| scope.spawn(move || boot_kernel(setup, package, args.keep, retry)))
                .collect();
            handles.into_iter().map(|h| h.join().expect("a guest's thread panicked")).collect()
        });
        booted.extend(results);
    }
    let troubles: Vec<String> = booted.iter().flat_map(|(_, t)| t.iter().cloned()).collect();
    let mut runs: Vec<KernelRun> = booted.into_iter().map(|(run, _)| run).collect();
    outcome::print_summary(&runs);

    // What the runs mean: tiers agree, the fentry tier observes, the classic story.
    if setup.plan.complete {
        for run in runs.iter_mut().filter(|r| r.problems.is_empty()) {
            let dir = setup.dirs.results.join(&run.release);
            run.problems.extend(verify::verify(&dir).into_iter().map(|p| format!("check: {p}")));
            run.problems.extend(verify::verify_classic(&dir).into_iter().map(|p| format!("classic: {p}")));
        }
    }
    let all_passed = runs.iter().all(|r| r.problems.is_empty() && r.results.iter().all(CheckResult::passed));
    // A guest whose complete run passed says so in its results, for the docs of a later run
    // (the arm64 guest's column in docs/compat.md comes from its own `--arch arm64` run).
    for run in &runs {
        let marker = setup.dirs.results.join(&run.release).join(PASSED_MARKER);
        if setup.plan.complete && run.problems.is_empty() && run.results.iter().all(CheckResult::passed) {
            std::fs::write(&marker, b"")?;
        }
    }
    if args.write_docs {
        if !(all_passed && setup.plan.complete && setup.packages.len() == 3) {
            bail!("--write-docs needs a complete run of every kernel (no --only/--repeat/--break-guest) that passed");
        }
        write_docs(root, setup, &runs)?;
    }

    let failures = runs
        .iter()
        .flat_map(|r| {
            let failed_checks = r.results.iter().filter(|c| !c.passed()).map(move |c| {
                let why = c.failure().unwrap_or_default();
                format!("{}: {}: {}", r.release, c.name, why.lines().next().unwrap_or_default())
            });
            r.problems.iter().map(move |p| format!("{}: {p}", r.release)).chain(failed_checks)
        })
        .collect();
    Ok(Verdict { failures, troubles })
}

/// Boots one kernel (once more when `retry` and its guest did not finish) and returns the run
/// and the trouble lines its kernel logged.
fn boot_kernel(setup: &Setup, package: &KernelPackage, keep: bool, retry: bool) -> (KernelRun, Vec<String>) {
    say(&format!("{}: {} {} from {}", package.release(), package.name, package.version, package.suite));
    // One kernel failing to download or boot must not hide the other kernel's results.
    let attempt = || {
        run_kernel(setup, package, keep).unwrap_or_else(|err| KernelRun {
            release: package.release().to_string(),
            boot_secs: None,
            total_secs: 0.0,
            results: setup
                .plan
                .checks
                .iter()
                .map(|c| CheckResult { name: c.name.clone(), outcome: Outcome::NotRun })
                .collect(),
            problems: vec![format!("{err:#}")],
            doctor_summary: None,
            kernel_trouble: None,
        })
    };
    let mut troubles = Vec::new();
    let mut run = attempt();
    troubles.extend(run.kernel_trouble.iter().map(|t| format!("{}: {t}", run.release)));
    // A guest whose kernel broke under TCG (docs/vm-test.md) says nothing about zc-trace
    // when a second boot passes: boot it once more, saying so loudly. A check that ran and
    // failed is never retried.
    if retry && let Some(why) = outcome::died(&run) {
        let aside = set_aside(&setup.dirs.results, &run.release, "first-boot");
        say(&format!(
            "{}: RETRYING ONCE: the guest did not finish ({}); the first boot's results and kernel log are kept in {}",
            run.release,
            why.lines().next().unwrap_or_default(),
            aside.display()
        ));
        let first = run.kernel_trouble.clone();
        run = attempt();
        troubles.extend(run.kernel_trouble.iter().map(|t| format!("{}: {t}", run.release)));
        if let Some(why) = outcome::died(&run) {
            run.problems.push(format!("the guest did not finish twice: {}", why.lines().next().unwrap_or_default()));
        } else if let Some(first) = first {
            say(&format!("{}: the second boot passed; the first had: {first}", run.release));
        }
    }
    (run, troubles)
}

/// docs/classic-story.md from the newest kernel (the one with `dma:*` tracepoints) and
/// docs/compat.md from doctor on the host and in every guest.
fn write_docs(root: &Path, setup: &Setup, runs: &[KernelRun]) -> anyhow::Result<()> {
    let docs = root.join("docs");
    if let Some(run) = runs.iter().rev().find(|r| r.release.starts_with("6.12")) {
        let table =
            verify::classic_table(&setup.dirs.results.join(&run.release), &run.release).map_err(anyhow::Error::msg)?;
        let source = format!(
            "The classic story measured by `cargo xtask vm-test` on Debian {} in QEMU: the lab's `--cold` senders over \
             an emulated NVMe disk and e1000 NIC (see README, \"The classic story, measured\").",
            run.release
        );
        verify::write_doc(&docs.join("classic-story.md"), "The classic story, measured", &source, &table)?;
        say("docs/classic-story.md written");
    }
    let mut kernels = Vec::new();
    if let Ok(out) = Command::new(&setup.zc_trace).args(["doctor", "--json"]).output()
        && let Ok(v) = serde_json::from_slice(&out.stdout)
    {
        kernels.push((format!("host {}", host::kernel_release()), v));
    }
    let mut releases: Vec<String> = runs.iter().map(|r| r.release.clone()).collect();
    // Other architectures' guests, from their own complete runs that passed.
    for entry in std::fs::read_dir(&setup.dirs.results)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(&format!("-{}", Arch::Arm64.debian())) && entry.path().join(PASSED_MARKER).exists() {
            releases.push(name);
        }
    }
    for release in releases {
        let path = setup.dirs.results.join(&release).join("doctor.json");
        if let Ok(v) = std::fs::read_to_string(&path).map(|t| serde_json::from_str(&t).unwrap_or_default()) {
            kernels.push((release, v));
        }
    }
    let source = "What `zc-trace doctor --json` found on the host and in each guest of `cargo xtask vm-test`: \
                  each attach kind and copy site really loaded and attached.";
    verify::write_doc(&docs.join("compat.md"), "Compatibility", source, &verify::compat_table(&kernels))?;
    say("docs/compat.md written");
    Ok(())
}

/// Breaks a guest on purpose and checks that vm-test notices: the newest kernel boots, runs
/// doctor, then `zc-spin-in-kernel` spins a CPU in the kernel; the run must end with the
/// watchdog's soft lockup, within seconds of the lockup rather than at the timeout. Results in
/// `target/vm/results/hang-proof/`.
pub fn prove_hang_detection(root: &Path) -> anyhow::Result<()> {
    let plan = checks::plan(&["doctor".to_string()], 1, Some(Break::Lockup))?;
    let package = debian::newest_kernel(Series::V6_12, Arch::Amd64)?;
    let mut dirs = Dirs::new(root);
    dirs.results = dirs.results.join("hang-proof");
    std::fs::create_dir_all(&dirs.cache)?;
    debian::fetch_deb(&dirs.cache, &package)?;
    let setup = Setup {
        plan,
        packages: vec![],
        zc_trace: host::build_static_zc_trace(root, Arch::Amd64)?,
        extra_binaries: vec![host::build_static_spinner(root, Arch::Amd64)?],
        userland: userland::prepare(Arch::Amd64, &dirs.cache)?,
        machine: Machine { arch: Arch::Amd64, smp: 2, tcg_thread: TcgThread::Single, append: None },
        dirs,
        timeout: Duration::from_secs(10 * 60),
    };
    say("hang detection: breaking a guest on purpose (a BPF program that spins in the kernel)");
    let (run, troubles) = boot_kernel(&setup, &package, false, false);
    let Some(trouble) = troubles.first() else {
        bail!("hang detection: the guest was broken on purpose but no kernel trouble was seen: {:?}", run.problems);
    };
    if !trouble.contains("soft lockup") {
        bail!("hang detection: expected a soft lockup, saw {trouble}");
    }
    // Boot, doctor and a 2-second lockup take well under a minute; the timeout is ten.
    if run.total_secs > 180.0 {
        bail!("hang detection: QEMU ran {:.0}s: the lockup was not acted on at once", run.total_secs);
    }
    say(&format!("hang detection works: {trouble}; QEMU stopped {:.0}s after it started", run.total_secs));
    Ok(())
}

/// Moves `results/<release>` to `results/<release>.<suffix>` (replacing an older one), so
/// that the next boot of the same kernel does not delete it.
fn set_aside(results: &Path, release: &str, suffix: &str) -> PathBuf {
    let to = results.join(format!("{release}.{suffix}"));
    let _ = std::fs::remove_dir_all(&to);
    let _ = std::fs::rename(results.join(release), &to);
    to
}

fn run_kernel(setup: &Setup, package: &KernelPackage, keep: bool) -> anyhow::Result<KernelRun> {
    let dirs = &setup.dirs;
    let release = package.release().to_string();
    std::fs::create_dir_all(&dirs.cache)?;
    std::fs::create_dir_all(&dirs.kernels)?;
    std::fs::create_dir_all(&dirs.work)?;
    let deb = debian::fetch_deb(&dirs.cache, package)?;
    let kernel = debian::unpack_kernel(&deb, &dirs.kernels.join(&release), &release)?;
    let work = dirs.work.join(&release);
    let initrd = initramfs::build_initramfs(
        &work,
        &kernel,
        &setup.userland,
        &setup.zc_trace,
        &setup.extra_binaries,
        &setup.plan.checks,
        qemu::consoles(setup.machine.arch).checks,
    )?;
    let disk = devices::make_disk(&work)?;

    // Stale results from an earlier run must not pass for this one's.
    let results_dir = dirs.results.join(&release);
    let _ = std::fs::remove_dir_all(&results_dir);
    std::fs::create_dir_all(&results_dir)?;

    let kernel_log = results_dir.join("kernel.log");
    let qemu = qemu::qemu_command(&kernel, &initrd, &disk, &kernel_log, &setup.machine);
    say(&format!("{release}: booting (TCG; the whole run is killed after {} min)", setup.timeout.as_secs() / 60));
    let boot = qemu::boot(qemu, &release, setup.timeout, &results_dir.join("console.log"), &kernel_log)?;
    let run = outcome::evaluate(&release, &setup.plan.checks, &boot, &results_dir)?;

    if keep {
        let cmd = qemu::qemu_command(&kernel, &initrd, &disk, &kernel_log, &setup.machine);
        let argv: Vec<String> = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| initramfs::sh_quote(&a.to_string_lossy()))
            .collect();
        say(&format!("{release}: kept; boot it again with:\n  {}", argv.join(" ")));
    } else {
        let _ = std::fs::remove_dir_all(dirs.kernels.join(&release));
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(run)
}
