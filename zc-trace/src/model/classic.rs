//! The classic zero-copy story as data: per request (one buffer served from a file to a
//! socket), the CPU copies, DMA copies and user/kernel mode switches of each strategy, and a
//! measured row's comparison with it (made by `attribute::classic`).
use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct ClassicRow {
    pub strategy: &'static str,
    pub cpu_copies: u32,
    pub dma_copies: u32,
    pub mode_switches: u32,
    /// Where each copy and switch happens, one line per step.
    #[serde(skip)]
    pub steps: &'static [&'static str],
}

pub const CLASSIC: [ClassicRow; 4] = [
    ClassicRow {
        strategy: "read() + write()",
        cpu_copies: 2,
        dma_copies: 2,
        mode_switches: 4,
        steps: &[
            "read(): user -> kernel (switch 1)",
            "  DMA copy 1: disk -> page cache (skipped when the page is cached)",
            "  CPU copy 1: page cache -> user buffer (copy_to_user)",
            "read() returns: kernel -> user (switch 2)",
            "write(): user -> kernel (switch 3)",
            "  CPU copy 2: user buffer -> socket buffer (copy_from_user)",
            "  DMA copy 2: socket buffer -> NIC",
            "write() returns: kernel -> user (switch 4)",
        ],
    },
    ClassicRow {
        strategy: "mmap() + write()",
        cpu_copies: 1,
        dma_copies: 2,
        mode_switches: 4,
        steps: &[
            "mmap(): user -> kernel -> user (switches 1, 2); the page cache is mapped, not copied",
            "  DMA copy 1: disk -> page cache, on the first touch (a page fault)",
            "write(): user -> kernel (switch 3)",
            "  CPU copy 1: page cache (through the mapping) -> socket buffer",
            "  DMA copy 2: socket buffer -> NIC",
            "write() returns: kernel -> user (switch 4)",
        ],
    },
    ClassicRow {
        strategy: "sendfile()",
        cpu_copies: 1,
        dma_copies: 2,
        mode_switches: 2,
        steps: &[
            "sendfile(): user -> kernel (switch 1)",
            "  DMA copy 1: disk -> page cache",
            "  CPU copy 1: page cache -> socket buffer (the NIC cannot gather)",
            "  DMA copy 2: socket buffer -> NIC",
            "sendfile() returns: kernel -> user (switch 2)",
        ],
    },
    ClassicRow {
        strategy: "sendfile() + SG-DMA",
        cpu_copies: 0,
        dma_copies: 2,
        mode_switches: 2,
        steps: &[
            "sendfile(): user -> kernel (switch 1)",
            "  DMA copy 1: disk -> page cache",
            "  no CPU copy: the socket buffer only references the page-cache pages",
            "  DMA copy 2: the NIC gathers straight from the page cache (scatter-gather)",
            "sendfile() returns: kernel -> user (switch 2)",
        ],
    },
];

/// A measured sender row set beside the classic row it corresponds to.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Comparison {
    pub strategy: String,
    pub classic: ClassicRow,
    pub observed_cpu_copies_per_byte: Option<f64>,
    pub cpu_verdict: String,
    pub observed_dma_copies: String,
    pub dma_verdict: String,
    pub observed_mode_switches_per_call: Option<f64>,
    pub switch_verdict: String,
}
