//! Booting a guest in QEMU and reading its two serial lines while it runs.
//!
//! - the checks' line (QEMU's stdout): /init and the checks' output, parsed by
//!   [`super::transcript`];
//! - the kernel's console (a file, `kernel.log`) at every log level, watched by
//!   [`super::watchdog`] so that a lockup, stall or oops stops the run within seconds.
//!
//! amd64 guests are QEMU's PC with two 16550 UARTs: checks on ttyS0, kernel on ttyS1. arm64
//! guests are its `virt` board, which has one PL011 UART: the kernel gets it (ttyAMA0, from
//! the first instruction on, so an early panic is seen too) and the checks a virtio console
//! (hvc0; virtio_console and virtio_pci are built into Debian's arm64 kernel).
use std::{
    fs::File,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::ValueEnum;

use super::{
    debian::{Arch, Kernel},
    devices,
    progress::say,
    transcript::{Event, Line, Transcript, secs},
    watchdog::{Report, Watchdog},
};

/// How QEMU runs the guest's vCPUs under TCG.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum TcgThread {
    /// One host thread per vCPU (QEMU's default for x86 guests on x86 hosts).
    Multi,
    /// All vCPUs take turns on one host thread.
    Single,
}

/// What the guest machine looks like, beyond the fixed devices.
#[derive(Clone, Debug)]
pub struct Machine {
    pub arch: Arch,
    pub smp: u32,
    pub tcg_thread: TcgThread,
    /// Extra kernel command-line parameters.
    pub append: Option<String>,
}

/// Kernel parameters every guest boots with, and why:
/// - `console=`: kernel messages on a line of their own ([`boot`] watches it);
/// - `panic=-1`: reboot at once on a panic, which `-no-reboot` turns into QEMU exiting;
/// - `softlockup_all_cpu_backtrace=1`: a soft lockup report carries every CPU's stack, so the
///   CPU that the stuck one waits for is seen too.
const KERNEL_PARAMS: &str = "quiet panic=-1 softlockup_all_cpu_backtrace=1";

/// The guest's two lines, by the names its kernel gives them.
pub struct Consoles {
    /// /init and the checks: QEMU's stdout.
    pub checks: &'static str,
    /// The kernel's console: `kernel.log`.
    pub kernel: &'static str,
}

pub fn consoles(arch: Arch) -> Consoles {
    match arch {
        Arch::Amd64 => Consoles { checks: "ttyS0", kernel: "ttyS1" },
        Arch::Arm64 => Consoles { checks: "hvc0", kernel: "ttyAMA0" },
    }
}

/// The QEMU that emulates the guest's architecture.
pub fn qemu_binary(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "qemu-system-x86_64",
        Arch::Arm64 => "qemu-system-aarch64",
    }
}

/// The board and CPU. x86: the default PC, with every feature TCG has. arm64: the `virt`
/// board, whose PCIe host bridge takes the same NVMe and e1000 devices as the PC's PCI bus,
/// and QEMU's `max` CPU (pointer authentication, BTI, LSE atomics: what the kernel's BPF JIT
/// and trampolines use on current arm64 servers) with the QEMU-defined pointer authentication
/// algorithm instead of the architected QARMA, which TCG computes slowly on every signed
/// function return.
fn board_args(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::Amd64 => &["-cpu", "max"],
        Arch::Arm64 => &["-M", "virt", "-cpu", "max,pauth-impdef=on"],
    }
}

/// QEMU options for the two lines ([`consoles`]): the checks' on stdout, the kernel's into
/// `kernel_log`. On the PC each is a UART (`-serial`, in order); on `virt` the one UART is the
/// kernel's and the checks' line is a virtio console.
fn console_args(arch: Arch, kernel_log: &Path) -> Vec<String> {
    let log = format!("file:{}", kernel_log.display());
    match arch {
        Arch::Amd64 => vec!["-serial".into(), "stdio".into(), "-serial".into(), log],
        Arch::Arm64 => vec![
            "-serial".into(),
            log,
            "-chardev".into(),
            "stdio,id=checks".into(),
            "-device".into(),
            "virtio-serial-pci".into(),
            "-device".into(),
            "virtconsole,chardev=checks".into(),
        ],
    }
}

pub fn qemu_command(kernel: &Kernel, initrd: &Path, disk: &Path, kernel_log: &Path, machine: &Machine) -> Command {
    let mut cmd = Command::new(qemu_binary(machine.arch));
    let accel = match machine.tcg_thread {
        TcgThread::Multi => "tcg,thread=multi",
        TcgThread::Single => "tcg,thread=single",
    };
    // TCG: nested KVM dies in the kernel decompressor on our machines (docs/vm-test.md), and
    // an arm64 guest on an x86 host has no other way.
    cmd.args(board_args(machine.arch))
        .args(["-accel", accel, "-m", "1024", "-smp", &machine.smp.to_string()])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .args(console_args(machine.arch, kernel_log))
        // No default NIC and no network backend: the only NICs are the two e1000s on a hub,
        // so nothing can leave QEMU.
        .args(["-nic", "none"])
        .args(devices::qemu_args(disk))
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initrd);
    let mut params = format!("console={} {KERNEL_PARAMS}", consoles(machine.arch).kernel);
    if let Some(extra) = &machine.append {
        params.push(' ');
        params.push_str(extra);
    }
    cmd.arg("-append").arg(params);
    cmd
}

/// Kills QEMU when dropped, so that no error path (or panic) leaves a VM running.
struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How a boot went: every console line and how QEMU ended.
pub struct Boot {
    pub started: Instant,
    pub ended: Instant,
    pub lines: Vec<Line>,
    /// `None` when QEMU was stopped: after the timeout, or by the watchdog.
    pub exit: Option<ExitStatus>,
    pub timed_out: bool,
    /// What the guest kernel reported when it got stuck or broke, if it did.
    pub kernel_trouble: Option<Report>,
}

/// How long the watchdog keeps reading after the first trouble line (the backtraces follow
/// within a second or two, even under TCG).
const SETTLE: Duration = Duration::from_secs(4);
/// How often the kernel log file is read.
const POLL: Duration = Duration::from_millis(200);

/// Runs QEMU until it exits, `timeout` passes or the kernel log shows trouble, saving the
/// checks' console to `log` as it comes and reporting the checks' progress.
pub fn boot(
    mut qemu: Command,
    release: &str,
    timeout: Duration,
    log: &Path,
    kernel_log: &Path,
) -> anyhow::Result<Boot> {
    let mut log = File::create(log)?;
    // stdin must not be the terminal: QEMU would put it in raw mode and read keys.
    qemu.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let started = Instant::now();
    let program = qemu.get_program().to_string_lossy().into_owned();
    let mut vm = Vm(qemu.spawn().with_context(|| format!("starting {program}"))?);
    let stdout = vm.0.stdout.take().expect("piped");

    // A reader thread, so the main thread can wait with a deadline.
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut buf = Vec::new();
        while stdout.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_string();
            if tx.send(Line { at: Instant::now(), text }).is_err() {
                break;
            }
            buf.clear();
        }
    });

    let deadline = started + timeout;
    let mut lines = Vec::new();
    let mut progress = Transcript::default();
    let mut kernel = KernelLog::new(kernel_log.to_path_buf());
    let mut watchdog = Watchdog::new(SETTLE);
    let mut said_trouble = false;
    let mut timed_out = false;
    let mut stopped_for_trouble = false;
    loop {
        let now = Instant::now();
        for text in kernel.new_lines() {
            watchdog.feed(&text, now);
        }
        if let Some((trouble, line)) = watchdog.first()
            && !said_trouble
        {
            said_trouble = true;
            say(&format!(
                "{release}: guest kernel {}: {} (stopping in {}s, once its backtraces are in)",
                trouble.name(),
                line.trim(),
                SETTLE.as_secs()
            ));
        }
        if watchdog.ready(now) {
            stopped_for_trouble = true;
            break;
        }
        let left = deadline.saturating_duration_since(now);
        if left.is_zero() {
            timed_out = true;
            break;
        }
        match rx.recv_timeout(left.min(POLL)) {
            Ok(line) => {
                writeln!(log, "{}", line.text)?;
                for event in progress.feed(&line) {
                    report_progress(release, started, &event);
                }
                lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // QEMU closes the console before it exits: give it a moment to finish on its own.
    if !timed_out && !stopped_for_trouble {
        let grace = Instant::now() + Duration::from_secs(10);
        while vm.0.try_wait()?.is_none() && Instant::now() < grace {
            thread::sleep(Duration::from_millis(50));
        }
    }
    // Still running (timed out, trouble, or hung after closing the console): kill it, which
    // also ends the reader.
    let _ = vm.0.kill();
    let status = vm.0.wait()?;
    let ended = Instant::now();
    let _ = reader.join();
    // A panic is the kernel's last word before QEMU exits: read what is left.
    for text in kernel.new_lines() {
        watchdog.feed(&text, ended);
    }
    let stopped = timed_out || stopped_for_trouble;
    Ok(Boot {
        started,
        ended,
        lines,
        exit: (!stopped).then_some(status),
        timed_out,
        kernel_trouble: watchdog.into_report(),
    })
}

/// Follows the kernel log file that QEMU writes, a complete line at a time.
struct KernelLog {
    path: PathBuf,
    file: Option<File>,
    partial: Vec<u8>,
}

impl KernelLog {
    fn new(path: PathBuf) -> Self {
        KernelLog { path, file: None, partial: Vec::new() }
    }

    fn new_lines(&mut self) -> Vec<String> {
        if self.file.is_none() {
            // QEMU creates it when it starts.
            self.file = File::open(&self.path).ok();
        }
        let Some(file) = &mut self.file else { return Vec::new() };
        let _ = file.read_to_end(&mut self.partial);
        let Some(last_newline) = self.partial.iter().rposition(|&b| b == b'\n') else { return Vec::new() };
        let complete: Vec<u8> = self.partial.drain(..=last_newline).collect();
        String::from_utf8_lossy(&complete).lines().map(|l| l.trim_end_matches('\r').to_string()).collect()
    }
}

fn report_progress(release: &str, started: Instant, event: &Event) {
    match event {
        Event::Init(at) => say(&format!("{release}: /init started {:.1}s after QEMU", secs(started, *at))),
        Event::Begin(name) => say(&format!("{release}: {name} ...")),
        Event::End { name, rc, secs } => say(&format!("{release}: {name} rc={rc} ({secs:.1}s)")),
        // Errors of /init itself: rare, and telling when the guest fails to get anywhere.
        Event::Console(text) => {
            let text = strip_escapes(text);
            if !text.trim().is_empty() {
                eprintln!("  [{release}] {text}");
            }
        }
    }
}

/// Drops terminal escape sequences (SeaBIOS clears the screen) and other control characters.
pub fn strip_escapes(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            // CSI: ESC [ parameters, ended by a letter; otherwise ESC and one character.
            '\x1b' => {
                if chars.next() == Some('[') {
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_architecture_gets_its_board_and_two_lines() {
        let kernel = Kernel { vmlinuz: "/k/vmlinuz".into(), modules: "/k/lib/modules".into() };
        let argv = |arch| {
            let machine = Machine { arch, smp: 2, tcg_thread: TcgThread::Single, append: Some("x=1".into()) };
            let cmd = qemu_command(&kernel, Path::new("/i"), Path::new("/d"), Path::new("/r/kernel.log"), &machine);
            let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
            (cmd.get_program().to_string_lossy().into_owned(), args.join(" "))
        };
        let (program, args) = argv(Arch::Amd64);
        assert_eq!(program, "qemu-system-x86_64");
        assert!(args.contains("-serial stdio -serial file:/r/kernel.log"), "{args}");
        assert!(args.contains("console=ttyS1 quiet") && args.ends_with("x=1"), "{args}");
        let (program, args) = argv(Arch::Arm64);
        assert_eq!(program, "qemu-system-aarch64");
        assert!(args.starts_with("-M virt -cpu max,pauth-impdef=on"), "{args}");
        assert!(args.contains("-serial file:/r/kernel.log -chardev stdio,id=checks"), "{args}");
        assert!(args.contains("virtconsole,chardev=checks") && args.contains("console=ttyAMA0 quiet"), "{args}");
        assert!(!args.contains("-serial stdio"), "the checks' line is the virtio console");
    }

    #[test]
    fn escapes_are_stripped() {
        assert_eq!(strip_escapes("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (1.16)"), "SeaBIOS (1.16)");
    }

    #[test]
    fn kernel_log_yields_complete_lines_only() {
        let dir = std::env::temp_dir().join(format!("zc-xtask-klog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kernel.log");
        let mut log = KernelLog::new(path.clone());
        assert!(log.new_lines().is_empty(), "no file yet");
        let mut f = File::create(&path).unwrap();
        write!(f, "one\r\ntw").unwrap();
        assert_eq!(log.new_lines(), vec!["one"]);
        writeln!(f, "o").unwrap();
        assert_eq!(log.new_lines(), vec!["two"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
