//! Copy stacks (`trace --stacks`): a C file server, built here with Debian's gcc, serves a
//! file with read + write from one function and with sendfile from another; the folded
//! stacks, the flame graph and the JSON must put the file's bytes under those functions, by
//! what the bytes were (to_user, from_user, zero_copy).
mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

const SIZE: u64 = 4 << 20;

/// Bytes of the folded lines of `kind` whose frames include `function`.
fn folded_bytes(folded: &str, kind: &str, function: &str) -> u64 {
    folded
        .lines()
        .filter(|l| l.starts_with(&format!("{kind};")) && l.contains(&format!(";{function};")))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum()
}

/// Runs the file server under `trace --stacks` and returns the
/// report, the folded stacks and the flame graph.
fn trace_server(dir: &TempDir, server: &Path) -> (Value, String, String) {
    let file = dir.file("served", SIZE as usize);
    let (folded, svg) = (dir.0.join("stacks.folded"), dir.0.join("stacks.svg"));
    let (port, down) = downstream();
    let port = port.to_string();
    let mut args = vec![
        "trace",
        "--stacks",
        "--folded",
        folded.to_str().unwrap(),
        "--flamegraph",
        svg.to_str().unwrap(),
        "--json",
        "-o",
        "-",
    ];
    args.extend_from_slice(&["--", server.to_str().unwrap(), file.to_str().unwrap(), &port, "65536"]);
    let out = run(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(down.join().unwrap(), 2 * SIZE, "the peer got the file twice");
    (json(&out), std::fs::read_to_string(folded).unwrap(), std::fs::read_to_string(svg).unwrap())
}

#[test]
fn copy_stacks_put_the_bytes_under_the_functions_that_moved_them() {
    if !privileged("copy_stacks_put_the_bytes_under_the_functions_that_moved_them") {
        return;
    }
    let dir = TempDir::new("stacks");
    let server = build_c(&dir, "file_server", &["-O2", "-fno-omit-frame-pointer"]);
    let (report, folded, svg) = trace_server(&dir, &server);
    // read() copied the file to user memory, write() from it; sendfile moved it by reference
    // (loopback can gather). Exact: every byte of the file passed each way once.
    assert_eq!(folded_bytes(&folded, "to_user", "serve_read_write"), SIZE, "{folded}");
    assert_eq!(folded_bytes(&folded, "from_user", "serve_read_write"), SIZE, "{folded}");
    assert_eq!(folded_bytes(&folded, "zero_copy", "serve_sendfile"), SIZE, "{folded}");
    assert_eq!(folded_bytes(&folded, "to_user", "serve_sendfile"), 0, "{folded}");
    // The flame graph names both functions and what it weighs.
    assert!(svg.contains("serve_read_write") && svg.contains("serve_sendfile"), "flame graph lacks the functions");
    assert!(svg.contains("bytes"), "flame graph does not name its metric");
    // The JSON has the same stacks, with their flows, and says how they were taken.
    let stacks = &report["stacks"];
    let sendfile = stacks["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["user"].as_array().unwrap().iter().any(|f| f == "serve_sendfile"))
        .unwrap_or_else(|| panic!("no serve_sendfile stack in {stacks}"));
    assert_eq!(
        (sendfile["kind"].as_str(), sendfile["flow"].as_str()),
        (Some("zero_copy"), Some("sendfile file -> tcp"))
    );
    assert_eq!(sendfile["bytes"], SIZE);
    assert_eq!(sendfile["cut"], false, "frame pointers give whole stacks: {sendfile}");
    assert!(stacks["evidence"].as_str().unwrap().contains("bpf_get_stackid"), "{stacks}");
    assert_eq!(report["drops"]["total"], 0, "{}", report["drops"]);
}

#[test]
fn stacks_of_a_program_without_frame_pointers_are_reported_as_cut() {
    if !privileged("stacks_of_a_program_without_frame_pointers_are_reported_as_cut") {
        return;
    }
    let dir = TempDir::new("stacks-nofp");
    let server = build_c(&dir, "file_server", &["-O2", "-fomit-frame-pointer"]);
    let (report, _, _) = trace_server(&dir, &server);
    let stacks = &report["stacks"];
    // The copy loops' stacks (3 x the file) end at the libc wrapper or nearby, not at _start.
    assert!(stacks["cut_bytes"].as_u64().unwrap() >= 3 * SIZE, "{stacks}");
    assert!(stacks["cut_stacks"].as_u64().unwrap() >= 1, "{stacks}");
}
