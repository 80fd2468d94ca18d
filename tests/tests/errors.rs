//! Bad input and missing privileges: one line on stderr that says what to do, and the exit
//! code documented in the README.
mod common;

use std::process::Command;

use common::*;

fn one_line_error(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "expected one line, got:\n{stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout on error");
    stderr
}

#[test]
fn bad_values_are_usage_errors() {
    for args in [
        &["syscalls", "-p", "1", "-d", "0s"][..],
        &["syscalls", "-p", "1", "-d", "5"],
        &["syscalls", "-p", "abc"],
        &["syscalls", "-p", "1", "--", "true"],
        &["syscalls"],
        &["syscalls", "-p", "1", "--json", "/nonexistent-dir/out.json"],
        &["doctor", "--json", "/proc/doctor.json"],
        &["no-such-command"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let line = one_line_error(&out);
        assert!(line.starts_with("zc-trace: "), "{args:?}: {line}");
    }
}

/// Usage errors found before anything is loaded or attached (they need no privileges: an
/// unprivileged run would otherwise stop at exit 3), each naming what is wrong.
#[test]
fn usage_errors_name_what_is_wrong() {
    // Should the check regress, the lab would run (small) and write there, not here.
    let dir = TempDir::new("usage");
    let (png, plain) = (dir.0.join("out.png").display().to_string(), dir.0.join("plot").display().to_string());
    let small = ["--size", "1MiB", "--sink", "null", "--strategies", "read-write"];
    let cost = dir.0.join("cost.json").display().to_string();
    for (args, says) in [
        (&[&["lab", "--plot", &png][..], &small].concat()[..], "not .png"),
        (&[&["lab", "--plot", &plain][..], &small].concat(), "ending in .svg"),
        (&["lab", "--strategies", "read-write,sendfile,read-write"], "read-write twice"),
        (&["trace", "-p", "1,1"], "PID 1 twice"),
        (&["serve", "-p", "1,1"], "PID 1 twice"),
        (&["top", "-p", "1,1"], "PID 1 twice"),
        // A pipe is not a terminal: top says what to use instead.
        (&["top"], "use `zc-trace trace -a -i 1s`"),
        (&["top", "-i", "50ms"], "shorter than 100ms"),
        (&["trace", "--json", "/proc/forbidden/x.json", "--", "true"], "/proc/forbidden/x.json"),
        (&["trace", "--json", "/proc/forbidden/x.json", "-p", "1"], "/proc/forbidden/x.json"),
        (&["lab", "--json", "/proc/forbidden/x.json"], "/proc/forbidden/x.json"),
        (&["lab", "--csv", "/proc/forbidden/x.csv"], "/proc/forbidden/x.csv"),
        (&["trace", "-o", "/proc/forbidden/x.txt", "--", "true"], "/proc/forbidden/x.txt"),
        (&["syscalls", "-o", "/proc/forbidden/x.txt", "--", "true"], "/proc/forbidden/x.txt"),
        (&["trace", "--json", "/tmp/a.json", "-o", "/tmp/b.json", "--", "true"], "give one"),
        // calibrate checks its output path and sizes before timing anything.
        (&["calibrate", "--out", "/proc/forbidden/x.json"], "/proc/forbidden/x.json"),
        (&["calibrate", "--sizes", "4KiB,0", "--out", &cost], "is zero"),
        (&["calibrate", "--sizes", "128MiB", "--out", &cost], "up to 64MiB"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let line = one_line_error(&out);
        assert!(line.starts_with("zc-trace: ") && line.contains(says), "{args:?}: {line}");
    }
}

/// `--probe-tier fentry` (or kprobe) on a kernel that refuses that attach kind exits 5, with
/// what to do, rather than running at another tier while reporting the one asked for.
#[test]
fn a_forced_tier_the_kernel_refuses_exits_5() {
    if !privileged("a_forced_tier_the_kernel_refuses_exits_5") {
        return;
    }
    let doctor = json(&run(&["doctor", "--json"]));
    for (tier, kind) in [("fentry", "fexit"), ("kprobe", "kretprobe")] {
        let works = doctor["attach_kinds"][kind]["works"] == true;
        for args in [
            &["trace", "--probe-tier", tier, "--json", "/dev/null", "--", "true"][..],
            &[
                "lab",
                "--probe-tier",
                tier,
                "--size",
                "1MiB",
                "--strategies",
                "read-write",
                "--sink",
                "null",
                "--json",
                "/dev/null",
            ],
        ] {
            let out = run(args);
            if works {
                assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
                continue;
            }
            assert_eq!(out.status.code(), Some(5), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
            let line = one_line_error(&out);
            assert!(line.contains(&format!("--probe-tier {tier} cannot run")), "{line}");
            assert!(line.contains("--probe-tier auto"), "{line}");
        }
    }
}

#[test]
fn missing_targets_exit_4() {
    if !privileged("missing_targets_exit_4") {
        return;
    }
    for (args, says) in [
        (&["syscalls", "-p", "4000000"][..], "no process with PID 4000000"),
        (&["syscalls", "-p", "2"], "kernel thread"),
        (&["syscalls", "--", "/no/such/program"], "cannot run"),
        (&["syscalls", "--", "no-such-program-zc"], "not found in PATH"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let line = one_line_error(&out);
        assert!(line.contains(says), "{args:?}: {line}");
    }
}

/// Without CAP_BPF/CAP_PERFMON: exit 3 and the capabilities named, before anything is loaded.
#[test]
fn unprivileged_user_is_told_which_capabilities() {
    let as_nobody = |args: &[&str]| {
        if unsafe { libc::geteuid() } == 0 {
            Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
                .arg(zc_trace())
                .args(args)
                .output()
                .expect("setpriv (util-linux) is needed to drop root")
        } else {
            run(args)
        }
    };
    for args in [&["doctor"][..], &["syscalls", "-p", "1", "-d", "1s"], &["syscalls", "--", "true"]] {
        let out = as_nobody(args);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let line = one_line_error(&out);
        assert!(line.contains("CAP_BPF") && line.contains("CAP_PERFMON"), "{line}");
    }
}
