//! Exit codes and the one-line errors that go with them. Documented in the README; tests
//! assert them, so change both together.
use std::fmt;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// Something failed that is not the user's doing (a bug, an unexpected kernel error).
    Failure = 1,
    /// Bad command line: malformed or out-of-range values, unwritable output path.
    Usage = 2,
    /// Missing CAP_BPF/CAP_PERFMON (or root).
    Privileges = 3,
    /// The PID does not exist, is a kernel thread, or the command cannot be started.
    NoTarget = 4,
    /// The kernel cannot run a probe that the command needs.
    Kernel = 5,
}

impl ExitKind {
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// An error meant for the user: one line that says what to do, and the exit code it maps to.
#[derive(Debug)]
pub struct Fatal {
    pub kind: ExitKind,
    pub message: String,
}

impl Fatal {
    pub fn new(kind: ExitKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ExitKind::Usage, message)
    }
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fatal {}

/// Maps any error to the exit code it deserves: a [`Fatal`] anywhere in the chain decides,
/// everything else is a plain failure.
pub fn exit_kind_of(err: &anyhow::Error) -> ExitKind {
    err.chain().find_map(|e| e.downcast_ref::<Fatal>()).map_or(ExitKind::Failure, |f| f.kind)
}

/// Renders an error as the single line printed to stderr: a [`Fatal`] speaks for itself,
/// other errors show their context chain joined with ": ".
pub fn one_line(err: &anyhow::Error) -> String {
    if let Some(f) = err.chain().find_map(|e| e.downcast_ref::<Fatal>()) {
        return f.message.clone();
    }
    let parts: Vec<String> = err.chain().map(|e| e.to_string().replace('\n', " ")).collect();
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn fatal_decides_the_exit_code_even_under_context() {
        let err = Err::<(), _>(Fatal::new(ExitKind::NoTarget, "no process 42")).context("tracing").unwrap_err();
        assert_eq!(exit_kind_of(&err), ExitKind::NoTarget);
        assert_eq!(one_line(&err), "no process 42");
    }

    #[test]
    fn other_errors_are_failures_on_one_line() {
        let err = anyhow::anyhow!("line one\nline two").context("loading");
        assert_eq!(exit_kind_of(&err), ExitKind::Failure);
        assert_eq!(one_line(&err), "loading: line one line two");
    }
}
