//! `zc-trace trace` on real programs nobody here wrote, and its live-tracing options.
mod common;

use common::*;
use serde_json::Value;

const SIZE: u64 = 4 << 20;

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn trace(args: &[&str]) -> Value {
    // `-o -`: the report on stdout even beside a command it starts.
    let mut all = vec!["trace", "--json", "-o", "-"];
    all.extend_from_slice(args);
    let out = run(&all);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    json(&out)
}

fn row_of<'a>(report: &'a Value, comm: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["comm"] == comm)
        .unwrap_or_else(|| panic!("no {comm} row in {}", report["rows"]))
}

/// The row's flow of `strategy` from `source` to `destination`: (bytes, calls), and the flow.
fn flow<'a>(row: &'a Value, strategy: &str, source: &str, destination: &str) -> (u64, u64, &'a Value) {
    let f = find_flow(row, strategy, source, destination);
    (n(&f["bytes"]), n(&f["calls"]), f)
}

fn part(row: &Value, dir: &str, end: &str) -> (u64, u64) {
    let p = &row["cpu_copy"][dir]["by_end"][end];
    (p["bytes"].as_u64().unwrap_or(0), p["calls"].as_u64().unwrap_or(0))
}

/// coreutils 9.x `cat` and `cp` copy file to file with copy_file_range(2): a kernel copy
/// through the page cache (ext4), no user copy.
#[test]
fn coreutils_cat_and_cp_use_copy_file_range() {
    if !privileged("coreutils_cat_and_cp_use_copy_file_range") {
        return;
    }
    let dir = TempDir::new("coreutils");
    let src = dir.file("src", SIZE as usize);
    let dst = dir.0.join("dst");
    let (s, d) = (src.to_str().unwrap(), dst.to_str().unwrap());
    // `exec` keeps the PID: the traced process becomes cat.
    let report = trace(&["--", "sh", "-c", "exec cat \"$0\" > \"$1\"", s, d]);
    let cat = row_of(&report, "cat");
    assert_eq!(cat["strategy"], "copy-file-range");
    assert!(n(&cat["syscall_counts"]["copy_file_range"]) >= 1);
    assert_eq!(part(cat, "kernel", "page_cache").0 + n(&cat["zero_copy"]["bytes"]), SIZE);
    assert_eq!(part(cat, "from_user", "page_cache"), (0, 0));
    let (bytes, ..) = flow(cat, "copy-file-range", "file", "file");
    assert_eq!(bytes, SIZE);

    let report = trace(&["--", "cp", s, d]);
    let cp = row_of(&report, "cp");
    assert_eq!(cp["strategy"], "copy-file-range");
    assert_eq!(part(cp, "kernel", "page_cache").0 + n(&cp["zero_copy"]["bytes"]), SIZE);
    assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dst).unwrap());
}

/// dd reads and writes in bs-sized calls; with iflag=direct its reads are O_DIRECT (DMA into
/// its buffer) and the page cache is not copied from.
#[test]
fn dd_with_and_without_o_direct() {
    if !privileged("dd_with_and_without_o_direct") {
        return;
    }
    let dir = TempDir::new("dd");
    let src = dir.file("src", SIZE as usize);
    let (iff, of) = (format!("if={}", src.display()), format!("of={}", dir.0.join("dst").display()));
    let chunks = SIZE / 65536;

    let report = trace(&["--", "dd", &iff, &of, "bs=64k", "status=none"]);
    let dd = row_of(&report, "dd");
    assert_eq!(dd["strategy"], "read-write");
    assert_eq!(part(dd, "from_user", "page_cache"), (SIZE, chunks), "64 writes of 64 KiB into the page cache");
    // The dynamic loader also reads each library's ELF header (under 1 KiB each).
    let (bytes, calls) = part(dd, "to_user", "page_cache");
    assert!((SIZE..SIZE + 16384).contains(&bytes), "{bytes}");
    assert!((chunks..chunks + 10).contains(&calls), "{calls}");
    assert_eq!(n(&dd["dma"]["direct_io_read_bytes"]), 0);
    // Each write sends the buffer the read before it filled: read + write, file -> file.
    let (bytes, calls, _) = flow(dd, "read-write", "file", "file");
    assert_eq!((bytes, calls), (SIZE, chunks));

    let report = trace(&["--", "dd", &iff, &of, "bs=64k", "iflag=direct", "status=none"]);
    let dd = row_of(&report, "dd");
    assert_eq!(dd["strategy"], "direct-io");
    assert_eq!(n(&dd["dma"]["direct_io_read_bytes"]), SIZE);
    assert!(n(&dd["dma"]["disk_read_bytes"]) >= SIZE, "O_DIRECT always goes to the device");
    assert!(part(dd, "to_user", "page_cache").0 < 16384, "only the loader's reads");
    assert_eq!(part(dd, "from_user", "page_cache"), (SIZE, chunks));
    let (bytes, calls, _) = flow(dd, "direct-io", "file (O_DIRECT)", "file");
    assert_eq!((bytes, calls), (SIZE, chunks));
    let (bytes, calls, _) = flow(dd, "direct-io", "file (O_DIRECT)", "memory");
    assert_eq!((bytes, calls), (SIZE, chunks));

    // --by fd: the same flow names the files at both ends.
    let report = trace(&["--by", "fd", "--", "dd", &iff, &of, "bs=64k", "status=none"]);
    let dd = row_of(&report, "dd");
    let (bytes, calls, f) = flow(dd, "read-write", "file", "file");
    assert_eq!((bytes, calls), (SIZE, chunks));
    assert_eq!(f["fd_in"]["name"], src.to_str().unwrap(), "{f}");
    assert_eq!(f["fd_out"]["name"], dir.0.join("dst").to_str().unwrap(), "{f}");
}

/// Python's socket.sendfile over loopback: os.sendfile, pages by reference into TCP; the
/// reader thread of the same process copies them to user memory.
#[test]
fn python_socket_sendfile_is_zero_copy_on_the_sending_side() {
    if !privileged("python_socket_sendfile_is_zero_copy_on_the_sending_side") {
        return;
    }
    let dir = TempDir::new("py");
    let src = dir.file("src", SIZE as usize);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/sendfile_loopback.py");
    let report = trace(&["--", "python3", script, src.to_str().unwrap()]);
    let py = &report["rows"][0];
    assert_eq!(py["strategy"], "sendfile");
    assert!(n(&py["syscall_counts"]["sendfile"]) >= 1);
    assert_eq!(n(&py["zero_copy"]["by_kind"]["splice_pages"]["bytes"]), SIZE);
    assert_eq!(part(py, "to_user", "socket").0, SIZE, "the reader thread's recv copies");
    assert_eq!(part(py, "from_user", "socket"), (0, 0), "nothing copied from user memory into the socket");
    let (bytes, ..) = flow(py, "sendfile", "file", "tcp");
    assert_eq!(bytes, SIZE);
    let (bytes, ..) = flow(py, "receive", "tcp", "memory");
    assert_eq!(bytes, SIZE);

    // --by fd: the socket's addresses, both ends on loopback.
    let report = trace(&["--by", "fd", "--", "python3", script, src.to_str().unwrap()]);
    let (bytes, _, f) = flow(&report["rows"][0], "sendfile", "file", "tcp");
    assert_eq!(bytes, SIZE);
    assert_eq!(f["fd_in"]["name"], src.to_str().unwrap(), "{f}");
    let socket = f["fd_out"]["name"].as_str().unwrap();
    assert!(socket.starts_with("127.0.0.1:") && socket.contains(" -> 127.0.0.1:"), "{socket}");

    // Per thread: the sending and the receiving thread are separate rows.
    let report = trace(&["--by", "thread", "--", "python3", script, src.to_str().unwrap()]);
    let rows = report["rows"].as_array().unwrap();
    assert!(rows.len() >= 2 && rows.iter().all(|r| r["role"] == "thread"));
    let receiver = rows.iter().find(|r| part(r, "to_user", "socket").0 == SIZE).expect("a receiving thread");
    assert_eq!(n(&receiver["zero_copy"]["bytes"]), 0, "the receiving thread sent nothing");
}

/// -f adds the children forked after attach; rows keep their names after they exit.
/// Debian's pv splices its input file into its stdout pipe (pv 1.6: splice(2) unless -C):
/// every byte moves by page reference, nothing is payload of pv's own (the pipe's reader,
/// cat here, reads it to user memory and writes it on). pv is a splicer, not a receiver.
#[test]
fn pv_splices_a_file_into_its_pipe() {
    if !privileged("pv_splices_a_file_into_its_pipe") {
        return;
    }
    ensure_debian_package("/usr/bin/pv", "pv");
    let dir = TempDir::new("pv");
    let src = dir.file("src", SIZE as usize);
    let report = trace(&["-f", "--", "sh", "-c", "pv -q \"$0\" | cat > /dev/null", src.to_str().unwrap()]);
    let pv = row_of(&report, "pv");
    assert_eq!(pv["strategy"], "splice", "{pv}");
    assert_eq!(n(&pv["zero_copy"]["by_kind"]["page_refs"]["bytes"]), SIZE, "{pv}");
    assert_eq!(n(&pv["zero_copy"]["bytes"]), 0, "moves into a pipe are not deliveries: {pv}");
    let (bytes, ..) = flow(pv, "splice", "file", "pipe");
    assert_eq!(bytes, SIZE);
    let cat = row_of(&report, "cat");
    assert_eq!(flow(cat, "read", "pipe", "memory").0, SIZE);
}

#[test]
fn follow_adds_children() {
    if !privileged("follow_adds_children") {
        return;
    }
    let dir = TempDir::new("follow");
    let src = dir.file("src", SIZE as usize);
    let cmd = format!("cat {} > {}; true", src.display(), dir.0.join("dst").display());
    let report = trace(&["-f", "--", "sh", "-c", &cmd]);
    let cat = row_of(&report, "cat");
    assert_eq!(cat["strategy"], "copy-file-range");
    row_of(&report, "sh");
    let without = trace(&["--", "sh", "-c", &cmd]);
    assert_eq!(without["rows"].as_array().unwrap().len(), 1, "without -f only sh");
}

/// Several PIDs at once, each exact.
#[test]
fn several_pids_each_exact() {
    if !privileged("several_pids_each_exact") {
        return;
    }
    let dir = TempDir::new("multi");
    let file = dir.file("src", 1 << 20);
    let mut workloads: Vec<_> =
        (0..2).map(|_| spawn_waiting(exact_io(), &[file.to_str().unwrap(), "4096", "--wait"], &[])).collect();
    let pids = workloads.iter().map(|w| w.id().to_string()).collect::<Vec<_>>().join(",");
    let (tracer, _) = start_attached(&["trace", "--json", "-p", &pids, "-d", "60s"]);
    for w in workloads.iter_mut() {
        go(w);
    }
    for w in workloads.iter_mut() {
        assert!(w.wait().unwrap().success());
    }
    let out = tracer.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert_eq!(n(&r["syscall_counts"]["read"]), 257);
        assert_eq!(part(r, "to_user", "page_cache"), (1 << 20, 256));
    }
}

#[test]
fn intervals_print_tables_then_the_summary() {
    if !privileged("intervals_print_tables_then_the_summary") {
        return;
    }
    // Beside a command it starts, the tables go to stderr.
    let out = run(&["trace", "-i", "200ms", "--", "sh", "-c", "sleep 0.7"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.matches("--- interval ending at").count() >= 3, "{text}");
    assert!(text.contains("where the figures come from"));
    let out = run(&["trace", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "the command's exit status");
}
