//! `zc-trace top`: a full-screen, top-like view of who copies bytes, refreshed every interval.
//! The figures come from the same session and attribution as `trace -a -i` (`live`): each
//! interval's counters minus the previous ones, attributed into rows, shown as rates. Keys
//! are read on a thread of their own and handed to the loop; `q`, Ctrl-C or a signal ends
//! it, the terminal is restored and every program detached.
use std::{
    io::IsTerminal as _,
    time::{Duration, Instant},
};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::{
    Signals, advised,
    live::{Shape, Snapshot, build_report},
    trace::cgroup_filter,
};
use crate::{
    advise::cost::LoadedCostModel,
    attribute::flows,
    cli::{AdviseArgs, TopArgs, TopBy},
    kernel::{
        facts, privileges,
        target::{self, Target},
    },
    model::{exit::Fatal, row::Row},
    probe::{
        loader::Filter,
        session::{Options, Session},
    },
    render::top::{
        Header, Key, TopRow, TopState, effective_tier, moved_anything,
        screen::{self, Screen},
        wants_colour,
    },
};

pub fn run(args: TopArgs) -> anyhow::Result<i32> {
    if let Some(pid) = crate::cli::first_repeated(&args.pids) {
        return Err(Fatal::usage(format!("-p names PID {pid} twice: give each PID once")).into());
    }
    if !std::io::stdout().is_terminal() {
        return Err(Fatal::usage(
            "top draws on a terminal and standard output is not one: for a log or a pipe, use `zc-trace trace -a -i 1s`",
        )
        .into());
    }
    let cgroup = args.cgroup.as_deref().map(cgroup_filter).transpose()?;
    for &pid in &args.pids {
        Target::existing(pid)?;
    }
    let model = advised::cost_model(&AdviseArgs { advise: true, cost_model: args.cost_model.clone() })?;
    privileges::require_tracing()?;
    facts::require_host_pid_namespace()?;
    facts::prepare_pseudo_filesystems();
    super::runtime()?.block_on(top(args, cgroup, model))
}

async fn top(args: TopArgs, cgroup: Option<Filter>, model: Option<LoadedCostModel>) -> anyhow::Result<i32> {
    let filter = match (cgroup, args.pids.as_slice()) {
        (Some(cgroup), _) => cgroup,
        (None, []) => Filter::All,
        (None, [pid]) => Filter::Tgid(*pid),
        (None, pids) => Filter::Set(pids.to_vec()),
    };
    let options = Options {
        by_fd: args.by == TopBy::Process,
        stats_entries: Some(args.session.map_entries),
        relay: args.session.relay.settings(),
        ..Options::default()
    };
    let mut signals = Signals::catch()?;
    // The kernel keeps our programs' run time while this fd is open (what watching costs).
    let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).ok();
    let mut session = Session::attach_with(filter, args.session.probe_tier, options)?;
    let shape = Shape { by: args.by.by(), tier: args.session.probe_tier, top: None };
    // What is attached is known now: the first screen says so while it measures.
    let (probes_attached, unavailable) = Header::probes_of(session.probes());
    let mut header = Header {
        kernel: facts::kernel_info().release,
        scope: scope(&args),
        tier: format!("{}: {}", args.session.probe_tier.name(), effective_tier(session.probes())),
        interval_s: args.interval.as_secs_f64(),
        probes_attached,
        unavailable,
        drops: 0,
        bpf_cpu_percent: None,
        bpf_runs_per_s: None,
        own_cpu_percent: 0.0,
        idle_rows: 0,
        intervals: 0,
        groups: match args.by {
            TopBy::Process => None,
            TopBy::Cgroup => Some("CGROUP"),
            TopBy::Container => Some("CONTAINER"),
        },
    };
    let mut keys = read_keys();
    let mut terminal = Terminal::enter()?;
    let colour = wants_colour(
        std::env::var("TERM").ok().as_deref(),
        std::env::var_os("COLORTERM").is_some(),
        std::env::var_os("NO_COLOR").is_some(),
    );
    let mut state = TopState::default();
    let mut rows: Vec<TopRow> = Vec::new();
    let mut paths = flows::PathCache::default();
    let mut previous = Reading::take(&session, stats.is_some())?;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + args.interval, args.interval);
    loop {
        terminal.draw(&Screen { header: &header, rows: &rows, state: &state, colour })?;
        tokio::select! {
            _ = ticker.tick() => {
                let now = Reading::take(&session, stats.is_some())?;
                paths.refresh(&now.snapshot.flows);
                let secs = now.at.duration_since(previous.at).as_secs_f64();
                let report = build_report(&shape, &session, &now.snapshot.minus(&previous.snapshot), secs, &[], &paths)?;
                let (active, idle): (Vec<&Row>, Vec<&Row>) = report.rows.iter().partition(|r| moved_anything(r));
                header.idle_rows = idle.len();
                rows = active.into_iter().map(|r| TopRow::from_row(r, secs, model.as_ref())).collect();
                state.order(&mut rows);
                header.drops = report.drops.total;
                header.intervals += 1;
                header.own_cpu_percent = 100.0 * (now.own_cpu - previous.own_cpu).as_secs_f64() / secs;
                if let (Some(ns), Some(before)) = (now.bpf_ns, previous.bpf_ns) {
                    header.bpf_cpu_percent = Some(100.0 * (ns.0 - before.0) as f64 / 1e9 / secs);
                    header.bpf_runs_per_s = Some((ns.1 - before.1) as f64 / secs);
                }
                previous = now;
                forget_exited(&mut session, &mut previous.snapshot)?;
            }
            Some(key) = keys.recv() => {
                state.key(key, &rows);
                if state.quit {
                    break;
                }
                state.order(&mut rows);
            }
            received = signals.recv() => {
                received?;
                break;
            }
        }
    }
    drop(terminal); // the screen as it was
    drop(session); // everything detached
    Ok(0)
}

/// What the header names as traced.
fn scope(args: &TopArgs) -> String {
    let what = match (&args.cgroup, args.pids.as_slice()) {
        (Some(path), _) => format!("cgroup {}", path.display()),
        (None, []) => "every process".to_string(),
        (None, pids) => format!("PID {}", pids.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")),
    };
    match args.by {
        TopBy::Process => what,
        TopBy::Cgroup => format!("{what}, by cgroup"),
        TopBy::Container => format!("{what}, by container"),
    }
}

/// The counters at one moment, with what watching had cost until then.
struct Reading {
    at: Instant,
    snapshot: Snapshot,
    /// Our programs' total run time (ns) and runs, when the kernel keeps statistics.
    bpf_ns: Option<(u64, u64)>,
    /// zc-trace's own user and system time.
    own_cpu: Duration,
}

impl Reading {
    fn take(session: &Session, bpf_stats: bool) -> anyhow::Result<Self> {
        let snapshot = Snapshot::take(session)?;
        let bpf_ns = bpf_stats
            .then(|| session.program_costs().iter().fold((0, 0), |(ns, runs), p| (ns + p.run_time_ns, runs + p.runs)));
        Ok(Self { at: Instant::now(), snapshot, bpf_ns, own_cpu: own_cpu_time() })
    }
}

/// This process's user plus system time (all its threads).
fn own_cpu_time() -> Duration {
    // SAFETY: getrusage writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Removes processes that have exited from the kernel maps and from the last reading (whose
/// figures were shown): a machine-wide `top` left running must not fill its maps with the
/// dead, and a PID reused later starts from zero on both sides.
fn forget_exited(session: &mut Session, last: &mut Snapshot) -> anyhow::Result<()> {
    let dead = target::gone(last.processes());
    if !dead.is_empty() {
        session.forget(&dead)?;
        last.forget(&dead);
    }
    Ok(())
}

/// Keys from the terminal, read on a thread of their own (reading blocks) and handed to the
/// loop; resizes come as a key that changes nothing, so that the screen is redrawn.
fn read_keys() -> tokio::sync::mpsc::UnboundedReceiver<Key> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while let Ok(ev) = event::read() {
            let key = match ev {
                Event::Key(k) if k.kind != KeyEventKind::Release => match translate(k) {
                    Some(key) => key,
                    None => continue,
                },
                Event::Resize(..) => Key::Redraw,
                _ => continue,
            };
            if tx.send(key).is_err() {
                return;
            }
        }
    });
    rx
}

fn translate(k: KeyEvent) -> Option<Key> {
    Some(match k.code {
        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Key::Quit,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc | KeyCode::Backspace | KeyCode::Left => Key::Back,
        _ => return None,
    })
}

/// The terminal in raw mode on the alternate screen while this lives; as it was after.
struct Terminal(ratatui::DefaultTerminal);

impl Terminal {
    fn enter() -> anyhow::Result<Self> {
        Ok(Self(ratatui::try_init().map_err(|e| anyhow::anyhow!("setting up the terminal: {e}"))?))
    }

    fn draw(&mut self, screen: &Screen) -> anyhow::Result<()> {
        self.0.draw(|frame| screen::draw(frame, screen)).map_err(|e| anyhow::anyhow!("drawing: {e}"))?;
        Ok(())
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        ratatui::restore();
    }
}
