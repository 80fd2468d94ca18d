//! Where reports go. Output paths are checked before anything is traced: discovering that a
//! file cannot be written after a ten-minute trace would throw the measurement away.
use std::{
    fs::OpenOptions,
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use serde::Serialize;

use crate::model::exit::Fatal;

/// `-` is standard output; anything else a file path.
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Fails with a usage error when `path` could not be written. Leaves nothing behind.
pub fn check_writable(path: &Path) -> Result<(), Fatal> {
    if is_stdout(path) {
        return Ok(());
    }
    let shown = path.display();
    if path.is_dir() {
        return Err(Fatal::usage(format!("cannot write `{shown}`: it is a directory; give a file name")));
    }
    if path.exists() {
        return OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| Fatal::usage(format!("cannot write `{shown}`: {e}; choose another path")));
    }
    // Creating the file is the only test that every file system answers truthfully (access(2)
    // says yes to root on /proc, for one); it is removed at once.
    match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(file) => {
            drop(file);
            let _ = std::fs::remove_file(path);
            Ok(())
        }
        Err(e) => Err(Fatal::usage(format!("cannot write `{shown}`: {e}; choose another path"))),
    }
}

/// Where a report goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    Stdout,
    /// Beside a command zc-trace started, whose standard output is its own: as strace and
    /// `perf stat` do, the report goes to standard error so that the two never interleave.
    Stderr,
    /// A file, emptied by the first write (`written` is then set) and appended to after.
    File {
        path: PathBuf,
        written: std::cell::Cell<bool>,
    },
}

impl Sink {
    /// The destination of a report given `--json [FILE]` and `-o FILE` (`-` is stdout),
    /// when zc-trace started the traced command itself (`spawned`) or not. Checks that a
    /// file can be written.
    pub fn choose(json: Option<&Path>, output: Option<&Path>, spawned: bool) -> Result<Sink, Fatal> {
        let json_file = json.filter(|p| !is_stdout(p));
        let path = match (json_file, output) {
            (Some(a), Some(b)) if a != b => {
                return Err(Fatal::usage(format!(
                    "two report files given (--json {} and -o {}): give one",
                    a.display(),
                    b.display()
                )));
            }
            (Some(p), _) | (None, Some(p)) => Some(p),
            (None, None) => None,
        };
        match path {
            Some(p) if !is_stdout(p) => {
                check_writable(p)?;
                Ok(Sink::File { path: p.to_path_buf(), written: Default::default() })
            }
            _ if spawned && path.is_none() => Ok(Sink::Stderr),
            _ => Ok(Sink::Stdout),
        }
    }

    /// Writes `text` as it is.
    pub fn write_text(&self, text: &str) -> anyhow::Result<()> {
        match self {
            Sink::Stdout => std::io::stdout().write_all(text.as_bytes())?,
            Sink::Stderr => std::io::stderr().write_all(text.as_bytes())?,
            Sink::File { path, written } => {
                let first = !written.replace(true);
                let mut file = OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(first)
                    .append(!first)
                    .open(path)
                    .with_context(|| format!("writing {}", path.display()))?;
                file.write_all(text.as_bytes())?;
            }
        }
        Ok(())
    }

    /// Writes `value` as pretty JSON.
    pub fn write_json<T: Serialize>(&self, value: &T) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(value)?;
        text.push('\n');
        self.write_text(&text)
    }
}

/// Writes `value` as pretty JSON to stdout (`-`) or to the file, replacing it.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let sink = if is_stdout(path) {
        Sink::Stdout
    } else {
        Sink::File { path: path.to_path_buf(), written: Default::default() }
    };
    sink.write_json(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_and_new_files_in_existing_dirs_are_writable() {
        assert!(check_writable(Path::new("-")).is_ok());
        let dir = std::env::temp_dir();
        assert!(check_writable(&dir.join("zc-trace-output-test-does-not-exist.json")).is_ok());
        assert!(!dir.join("zc-trace-output-test-does-not-exist.json").exists(), "nothing created");
    }

    #[test]
    fn a_spawned_command_keeps_stdout_to_itself() {
        let file = std::env::temp_dir().join("zc-trace-sink-test.json");
        let f = Some(file.as_path());
        let dash = Some(Path::new("-"));
        let to_file = Sink::File { path: file.clone(), written: Default::default() };
        // (--json, -o, spawned) -> sink
        let rows = [
            (None, None, false, Sink::Stdout),
            (None, None, true, Sink::Stderr),
            (dash, None, false, Sink::Stdout),
            (dash, None, true, Sink::Stderr),
            (f, None, true, to_file.clone()),
            (dash, f, true, to_file.clone()),
            (None, f, false, to_file.clone()),
            (f, f, true, to_file.clone()),
            // `-o -` asks for stdout even beside a command.
            (None, dash, true, Sink::Stdout),
        ];
        for (json, output, spawned, expected) in rows {
            assert_eq!(Sink::choose(json, output, spawned).unwrap(), expected, "{json:?} {output:?} {spawned}");
        }
        let err = Sink::choose(f, Some(Path::new("/tmp/other.json")), false).unwrap_err();
        assert!(err.message.contains("give one"), "{}", err.message);
        assert!(!file.exists());
    }

    /// A report file left from an earlier run is replaced, not appended to; a second write
    /// of the same run (interval tables, then the summary) is appended.
    #[test]
    fn a_report_file_is_replaced_then_appended() {
        let path = std::env::temp_dir().join(format!("zc-trace-sink-replace-{}.txt", std::process::id()));
        std::fs::write(&path, "an older report\n").unwrap();
        let sink = Sink::choose(None, Some(&path), false).unwrap();
        sink.write_text("first\n").unwrap();
        sink.write_text("second\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first\nsecond\n");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn missing_directories_and_directories_are_refused() {
        let err = check_writable(Path::new("/nonexistent-dir-zc/x.json")).unwrap_err();
        assert!(err.message.contains("No such file or directory"), "{}", err.message);
        let err = check_writable(Path::new("/proc/zc-trace.json")).unwrap_err();
        assert!(err.message.contains("choose another path"), "{}", err.message);
        let err = check_writable(&std::env::temp_dir()).unwrap_err();
        assert!(err.message.contains("is a directory"));
    }
}
