//! The probe catalogue: every probe zc-trace knows, what it measures and how it can attach.
//! `docs/probes.md` is the same list for people; keep them together.
use zc_trace_common::observed;

/// A tracepoint probe, attached as a raw tracepoint (cheaper than the classic tracepoint: no
/// trace record is built, arguments are the `TP_PROTO` ones; needs no tracefs).
pub struct TracepointProbe {
    /// `category:name`, as people know the tracepoint (a second program on the same one
    /// adds what it is for, in parentheses).
    pub name: &'static str,
    /// The program in the eBPF object.
    pub program: &'static str,
    /// Without it nothing can be measured: failing to attach is fatal.
    pub required: bool,
    pub measures: &'static str,
}

impl TracepointProbe {
    /// The tracepoint's event name, as attaching takes it (`sys_enter`).
    pub fn event(&self) -> &'static str {
        let (_, event) = self.name.split_once(':').unwrap_or(("", self.name));
        event.split(' ').next().unwrap_or(event)
    }
}

/// The syscall programs: every syscall of a traced process runs both.
pub const SYS_ENTER_PROGRAM: &str = "zc_sys_enter";
pub const SYS_EXIT_PROGRAM: &str = "zc_sys_exit";

pub const TRACEPOINTS: &[TracepointProbe] = &[
    TracepointProbe {
        name: "raw_syscalls:sys_enter",
        program: SYS_ENTER_PROGRAM,
        required: true,
        measures: "syscalls (mode switches), data-syscall arguments and fd kinds",
    },
    TracepointProbe {
        name: "raw_syscalls:sys_exit",
        program: SYS_EXIT_PROGRAM,
        required: true,
        measures: "data-syscall results: derived copies and payload",
    },
    TracepointProbe {
        name: "skb:skb_copy_datagram_iovec",
        program: "zc_skb_copy_datagram_iovec",
        required: false,
        measures: "socket -> user copies",
    },
    TracepointProbe {
        name: "exceptions:page_fault_user",
        program: "zc_page_fault_user",
        required: false,
        measures: "user-mode page faults (mode switches)",
    },
    TracepointProbe {
        name: "exceptions:page_fault_kernel",
        program: "zc_page_fault_kernel",
        required: false,
        measures: "kernel-mode faults on user memory",
    },
    TracepointProbe {
        name: "sched:sched_switch",
        program: "zc_sched_switch",
        required: false,
        measures: "context switches, voluntary and involuntary",
    },
    TracepointProbe {
        name: "block:block_rq_issue",
        program: "zc_block_rq_issue",
        required: false,
        measures: "disk DMA bytes by direction",
    },
    TracepointProbe {
        name: "net:net_dev_start_xmit",
        program: "zc_net_dev_start_xmit",
        required: false,
        measures: "NIC transmit: linear and paged bytes, frags",
    },
    TracepointProbe {
        name: "sched:sched_process_fork",
        program: "zc_sched_process_fork",
        required: false,
        measures: "children of followed processes (trace -f)",
    },
    TracepointProbe {
        name: "sched:sched_process_exec",
        program: "zc_sched_process_exec",
        required: false,
        measures: "command names after exec",
    },
    TracepointProbe {
        name: "sched:sched_process_exit",
        program: "zc_sched_process_exit",
        required: false,
        measures: "traced processes exiting: serve then folds early and frees their entries",
    },
    TracepointProbe {
        name: "sock:inet_sock_set_state",
        program: "zc_inet_sock_set_state",
        required: false,
        measures: "TCP sockets closing: their owner is forgotten (a freed struct sock is reused)",
    },
    // Attached before zc_io_uring_complete, so that it runs first: it pairs io_uring reads
    // and writes by buffer (relays) for the counting program to split its flows.
    TracepointProbe {
        name: "io_uring:io_uring_complete (relays)",
        program: "zc_io_uring_relay",
        required: false,
        measures: "io_uring read/write buffers: relays (reads paired with writes)",
    },
    TracepointProbe {
        name: "io_uring:io_uring_complete",
        program: "zc_io_uring_complete",
        required: false,
        measures: "io_uring read/write/send results: derived copies",
    },
];

/// `dma:*` map events; names differ between kernels, each that exists is attached.
pub const DMA_TRACEPOINTS: &[&str] = &["dma_map_phys", "dma_map_page", "dma_map_sg", "dma_map_resource"];
pub const DMA_PROGRAM: &str = "zc_dma_map";

/// Interrupt context, tracked while `dma:*` events are attached (zc-trace-ebpf/src/probes/irq.rs):
/// (tracepoint, program).
pub const IRQ_TRACEPOINTS: &[(&str, &str)] = &[
    ("irq:irq_handler_entry", "zc_irq_enter"),
    ("irq:irq_handler_exit", "zc_irq_exit"),
    ("irq:softirq_entry", "zc_irq_enter"),
    ("irq:softirq_exit", "zc_irq_exit"),
];

/// A copy site observed at a kernel function, when the kernel allows function probes.
pub struct FunctionProbe {
    pub function: &'static str,
    pub fexit: &'static str,
    pub kretprobe: Option<&'static str>,
    /// The `observed::*` bit: set, the syscall-exit derivation skips this path.
    pub observed: u32,
    /// The label of the derived figure used when no function probe attaches.
    pub derived: &'static str,
    pub measures: &'static str,
}

/// Whether the probe named `name` (as the probe list names it) fires inside a copy path, and
/// so records the kernel stack of the copy for `--stacks` (zc-trace-ebpf's `stacks::note_kernel`):
/// the socket-receive tracepoint and every function probe.
pub fn copies_inside(name: &str) -> bool {
    name == "skb:skb_copy_datagram_iovec" || FUNCTIONS.iter().any(|f| f.function == name)
}

pub const FUNCTIONS: &[FunctionProbe] = &[
    FunctionProbe {
        function: "filemap_read",
        fexit: "zc_fexit_filemap_read",
        kretprobe: Some("zc_kretprobe_filemap_read"),
        observed: observed::FILE_READ,
        derived: "derived:read(2)",
        measures: "page cache -> user copies",
    },
    FunctionProbe {
        function: "generic_perform_write",
        fexit: "zc_fexit_generic_perform_write",
        kretprobe: Some("zc_kretprobe_generic_perform_write"),
        observed: observed::FILE_WRITE,
        derived: "derived:write(2)",
        measures: "user -> page cache copies",
    },
    FunctionProbe {
        function: "tcp_sendmsg_locked",
        fexit: "zc_fexit_tcp_sendmsg_locked",
        // The flags live in the entry argument `msg`: a return probe alone cannot tell a copy
        // from a splice.
        kretprobe: None,
        observed: observed::TCP_SEND,
        derived: "derived:write(2)/send(2)/sendfile(2)",
        measures: "user -> socket copies vs MSG_SPLICE_PAGES / MSG_ZEROCOPY",
    },
    FunctionProbe {
        function: "do_tcp_sendpages",
        fexit: "zc_fexit_do_tcp_sendpages",
        // Needs the socket (an entry argument) to tell a reference from a copy.
        kretprobe: None,
        observed: observed::TCP_SPLICE,
        derived: "derived:sendfile(2)/splice(2)",
        measures: "pages into TCP by reference (sendpage, before Linux 6.5)",
    },
    FunctionProbe {
        function: "filemap_splice_read",
        fexit: "zc_fexit_filemap_splice_read",
        kretprobe: Some("zc_kretprobe_filemap_splice_read"),
        observed: observed::SPLICE_READ,
        derived: "derived:splice(2)",
        measures: "page-cache pages referenced into a pipe (6.5+)",
    },
    FunctionProbe {
        function: "generic_file_splice_read",
        fexit: "zc_fexit_generic_file_splice_read",
        kretprobe: Some("zc_kretprobe_generic_file_splice_read"),
        observed: observed::SPLICE_READ,
        derived: "derived:splice(2)",
        measures: "page-cache pages referenced into a pipe (before 6.5)",
    },
    FunctionProbe {
        function: "iter_file_splice_write",
        fexit: "zc_fexit_iter_file_splice_write",
        kretprobe: Some("zc_kretprobe_iter_file_splice_write"),
        observed: observed::SPLICE_WRITE_FILE,
        derived: "derived:sendfile(2)/splice(2)/copy_file_range(2)",
        measures: "pipe -> file copies (splice, sendfile and copy_file_range into a file)",
    },
    FunctionProbe {
        function: "pipe_read",
        fexit: "zc_fexit_pipe_read",
        kretprobe: Some("zc_kretprobe_pipe_read"),
        observed: observed::PIPE,
        derived: "derived:read(2)",
        measures: "pipe -> user copies",
    },
    FunctionProbe {
        function: "pipe_write",
        fexit: "zc_fexit_pipe_write",
        kretprobe: Some("zc_kretprobe_pipe_write"),
        observed: observed::PIPE,
        derived: "derived:write(2)",
        measures: "user -> pipe copies",
    },
];

/// Where the copy happens; tried on every kernel so that the report can say whether they are
/// traceable (on x86-64 they are inlined or notrace: expected to fail).
pub const COPY_PRIMITIVES: &[&str] = &["_copy_to_user", "_copy_from_user"];
