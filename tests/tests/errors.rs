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
