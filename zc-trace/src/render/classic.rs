//! The classic zero-copy model as text: `zc-trace model`, and the lab's comparison lines.
use crate::model::classic::{CLASSIC, Comparison};

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

/// The lab's notes: each sender beside its classic row, with the verdicts.
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
