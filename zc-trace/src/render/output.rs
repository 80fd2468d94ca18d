//! Where reports go. Output paths are checked before anything is traced: discovering that a
//! file cannot be written after a ten-minute trace would throw the measurement away.
use std::{fs::OpenOptions, io::Write as _, path::Path};

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

/// Writes `value` as pretty JSON to stdout or to the file.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    if is_stdout(path) {
        std::io::stdout().write_all(text.as_bytes())?;
        return Ok(());
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
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
    fn missing_directories_and_directories_are_refused() {
        let err = check_writable(Path::new("/nonexistent-dir-zc/x.json")).unwrap_err();
        assert!(err.message.contains("No such file or directory"), "{}", err.message);
        let err = check_writable(Path::new("/proc/zc-trace.json")).unwrap_err();
        assert!(err.message.contains("choose another path"), "{}", err.message);
        let err = check_writable(&std::env::temp_dir()).unwrap_err();
        assert!(err.message.contains("is a directory"));
    }
}
