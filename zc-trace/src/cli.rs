//! The command line. Values are validated here, with messages that say what to type instead,
//! so that every later stage can trust them. A layer of its own: above `workloads/` (its
//! values are strategies and sinks), below `commands/` (which take its arguments).
use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "zc-trace",
    version,
    about = "Measures where a program's bytes get copied: CPU copies, zero-copy page moves, DMA and mode switches",
    after_help = "Needs CAP_BPF and CAP_PERFMON (or root). Exit codes: 0 ok, 1 failure, 2 bad usage, \
                  3 missing privileges, 4 no such target, 5 kernel cannot do it; in spawn mode the \
                  command's own status."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what this kernel allows: BTF, lockdown, each attach kind, each copy-site function.
    #[command(
        after_help = "EXAMPLES:\n    zc-trace doctor\n    zc-trace doctor --json\n    zc-trace doctor --json doctor.json"
    )]
    Doctor(DoctorArgs),
    /// Count system calls (and the mode switches they cost) of one process, in the kernel.
    #[command(after_help = "EXAMPLES:\n    zc-trace syscalls -- dd if=/etc/hostname of=/dev/null\n    \
                            zc-trace syscalls -p 1234 -d 5s\n    zc-trace syscalls --json -p 1234 -d 500ms")]
    Syscalls(SyscallsArgs),
    /// Attribute a process's CPU copies, zero-copy moves, DMA and switches.
    #[command(
        after_help = "EXAMPLES:\n    zc-trace trace -p 1234 -d 10s\n    zc-trace trace -- cp big.iso /tmp/\n    \
                            zc-trace trace --json --probe-tier tracepoint -- python3 server.py"
    )]
    Trace(TraceArgs),
    /// Serve OpenMetrics (Prometheus) counters at http://LISTEN/metrics, for a node agent.
    #[command(
        after_help = "EXAMPLES:\n    zc-trace serve -a\n    zc-trace serve -a --listen 0.0.0.0:9435 --max-series 100\n    \
                            zc-trace serve -p 1234,5678 --listen 127.0.0.1:9435"
    )]
    Serve(ServeArgs),
    /// A live, top-like screen of who copies bytes on this machine: per process, cgroup or
    /// container, every second.
    #[command(
        after_help = "KEYS:\n    c u k z s p n   sort by: CPU copies, to user, kernel, zero-copy, mode switches, PID, name\n    \
                            r               reverse the order\n    Up Down         select a row\n    \
                            Enter           the selected row's flows; Esc or Backspace back\n    \
                            ?               the probes that are not attached, and why\n    \
                            q Ctrl-C        quit (everything is detached)\n\n\
                            EXAMPLES:\n    zc-trace top\n    zc-trace top -p 1234,5678 -i 2s\n    \
                            zc-trace top --cgroup /system.slice --by cgroup"
    )]
    Top(TopArgs),
    /// Print the classic zero-copy model, step by step.
    Model,
    /// Run one built-in workload in this process (for benchmarks and other tracers).
    #[command(hide = true)]
    Workload(WorkloadArgs),
    /// Run the built-in workloads, one per strategy, trace each, and compare them.
    #[command(after_help = "EXAMPLES:\n    zc-trace lab\n    zc-trace lab --size 8MiB --chunk 4KiB\n    \
                            zc-trace lab --strategies read-write,sendfile --sink null --json lab.json")]
    Lab(LabArgs),
    /// Measure what a byte of copy and a syscall cost on this machine, for the advisor.
    #[command(
        after_help = "EXAMPLES:\n    zc-trace calibrate\n    zc-trace calibrate --sizes 4KiB,64KiB,1MiB --out /tmp/cost.json\n    \
                            zc-trace calibrate --json"
    )]
    Calibrate(CalibrateArgs),
}

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Comma-separated chunk sizes to measure at (each at most 64MiB).
    #[arg(long, value_delimiter = ',', default_value = crate::advise::cost::DEFAULT_SIZES, value_parser = parse_size)]
    pub sizes: Vec<u64>,
    /// Write the model here instead of $XDG_CACHE_HOME/zc-trace/cost-model.json (else
    /// ~/.cache/zc-trace/cost-model.json), where the advisor looks for it.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Print the model as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LabArgs {
    /// Size of the source file (random data, in a private temp directory).
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub size: u64,
    /// Bytes moved per system call (read/write size, sendfile/splice count, mapping size).
    #[arg(long, default_value = "64KiB", value_parser = parse_size)]
    pub chunk: u64,
    /// Comma-separated strategies to run (default: all).
    #[arg(long, value_delimiter = ',')]
    pub strategies: Vec<crate::workloads::Strategy>,
    /// Where the bytes go: tcp (a receiver process on 127.0.0.1), unix, pipe, file, null.
    #[arg(long, default_value = "tcp")]
    pub sink: crate::workloads::sinks::SinkKind,
    /// TCP port on 127.0.0.1 for the tcp sink's receiver; 0 lets the kernel pick a free one.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// The tcp sink's receiver listens on this address and the sender connects to it (with
    /// --receiver-netns: an address of that namespace, reached through a real NIC).
    #[arg(long, value_name = "IPV4", default_value = "127.0.0.1")]
    pub receiver_addr: std::net::Ipv4Addr,
    /// Make the tcp sink's listening socket in this network namespace (a /proc/PID/ns/net or
    /// /run/netns/NAME path), so the bytes leave through a NIC instead of loopback.
    #[arg(long, value_name = "PATH")]
    pub receiver_netns: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub session: SessionArgs,
    /// Evict the source file from the page cache before each run, so disk DMA shows.
    #[arg(long)]
    pub cold: bool,
    /// Run each strategy N times and report the run with the median throughput.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// Also write the rows as CSV to FILE.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<std::path::PathBuf>,
    /// Also draw CPU copies per payload byte and mode switches per MiB, per strategy, as SVG.
    #[arg(long, value_name = "FILE.svg", value_parser = parse_svg_path)]
    pub plot: Option<std::path::PathBuf>,
    /// Exact byte counts instead of human units.
    #[arg(long)]
    pub raw: bool,
    #[command(flatten)]
    pub stacks: StackArgs,
    #[command(flatten)]
    pub advise: AdviseArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct SyscallsArgs {
    /// Trace this existing process (its PID as seen on this host).
    #[arg(short = 'p', long = "pid", value_parser = parse_pid, conflicts_with = "command")]
    pub pid: Option<u32>,
    /// Stop after this long (e.g. 10s, 500ms, 2m); default: until the process exits or Ctrl-C.
    #[arg(short = 'd', long = "duration", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    #[command(flatten)]
    pub output: OutputArgs,
    /// The command to start and trace from its first instruction (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct WorkloadArgs {
    #[arg(long)]
    pub strategy: crate::workloads::Strategy,
    /// The file to move (read-write, sendfile, ... read it).
    #[arg(long)]
    pub src: std::path::PathBuf,
    /// `null` (/dev/null), `file:PATH` or `tcp:PORT` (a receiver on 127.0.0.1).
    #[arg(long, default_value = "null")]
    pub sink: String,
    #[arg(long, default_value = "64KiB", value_parser = parse_size)]
    pub chunk: u64,
    /// How many times to move the whole file.
    #[arg(long, default_value_t = 1)]
    pub passes: u32,
    /// Where to write `elapsed_ns=N bytes=N` (the copy loops only, without start-up).
    #[arg(long)]
    pub result: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9435")]
    pub listen: std::net::SocketAddr,
    /// Every process on the machine.
    #[arg(short = 'a', long = "all", conflicts_with = "pids")]
    pub all: bool,
    /// These processes only (comma-separated PIDs).
    #[arg(short = 'p', long = "pid", value_parser = parse_pid, value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// At most this many (command, strategy) label pairs; later ones are summed as
    /// comm="other", strategy="other".
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_series: u32,
    #[command(flatten)]
    pub session: SessionArgs,
    /// Every process in this cgroup (v2) and below it, including processes that start there
    /// later: a path under the v2 hierarchy.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["pids", "all"])]
    pub cgroup: Option<PathBuf>,
    /// Series by command name (default) or by cgroup path (label `cgroup` instead of `comm`).
    #[arg(long = "series-by", value_enum, default_value_t = SeriesBy::Comm)]
    pub series_by: SeriesBy,
    /// Add `container` and `pod_uid` labels (from the cgroup path) to the series of processes
    /// in a container or a Kubernetes pod: one series set per container, never per PID.
    #[arg(long)]
    pub container_labels: bool,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Only these existing processes (PIDs as seen on this host, comma-separated); default:
    /// every process on the machine.
    #[arg(short = 'p', long = "pid", value_parser = parse_pid, value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Only the processes in this cgroup (v2) and below it, including ones that start there
    /// later: a path under the v2 hierarchy, e.g. /system.slice/nginx.service.
    #[arg(long, value_name = "PATH", conflicts_with = "pids")]
    pub cgroup: Option<PathBuf>,
    /// One row per process (default), per cgroup (v2) or per container.
    #[arg(long, value_enum, default_value_t = TopBy::Process)]
    pub by: TopBy,
    /// How often the screen is refreshed, and the window its rates are measured over (e.g.
    /// 1s, 500ms; at least 100ms).
    #[arg(short = 'i', long = "interval", default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    #[command(flatten)]
    pub session: SessionArgs,
    /// The cost model the advice is priced with (default: where `zc-trace calibrate` writes
    /// it; without one the advice says what it removes, unpriced).
    #[arg(long, value_name = "FILE")]
    pub cost_model: Option<PathBuf>,
}

/// What `top`'s rows are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TopBy {
    Process,
    Cgroup,
    Container,
}

impl TopBy {
    pub fn by(self) -> By {
        match self {
            TopBy::Process => By::Fd,
            TopBy::Cgroup => By::Cgroup,
            TopBy::Container => By::Container,
        }
    }
}

/// `top`'s refresh interval: a duration of at least 100 ms (shorter windows make rates of
/// a few calls jump, and the screen flicker).
fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(100) {
        return Err(format!("interval `{s}` is shorter than 100ms: give e.g. 1s or 500ms"));
    }
    Ok(d)
}

/// What `serve`'s series are named by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SeriesBy {
    Comm,
    Cgroup,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Trace these existing processes, all their threads (PIDs as seen on this host,
    /// comma-separated).
    #[arg(short = 'p', long = "pid", value_parser = parse_pid, value_delimiter = ',', conflicts_with_all = ["command", "all"])]
    pub pids: Vec<u32>,
    /// Trace every process on the machine (rows by process; see --top).
    #[arg(short = 'a', long = "all", conflicts_with = "command")]
    pub all: bool,
    /// The PIDs given with -p are as this PID namespace sees them (a container's:
    /// /proc/HOSTPID/ns/pid of any process in it); rows show both.
    #[arg(long, value_name = "/proc/PID/ns/pid", requires = "pids")]
    pub pidns: Option<PathBuf>,
    /// Trace every process in this cgroup (v2) and below it, including processes that start
    /// there later: a path under the v2 hierarchy, e.g. /system.slice/nginx.service.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["pids", "command", "all"])]
    pub cgroup: Option<PathBuf>,
    /// With -a: show the N processes that moved most bytes (the rest in one "other" row).
    #[arg(short = 'T', long = "top", default_value_t = 20)]
    pub top: usize,
    /// Also trace the children they fork from now on.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Stop after this long (e.g. 10s, 500ms); default: until the processes exit or Ctrl-C.
    #[arg(short = 'd', long = "duration", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Print a table of what happened in each interval (e.g. 1s), then the summary.
    #[arg(short = 'i', long = "interval", value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// One row per process (default) or per thread.
    #[arg(long, value_enum, default_value_t = By::Process)]
    pub by: By,
    #[command(flatten)]
    pub session: SessionArgs,
    /// How the syscall programs read kernel memory: auto picks typed loads where the kernel
    /// allows them.
    #[arg(long, value_enum, default_value_t = crate::model::run::KernelReads::Auto)]
    pub kernel_reads: crate::model::run::KernelReads,
    #[command(flatten)]
    pub stacks: StackArgs,
    #[command(flatten)]
    pub advise: AdviseArgs,
    /// Exact byte counts instead of human units.
    #[arg(long)]
    pub raw: bool,
    /// Benchmarks only: attach do-nothing programs to the same tracepoints instead, to
    /// measure what the kernel's tracing path alone costs.
    #[arg(long, hide = true)]
    pub floor: bool,
    /// Benchmarks only: turn on the kernel's BPF run-time statistics while tracing and write
    /// each of our programs' run count, mean ns per run and verified instructions to FILE.
    #[arg(long, hide = true, value_name = "FILE")]
    pub prog_stats: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
    /// The command to start and trace from its first instruction (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    Process,
    Thread,
    /// Flows per fd, with the file's name or the socket's addresses.
    Fd,
    /// One row per cgroup (v2), the processes in it summed.
    Cgroup,
    /// One row per container (runtime and id, from the cgroup path), the rest in one row.
    Container,
}

impl By {
    /// Rows of processes summed by cgroup or container, if that is the choice.
    pub fn grouping(self) -> Option<crate::attribute::groups::Grouping> {
        use crate::attribute::groups::Grouping;
        match self {
            By::Cgroup => Some(Grouping::Cgroup),
            By::Container => Some(Grouping::Container),
            By::Process | By::Thread | By::Fd => None,
        }
    }
}

/// How a tracing session attaches and counts: the attach kind, the kernel maps' capacity,
/// relay pairing (trace, lab, serve, top).
#[derive(Debug, Args, Clone, Copy)]
pub struct SessionArgs {
    /// Attach kind for function probes: auto picks the best the kernel allows.
    #[arg(long, value_enum, default_value_t = crate::model::run::Tier::Auto)]
    pub probe_tier: crate::model::run::Tier,
    /// Capacity of the in-kernel per-process counters (entries of (process, syscall class));
    /// what does not fit is counted and reported as drops. serve and top remove exited
    /// processes, so there it bounds the live ones.
    #[arg(long, default_value_t = zc_trace_common::STATS_MAX_ENTRIES, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub map_entries: u32,
    #[command(flatten)]
    pub relay: RelayArgs,
}

/// How sends are paired with the receives that filled their buffers (relays, see
/// docs/probes.md).
#[derive(Debug, Args, Clone, Copy)]
pub struct RelayArgs {
    /// Filled buffer ranges remembered per process for pairing a send with the receive that
    /// filled its buffer (0 turns pairing off).
    #[arg(long, value_name = "N", default_value_t = zc_trace_common::relay::RELAY_RANGES_DEFAULT,
          value_parser = clap::value_parser!(u32).range(0..=zc_trace_common::relay::RELAY_SLOTS as i64))]
    pub relay_ranges: u32,
    /// How long a filled range can still pair with a send (e.g. 5s, 200ms).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub relay_ttl: Duration,
}

impl RelayArgs {
    pub fn settings(&self) -> zc_trace_common::relay::RelaySettings {
        zc_trace_common::relay::RelaySettings {
            ranges: self.relay_ranges,
            _pad: 0,
            ttl_ns: self.relay_ttl.as_nanos().min(u64::MAX as u128) as u64,
        }
    }
}

/// The priced advisor.
#[derive(Debug, Args, Clone, Default)]
pub struct AdviseArgs {
    /// For each flow that costs CPU copies: the strategy that would avoid them, what it
    /// removes, and the CPU time that saves by the cost model `zc-trace calibrate` measured.
    #[arg(long)]
    pub advise: bool,
    /// With --advise: the cost model to price with (default: where `zc-trace calibrate`
    /// writes it, under the user's cache directory).
    #[arg(long, value_name = "FILE", requires = "advise")]
    pub cost_model: Option<PathBuf>,
}

/// Copy stacks: where in the program the bytes were moved from.
#[derive(Debug, Args, Clone, Default)]
pub struct StackArgs {
    /// Count the user and kernel call stacks of the data syscalls that moved bytes, weighted
    /// by bytes (in the kernel; symbolized at the end). Full user stacks need frame pointers.
    #[arg(long)]
    pub stacks: bool,
    /// With --stacks: write the stacks in folded form (one line per stack, bytes as the
    /// count), the format flame-graph tools read.
    #[arg(long, value_name = "FILE", requires = "stacks")]
    pub folded: Option<PathBuf>,
    /// With --stacks: draw a flame graph of the bytes as SVG.
    #[arg(long, value_name = "FILE.svg", requires = "stacks", value_parser = parse_svg_path)]
    pub flamegraph: Option<PathBuf>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct OutputArgs {
    /// Print JSON instead of a table: to stdout, or to FILE when given.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    pub json: Option<PathBuf>,
    /// Write the report (table or JSON) to FILE (`-`: stdout). Beside a command started after
    /// `--`, the report goes to standard error unless this or `--json FILE` is given.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// A PID must be a positive integer; `0` means "no filter" in the kernel and is refused here.
pub fn parse_pid(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(0) | Err(_) => Err(format!("`{s}` is not a PID: give a positive process id, e.g. -p 1234")),
        Ok(pid) if pid > 4_194_304 => {
            Err(format!("`{s}` is larger than any PID Linux hands out (4194304): check the number"))
        }
        Ok(pid) => Ok(pid),
    }
}

/// `--plot` draws SVG, and the file's name must say so (a `.png` would hold SVG text).
pub fn parse_svg_path(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    match path.extension().and_then(|e| e.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("svg") => Ok(path),
        Some(ext) => {
            Err(format!("the plot is drawn as SVG, not .{ext}: give a file name ending in .svg, e.g. plot.svg"))
        }
        None => Err("the plot is drawn as SVG: give a file name ending in .svg, e.g. plot.svg".into()),
    }
}

/// The first value a list option (`--strategies`, `-p`) was given twice: a strategy run twice
/// or a process traced twice is a typo, and would count it twice.
pub fn first_repeated<T: PartialEq>(values: &[T]) -> Option<&T> {
    values.iter().enumerate().find(|(i, v)| values[..*i].contains(v)).map(|(_, v)| v)
}

/// Durations such as `10s`, `500ms`, `2m`. Zero and more than a day are refused: both are
/// almost certainly typos, and a day-long trace should be a service, not a command.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}): write e.g. 10s, 500ms or 2m"))?;
    if d.is_zero() {
        return Err(format!("duration `{s}` is zero: give a positive duration, e.g. 5s"));
    }
    if d > Duration::from_secs(86_400) {
        return Err(format!("duration `{s}` is longer than a day: use at most 24h"));
    }
    Ok(d)
}

/// The largest source file the lab will create: bigger is a typo, not an experiment.
pub const MAX_SIZE: u64 = 16 << 30;

/// Byte sizes such as `64MiB`, `4KiB`, `1G`, `4096` (binary multiples: K = KiB = 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || format!("`{s}` is not a size: write e.g. 64MiB, 4KiB or 1048576");
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(bad()),
    };
    let bytes = n
        .checked_mul(1 << shift)
        .filter(|&b| b <= MAX_SIZE)
        .ok_or_else(|| format!("size `{s}` is larger than the lab's limit of 16GiB: choose a smaller size"))?;
    if bytes == 0 {
        return Err(format!("size `{s}` is zero: give a positive size, e.g. 64MiB"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("4KiB").unwrap(), 4096);
        assert_eq!(parse_size("4k").unwrap(), 4096);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
    }

    #[test]
    fn bad_sizes_say_what_to_type() {
        for bad in ["0", "0MiB", "", "MiB", "12XB", "-4", "17GiB", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    }

    #[test]
    fn bad_durations_say_what_to_type() {
        for bad in ["", "5", "abc", "-1s", "0s", "25h"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("e.g.") || err.contains("at most"), "{bad}: {err}");
        }
    }

    #[test]
    fn pids_must_be_positive_and_plausible() {
        assert_eq!(parse_pid("1234").unwrap(), 1234);
        assert!(parse_pid("0").is_err());
        assert!(parse_pid("-5").is_err());
        assert!(parse_pid("x").is_err());
        assert!(parse_pid("99999999").is_err());
    }

    #[test]
    fn syscalls_takes_either_a_pid_or_a_command() {
        let cli = Cli::try_parse_from(["zc-trace", "syscalls", "-p", "7", "-d", "1s"]).unwrap();
        let Command::Syscalls(args) = cli.command else { panic!() };
        assert_eq!(args.pid, Some(7));
        let cli = Cli::try_parse_from(["zc-trace", "syscalls", "--", "cat", "-n"]).unwrap();
        let Command::Syscalls(args) = cli.command else { panic!() };
        assert_eq!(args.command, ["cat", "-n"]);
        assert!(Cli::try_parse_from(["zc-trace", "syscalls", "-p", "7", "--", "cat"]).is_err());
    }

    #[test]
    fn trace_takes_several_pids_and_intervals() {
        let cli = Cli::try_parse_from(["zc-trace", "trace", "-p", "7,8", "-f", "-i", "1s", "--by", "thread"]).unwrap();
        let Command::Trace(args) = cli.command else { panic!() };
        assert_eq!(args.pids, [7, 8]);
        assert!(args.follow);
        assert_eq!(args.interval, Some(Duration::from_secs(1)));
        assert_eq!(args.by, By::Thread);
        assert!(Cli::try_parse_from(["zc-trace", "trace", "-p", "7,x"]).is_err());
    }

    #[test]
    fn the_plot_must_be_an_svg_file() {
        assert_eq!(parse_svg_path("out.svg").unwrap(), PathBuf::from("out.svg"));
        assert!(parse_svg_path("dir/Out.SVG").is_ok());
        assert!(parse_svg_path("out.png").unwrap_err().contains("not .png"));
        assert!(parse_svg_path("out").unwrap_err().contains(".svg"));
        let err = Cli::try_parse_from(["zc-trace", "lab", "--plot", "out.png"]).unwrap_err();
        assert!(err.to_string().lines().next().unwrap().contains("not .png"), "{err}");
    }

    #[test]
    fn repeated_list_values_are_found() {
        assert_eq!(first_repeated(&[1, 2, 3]), None);
        assert_eq!(first_repeated(&[1, 2, 1, 2]), Some(&1));
        assert_eq!(first_repeated::<u32>(&[]), None);
    }

    #[test]
    fn calibrate_takes_sizes_and_refuses_bad_ones() {
        let cli = Cli::try_parse_from(["zc-trace", "calibrate"]).unwrap();
        let Command::Calibrate(args) = cli.command else { panic!() };
        assert_eq!(args.sizes, [4096, 16384, 65536, 262144, 1 << 20]);
        let cli = Cli::try_parse_from(["zc-trace", "calibrate", "--sizes", "4KiB,1MiB", "--json"]).unwrap();
        let Command::Calibrate(args) = cli.command else { panic!() };
        assert_eq!((args.sizes.as_slice(), args.json), (&[4096, 1 << 20][..], true));
        for bad in ["0", "4KiB,x", "4KiB,,8KiB"] {
            assert!(Cli::try_parse_from(["zc-trace", "calibrate", "--sizes", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_without_a_path_means_stdout() {
        let cli = Cli::try_parse_from(["zc-trace", "doctor", "--json"]).unwrap();
        let Command::Doctor(args) = cli.command else { panic!() };
        assert_eq!(args.output.json.unwrap().to_str(), Some("-"));
    }
}
