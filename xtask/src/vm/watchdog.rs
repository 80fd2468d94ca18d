//! Notices a guest kernel in trouble from its log, in seconds rather than at the run's timeout.
//!
//! The guest's kernel console is a serial port of its own (`kernel.log`, every level), so its
//! messages never mix with the checks' output. Each line is fed here; the first line that says
//! the kernel is stuck or broken arms the watchdog, which then keeps the following lines for a
//! moment (the backtraces the kernel prints right after: the stuck CPU's stack, and with
//! `softlockup_all_cpu_backtrace=1` every other CPU's) and reports. The caller stops QEMU then.
//! Pure: no clock of its own, no I/O; tested below.
use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

/// What the kernel said, in the words of its own messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trouble {
    /// `watchdog: BUG: soft lockup - CPU#0 stuck for 23s!`
    SoftLockup,
    /// `Watchdog detected hard LOCKUP on cpu 1`
    HardLockup,
    /// `rcu: INFO: rcu_sched self-detected stall on CPU`, `rcu_preempt detected stalls`
    RcuStall,
    /// `INFO: task X:123 blocked for more than 120 seconds.`
    HungTask,
    /// `BUG: kernel NULL pointer dereference`, `BUG: unable to handle page fault`, ...
    Bug,
    /// `Oops: 0000 [#1]`, `int3: 0000 [#1]`, `general protection fault`; on arm64
    /// `Internal error: Oops: ...`, `Internal error: BRK handler: ...` (a stray breakpoint, as
    /// int3 on x86)
    Oops,
    /// `Kernel panic - not syncing: ...`
    Panic,
}

impl Trouble {
    pub fn name(self) -> &'static str {
        match self {
            Trouble::SoftLockup => "soft lockup",
            Trouble::HardLockup => "hard lockup",
            Trouble::RcuStall => "RCU stall",
            Trouble::HungTask => "hung task",
            Trouble::Bug => "kernel BUG",
            Trouble::Oops => "oops",
            Trouble::Panic => "kernel panic",
        }
    }

    /// The kind of trouble a kernel log line announces, if any. Order matters: a soft lockup
    /// line also says `BUG:`.
    pub fn of_line(line: &str) -> Option<Trouble> {
        let has = |s: &str| line.contains(s);
        if has("soft lockup") {
            Some(Trouble::SoftLockup)
        } else if has("hard LOCKUP") {
            Some(Trouble::HardLockup)
        } else if has("self-detected stall") || has("detected stalls on CPUs") || has("rcu: INFO:") {
            Some(Trouble::RcuStall)
        } else if has("blocked for more than") {
            Some(Trouble::HungTask)
        } else if has("Kernel panic") {
            Some(Trouble::Panic)
        } else if has("BUG:") {
            Some(Trouble::Bug)
        } else if has("Oops") || has("general protection fault") || has("int3: 0000") || has("Internal error:") {
            Some(Trouble::Oops)
        } else {
            None
        }
    }
}

/// What the watchdog saw: the first trouble line, what came just before it and what followed.
#[derive(Debug)]
pub struct Report {
    pub trouble: Trouble,
    pub first_line: String,
    /// Every line kept: a few before the first trouble line, it, and those after it.
    pub lines: Vec<String>,
    /// Other kinds announced after the first (a lockup often ends in a panic).
    pub also: Vec<Trouble>,
}

impl Report {
    /// The stuck CPU's call trace: the frame lines after the first `Call Trace:` (arm64:
    /// `Call trace:`; up to the end of that trace), and the `RIP:` line (arm64: `pc :`) that
    /// says where the CPU was.
    pub fn stack(&self) -> Vec<&str> {
        let mut out = Vec::new();
        let mut in_trace = false;
        for line in &self.lines {
            let text = line.as_str();
            if (text.contains("RIP: 0010:") || text.contains("] pc : ")) && out.is_empty() {
                out.push(text);
            } else if text.contains("Call Trace:") || text.contains("Call trace:") {
                if in_trace || out.len() > 1 {
                    break;
                }
                in_trace = true;
                out.push(text);
            } else if in_trace {
                if text.contains("</TASK>") || text.contains("---[ end") {
                    out.push(text);
                    break;
                }
                out.push(text);
            }
        }
        out
    }

    /// The report as the run's failure text: the lines around the trouble, then the stack.
    pub fn render(&self) -> String {
        let mut s = format!("guest kernel {}: {}\n", self.trouble.name(), self.first_line.trim());
        if !self.also.is_empty() {
            let also: Vec<&str> = self.also.iter().map(|t| t.name()).collect();
            s.push_str(&format!("  then also: {}\n", also.join(", ")));
        }
        s.push_str("  kernel log around it:\n");
        for line in self.lines.iter().take(40) {
            s.push_str(&format!("    | {line}\n"));
        }
        let stack = self.stack();
        if !stack.is_empty() {
            s.push_str("  stuck CPU's stack:\n");
            for line in stack {
                s.push_str(&format!("    | {line}\n"));
            }
        }
        s
    }
}

/// Lines kept from before the first trouble line.
const BEFORE: usize = 8;
/// Lines kept after it at most (backtraces of two CPUs fit).
const AFTER: usize = 400;

pub struct Watchdog {
    /// How long to keep reading after the first trouble line before reporting.
    settle: Duration,
    recent: VecDeque<String>,
    armed: Option<(Instant, Report)>,
}

impl Watchdog {
    pub fn new(settle: Duration) -> Self {
        Watchdog { settle, recent: VecDeque::new(), armed: None }
    }

    /// Feeds one kernel log line, read at `at`.
    pub fn feed(&mut self, line: &str, at: Instant) {
        let trouble = Trouble::of_line(line);
        match &mut self.armed {
            Some((_, report)) => {
                if report.lines.len() < BEFORE + 1 + AFTER {
                    report.lines.push(line.to_string());
                }
                if let Some(t) = trouble
                    && t != report.trouble
                    && !report.also.contains(&t)
                {
                    report.also.push(t);
                }
            }
            None => {
                if let Some(trouble) = trouble {
                    let mut lines: Vec<String> = self.recent.drain(..).collect();
                    lines.push(line.to_string());
                    self.armed = Some((at, Report { trouble, first_line: line.to_string(), lines, also: Vec::new() }));
                } else {
                    if self.recent.len() == BEFORE {
                        self.recent.pop_front();
                    }
                    self.recent.push_back(line.to_string());
                }
            }
        }
    }

    /// The first trouble seen so far, as soon as it was seen (to say so at once).
    pub fn first(&self) -> Option<(Trouble, &str)> {
        self.armed.as_ref().map(|(_, r)| (r.trouble, r.first_line.as_str()))
    }

    /// Whether the report is complete at `now`: the settle time has passed since the first
    /// trouble line, or the kept lines are full.
    pub fn ready(&self, now: Instant) -> bool {
        self.armed.as_ref().is_some_and(|(at, r)| {
            now.saturating_duration_since(*at) >= self.settle || r.lines.len() >= BEFORE + 1 + AFTER
        })
    }

    /// The report, if anything was seen (complete or not: QEMU may have stopped first).
    pub fn into_report(self) -> Option<Report> {
        self.armed.map(|(_, r)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like Debian 6.1's soft lockup report (the frames are made up, the format is the
    /// kernel's).
    const LOCKUP: &[&str] = &[
        "[   41.100000] e1000: zctx NIC Link is Up 1000 Mbps Full Duplex",
        "[   66.203201] watchdog: BUG: soft lockup - CPU#0 stuck for 23s! [zc-trace:190]",
        "[   66.203300] Modules linked in: e1000 ext4 nvme",
        "[   66.203400] CPU: 0 PID: 190 Comm: zc-trace Not tainted 6.1.0-56-amd64 #1  Debian 6.1.192-2",
        "[   66.203500] RIP: 0010:smp_call_function_many_cond+0x12e/0x3b0",
        "[   66.203600] Call Trace:",
        "[   66.203700]  <TASK>",
        "[   66.203800]  ? text_poke_memset+0x30/0x30",
        "[   66.203900]  on_each_cpu_cond_mask+0x1d/0x30",
        "[   66.204000]  text_poke_bp_batch+0xb0/0x2b0",
        "[   66.204100]  </TASK>",
        "[   66.204200] Sending NMI from CPU 0 to CPUs 1:",
        "[   66.204300] Call Trace:",
        "[   66.204400]  <NMI>",
    ];

    #[test]
    fn classifies_the_kernels_own_words() {
        assert_eq!(Trouble::of_line(LOCKUP[1]), Some(Trouble::SoftLockup));
        assert_eq!(Trouble::of_line("[ 1.0] rcu: INFO: rcu_sched self-detected stall on CPU"), Some(Trouble::RcuStall));
        assert_eq!(
            Trouble::of_line("[ 1.0] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:"),
            Some(Trouble::RcuStall)
        );
        assert_eq!(Trouble::of_line("[ 1.0] int3: 0000 [#1] PREEMPT SMP NOPTI"), Some(Trouble::Oops));
        assert_eq!(Trouble::of_line("[ 1.0] BUG: kernel NULL pointer dereference, address: 0"), Some(Trouble::Bug));
        assert_eq!(Trouble::of_line("[ 1.0] Kernel panic - not syncing: softlockup: hung tasks"), Some(Trouble::Panic));
        assert_eq!(
            Trouble::of_line("[ 1.0] INFO: task zc-trace:190 blocked for more than 120 seconds."),
            Some(Trouble::HungTask)
        );
        assert_eq!(Trouble::of_line(LOCKUP[0]), None);
        assert_eq!(Trouble::of_line("[ 1.0] watchdog: Enabled. Permanently consumes one hw-PMU counter."), None);
    }

    #[test]
    fn reports_after_settling_with_context_and_the_stuck_stack() {
        let t0 = Instant::now();
        let mut dog = Watchdog::new(Duration::from_secs(3));
        for line in LOCKUP {
            dog.feed(line, t0);
        }
        assert_eq!(dog.first().map(|f| f.0), Some(Trouble::SoftLockup));
        assert!(!dog.ready(t0 + Duration::from_secs(1)));
        assert!(dog.ready(t0 + Duration::from_secs(3)));
        let report = dog.into_report().unwrap();
        assert_eq!(report.lines.first().map(String::as_str), Some(LOCKUP[0]));
        assert_eq!(report.lines.len(), LOCKUP.len());
        let stack = report.stack();
        assert!(stack[0].contains("RIP: 0010:smp_call_function_many_cond"));
        assert!(stack.iter().any(|l| l.contains("text_poke_bp_batch")));
        assert!(stack.last().unwrap().contains("</TASK>"), "the stack ends with the first trace: {stack:?}");
        let text = report.render();
        assert!(text.contains("guest kernel soft lockup"));
    }

    /// Shaped like an arm64 soft lockup report: `pc :` and `Call trace:` instead of `RIP:`
    /// and `Call Trace:`, no `<TASK>` markers.
    #[test]
    fn arm64_reports_have_their_stack_too() {
        let t0 = Instant::now();
        let mut dog = Watchdog::new(Duration::from_secs(3));
        for line in [
            "[   66.2] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [zc-spin-in-kern:201]",
            "[   66.2] pstate: 60400005 (nZCv daif +PAN -UAO -TCO -DIT -SSBS BTYPE=--)",
            "[   66.2] pc : bpf_prog_1f0e2b3c_outer+0x40/0x88",
            "[   66.2] lr : bpf_loop+0x80/0xc8",
            "[   66.2] Call trace:",
            "[   66.2]  bpf_prog_1f0e2b3c_outer+0x40/0x88",
            "[   66.2]  bpf_test_run+0x114/0x2d8",
            "[   66.2] Sending NMI from CPU 1 to CPUs 0:",
            "[   66.2] Call trace:",
        ] {
            dog.feed(line, t0);
        }
        let report = dog.into_report().unwrap();
        assert_eq!(report.trouble, Trouble::SoftLockup);
        let stack = report.stack();
        assert!(stack[0].contains("pc : bpf_prog_1f0e2b3c_outer"), "{stack:?}");
        assert!(stack.iter().any(|l| l.contains("bpf_test_run")));
        assert!(!stack.last().unwrap().contains("Call trace:"), "only the first trace: {stack:?}");
        assert_eq!(
            Trouble::of_line("[ 1.0] Internal error: BRK handler: 00000000f2000100 [#1] SMP"),
            Some(Trouble::Oops)
        );
    }

    #[test]
    fn a_later_panic_is_noted() {
        let t0 = Instant::now();
        let mut dog = Watchdog::new(Duration::from_secs(3));
        dog.feed(LOCKUP[1], t0);
        dog.feed("[ 70.0] Kernel panic - not syncing: softlockup: hung tasks", t0);
        assert_eq!(dog.into_report().unwrap().also, vec![Trouble::Panic]);
    }

    #[test]
    fn quiet_logs_never_arm() {
        let t0 = Instant::now();
        let mut dog = Watchdog::new(Duration::from_secs(3));
        for i in 0..100 {
            dog.feed(&format!("[ {i}.0] nothing to see"), t0);
        }
        assert!(!dog.ready(t0 + Duration::from_secs(10)));
        assert!(dog.into_report().is_none());
    }
}
