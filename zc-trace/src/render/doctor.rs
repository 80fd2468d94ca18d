//! `zc-trace doctor`'s terminal output.
use prettytable::{Cell, Row, Table, format};

use crate::model::doctor::{DoctorReport, FUNCTION_KINDS, MapMemory};

/// `doctor`'s terminal output: kernel facts, one line per attach kind, then the copy-site
/// matrix. Failure reasons are long, so cells carry a footnote number and the reasons follow.
pub fn render_doctor(report: &DoctorReport) -> String {
    let k = &report.kernel;
    let mut out = format!(
        "kernel {}  lockdown: {}  BTF: {}\n\n",
        k.release,
        k.lockdown.as_deref().unwrap_or("unknown (no lockdown LSM or securityfs)"),
        if k.btf { "yes" } else { "no" }
    );
    let mut kinds = Table::new();
    kinds.set_format(*format::consts::FORMAT_NO_BORDER_LINE_SEPARATOR);
    kinds.set_titles(Row::new(vec![Cell::new("attach kind"), Cell::new("works"), Cell::new("how we know")]));
    for (kind, check) in &report.attach_kinds {
        kinds.add_row(Row::new(vec![
            Cell::new(kind),
            Cell::new(if check.works { "yes" } else { "no" }),
            Cell::new(&check.detail),
        ]));
    }
    out += &format!("{kinds}\n");
    if let Some(check) = &report.typed_loads {
        let path = if check.works { "typed loads" } else { "helper calls" };
        out += &format!("syscall programs read kernel memory by {path}: {}\n\n", check.detail);
    }
    if let Some(f) = &report.kernel_features {
        let mut table = Table::new();
        table.set_format(*format::consts::FORMAT_NO_BORDER_LINE_SEPARATOR);
        table.set_titles(Row::new(vec![Cell::new("kernel feature"), Cell::new("has it"), Cell::new("so")]));
        for (name, check) in [
            ("bpf_get_current_task_btf", &f.task_btf),
            ("run-time map allocation", &f.run_time_map_allocation),
            ("sched_switch prev_state", &f.sched_switch_prev_state),
            ("page-fault tracepoints", &f.page_fault_tracepoints),
        ] {
            table.add_row(Row::new(vec![
                Cell::new(name),
                Cell::new(if check.works { "yes" } else { "no" }),
                Cell::new(&check.detail),
            ]));
        }
        out += &format!("{table}\n");
    }

    let mut notes: Vec<String> = Vec::new();
    let mut note = |reason: &str| -> usize {
        match notes.iter().position(|n| n == reason) {
            Some(i) => i + 1,
            None => {
                notes.push(reason.to_string());
                notes.len()
            }
        }
    };
    let mut sites = Table::new();
    sites.set_format(*format::consts::FORMAT_NO_BORDER_LINE_SEPARATOR);
    let mut titles = vec![Cell::new("copy site"), Cell::new("in BTF")];
    titles.extend(FUNCTION_KINDS.iter().map(|k| Cell::new(k)));
    sites.set_titles(Row::new(titles));
    for site in &report.copy_sites {
        let mut cells = vec![Cell::new(site.function), Cell::new(if site.in_btf { "yes" } else { "no" })];
        for kind in FUNCTION_KINDS {
            let text = match site.attach.get(kind) {
                Some(c) if c.works => "yes".to_string(),
                Some(c) => format!("no [{}]", note(&c.detail)),
                None => "-".to_string(),
            };
            cells.push(Cell::new(&text));
        }
        sites.add_row(Row::new(cells));
    }
    out += &format!("{sites}\n");
    for (i, n) in notes.iter().enumerate() {
        out += &format!("[{}] {n}\n", i + 1);
    }
    if let Some(m) = &report.map_memory {
        out += &map_memory(m);
    }
    out
}

/// The maps' kernel memory: the most they take here and on larger machines, and which maps.
pub fn map_memory(m: &MapMemory) -> String {
    let at: Vec<String> = m.most_bytes_at.iter().map(|(cpus, b)| format!("{} at {cpus} CPUs", mib(*b))).collect();
    let largest: Vec<String> = m.largest.iter().map(|(name, b)| format!("{name} {}", mib(*b))).collect();
    format!(
        "\nkernel memory of the maps, with every entry used: at most {} with this machine's {} possible CPUs ({}); largest: {}\n",
        mib(m.most_bytes),
        m.cpus,
        at.join(", "),
        largest.join(", ")
    )
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}
