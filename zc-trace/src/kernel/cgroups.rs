//! Control groups as the rows name them: the cgroup v2 id the kernel programs record for each
//! process (`bpf_get_current_cgroup_id`) resolved to its path under the v2 hierarchy, and what
//! the path says about containers: the runtimes' naming (docker, containerd and cri-o, podman,
//! systemd-nspawn machines) and Kubernetes pods (the kubepods slices of the systemd and the
//! cgroupfs drivers), read by [`parse`], which is pure and tested here.
use std::{
    collections::BTreeMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use crate::model::row::CgroupInfo;

/// Where the cgroup v2 hierarchy is mounted: `/sys/fs/cgroup` on a pure v2 host,
/// `/sys/fs/cgroup/unified` on a hybrid one (v1 controllers beside it), from
/// /proc/self/mountinfo; `None` when there is none (a v1-only host).
pub fn v2_root() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    v2_root_in(&mountinfo)
}

fn v2_root_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
        let (before, after) = line.split_once(" - ")?;
        let fstype = after.split_whitespace().next()?;
        let root = before.split_whitespace().nth(3)?;
        let mountpoint = before.split_whitespace().nth(4)?;
        (fstype == "cgroup2" && root == "/").then(|| PathBuf::from(mountpoint))
    })
}

/// cgroup v2 ids -> paths (relative to the hierarchy's root, `/` for the root itself): the
/// id of a cgroup is its directory's inode number in cgroupfs.
#[derive(Debug, Default, Clone)]
pub struct CgroupPaths {
    /// `None`: no cgroup v2 hierarchy on this host.
    root: Option<PathBuf>,
    by_id: BTreeMap<u64, String>,
}

impl CgroupPaths {
    /// Walks the v2 hierarchy now (cgroups that are gone by then have no path).
    pub fn read() -> Self {
        let Some(root) = v2_root() else { return Self::default() };
        let mut by_id = BTreeMap::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            if let Ok(meta) = std::fs::metadata(&dir) {
                let relative = dir.strip_prefix(&root).map(|p| format!("/{}", p.display())).unwrap_or_default();
                by_id
                    .insert(meta.ino(), if relative == "/" { relative } else { relative.trim_end_matches('/').into() });
            }
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            stack.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
        }
        Self { root: Some(root), by_id }
    }

    /// What a row shows for cgroup `id` (0: not recorded).
    pub fn info(&self, id: u64) -> CgroupInfo {
        let path = self.by_id.get(&id).cloned();
        let parsed = path.as_deref().map(parse).unwrap_or_default();
        CgroupInfo {
            id,
            path,
            container_id: parsed.container_id,
            runtime: parsed.runtime,
            pod_uid: parsed.pod_uid,
            qos: parsed.qos,
            unavailable: match (&self.root, id) {
                (None, _) => Some("no cgroup v2 hierarchy on this host"),
                (Some(_), 0) => Some("cgroup not recorded"),
                _ => None,
            },
        }
    }

    /// The path of cgroup `id`, if it still exists.
    pub fn path(&self, id: u64) -> Option<&str> {
        self.by_id.get(&id).map(String::as_str)
    }

    /// The id of the cgroup at `path` (absolute, or relative to the v2 root).
    pub fn id_of(path: &Path) -> Option<u64> {
        let root = v2_root()?;
        let full = if path.starts_with(&root) {
            path.to_path_buf()
        } else {
            root.join(path.strip_prefix("/").unwrap_or(path))
        };
        std::fs::metadata(full).ok().map(|m| m.ino())
    }
}

/// What a cgroup path says about containers and pods.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub container_id: Option<String>,
    /// `docker`, `containerd`, `cri-o`, `podman`, `systemd-nspawn`.
    pub runtime: Option<&'static str>,
    pub pod_uid: Option<String>,
    /// `guaranteed`, `burstable`, `besteffort`.
    pub qos: Option<&'static str>,
}

/// Reads a cgroup path, innermost component first for the container, any for the pod.
pub fn parse(path: &str) -> Parsed {
    let mut out = Parsed::default();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        if let Some(uid) = pod_uid(part) {
            out.pod_uid = Some(uid);
            out.qos = Some(qos(&parts[..i], part));
        }
    }
    for (i, part) in parts.iter().enumerate().rev() {
        if let Some((runtime, id)) = container(part, parts.get(i.wrapping_sub(1)).copied(), out.pod_uid.is_some()) {
            out.container_id = Some(id);
            out.runtime = Some(runtime);
            break;
        }
    }
    out
}

/// `pod<uid>` (cgroupfs driver) or `kubepods[-<qos>]-pod<uid with _ for ->.slice` (systemd).
fn pod_uid(part: &str) -> Option<String> {
    let rest = part.strip_suffix(".slice").unwrap_or(part);
    let (head, uid) = rest.rsplit_once("pod")?;
    let systemd = head.starts_with("kubepods") && head.ends_with('-');
    if !(head.is_empty() || systemd) {
        return None;
    }
    let uid = uid.replace('_', "-");
    is_uid(&uid).then_some(uid)
}

/// The QoS class of the pod cgroup `part`, below `above`: burstable and besteffort pods sit in
/// a slice of that name; guaranteed ones directly under kubepods.
fn qos(above: &[&str], part: &str) -> &'static str {
    let named = |s: &str| {
        if s.contains("besteffort") {
            Some("besteffort")
        } else if s.contains("burstable") {
            Some("burstable")
        } else {
            None
        }
    };
    named(part).or_else(|| above.iter().rev().find_map(|s| named(s))).unwrap_or("guaranteed")
}

/// A container's cgroup: the runtime and the container id (64 hex digits, or a machine's name).
fn container(part: &str, parent: Option<&str>, in_pod: bool) -> Option<(&'static str, String)> {
    let scope = part.strip_suffix(".scope");
    if let Some(scope) = scope {
        for (prefix, runtime) in
            [("docker-", "docker"), ("cri-containerd-", "containerd"), ("crio-", "cri-o"), ("libpod-", "podman")]
        {
            if let Some(id) = scope.strip_prefix(prefix) {
                return is_container_id(id).then(|| (runtime, id.to_string()));
            }
        }
        // systemd-nspawn: machine.slice/machine-NAME.scope (NAME escaped by systemd).
        if let Some(name) = scope.strip_prefix("machine-")
            && parent == Some("machine.slice")
        {
            return Some(("systemd-nspawn", name.replace("\\x2d", "-")));
        }
        return None;
    }
    // cgroupfs drivers: /docker/<id>, /kubepods/.../pod<uid>/<id>, /machine.slice/... .
    if !is_container_id(part) {
        return None;
    }
    match parent {
        Some("docker") => Some(("docker", part.to_string())),
        // The cgroupfs driver does not name the runtime: any CRI one.
        Some(p) if in_pod && p.starts_with("pod") => Some(("cri", part.to_string())),
        _ => None,
    }
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_uid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1c0d2b9e8a7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";
    const UID: &str = "3b7c9f2e-1a4d-4e8f-9b2c-7d6e5f4a3b2c";

    fn parsed(container: Option<(&'static str, &str)>, pod: Option<&str>, qos: Option<&'static str>) -> Parsed {
        Parsed {
            container_id: container.map(|c| c.1.to_string()),
            runtime: container.map(|c| c.0),
            pod_uid: pod.map(String::from),
            qos,
        }
    }

    #[test]
    fn runtimes_under_systemd() {
        assert_eq!(parse(&format!("/system.slice/docker-{ID}.scope")), parsed(Some(("docker", ID)), None, None));
        assert_eq!(
            parse(&format!("/machine.slice/libpod-{ID}.scope/container")),
            parsed(Some(("podman", ID)), None, None)
        );
        assert_eq!(
            parse("/machine.slice/machine-web\\x2d1.scope"),
            parsed(Some(("systemd-nspawn", "web-1")), None, None)
        );
        assert_eq!(parse("/system.slice/nginx.service"), Parsed::default());
        assert_eq!(parse("/system.slice/docker-short.scope"), Parsed::default());
    }

    #[test]
    fn kubernetes_pods_with_both_drivers() {
        let systemd = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
            UID.replace('-', "_")
        );
        assert_eq!(parse(&systemd), parsed(Some(("containerd", ID)), Some(UID), Some("burstable")));
        let crio = format!("/kubepods.slice/kubepods-pod{}.slice/crio-{ID}.scope", UID.replace('-', "_"));
        assert_eq!(parse(&crio), parsed(Some(("cri-o", ID)), Some(UID), Some("guaranteed")));
        let cgroupfs = format!("/kubepods/besteffort/pod{UID}/{ID}");
        assert_eq!(parse(&cgroupfs), parsed(Some(("cri", ID)), Some(UID), Some("besteffort")));
        assert_eq!(parse(&format!("/docker/{ID}")), parsed(Some(("docker", ID)), None, None));
    }

    #[test]
    fn the_v2_mount_is_found_on_pure_and_hybrid_hosts() {
        let pure = "35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(v2_root_in(pure), Some(PathBuf::from("/sys/fs/cgroup")));
        let hybrid = "30 24 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755\n\
                      31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw\n\
                      32 30 0:28 / /sys/fs/cgroup/memory rw shared:11 - cgroup cgroup rw,memory\n";
        assert_eq!(v2_root_in(hybrid), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let v1 = "32 30 0:28 / /sys/fs/cgroup/memory rw shared:11 - cgroup cgroup rw,memory\n";
        assert_eq!(v2_root_in(v1), None);
    }
}
