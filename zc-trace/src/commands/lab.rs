//! `zc-trace lab`: for each strategy, prepare the sink, fork the receiver and the sender held
//! at their gates, attach the counting programs filtered to exactly those two processes,
//! release them, and attribute what they cost.
use std::{path::Path, time::Instant};

use anyhow::Context as _;

use super::Signals;

use crate::{
    attribute::{self, Input, Role},
    cli::LabArgs,
    collect::GlobalEvents,
    exit::Fatal,
    export,
    kernel::{self, KernelInfo},
    lab,
    loader::Filter,
    model, output, privileges,
    report::{AttributionReport, Drops, LabSettings, ProbeStatus, Skipped},
    session::{Options, Session},
    target::{Ended, Target},
    workloads::{
        self, Outcome, Strategy, ZerocopyCompletions,
        sinks::{Sink, SinkKind, TcpEndpoint},
    },
};

/// Where the tcp sink's receiver listens, from the command line.
fn endpoint(args: &LabArgs) -> TcpEndpoint {
    TcpEndpoint { addr: args.receiver_addr, netns: args.receiver_netns.clone() }
}

pub fn run(args: LabArgs) -> anyhow::Result<i32> {
    for path in [&args.output.json, &args.csv, &args.plot].into_iter().flatten() {
        output::check_writable(path)?;
    }
    if args.chunk > args.size {
        return Err(Fatal::usage(format!(
            "--chunk ({}) is larger than --size ({}): choose a chunk no larger than the file",
            args.chunk, args.size
        ))
        .into());
    }
    if args.chunk > 1 << 30 {
        return Err(Fatal::usage("--chunk is larger than 1GiB: choose e.g. 64KiB").into());
    }
    let endpoint = endpoint(&args);
    if (args.port != 0 || endpoint != TcpEndpoint::default()) && args.sink != SinkKind::Tcp {
        return Err(Fatal::usage("--port, --receiver-addr and --receiver-netns apply to the tcp sink only").into());
    }
    workloads::sinks::check_endpoint(&endpoint, args.port).map_err(|e| {
        let netns = endpoint.netns.as_ref().map(|p| format!(" in the network namespace {}", p.display())).unwrap_or_default();
        Fatal::usage(format!(
            "cannot listen on {}:{}{netns}: {e}; choose another --port (0 for a free one), --receiver-addr or --receiver-netns",
            endpoint.addr, args.port
        ))
    })?;
    privileges::require_tracing()?;
    kernel::prepare_pseudo_filesystems();
    super::runtime()?.block_on(lab(args))
}

/// One traced run of one strategy.
struct Run {
    rows: Vec<attribute::Row>,
    probes: Vec<ProbeStatus>,
    drops: Drops,
    system: GlobalEvents,
}


async fn lab(args: LabArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    let strategies = if args.strategies.is_empty() { Strategy::ALL.to_vec() } else { args.strategies.clone() };
    // Catch SIGINT/SIGTERM before anything is created, so that an interruption at any point
    // still removes the temp directory (a pending signal is seen by the first wait below).
    let mut signals = Signals::catch()?;
    let dir = TempDir::create()?;
    let src = dir.path().join("source");
    write_random_file(&src, args.size).map_err(|e| {
        Fatal::usage(format!(
            "cannot create the {} source file in {}: {e}; choose a smaller --size or point TMPDIR elsewhere",
            lab::human_bytes(args.size as f64),
            std::env::temp_dir().display()
        ))
    })?;
    let progress = Progress::new(strategies.len() as u64 * u64::from(args.runs));
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    let mut last: Option<Run> = None;
    'strategies: for strategy in strategies {
        if let Some(reason) = lab::unsupported(strategy, args.sink, &src) {
            skipped.push(Skipped { strategy: strategy.name(), reason });
            progress.skip(u64::from(args.runs));
            continue;
        }
        let mut runs = Vec::new();
        for i in 0..args.runs {
            progress.start(&format!("{strategy} (run {} of {})", i + 1, args.runs));
            match run_once(strategy, &args, &src, dir.path(), &mut signals).await? {
                Some(run) => runs.push(run),
                None => {
                    progress.finish();
                    eprintln!("zc-trace: interrupted; reporting the strategies that completed");
                    break 'strategies;
                }
            }
            progress.done();
        }
        let run = median_by_throughput(runs);
        rows.extend(run.rows.iter().cloned());
        last = Some(run);
    }
    progress.finish();
    let (probes, drops, system) = match last {
        Some(run) => (run.probes, run.drops, run.system),
        None => (Vec::new(), Drops::new(Default::default()), Default::default()),
    };
    let chunks = args.size.div_ceil(args.chunk);
    let path = model::Path {
        loopback: args.sink == SinkKind::Tcp && endpoint(&args).is_loopback(),
        cold: args.cold,
        tcp: args.sink == SinkKind::Tcp,
    };
    let classic = rows
        .iter()
        .filter(|r| r.role == "sender")
        .filter_map(|r| model::compare(r, path, chunks))
        .collect();
    let report = AttributionReport {
        kernel: KernelInfo::read(),
        tier: args.probe_tier,
        probes,
        rows,
        drops,
        duration_s: started.elapsed().as_secs_f64(),
        system,
        lab: Some(LabSettings {
            size_bytes: args.size,
            chunk_bytes: args.chunk,
            sink: args.sink.name().into(),
            cold: args.cold,
            runs: args.runs,
            skipped,
            classic,
        }),
    };
    if let Some(path) = &args.csv {
        export::write_csv(path, &report.rows)?;
    }
    if let Some(path) = &args.plot {
        let title = format!("zc-trace lab, Linux {}, {} in {} chunks over {}", report.kernel.release,
            lab::human_bytes(args.size as f64), lab::human_bytes(args.chunk as f64), args.sink);
        export::write_plot(path, &report.rows, &title)?;
    }
    match &args.output.json {
        Some(path) => output::write_json(path, &report)?,
        None => print!("{}", lab::render(&report, args.raw)),
    }
    Ok(0)
}

/// The run whose sender had the median throughput (counts are the same in every run; the
/// time is what varies).
fn median_by_throughput(mut runs: Vec<Run>) -> Run {
    let speed = |r: &Run| r.rows.first().and_then(|r| r.throughput_bytes_per_s).unwrap_or(0.0);
    runs.sort_by(|a, b| speed(a).total_cmp(&speed(b)));
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
}

/// Prepares the sink, forks receiver and sender held at their gates, attaches, releases,
/// waits and attributes. `None` when interrupted.
async fn run_once(strategy: Strategy, args: &LabArgs, src: &Path, dir: &Path, signals: &mut Signals) -> anyhow::Result<Option<Run>> {
    if args.cold {
        drop_page_cache(src)?;
    }
    let mut sink = Sink::prepare_at(args.sink, dir, args.port, &endpoint(args)).context("preparing the sink")?;
    let chunk = args.chunk as usize;
    let recv_result = SharedResult::new()?;
    let send_result = SharedResult::new()?;
    let mut receiver = if args.sink.has_receiver() {
        Some(Target::fork_held(&format!("zc-recv-{strategy}"), || {
            let t = Instant::now();
            let outcome = sink.receive(chunk).map(|bytes| Outcome { bytes, zerocopy: None });
            recv_result.store(&outcome, t.elapsed().as_nanos() as u64);
            i32::from(outcome.is_err())
        })?)
    } else {
        None
    };
    let mut sender = Target::fork_held(&format!("zc-{strategy}"), || {
        let t = Instant::now();
        let outcome = sink.sender_fd().and_then(|dst| workloads::run(strategy, src, dst.0, chunk));
        send_result.store(&outcome, t.elapsed().as_nanos() as u64);
        i32::from(outcome.is_err())
    })?;
    sink.close_parent_ends();

    let mut pids = vec![sender.pid];
    pids.extend(receiver.as_ref().map(|r| r.pid));
    let options = Options { stats_entries: Some(args.map_entries), ..Default::default() };
    let session = Session::attach_with(Filter::Set(pids), args.probe_tier, options)?;
    if let Some(r) = receiver.as_mut() {
        r.release()?;
    }
    sender.release()?;
    tokio::select! {
        done = async {
            let s = sender.ended().await?;
            let r = match &receiver { Some(r) => Some(r.ended().await?), None => None };
            anyhow::Ok((s, r))
        } => {
            let (s, r) = done?;
            if s != Ended::Child(0) {
                anyhow::bail!("the {strategy} sender failed: {}", send_result.error());
            }
            if r.is_some_and(|r| r != Ended::Child(0)) {
                anyhow::bail!("the {strategy} receiver failed: {}", recv_result.error());
            }
        }
        _ = signals.int.recv() => return Ok(stop(sender, receiver)),
        _ = signals.term.recv() => return Ok(stop(sender, receiver)),
    }
    let stats = session.stats()?;
    let syscalls = session.syscalls()?;
    let flows = session.flows()?;
    let run = Run {
        rows: Vec::new(),
        probes: session.probes().to_vec(),
        drops: session.drops()?,
        system: session.global_events()?,
    };
    let devices = attribute::devices_by_key(&session.dma_devices()?);
    let evidence = session.evidence().clone();
    drop(session);
    if let Some(f) = sink.file() {
        let _ = std::fs::remove_file(f);
    }
    let empty = Default::default();
    let empty_counts = Default::default();
    let mut parts = vec![(&sender, Role::Sender, &send_result)];
    if let Some(r) = &receiver {
        parts.push((r, Role::Receiver, &recv_result));
    }
    let rows = parts
        .into_iter()
        .map(|(target, role, result)| {
            attribute::row(
                Input {
                    strategy: strategy.name().into(),
                    role,
                    pid: target.pid,
                    comm: target.comm.clone(),
                    path: None,
                    by_class: stats.get(&target.pid).unwrap_or(&empty),
                    syscalls: syscalls.get(&target.pid).unwrap_or(&empty_counts),
                    elapsed_s: Some(result.nanos() as f64 / 1e9),
                    msg_zerocopy: result.zerocopy(),
                },
                &evidence,
                &run.system,
            )
        })
        .map(|mut row| {
            // The session covered exactly this run: every device's mappings in that window,
            // shown where the process-context figures are observable at all.
            if row.dma.dma_map_bytes_to_device.is_some() {
                row.dma.system_by_device = Some(devices.clone());
            }
            attribute::copied_at_transmit(&mut row);
            row.flows = crate::flows::rows_for(row.pid, &flows, &Default::default());
            row
        })
        .collect();
    Ok(Some(Run { rows, ..run }))
}

/// Interrupted: our own workload processes do not outlive the lab.
fn stop(sender: Target, receiver: Option<Target>) -> Option<Run> {
    sender.kill();
    if let Some(r) = receiver {
        r.kill();
    }
    None
}

/// A progress bar on stderr while workloads run; nothing when stderr is not a terminal.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(total: u64) -> Self {
        use std::io::IsTerminal as _;
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Self(Some(bar))
    }
    fn start(&self, what: &str) {
        if let Some(b) = &self.0 {
            b.set_message(what.to_string());
        }
    }
    fn done(&self) {
        if let Some(b) = &self.0 {
            b.inc(1);
        }
    }
    fn skip(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// Evicts the file's pages from the page cache (and only this file's: the rest of the
/// system's cache is left alone), so the next read goes to the disk. Pages under writeback
/// or briefly held elsewhere survive a DONTNEED, so residency is checked with mincore(2)
/// and the eviction retried.
fn drop_page_cache(path: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::open(path)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    for _ in 0..20 {
        file.sync_all()?;
        // SAFETY: a valid fd; advice on the whole file.
        let rc = unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc)).context("posix_fadvise(DONTNEED)");
        }
        if resident_pages(&file)? == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    eprintln!("zc-trace: warning: part of {} stayed in the page cache; disk figures cover the rest", path.display());
    Ok(())
}

/// How many of the file's pages are in the page cache (mincore on a mapping of it).
fn resident_pages(file: &std::fs::File) -> anyhow::Result<usize> {
    let len = file.metadata()?.len() as usize;
    if len == 0 {
        return Ok(0);
    }
    let fd = std::os::fd::AsRawFd::as_raw_fd(file);
    // SAFETY: a read-only shared mapping of the whole file, unmapped below; mincore fills one
    // byte per page.
    unsafe {
        let addr = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, fd, 0);
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mmap for mincore");
        }
        let mut vec = vec![0u8; len.div_ceil(4096)];
        let rc = libc::mincore(addr, len, vec.as_mut_ptr());
        libc::munmap(addr, len);
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("mincore");
        }
        Ok(vec.iter().filter(|&&b| b & 1 != 0).count())
    }
}

/// A private directory under $TMPDIR, removed with everything in it on drop (also when the
/// lab is interrupted or fails).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn create() -> anyhow::Result<Self> {
        let template = std::env::temp_dir().join("zc-trace-lab.XXXXXX");
        let mut bytes = template.into_os_string().into_encoded_bytes();
        bytes.push(0);
        // SAFETY: a NUL-terminated, writable template; mkdtemp creates the dir with mode 0700.
        let p = unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) };
        if p.is_null() {
            return Err(std::io::Error::last_os_error()).context("creating the lab's temp directory");
        }
        bytes.pop();
        Ok(Self(std::path::PathBuf::from(unsafe { std::ffi::OsString::from_encoded_bytes_unchecked(bytes) })))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Random (incompressible) data, so that no layer can shortcut the copy.
fn write_random_file(path: &Path, size: u64) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut state: u64 = 0x2545_F491_4F6C_DD1D ^ u64::from(std::process::id());
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_ne_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.into_inner()?.sync_data()
}

/// A page shared with a forked workload, which writes its result there: reporting through
/// memory costs the workload no system call, so its counts stay exactly its own.
struct SharedResult(*mut Shared);

#[repr(C)]
#[derive(Clone, Copy)]
struct Shared {
    bytes: u64,
    nanos: u64,
    errno: i64,
    has_zerocopy: u64,
    zc_completed: u64,
    zc_copied: u64,
}

impl SharedResult {
    fn new() -> anyhow::Result<Self> {
        // SAFETY: a fresh anonymous shared mapping of one page, zero-filled.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mapping the result page");
        }
        Ok(Self(p.cast()))
    }

    fn store(&self, outcome: &std::io::Result<Outcome>, nanos: u64) {
        let zc = outcome.as_ref().ok().and_then(|o| o.zerocopy);
        let shared = Shared {
            bytes: outcome.as_ref().map_or(0, |o| o.bytes),
            nanos,
            errno: outcome.as_ref().err().map_or(0, |e| e.raw_os_error().unwrap_or(-1) as i64),
            has_zerocopy: u64::from(zc.is_some()),
            zc_completed: zc.map_or(0, |z| z.completed),
            zc_copied: zc.map_or(0, |z| z.copied),
        };
        // SAFETY: the page is ours and large enough; the parent reads it after the child exits.
        unsafe { self.0.write_volatile(shared) };
    }

    fn load(&self) -> Shared {
        unsafe { self.0.read_volatile() }
    }

    fn nanos(&self) -> u64 {
        self.load().nanos
    }

    fn zerocopy(&self) -> Option<ZerocopyCompletions> {
        let s = self.load();
        (s.has_zerocopy != 0).then_some(ZerocopyCompletions { completed: s.zc_completed, copied: s.zc_copied })
    }

    fn error(&self) -> String {
        match self.load().errno {
            -1 => "failed (no errno)".into(),
            e => std::io::Error::from_raw_os_error(e as i32).to_string(),
        }
    }
}

impl Drop for SharedResult {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping once.
        unsafe { libc::munmap(self.0.cast(), 4096) };
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use zc_trace_common::{OpClass, Stats, Tally, ZeroCopyKind};

    use super::*;
    use crate::{
        attribute::NET_XMIT,
        evidence::{Evidence as Source, Rule},
        session::Evidence,
    };

    /// A sendfile sender whose 8 MiB TCP took by reference reached the NIC `paged` bytes in
    /// page frags and the rest linear.
    fn sendfile_row(paged: u64) -> attribute::Row {
        let mut send = Stats { payload_out: 8 << 20, ..Default::default() };
        send.zero_copy[ZeroCopyKind::SplicePages as usize] = Tally { bytes: 8 << 20, calls: 128 };
        let none = Stats {
            net_tx: Tally { bytes: (8 << 20) + 400_000, calls: 5800 },
            net_tx_paged_bytes: paged,
            net_tx_linear_bytes: (8 << 20) + 400_000 - paged,
            ..Default::default()
        };
        let classes: BTreeMap<_, _> = [(OpClass::Sendfile, send), (OpClass::None, none)].into_iter().collect();
        let evidence = Evidence { tracepoints: vec![NET_XMIT], ..Default::default() };
        let input = Input {
            strategy: "sendfile".into(),
            role: Role::Sender,
            pid: 1,
            comm: "zc".into(),
            path: None,
            by_class: &classes,
            syscalls: &BTreeMap::new(),
            elapsed_s: None,
            msg_zerocopy: None,
        };
        attribute::row(input, &evidence, &GlobalEvents::default())
    }

    #[test]
    fn spliced_pages_sent_linear_were_copied_at_transmit() {
        let mut row = sendfile_row(0);
        attribute::copied_at_transmit(&mut row);
        assert_eq!(row.zero_copy.bytes, 0);
        assert_eq!(row.cpu_copy.kernel.bytes, 8 << 20);
        let linearized = Source::Derived(Rule::LinearizedAtTransmit);
        assert_eq!(row.cpu_copy.kernel.by_end["socket"].evidence, linearized);
        assert_eq!(row.cpu_copy.kernel.evidence, linearized, "nothing else counted kernel copies");
        // How many bytes were taken out is a field, not words in the evidence.
        let spliced = &row.zero_copy.by_kind["splice_pages"];
        assert_eq!(spliced.copied_at_transmit_bytes, Some(8 << 20));
        assert_eq!(spliced.evidence.to_string(), format!("{} - copied at transmit (see cpu_copy.kernel)", Rule::SpliceToGatheringSocket.text()));
        assert_eq!(row.copies_per_payload_byte, Some(1.0));
    }

    #[test]
    fn spliced_pages_sent_in_frags_stay_zero_copy() {
        let mut row = sendfile_row((8 << 20) + 2000);
        attribute::copied_at_transmit(&mut row);
        assert_eq!(row.zero_copy.bytes, 8 << 20);
        assert_eq!(row.cpu_copy.kernel.bytes, 0);
    }
}
