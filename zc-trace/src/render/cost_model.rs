//! `zc-trace calibrate`'s output: the cost model's figures by size, and where they were
//! written.
use std::path::Path;

use prettytable::{Cell, Row, Table, format};

use crate::{advise::cost::CostModel, render::table::human_bytes};

pub fn render(model: &CostModel, written: &Path) -> String {
    let mut table = Table::new();
    table.set_format(*format::consts::FORMAT_NO_BORDER_LINE_SEPARATOR);
    let r = |s: &str| Cell::new(s).style_spec("r");
    table.set_titles(Row::new(vec![r("size"), r("copy ->user ns/B"), r("copy user-> ns/B"), r("syscall ns")]));
    for s in &model.sizes {
        table.add_row(Row::new(vec![
            r(&human_bytes(s.bytes as f64)),
            r(&format!("{:.4}", s.to_user_ns_per_byte)),
            r(&format!("{:.4}", s.from_user_ns_per_byte)),
            r(&format!("{:.0}", s.syscall_ns)),
        ]));
    }
    format!(
        "cost model measured {} on Linux {}, CPU {}\n\n{table}\nwritten to {}\n",
        model.measured_at,
        model.kernel_release,
        model.cpu_model,
        written.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advise::cost::{SizeCost, VERSION};

    #[test]
    fn figures_by_size_and_the_file() {
        let model = CostModel {
            version: VERSION,
            kernel_release: "6.12.0".into(),
            cpu_model: "test CPU".into(),
            measured_at: "2025-01-02T03:04:05Z".into(),
            method: String::new(),
            sizes: vec![SizeCost {
                bytes: 4096,
                to_user_ns_per_byte: 0.05,
                from_user_ns_per_byte: 0.0712,
                syscall_ns: 98.6,
            }],
        };
        let text = render(&model, Path::new("/tmp/m.json"));
        assert!(text.starts_with("cost model measured 2025-01-02T03:04:05Z on Linux 6.12.0, CPU test CPU\n"), "{text}");
        let line = text.lines().find(|l| l.contains("4.0 KiB")).unwrap();
        assert!(line.contains("0.0500") && line.contains("0.0712") && line.contains("99"), "{line}");
        assert!(text.ends_with("written to /tmp/m.json\n"), "{text}");
    }
}
