//! Flows: what a process moved, by strategy and source kind -> destination kind, from the
//! kernel's `FLOWS` map (one entry per (process, syscall class, source kind, destination
//! kind, how the source was found), and per fd with `--by fd`).
//!
//! The strategy of a flow follows from the syscall and how its source was found in the
//! kernel: a write whose buffer a receive of the same process had filled is the second leg
//! of read + write (its source is that read's fd kind); a write from a buffer inside a
//! file mapping is mmap + write; and so on. The bytes are what the syscalls returned.
use std::{collections::BTreeMap, os::unix::fs::MetadataExt as _};

use zc_trace_common::{FdIdentity, FdKey, FdKind, FlowKey, OpClass, how};

use crate::{
    model::row::{FdInfo, FlowRow},
    probe::collect::Flows,
};

/// How flow figures are obtained, for the evidence column.
pub const EVIDENCE: &str = "raw_tracepoint:sys_exit bytes, fd kinds at sys_enter";
pub const EVIDENCE_AFTER_READ: &str = "raw_tracepoint:sys_exit: buffer filled by a receive of the process";
pub const EVIDENCE_MAPPING: &str = "raw_tracepoint:sys_enter: buffer inside a file mapping (mmap)";
pub const EVIDENCE_IO_URING: &str = "raw_tracepoint:io_uring:io_uring_complete (result, opcode and file)";
pub const EVIDENCE_IO_URING_AFTER_READ: &str =
    "raw_tracepoint:io_uring:io_uring_complete: buffer filled by a read of the process";

/// The strategy a flow belongs to, and the labels of its ends.
pub fn classify(key: &FlowKey) -> (&'static str, &'static str, String, String) {
    let class = OpClass::from_u32(u32::from(key.class));
    let (src, dst) = (FdKind::from_u8(key.src), FdKind::from_u8(key.dst));
    let direct = src == FdKind::FileDirect || dst == FdKind::FileDirect;
    let strategy = match class {
        OpClass::Read if direct => "direct-io",
        OpClass::Read => "read",
        OpClass::Recv => "receive",
        OpClass::Write | OpClass::Send => match key.how {
            how::MSG_ZEROCOPY => "msg-zerocopy",
            how::FROM_MAPPING => "mmap-write",
            _ if direct => "direct-io",
            how::AFTER_READ => "read-write",
            _ if class == OpClass::Send => "send",
            _ => "write",
        },
        OpClass::Sendfile => "sendfile",
        OpClass::Splice => "splice",
        OpClass::Tee => "tee",
        OpClass::Vmsplice => "vmsplice",
        OpClass::CopyFileRange => "copy-file-range",
        OpClass::IoUring => "io-uring",
        _ => "other",
    };
    let source = if key.how == how::FROM_MAPPING { "file (mapped)".to_string() } else { src.name().to_string() };
    (strategy, class.name(), source, dst.name().to_string())
}

/// The flow rows of one counter key (process or thread), most bytes first.
pub fn rows_for(key: u32, flows: &Flows, paths: &PathCache) -> Vec<FlowRow> {
    let mut rows: Vec<FlowRow> = flows
        .flows
        .iter()
        .filter(|(k, _)| k.key == key)
        .map(|(k, v)| {
            let (strategy, syscall, source, destination) = classify(k);
            let fd = |fd: i32, ino: u64| {
                (fd >= 0).then(|| FdInfo { fd, name: paths.name(flows, &FdKey { key, fd, ino }), inode: ino })
            };
            FlowRow {
                strategy,
                syscall,
                source,
                destination,
                calls: v.calls,
                bytes: v.bytes,
                fd_in: fd(k.fd_in, k.ino_in),
                fd_out: fd(k.fd_out, k.ino_out),
                evidence: match k.how {
                    how::AFTER_READ if k.class == OpClass::IoUring as u8 => EVIDENCE_IO_URING_AFTER_READ,
                    how::AFTER_READ => EVIDENCE_AFTER_READ,
                    how::FROM_MAPPING => EVIDENCE_MAPPING,
                    _ if k.class == OpClass::IoUring as u8 => EVIDENCE_IO_URING,
                    _ => EVIDENCE,
                },
            }
        })
        .collect();
    rows.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(b.calls.cmp(&a.calls)));
    rows
}

/// Full paths of files whose path the kernel walk cut short (deeper than `PATH_DEPTH`), read
/// from `/proc/PID/fd/N` while the process has them open (checked against the inode the
/// kernel saw, so a reused fd number is not mistaken for the file it held before).
#[derive(Debug, Default, Clone)]
pub struct PathCache {
    paths: BTreeMap<FdKey, String>,
}

impl PathCache {
    /// Looks up, for every fd in `flows` not resolved yet, its path under /proc.
    pub fn refresh(&mut self, flows: &Flows) {
        for (key, id) in &flows.names {
            if self.paths.contains_key(key) || FdKind::from_u8(id.kind).is_socket() || id.truncated == 0 {
                continue;
            }
            // With counters by thread the key is a thread id: /proc/TID/fd works for threads.
            let link = format!("/proc/{}/fd/{}", key.key, key.fd);
            let same_file = std::fs::metadata(&link).is_ok_and(|m| m.ino() == key.ino);
            if same_file && let Ok(path) = std::fs::read_link(&link) {
                self.paths.insert(*key, path.to_string_lossy().into_owned());
            }
        }
    }

    fn name(&self, flows: &Flows, key: &FdKey) -> String {
        if let Some(p) = self.paths.get(key) {
            return p.clone();
        }
        match flows.names.get(key) {
            Some(id) => identity_name(id),
            None => "?".into(),
        }
    }
}

/// A person's name for what the kernel recorded about an fd.
pub fn identity_name(id: &FdIdentity) -> String {
    const AF_INET: u16 = 2;
    const AF_INET6: u16 = 10;
    let addr = |a: &[u8; 16], port: u16| match id.family {
        AF_INET => format!("{}:{port}", std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3])),
        AF_INET6 => format!("[{}]:{port}", std::net::Ipv6Addr::from(*a)),
        _ => String::new(),
    };
    if matches!(id.family, AF_INET | AF_INET6) {
        return format!("{} -> {}", addr(&id.local_addr, id.local_port), addr(&id.peer_addr, id.peer_port));
    }
    let components: Vec<String> = id.path[..usize::from(id.depth).min(id.path.len())]
        .iter()
        .rev()
        .map(|c| {
            let len = c.iter().position(|&b| b == 0).unwrap_or(c.len());
            String::from_utf8_lossy(&c[..len]).into_owned()
        })
        .collect();
    match FdKind::from_u8(id.kind) {
        // pipefs and sockfs names are made up on demand (pipe:[inode]); the dentry has none.
        FdKind::Pipe => "pipe".into(),
        FdKind::Unix => "unix socket".into(),
        _ if components.is_empty() => "?".into(),
        // The walk stopped PATH_DEPTH components below the root.
        _ if id.truncated != 0 => format!(".../{}", components.join("/")),
        _ => format!("/{}", components.join("/")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(class: OpClass, src: FdKind, dst: FdKind, how: u8) -> FlowKey {
        FlowKey {
            key: 1,
            class: class as u8,
            src: src as u8,
            dst: dst as u8,
            how,
            fd_in: -1,
            fd_out: -1,
            ..Default::default()
        }
    }

    #[test]
    fn strategies_follow_the_syscall_and_how_the_source_was_found() {
        let m = FdKind::UserMemory;
        let cases = [
            (key(OpClass::Write, FdKind::File, FdKind::Tcp, how::AFTER_READ), ("read-write", "file", "tcp")),
            (key(OpClass::Write, m, FdKind::Tcp, how::PLAIN), ("write", "memory", "tcp")),
            (key(OpClass::Write, FdKind::File, FdKind::Tcp, how::FROM_MAPPING), ("mmap-write", "file (mapped)", "tcp")),
            (key(OpClass::Send, m, FdKind::Tcp, how::MSG_ZEROCOPY), ("msg-zerocopy", "memory", "tcp")),
            (
                key(OpClass::Write, FdKind::FileDirect, FdKind::File, how::AFTER_READ),
                ("direct-io", "file (O_DIRECT)", "file"),
            ),
            (key(OpClass::Read, FdKind::File, m, how::PLAIN), ("read", "file", "memory")),
            (key(OpClass::Read, FdKind::FileDirect, m, how::PLAIN), ("direct-io", "file (O_DIRECT)", "memory")),
            (key(OpClass::Sendfile, FdKind::File, FdKind::Tcp, how::PLAIN), ("sendfile", "file", "tcp")),
            (key(OpClass::Splice, FdKind::Pipe, FdKind::Tcp, how::PLAIN), ("splice", "pipe", "tcp")),
            (key(OpClass::Vmsplice, m, FdKind::Pipe, how::PLAIN), ("vmsplice", "memory", "pipe")),
            (key(OpClass::CopyFileRange, FdKind::File, FdKind::File, how::PLAIN), ("copy-file-range", "file", "file")),
            (key(OpClass::Recv, FdKind::Tcp, m, how::PLAIN), ("receive", "tcp", "memory")),
        ];
        for (k, (strategy, src, dst)) in cases {
            let (s, _, a, b) = classify(&k);
            assert_eq!((s, a.as_str(), b.as_str()), (strategy, src, dst), "{k:?}");
        }
    }

    #[test]
    fn socket_and_file_names() {
        let mut id = FdIdentity {
            kind: FdKind::Tcp as u8,
            _pad: 0,
            family: 2,
            local_port: 40000,
            peer_port: 8080,
            local_addr: [0; 16],
            peer_addr: [0; 16],
            depth: 0,
            truncated: 0,
            _pad2: [0; 6],
            path: [[0; zc_trace_common::PATH_COMPONENT_LEN]; zc_trace_common::PATH_DEPTH],
        };
        id.local_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        id.peer_addr[..4].copy_from_slice(&[127, 0, 0, 2]);
        assert_eq!(identity_name(&id), "127.0.0.1:40000 -> 127.0.0.2:8080");
        let mut f = FdIdentity { kind: FdKind::File as u8, family: 0, depth: 2, ..id };
        f.path[0][..7].copy_from_slice(b"src.bin");
        f.path[1][..3].copy_from_slice(b"tmp");
        assert_eq!(identity_name(&f), "/tmp/src.bin");
        f.truncated = 1;
        assert_eq!(identity_name(&f), ".../tmp/src.bin");
    }

    #[test]
    fn rows_are_per_key_and_largest_first() {
        let mut flows = Flows::default();
        let small = key(OpClass::Read, FdKind::File, FdKind::UserMemory, how::PLAIN);
        let big = key(OpClass::Write, FdKind::File, FdKind::DevNull, how::AFTER_READ);
        let other = FlowKey { key: 2, ..big };
        flows.flows.insert(small, zc_trace_common::FlowValue { calls: 1, bytes: 10 });
        flows.flows.insert(big, zc_trace_common::FlowValue { calls: 2, bytes: 20 });
        flows.flows.insert(other, zc_trace_common::FlowValue { calls: 3, bytes: 30 });
        let rows = rows_for(1, &flows, &PathCache::default());
        assert_eq!(rows.iter().map(|r| r.bytes).collect::<Vec<_>>(), [20, 10]);
        assert_eq!(rows[0].strategy, "read-write");
        assert_eq!(rows[0].evidence, EVIDENCE_AFTER_READ);
        assert_eq!(rows[1].evidence, EVIDENCE);
    }

    #[test]
    fn io_uring_flows_say_they_come_from_completions() {
        let mut flows = Flows::default();
        flows.flows.insert(
            key(OpClass::IoUring, FdKind::File, FdKind::UserMemory, how::PLAIN),
            zc_trace_common::FlowValue { calls: 1, bytes: 1 },
        );
        let rows = rows_for(1, &flows, &PathCache::default());
        assert_eq!((rows[0].strategy, rows[0].evidence), ("io-uring", EVIDENCE_IO_URING));
    }
}
