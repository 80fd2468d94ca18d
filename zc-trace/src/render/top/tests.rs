use std::collections::BTreeMap;

use ratatui::{Terminal, backend::TestBackend};
use zc_trace_common::{End, OpClass, Stats, Tally};

use super::{screen::Screen, *};
use crate::{
    attribute::{
        flows::EVIDENCE,
        row::{self, Input},
        sources::SKB_COPY,
    },
    model::{
        report::GlobalEvents,
        row::{FlowRow, Role},
        run,
    },
};

const MIB: u64 = 1 << 20;

/// A process that read 8 MiB from the page cache and wrote it to a socket over 2 s, with its
/// flows as `--by fd` records them.
fn copier(pid: u32) -> Row {
    let mut read = Stats { payload_in: 8 * MIB, ..Default::default() };
    read.to_user[End::PageCache as usize] = Tally { bytes: 8 * MIB, calls: 128 };
    let mut write = Stats { payload_out: 8 * MIB, ..Default::default() };
    write.from_user[End::Socket as usize] = Tally { bytes: 8 * MIB, calls: 128 };
    let by_class: BTreeMap<OpClass, Stats> = [(OpClass::Read, read), (OpClass::Write, write)].into_iter().collect();
    let evidence = run::Evidence { tracepoints: vec![SKB_COPY], ..Default::default() };
    let mut row = row::row(input(pid, "copier", &by_class), &evidence, &GlobalEvents::default());
    let fd = |fd: i32, name: &str| Some(FdInfo { fd, name: name.into(), inode: 0 });
    row.flows = vec![
        FlowRow { fd_in: fd(3, "/srv/big"), ..flow("read", "read", "file", "memory") },
        FlowRow {
            fd_in: fd(3, "/srv/big"),
            fd_out: fd(4, "10.0.0.1:80 -> 10.0.0.2:5000"),
            ..flow("read-write", "write", "file", "tcp")
        },
    ];
    row
}

fn input<'a>(pid: u32, comm: &str, by_class: &'a BTreeMap<OpClass, Stats>) -> Input<'a> {
    Input {
        strategy: crate::attribute::strategy::infer_strategy(by_class),
        role: Role::Process,
        pid,
        comm: comm.into(),
        path: None,
        by_class,
        syscalls: &NO_SYSCALLS,
        elapsed_s: None,
        msg_zerocopy: None,
    }
}

static NO_SYSCALLS: BTreeMap<u32, u64> = BTreeMap::new();

fn flow(strategy: &'static str, syscall: &'static str, source: &str, destination: &str) -> FlowRow {
    FlowRow {
        strategy,
        syscall,
        source: source.into(),
        destination: destination.into(),
        calls: 128,
        bytes: 8 * MIB,
        fd_in: None,
        fd_out: None,
        evidence: EVIDENCE,
    }
}

/// 16 MiB sent with sendfile(2) over 2 s.
fn sender(pid: u32) -> Row {
    let mut s = Stats { payload_out: 16 * MIB, ..Default::default() };
    s.zero_copy[zc_trace_common::ZeroCopyKind::SplicePages as usize] = Tally { bytes: 16 * MIB, calls: 256 };
    let by_class: BTreeMap<OpClass, Stats> = [(OpClass::Sendfile, s)].into_iter().collect();
    let evidence = run::Evidence { tracepoints: vec![SKB_COPY], ..Default::default() };
    let mut row = row::row(input(pid, "server", &by_class), &evidence, &GlobalEvents::default());
    row.flows = vec![FlowRow { calls: 256, bytes: 16 * MIB, ..flow("sendfile", "sendfile", "file", "tcp") }];
    row
}

#[test]
fn rows_are_rates_over_the_interval() {
    let r = TopRow::from_row(&copier(10), 2.0, None);
    assert_eq!(r.key, RowKey::Pid(10));
    assert_eq!(r.strategy, "read-write");
    assert_eq!((r.to_user, r.from_user), (Some(4.0 * MIB as f64), Some(4.0 * MIB as f64)));
    assert_eq!(r.zero_copy, 0.0);
    assert_eq!(r.zero_copy_share, Some(0.0));
    // The whole flow names the work, not its leg into memory, though both moved as much.
    assert_eq!(r.top_flow.as_deref(), Some("read-write file -> tcp"));
    assert_eq!(r.saving.as_deref(), Some("sendfile pays: -8.0M/s copies, -128/s switches, unpriced"));
    assert_eq!(r.flows.len(), 2);
    assert_eq!(r.flows[1].fd_out.as_deref(), Some("fd 4 10.0.0.1:80 -> 10.0.0.2:5000"));
    assert_eq!((r.flows[1].bytes_per_s, r.flows[1].calls_per_s), (4.0 * MIB as f64, 64.0));

    let s = TopRow::from_row(&sender(11), 2.0, None);
    assert_eq!(s.strategy, "sendfile");
    assert_eq!(s.zero_copy, 8.0 * MIB as f64);
    assert_eq!(s.zero_copy_share, Some(1.0));
    assert_eq!(s.saving, None, "nothing to advise a sendfile server");
}

#[test]
fn an_end_no_probe_could_measure_is_none_not_zero() {
    // Received from a socket without skb:skb_copy_datagram_iovec: the copies to user are
    // not measured, and no rule derives them.
    let mut recv = Stats { payload_in: MIB, ..Default::default() };
    recv.to_user[End::Socket as usize] = Tally { bytes: MIB, calls: 16 };
    let by_class: BTreeMap<OpClass, Stats> = [(OpClass::Recv, recv)].into_iter().collect();
    let row = row::row(input(12, "receiver", &by_class), &run::Evidence::default(), &GlobalEvents::default());
    let r = TopRow::from_row(&row, 1.0, None);
    assert_eq!(r.to_user, None);
    assert_eq!(maybe_rate(r.to_user), "n/a");
}

#[test]
fn only_rows_that_moved_something_are_shown() {
    assert!(moved_anything(&copier(10)) && moved_anything(&sender(11)));
    let none = BTreeMap::new();
    let idle = row::row(input(13, "idle", &none), &run::Evidence::default(), &GlobalEvents::default());
    assert!(!moved_anything(&idle));
    // Copies only in a direction that cannot be measured here are not shown as a rate.
    let mut recv = Stats { payload_in: MIB, ..Default::default() };
    recv.to_user[End::Socket as usize] = Tally { bytes: MIB, calls: 16 };
    let by_class: BTreeMap<OpClass, Stats> = [(OpClass::Recv, recv)].into_iter().collect();
    let unmeasured = row::row(input(12, "receiver", &by_class), &run::Evidence::default(), &GlobalEvents::default());
    assert!(!moved_anything(&unmeasured));
}

#[test]
fn units_fit_their_columns() {
    assert_eq!(rate(0.0), "0");
    assert_eq!(rate(1023.0), "1023");
    assert_eq!(rate(4096.0), "4.0K");
    assert_eq!(rate(8.0 * MIB as f64), "8.0M");
    assert!(rate(1023.95 * 1024.0).len() <= 7);
    assert!(rate(1023.9 * MIB as f64).len() <= 7);
    assert_eq!(rate(3.0 * (1u64 << 40) as f64), "3.0T");
    assert_eq!(count(9999.0), "9999");
    assert_eq!(count(12_345.0), "12.3k");
    assert_eq!(count(999_940.0), "999.9k");
    assert_eq!(count(4_100_000.0), "4.1M");
    assert_eq!(count(41_000_000.0), "41.0M");
}

fn rows() -> Vec<TopRow> {
    vec![TopRow::from_row(&sender(11), 1.0, None), TopRow::from_row(&copier(10), 1.0, None)]
}

fn pids(rows: &[TopRow]) -> Vec<u32> {
    rows.iter().filter_map(TopRow::pid).collect()
}

#[test]
fn keys_sort_select_drill_in_and_quit() {
    let mut state = TopState::default();
    let mut rows = rows();
    state.order(&mut rows);
    assert_eq!(pids(&rows), [10, 11], "CPU copies first");
    state.key(Key::Char('z'), &rows);
    state.order(&mut rows);
    assert_eq!(pids(&rows), [11, 10], "zero-copy first");
    state.key(Key::Char('r'), &rows);
    state.order(&mut rows);
    assert_eq!(pids(&rows), [10, 11], "reversed");
    state.key(Key::Char('p'), &rows);
    assert!(!state.reverse, "a new sort key starts in its own order");
    state.order(&mut rows);
    assert_eq!(pids(&rows), [10, 11]);

    assert_eq!(state.selected_index(&rows), Some(0), "the first row until one is chosen");
    state.key(Key::Down, &rows);
    state.key(Key::Down, &rows);
    assert_eq!(state.selected, Some(RowKey::Pid(11)), "Down stops at the last row");
    // The selection follows its row when the order changes.
    state.key(Key::Char('z'), &rows);
    state.order(&mut rows);
    assert_eq!(state.selected_index(&rows), Some(0));
    state.key(Key::Enter, &rows);
    assert_eq!(state.view, View::Flows(RowKey::Pid(11)));
    state.key(Key::Down, &rows);
    assert_eq!(state.selected, Some(RowKey::Pid(11)), "arrows do not move the selection under the flows");
    assert_eq!(state.scroll, 1, "they scroll the flows");
    state.key(Key::Back, &rows);
    assert_eq!((state.view.clone(), state.scroll), (View::Table, 0), "a new view starts at its top");
    state.key(Key::Char('?'), &rows);
    assert_eq!(state.view, View::Probes);
    state.key(Key::Char('?'), &rows);
    assert_eq!(state.view, View::Table);
    state.key(Key::Char('x'), &rows);
    assert_eq!(state.sort, SortKey::ZeroCopy, "an unknown key changes nothing");
    assert!(!state.quit);
    state.key(Key::Quit, &rows);
    assert!(state.quit);
}

fn header() -> Header {
    Header {
        kernel: "6.12.118+deb12-amd64".into(),
        scope: "every process".into(),
        tier: "auto: fentry".into(),
        interval_s: 1.0,
        probes_attached: 40,
        unavailable: vec![("dma:dma_map_page (raw_tracepoint)".into(), "no such tracepoint on this kernel".into())],
        drops: 0,
        bpf_cpu_percent: Some(0.4),
        bpf_runs_per_s: Some(56_900.0),
        own_cpu_percent: 0.6,
        idle_rows: 3,
        intervals: 1,
        groups: None,
    }
}

#[test]
fn the_header_fits_80_columns() {
    let state = TopState { sort: SortKey::ModeSwitches, reverse: true, ..TopState::default() };
    let lines = screen::header_text(&header(), &state);
    for line in &lines {
        assert!(line.len() <= 80, "{} columns: {line}", line.len());
    }
    assert_eq!(lines[2], "watching costs: BPF 0.4% of a CPU (56.9k runs/s), zc-trace 0.6%");
    assert!(lines[3].ends_with("3 idle, by mode switches reversed"), "{}", lines[3]);
}

fn draw(width: u16, height: u16, state: &TopState) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    let mut rows = rows();
    state.order(&mut rows);
    let header = header();
    terminal.draw(|f| screen::draw(f, &Screen { header: &header, rows: &rows, state, colour: false })).unwrap();
    let buffer = terminal.backend().buffer();
    (0..height)
        .map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect::<String>().trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_figure_fits_80_by_24_and_wider_terminals_add_the_flow_and_advice() {
    let screen = draw(80, 24, &TopState::default());
    let line =
        |pid: &str| screen.lines().find(|l| l.starts_with(pid)).unwrap_or_else(|| panic!("{screen}")).to_string();
    assert_eq!(
        line("10 ").split_whitespace().collect::<Vec<_>>(),
        ["10", "copier", "read-write", "8.0M", "8.0M", "0", "0", "0%", "n/a"]
    );
    assert_eq!(
        line("11 ").split_whitespace().collect::<Vec<_>>(),
        ["11", "server", "sendfile", "0", "0", "0", "16.0M", "100%", "n/a"]
    );
    // (Mode switches are n/a: these rows' evidence has no page-fault tracepoint.)
    assert!(screen.contains("PID 10 (copier): top flow read-write file -> tcp"), "{screen}");
    assert!(screen.contains("advice: sendfile pays: -16.0M/s copies"), "{screen}");
    assert!(!screen.contains("TOP FLOW"), "no room at 80 columns: {screen}");

    let wide = draw(160, 24, &TopState::default());
    assert!(wide.contains("TOP FLOW") && wide.contains("ADVICE"), "{wide}");
    assert!(wide.lines().any(|l| l.starts_with("10 ") && l.contains("read-write file -> tcp")), "{wide}");
}

#[test]
fn groups_are_named_by_the_end_of_their_path() {
    let mut row = copier(0);
    row.role = "cgroup".into();
    row.comm = "/system.slice/nginx.service".into();
    let rows = [TopRow::from_row(&row, 1.0, None)];
    let header = Header { groups: Some("CGROUP"), ..header() };
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let state = TopState::default();
    terminal.draw(|f| screen::draw(f, &Screen { header: &header, rows: &rows, state: &state, colour: false })).unwrap();
    let buffer = terminal.backend().buffer();
    let line = |y: u16| (0..80).map(|x| buffer[(x, y)].symbol()).collect::<String>();
    assert!(line(4).starts_with("CGROUP               STRATEGY"), "{}", line(4));
    assert!(line(5).starts_with("...ice/nginx.service read-write"), "{}", line(5));
}

#[test]
fn the_first_screen_says_it_is_measuring() {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let header = Header { intervals: 0, ..header() };
    let state = TopState::default();
    terminal.draw(|f| screen::draw(f, &Screen { header: &header, rows: &[], state: &state, colour: false })).unwrap();
    let buffer = terminal.backend().buffer();
    let line = |y: u16| (0..80).map(|x| buffer[(x, y)].symbol()).collect::<String>();
    assert!(line(21).starts_with("measuring the first interval"), "{}", line(21));
    assert!(line(1).contains("probes: 40 attached, 1 unavailable (?: why)"), "{}", line(1));
}

#[test]
fn the_flows_view_names_each_fd() {
    let state = TopState { view: View::Flows(RowKey::Pid(10)), ..TopState::default() };
    let screen = draw(80, 24, &state);
    assert!(screen.contains("flows of PID 10 (copier), strategy read-write"), "{screen}");
    assert!(screen.contains("from fd 3 /srv/big"), "{screen}");
    assert!(screen.contains("to   fd 4 10.0.0.1:80 -> 10.0.0.2:5000"), "{screen}");
    assert!(screen.contains("where the row's figures come from:"), "{screen}");
    assert!(screen.contains("MODE/s: 2 per syscall"), "{screen}");
    let gone = draw(80, 24, &TopState { view: View::Flows(RowKey::Pid(99)), ..TopState::default() });
    assert!(gone.contains("moved nothing in the last interval"), "{gone}");
}

#[test]
fn colour_only_where_the_terminal_says_it_has_it() {
    assert!(wants_colour(Some("xterm-256color"), false, false));
    assert!(wants_colour(Some("screen"), false, false));
    assert!(wants_colour(Some("vt100"), true, false), "COLORTERM says so");
    assert!(!wants_colour(Some("xterm-256color"), false, true), "NO_COLOR wins");
    assert!(!wants_colour(Some("dumb"), false, false));
    assert!(!wants_colour(Some("vt100"), false, false));
    assert!(!wants_colour(None, false, false));
}

#[test]
fn the_tier_is_the_attach_kind_the_function_probes_got() {
    let p = |attach: &str, ok: bool| {
        if ok { ProbeStatus::attached("f", attach) } else { ProbeStatus::unavailable("f", attach, "refused") }
    };
    assert_eq!(effective_tier(&[p("tracepoint", true), p("fexit", true)]), "fentry");
    assert_eq!(effective_tier(&[p("kretprobe", true), p("fexit", false)]), "kprobe");
    assert_eq!(effective_tier(&[p("raw_tracepoint", true), p("fexit", false)]), "tracepoint");
}
