//! The classic zero-copy story over real (emulated) devices: what the `classic-sg-on` and
//! `classic-sg-off` checks (`vm/checks.rs`) must show, and docs/classic-story.md made from them.
//!
//! Each classic row is one lab sender: the source read cold from the NVMe disk, sent over the
//! e1000 hub to a receiver in another network namespace. The figures come from the lab's
//! JSON: syscall counts, CPU copies and zero-copy bytes per process, block requests and
//! packets per process, and each device's DMA-API mappings during the run (`system_by_device`).
use serde_json::Value;

use super::results::{DATA_SYSCALLS, load, n, rows, within_1pct};
use crate::vm::devices::{NVME_PCI, RX_NIC_PCI, TX_NIC, TX_NIC_PCI};

/// One classic row and the run that measures it.
struct Case {
    classic: &'static str,
    /// Classic CPU copies, DMA copies, mode switches per request.
    model: (u32, u32, u32),
    check: &'static str,
    strategy: &'static str,
}

const CASES: [Case; 4] = [
    Case { classic: "read() + write()", model: (2, 2, 4), check: "classic-sg-on", strategy: "read-write" },
    Case { classic: "mmap() + write()", model: (1, 2, 4), check: "classic-sg-on", strategy: "mmap-write" },
    Case { classic: "sendfile()", model: (1, 2, 2), check: "classic-sg-off", strategy: "sendfile" },
    Case { classic: "sendfile() + SG-DMA", model: (0, 2, 2), check: "classic-sg-on", strategy: "sendfile" },
];

/// What one sender's run measured.
struct Measured<'a> {
    case: &'a Case,
    report: &'a Value,
    sender: &'a Value,
    payload: u64,
    chunks: u64,
}

impl Measured<'_> {
    fn calls(&self, name: &str) -> u64 {
        n(&self.sender["syscall_counts"][name])
    }
    fn copy(&self, dir: &str) -> u64 {
        n(&self.sender["cpu_copy"][dir]["bytes"])
    }
    fn cpu_bytes(&self) -> u64 {
        self.copy("to_user") + self.copy("from_user") + self.copy("kernel")
    }
    fn dma(&self, field: &str) -> Option<u64> {
        self.sender["dma"][field].as_u64()
    }
    /// The window figures of the device in `pci` (`system_by_device` keys are "driver pci").
    fn device(&self, pci: &str) -> Option<&Value> {
        self.sender["dma"]["system_by_device"].as_object()?.iter().find(|(k, _)| k.ends_with(pci)).map(|(_, v)| v)
    }
    /// The data calls the classic table counts switches for.
    fn data_calls(&self) -> u64 {
        match self.case.strategy {
            "read-write" => self.calls("read") + self.calls("write"),
            "mmap-write" => self.calls("mmap") + self.calls("write"),
            _ => self.calls("sendfile"),
        }
    }
}

/// Whether this kernel has `dma:*` tracepoints attached in a report (6.1 has none).
fn dma_attached(report: &Value) -> bool {
    report["probes"].as_array().is_some_and(|ps| {
        ps.iter().any(|p| p["name"].as_str().is_some_and(|n| n.starts_with("dma:")) && p["status"] == "attached")
    })
}

fn measure<'a>(reports: &'a BTreeMapOfReports, case: &'a Case) -> Result<Measured<'a>, String> {
    let report = reports.get(case.check).ok_or_else(|| format!("{}: no report", case.check))?;
    let sender = rows(report)
        .get(&(case.strategy.to_string(), "sender".to_string()))
        .copied()
        .ok_or_else(|| format!("{}: no {} sender row", case.check, case.strategy))?;
    let size = n(&report["lab"]["size_bytes"]);
    let chunk = n(&report["lab"]["chunk_bytes"]).max(1);
    Ok(Measured { case, report, sender, payload: size, chunks: size.div_ceil(chunk) })
}

type BTreeMapOfReports = std::collections::BTreeMap<&'static str, Value>;

fn load_reports(dir: &std::path::Path, problems: &mut Vec<String>) -> BTreeMapOfReports {
    let mut reports = BTreeMapOfReports::new();
    for name in ["classic-sg-on", "classic-sg-off"] {
        match load(dir, name) {
            Ok(v) => {
                reports.insert(name, v);
            }
            Err(e) => problems.push(e),
        }
    }
    reports
}

/// Every problem with the classic runs of one guest; empty when the story holds as measured.
pub fn verify_classic(dir: &std::path::Path) -> Vec<String> {
    let mut problems = Vec::new();
    let reports = load_reports(dir, &mut problems);
    let loopback = load(dir, "lab-auto").ok();
    for case in &CASES {
        match measure(&reports, case) {
            Ok(m) => problems.extend(
                check_case(&m, loopback.as_ref())
                    .into_iter()
                    .map(|p| format!("{} ({}): {p}", case.classic, case.check)),
            ),
            Err(e) => problems.push(e),
        }
    }
    // SG on vs off: the same sendfile, with and without a copy and a gather.
    if let (Ok(on), Ok(off)) = (measure(&reports, &CASES[3]), measure(&reports, &CASES[2])) {
        problems.extend(compare_sg(&on, &off));
    }
    problems
}

fn check_case(m: &Measured, loopback: Option<&Value>) -> Vec<String> {
    let mut p = Vec::new();
    let payload = m.payload;
    if n(&m.sender["payload_bytes"]) != payload {
        p.push(format!("payload {} bytes, expected {payload}", m.sender["payload_bytes"]));
    }
    // Syscalls: exactly what the workload makes, and the same as over loopback.
    let chunks = m.chunks;
    let expected: &[(&str, u64)] = match m.case.strategy {
        "read-write" => &[("read", chunks + 1), ("write", chunks)],
        "mmap-write" => &[("mmap", chunks), ("munmap", chunks), ("write", chunks)],
        _ => &[("sendfile", chunks + 1)],
    };
    for (name, want) in expected {
        if m.calls(name) != *want {
            p.push(format!("{name} calls {}, expected {want}", m.calls(name)));
        }
    }
    if let Some(lo) = loopback.and_then(|r| rows(r).get(&(m.case.strategy.to_string(), "sender".to_string())).copied())
    {
        for s in DATA_SYSCALLS {
            let (x, y) = (m.calls(s), n(&lo["syscall_counts"][s]));
            if x != y {
                p.push(format!("{s} calls {x} over the e1000 path vs {y} over loopback"));
            }
        }
    }
    // Disk -> memory: the cold source is read from the disk in the sender's own context.
    match m.dma("disk_read_bytes") {
        Some(d) if within_1pct(d, payload) => {}
        other => {
            p.push(format!("block_rq_issue read bytes in the sender's context {other:?}, expected {payload} (cold)"))
        }
    }
    // CPU copies, per strategy, within 1%.
    let (to_user, from_user, kernel) = (m.copy("to_user"), m.copy("from_user"), m.copy("kernel"));
    let zero = n(&m.sender["zero_copy"]["bytes"]);
    let want = match m.case.classic {
        "read() + write()" => (payload, payload, 0, 0),
        "mmap() + write()" => (0, payload, 0, 0),
        "sendfile()" => (0, 0, payload, 0),
        _ => (0, 0, 0, payload),
    };
    for (what, got, want) in [
        ("to_user", to_user, want.0),
        ("from_user", from_user, want.1),
        ("kernel", kernel, want.2),
        ("zero-copy", zero, want.3),
    ] {
        if !within_1pct(got, want) {
            p.push(format!("{what} bytes {got}, expected {want}"));
        }
    }
    if m.case.strategy == "read-write" {
        let ev = m.sender["cpu_copy"]["to_user"]["by_end"]["page_cache"]["evidence"].as_str().unwrap_or("");
        if ev.contains("derived") {
            p.push(format!("page cache -> user derived, not observed: `{ev}`"));
        }
    }
    // Memory -> NIC, seen by the DMA API where the kernel has dma:* tracepoints.
    if dma_attached(m.report) {
        p.extend(check_device_dma(m));
    }
    p
}

fn check_device_dma(m: &Measured) -> Vec<String> {
    let mut p = Vec::new();
    let payload = m.payload;
    match m.device(NVME_PCI) {
        Some(d) if within_1pct(n(&d["from_device_bytes"]), payload) => {}
        Some(d) => p.push(format!("nvme mapped {} bytes FROM_DEVICE, expected {payload}", d["from_device_bytes"])),
        None => p.push(format!("no DMA-API mappings of the NVMe disk ({NVME_PCI})")),
    }
    // Most of it in the sender's context, never more than the payload: a request that the
    // previous one's completion interrupt dispatches is mapped in interrupt context, charged
    // to no process (docs/dma.md; seen once under TCG on 6.12: 8 of 64 requests). The
    // device's total, above, is the whole payload either way.
    match m.dma("dma_map_bytes_from_device") {
        Some(b) if b * 2 >= payload && b * 100 <= payload * 101 => {}
        other => p.push(format!(
            "DMA FROM_DEVICE bytes in the sender's context {other:?}, expected most of the payload and at most all of it"
        )),
    }
    // What the NIC maps is what the stack handed it (net_dev_start_xmit, linear + paged):
    // the payload plus headers, plus any retransmissions (seen under TCG: 8% more once).
    match m.device(TX_NIC_PCI) {
        Some(d) => {
            let sent = n(&d["to_device_bytes"]);
            let handed = m.dma("net_tx_linear_bytes").unwrap_or(0) + m.dma("net_tx_paged_bytes").unwrap_or(0);
            if sent < payload || !within_1pct(sent, handed) {
                p.push(format!(
                    "{TX_NIC} ({TX_NIC_PCI}) mapped {sent} bytes TO_DEVICE, expected what the stack handed it \
                     ({handed} bytes: the payload {payload} plus headers and retransmissions)"
                ));
            }
        }
        None => p.push(format!("no DMA-API mappings of the sending NIC ({TX_NIC_PCI})")),
    }
    p
}

/// Mappings per transmitted packet on the sending NIC: above 1 means the NIC gathered each
/// packet from several buffers.
fn maps_per_packet(m: &Measured) -> Option<f64> {
    let maps = n(&m.device(TX_NIC_PCI)?["to_device_maps"]);
    let packets = m.dma("net_tx_packets")?;
    (packets > 0).then(|| maps as f64 / packets as f64)
}

fn compare_sg(on: &Measured, off: &Measured) -> Vec<String> {
    let mut p = Vec::new();
    let payload = on.payload;
    // SG on: paged skbs; SG off: every byte in the skb's linear area.
    let paged_on = on.dma("net_tx_paged_bytes").unwrap_or(0);
    if paged_on * 100 < payload * 99 {
        p.push(format!("SG on: {paged_on} paged bytes transmitted, expected the payload {payload} in page frags"));
    }
    let (paged_off, linear_off) =
        (off.dma("net_tx_paged_bytes").unwrap_or(0), off.dma("net_tx_linear_bytes").unwrap_or(0));
    if paged_off != 0 || linear_off < payload {
        p.push(format!(
            "SG off: {paged_off} paged and {linear_off} linear bytes transmitted, expected all {payload} linear"
        ));
    }
    if on.cpu_bytes() != 0 || off.copy("kernel") == 0 {
        p.push(format!(
            "SG on copies {} bytes, SG off {} kernel bytes: expected 0 and the payload",
            on.cpu_bytes(),
            off.copy("kernel")
        ));
    }
    if dma_attached(on.report) {
        match (maps_per_packet(on), maps_per_packet(off)) {
            (Some(a), Some(b)) if a > 1.5 && b < 1.1 => {}
            (a, b) => p.push(format!(
                "DMA mappings per packet on {TX_NIC}: SG on {a:?}, SG off {b:?}; expected a gather (> 1.5) with SG and one buffer per packet without"
            )),
        }
    }
    p
}

// ---------------------------------------------------------------------------------------------
// The docs table

fn mib(bytes: u64) -> String {
    if bytes < 1 << 20 {
        return format!("{:.1} KiB", bytes as f64 / 1024.0);
    }
    format!("{:.2} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// The share of a device's mapped bytes that were mapped in a traced process's context.
fn traced_share(d: &Value) -> f64 {
    let all = n(&d["to_device_bytes"]) + n(&d["from_device_bytes"]) + n(&d["bidirectional_bytes"]);
    100.0 * n(&d["traced_context_bytes"]) as f64 / all.max(1) as f64
}

/// docs/classic-story.md's body, from one guest's classic runs.
pub fn classic_table(dir: &std::path::Path, release: &str) -> Result<String, String> {
    let mut problems = Vec::new();
    let reports = load_reports(dir, &mut problems);
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let measured = CASES.iter().map(|c| measure(&reports, c)).collect::<Result<Vec<_>, _>>()?;
    let first = &measured[0];
    let nvme = first.device(NVME_PCI).map(|d| d["driver"].as_str().unwrap_or("?").to_string()).unwrap_or("nvme".into());
    let mut md = format!(
        "Linux {release}, QEMU TCG; source file {} on ext4 on an emulated NVMe disk (`{nvme}` driver, {NVME_PCI}), \
         read cold (`--cold`) and sent in {} chunks of {} over an emulated e1000 ({TX_NIC_PCI}, 10.0.0.1) and a QEMU hub \
         to a second e1000 ({RX_NIC_PCI}, 10.0.0.2) in the receiver's network namespace; probe tier {}. \
         Per request in the classic table, per payload byte (copies) or per chunk (switches) here.\n\n",
        mib(first.payload),
        first.chunks,
        mib(first.payload / first.chunks.max(1)),
        first.report["tier"].as_str().unwrap_or("auto"),
    );
    md += "| classic row | classic: CPU / DMA / switches | CPU copies measured | disk -> memory DMA | memory -> NIC DMA | mode switches per chunk | where the kernel disagrees, and why |\n";
    md += "|---|---|---|---|---|---|---|\n";
    for m in &measured {
        md += &format!(
            "| {} | {} / {} / {} | {} | {} | {} | {} | {} |\n",
            m.case.classic,
            m.case.model.0,
            m.case.model.1,
            m.case.model.2,
            cpu_cell(m),
            disk_cell(m),
            nic_cell(m),
            switch_cell(m),
            disagreement(m),
        );
    }
    md += "\nCPU copies: bytes per payload byte and where (the probe that saw them). Disk DMA: the NVMe \
           driver's `dma:*` mappings FROM_DEVICE (bytes, lists) during the run, and `block_rq_issue` in the \
           sender's context. NIC DMA: the sending e1000's mappings TO_DEVICE during the run (bytes, mappings) \
           against the packets `net_dev_start_xmit` saw. The SG-off row ran after `ethtool -K zctx sg off` \
           (which also turns TSO off).\n";
    // Where the mappings were made: which figures process context can carry, which only the
    // device window can.
    let sg = &measured[3];
    if let (Some(disk), Some(nic)) = (sg.device(NVME_PCI), sg.device(TX_NIC_PCI)) {
        md += &format!(
            "\nAttribution (sendfile + SG run): {:.0}% of the NVMe mappings' bytes were mapped in a traced \
             process's context (the sender's read bringing the pages in); of the sending e1000's, {:.0}% in a traced \
             process's context and {} in the sender's own. Transmit buffers are mapped in whichever context processes \
             the ACK that opens the window (a softirq on any task), so that split varies from run to run: the NIC \
             figures above are the device's during the run, and the lab's is the only traffic on that NIC.\n",
            traced_share(disk),
            traced_share(nic),
            mib(sg.dma("dma_map_bytes_to_device").unwrap_or(0)),
        );
    }
    Ok(md)
}

fn cpu_cell(m: &Measured) -> String {
    let per_byte = m.cpu_bytes() as f64 / m.payload.max(1) as f64;
    let mut parts = Vec::new();
    for (dir, label) in
        [("to_user", "page cache -> user"), ("from_user", "user -> socket"), ("kernel", "page cache -> socket buffer")]
    {
        let cell = &m.sender["cpu_copy"][dir];
        if n(&cell["bytes"]) > 0 {
            let ev = cell["by_end"]
                .as_object()
                .and_then(|e| e.values().next())
                .and_then(|p| p["evidence"].as_str())
                .unwrap_or("");
            let ev = ev.split(" (").next().unwrap_or(ev).split(" + ").next().unwrap_or(ev);
            parts.push(format!("{label} (`{ev}`)"));
        }
    }
    if parts.is_empty() {
        let zc = &m.sender["zero_copy"];
        let ev = zc["evidence"].as_str().unwrap_or("").split(" (").next().unwrap_or("");
        return format!("**0**: {} by reference (`{ev}`)", mib(n(&zc["bytes"])));
    }
    format!("**{per_byte:.2}**: {}", parts.join(", "))
}

fn disk_cell(m: &Measured) -> String {
    let block = m.dma("disk_read_bytes").map_or("n/a".into(), mib);
    match m.device(NVME_PCI) {
        Some(d) => format!(
            "{} in {} mappings ({} `dma_map_sg` lists, {} segments); block: {block}",
            mib(n(&d["from_device_bytes"])),
            n(&d["from_device_maps"]),
            n(&d["sg_lists"]),
            n(&d["segments"]),
        ),
        None => format!("DMA API: not observable; block: {block}"),
    }
}

fn nic_cell(m: &Measured) -> String {
    let packets = m.dma("net_tx_packets").unwrap_or(0);
    let paged = m.dma("net_tx_paged_bytes").unwrap_or(0);
    let linear = m.dma("net_tx_linear_bytes").unwrap_or(0);
    match m.device(TX_NIC_PCI) {
        Some(d) => format!(
            "{} in {} mappings for {packets} packets ({:.1} per packet; {} paged, {} linear)",
            mib(n(&d["to_device_bytes"])),
            n(&d["to_device_maps"]),
            n(&d["to_device_maps"]) as f64 / packets.max(1) as f64,
            mib(paged),
            mib(linear),
        ),
        None => format!("DMA API: not observable; {packets} packets ({} paged, {} linear)", mib(paged), mib(linear)),
    }
}

fn switch_cell(m: &Measured) -> String {
    let data = 2.0 * m.data_calls() as f64 / m.chunks.max(1) as f64;
    let faults = m.sender["mode_switch_detail"]["page_faults"].as_u64().unwrap_or(0);
    let all = n(&m.sender["mode_switches"]) as f64 / m.chunks.max(1) as f64;
    if m.case.strategy == "mmap-write" {
        return format!(
            "{data:.2} (mmap + write) + {:.2} (munmap) + {:.2} (page faults); {all:.2} in all",
            2.0 * m.calls("munmap") as f64 / m.chunks.max(1) as f64,
            faults as f64 / m.chunks.max(1) as f64
        );
    }
    format!("{data:.2} from its data calls; {all:.2} in all")
}

/// Where and why the measurement departs from the classic row.
fn disagreement(m: &Measured) -> String {
    let mut notes = Vec::new();
    let per_byte = m.cpu_bytes() as f64 / m.payload.max(1) as f64;
    if (per_byte - m.case.model.0 as f64).abs() > 0.01 {
        notes.push(format!("{per_byte:.2} CPU copies per byte, not {}", m.case.model.0));
    }
    let paged = m.dma("net_tx_paged_bytes").unwrap_or(0);
    match m.case.strategy {
        "read-write" | "mmap-write" if paged * 2 > m.payload => notes.push(
            "the NIC DMA is a gather too: TCP copies user data into page frags, not one linear socket buffer, so the e1000 maps several buffers per packet".into(),
        ),
        _ => {}
    }
    if m.case.strategy == "mmap-write" {
        notes.push("the lab maps each chunk (mmap + munmap per chunk) and takes page faults: more switches than the table's once-per-request mmap".into());
    }
    if m.case.classic == "sendfile()" {
        let kernel_ev = m.sender["cpu_copy"]["kernel"]["evidence"].as_str().unwrap_or("");
        if kernel_ev.contains("skb_segment") {
            notes.push(
                concat!(
                    "the count agrees, the place does not: a TCP socket's route always carries NETIF_F_SG ",
                    "(sk_setup_caps adds it wherever GSO can run), so tcp_sendmsg_locked still takes the ",
                    "page-cache pages by reference (fexit:tcp_sendmsg_locked saw MSG_SPLICE_PAGES); the NIC ",
                    "cannot gather, so the pages reach it copied into linear packets (data_len 0 at ",
                    "net_dev_start_xmit), copied by software GSO at transmit (skb_segment -> skb_copy_bits in ",
                    "the 6.12 source), one MSS per packet (TSO goes off with SG)",
                )
                .into(),
            );
        } else {
            notes.push("none: without NETIF_F_SG the kernel copies the page-cache data into the socket buffer; TSO goes off with SG (one packet per MSS)".into());
        }
    }
    if m.case.classic == "sendfile() + SG-DMA" && m.cpu_bytes() == 0 {
        notes.push(
            "none: the socket takes the page-cache pages by reference (MSG_SPLICE_PAGES) and the e1000 gathers them"
                .into(),
        );
    }
    if notes.is_empty() { "none".into() } else { notes.join("; ") }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn missing_runs_are_problems_not_passes() {
        let dir = std::env::temp_dir().join(format!("zc-classic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let problems = verify_classic(&dir);
        assert!(problems.iter().any(|p| p.contains("classic-sg-on")), "{problems:?}");
        assert!(classic_table(&dir, "6.12").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sizes_and_shares_read_plainly() {
        assert_eq!(mib(8 << 20), "8.00 MiB");
        assert_eq!(mib(64 << 10), "64.0 KiB");
        let d = json!({"to_device_bytes": 300, "from_device_bytes": 100, "bidirectional_bytes": 0, "traced_context_bytes": 100});
        assert_eq!(traced_share(&d), 25.0);
    }
}
