//! Rows by cgroup and container, without a container runtime: cgroups made by hand under the
//! v2 hierarchy, named as docker and the kubelet (systemd driver, containerd) name theirs,
//! with a copier moved into each.
mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const SIZE: u64 = 16 << 20;
const DOCKER_ID: &str = "4f1c0d2b9e8a7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";
const POD_UID: &str = "3b7c9f2e-1a4d-4e8f-9b2c-7d6e5f4a3b2c";
const CRI_ID: &str = "9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b4f1c0d2b9e8a7c6b5a4f3e2d1c0b";

/// The cgroup v2 hierarchy's mount point (pure v2 or hybrid host).
fn v2_root() -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo
        .lines()
        .find_map(|l| {
            let (before, after) = l.split_once(" - ")?;
            (after.starts_with("cgroup2 ")).then(|| PathBuf::from(before.split_whitespace().nth(4).unwrap()))
        })
        .expect("this test needs a cgroup v2 hierarchy")
}

/// Cgroups made for one test, removed (innermost first) when dropped.
struct Cgroups(Vec<PathBuf>);

impl Cgroups {
    fn make(&mut self, path: &Path) -> PathBuf {
        let mut made = PathBuf::new();
        for part in path.components() {
            made.push(part);
            if !made.exists() {
                std::fs::create_dir(&made).unwrap();
                self.0.push(made.clone());
            }
        }
        made
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for dir in self.0.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The row named `label` in a `--by cgroup|container` report.
fn row<'a>(report: &'a Value, label: &str) -> &'a Value {
    report["rows"].as_array().unwrap().iter().find(|r| r["comm"] == label).unwrap_or_else(|| {
        panic!(
            "no row {label}: {:?}",
            report["rows"].as_array().unwrap().iter().map(|r| &r["comm"]).collect::<Vec<_>>()
        )
    })
}

/// A docker-shaped scope and a kubepods pod slice with a containerd scope in it, under a
/// cgroup of the test's own named `top`: (the cgroups, the docker scope, the pod's scope).
fn docker_and_pod(top: &str, qos: &str) -> (Cgroups, PathBuf, PathBuf) {
    let root = v2_root().join(top);
    let mut made = Cgroups(Vec::new());
    let docker = made.make(&root.join(format!("docker-{DOCKER_ID}.scope")));
    let pod = format!("kubepods-{qos}-pod{}.slice", POD_UID.replace('-', "_"));
    let cri = made.make(&root.join(pod).join(format!("cri-containerd-{CRI_ID}.scope")));
    (made, docker, cri)
}

/// Copies `file` to /dev/null with dd, in `cgroup` (moved there before exec) if given.
fn copy_in(cgroup: Option<&Path>, file: &Path) {
    let into = cgroup.map(|c| format!("echo $$ > {}/cgroup.procs && ", c.display())).unwrap_or_default();
    let script = format!("{into}exec dd if={} of=/dev/null bs=64k 2>/dev/null", file.display());
    assert!(std::process::Command::new("sh").args(["-c", &script]).status().unwrap().success());
}

fn within_1pct(got: u64, want: u64) -> bool {
    got.abs_diff(want) * 100 <= want
}

#[test]
fn rows_by_cgroup_and_container_name_the_docker_scope_and_the_pod() {
    if !privileged("rows_by_cgroup_and_container_name_the_docker_scope_and_the_pod") {
        return;
    }
    let top = format!("zc-test-{}.slice", std::process::id());
    let (_made, docker, cri) = docker_and_pod(&top, "burstable");
    let dir = TempDir::new("cgroups");
    let file = dir.file("copied", SIZE as usize);
    // Two copiers, each moved into its cgroup before it execs dd (the kernel records a
    // process's cgroup at exec); the shell that starts them stays where it is.
    let copier = |cgroup: &Path| {
        format!(
            "sh -c 'echo $$ > {}/cgroup.procs && exec dd if={} of=/dev/null bs=64k 2>/dev/null' &",
            cgroup.display(),
            file.display()
        )
    };
    let script = format!("{} {} wait", copier(&docker), copier(&cri));
    for by in ["cgroup", "container"] {
        let out = run(&["trace", "-f", "--by", by, "--json", "-o", "-", "--", "sh", "-c", &script]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report = json(&out);
        let (a, b) = match by {
            "cgroup" => (
                row(&report, &format!("/{top}/docker-{DOCKER_ID}.scope")),
                row(
                    &report,
                    &format!(
                        "/{top}/kubepods-burstable-pod{}.slice/cri-containerd-{CRI_ID}.scope",
                        POD_UID.replace('-', "_")
                    ),
                ),
            ),
            _ => (
                row(&report, &format!("docker {}", &DOCKER_ID[..12])),
                row(&report, &format!("containerd {}", &CRI_ID[..12])),
            ),
        };
        for r in [a, b] {
            assert_eq!(r["role"], by, "{r}");
            let moved = r["payload_bytes"].as_u64().unwrap();
            assert!(within_1pct(moved, SIZE), "{by} row moved {moved}, the copier {SIZE}");
            assert!(within_1pct(r["cpu_copy"]["to_user"]["bytes"].as_u64().unwrap(), SIZE), "{}", r["cpu_copy"]);
        }
        assert_eq!(
            (a["cgroup"]["runtime"].as_str(), a["cgroup"]["container_id"].as_str()),
            (Some("docker"), Some(DOCKER_ID))
        );
        assert!(a["cgroup"]["pod_uid"].is_null(), "{}", a["cgroup"]);
        let c = &b["cgroup"];
        assert_eq!((c["runtime"].as_str(), c["container_id"].as_str()), (Some("containerd"), Some(CRI_ID)), "{c}");
        assert_eq!((c["pod_uid"].as_str(), c["qos"].as_str()), (Some(POD_UID), Some("burstable")), "{c}");
        // The starting shell is in neither: a row of its own, with (almost) nothing moved.
        let rows = report["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 3, "{:?}", rows.iter().map(|r| &r["comm"]).collect::<Vec<_>>());
    }
}

/// Run inside a PID namespace of its own whose /proc shows only that namespace (`unshare -p
/// -f --mount-proc`), zc-trace cannot tell by /proc's NSpid: it must still refuse, never
/// trace a PID that means another process to the kernel.
#[test]
fn zc_trace_in_a_nested_pid_namespace_refuses_instead_of_guessing() {
    if !privileged("zc_trace_in_a_nested_pid_namespace_refuses_instead_of_guessing") {
        return;
    }
    let zc = zc_trace();
    for args in [
        &["trace", "--", "true"][..],
        &["syscalls", "--", "true"],
        &["lab", "--size", "1MiB", "--strategies", "sendfile"],
    ] {
        let out = std::process::Command::new("unshare")
            .args(["-p", "-f", "--mount-proc"])
            .arg(&zc)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("nested PID namespace") && stderr.contains("nsenter -t 1 -p"), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}

/// `--cgroup PATH`: processes in that subtree are traced, those that start there after
/// zc-trace attached included; a process outside gets no row.
#[test]
fn cgroup_filter_traces_the_subtree_only() {
    if !privileged("cgroup_filter_traces_the_subtree_only") {
        return;
    }
    let root = v2_root();
    let top = format!("zc-filter-{}", std::process::id());
    let mut made = Cgroups(Vec::new());
    let inner = made.make(&root.join(&top).join("inner"));
    let dir = TempDir::new("cgroup-filter");
    let (inside, outside) = (dir.file("inside", SIZE as usize), dir.file("outside", 2 * SIZE as usize));
    let (tracer, _) = start_attached(&["trace", "--cgroup", &format!("/{top}"), "-d", "4s", "--json", "-o", "-"]);
    copy_in(Some(&inner), &inside);
    copy_in(None, &outside);
    let out = tracer.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "only the copier inside: {rows:?}");
    let r = &rows[0];
    assert_eq!(r["comm"], "dd");
    assert!(within_1pct(r["payload_bytes"].as_u64().unwrap(), SIZE), "{}", r["payload_bytes"]);
    assert_eq!(r["cgroup"]["path"].as_str(), Some(format!("/{top}/inner").as_str()));
}

/// `serve --cgroup PATH --container-labels`: one series set per container (two copiers in
/// one container are one series), the pod's UID as a label; `--series-by cgroup` names the
/// series by cgroup path instead of command name.
#[test]
fn serve_labels_series_by_container_and_pod_not_by_pid() {
    if !privileged("serve_labels_series_by_container_and_pod_not_by_pid") {
        return;
    }
    let top = format!("zc-serve-{}.slice", std::process::id());
    let (_made, docker, cri) = docker_and_pod(&top, "besteffort");
    let dir = TempDir::new("cgroup-serve");
    let file = dir.file("copied", SIZE as usize);
    for (series_by, name) in
        [("comm", "comm=\"dd\"".to_string()), ("cgroup", format!("cgroup=\"/{top}/docker-{DOCKER_ID}.scope\""))]
    {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let listen = format!("127.0.0.1:{port}");
        let cgroup = format!("/{top}");
        let _serve =
            start_serving(&["--cgroup", &cgroup, "--container-labels", "--series-by", series_by, "--listen", &listen]);
        copy_in(Some(&docker), &file);
        copy_in(Some(&docker), &file);
        copy_in(Some(&cri), &file);
        let metrics = http_get(port, "/metrics").expect("a scrape");
        let payload: Vec<&str> = metrics.lines().filter(|l| l.starts_with("zc_payload_bytes_total{")).collect();
        // Two series: the docker container (two processes) and the pod's container.
        assert_eq!(payload.len(), 2, "{payload:?}");
        let docker_series = payload
            .iter()
            .find(|l| l.contains(&format!("container=\"{DOCKER_ID}\"")))
            .unwrap_or_else(|| panic!("no docker series: {payload:?}"));
        assert!(docker_series.contains(&name), "{docker_series}");
        assert!(!docker_series.contains("pod_uid"), "{docker_series}");
        let bytes: u64 = docker_series.rsplit_once(' ').unwrap().1.parse().unwrap();
        assert!(within_1pct(bytes, 2 * SIZE), "two copiers in one series: {bytes}");
        let pod_series = payload.iter().find(|l| l.contains(&format!("container=\"{CRI_ID}\""))).unwrap();
        assert!(pod_series.contains(&format!("pod_uid=\"{POD_UID}\"")), "{pod_series}");
        assert!(!metrics.contains("pid="), "never a PID label");
    }
}

/// The capabilities the contrib DaemonSet grants (contrib/kubernetes/zc-trace-daemonset.yaml)
/// are enough: `serve` run as an unprivileged user holding only those (setpriv, util-linux)
/// attaches and serves series.
#[test]
fn serve_runs_with_the_daemonsets_capabilities_only() {
    if !privileged("serve_runs_with_the_daemonsets_capabilities_only") {
        return;
    }
    let yaml = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../contrib/kubernetes/zc-trace-daemonset.yaml"),
    )
    .unwrap();
    let add = yaml.lines().find_map(|l| l.trim().strip_prefix("add: [")).expect("the capabilities it adds");
    let caps: Vec<String> =
        add.trim_end_matches(']').split(',').map(|c| c.trim().trim_matches('"').to_lowercase()).collect();
    assert_eq!(caps, ["bpf", "perfmon"], "{add}");
    let set = format!("-all,{}", caps.iter().map(|c| format!("+{c}")).collect::<Vec<_>>().join(","));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut serve = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .args([format!("--inh-caps={set}"), format!("--ambient-caps={set}"), format!("--bounding-set={set}")])
        .arg(zc_trace())
        .args(["serve", "-a", "--listen", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(serve.stderr.take().unwrap());
    let mut lines = String::new();
    while !lines.contains("serving") {
        use std::io::BufRead as _;
        assert!(stderr.read_line(&mut lines).unwrap() > 0, "serve ended before serving: {lines}");
    }
    let _serve = KillOnDrop(serve);
    let dir = TempDir::new("cgroup-caps");
    let file = dir.file("copied", SIZE as usize);
    copy_in(None, &file);
    let metrics = http_get(port, "/metrics").expect("a scrape");
    assert!(metrics.lines().any(|l| l.starts_with("zc_payload_bytes_total{comm=\"dd\"")), "{metrics}");
    assert!(metrics.contains("zc_probe_attached{probe=\"raw_syscalls:sys_enter\",attach=\"raw_tracepoint\"} 1"));
}

/// A process in a PID namespace of its own is traced by the PID it has there (`--pidns`):
/// translated to the host PID before anything is attached, both shown in its row.
#[test]
fn a_process_in_its_own_pid_namespace_is_traced_by_its_inner_pid() {
    if !privileged("a_process_in_its_own_pid_namespace_is_traced_by_its_inner_pid") {
        return;
    }
    let dir = TempDir::new("pidns");
    let file = dir.file("copied", SIZE as usize);
    let script = format!("echo ready; read go; exec dd if={} of=/dev/null bs=64k 2>/dev/null", file.display());
    let mut unshare = spawn_waiting("unshare", &["-p", "-f", "--mount-proc", "sh", "-c", &script], &[]);
    let children = std::fs::read_to_string(format!("/proc/{}/task/{}/children", unshare.id(), unshare.id())).unwrap();
    let host: u32 = children.trim().parse().expect("unshare's one child");
    let ns = format!("/proc/{host}/ns/pid");
    let (tracer, _) = start_attached(&["trace", "-p", "1", "--pidns", &ns, "--json", "-o", "-"]);
    go(&mut unshare);
    assert!(unshare.wait().unwrap().success());
    let out = tracer.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    let row = &report["rows"][0];
    assert_eq!((row["pid"].as_u64(), row["pid_in_namespace"].as_u64()), (Some(u64::from(host)), Some(1)), "{row}");
    assert_eq!(row["comm"], "dd");
    assert!(within_1pct(row["payload_bytes"].as_u64().unwrap(), SIZE), "{}", row["payload_bytes"]);
    // A PID the namespace does not have is refused (the namespace above is gone with its
    // processes: ours serves).
    let out = run(&["trace", "-p", "4000000", "--pidns", "/proc/self/ns/pid"]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
}
