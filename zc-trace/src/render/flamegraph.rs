//! Copy stacks as folded stacks (`--folded`) and as an SVG flame graph (`--flamegraph`, drawn
//! by inferno), weighted by bytes. The first level of both is what the bytes were (to_user,
//! from_user, zero_copy, kernel_copy, no_copy), then the process, the user frames, the flow
//! the syscall belongs to, and the kernel frames of the copy (marked `_[k]`).
use std::path::Path;

use anyhow::Context as _;
use inferno::flamegraph::{
    self, Palette,
    color::{Color, MultiPalette, PaletteMap},
};
use zc_trace_common::stacks::CopyKind;

use crate::{attribute::stacks::folded_line, model::stacks::StacksReport};

/// The folded lines of a report, most bytes first.
pub fn folded(report: &StacksReport) -> String {
    report.stacks.iter().map(|s| folded_line(s) + "\n").collect()
}

/// The colour of a kind's root frame: copies in warm colours, no copy in cool ones.
fn kind_colour(kind: CopyKind) -> Color {
    let (r, g, b) = match kind {
        CopyKind::ToUser => (220, 60, 40),
        CopyKind::FromUser => (240, 150, 30),
        CopyKind::KernelCopy => (170, 70, 170),
        CopyKind::ZeroCopy => (60, 170, 80),
        CopyKind::NoCopy => (70, 130, 200),
    };
    Color { r, g, b }
}

/// The flame graph of a report as SVG.
pub fn svg(report: &StacksReport) -> anyhow::Result<Vec<u8>> {
    let mut palette = PaletteMap::default();
    for kind in CopyKind::ALL {
        palette.insert(kind.name(), kind_colour(kind));
    }
    let mut options = flamegraph::Options::default();
    options.title = "Bytes moved, by what they were (to_user, from_user, zero_copy, kernel_copy, no_copy)".into();
    options.subtitle =
        Some("first level: copy kind; then process, user frames, [flow], kernel frames of the copy (_[k])".into());
    options.count_name = "bytes".into();
    // Java semantics colour frames ending in `_[k]` apart from the rest: kernel and user.
    options.colors = Palette::Multi(MultiPalette::Java);
    options.palette_map = Some(&mut palette);
    options.deterministic = true;
    let text = folded(report);
    let mut out = Vec::new();
    if text.is_empty() {
        // inferno refuses an empty input; an empty graph still says what was traced.
        return Ok(empty_svg());
    }
    flamegraph::from_lines(&mut options, text.lines(), &mut out).context("drawing the flame graph")?;
    Ok(out)
}

fn empty_svg() -> Vec<u8> {
    b"<?xml version=\"1.0\" standalone=\"no\"?>\n<svg version=\"1.1\" width=\"600\" height=\"60\" \
      xmlns=\"http://www.w3.org/2000/svg\"><text x=\"10\" y=\"30\">No copy stacks were counted \
      (no data syscall moved bytes while traced)</text></svg>\n"
        .to_vec()
}

/// Writes `--folded` and `--flamegraph` if asked for.
pub fn write(report: &StacksReport, folded_path: Option<&Path>, svg_path: Option<&Path>) -> anyhow::Result<()> {
    let write =
        |path: &Path, bytes: &[u8]| std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()));
    if let Some(path) = folded_path {
        write(path, folded(report).as_bytes())?;
    }
    if let Some(path) = svg_path {
        write(path, &svg(report)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::stacks::CopyStack;

    fn report() -> StacksReport {
        let stack = |kind, user: &[&str], bytes| CopyStack {
            pid: 1,
            comm: "srv".into(),
            kind,
            flow: "read file -> memory".into(),
            bytes,
            calls: 1,
            user: user.iter().map(|s| s.to_string()).collect(),
            kernel: vec!["filemap_read_[k]".into()],
            cut: false,
        };
        StacksReport {
            stacks: vec![
                stack("to_user", &["_start", "main", "serve_read_write"], 4096),
                stack("zero_copy", &["_start", "main", "serve_sendfile"], 8192),
            ],
            evidence: "test",
            kernel_stacks: "test".into(),
            cut_stacks: 0,
            cut_bytes: 0,
            no_user_stack_bytes: 0,
            unresolved_frames: 0,
        }
    }

    #[test]
    fn folded_lines_start_with_the_kind_and_end_with_bytes() {
        let text = folded(&report());
        assert_eq!(
            text.lines().next(),
            Some("to_user;srv;_start;main;serve_read_write;[read file -> memory];filemap_read_[k] 4096")
        );
    }

    #[test]
    fn the_svg_names_the_functions_and_the_metric() {
        let svg = String::from_utf8(svg(&report()).unwrap()).unwrap();
        assert!(svg.contains("serve_read_write") && svg.contains("serve_sendfile"));
        assert!(svg.contains("bytes"));
    }
}
