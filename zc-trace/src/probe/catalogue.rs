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
    // Required: besides counting switches, it takes a thread's syscall state out of the
    // CPU's slot when the thread leaves the CPU; without it derived copies of syscalls that
    // block would be lost without a trace.
    TracepointProbe {
        name: "sched:sched_switch",
        program: SCHED_SWITCH_PROGRAM,
        required: true,
        measures: "context switches, voluntary and involuntary; threads leaving the CPU mid-syscall",
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

/// The `sched_switch` program of kernels whose tracepoint passes `prev_state` (5.18+), and
/// the one of older kernels, which reads the state from `prev` (BTF's `task_struct.__state`
/// or `state`). A program reading an argument the tracepoint lacks cannot attach.
pub const SCHED_SWITCH_PROGRAM: &str = "zc_sched_switch";
pub const SCHED_SWITCH_TASK_STATE_PROGRAM: &str = "zc_sched_switch_task_state";

/// Which `sched_switch` program this kernel takes, decided from its BTF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedSwitch {
    /// `prev_state` is a tracepoint argument (or BTF is unreadable: assume a current kernel).
    PrevStateArgument,
    /// Read `prev->__state` (`state`).
    TaskState,
    /// Neither: the tracepoint passes no state and BTF has no state member.
    NoState,
}

impl SchedSwitch {
    /// `prev_state_argument`: `None` when BTF could not be read.
    pub fn for_kernel(prev_state_argument: Option<bool>, task_state_offset: bool) -> Self {
        match (prev_state_argument, task_state_offset) {
            (Some(true) | None, _) => SchedSwitch::PrevStateArgument,
            (Some(false), true) => SchedSwitch::TaskState,
            (Some(false), false) => SchedSwitch::NoState,
        }
    }

    /// The program to attach, or why none can be.
    pub fn program(self) -> Result<&'static str, &'static str> {
        match self {
            SchedSwitch::PrevStateArgument => Ok(SCHED_SWITCH_PROGRAM),
            SchedSwitch::TaskState => Ok(SCHED_SWITCH_TASK_STATE_PROGRAM),
            SchedSwitch::NoState => {
                Err("the tracepoint passes no prev_state and BTF has no task_struct.__state or .state")
            }
        }
    }

    /// How the program learns whether the task went to sleep, for people.
    pub fn state_source(self) -> &'static str {
        match self {
            SchedSwitch::PrevStateArgument => "prev_state argument",
            SchedSwitch::TaskState => "task_struct state of prev (tracepoint without prev_state)",
            SchedSwitch::NoState => "none",
        }
    }
}

/// Why the `exceptions:page_fault_*` tracepoints are not attached on a kernel whose BTF has
/// no `btf_trace_page_fault_user` (doctor says the same). They are defined by arch/x86 alone
/// (arch/x86/include/asm/trace/exceptions.h); arm64 has none, and counts faults with the
/// `page-faults` perf event instead ([`PAGE_FAULTS_PERF`]).
pub const NO_PAGE_FAULT_TRACEPOINTS: &str =
    "no exceptions:page_fault_* tracepoints on this kernel (they exist on x86 only)";

/// arm64's page-fault source instead of the tracepoints: the `page-faults` software perf
/// event on every online CPU, every fault sampled into this program (zc-trace-ebpf
/// probes/faults.rs), which tells user-mode faults from the kernel's by the exception level.
pub const PAGE_FAULTS_PERF: &str = "page-faults";
pub const PAGE_FAULTS_PERF_PROGRAM: &str = "zc_page_fault_arm64";

/// Whether `name` (of [`TRACEPOINTS`]) is one of the page-fault tracepoints.
pub fn is_page_fault_tracepoint(name: &str) -> bool {
    name.starts_with("exceptions:page_fault_")
}

/// `dma:*` map events; names differ between kernels, each that exists is attached.
pub const DMA_TRACEPOINTS: &[&str] = &["dma_map_phys", "dma_map_page", "dma_map_sg", "dma_map_resource"];
pub const DMA_PROGRAM: &str = "zc_dma_map";

/// Interrupt context, tracked while `dma:*` events are attached (zc-trace-ebpf/src/probes/irq.rs):
/// (tracepoint, program), attached in this order. The exits come first: an exit without its
/// entry leaves the depth at zero, but an entry seen before its exit was attached would leave
/// the CPU "in interrupt" for the whole session, and no mapping there would be charged to a
/// process. On arm64 the timer tick is an IRQ handler of its own (250 a second per CPU), so
/// the other order lost the process's DMA on most runs.
pub const IRQ_TRACEPOINTS: &[(&str, &str)] = &[
    ("irq:irq_handler_exit", "zc_irq_exit"),
    ("irq:softirq_exit", "zc_irq_exit"),
    ("irq:irq_handler_entry", "zc_irq_enter"),
    ("irq:softirq_entry", "zc_irq_enter"),
];

/// A copy site observed at a kernel function, when the kernel allows function probes.
#[derive(Clone, Copy)]
pub struct FunctionProbe {
    pub function: &'static str,
    pub fexit: &'static str,
    pub kretprobe: Option<&'static str>,
    /// The `observed::*` bit: set, the syscall-exit derivation skips this path.
    pub observed: u32,
    /// The label of the derived figure used when no function probe attaches.
    pub derived: &'static str,
    pub measures: &'static str,
    /// An fexit program for kernels where the function has an older prototype: an fexit
    /// program reads the return value after the parameters, so it is written for one count.
    pub older_prototype: Option<OlderPrototype>,
}

/// Where a kernel's function takes `params` parameters (BTF says), `fexit` is its program.
#[derive(Clone, Copy)]
pub struct OlderPrototype {
    pub params: usize,
    pub fexit: &'static str,
}

impl FunctionProbe {
    /// This probe as it attaches on a kernel whose function takes `params` parameters
    /// (`None`: BTF unread, assume the current prototype).
    pub fn for_params(self, params: Option<usize>) -> Self {
        match self.older_prototype {
            Some(older) if params == Some(older.params) => FunctionProbe { fexit: older.fexit, ..self },
            _ => self,
        }
    }
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
        older_prototype: None,
    },
    // filemap_read's name before 5.12, with the same parameters and return value.
    FunctionProbe {
        function: "generic_file_buffered_read",
        fexit: "zc_fexit_generic_file_buffered_read",
        kretprobe: Some("zc_kretprobe_generic_file_buffered_read"),
        observed: observed::FILE_READ,
        derived: "derived:read(2)",
        measures: "page cache -> user copies (before 5.12)",
        older_prototype: None,
    },
    FunctionProbe {
        function: "generic_perform_write",
        fexit: "zc_fexit_generic_perform_write",
        kretprobe: Some("zc_kretprobe_generic_perform_write"),
        observed: observed::FILE_WRITE,
        derived: "derived:write(2)",
        measures: "user -> page cache copies",
        // (file, iter, pos) before 5.19, (iocb, iter) since.
        older_prototype: Some(OlderPrototype { params: 3, fexit: "zc_fexit_generic_perform_write_pos" }),
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
        older_prototype: None,
    },
    FunctionProbe {
        function: "do_tcp_sendpages",
        fexit: "zc_fexit_do_tcp_sendpages",
        // Needs the socket (an entry argument) to tell a reference from a copy.
        kretprobe: None,
        observed: observed::TCP_SPLICE,
        derived: "derived:sendfile(2)/splice(2)",
        measures: "pages into TCP by reference (sendpage, before Linux 6.5)",
        older_prototype: None,
    },
    FunctionProbe {
        function: "filemap_splice_read",
        fexit: "zc_fexit_filemap_splice_read",
        kretprobe: Some("zc_kretprobe_filemap_splice_read"),
        observed: observed::SPLICE_READ,
        derived: "derived:splice(2)",
        measures: "page-cache pages referenced into a pipe (6.5+)",
        older_prototype: None,
    },
    FunctionProbe {
        function: "generic_file_splice_read",
        fexit: "zc_fexit_generic_file_splice_read",
        kretprobe: Some("zc_kretprobe_generic_file_splice_read"),
        observed: observed::SPLICE_READ,
        derived: "derived:splice(2)",
        measures: "page-cache pages referenced into a pipe (before 6.5)",
        older_prototype: None,
    },
    FunctionProbe {
        function: "iter_file_splice_write",
        fexit: "zc_fexit_iter_file_splice_write",
        kretprobe: Some("zc_kretprobe_iter_file_splice_write"),
        observed: observed::SPLICE_WRITE_FILE,
        derived: "derived:sendfile(2)/splice(2)/copy_file_range(2)",
        measures: "pipe -> file copies (splice, sendfile and copy_file_range into a file)",
        older_prototype: None,
    },
    FunctionProbe {
        function: "pipe_read",
        fexit: "zc_fexit_pipe_read",
        kretprobe: Some("zc_kretprobe_pipe_read"),
        observed: observed::PIPE,
        derived: "derived:read(2)",
        measures: "pipe -> user copies",
        older_prototype: None,
    },
    FunctionProbe {
        function: "pipe_write",
        fexit: "zc_fexit_pipe_write",
        kretprobe: Some("zc_kretprobe_pipe_write"),
        observed: observed::PIPE,
        derived: "derived:write(2)",
        measures: "user -> pipe copies",
        older_prototype: None,
    },
];

/// Where the copy happens; tried on every kernel so that the report can say whether they are
/// traceable (on x86-64 they are inlined or notrace: expected to fail).
pub const COPY_PRIMITIVES: &[&str] = &["_copy_to_user", "_copy_from_user"];
