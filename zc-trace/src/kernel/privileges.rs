//! Checked before anything is loaded, so that a missing capability is one clear line instead
//! of an EPERM from deep inside the loader.
use crate::model::exit::{ExitKind, Fatal};

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What is missing from an effective capability set for loading and attaching tracing
/// programs, or `None` when nothing is. CAP_SYS_ADMIN covers both on every kernel; since 5.8
/// CAP_BPF (load) plus CAP_PERFMON (tracing attach, reading kernel memory) are enough.
pub fn missing(cap_eff: u64) -> Option<&'static str> {
    let has = |cap: u32| cap_eff & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return None;
    }
    Some(match (has(CAP_BPF), has(CAP_PERFMON)) {
        (false, false) => "CAP_BPF and CAP_PERFMON",
        (false, true) => "CAP_BPF",
        _ => "CAP_PERFMON",
    })
}

/// Parses the `CapEff:` line of /proc/self/status.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
}

/// Fails with exit code 3 and the capability names when this process cannot trace.
pub fn require_tracing() -> Result<(), Fatal> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    require_tracing_with(parse_cap_eff(&status).unwrap_or(0))
}

/// `require_tracing` for a given effective capability set.
fn require_tracing_with(cap_eff: u64) -> Result<(), Fatal> {
    match missing(cap_eff) {
        None => Ok(()),
        Some(what) => Err(Fatal::new(
            ExitKind::Privileges,
            format!(
                "missing {what}, needed to load eBPF programs: run as root (sudo zc-trace ...); \
                 `setcap cap_bpf,cap_perfmon+ep` on the binary lets everyone who can run it read \
                 every process's I/O, so restrict it to a trusted group first \
                 (`chgrp tracing zc-trace && chmod 750 zc-trace`), or run the agent as the systemd \
                 unit in contrib/ (README, Privileges)"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_bpf_plus_perfmon_are_enough() {
        assert_eq!(missing(1 << CAP_SYS_ADMIN), None);
        assert_eq!(missing((1 << CAP_BPF) | (1 << CAP_PERFMON)), None);
        assert_eq!(missing(0x1ff_ffff_ffff), None);
    }

    /// The way to grant the capabilities comes with its risk and the safe way to do it.
    #[test]
    fn the_setcap_advice_names_the_risk_and_the_fix() {
        let Err(e) = require_tracing_with(0) else { panic!("no capabilities must fail") };
        for words in ["CAP_BPF and CAP_PERFMON", "every process", "chmod 750", "group", "systemd"] {
            assert!(e.message.contains(words), "{words:?} not in: {}", e.message);
        }
        assert!(!e.message.contains('\n'), "one line");
        assert!(require_tracing_with(1 << CAP_SYS_ADMIN).is_ok());
    }

    #[test]
    fn names_what_is_missing() {
        assert_eq!(missing(0), Some("CAP_BPF and CAP_PERFMON"));
        assert_eq!(missing(1 << CAP_BPF), Some("CAP_PERFMON"));
        assert_eq!(missing(1 << CAP_PERFMON), Some("CAP_BPF"));
    }

    #[test]
    fn reads_cap_eff_from_status() {
        let status = "Name:\tzc\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_cap_eff("Name: x\n"), None);
    }
}
