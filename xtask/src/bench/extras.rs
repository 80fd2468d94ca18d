//! The parts of the benchmark beyond the slowdown tables: the workload's own start-up reads,
//! the kernel's per-program statistics, every strategy's throughput, and the soak.
use std::{
    fmt::Write as _,
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::bail;

use super::measure::{RUNS, Receiver, SOURCE_SIZE, max, median, min};

/// A bounded soak: `zc-trace trace -i 1s` on a process that never stops copying (4 KiB
/// read-write to /dev/null in a loop) for `seconds`, sampling zc-trace's RSS every 10 s.
pub fn soak(zc_trace: &Path, src: &Path, seconds: u64) -> anyhow::Result<String> {
    if seconds == 0 {
        return Ok(String::new());
    }
    eprintln!("bench: soak for {seconds} s");
    let mut busy = Command::new(zc_trace)
        .args(["workload", "--strategy", "read-write", "--chunk", "4KiB", "--passes", "1000000", "--src"])
        .arg(src)
        .args(["--result", "/dev/null"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut tracer = Command::new(zc_trace)
        .args(["trace", "-i", "1s", "-p", &busy.id().to_string(), "-d", &format!("{seconds}s")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(tracer.stderr.take().unwrap()).read_line(&mut line)?;
    let rss = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    };
    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed().as_secs() < seconds {
        samples.push((started.elapsed().as_secs(), rss(tracer.id())));
        std::thread::sleep(std::time::Duration::from_secs(10).min(std::time::Duration::from_secs(seconds.max(1))));
    }
    let status = tracer.wait()?;
    let _ = busy.kill();
    let _ = busy.wait();
    if !status.success() {
        bail!("zc-trace failed during the soak ({status})");
    }
    let first = samples.iter().find(|s| s.1 > 0).map_or(0, |s| s.1);
    let last = samples.iter().rev().find(|s| s.1 > 0).map_or(0, |s| s.1);
    let peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let mut md = String::from(
        "## Soak

",
    );
    writeln!(
        md,
        "`zc-trace trace -i 1s` on a process copying without pause (4 KiB read-write to /dev/null) for {} s: \
         RSS {:.1} MiB after start, {:.1} MiB at the end, {:.1} MiB peak ({} samples every 10 s); zc-trace exited {}.\n",
        seconds,
        first as f64 / 1024.0,
        last as f64 / 1024.0,
        peak as f64 / 1024.0,
        samples.len(),
        status
    )?;
    Ok(md)
}

/// Untraced throughput of every lab strategy (`zc-trace workload`, median of RUNS) to a
/// loopback TCP receiver (copy-file-range to a file), beside the machine's memcpy bandwidth:
/// the physical reference a CPU copy is bounded by.
pub fn strategy_throughput(zc_trace: &Path, dir: &Path, src: &Path) -> anyhow::Result<String> {
    const STRATEGIES: [&str; 9] = [
        "read-write",
        "mmap-write",
        "sendfile",
        "splice",
        "vmsplice",
        "msg-zerocopy",
        "io-uring",
        "direct-io",
        "copy-file-range",
    ];
    let mut md = String::from("## Strategy throughput (untraced)\n\n");
    let memcpy = memcpy_bandwidth();
    writeln!(
        md,
        "memcpy bandwidth on this machine: {:.1} GiB/s (median of {RUNS} copies of a 256 MiB buffer, single thread). \
         Each strategy moves the {} MiB page-cached file in 64 KiB chunks, {RUNS} runs; to a loopback TCP receiver \
         (copy-file-range: to a file beside the source).\n",
        memcpy / (1u64 << 30) as f64,
        SOURCE_SIZE >> 20
    )?;
    writeln!(md, "| strategy | median GiB/s | min | max | fraction of memcpy |")?;
    writeln!(md, "|---|---:|---:|---:|---:|")?;
    for strategy in STRATEGIES {
        let mut speeds = Vec::new();
        for _ in 0..RUNS {
            let result = dir.join("tp.txt");
            let receiver = (strategy != "copy-file-range").then(Receiver::start).transpose()?;
            // copy_file_range needs a regular file as destination.
            let sink = match &receiver {
                Some(r) => format!("tcp:{}", r.port),
                None => format!("file:{}", dir.join("copy.bin").display()),
            };
            let mut cmd = Command::new(zc_trace);
            cmd.args(["workload", "--strategy", strategy, "--chunk", "64KiB", "--sink", &sink, "--src"])
                .arg(src)
                .arg("--result")
                .arg(&result);
            let status = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
            drop(receiver);
            if !status.success() {
                bail!("zc-trace workload --strategy {strategy} failed ({status})");
            }
            let text = std::fs::read_to_string(&result)?;
            let field = |k: &str| -> f64 {
                text.split_whitespace().find_map(|kv| kv.strip_prefix(k)).and_then(|v| v.parse().ok()).unwrap_or(0.0)
            };
            speeds.push(field("bytes=") / (field("elapsed_ns=") / 1e9));
        }
        let gib = (1u64 << 30) as f64;
        writeln!(
            md,
            "| {strategy} | {:.2} | {:.2} | {:.2} | {:.0}% |",
            median(&speeds) / gib,
            min(&speeds) / gib,
            max(&speeds) / gib,
            100.0 * median(&speeds) / memcpy
        )?;
    }
    let _ = std::fs::remove_file(dir.join("copy.bin"));
    md.push('\n');
    Ok(md)
}

/// Bytes per second of a single-threaded memcpy of a 256 MiB buffer (median of RUNS).
pub fn memcpy_bandwidth() -> f64 {
    let len = 256usize << 20;
    let src = vec![0x5au8; len];
    let mut dst = vec![0u8; len];
    dst.copy_from_slice(&src); // fault the pages in first
    let mut speeds = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&dst);
        speeds.push(len as f64 / started.elapsed().as_secs_f64());
    }
    median(&speeds)
}

/// read(2) calls the workload makes before its copy loops (dynamic loader, runtime).
pub fn startup_reads(zc_trace: &Path, dir: &Path, src: &Path) -> anyhow::Result<u64> {
    let json = dir.join("startup.json");
    let status = Command::new(zc_trace)
        .args(["syscalls", "--json"])
        .arg(&json)
        .arg("--")
        .arg(zc_trace)
        .args([
            "workload",
            "--strategy",
            "read-write",
            "--chunk",
            "4KiB",
            "--passes",
            "0",
            "--result",
            "/dev/null",
            "--src",
        ])
        .arg(src)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("counting the workload's start-up reads failed ({status})");
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    Ok(v["syscalls"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == "read")
        .and_then(|s| s["calls"].as_u64())
        .unwrap_or(0))
}

/// Where zc-trace's time per syscall goes: runs of the 4 KiB read-write workload under
/// `zc-trace trace --prog-stats`, once per way of reading kernel memory (typed loads, helper
/// calls), and one under the floor, with the kernel's BPF run-time statistics on (they add
/// two clock reads per program run to each).
pub fn program_profile(zc_trace: &Path, dir: &Path, src: &Path, passes: u32) -> anyhow::Result<String> {
    let run = |mode: &str| -> anyhow::Result<Vec<serde_json::Value>> {
        let stats = dir.join(format!("{mode}-prog.json"));
        let mut cmd = Command::new(zc_trace);
        cmd.arg("trace").arg("--prog-stats").arg(&stats);
        match mode {
            "floor" => cmd.arg("--floor"),
            reads => cmd.args(["--json", "/dev/null", "--kernel-reads", reads]),
        };
        let status = cmd
            .arg("--")
            .arg(zc_trace)
            .args([
                "workload",
                "--strategy",
                "read-write",
                "--chunk",
                "4KiB",
                "--sink",
                "null",
                "--result",
                "/dev/null",
            ])
            .args(["--passes", &passes.to_string(), "--src"])
            .arg(src)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("profiling run ({mode}) failed ({status})");
        }
        let v: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&stats)?)?;
        std::fs::remove_file(&stats)?;
        Ok(v)
    };
    let typed = run("typed")?;
    let helper = run("helper")?;
    let floor = run("floor")?;
    let mut md = String::from("\n## Where the time goes (4 KiB read-write, kernel BPF statistics)\n\n");
    md += "One run of the 4 KiB workload under `zc-trace trace --prog-stats` per way of reading kernel memory \
           (`--kernel-reads typed`: loads through `bpf_rdonly_cast` pointers; `helper`: a \
           `bpf_probe_read_kernel` call per read, what kernels before 6.2 get) and one under the floor, with \
           the kernel's run-time statistics on (`BPF_ENABLE_STATS`: two clock reads per program run, in \
           all). Mean = total run time / runs; verified = instructions the verifier processed.\n\n";
    md += "| reads | program | runs | mean ns/run | verified insns | JIT bytes |\n|---|---|---:|---:|---:|---:|\n";
    let rows = [("typed", &typed), ("helper", &helper), ("floor", &floor)];
    for (mode, v) in rows {
        for p in v.iter().filter(|p| p["runs"].as_u64().unwrap_or(0) > 0) {
            writeln!(
                md,
                "| {mode} | {} | {} | {:.1} | {} | {} |",
                p["name"].as_str().unwrap_or("?"),
                p["runs"],
                p["mean_ns"].as_f64().unwrap_or(0.0),
                p["verified_insns"],
                p["jited_bytes"]
            )?;
        }
    }
    let mean = |v: &[serde_json::Value], name: &str| {
        v.iter().find(|p| p["name"] == name).and_then(|p| p["mean_ns"].as_f64()).unwrap_or(0.0)
    };
    let empty = mean(&floor, "zc_floor");
    md += "\n";
    for (mode, v) in [("typed loads", &typed), ("helper calls", &helper)] {
        let (enter, exit) = (mean(v, "zc_sys_enter"), mean(v, "zc_sys_exit"));
        writeln!(
            md,
            "Per syscall with {mode}: zc-trace's two programs {:.0} ns ({enter:.0} + {exit:.0}), the floor's two \
             empty ones {:.0} ns: zc-trace's own work is {:.0} ns per syscall.\n",
            enter + exit,
            2.0 * empty,
            enter + exit - 2.0 * empty
        )?;
    }
    let own = mean(&typed, "zc_sys_enter") + mean(&typed, "zc_sys_exit") - 2.0 * empty;
    writeln!(
        md,
        "Target: zc-trace's own work at most 100 ns per syscall (both programs, typed loads, minus the floor's): \
         {own:.0} ns, {}.\n",
        if own <= 100.0 { "met" } else { "MISSED" }
    )?;
    Ok(md)
}
