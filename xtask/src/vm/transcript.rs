//! The checks' console (ttyS0) parsed into sections: each check's output sits between
//! `@@@ZC-BEGIN <name>@@@` and `@@@ZC-END <name> rc=<code>@@@`, its stderr after
//! `@@@ZC-STDERR <name>@@@`; `@@@ZC-INIT@@@` and `@@@ZC-DONE@@@` frame the whole run.
use std::{collections::HashMap, time::Instant};

/// One console line and when the host read it.
pub struct Line {
    pub at: Instant,
    pub text: String,
}

pub fn secs(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64()
}

pub const MARK: &str = "@@@ZC-";

pub enum Event {
    Init(Instant),
    Begin(String),
    End { name: String, rc: i32, secs: f64 },
    Console(String),
}

/// One section between BEGIN and END markers.
pub struct Section {
    pub stdout: String,
    pub stderr: String,
    in_stderr: bool,
    pub begun: Instant,
    pub end: Option<(i32, Instant)>,
}

/// The console parsed into sections. Markers are searched anywhere in a line, not only at its
/// start: output without a final newline, or a stray kernel message, can precede one.
#[derive(Default)]
pub struct Transcript {
    pub init: Option<Instant>,
    pub done: bool,
    pub sections: HashMap<String, Section>,
    pub current: Option<String>,
}

impl Transcript {
    pub fn feed(&mut self, line: &Line) -> Vec<Event> {
        let mut events = Vec::new();
        let mut rest = line.text.as_str();
        while let Some(start) = rest.find(MARK) {
            let Some(len) = rest[start + MARK.len()..].find("@@@") else { break };
            self.text(&rest[..start], false, &mut events);
            let marker = &rest[start + MARK.len()..start + MARK.len() + len];
            self.marker(marker, line.at, &mut events);
            rest = &rest[start + MARK.len() + len + 3..];
        }
        // What follows the last marker is a line of its own only if it is not empty, or if the
        // whole line had no marker (an empty output line).
        if !rest.is_empty() || rest.len() == line.text.len() {
            self.text(rest, true, &mut events);
        }
        events
    }

    fn text(&mut self, text: &str, newline: bool, events: &mut Vec<Event>) {
        let Some(section) = self.current.as_ref().and_then(|name| self.sections.get_mut(name)) else {
            if !text.is_empty() {
                events.push(Event::Console(text.to_string()));
            }
            return;
        };
        let out = if section.in_stderr { &mut section.stderr } else { &mut section.stdout };
        out.push_str(text);
        if newline {
            out.push('\n');
        }
    }

    fn marker(&mut self, marker: &str, at: Instant, events: &mut Vec<Event>) {
        let (kind, arg) = marker.split_once(' ').unwrap_or((marker, ""));
        match kind {
            "INIT" => {
                self.init = Some(at);
                events.push(Event::Init(at));
            }
            "BEGIN" => {
                let section =
                    Section { stdout: String::new(), stderr: String::new(), in_stderr: false, begun: at, end: None };
                self.sections.insert(arg.to_string(), section);
                self.current = Some(arg.to_string());
                events.push(Event::Begin(arg.to_string()));
            }
            "STDERR" => {
                if let Some(section) = self.sections.get_mut(arg) {
                    section.in_stderr = true;
                }
            }
            "END" => {
                let (name, rc) = arg.rsplit_once(" rc=").unwrap_or((arg, ""));
                if let Some(section) = self.sections.get_mut(name) {
                    // An unparsable rc cannot be success.
                    let rc = rc.parse().unwrap_or(-1);
                    section.end = Some((rc, at));
                    events.push(Event::End { name: name.to_string(), rc, secs: secs(section.begun, at) });
                }
                self.current = None;
            }
            "DONE" => self.done = true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_split_sections_even_mid_line() {
        let t0 = Instant::now();
        let mut transcript = Transcript::default();
        for text in [
            "noise",
            "@@@ZC-INIT 6.1@@@",
            "@@@ZC-BEGIN a@@@",
            "{\"x\":1}",
            "",
            "tail@@@ZC-STDERR a@@@",
            "oops",
            "@@@ZC-END a rc=3@@@",
        ] {
            transcript.feed(&Line { at: t0, text: text.to_string() });
        }
        let a = &transcript.sections["a"];
        assert_eq!(a.stdout, "{\"x\":1}\n\ntail");
        assert_eq!(a.stderr, "oops\n");
        assert_eq!(a.end.map(|e| e.0), Some(3));
        assert!(transcript.init.is_some());
    }
}
