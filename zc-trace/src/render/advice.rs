//! The advisor's section of a report: one line per advice (the flow, what to use instead,
//! whether it pays, what it removes and saves, why and on what assumptions) and the cost
//! model it was priced with.
use prettytable::{Cell, Row, Table, format};

use crate::{
    advise::advice::{Advice, UNPRICED_NO_MODEL},
    render::table::human_bytes,
};

/// The "Advice" section; says so when there is nothing to advise.
pub fn table(advice: &[Advice]) -> String {
    let mut out = String::from("Advice\n");
    if advice.is_empty() {
        out += "nothing to advise: no flow costs CPU copies that another strategy removes\n";
        return out;
    }
    let mut table = Table::new();
    table.set_format(*format::consts::FORMAT_NO_BORDER_LINE_SEPARATOR);
    let r = |s: &str| Cell::new(s).style_spec("r");
    table.set_titles(Row::new(vec![
        Cell::new("flow"),
        Cell::new("use instead"),
        Cell::new("verdict"),
        r("copies removed"),
        r("syscalls removed"),
        r("CPU saved"),
        Cell::new("why"),
    ]));
    for a in advice {
        let mut why = a.reason.text();
        for assumption in &a.assumes {
            why += &format!("\nassumes {}", assumption.text());
        }
        table.add_row(Row::new(vec![
            Cell::new(&a.flow),
            Cell::new(a.recommend.text()),
            Cell::new(a.verdict.text()),
            r(&human_bytes(a.copy_bytes_removed as f64)),
            r(&a.syscalls_removed.to_string()),
            r(&saved(a)),
            Cell::new(&why),
        ]));
    }
    out += &format!("{table}");
    out += &match advice.iter().find_map(|a| a.model.as_deref()) {
        Some(model) => format!("priced with the cost model {model}\n"),
        None => format!("unpriced: {UNPRICED_NO_MODEL}\n"),
    };
    out
}

fn saved(a: &Advice) -> String {
    match (a.cpu_ns_saved, a.unpriced_reason) {
        (Some(ns), _) => duration(ns),
        (None, Some(why)) => format!("n/a: {why}"),
        (None, None) => "n/a".into(),
    }
}

/// `850 ns`, `12.3 us`, `1.2 ms`, `3.40 s`.
pub fn duration(ns: u64) -> String {
    let v = ns as f64;
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.1} us", v / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} ms", v / 1e6),
        _ => format!("{:.2} s", v / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advise::advice::{Assumption, Reason, Recommend, Verdict};

    fn sendfile_advice() -> Advice {
        Advice {
            flow: "read-write file -> tcp".into(),
            bytes: 64 << 20,
            calls: 16384,
            chunk_bytes: 4096,
            recommend: Recommend::Sendfile,
            copy_bytes_removed: 128 << 20,
            to_user_bytes_removed: 64 << 20,
            from_user_bytes_removed: 64 << 20,
            syscalls_removed: 16384,
            mode_switches_removed: 32768,
            cpu_ns_saved: Some(21_771_059),
            unpriced_reason: None,
            model: Some(
                "/cache/zc-trace/cost-model.json (measured 2025-01-02T03:04:05Z on Linux 6.12.0, test CPU)".into(),
            ),
            verdict: Verdict::Pays,
            reason: Reason::SavesCpu,
            assumes: vec![Assumption::OneReadPerWrite, Assumption::DeviceGathers],
        }
    }

    #[test]
    fn one_advice_is_one_line_with_its_reasons_under_it() {
        let text = table(&[sendfile_advice()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Advice");
        assert!(lines[1].contains("flow") && lines[1].contains("CPU saved"), "{text}");
        let line = lines.iter().find(|l| l.contains("read-write file -> tcp")).unwrap();
        for cell in ["sendfile", "pays", "128.0 MiB", "16384", "21.8 ms", "saves at least 1 ms of CPU"] {
            assert!(line.contains(cell), "{cell} missing from {line}");
        }
        assert!(text.contains(&format!("assumes {}", Assumption::DeviceGathers.text())), "{text}");
        assert!(
            text.ends_with(
                "priced with the cost model /cache/zc-trace/cost-model.json (measured 2025-01-02T03:04:05Z on \
                 Linux 6.12.0, test CPU)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn unpriced_advice_says_how_to_price_it() {
        let a =
            Advice { cpu_ns_saved: None, unpriced_reason: Some(UNPRICED_NO_MODEL), model: None, ..sendfile_advice() };
        let text = table(&[a]);
        assert!(text.contains("n/a: no cost model: run zc-trace calibrate"), "{text}");
        assert!(text.ends_with("unpriced: no cost model: run zc-trace calibrate\n"), "{text}");
        assert!(table(&[]).contains("nothing to advise"));
    }

    #[test]
    fn durations_take_the_unit_that_fits() {
        assert_eq!(duration(850), "850 ns");
        assert_eq!(duration(12_345), "12.3 us");
        assert_eq!(duration(1_234_567), "1.2 ms");
        assert_eq!(duration(3_400_000_000), "3.40 s");
    }
}
