//! Names for the frames of copy stacks, by blazesym.
//!
//! User frames arrive as (build id, file offset): the kernel resolved them while the process's
//! mappings existed, so a process that has exited by the end of a trace is still named. What
//! is left here is finding a file by its build id. The candidates are the files the traced
//! processes had mapped (read from /proc while they live: at start, every second, at the end),
//! the spawned command's executable and the shared libraries it names (DT_NEEDED, looked up
//! in the system's library directories), so that a command that exits within the first second
//! is named too. Kernel frames are named from /proc/kallsyms.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
};

use blazesym::{
    helper::read_elf_build_id,
    symbolize::{Input, Symbolized, Symbolizer as Blaze, source::Elf, source::Kernel, source::Source},
};

use crate::model::stacks::UserFrame;

/// Outermost functions of a complete user stack: where a process or thread starts running.
/// A stack that ends elsewhere was cut short (see `is_cut`).
const ENTRY_POINTS: &[&str] = &[
    "_start",
    "__libc_start_main",
    "__libc_start_call_main",
    "start_thread",
    "clone",
    "clone3",
    "__clone",
    "__clone3",
    "__clone_internal",
    "thread_start",
];

/// Prefixes of the kernel functions that run a BPF program from a tracepoint or a function
/// probe: frames of the measurement, not of the traced program.
const TRACING_FRAMES: &[&str] = &["bpf_prog_", "bpf_trace_run", "__bpf_trace_", "bpf_trampoline_", "__traceiter_"];

/// Whether a user stack (names, outermost first) was cut before a thread's entry point.
pub fn is_cut(user: &[String]) -> bool {
    match user.first() {
        Some(outer) => !ENTRY_POINTS.contains(&outer.as_str()),
        None => false,
    }
}

/// An executable mapping of a process: for frames the kernel left as addresses.
#[derive(Debug, Clone)]
struct Mapping {
    start: u64,
    end: u64,
    offset: u64,
    path: PathBuf,
}

/// Files by build id, the processes' mappings, and blazesym's caches.
pub struct Symbols {
    blaze: Blaze,
    by_build_id: HashMap<[u8; 20], PathBuf>,
    /// Paths already looked at (with or without a build id).
    seen: BTreeSet<PathBuf>,
    mappings: BTreeMap<u32, Vec<Mapping>>,
    /// Files mapped for the leaf fix-up, by build id (`None`: could not be mapped).
    mapped: HashMap<[u8; 20], Option<memmap2::Mmap>>,
    /// Frames whose file was not found.
    pub unresolved: u64,
}

impl Default for Symbols {
    fn default() -> Self {
        Self::new()
    }
}

impl Symbols {
    pub fn new() -> Self {
        Self {
            blaze: Blaze::new(),
            by_build_id: HashMap::new(),
            seen: BTreeSet::new(),
            mappings: BTreeMap::new(),
            mapped: HashMap::new(),
            unresolved: 0,
        }
    }

    /// Indexes the files process `pid` has mapped now (nothing if it has gone).
    pub fn index_process(&mut self, pid: u32) {
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else { return };
        let mut mappings = Vec::new();
        for line in maps.lines() {
            let Some(m) = parse_maps_line(line) else { continue };
            // The path as the process sees it, through its root (another mount namespace),
            // and as we see it; both are indexed by whatever build id they have.
            let through_root = PathBuf::from(format!("/proc/{pid}/root{}", m.path.display()));
            self.index_file(&m.path);
            self.index_file(&through_root);
            mappings.push(m);
        }
        if !mappings.is_empty() {
            self.mappings.insert(pid, mappings);
        }
    }

    /// Indexes a command's executable and the shared libraries it needs, transitively.
    pub fn index_command(&mut self, exe: &Path) {
        let mut queue = vec![exe.to_path_buf()];
        while let Some(path) = queue.pop() {
            if self.seen.contains(&path) {
                continue;
            }
            self.index_file(&path);
            for name in needed_libraries(&path) {
                if let Some(lib) = find_library(&name) {
                    queue.push(lib);
                }
            }
        }
    }

    fn index_file(&mut self, path: &Path) {
        if !self.seen.insert(path.to_path_buf()) {
            return;
        }
        if let Ok(Some(id)) = read_elf_build_id(&path)
            && let Ok(id) = <[u8; 20]>::try_from(&id[..])
        {
            self.by_build_id.entry(id).or_insert_with(|| path.to_path_buf());
        }
    }

    /// The frame a libc syscall wrapper without a frame of its own hid (see
    /// `zc_trace_common::stacks::StackKey::leaf_ret`): `frames` (innermost first) with the
    /// caller of the wrapper put back, when `leaf_ret` is a return address in the same
    /// executable segment as the frame above the wrapper (`frame_ret`, whose file offset the
    /// stack has) and an x86 call instruction ends right before it.
    pub fn with_leaf_caller(&mut self, frames: &[UserFrame], leaf_ret: u64, frame_ret: u64) -> Vec<UserFrame> {
        let mut out = frames.to_vec();
        if leaf_ret == 0 || frame_ret == 0 || leaf_ret == frame_ret || frames.len() < 2 {
            return out;
        }
        let UserFrame::BuildId { build_id, offset } = &frames[1] else { return out };
        let Some(leaf) = offset.checked_add_signed(leaf_ret.wrapping_sub(frame_ret) as i64) else { return out };
        if self.follows_call(build_id, *offset, leaf) {
            out.insert(1, UserFrame::BuildId { build_id: *build_id, offset: leaf });
        }
        out
    }

    /// Whether file offset `leaf` lies in the executable segment that holds `known` and right
    /// after a call instruction, in the file of build id `id`.
    fn follows_call(&mut self, id: &[u8; 20], known: u64, leaf: u64) -> bool {
        // x86 only: a `call` pushes the return address, so the word at the stack pointer of a
        // wrapper without a frame is its caller's. On arm64 `bl` leaves it in x30 (the link
        // register) instead, and the word at sp is whatever the caller stored there: no
        // fix-up, the stack goes without the wrapper's caller (as without this fix-up on x86).
        if !cfg!(target_arch = "x86_64") {
            return false;
        }
        let path = self.by_build_id.get(id).cloned();
        let map = self.mapped.entry(*id).or_insert_with(|| {
            let file = std::fs::File::open(path?).ok()?;
            // SAFETY: read-only mapping of a file that is only read here.
            unsafe { memmap2::Mmap::map(&file) }.ok()
        });
        let Some(bytes) = map.as_deref() else { return false };
        let Some((start, end)) = executable_segment(bytes, known) else { return false };
        if leaf < start + 6 || leaf > end {
            return false;
        }
        let at = |back: u64| bytes[(leaf - back) as usize];
        // call rel32; call *rel32(%rip); call *%reg; call *disp8(%reg).
        at(5) == 0xe8
            || (at(6) == 0xff && at(5) == 0x15)
            || (at(2) == 0xff && at(1) & 0xf8 == 0xd0)
            || (at(3) == 0xff && at(2) & 0xf8 == 0x50)
    }

    /// Names of a user stack's frames (innermost first, as stored), innermost first. A
    /// frame-pointer walk through code built without frame pointers goes on through whatever
    /// the register held: the stack ends at the first frame that is not code (an address in
    /// no mapping of the process, an offset past the end of its file).
    pub fn user(&mut self, pid: u32, frames: &[UserFrame]) -> Vec<String> {
        frames.iter().map_while(|f| self.user_frame(pid, f)).collect()
    }

    /// A frame's name, or `None` when it is not code.
    fn user_frame(&mut self, pid: u32, frame: &UserFrame) -> Option<String> {
        let (path, offset) = match frame {
            UserFrame::BuildId { build_id, offset } => match self.by_build_id.get(build_id) {
                Some(path) => (path.clone(), *offset),
                None => {
                    self.unresolved += 1;
                    return Some(format!("[build id {}]+{offset:#x}", hex(&build_id[..4])));
                }
            },
            UserFrame::Ip(ip) => {
                let maps = self.mappings.get(&pid)?;
                let m = maps.iter().find(|m| m.start <= *ip && *ip < m.end)?;
                (m.path.clone(), ip - m.start + m.offset)
            }
        };
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(u64::MAX);
        if offset >= size {
            return None;
        }
        // Every user frame is a return address (the instruction after a call, or after the
        // syscall instruction): one byte back lands inside the calling function even when
        // the call was its last instruction.
        let at = offset.saturating_sub(1);
        let src = Source::Elf(Elf::new(&path));
        let name = self.blaze.symbolize_single(&src, Input::FileOffset(at)).ok().and_then(|s| match s {
            Symbolized::Sym(sym) => Some(sym.name.into_owned()),
            Symbolized::Unknown(_) => None,
        });
        Some(name.unwrap_or_else(|| {
            let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            format!("{file}+{offset:#x}")
        }))
    }

    /// Names of a kernel stack's frames (innermost first), innermost first, each marked
    /// `_[k]` as perf and the flame-graph tools mark kernel frames. The innermost frames of
    /// the tracing itself (our program, the tracepoint's or trampoline's call into it) are
    /// left out: the stack starts at the function that copies.
    pub fn kernel(&self, addrs: &[u64]) -> Vec<String> {
        let mut names = self.kernel_names(addrs);
        let tracing = names.iter().take_while(|n| TRACING_FRAMES.iter().any(|p| n.starts_with(p))).count();
        names.drain(..tracing);
        names
    }

    fn kernel_names(&self, addrs: &[u64]) -> Vec<String> {
        // kallsyms only: looking for a vmlinux image would read files a server does not have.
        let src = Source::Kernel(Kernel { vmlinux: blazesym::MaybeDefault::None, ..Kernel::default() });
        let named = self.blaze.symbolize(&src, Input::AbsAddr(addrs)).unwrap_or_default();
        addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| match named.get(i) {
                Some(Symbolized::Sym(sym)) => format!("{}_[k]", sym.name),
                _ => format!("[kernel {addr:#x}]_[k]"),
            })
            .collect()
    }
}

/// The file range of the executable PT_LOAD segment of ELF `bytes` that holds file offset
/// `offset`.
fn executable_segment(bytes: &[u8], offset: u64) -> Option<(u64, u64)> {
    use object::read::elf::{ElfFile64, FileHeader as _, ProgramHeader as _};
    let elf = ElfFile64::<object::Endianness>::parse(bytes).ok()?;
    let endian = elf.endian();
    let headers = elf.elf_header().program_headers(endian, bytes).ok()?;
    headers.iter().find_map(|ph| {
        let (start, size) = (ph.p_offset(endian), ph.p_filesz(endian));
        let executable = ph.p_type(endian) == object::elf::PT_LOAD && ph.p_flags(endian) & object::elf::PF_X != 0;
        (executable && start <= offset && offset < start + size).then_some((start, start + size))
    })
}

/// A file-backed, executable line of /proc/PID/maps.
fn parse_maps_line(line: &str) -> Option<Mapping> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    let perms = fields.next()?;
    let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
    let _dev = fields.next()?;
    let _inode = fields.next()?;
    let path = fields.next()?;
    if !perms.contains('x') || !path.starts_with('/') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset,
        path: PathBuf::from(path),
    })
}

/// The DT_NEEDED names of an ELF file (none if it is not one or has no dynamic section).
fn needed_libraries(path: &Path) -> Vec<String> {
    use object::read::elf::{Dyn as _, ElfFile64, FileHeader as _};
    let Ok(data) = std::fs::read(path) else { return Vec::new() };
    let Ok(elf) = ElfFile64::<object::Endianness>::parse(&*data) else { return Vec::new() };
    let endian = elf.endian();
    let sections = match elf.elf_header().sections(endian, &*data) {
        Ok(s) => s,
        Err(_) => return Vec::new(),
    };
    let Ok(Some((entries, link))) = sections.dynamic(endian, &*data) else { return Vec::new() };
    let Ok(strings) = sections.strings(endian, &*data, link) else { return Vec::new() };
    entries
        .iter()
        .filter(|d| d.tag32(endian) == Some(object::elf::DT_NEEDED as i32))
        .filter_map(|d| d.string(endian, strings).ok())
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect()
}

/// Where the dynamic loader would find library `name` in the system's directories (not the
/// executable's RUNPATH: such libraries are found once the process has mapped them).
fn find_library(name: &str) -> Option<PathBuf> {
    let triple = format!("{}-linux-gnu", std::env::consts::ARCH);
    let dirs = [
        format!("/lib/{triple}"),
        format!("/usr/lib/{triple}"),
        "/lib64".into(),
        "/usr/lib64".into(),
        "/lib".into(),
        "/usr/lib".into(),
        "/usr/local/lib".into(),
    ];
    dirs.iter().map(|d| Path::new(d).join(name)).find(|p| p.exists())
}

/// The program a command line runs: its first word, looked up in PATH unless it is a path.
pub fn resolve_command(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_keep_executable_files_only() {
        let m =
            parse_maps_line("7f00de600000-7f00de788000 r-xp 00028000 fe:01 1234  /usr/lib/x86_64-linux-gnu/libc.so.6")
                .unwrap();
        assert_eq!((m.start, m.end, m.offset), (0x7f00_de60_0000, 0x7f00_de78_8000, 0x28000));
        assert_eq!(m.path, PathBuf::from("/usr/lib/x86_64-linux-gnu/libc.so.6"));
        assert!(parse_maps_line("7f00de600000-7f00de788000 r--p 00000000 fe:01 1234 /usr/lib/libc.so.6").is_none());
        assert!(parse_maps_line("7ffd1000-7ffd2000 r-xp 00000000 00:00 0 [vdso]").is_none());
    }

    #[test]
    fn a_stack_is_cut_unless_it_reaches_an_entry_point() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(!is_cut(&names(&["_start", "__libc_start_main", "main", "read"])));
        assert!(!is_cut(&names(&["clone3", "start_thread", "worker", "write"])));
        assert!(is_cut(&names(&["serve", "read"])));
        assert!(!is_cut(&[]));
    }

    #[test]
    fn this_test_binary_and_its_libraries_are_found_by_build_id() {
        let exe = std::env::current_exe().unwrap();
        let mut symbols = Symbols::new();
        symbols.index_process(std::process::id());
        // Whatever has a build id among our own mappings is indexed under it.
        for (id, path) in &symbols.by_build_id {
            assert_eq!(read_elf_build_id(path).unwrap().as_deref(), Some(&id[..]));
        }
        assert!(symbols.seen.contains(&exe) || symbols.seen.iter().any(|p| p.ends_with(exe.file_name().unwrap())));
    }
}
