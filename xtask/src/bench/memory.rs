//! Kernel memory of zc-trace's maps: the most they can take on machines of 2, 16 and 128
//! CPUs, computed from the map definitions (`zc-trace doctor --json`), and the model behind
//! that checked against the kernel's own accounting on this host (`zc-trace serve` prints the
//! maps' memlock at start-up beside what the model gives for them empty).
use std::{
    fmt::Write as _,
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

pub fn map_memory(zc_trace: &Path) -> anyhow::Result<String> {
    let out = Command::new(zc_trace).args(["doctor", "--json", "-o", "-"]).output()?;
    if !out.status.success() {
        bail!("zc-trace doctor failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let doctor: serde_json::Value = serde_json::from_slice(&out.stdout).context("doctor's JSON")?;
    let m = &doctor["map_memory"];
    let at = m["most_bytes_at"].as_object().context("no map_memory in doctor's JSON")?;
    let (now, empty) = memlock_at_start(zc_trace)?;

    let mut md = String::from("## Kernel memory of the maps\n\n");
    md += "The most zc-trace's maps can take with every entry used and the default capacities, \
           computed from the map definitions in the embedded object (`zc-trace doctor`; the model \
           per map type is in docs/probes.md, Kernel memory). Per-CPU maps hold a value per possible CPU.\n\n";
    md += "| possible CPUs | at most |\n|---|---|\n";
    let mut rows: Vec<(u64, u64)> = at.iter().filter_map(|(cpus, b)| Some((cpus.parse().ok()?, b.as_u64()?))).collect();
    rows.sort();
    for (cpus, bytes) in rows {
        writeln!(md, "| {cpus} | {} |", mib(bytes))?;
    }
    let largest: Vec<String> = m["largest"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some(format!("{} {}", p[0].as_str()?, mib(p[1].as_u64()?))))
        .collect();
    writeln!(md, "\nLargest on this host ({} possible CPUs): {}.\n", m["cpus"], largest.join(", "))?;
    let diff = (now - empty) / empty * 100.0;
    writeln!(
        md,
        "Checked against the kernel on this host: at `serve` start-up the kernel accounts {now:.1} MiB \
         to the maps (their `memlock` in /proc/PID/fdinfo), and the model gives {empty:.1} MiB for them \
         empty ({diff:+.1}%; the model leaves out each map's fixed header). Maps that allocate on insert \
         grow from there, per entry, as the model says.\n"
    )?;
    Ok(md)
}

/// (the kernel's memlock, the model for empty maps) in MiB, from `serve`'s start-up line.
fn memlock_at_start(zc_trace: &Path) -> anyhow::Result<(f64, f64)> {
    let pid = std::process::id().to_string();
    let mut serve =
        Command::new(zc_trace).args(["serve", "-p", &pid, "--listen", "127.0.0.1:0"]).stderr(Stdio::piped()).spawn()?;
    let mut lines = BufReader::new(serve.stderr.take().unwrap()).lines();
    let line = lines.find_map(|l| l.ok().filter(|l| l.contains("kernel maps:")));
    let _ = serve.kill();
    let _ = serve.wait();
    let line = line.context("serve printed no kernel maps line")?;
    let number = |after: &str| -> Option<f64> {
        let rest = &line[line.find(after)? + after.len()..];
        rest.split_whitespace().next()?.parse().ok()
    };
    match (number("kernel maps: "), number("the model: ")) {
        (Some(now), Some(empty)) => Ok((now, empty)),
        _ => bail!("cannot read serve's line: {line}"),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}
