//! PIDs as a container sees them (`trace -p PID --pidns /proc/HOSTPID/ns/pid`): the kernel
//! programs see host PIDs, so a PID given in another PID namespace is translated to the host
//! PID of the same process before anything is loaded: the process whose own PID namespace is
//! that one and whose `NSpid` (innermost last) ends in the given PID.
use std::{fs, os::unix::fs::MetadataExt as _, path::Path};

use crate::model::exit::{ExitKind, Fatal};

/// The host PID of the process that the PID namespace `ns` (a `/proc/PID/ns/pid` path)
/// calls `inner`.
pub fn host_pid(ns: &Path, inner: u32) -> Result<u32, Fatal> {
    let ns_ino = fs::metadata(ns).map(|m| m.ino()).map_err(|e| {
        Fatal::usage(format!(
            "cannot read the PID namespace `{}`: {e}; give /proc/PID/ns/pid of a process in the container",
            ns.display()
        ))
    })?;
    let entries = fs::read_dir("/proc").map_err(|e| Fatal::new(ExitKind::Failure, format!("reading /proc: {e}")))?;
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let in_ns = fs::metadata(entry.path().join("ns/pid")).is_ok_and(|m| m.ino() == ns_ino);
        if !in_ns {
            continue;
        }
        let status = fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        if innermost_pid(&status) == Some(inner) {
            return Ok(pid);
        }
    }
    Err(Fatal::new(
        ExitKind::NoTarget,
        format!(
            "no process with PID {inner} in the PID namespace {}: check it with `nsenter -t HOSTPID -p -r ps`",
            ns.display()
        ),
    ))
}

/// The last PID of `NSpid:` in /proc/PID/status: the process's PID in its own namespace.
fn innermost_pid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_innermost_pid_is_the_last_of_nspid() {
        assert_eq!(innermost_pid("Name:\tdd\nNSpid:\t4242\t17\t1\nPPid:\t1\n"), Some(1));
        assert_eq!(innermost_pid("NSpid:\t4242\n"), Some(4242));
        assert_eq!(innermost_pid("Name:\tdd\n"), None);
    }

    #[test]
    fn our_own_namespace_translates_to_ourselves() {
        let me = std::process::id();
        assert_eq!(host_pid(Path::new("/proc/self/ns/pid"), me).ok(), Some(me));
        assert!(host_pid(Path::new("/nonexistent"), 1).is_err());
    }
}
