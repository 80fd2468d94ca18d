//! Draws `top`'s screen with ratatui: the header (scope, tier, probes, drops, what watching
//! costs), the table of rows (80 columns hold every figure; wider terminals add the top flow
//! and the advice as columns), the selected row's flow and advice, and the keys. Colour only
//! where the terminal has it: without, the selection is reverse video and the sort column is
//! underlined.
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Cell, Paragraph, Row as TableRow, Table, TableState, Wrap},
};

use super::{Header, SortKey, TopRow, TopState, View, count, maybe_rate, rate};

/// Everything one screen shows.
pub struct Screen<'a> {
    pub header: &'a Header,
    /// In the state's order.
    pub rows: &'a [TopRow],
    pub state: &'a TopState,
    pub colour: bool,
}

/// The table's columns at 80 characters: (title, width, the sort key it shows).
const COLUMNS: [(&str, u16, Option<SortKey>); 9] = [
    ("PID", 7, Some(SortKey::Pid)),
    ("COMMAND", 12, Some(SortKey::Name)),
    ("STRATEGY", 15, None),
    ("TO-USR", 7, Some(SortKey::ToUser)),
    ("FR-USR", 7, None),
    ("KERNEL", 7, Some(SortKey::Kernel)),
    ("ZERO-C", 7, Some(SortKey::ZeroCopy)),
    ("ZC%", 4, None),
    ("MODE/s", 6, Some(SortKey::ModeSwitches)),
];
/// 80 columns: the widths above and one space between each two.
const BASE_WIDTH: u16 = 80;
/// A cgroup's or container's name, in place of PID and COMMAND.
const GROUP_WIDTH: u16 = 20;
const FLOW_WIDTH: u16 = 26;

pub fn draw(frame: &mut Frame, screen: &Screen) {
    let [head, body, detail, keys] =
        Layout::vertical([Constraint::Length(4), Constraint::Min(3), Constraint::Length(2), Constraint::Length(1)])
            .areas(frame.area());
    frame.render_widget(Paragraph::new(header_lines(screen)), head);
    match &screen.state.view {
        View::Table => {
            draw_table(frame, body, screen);
            frame.render_widget(Paragraph::new(detail_lines(screen)), detail);
            frame.render_widget(
                Paragraph::new("q quit  Up/Down select  Enter flows  ? probes  sort: c u k z s p n  r reverse"),
                keys,
            );
        }
        View::Flows(key) => {
            let row = screen.rows.iter().find(|r| &r.key == key);
            let flows = Paragraph::new(flow_lines(row, screen.header.interval_s))
                .wrap(Wrap { trim: false })
                .scroll((screen.state.scroll, 0));
            frame.render_widget(flows, body.union(detail));
            frame.render_widget(Paragraph::new("Esc/Backspace back  Up/Down scroll  q quit"), keys);
        }
        View::Probes => {
            frame.render_widget(
                Paragraph::new(probe_lines(screen.header)).wrap(Wrap { trim: false }),
                body.union(detail),
            );
            frame.render_widget(Paragraph::new("Esc/Backspace back  q quit"), keys);
        }
    }
}

fn header_lines<'a>(screen: &Screen) -> Vec<Line<'a>> {
    let [title, probes, cost, legend] = header_text(screen.header, screen.state);
    let title_style = Style::new().add_modifier(Modifier::BOLD);
    let title_style = if screen.colour { title_style.fg(Color::Cyan) } else { title_style };
    vec![Line::from(Span::styled(title, title_style)), Line::from(probes), Line::from(cost), Line::from(legend)]
}

/// The header's four lines: what is watched; tier, probes and drops; what watching costs;
/// units, hidden rows and order. Each fits 80 columns with a usual kernel release.
pub fn header_text(h: &Header, state: &TopState) -> [String; 4] {
    let title = format!("zc-trace top: {}, every {:.1} s, Linux {}", h.scope, h.interval_s, h.kernel);
    let probes = format!(
        "tier {}, probes: {} attached, {} unavailable{}, drops: {}",
        h.tier,
        h.probes_attached,
        h.unavailable.len(),
        if h.unavailable.is_empty() { "" } else { " (?: why)" },
        h.drops
    );
    let cost = match (h.bpf_cpu_percent, h.bpf_runs_per_s) {
        (Some(cpu), Some(runs)) => format!(
            "watching costs: BPF {cpu:.1}% of a CPU ({} runs/s), zc-trace {:.1}%",
            count(runs),
            h.own_cpu_percent
        ),
        _ => format!("watching costs: BPF unknown (no run-time statistics), zc-trace {:.1}%", h.own_cpu_percent),
    };
    let legend = format!(
        "K/M/G: KiB/MiB/GiB per s, n/a: unmeasurable, {} idle, by {}{}",
        h.idle_rows,
        state.sort.text(),
        if state.reverse { " reversed" } else { "" }
    );
    [title, probes, cost, legend]
}

fn draw_table(frame: &mut Frame, area: Rect, screen: &Screen) {
    let sort = screen.state.sort;
    let sort_style = if screen.colour {
        Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
    } else {
        Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
    };
    // CPU copies sort by the three copy columns' sum: all three are marked.
    let marked = |title: &str, col: Option<SortKey>| match sort {
        SortKey::Copies => matches!(title, "TO-USR" | "FR-USR" | "KERNEL"),
        s => col == Some(s),
    };
    // Groups have no PID: their name takes both columns (PID, COMMAND and a space).
    let mut columns = COLUMNS.to_vec();
    if let Some(title) = screen.header.groups {
        columns.splice(0..2, [(title, GROUP_WIDTH, Some(SortKey::Name))]);
    }
    let mut titles: Vec<Cell> = columns
        .iter()
        .map(|&(title, _, col)| {
            let cell = Cell::from(title);
            if marked(title, col) { cell.style(sort_style) } else { cell }
        })
        .collect();
    let mut widths: Vec<Constraint> = columns.iter().map(|&(_, w, _)| Constraint::Length(w)).collect();
    let with_flow = area.width > BASE_WIDTH + FLOW_WIDTH;
    let with_saving = area.width > BASE_WIDTH + FLOW_WIDTH + 30;
    if with_flow {
        titles.push(Cell::from("TOP FLOW"));
        widths.push(if with_saving { Constraint::Length(FLOW_WIDTH) } else { Constraint::Fill(1) });
    }
    if with_saving {
        titles.push(Cell::from("ADVICE"));
        widths.push(Constraint::Fill(1));
    }
    let rows = screen.rows.iter().map(|r| {
        let mut cells = match screen.header.groups {
            Some(_) => vec![fit_tail(&r.name, GROUP_WIDTH as usize)],
            None => vec![r.pid().map_or_else(|| "-".to_string(), |p| p.to_string()), r.name.clone()],
        };
        cells.extend([
            r.strategy.clone(),
            maybe_rate(r.to_user),
            maybe_rate(r.from_user),
            maybe_rate(r.kernel),
            rate(r.zero_copy),
            r.zero_copy_share.map_or_else(|| "-".to_string(), |s| format!("{:.0}%", s * 100.0)),
            r.mode_switches.map_or_else(|| "n/a".to_string(), count),
        ]);
        if with_flow {
            cells.push(r.top_flow.clone().unwrap_or_default());
        }
        if with_saving {
            cells.push(r.saving.clone().unwrap_or_default());
        }
        TableRow::new(cells)
    });
    let selected = if screen.colour {
        Style::new().bg(Color::Blue).fg(Color::White)
    } else {
        Style::new().add_modifier(Modifier::REVERSED)
    };
    let table = Table::new(rows, widths).header(TableRow::new(titles)).row_highlight_style(selected);
    let mut state = TableState::new().with_selected(screen.state.selected_index(screen.rows));
    frame.render_stateful_widget(table, area, &mut state);
}

/// `name` in `width` characters: its end when it is longer (`...slice/nginx.service`), the
/// part of a cgroup path that tells it apart.
fn fit_tail(name: &str, width: usize) -> String {
    let chars = name.chars().count();
    if chars <= width {
        return name.to_string();
    }
    let tail: String = name.chars().skip(chars - (width - 3)).collect();
    format!("...{tail}")
}

/// The selected row's name, top flow and advice, below the table.
fn detail_lines<'a>(screen: &Screen) -> Vec<Line<'a>> {
    let Some(r) = screen.state.selected_index(screen.rows).map(|i| &screen.rows[i]) else {
        return vec![Line::from(if screen.header.intervals == 0 {
            "measuring the first interval"
        } else {
            "nothing moved bytes in the last interval"
        })];
    };
    let who = match r.pid() {
        Some(pid) => format!("PID {pid} ({})", r.name),
        None => r.name.clone(),
    };
    vec![
        Line::from(format!("{who}: top flow {}", r.top_flow.as_deref().unwrap_or("none"))),
        Line::from(format!(
            "advice: {}",
            r.saving.as_deref().unwrap_or("none: no flow costs copies that another strategy removes")
        )),
    ]
}

/// The drill-in view: a row's flows, one per line, with their fds on the next line.
fn flow_lines<'a>(row: Option<&TopRow>, interval_s: f64) -> Vec<Line<'a>> {
    let Some(row) = row else {
        return vec![Line::from("this row moved nothing in the last interval")];
    };
    let who = match row.pid() {
        Some(pid) => format!("PID {pid} ({})", row.name),
        None => row.name.clone(),
    };
    let mut lines = vec![
        Line::from(format!("flows of {who}, strategy {}, over the last {interval_s:.1} s:", row.strategy)),
        Line::from(format!("  {:<40} {:<10} {:>9} {:>9}", "FLOW", "SYSCALL", "BYTES/s", "CALLS/s")),
    ];
    // Each flow on its line, then (when known) its fds and which probe saw it, each on a
    // line of its own: a path or a pair of addresses needs the width.
    for f in &row.flows {
        lines.push(Line::from(format!(
            "  {:<40} {:<10} {:>9} {:>9}",
            f.label,
            f.syscall,
            rate(f.bytes_per_s),
            count(f.calls_per_s)
        )));
        if let Some(fd) = &f.fd_in {
            lines.push(Line::from(format!("      from {fd}")));
        }
        if let Some(fd) = &f.fd_out {
            lines.push(Line::from(format!("      to   {fd}")));
        }
        lines.push(Line::from(format!("      seen by {}", f.evidence)));
    }
    if row.flows.is_empty() {
        lines.push(Line::from("  no flows in the last interval"));
    }
    lines.push(Line::from("where the row's figures come from:"));
    for (column, source) in &row.sources {
        lines.push(Line::from(format!("  {column}: {source}")));
    }
    lines
}

fn probe_lines<'a>(header: &Header) -> Vec<Line<'a>> {
    if header.unavailable.is_empty() {
        return vec![Line::from("every probe is attached")];
    }
    let mut lines = vec![Line::from("probes not attached, and why (each says what counts in its place, if anything):")];
    for (name, reason) in &header.unavailable {
        lines.push(Line::from(format!("  {name}: {reason}")));
    }
    lines
}
