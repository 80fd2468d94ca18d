//! `zc-trace top`'s screen, without the terminal: the rows as rates over one interval
//! ([`TopRow`], made from a report's rows), their order ([`SortKey`]), and what each key does
//! ([`TopState`]). `screen` draws it with ratatui. Pure: tested without root or a terminal.
pub mod screen;

use std::cmp::Ordering;

use crate::{
    advise::{self, advice::Advice, cost::LoadedCostModel},
    model::{
        row::{CopyCell, FdInfo, FlowRow, Row},
        run::{ProbeState, ProbeStatus},
    },
};

/// How a row is told apart from one refresh to the next: its PID, or a group's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowKey {
    Pid(u32),
    Group(String),
}

/// One process (or cgroup, or container) over the last interval, per second.
#[derive(Debug, Clone, PartialEq)]
pub struct TopRow {
    pub key: RowKey,
    /// The command name, or the group's label.
    pub name: String,
    pub strategy: String,
    /// CPU copies by direction, bytes/s; `None` where an end of the direction could not be
    /// measured on this kernel (shown as n/a, never as 0).
    pub to_user: Option<f64>,
    pub from_user: Option<f64>,
    pub kernel: Option<f64>,
    /// Bytes/s that reached their destination without a CPU copy.
    pub zero_copy: f64,
    /// Of the payload, the share moved without a CPU copy; `None` without payload.
    pub zero_copy_share: Option<f64>,
    /// Syscalls and user-mode faults, per second; `None` where faults cannot be counted.
    pub mode_switches: Option<f64>,
    /// The flow that moved most bytes: `read-write file -> tcp`.
    pub top_flow: Option<String>,
    /// The advisor's answer for the row's costliest flow, on one line.
    pub saving: Option<String>,
    /// Every flow, largest first, for the drill-in view.
    pub flows: Vec<FlowLine>,
    /// Where the row's figures come from, by column (the drill-in view lists them): the
    /// probe and attach kind that observed them, or the rule that derived them.
    pub sources: Vec<(&'static str, String)>,
}

/// One flow of a row, per second.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowLine {
    pub label: String,
    pub syscall: &'static str,
    pub bytes_per_s: f64,
    pub calls_per_s: f64,
    /// `fd 3 /srv/big.iso`, `fd 4 127.0.0.1:80 -> 127.0.0.1:51234` when fds were recorded.
    pub fd_in: Option<String>,
    pub fd_out: Option<String>,
    pub evidence: &'static str,
}

impl TopRow {
    /// The row's figures over `secs` seconds (the interval's measured length), with the
    /// advisor's answer for it (priced by `model` when there is one).
    pub fn from_row(row: &Row, secs: f64, model: Option<&LoadedCostModel>) -> Self {
        let rate = |v: u64| v as f64 / secs;
        let cell = |c: &CopyCell| c.unmeasured_ends.is_empty().then(|| rate(c.bytes));
        let key = if row.role == "cgroup" || row.role == "container" {
            RowKey::Group(row.comm.clone())
        } else {
            RowKey::Pid(row.pid)
        };
        let merged = crate::attribute::groups::merge_flows(row.flows.iter().cloned());
        let advice = advise::advise(row, model);
        TopRow {
            key,
            name: row.comm.clone(),
            strategy: row.strategy.clone(),
            to_user: cell(&row.cpu_copy.to_user),
            from_user: cell(&row.cpu_copy.from_user),
            kernel: cell(&row.cpu_copy.kernel),
            zero_copy: rate(row.zero_copy.bytes),
            zero_copy_share: (row.payload_bytes > 0)
                .then(|| (row.zero_copy.bytes as f64 / row.payload_bytes as f64).min(1.0)),
            mode_switches: row.mode_switches.map(rate),
            top_flow: top_flow(&merged).map(|f| f.label()),
            saving: advice.first().map(|a| saving_line(a, secs)),
            flows: row
                .flows
                .iter()
                .map(|f| FlowLine {
                    label: f.label(),
                    syscall: f.syscall,
                    bytes_per_s: rate(f.bytes),
                    calls_per_s: rate(f.calls),
                    fd_in: f.fd_in.as_ref().map(fd_text),
                    fd_out: f.fd_out.as_ref().map(fd_text),
                    evidence: f.evidence,
                })
                .collect(),
            sources: vec![
                ("TO-USR", row.cpu_copy.to_user.evidence.to_string()),
                ("FR-USR", row.cpu_copy.from_user.evidence.to_string()),
                ("KERNEL", row.cpu_copy.kernel.evidence.to_string()),
                ("ZERO-C", row.zero_copy.evidence.to_string()),
                ("MODE/s", crate::render::table::MODE_SWITCHES_SOURCE.to_string()),
            ],
        }
    }

    /// CPU copies in every direction, bytes/s (the directions that could be measured).
    pub fn copies(&self) -> f64 {
        [self.to_user, self.from_user, self.kernel].into_iter().flatten().sum()
    }

    pub fn pid(&self) -> Option<u32> {
        match self.key {
            RowKey::Pid(pid) => Some(pid),
            RowKey::Group(_) => None,
        }
    }
}

/// The flow that moved most bytes; of equal ones, one that left memory (a relay's whole
/// flow, `read-write file -> tcp`, names the work better than its first leg into memory).
fn top_flow(flows: &[FlowRow]) -> Option<&FlowRow> {
    flows.iter().min_by_key(|f| (std::cmp::Reverse(f.bytes), f.destination == "memory"))
}

/// Whether a report row copied or moved anything (in the measured directions) in its
/// interval: idle rows are not shown, so they are not made into [`TopRow`]s (nor advised).
pub fn moved_anything(row: &Row) -> bool {
    let copied = [&row.cpu_copy.to_user, &row.cpu_copy.from_user, &row.cpu_copy.kernel]
        .iter()
        .any(|c| c.unmeasured_ends.is_empty() && c.bytes > 0);
    copied || row.zero_copy.bytes > 0 || row.flows.iter().any(|f| f.bytes > 0)
}

fn fd_text(fd: &FdInfo) -> String {
    format!("fd {} {}", fd.fd, fd.name)
}

/// `sendfile pays: -8.0M/s copies, -128/s switches, 2.1% of a CPU`, per second of the
/// interval (the advisor prices the interval's bytes and calls).
fn saving_line(a: &Advice, secs: f64) -> String {
    let cpu = match a.cpu_ns_saved {
        Some(ns) => format!("{:.1}% of a CPU", ns as f64 / secs / 1e7),
        None => "unpriced".to_string(),
    };
    format!(
        "{} {}: -{}/s copies, -{}/s switches, {cpu}",
        a.recommend.text(),
        a.verdict.text(),
        rate(a.copy_bytes_removed as f64 / secs),
        count(a.mode_switches_removed as f64 / secs)
    )
}

/// Bytes per second in at most 7 characters: `512`, `4.0K`, `12.5M`, `1.2G` (binary units).
pub fn rate(bytes_per_s: f64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    if bytes_per_s < 1024.0 {
        return format!("{bytes_per_s:.0}");
    }
    let mut v = bytes_per_s / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1}{}", UNITS[unit])
}

/// A count per second in at most 6 characters: `812`, `12.3k`, `4.1M` (decimal units).
pub fn count(per_s: f64) -> String {
    match per_s {
        v if v < 10_000.0 => format!("{v:.0}"),
        v if v < 999_950.0 => format!("{:.1}k", v / 1e3),
        v => format!("{:.1}M", v / 1e6),
    }
}

/// A rate that may be unmeasurable.
pub fn maybe_rate(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), rate)
}

/// What the rows are ordered by; each has a key, like top's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Copies,
    ToUser,
    Kernel,
    ZeroCopy,
    ModeSwitches,
    Pid,
    Name,
}

impl SortKey {
    pub const ALL: [SortKey; 7] = [
        SortKey::Copies,
        SortKey::ToUser,
        SortKey::Kernel,
        SortKey::ZeroCopy,
        SortKey::ModeSwitches,
        SortKey::Pid,
        SortKey::Name,
    ];

    pub const fn key(self) -> char {
        match self {
            SortKey::Copies => 'c',
            SortKey::ToUser => 'u',
            SortKey::Kernel => 'k',
            SortKey::ZeroCopy => 'z',
            SortKey::ModeSwitches => 's',
            SortKey::Pid => 'p',
            SortKey::Name => 'n',
        }
    }

    pub const fn text(self) -> &'static str {
        match self {
            SortKey::Copies => "CPU copies",
            SortKey::ToUser => "copies to user",
            SortKey::Kernel => "kernel copies",
            SortKey::ZeroCopy => "zero-copy",
            SortKey::ModeSwitches => "mode switches",
            SortKey::Pid => "PID",
            SortKey::Name => "name",
        }
    }

    /// Rates largest first, PID and name smallest first, as top does; ties by PID or name.
    fn compare(self, a: &TopRow, b: &TopRow) -> Ordering {
        let desc = |x: f64, y: f64| y.total_cmp(&x);
        let primary = match self {
            SortKey::Copies => desc(a.copies(), b.copies()),
            SortKey::ToUser => desc(a.to_user.unwrap_or(0.0), b.to_user.unwrap_or(0.0)),
            SortKey::Kernel => desc(a.kernel.unwrap_or(0.0), b.kernel.unwrap_or(0.0)),
            SortKey::ZeroCopy => desc(a.zero_copy, b.zero_copy),
            SortKey::ModeSwitches => desc(a.mode_switches.unwrap_or(0.0), b.mode_switches.unwrap_or(0.0)),
            SortKey::Pid => Ordering::Equal,
            SortKey::Name => a.name.cmp(&b.name),
        };
        primary.then_with(|| a.pid().cmp(&b.pid())).then_with(|| a.name.cmp(&b.name))
    }
}

/// Which screen is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    Table,
    /// The flows of the row with this key.
    Flows(RowKey),
    /// The probes that are not attached, with the reasons.
    Probes,
}

/// A key, as far as `top` cares (the terminal's events are translated into these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Up,
    Down,
    Enter,
    Back,
    Quit,
    /// The terminal was resized: nothing changes but the drawing.
    Redraw,
}

/// What the user chose: order, selection, view; and whether to quit.
#[derive(Debug, Clone, PartialEq)]
pub struct TopState {
    pub sort: SortKey,
    pub reverse: bool,
    pub selected: Option<RowKey>,
    pub view: View,
    /// Lines scrolled off the top of the flows or probes view (Up/Down there).
    pub scroll: u16,
    pub quit: bool,
}

impl Default for TopState {
    fn default() -> Self {
        Self { sort: SortKey::Copies, reverse: false, selected: None, view: View::Table, scroll: 0, quit: false }
    }
}

impl TopState {
    /// `rows` in the chosen order.
    pub fn order(&self, rows: &mut [TopRow]) {
        rows.sort_by(|a, b| {
            let o = self.sort.compare(a, b);
            if self.reverse { o.reverse() } else { o }
        });
    }

    /// The index of the selected row in `rows` (sorted), or the first row when the selected
    /// one is gone (or none was chosen yet).
    pub fn selected_index(&self, rows: &[TopRow]) -> Option<usize> {
        if rows.is_empty() {
            return None;
        }
        Some(self.selected.as_ref().and_then(|k| rows.iter().position(|r| &r.key == k)).unwrap_or(0))
    }

    /// Applies a key to the state, given the rows on screen (sorted).
    pub fn key(&mut self, key: Key, rows: &[TopRow]) {
        let view = self.view.clone();
        match key {
            Key::Quit | Key::Char('q') => self.quit = true,
            Key::Back => self.view = View::Table,
            Key::Char('?') => self.view = if self.view == View::Probes { View::Table } else { View::Probes },
            Key::Enter if self.view == View::Table => {
                if let Some(i) = self.selected_index(rows) {
                    self.view = View::Flows(rows[i].key.clone());
                }
            }
            Key::Enter => self.view = View::Table,
            Key::Up | Key::Down if self.view == View::Table => {
                if let Some(i) = self.selected_index(rows) {
                    let j = if key == Key::Up { i.saturating_sub(1) } else { (i + 1).min(rows.len() - 1) };
                    self.selected = Some(rows[j].key.clone());
                }
            }
            // The flows and probes views scroll (the screen cuts what does not fit).
            Key::Up => self.scroll = self.scroll.saturating_sub(1),
            Key::Down => self.scroll = self.scroll.saturating_add(1),
            Key::Char('r') => self.reverse = !self.reverse,
            Key::Char(c) => {
                if let Some(sort) = SortKey::ALL.into_iter().find(|s| s.key() == c) {
                    self.sort = sort;
                    self.reverse = false;
                }
            }
            Key::Redraw => {}
        }
        if self.view != view {
            self.scroll = 0;
        }
    }
}

/// The lines above the table: what is watched, how, and what watching costs.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub kernel: String,
    /// What is traced: `every process`, `PIDs 12, 34`, `cgroup /system.slice`.
    pub scope: String,
    /// `--probe-tier` and the attach kind the function probes got (`auto: fentry`).
    pub tier: String,
    pub interval_s: f64,
    pub probes_attached: usize,
    /// Probes not attached, with the reason.
    pub unavailable: Vec<(String, String)>,
    /// Events the in-kernel maps had no room for, since attach.
    pub drops: u64,
    /// Our programs' run time in the kernel over the interval, as a percentage of one CPU, and
    /// their runs per second; `None` when the kernel's statistics could not be turned on.
    pub bpf_cpu_percent: Option<f64>,
    pub bpf_runs_per_s: Option<f64>,
    /// zc-trace's own user and system time over the interval, as a percentage of one CPU.
    pub own_cpu_percent: f64,
    /// Rows that made syscalls but moved nothing in the interval (not shown).
    pub idle_rows: usize,
    /// Intervals measured so far (0: the first is under way, there are no rates yet).
    pub intervals: u64,
    /// What the rows are when they are groups of processes (`CGROUP`, `CONTAINER`), the
    /// title of their name's column; `None`: processes.
    pub groups: Option<&'static str>,
}

impl Header {
    /// What is attached and what is not, with the reasons.
    pub fn probes_of(probes: &[ProbeStatus]) -> (usize, Vec<(String, String)>) {
        let attached = probes.iter().filter(|p| p.status == ProbeState::Attached).count();
        let unavailable = probes
            .iter()
            .filter(|p| p.status == ProbeState::Unavailable)
            .map(|p| (format!("{} ({})", p.name, p.attach), p.reason.clone().unwrap_or_default()))
            .collect();
        (attached, unavailable)
    }
}

/// The attach kind the function probes got: `fentry`, `kprobe`, or `tracepoint` when no
/// function probe is attached.
pub fn effective_tier(probes: &[ProbeStatus]) -> &'static str {
    let has =
        |kinds: &[&str]| probes.iter().any(|p| p.status == ProbeState::Attached && kinds.contains(&p.attach.as_str()));
    if has(&["fentry", "fexit"]) {
        "fentry"
    } else if has(&["kprobe", "kretprobe"]) {
        "kprobe"
    } else {
        "tracepoint"
    }
}

/// Whether to draw in colour: not when NO_COLOR is set (no-color.org), nor on a terminal
/// that does not say it has colours (`dumb`, `vt100`, no TERM at all).
pub fn wants_colour(term: Option<&str>, colorterm: bool, no_color: bool) -> bool {
    if no_color {
        return false;
    }
    let Some(term) = term.filter(|t| !t.is_empty() && *t != "dumb") else { return false };
    colorterm
        || term == "linux"
        || ["color", "256", "xterm", "screen", "tmux", "rxvt", "kitty", "alacritty", "foot"]
            .iter()
            .any(|t| term.contains(t))
}

#[cfg(test)]
mod tests;
