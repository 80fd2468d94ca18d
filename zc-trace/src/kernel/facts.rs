//! Facts about the running kernel that every report carries, and the pseudo-filesystems that
//! reading them needs.
use std::{ffi::CString, fs, os::unix::fs::MetadataExt as _, path::Path};

use crate::model::{exit::Fatal, report::KernelInfo};

pub const BTF_VMLINUX: &str = "/sys/kernel/btf/vmlinux";
const TRACEFS: &str = "/sys/kernel/tracing";
const SECURITYFS: &str = "/sys/kernel/security";

/// The running kernel's release, lockdown mode and BTF, as every report carries them.
pub fn kernel_info() -> KernelInfo {
    KernelInfo {
        release: release(),
        lockdown: fs::read_to_string(Path::new(SECURITYFS).join("lockdown")).ok().and_then(|s| parse_lockdown(&s)),
        btf: Path::new(BTF_VMLINUX).exists(),
    }
}

/// The bytes of the running kernel's BTF ([`BTF_VMLINUX`]).
pub enum VmlinuxBtf {
    /// Since Linux 6.16 sysfs maps the kernel's own copy read-only: nothing is copied, and the
    /// pages do not count in our RSS (the kernel maps them as raw page frames).
    Mapped(memmap2::Mmap),
    /// Older kernels refuse the mapping (ENODEV): read into memory.
    Read(Vec<u8>),
}

impl VmlinuxBtf {
    pub fn open() -> std::io::Result<Self> {
        let file = fs::File::open(BTF_VMLINUX)?;
        // SAFETY: the mapping is private and read-only, of data the kernel never changes.
        match unsafe { memmap2::MmapOptions::new().map_copy_read_only(&file) } {
            Ok(map) => Ok(Self::Mapped(map)),
            Err(_) => fs::read(BTF_VMLINUX).map(Self::Read),
        }
    }
}

impl std::ops::Deref for VmlinuxBtf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Mapped(map) => map,
            Self::Read(bytes) => bytes,
        }
    }
}

pub fn release() -> String {
    // SAFETY: utsname is plain data; uname fills it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut uts) } != 0 {
        return "unknown".into();
    }
    // As a C string: `c_char` is i8 on x86-64 but u8 on arm64.
    // SAFETY: uname NUL-terminates the field, which was zeroed before anyway.
    unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) }.to_string_lossy().into_owned()
}

/// The CPU's model as /proc/cpuinfo names it (`model name`, x86 and some others), for cost
/// figures measured on it; "unknown" where the kernel names none (most arm64 kernels).
pub fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| parse_cpu_model(&s)).unwrap_or_else(|| "unknown".into())
}

/// The first `model name : ...` line's value.
pub fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name" && !value.trim().is_empty()).then(|| value.trim().to_string())
    })
}

/// `/sys/kernel/security/lockdown` reads like `none [integrity] confidentiality`: the
/// bracketed word is the active mode.
pub fn parse_lockdown(s: &str) -> Option<String> {
    let start = s.find('[')? + 1;
    let end = start + s[start..].find(']')?;
    Some(s[start..end].to_string())
}

/// The inode number of the initial PID namespace (`PROC_PID_INIT_INO`, fixed since Linux 3.8).
const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;

/// The kernel programs see PIDs of the initial PID namespace (what `ps` shows on the host).
/// From inside a container those differ from the PIDs the user sees, so refuse to guess.
///
/// Two signs, either enough: the namespace of this process is not the initial one (its
/// `/proc/self/ns/pid` inode is the kernel's `PROC_PID_INIT_INO` only there, whatever /proc
/// shows), or `NSpid` lists more than one PID. The first holds where the second cannot see:
/// under `unshare -p -f --mount-proc`, the new /proc shows one level only.
pub fn require_host_pid_namespace() -> Result<(), Fatal> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let nested = status.lines().find(|l| l.starts_with("NSpid:")).is_some_and(|l| l.split_whitespace().count() > 2)
        || fs::metadata("/proc/self/ns/pid").is_ok_and(|m| m.ino() != PROC_PID_INIT_INO);
    if nested {
        return Err(Fatal::usage(
            "zc-trace runs in a nested PID namespace: run it in the host's (e.g. `nsenter -t 1 -p -- zc-trace ...`) \
             and give host PIDs",
        ));
    }
    Ok(())
}

/// Makes tracefs and securityfs readable when the machine has not mounted them (minimal
/// containers and VMs often do not). The mounts go into a private mount namespace of this
/// process, so nothing is left mounted on the system and no other process sees them.
///
/// Must run before any thread is started (the namespace is per thread until then) and after
/// a traced command has been forked, so the command keeps the system's namespace.
pub fn prepare_pseudo_filesystems() {
    let need_tracefs = !Path::new(TRACEFS).join("events").exists();
    let need_securityfs = !Path::new(SECURITYFS).join("lockdown").exists()
        && fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.contains("securityfs"));
    if !need_tracefs && !need_securityfs {
        return;
    }
    // SAFETY: plain syscalls with valid, NUL-terminated arguments.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return;
        }
        // Stop our mounts from propagating back to the system's namespace.
        let root = CString::new("/").unwrap();
        libc::mount(std::ptr::null(), root.as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_SLAVE, std::ptr::null());
    }
    if need_tracefs {
        mount("tracefs", TRACEFS);
    }
    if need_securityfs {
        mount("securityfs", SECURITYFS);
    }
}

fn mount(fstype: &str, target: &str) {
    let (src, fstype, target) =
        (CString::new("none").unwrap(), CString::new(fstype).unwrap(), CString::new(target).unwrap());
    // SAFETY: valid C strings; a failure only means the later read reports "unavailable".
    unsafe {
        libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockdown_mode_is_the_bracketed_word() {
        assert_eq!(parse_lockdown("none [integrity] confidentiality\n").as_deref(), Some("integrity"));
        assert_eq!(parse_lockdown("[none] integrity confidentiality").as_deref(), Some("none"));
        assert_eq!(parse_lockdown("garbage"), None);
    }

    #[test]
    fn cpu_model_is_the_first_model_name() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n\
                    processor\t: 1\nmodel name\t: other\n";
        assert_eq!(parse_cpu_model(text).as_deref(), Some("Intel(R) Xeon(R) CPU @ 2.20GHz"));
        assert_eq!(parse_cpu_model("processor\t: 0\nBogoMIPS\t: 50.00\n"), None);
    }
}
