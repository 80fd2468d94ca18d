//! What the advisor answers, in a fixed vocabulary: every label is one of the texts below,
//! never words taken from the trace (only numbers and the flow's label are), so that reports
//! can be grouped and compared by them.
use serde::{Serialize, Serializer};

/// One flow's advice: the better strategy, what switching to it removes (from the flow's
/// measured bytes and calls), the CPU time that saves by the cost model, and whether it pays.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Advice {
    /// `read-write file -> tcp`: the flow's strategy, source kind -> destination kind.
    pub flow: String,
    pub bytes: u64,
    pub calls: u64,
    /// bytes / calls.
    pub chunk_bytes: u64,
    pub recommend: Recommend,
    /// CPU copy bytes the switch removes (net: a copy the kernel then makes instead is not
    /// counted as removed), by direction below.
    pub copy_bytes_removed: u64,
    pub to_user_bytes_removed: u64,
    pub from_user_bytes_removed: u64,
    pub syscalls_removed: u64,
    /// Two per syscall removed (user -> kernel and back).
    pub mode_switches_removed: u64,
    /// The copies and syscalls removed, priced by the cost model at the flow's chunk size.
    pub cpu_ns_saved: Option<u64>,
    /// Why `cpu_ns_saved` is `None`.
    pub unpriced_reason: Option<&'static str>,
    /// The cost model used: path, date, kernel release (and a note when that is not the
    /// running kernel).
    pub model: Option<String>,
    pub verdict: Verdict,
    pub reason: Reason,
    /// What the figures take for granted.
    pub assumes: Vec<Assumption>,
}

/// `cpu_ns_saved` is `None` for this reason when no cost model was found.
pub const UNPRICED_NO_MODEL: &str = "no cost model: run zc-trace calibrate";

/// The strategy advised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recommend {
    Sendfile,
    /// splice(2) from a file straight into a pipe.
    Splice,
    /// splice(2) socket -> pipe, then pipe -> socket or file.
    SpliceThroughPipe,
    CopyFileRange,
    MsgZerocopy,
}

impl Recommend {
    pub const fn text(self) -> &'static str {
        match self {
            Recommend::Sendfile => "sendfile",
            Recommend::Splice => "splice",
            Recommend::SpliceThroughPipe => "splice through a pipe",
            Recommend::CopyFileRange => "copy_file_range",
            Recommend::MsgZerocopy => "MSG_ZEROCOPY or io_uring SEND_ZC",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pays,
    DoesNotPay,
}

impl Verdict {
    pub const fn text(self) -> &'static str {
        match self {
            Verdict::Pays => "pays",
            Verdict::DoesNotPay => "does not pay",
        }
    }
}

/// Why the verdict is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Priced: the saving is at least [`crate::advise::rules::MIN_SAVING_NS`].
    SavesCpu,
    /// Unpriced: at least [`crate::advise::rules::MIN_COPY_BYTES`] of copies removed.
    RemovesCopies,
    TooFewBytes,
    /// The row's MSG_ZEROCOPY completions: most were copies.
    ZerocopyCopied {
        copied: u64,
        completed: u64,
    },
    /// The row's pages sent by reference were copied at transmit, for this strategy.
    CopiedAtTransmit(Recommend),
    /// The flow's sockets deliver to this machine.
    Loopback,
    SmallChunks,
}

impl Reason {
    pub fn text(self) -> String {
        match self {
            Reason::SavesCpu => "saves at least 1 ms of CPU over the trace".into(),
            Reason::RemovesCopies => "removes at least 1 MiB of copies (unpriced)".into(),
            Reason::TooFewBytes => "too few bytes to matter".into(),
            Reason::ZerocopyCopied { copied, completed } => format!(
                "the kernel copied the zero-copy sends anyway: {copied} of {completed} completions were copies \
                 (loopback delivery or a device that cannot gather)"
            ),
            Reason::CopiedAtTransmit(Recommend::Sendfile) => {
                "sendfile copies at transmit here: the route's device cannot gather".into()
            }
            Reason::CopiedAtTransmit(Recommend::MsgZerocopy) => {
                "zero-copy sends are copied at transmit here: the route's device cannot gather".into()
            }
            Reason::CopiedAtTransmit(_) => "splice copies at transmit here: the route's device cannot gather".into(),
            Reason::Loopback => {
                "loopback delivery: the kernel copies zero-copy sends that a local socket receives".into()
            }
            Reason::SmallChunks => {
                "chunks below 10 KiB: MSG_ZEROCOPY's page pinning and completion costs more than the copy".into()
            }
        }
    }
}

/// What an advice's figures take for granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assumption {
    OneReadPerWrite,
    DeviceGathers,
    /// The row measured copies at transmit: the kernel's copy there replaces the send's.
    DeviceCopiesHere,
    KernelCopiesOnce,
    PagedReceive,
    TwoSplicesPerChunk,
    PipeIntoFileCopies,
    BufferHeldUntilCompletion,
    MappingNotCounted,
}

impl Assumption {
    pub const fn text(self) -> &'static str {
        match self {
            Assumption::OneReadPerWrite => "one read per write, of the same chunk size: each pair becomes one call",
            Assumption::DeviceGathers => {
                "the route's device can gather (scatter-gather DMA); if not, the kernel copies once at transmit"
            }
            Assumption::DeviceCopiesHere => {
                "the route's device cannot gather (measured here): the kernel copies once at transmit instead"
            }
            Assumption::KernelCopiesOnce => {
                "the kernel still copies once, page cache to page cache, unless the file system reflinks \
                 (btrfs, XFS): then nothing is copied"
            }
            Assumption::PagedReceive => {
                "received data sits in page fragments (splice copies data in the skb's linear part)"
            }
            Assumption::TwoSplicesPerChunk => {
                "two splices per chunk replace the read and the write: no syscall removed"
            }
            Assumption::PipeIntoFileCopies => {
                "splicing the pipe into the file copies once into its page cache: one copy remains"
            }
            Assumption::BufferHeldUntilCompletion => {
                "the buffer is not reused before its completion arrives; completions are read in batches"
            }
            Assumption::MappingNotCounted => "the mapping's mmap/munmap calls and page faults are not counted",
        }
    }
}

/// Each label serializes as its text.
macro_rules! serialize_as_text {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.text())
            }
        }
    )*};
}

serialize_as_text!(Recommend, Verdict, Reason, Assumption);
