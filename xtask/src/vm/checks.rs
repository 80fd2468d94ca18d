//! What the guest runs: the checks, in order, and the selections `--only`, `--repeat` and
//! `--break-guest` make of them.
use anyhow::bail;
use clap::ValueEnum;

use super::devices;

/// One command run inside every guest. Its stdout is saved as `<name>.out` (and `<name>.json`
/// when it parses), its stderr as `<name>.err`; a non-zero exit code fails the run.
#[derive(Debug)]
pub struct Check {
    pub name: String,
    pub argv: Vec<String>,
}

impl Check {
    fn new(name: impl Into<String>, argv: &[&str]) -> Self {
        Check { name: name.into(), argv: argv.iter().map(|s| s.to_string()).collect() }
    }
}

/// The checks, in the order the guest runs them. Extend here.
pub fn all() -> Vec<Check> {
    let mut checks = vec![Check::new("doctor", &["zc-trace", "doctor", "--json"])];
    for tier in ["auto", "fentry", "kprobe", "tracepoint"] {
        let mut argv = vec![
            "zc-trace",
            "lab",
            "--json",
            "--size",
            "8MiB",
            "--chunk",
            "64KiB",
            "--sink",
            "tcp",
            "--probe-tier",
            tier,
        ];
        // Copy stacks of every strategy (io_uring completions among them) once per kernel;
        // the counts must not change with them (the tiers are compared).
        if tier == "fentry" {
            argv.push("--stacks");
        }
        checks.push(Check::new(format!("lab-{tier}"), &argv));
    }
    // `-o -`: beside a command it starts, zc-trace reports to stderr unless told otherwise.
    checks.push(Check::new("syscalls", &["zc-trace", "syscalls", "--json", "-o", "-", "--", "/bin/busybox", "true"]));
    // Copy stacks with the function probes: their kernel stacks are taken at the copy. The
    // file is on the NVMe ext4 (TMPDIR), whose reads go through filemap_read.
    let dd = "cp /bin/busybox $TMPDIR/stacks.src && exec zc-trace trace --stacks --probe-tier fentry --json -o - -- \
              /bin/busybox dd if=$TMPDIR/stacks.src of=$TMPDIR/stacks.copy bs=64k";
    checks.push(Check::new("stacks-fentry", &["sh", "-c", dd]));
    checks.extend(classic_checks());
    checks
}

/// The classic zero-copy story over real (emulated) devices: the source is read cold from
/// the NVMe disk and sent over the e1000 path to a receiver in the other namespace, first
/// with scatter-gather on the sending NIC, then with it off (sendfile must then copy).
/// `verify::verify_classic` asserts on what they report.
fn classic_checks() -> Vec<Check> {
    let lab = |strategies: &str| {
        [
            "zc-trace",
            "lab",
            "--json",
            "--size",
            CLASSIC_SIZE,
            "--chunk",
            CLASSIC_CHUNK,
            "--sink",
            "tcp",
            "--cold",
            "--strategies",
            strategies,
            "--receiver-netns",
            devices::RX_NETNS,
            "--receiver-addr",
            devices::RX_ADDR,
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

/// Checks run only when `--only` names them: stress for reproducing kernel trouble.
///
/// `stress-attach-fentry` attaches and detaches every fentry-tier program 15 times (a
/// 300 ms `trace` of PID 1 each) while the other vCPU copies through a pipe without pause,
/// in and out of `pipe_read`/`pipe_write`, two of the functions whose entry the fexit
/// attachments patch (and through `__schedule`, which the `sched_switch` tracepoint's static
/// key patches). 15 cycles fit the guest's check timeout under single-threaded TCG, where a
/// cycle takes about 25 s; `--repeat` runs more.
fn on_demand() -> Vec<Check> {
    let script = "dd if=/dev/zero bs=64k 2>/dev/null | dd of=/dev/null bs=64k 2>/dev/null & load=$!; \
                  for i in $(seq 15); do zc-trace trace -p 1 -d 300ms --probe-tier fentry >/dev/null || { kill $load; exit 1; }; done; \
                  kill $load; echo 15 attach-detach cycles";
    vec![Check::new("stress-attach-fentry", &["sh", "-c", script])]
}

/// The classic runs' file size and chunk: 128 data calls, small enough for TCG.
pub const CLASSIC_SIZE: &str = "8MiB";
pub const CLASSIC_CHUNK: &str = "64KiB";

/// Inside the guest each check is stopped after this long, so that one hanging check still
/// lets the others run and report (the host-side `--timeout` covers the whole boot).
pub const CHECK_TIMEOUT_SECS: u64 = 600;

/// Test-only ways to break the guest on purpose, to see the hang detection work.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum Break {
    /// A BPF program that loops for minutes in the kernel (nested `bpf_loop`, run once with
    /// BPF_PROG_TEST_RUN): a real soft lockup.
    Lockup,
    /// `echo c > /proc/sysrq-trigger`: a kernel panic.
    Panic,
}

/// The guest binary that `Break::Lockup` runs (built from the tests crate).
pub const SPIN_BINARY: &str = "zc-spin-in-kernel";

impl Break {
    fn check(self) -> Check {
        match self {
            Break::Lockup => Check::new("break-lockup", &[SPIN_BINARY]),
            Break::Panic => Check::new("break-panic", &["sh", "-c", "echo c > /proc/sysrq-trigger"]),
        }
    }
}

/// What one boot runs.
#[derive(Debug)]
pub struct Plan {
    pub checks: Vec<Check>,
    /// Whether this is the full set once, in order: only then do the runs' results mean
    /// what `verify` expects, and only then are the docs' tables made from them.
    pub complete: bool,
}

/// The checks named in `only` (all when empty), each `repeat` times in a row (the second
/// run of `lab-fentry` is `lab-fentry.2`), then the breaking check if asked for.
pub fn plan(only: &[String], repeat: u32, breaking: Option<Break>) -> anyhow::Result<Plan> {
    let all: Vec<Check> = if only.is_empty() { all() } else { all().into_iter().chain(on_demand()).collect() };
    let unknown: Vec<&String> = only.iter().filter(|name| !all.iter().any(|c| &c.name == *name)).collect();
    if !unknown.is_empty() {
        let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
        bail!("no check named {unknown:?}: the checks are {}", names.join(", "));
    }
    if repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    let selected: Vec<Check> = all.into_iter().filter(|c| only.is_empty() || only.contains(&c.name)).collect();
    let complete = only.is_empty() && repeat == 1 && breaking.is_none();
    let mut checks = Vec::new();
    for check in &selected {
        for i in 1..=repeat {
            let name = if i == 1 { check.name.clone() } else { format!("{}.{i}", check.name) };
            checks.push(Check { name, argv: check.argv.clone() });
        }
    }
    checks.extend(breaking.map(Break::check));
    Ok(Plan { checks, complete })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_and_repeat_select_and_number() {
        let plan = plan(&["lab-fentry".to_string()], 3, None).unwrap();
        let names: Vec<&str> = plan.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["lab-fentry", "lab-fentry.2", "lab-fentry.3"]);
        assert!(!plan.complete);
        assert!(plan.checks.iter().all(|c| c.argv.contains(&"fentry".to_string())));
    }

    #[test]
    fn the_full_set_is_complete_and_breaking_comes_last() {
        assert!(plan(&[], 1, None).unwrap().complete);
        let broken = plan(&[], 1, Some(Break::Lockup)).unwrap();
        assert!(!broken.complete);
        assert_eq!(broken.checks.last().unwrap().name, "break-lockup");
    }

    #[test]
    fn unknown_names_are_refused_with_the_list() {
        let err = plan(&["lab-fenty".to_string()], 1, None).unwrap_err().to_string();
        assert!(err.contains("lab-fentry"), "{err}");
        assert!(plan(&[], 0, None).is_err());
    }

    #[test]
    fn stress_checks_run_only_when_named() {
        assert!(!plan(&[], 1, None).unwrap().checks.iter().any(|c| c.name.starts_with("stress-")));
        assert_eq!(plan(&["stress-attach-fentry".to_string()], 1, None).unwrap().checks.len(), 1);
    }
}
