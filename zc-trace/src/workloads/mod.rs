//! Built-in workloads: one real implementation per strategy of moving a file's bytes to a
//! sink. Each runs in a forked child of zc-trace, so its system calls are its own and nothing
//! else (no exec, no dynamic loader) shows up in its counts.
//!
//! Every workload returns the payload bytes it moved; the lab checks it against the file size.
//! `sinks` is where the bytes go, `harness` what the lab runs them with (a temp dir, page-cache
//! eviction, results shared with the forked workloads); `copy_cost` times copies and syscalls
//! for `zc-trace calibrate`. May use: model/ (and any layer below).
pub mod copy_cost;
mod copy_file_range;
pub mod direct_io;
pub mod harness;
mod io_uring;
mod mmap_write;
mod msg_zerocopy;
mod read_write;
mod sendfile;
pub mod sinks;
mod splice;
pub mod sys;
mod vmsplice;

use std::{fmt, io, os::fd::RawFd, path::Path, str::FromStr};

use crate::model::row::ZerocopyCompletions;
use sys::open;

/// How the bytes travel. The names are the CLI values.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Strategy {
    ReadWrite,
    MmapWrite,
    Sendfile,
    Splice,
    CopyFileRange,
    Vmsplice,
    MsgZerocopy,
    IoUring,
    DirectIo,
}

impl Strategy {
    pub const ALL: [Strategy; 9] = [
        Strategy::ReadWrite,
        Strategy::MmapWrite,
        Strategy::Sendfile,
        Strategy::Splice,
        Strategy::CopyFileRange,
        Strategy::Vmsplice,
        Strategy::MsgZerocopy,
        Strategy::IoUring,
        Strategy::DirectIo,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Strategy::ReadWrite => "read-write",
            Strategy::MmapWrite => "mmap-write",
            Strategy::Sendfile => "sendfile",
            Strategy::Splice => "splice",
            Strategy::CopyFileRange => "copy-file-range",
            Strategy::Vmsplice => "vmsplice",
            Strategy::MsgZerocopy => "msg-zerocopy",
            Strategy::IoUring => "io-uring",
            Strategy::DirectIo => "direct-io",
        }
    }

    /// The system calls that move this strategy's payload, for the lab's "data calls" column.
    pub const fn data_syscalls(self) -> &'static [&'static str] {
        match self {
            Strategy::ReadWrite => &["read", "write"],
            Strategy::MmapWrite => &["mmap", "write"],
            Strategy::Sendfile => &["sendfile"],
            Strategy::Splice => &["splice"],
            Strategy::CopyFileRange => &["copy_file_range"],
            Strategy::Vmsplice => &["vmsplice", "splice"],
            Strategy::MsgZerocopy => &["sendto"],
            Strategy::IoUring => &["io_uring_enter"],
            Strategy::DirectIo => &["read", "write"],
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Strategy::ALL.into_iter().find(|st| st.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Strategy::ALL.iter().map(|s| s.name()).collect();
            format!("unknown strategy `{s}`: choose from {}", names.join(", "))
        })
    }
}

/// What a workload run reports besides its syscalls (which the kernel counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    pub bytes: u64,
    pub zerocopy: Option<ZerocopyCompletions>,
}

/// Moves the whole of `src` to the already-open `dst` in `chunk`-byte steps, the way
/// `strategy` does, and returns the payload bytes moved.
pub fn run(strategy: Strategy, src: &Path, dst: RawFd, chunk: usize) -> io::Result<Outcome> {
    let src = if strategy == Strategy::DirectIo { direct_io::open_source(src)? } else { open(src, libc::O_RDONLY)? };
    let bytes = |r: io::Result<u64>| r.map(|bytes| Outcome { bytes, zerocopy: None });
    match strategy {
        Strategy::ReadWrite => bytes(read_write::run(src.0, dst, chunk)),
        Strategy::MmapWrite => bytes(mmap_write::run(src.0, dst, chunk)),
        Strategy::Sendfile => bytes(sendfile::run(src.0, dst, chunk)),
        Strategy::Splice => bytes(splice::run(src.0, dst, chunk)),
        Strategy::CopyFileRange => bytes(copy_file_range::run(src.0, dst, chunk)),
        Strategy::Vmsplice => bytes(vmsplice::run(src.0, dst, chunk)),
        Strategy::IoUring => bytes(io_uring::run(src.0, dst, chunk)),
        Strategy::DirectIo => bytes(direct_io::run(src.0, dst, chunk)),
        Strategy::MsgZerocopy => {
            msg_zerocopy::run(src.0, dst, chunk).map(|(bytes, zc)| Outcome { bytes, zerocopy: Some(zc) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for s in Strategy::ALL {
            assert_eq!(s.name().parse::<Strategy>().unwrap(), s);
        }
        let err = "zerocopy".parse::<Strategy>().unwrap_err();
        assert!(err.contains("read-write") && err.contains("splice"), "{err}");
    }

    /// Every workload really moves the bytes: run each unprivileged on a small file.
    #[test]
    fn every_workload_copies_the_file_exactly() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let src = dir.join("src");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        // msg-zerocopy needs a socket (tested through the lab); direct-io needs a file
        // system with O_DIRECT (the temp dir may be tmpfs).
        for strategy in Strategy::ALL.into_iter().filter(|s| !matches!(s, Strategy::MsgZerocopy | Strategy::DirectIo)) {
            let dst = dir.join(strategy.name());
            let out = open(&dst, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC).unwrap();
            let moved = run(strategy, &src, out.0, 65536).unwrap().bytes;
            drop(out);
            assert_eq!(moved, data.len() as u64, "{strategy}");
            assert_eq!(std::fs::read(&dst).unwrap(), data, "{strategy}");
        }
    }
}
