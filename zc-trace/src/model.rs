//! The classic zero-copy story, and how a measured row compares with it. Pure code.
//!
//! The classic table counts, per request (one buffer served from a file to a socket): CPU
//! copies, DMA copies and user/kernel mode switches. The lab moves a file in chunks, so the
//! comparison is per byte for copies and per data call (one chunk) for mode switches.
use serde::Serialize;

use crate::attribute::Row;

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

/// `zc-trace model`: the classic table and its steps.
pub fn render_model() -> String {
    let mut out = String::from("The classic zero-copy model (per request: one buffer from a file to a socket)\n\n");
    out += &format!("{:<22} {:>10} {:>10} {:>14}\n", "strategy", "CPU copies", "DMA copies", "mode switches");
    for r in &CLASSIC {
        out += &format!("{:<22} {:>10} {:>10} {:>14}\n", r.strategy, r.cpu_copies, r.dma_copies, r.mode_switches);
    }
    for r in &CLASSIC {
        out += &format!("\n{}:\n", r.strategy);
        for step in r.steps {
            out += &format!("  {step}\n");
        }
    }
    out += "\nzc-trace lab measures each on this kernel; `zc-trace lab --cold` adds the disk DMA.\n";
    out
}

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

/// What the lab knows about the path the bytes took (the sink decides the device).
#[derive(Debug, Clone, Copy)]
pub struct Path {
    /// The payload went through the loopback device (no NIC, so no NIC DMA).
    pub loopback: bool,
    pub cold: bool,
}

/// The classic row a strategy's sender corresponds to. sendfile (and splice, the same
/// mechanism) is compared with the SG row when the kernel spliced pages by reference, with
/// the plain row when it copied.
fn classic_for(row: &Row) -> Option<ClassicRow> {
    let spliced = row.zero_copy.by_kind.get("splice_pages").is_some_and(|p| p.bytes > 0);
    match row.strategy.as_str() {
        "read-write" => Some(CLASSIC[0]),
        "mmap-write" => Some(CLASSIC[1]),
        "sendfile" | "splice" if spliced => Some(CLASSIC[3]),
        "sendfile" | "splice" => Some(CLASSIC[2]),
        _ => None,
    }
}

/// The data calls of a strategy, whose mode switches the classic table counts.
fn data_calls(row: &Row) -> u64 {
    let c = |n: &str| row.syscall_counts.get(n).copied().unwrap_or(0);
    match row.strategy.as_str() {
        "read-write" => c("read") + c("write"),
        "mmap-write" => c("mmap") + c("write"),
        "sendfile" => c("sendfile"),
        "splice" => c("splice"),
        _ => 0,
    }
}

/// Compares a sender row with the classic model, or `None` for strategies the classic
/// table has no row for.
pub fn compare(row: &Row, path: Path, chunks: u64) -> Option<Comparison> {
    let classic = classic_for(row)?;
    let observed = row.copies_per_payload_byte;
    let derived = row.cpu_copy.from_user.evidence.contains("derived")
        || row.zero_copy.evidence.contains("derived");
    let how = if derived { "derived from syscall semantics on this kernel" } else { "observed" };
    let cpu_verdict = match observed {
        None => "not measured: no payload".into(),
        Some(o) if (o - classic.cpu_copies as f64).abs() < 0.01 => {
            let mut v = format!("matches ({how})");
            if classic.strategy == CLASSIC[3].strategy {
                v += "; the route's device can gather (NETIF_F_SG), so the socket takes page-cache pages by \
                      reference (MSG_SPLICE_PAGES since Linux 6.5, sendpage before)";
            }
            if row.strategy == "splice" {
                v += "; splice file -> pipe -> socket is sendfile's own mechanism";
            }
            v
        }
        Some(o) => format!("differs: {o:.2} CPU copies per payload byte ({how})"),
    };

    let disk = row.dma.disk_read_bytes;
    let disk_dma = disk.is_some_and(|d| row.payload_bytes > 0 && d * 100 >= row.payload_bytes * 99);
    let mut dma_parts = Vec::new();
    let mut dma_seen = 0;
    match disk {
        None => dma_parts.push("disk: not observable (no block tracepoint)".to_string()),
        Some(_) if disk_dma => {
            dma_seen += 1;
            dma_parts.push("disk -> page cache: observed (block_rq_issue)".into());
        }
        Some(_) if path.cold => dma_parts.push("disk: less than the payload was read from disk".into()),
        Some(_) => dma_parts.push("disk: none, the file was in the page cache (run with --cold)".into()),
    }
    if path.loopback {
        dma_parts.push("NIC: none, loopback moves packets in memory".into());
    } else {
        match row.dma.dma_api_maps {
            Some(n) if n > 0 => {
                dma_seen += 1;
                dma_parts.push(format!("NIC: {n} DMA-API mappings observed"));
            }
            _ => dma_parts.push("NIC: no DMA-API mappings observed".into()),
        }
    }
    let dma_verdict = if dma_seen == classic.dma_copies {
        "matches".into()
    } else {
        format!("differs: {dma_seen} of {} DMA copies happened here", classic.dma_copies)
    };

    let calls = data_calls(row);
    let per_call = (chunks > 0 && calls > 0).then(|| 2.0 * calls as f64 / chunks as f64);
    let switch_verdict = match per_call {
        None => "not measured".into(),
        Some(p) if (p - classic.mode_switches as f64).abs() <= 0.1 * classic.mode_switches as f64 => {
            format!("matches: {p:.2} per chunk from its data syscalls")
        }
        Some(p) if row.strategy == "mmap-write" => format!(
            "differs: {p:.2} per chunk; the classic table maps once per request, this workload maps every chunk"
        ),
        Some(p) if row.strategy == "splice" => {
            format!("differs: {p:.2} per chunk; splice needs two calls per chunk (file -> pipe, pipe -> socket)")
        }
        Some(p) => format!("differs: {p:.2} per chunk"),
    };
    Some(Comparison {
        strategy: row.strategy.clone(),
        classic,
        observed_cpu_copies_per_byte: observed,
        cpu_verdict,
        observed_dma_copies: dma_parts.join("; "),
        dma_verdict,
        observed_mode_switches_per_call: per_call,
        switch_verdict,
    })
}

pub fn render_comparisons(comparisons: &[Comparison]) -> String {
    if comparisons.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nthe classic model beside the measurement (senders):\n");
    for c in comparisons {
        out += &format!(
            "  {} vs classic {}: CPU copies {} -> {}: {}\n",
            c.strategy,
            c.classic.strategy,
            c.classic.cpu_copies,
            c.observed_cpu_copies_per_byte.map_or("n/a".into(), |o| format!("{o:.2}/byte")),
            c.cpu_verdict
        );
        out += &format!("      DMA copies {}: {} ({})\n", c.classic.dma_copies, c.dma_verdict, c.observed_dma_copies);
        out += &format!("      mode switches {}: {}\n", c.classic.mode_switches, c.switch_verdict);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_lists_four_rows_with_their_steps() {
        let text = render_model();
        for r in &CLASSIC {
            assert!(text.contains(r.strategy));
        }
        assert!(text.contains("copy_to_user"));
        assert_eq!(CLASSIC.iter().map(|r| r.cpu_copies).collect::<Vec<_>>(), [2, 1, 1, 0]);
    }
}
