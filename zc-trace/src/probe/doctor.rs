//! What the running kernel allows, found out by loading and attaching do-nothing programs of
//! each kind: config files and version numbers lie (backports, lockdown, distro patches), a
//! real attach does not.
use std::{collections::BTreeMap, path::Path};

use aya::{
    Btf, Ebpf,
    programs::{BtfTracePoint, FEntry, FExit, KProbe, ProgramError, RawTracePoint, TracePoint},
};

use crate::{
    kernel::{
        btf::KernelBtf,
        facts::{BTF_VMLINUX, kernel_info},
    },
    model::doctor::{Check, CopySite, DoctorReport, FUNCTION_KINDS},
    probe::footprint,
};

/// Where bytes are copied, per docs/kernels.md: `_copy_*` are where the copy
/// itself happens (expected not traceable), the rest are their traceable callers.
pub const COPY_SITES: [&str; 21] = [
    "_copy_to_user",
    "_copy_from_user",
    "_copy_to_iter",
    "_copy_from_iter",
    "copy_page_to_iter",
    "filemap_read",
    "generic_file_buffered_read",
    "generic_perform_write",
    "filemap_splice_read",
    "generic_file_splice_read",
    "splice_direct_to_actor",
    "iter_file_splice_write",
    "pipe_read",
    "pipe_write",
    "tcp_sendmsg_locked",
    "do_tcp_sendpages",
    "skb_splice_from_iter",
    "skb_copy_bits",
    "skb_copy_datagram_iter",
    "__skb_datagram_iter",
    "do_sendfile",
];

/// Runs every check with the test programs in `ebpf` and the kernel's parsed BTF (for
/// fentry/fexit). Each program is detached and unloaded before the next one.
pub fn run(ebpf: &mut Ebpf, btf: Option<&Btf>) -> DoctorReport {
    let kernel = kernel_info();
    let btf_names = KernelBtf::load_for(COPY_SITES, &[]).ok();
    let mut attach_kinds = BTreeMap::new();

    attach_kinds.insert("tracepoint", check(try_tracepoint(ebpf)));
    attach_kinds.insert("raw_tracepoint", check(try_raw_tracepoint(ebpf)));
    attach_kinds.insert(
        "tp_btf",
        check(match btf {
            Some(btf) => try_tp_btf(ebpf, btf),
            None => Err(no_btf()),
        }),
    );
    // vfs_read exists on every kernel and is not notrace: a refusal here is the kind's fault.
    for kind in FUNCTION_KINDS {
        attach_kinds.insert(kind, check(try_function(ebpf, btf, kind, "vfs_read")));
    }

    let copy_sites = COPY_SITES
        .iter()
        .map(|&function| {
            let in_btf = btf_names.as_ref().is_some_and(|b| b.has_function(function));
            let attach = FUNCTION_KINDS
                .iter()
                .map(|&kind| {
                    let result = if !attach_kinds[kind].works {
                        Err(format!("{kind} unusable on this kernel: {}", attach_kinds[kind].detail))
                    } else {
                        try_function(ebpf, btf, kind, function)
                    };
                    (kind, check(result))
                })
                .collect();
            CopySite { function, in_btf, attach }
        })
        .collect();

    let map_memory = footprint::probe_maps(zc_trace_common::STATS_MAX_ENTRIES)
        .ok()
        .map(|defs| footprint::map_memory(&defs, footprint::possible_cpus()));
    DoctorReport { kernel, attach_kinds, copy_sites, typed_loads: None, map_memory, kernel_features: None }
}

/// A check's result: what was attached, or the kernel's error.
fn check(result: Result<String, String>) -> Check {
    match result {
        Ok(detail) => Check { works: true, detail },
        Err(detail) => Check { works: false, detail },
    }
}

fn no_btf() -> String {
    format!("no kernel BTF at {BTF_VMLINUX}")
}

fn try_tracepoint(ebpf: &mut Ebpf) -> Result<String, String> {
    let prog: &mut TracePoint = program(ebpf, "zc_can_tracepoint")?;
    prog.load().map_err(|e| explain(&e, "tracepoint"))?;
    let result = prog.attach("raw_syscalls", "sys_enter").map_err(|e| explain(&e, "tracepoint"));
    let _ = prog.unload();
    result.map(|_| "attached to raw_syscalls:sys_enter".into())
}

fn try_raw_tracepoint(ebpf: &mut Ebpf) -> Result<String, String> {
    let prog: &mut RawTracePoint = program(ebpf, "zc_can_raw_tracepoint")?;
    prog.load().map_err(|e| explain(&e, "raw_tracepoint"))?;
    let result = prog.attach("sys_enter").map_err(|e| explain(&e, "raw_tracepoint"));
    let _ = prog.unload();
    result.map(|_| "attached to sys_enter".into())
}

fn try_tp_btf(ebpf: &mut Ebpf, btf: &Btf) -> Result<String, String> {
    let prog: &mut BtfTracePoint = program(ebpf, "zc_can_tp_btf")?;
    prog.load("sys_enter", btf).map_err(|e| explain(&e, "tp_btf"))?;
    let result = prog.attach().map_err(|e| explain(&e, "tp_btf"));
    let _ = prog.unload();
    result.map(|_| "attached to sys_enter".into())
}

/// Loads (for fentry/fexit the target is fixed at load) and attaches one function probe.
pub fn try_function(ebpf: &mut Ebpf, btf: Option<&Btf>, kind: &str, function: &str) -> Result<String, String> {
    let ok = || Ok(format!("attached to {function}"));
    match kind {
        "fentry" | "fexit" => {
            let btf = btf.ok_or_else(no_btf)?;
            let result = if kind == "fentry" {
                let prog: &mut FEntry = program(ebpf, "zc_can_fentry")?;
                let r = prog.load(function, btf).and_then(|()| prog.attach().map(drop));
                let _ = prog.unload();
                r
            } else {
                let prog: &mut FExit = program(ebpf, "zc_can_fexit")?;
                let r = prog.load(function, btf).and_then(|()| prog.attach().map(drop));
                let _ = prog.unload();
                r
            };
            result.map_err(|e| explain(&e, kind)).and_then(|()| ok())
        }
        "kprobe" | "kretprobe" => {
            if !kprobes_built() {
                return Err("kprobes not built into this kernel (no kprobe PMU, no kprobe_events)".into());
            }
            let name = if kind == "kprobe" { "zc_can_kprobe" } else { "zc_can_kretprobe" };
            let prog: &mut KProbe = program(ebpf, name)?;
            prog.load().map_err(|e| explain(&e, kind))?;
            let result = prog.attach(function, 0).map_err(|e| explain(&e, kind));
            let _ = prog.unload();
            result.and_then(|_| ok())
        }
        other => Err(format!("unknown attach kind {other}")),
    }
}

/// Loads an fexit program for `function` and unloads it, attaching nothing. The kernel
/// resolves the target and verifies the program at load, and refuses fentry/fexit there when
/// it refuses them at all (EPERM under this host's lockdown): enough to know whether the kind
/// works, without patching `function`'s entry twice (attach and detach each rewrite live
/// kernel text, with an IPI to every CPU) for a test.
pub fn try_load_fexit(ebpf: &mut Ebpf, btf: Option<&Btf>, function: &str) -> Result<(), String> {
    let btf = btf.ok_or_else(no_btf)?;
    let prog: &mut FExit = program(ebpf, "zc_can_fexit")?;
    let result = prog.load(function, btf).map_err(|e| explain(&e, "fexit"));
    let _ = prog.unload();
    result
}

/// The kernel registers a `kprobe` perf PMU (since 4.17) or offers tracefs `kprobe_events`
/// only when built with CONFIG_KPROBES.
pub fn kprobes_built() -> bool {
    Path::new("/sys/bus/event_source/devices/kprobe").exists()
        || Path::new("/sys/kernel/tracing/kprobe_events").exists()
        || Path::new("/sys/kernel/debug/tracing/kprobe_events").exists()
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let prog = ebpf.program_mut(name).ok_or_else(|| format!("program {name} missing from the object"))?;
    prog.try_into().map_err(|e: ProgramError| e.to_string())
}

/// The kernel's answer in a few words: the errno for a refused load (the verifier log of a
/// do-nothing program says nothing more), the error chain otherwise.
pub fn explain(err: &ProgramError, kind: &str) -> String {
    let errno = match err {
        ProgramError::LoadError { io_error, .. } => Some(io_error),
        ProgramError::SyscallError(e) => Some(&e.io_error),
        _ => None,
    };
    if let Some(io) = errno {
        let hint = match io.raw_os_error() {
            Some(libc::EPERM) if matches!(kind, "fentry" | "fexit") => {
                " (kernel lockdown or a security policy refuses BPF trampolines)"
            }
            Some(libc::EINVAL) | Some(libc::ENOENT) if kind.starts_with("kprobe") || kind.starts_with("kret") => {
                " (function not probeable: notrace, inlined or blacklisted)"
            }
            Some(libc::ESRCH) | Some(libc::ENOENT) => " (no such function in BTF)",
            _ => "",
        };
        return format!("refused: {io}{hint}");
    }
    let mut parts = vec![err.to_string()];
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    format!("refused: {}", parts.join(": "))
}
