//! `zc-trace top` in a real terminal: Debian's tmux runs it in an 80x24 pane, the test types
//! keys with `send-keys` and reads the screen with `capture-pane`, while two senders run at
//! fixed rates (zc-paced: a read/write copier and a sendfile server).
mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use common::*;

const RW_RATE: u64 = 8 << 20;
const SENDFILE_RATE: u64 = 16 << 20;
const SECONDS: u64 = 20;

/// A tmux server of this test's own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(width: u16, height: u16, command: &str) -> Self {
        ensure_debian_package("/usr/bin/tmux", "tmux");
        let t = Tmux { socket: format!("zc-trace-test-{}", std::process::id()) };
        let (w, h) = (width.to_string(), height.to_string());
        t.run(&["new-session", "-d", "-x", &w, "-y", &h, command]);
        t
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("running tmux");
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p"])
    }

    /// The first screen for which `ready` holds, within `secs` seconds.
    fn wait_for(&self, secs: u64, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(start.elapsed() < Duration::from_secs(secs), "no {what} after {secs} s; the screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-L").arg(&self.socket).arg("kill-server").status();
    }
}

/// A table row as the screen shows it: PID, command, strategy, then the figures.
#[derive(Debug)]
struct Shown {
    pid: u32,
    strategy: String,
    to_user: f64,
    from_user: f64,
    zero_copy: f64,
    zero_copy_share: String,
}

/// The rows of the table on `screen`, in screen order.
fn rows(screen: &str) -> Vec<Shown> {
    screen
        .lines()
        .skip_while(|l| !l.starts_with("PID "))
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .take_while(|f| f.len() == 9 && f[0].parse::<u32>().is_ok())
        .map(|f| Shown {
            pid: f[0].parse().unwrap(),
            strategy: f[2].to_string(),
            to_user: bytes_per_s(f[3]),
            from_user: bytes_per_s(f[4]),
            zero_copy: bytes_per_s(f[6]),
            zero_copy_share: f[7].to_string(),
        })
        .collect()
}

/// `8.0M` as bytes per second (K, M, G: KiB, MiB, GiB).
fn bytes_per_s(cell: &str) -> f64 {
    let (number, scale) = match cell.chars().last() {
        Some('K') => (&cell[..cell.len() - 1], 1024.0),
        Some('M') => (&cell[..cell.len() - 1], 1024.0 * 1024.0),
        Some('G') => (&cell[..cell.len() - 1], 1024.0 * 1024.0 * 1024.0),
        _ => (cell, 1.0),
    };
    number.parse::<f64>().unwrap_or_else(|_| panic!("not a rate: {cell}")) * scale
}

fn row(screen: &str, pid: u32) -> Option<Shown> {
    rows(screen).into_iter().find(|r| r.pid == pid)
}

fn position(screen: &str, pid: u32) -> usize {
    rows(screen).iter().position(|r| r.pid == pid).unwrap_or_else(|| panic!("no row of PID {pid}:\n{screen}"))
}

/// What a zc-paced run reports: bytes sent / seconds it sent for.
fn reported_rate(result: &Path) -> f64 {
    let text = std::fs::read_to_string(result).unwrap();
    let field =
        |name: &str| -> f64 { text.split_whitespace().find_map(|f| f.strip_prefix(name)).unwrap().parse().unwrap() };
    field("bytes=") / (field("elapsed_ns=") / 1e9)
}

fn within_10_percent(shown: f64, reported: f64, what: &str, screen: &str) {
    assert!(
        (shown - reported).abs() <= reported * 0.10,
        "{what}: top shows {shown:.0} B/s, the workload reports {reported:.0} B/s (more than 10% apart):\n{screen}"
    );
}

fn paced(strategy: &str, src: &Path, port: u16, rate: u64, result: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_zc-paced"))
        .args([strategy, src.to_str().unwrap(), &port.to_string(), &rate.to_string(), &SECONDS.to_string()])
        .arg(result)
        .spawn()
        .expect("starting zc-paced")
}

#[test]
fn top_shows_a_copier_and_a_sendfile_server_at_their_rates() {
    if !privileged("top_shows_a_copier_and_a_sendfile_server_at_their_rates") {
        return;
    }
    let dir = TempDir::new("top");
    let src = dir.file("src", 4 << 20);
    let status: PathBuf = dir.0.join("status");
    let (rw_port, rw_drain) = downstream();
    let (sf_port, sf_drain) = downstream();
    let (rw_result, sf_result) = (dir.0.join("rw"), dir.0.join("sf"));
    let mut rw = paced("read-write", &src, rw_port, RW_RATE, &rw_result);
    let mut sf = paced("sendfile", &src, sf_port, SENDFILE_RATE, &sf_result);
    let (rw_pid, sf_pid) = (rw.id(), sf.id());
    // The two senders (-p: whatever else the machine does cannot push them off the 16 rows),
    // in a plain 80x24 terminal; top's exit status kept.
    let tmux = Tmux::start(
        80,
        24,
        &format!(
            "{} top -p {rw_pid},{sf_pid}; echo \"exit $?\" > {}; sleep 600",
            zc_trace().display(),
            status.display()
        ),
    );
    // Both appear; the figures are read from a refresh whose whole window they were running in.
    tmux.wait_for(60, "rows of both senders", |s| row(s, rw_pid).is_some() && row(s, sf_pid).is_some());
    std::thread::sleep(Duration::from_millis(2500));
    let measured = tmux.wait_for(5, "rows of both senders", |s| row(s, rw_pid).is_some() && row(s, sf_pid).is_some());
    let (copier, server) = (row(&measured, rw_pid).unwrap(), row(&measured, sf_pid).unwrap());
    assert_eq!(copier.strategy, "read-write", "{measured}");
    assert_eq!(server.strategy, "sendfile", "{measured}");
    assert_eq!(copier.zero_copy_share, "0%", "{measured}");
    assert_eq!(server.zero_copy_share, "100%", "{measured}");
    assert_eq!(server.to_user + server.from_user, 0.0, "sendfile copies nothing to or from user memory: {measured}");

    // Sorting: zero-copy puts the sendfile server first; CPU copies put the copier above it;
    // PID orders rows by PID, and r reverses.
    tmux.keys(&["z"]);
    let by_zero_copy =
        tmux.wait_for(5, "sort by zero-copy", |s| s.contains("by zero-copy") && row(s, sf_pid).is_some());
    assert_eq!(position(&by_zero_copy, sf_pid), 0, "{by_zero_copy}");
    tmux.keys(&["c"]);
    let by_copies = tmux.wait_for(5, "sort by CPU copies", |s| {
        s.contains("by CPU copies") && row(s, sf_pid).is_some() && row(s, rw_pid).is_some()
    });
    assert!(position(&by_copies, rw_pid) < position(&by_copies, sf_pid), "{by_copies}");
    tmux.keys(&["p"]);
    let by_pid = tmux.wait_for(5, "sort by PID", |s| s.contains("by PID"));
    let pids: Vec<u32> = rows(&by_pid).iter().map(|r| r.pid).collect();
    assert!(pids.windows(2).all(|w| w[0] < w[1]), "ascending PIDs: {by_pid}");
    tmux.keys(&["r"]);
    let reversed = tmux.wait_for(5, "reversed order", |s| s.contains("by PID reversed"));
    let pids: Vec<u32> = rows(&reversed).iter().map(|r| r.pid).collect();
    assert!(pids.windows(2).all(|w| w[0] > w[1]), "descending PIDs: {reversed}");

    // Drill-in: select the copier (its PID in the line under the table), Enter shows its
    // flows with the fds' names, Esc goes back.
    tmux.keys(&["c"]);
    tmux.wait_for(5, "sort by CPU copies", |s| s.contains("by CPU copies"));
    let selected = format!("PID {rw_pid} (zc-paced)");
    for _ in 0..20 {
        if tmux.screen().contains(&selected) {
            break;
        }
        tmux.keys(&["Down"]);
        std::thread::sleep(Duration::from_millis(100));
    }
    tmux.wait_for(5, "the copier selected", |s| s.contains(&selected));
    tmux.keys(&["Enter"]);
    let flows = tmux.wait_for(5, "the copier's flows", |s| s.contains(&format!("flows of {selected}")));
    assert!(flows.contains("strategy read-write"), "{flows}");
    assert!(flows.contains(&format!("127.0.0.1:{rw_port}")), "the socket's fd named by its addresses: {flows}");
    assert!(flows.contains(src.to_str().unwrap()), "the file's fd named by its path: {flows}");
    tmux.keys(&["Escape"]);
    tmux.wait_for(5, "the table again", |s| s.contains("by CPU copies"));

    // q quits: exit 0, nothing of zc-trace left in the kernel.
    tmux.keys(&["q"]);
    let start = Instant::now();
    while !status.exists() {
        assert!(start.elapsed() < Duration::from_secs(20), "top did not quit on q:\n{}", tmux.screen());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(std::fs::read_to_string(&status).unwrap().trim(), "exit 0");
    wait_gone("zc_ programs after q", || our_programs().is_empty());

    assert!(rw.wait().unwrap().success() && sf.wait().unwrap().success());
    rw_drain.join().unwrap();
    sf_drain.join().unwrap();
    let (rw_rate, sf_rate) = (reported_rate(&rw_result), reported_rate(&sf_result));
    eprintln!(
        "top showed the copier {:.0} B/s to user, {:.0} B/s from user (it reports {rw_rate:.0} B/s); \
         the sendfile server {:.0} B/s zero-copy (it reports {sf_rate:.0} B/s)",
        copier.to_user, copier.from_user, server.zero_copy
    );
    within_10_percent(copier.to_user, rw_rate, "the copier's copies to user", &measured);
    within_10_percent(copier.from_user, rw_rate, "the copier's copies from user", &measured);
    within_10_percent(server.zero_copy, sf_rate, "the sendfile server's zero-copy bytes", &measured);
}
