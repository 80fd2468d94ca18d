//! What a boot meant: each check's result, the run's problems (timeout, kernel trouble, a
//! guest that never finished), the per-check files under `target/vm/results/<release>/`,
//! and the summary table.
use std::{fmt::Write as _, fs, path::Path};

use super::{
    checks::Check,
    qemu::Boot,
    transcript::{Section, Transcript, secs},
};

/// What one kernel's run produced, for the summary.
pub struct KernelRun {
    pub release: String,
    pub boot_secs: Option<f64>,
    pub total_secs: f64,
    pub results: Vec<CheckResult>,
    /// Why the run as a whole failed (timeout, missing markers, QEMU error), if it did.
    pub problems: Vec<String>,
    pub doctor_summary: Option<String>,
    /// The guest kernel got stuck or broke (the watchdog's first line), if it did.
    pub kernel_trouble: Option<String>,
}

pub struct CheckResult {
    pub name: String,
    pub outcome: Outcome,
}

pub enum Outcome {
    /// `output`: the first lines of stderr (or stdout), kept when rc != 0.
    Ended { rc: i32, secs: f64, output: Option<String> },
    /// BEGIN without END: still running when QEMU stopped, or the guest died during it.
    Unfinished,
    /// No BEGIN: the guest never got to it.
    NotRun,
}

impl CheckResult {
    pub fn passed(&self) -> bool {
        matches!(self.outcome, Outcome::Ended { rc: 0, .. })
    }

    /// Why it failed, in one or more lines; `None` when it passed.
    pub fn failure(&self) -> Option<String> {
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

pub fn evaluate(release: &str, checks: &[Check], boot: &Boot, results_dir: &Path) -> anyhow::Result<KernelRun> {
    let mut transcript = Transcript::default();
    for line in &boot.lines {
        transcript.feed(line);
    }
    for (name, section) in &transcript.sections {
        save_section(results_dir, name, section)?;
    }

    let mut problems = Vec::new();
    let kernel_trouble = boot.kernel_trouble.as_ref().map(|report| {
        let text = report.render();
        let _ = fs::write(results_dir.join("kernel-trouble.txt"), &text);
        problems.push(text.trim_end().to_string());
        format!("{}: {}", report.trouble.name(), report.first_line.trim())
    });
    match boot.exit {
        None if !boot.timed_out => {
            let running = transcript.current.as_deref().unwrap_or("(no check)");
            problems.push(format!(
                "QEMU stopped {:.0}s in, when the guest kernel reported trouble; running at the time: {running}",
                secs(boot.started, boot.ended)
            ));
        }
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
        problems.push("the guest stopped before /init finished (see kernel.log)".to_string());
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
        kernel_trouble,
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
    let file: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
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

pub fn print_summary(runs: &[KernelRun]) {
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

/// Why a run ended without every check ending (the guest crashed, hung or never booted).
pub fn died(run: &KernelRun) -> Option<String> {
    if let Some(p) = run.problems.first() {
        return Some(p.clone());
    }
    run.results
        .iter()
        .find(|c| matches!(c.outcome, Outcome::Unfinished | Outcome::NotRun))
        .map(|c| format!("{} did not finish", c.name))
}
