//! Kernel struct member offsets from the running kernel's BTF. The kernel programs read
//! `task->files->fdt->fd[n]->f_inode->i_mode` and friends at these offsets, so they are right
//! on every kernel that ships BTF, whatever its configuration or version; nothing here comes
//! from one kernel's headers.
use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
};

use anyhow::{Context as _, anyhow, bail};
use btf_rs::{Btf, BtfType as _, Type};
use zc_trace_common::{DmaLayout, IoUringOffsets, KernelOffsets, TypedLoads};

use crate::kernel::facts::{BTF_VMLINUX, VmlinuxBtf};

/// A parsed kernel BTF with member-offset lookups.
pub struct KernelBtf {
    btf: Btf,
    /// Type ids by name. With the mmap backend every by-name lookup of btf-rs reads the name of
    /// every type in vmlinux (~127k on 6.18), and zc-trace makes dozens of them:
    /// [`Self::load_for`] answers them all from one pass over the types instead. A name missing
    /// here is looked up on its own and kept, so a forgotten prefetch costs time, never a wrong
    /// answer.
    ids_by_name: RefCell<HashMap<String, Vec<u32>>>,
    /// Lookups that had to scan on their own (the prefetch did not cover them).
    fallback_scans: Cell<u32>,
}

/// Every struct whose members or size zc-trace reads (see `kernel_offsets`, `io_uring_offsets`,
/// `dma_layout` and `syscall_arg_registers`); prefetched when the BTF is loaded.
const STRUCTS: &[&str] = &[
    "task_struct",
    "files_struct",
    "fdtable",
    "file",
    "inode",
    "super_block",
    "sock",
    "socket",
    "socket_alloc",
    "msghdr",
    "sk_buff",
    "skb_shared_info",
    "request",
    "pt_regs",
    "io_kiocb",
    "io_uring_cqe",
    "io_rw",
    "io_sr_msg",
    "io_notif_data",
    "scatterlist",
    "device",
    "device_driver",
    "dentry",
    "vfsmount",
    "mount",
];

/// The kfunc behind typed loads (`zc_trace_common::TypedLoads`).
const RDONLY_CAST: &str = "bpf_rdonly_cast";
/// The enum of the kernel's BPF helper numbers ([`KernelBtf::has_helper`]).
const BPF_FUNC_ID: &str = "bpf_func_id";
/// The allocator whose presence makes run-time map allocation safe ([`KernelBtf::runtime_map_alloc`]).
const BPF_MEM_ALLOC: &str = "bpf_mem_alloc";

/// Tracepoints whose `TP_PROTO` is read from BTF (see `io_uring_offsets` and `dma_layout`).
const TRACEPOINTS: &[&str] = &["io_uring_complete", "sched_switch", "page_fault_user"];

impl KernelBtf {
    /// Loads the kernel's BTF and resolves, in one pass over its types, every name this
    /// module looks up plus `functions` (for [`Self::has_function`]) and the `TP_PROTO`s of
    /// `tracepoints` (for [`Self::dma_event_matches`]).
    pub fn load_for<'a>(functions: impl IntoIterator<Item = &'a str>, tracepoints: &[&str]) -> anyhow::Result<Self> {
        let btf = Self::open()?;
        let mut names: Vec<String> = STRUCTS.iter().map(|s| s.to_string()).collect();
        names.extend([RDONLY_CAST, BPF_FUNC_ID, BPF_MEM_ALLOC].map(String::from));
        let tracepoints = TRACEPOINTS.iter().chain(tracepoints);
        for tp in tracepoints {
            names.push(format!("btf_trace_{tp}"));
            names.push(format!("__bpf_trace_{tp}"));
        }
        names.extend(DMA_MAP_CLASSES.iter().map(|class| format!("__bpf_trace_{class}")));
        names.extend(functions.into_iter().map(str::to_string));
        btf.prefetch(&names);
        Ok(btf)
    }

    /// The BTF with nothing resolved yet: every name costs a pass of its own.
    fn open() -> anyhow::Result<Self> {
        // Mmap backend: types are decoded on lookup. Parsing the whole 6 MiB vmlinux BTF up
        // front costs ~120 ms and ~40 MiB of RSS for the few dozen members zc-trace needs.
        // sysfs can mmap vmlinux BTF only since Linux 6.16 (6.12 answers ENODEV): then parse it.
        let btf = Btf::from_file_with_backend(BTF_VMLINUX, btf_rs::Backend::Mmap)
            .or_else(|_| Btf::from_file(BTF_VMLINUX))
            .with_context(|| format!("reading {BTF_VMLINUX}"))?;
        Ok(Self { btf, ids_by_name: RefCell::default(), fallback_scans: Cell::new(0) })
    }

    /// Fills the name cache for `names` with one pass over the types (of a second mapping of
    /// the BTF: btf-rs does not lend its own). On any failure the cache stays as it was and
    /// lookups scan one by one.
    fn prefetch(&self, names: &[String]) {
        // btf-rs resolves many names in one pass only through its `regex` feature, whose regex
        // crate adds ~2.3 MB to the binary, nearly all of it resident when run: the type table
        // is simple enough to walk here.
        let Ok(raw) = VmlinuxBtf::open() else { return };
        let Some(found) = type_ids_by_name(&raw, names) else { return };
        self.ids_by_name.borrow_mut().extend(found);
    }

    /// Every type called `name`, in id order.
    fn types_named(&self, name: &str) -> btf_rs::Result<Vec<Type>> {
        let cached = self.ids_by_name.borrow().get(name).cloned();
        let ids = match cached {
            Some(ids) => ids,
            None => {
                self.fallback_scans.set(self.fallback_scans.get() + 1);
                let ids = self.btf.resolve_ids_by_name(name)?;
                self.ids_by_name.borrow_mut().insert(name.to_string(), ids.clone());
                ids
            }
        };
        ids.into_iter().map(|id| self.btf.resolve_type_by_id(id)).collect()
    }

    /// Byte offset of `path` (e.g. `["__sk_common", "skc_family"]`) inside `struct name`,
    /// looking through anonymous struct/union members as C does.
    pub fn offset(&self, name: &str, path: &[&str]) -> anyhow::Result<u32> {
        let mut ty = self.named_struct(name)?;
        let mut bits = 0u32;
        for (i, member) in path.iter().enumerate() {
            let (member_bits, member_ty) = self
                .find_member(&ty, member)?
                .ok_or_else(|| anyhow!("struct {name} has no member {}", path[..=i].join(".")))?;
            bits += member_bits;
            if i + 1 < path.len() {
                ty = self.strip(member_ty)?;
            }
        }
        if !bits.is_multiple_of(8) {
            bail!("{name}.{} is a bitfield", path.join("."));
        }
        Ok(bits / 8)
    }

    /// How many parameters the kernel's function `name` takes, from its BTF prototype.
    pub fn function_params(&self, name: &str) -> Option<usize> {
        let func = self.types_named(name).ok()?.into_iter().find(|t| matches!(t, Type::Func(_)))?;
        match self.btf.resolve_chained_type(func.as_btf_type()?).ok()? {
            Type::FuncProto(proto) => Some(proto.parameters.len()),
            _ => None,
        }
    }

    /// True when the kernel has a function of this name (not inlined away).
    pub fn has_function(&self, name: &str) -> bool {
        self.types_named(name).is_ok_and(|ts| ts.iter().any(|t| matches!(t, Type::Func(_))))
    }

    fn named_struct(&self, name: &str) -> anyhow::Result<Type> {
        Ok(self.named_struct_with_id(name)?.1)
    }

    /// The defined (not forward-declared) struct called `name`, and its BTF id.
    fn named_struct_with_id(&self, name: &str) -> anyhow::Result<(u32, Type)> {
        self.first_named(name, |t| matches!(t, Type::Struct(s) if !s.members.is_empty()))
            .map_err(|e| anyhow!("struct {name} not in BTF: {e}"))?
            .ok_or_else(|| anyhow!("struct {name} not in BTF"))
    }

    /// The first type called `name` that `pred` accepts, with its BTF id (as the kernel
    /// numbers vmlinux types).
    fn first_named(&self, name: &str, pred: impl Fn(&Type) -> bool) -> btf_rs::Result<Option<(u32, Type)>> {
        let types = self.types_named(name)?;
        let ids = self.ids_by_name.borrow().get(name).cloned().unwrap_or_default();
        Ok(ids.into_iter().zip(types).find(|(_, t)| pred(t)))
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn strip(&self, mut ty: Type) -> anyhow::Result<Type> {
        for _ in 0..16 {
            match &ty {
                Type::Typedef(_) | Type::Volatile(_) | Type::Const(_) | Type::Restrict(_) | Type::TypeTag(_) => {
                    let bt = ty.as_btf_type().ok_or_else(|| anyhow!("untyped modifier"))?;
                    ty = self.btf.resolve_chained_type(bt)?;
                }
                _ => return Ok(ty),
            }
        }
        bail!("type chain too deep")
    }

    /// (bit offset, type) of `member` in a struct/union, searching anonymous members.
    fn find_member(&self, ty: &Type, member: &str) -> anyhow::Result<Option<(u32, Type)>> {
        let members = match ty {
            Type::Struct(s) | Type::Union(s) => &s.members,
            _ => bail!("looking for {member} in a non-struct type"),
        };
        for m in members {
            let name = self.btf.resolve_name(m).unwrap_or_default();
            let mty = self.btf.resolve_chained_type(m)?;
            if name == member {
                return Ok(Some((m.bit_offset(), mty)));
            }
            if name.is_empty() {
                let inner = self.strip(mty)?;
                if matches!(inner, Type::Struct(_) | Type::Union(_))
                    && let Some((bits, t)) = self.find_member(&inner, member)?
                {
                    return Ok(Some((m.bit_offset() + bits, t)));
                }
            }
        }
        Ok(None)
    }

    /// How many `TP_PROTO` arguments a tracepoint takes, from its `btf_trace_<name>` typedef
    /// (a pointer to a function whose first parameter is the probe's private data).
    pub fn tracepoint_args(&self, name: &str) -> Option<usize> {
        let ty = self.types_named(&format!("btf_trace_{name}")).ok()?.into_iter().next()?;
        let ptr = self.btf.resolve_chained_type(ty.as_btf_type()?).ok()?;
        match self.btf.resolve_chained_type(ptr.as_btf_type()?).ok()? {
            Type::FuncProto(proto) => Some(proto.parameters.len().saturating_sub(1)),
            _ => None,
        }
    }

    /// The names of a tracepoint's `TP_PROTO` parameters, in order (without the probe's
    /// leading private-data pointer). The `btf_trace_<name>` typedef has the prototype but
    /// unnamed parameters; the names are on the probe function the kernel generates per event
    /// class, `__bpf_trace_<class>`: for a `TRACE_EVENT` the class is the event, for a
    /// `DEFINE_EVENT` it is one of `classes`. A candidate counts only if its parameter types
    /// are the typedef's.
    pub fn tracepoint_params(&self, name: &str, classes: &[&str]) -> Option<Vec<String>> {
        let typedef = self.types_named(&format!("btf_trace_{name}")).ok()?.into_iter().next()?;
        let ptr = self.btf.resolve_chained_type(typedef.as_btf_type()?).ok()?;
        let Type::FuncProto(proto) = self.btf.resolve_chained_type(ptr.as_btf_type()?).ok()? else { return None };
        let types = |params: &[btf_rs::Parameter]| params.iter().map(|p| p.get_type_id()).collect::<Vec<_>>();
        let wanted = types(&proto.parameters);
        std::iter::once(name).chain(classes.iter().copied()).find_map(|class| {
            let func = self
                .types_named(&format!("__bpf_trace_{class}"))
                .ok()?
                .into_iter()
                .find(|t| matches!(t, Type::Func(_)))?;
            let Type::FuncProto(p) = self.btf.resolve_chained_type(func.as_btf_type()?).ok()? else { return None };
            (types(&p.parameters) == wanted)
                .then(|| p.parameters.iter().skip(1).map(|p| self.btf.resolve_name(p).unwrap_or_default()).collect())
        })
    }

    /// `sizeof(struct name)`.
    pub fn struct_size(&self, name: &str) -> anyhow::Result<u32> {
        match self.named_struct(name)? {
            Type::Struct(s) => Ok(u32::try_from(s.size())?),
            _ => bail!("{name} is not a struct"),
        }
    }

    /// Where the `dma:*` map tracepoints that this kernel has keep the device, size,
    /// direction and scatterlist, found by parameter name. Fails (saying what is missing)
    /// when neither a single-buffer nor a scatter-gather event can be read.
    pub fn dma_layout(&self) -> anyhow::Result<DmaLayout> {
        let mut layout = DmaLayout::EMPTY;
        let index = |params: &[String], names: &[&str]| {
            params.iter().position(|p| names.contains(&p.as_str())).map(|i| i as u32)
        };
        // The single-buffer events share one program: their layouts must agree.
        let single =
            ["dma_map_phys", "dma_map_page"].into_iter().find_map(|e| self.tracepoint_params(e, DMA_MAP_CLASSES));
        if let Some(p) = &single {
            let (dev, size, dir) = (index(p, &["dev"]), index(p, &["size"]), index(p, &["dir", "direction"]));
            if let (Some(dev), Some(size), Some(dir)) = (dev, size, dir) {
                (layout.map_dev_arg, layout.map_size_arg, layout.map_dir_arg) = (dev, size, dir);
            }
        }
        if let Some(p) = self.tracepoint_params("dma_map_sg", &[]) {
            let fields = (
                index(&p, &["dev"]),
                index(&p, &["sgl", "sg"]),
                index(&p, &["nents"]),
                index(&p, &["dir", "direction"]),
            );
            if let (Some(dev), Some(list), Some(nents), Some(dir)) = fields {
                (layout.sg_dev_arg, layout.sg_list_arg, layout.sg_nents_arg, layout.sg_dir_arg) =
                    (dev, list, nents, dir);
            }
        }
        if layout.map_size_arg == DmaLayout::NO_ARG && layout.sg_list_arg == DmaLayout::NO_ARG {
            bail!("no dma:* map tracepoint with named dev/size/dir (or sgl/nents/dir) parameters in BTF");
        }
        layout.sg_page_link = self.offset("scatterlist", &["page_link"])?;
        layout.sg_length = self.offset("scatterlist", &["length"])?;
        layout.sg_stride = self.struct_size("scatterlist")?;
        layout.device_driver = self.offset("device", &["driver"])?;
        layout.device_name = self.offset("device", &["kobj", "name"])?;
        layout.driver_name = self.offset("device_driver", &["name"])?;
        layout.valid = 1;
        Ok(layout)
    }

    /// Whether a single-buffer `dma:*` event passes its arguments where [`Self::dma_layout`]
    /// found them (`dma_map_resource` may differ from `dma_map_page` on some kernel). An event
    /// whose parameters BTF does not name (absent on this kernel) is not refused here:
    /// attaching then says what is wrong.
    pub fn dma_event_matches(&self, event: &str, layout: &DmaLayout) -> bool {
        let Some(p) = self.tracepoint_params(event, DMA_MAP_CLASSES) else { return true };
        let at = |i: u32| p.get(i as usize).map(String::as_str);
        at(layout.map_dev_arg) == Some("dev")
            && at(layout.map_size_arg) == Some("size")
            && matches!(at(layout.map_dir_arg), Some("dir" | "direction"))
    }

    /// What `io_uring_complete` needs; fails on kernels without io_uring.
    pub fn io_uring_offsets(&self) -> anyhow::Result<IoUringOffsets> {
        // Before 5.15 the tracepoint passed (ctx, user_data, res): no request, so no opcode
        // or file to attribute the completion to. Known by its parameter names.
        if let Some(params) = self.tracepoint_params("io_uring_complete", &[])
            && !params.iter().any(|p| p == "req")
        {
            bail!(
                "io_uring:io_uring_complete passes no request here ({}): completions cannot be attributed",
                params.join(", ")
            );
        }
        let res_in_cqe = match self.tracepoint_args("io_uring_complete") {
            Some(3) => 1, // (ctx, req, cqe)
            Some(7) => 0, // (ctx, req, user_data, res, cflags, extra1, extra2)
            other => bail!("io_uring_complete has an argument list zc-trace does not know ({other:?})"),
        };
        let buffers = self.io_uring_buffers().ok();
        let (rw_addr, rw_len, sr_buf) = buffers.unwrap_or_default();
        // Zero-copy send notifications: io_notif_data is cast over the notification's cmd.
        let notif_report = self
            .offset("io_kiocb", &["cmd"])
            .and_then(|cmd| self.offset("io_notif_data", &["zc_report"]).map(|off| cmd + off))
            .ok();
        Ok(IoUringOffsets {
            valid: 1,
            req_opcode: self.offset("io_kiocb", &["opcode"])?,
            req_file: self.offset("io_kiocb", &["file"])?,
            cqe_res: self.offset("io_uring_cqe", &["res"])?,
            res_in_cqe,
            buf_valid: u32::from(buffers.is_some()),
            rw_addr,
            rw_len,
            sr_buf,
            cqe_flags: if res_in_cqe == 1 { self.offset("io_uring_cqe", &["flags"])? } else { 0 },
            notif_valid: u32::from(notif_report.is_some()),
            notif_report: notif_report.unwrap_or(0),
        })
    }

    /// Where an io_uring request keeps its user buffer: (`io_rw.addr`, `io_rw.len`,
    /// `io_sr_msg.buf`) from the start of `struct io_kiocb`. Since 6.0 the per-opcode data is
    /// cast over `io_kiocb.cmd` (`struct io_rw`, `struct io_sr_msg`); before, they were
    /// members of a union in `io_kiocb` (`rw`, `sr_msg`).
    fn io_uring_buffers(&self) -> anyhow::Result<(u32, u32, u32)> {
        if let Ok(cmd) = self.offset("io_kiocb", &["cmd"]) {
            let o = |s: &str, m: &str| self.offset(s, &[m]).map(|off| cmd + off);
            return Ok((o("io_rw", "addr")?, o("io_rw", "len")?, o("io_sr_msg", "buf")?));
        }
        let o = |p: &[&str]| self.offset("io_kiocb", p);
        Ok((o(&["rw", "addr"])?, o(&["rw", "len"])?, o(&["sr_msg", "buf"])?))
    }

    /// Every offset the kernel programs need. Fails (naming the member) when the kernel's
    /// structs do not have one; the caller then runs without fd classification.
    pub fn kernel_offsets(&self) -> anyhow::Result<KernelOffsets> {
        let o = |s: &str, p: &[&str]| self.offset(s, p);
        Ok(KernelOffsets {
            valid: 1,
            task_files: o("task_struct", &["files"])?,
            files_fdt: o("files_struct", &["fdt"])?,
            fdtable_max_fds: o("fdtable", &["max_fds"])?,
            fdtable_fd: o("fdtable", &["fd"])?,
            file_f_inode: o("file", &["f_inode"])?,
            file_f_flags: o("file", &["f_flags"])?,
            file_private_data: o("file", &["private_data"])?,
            inode_i_mode: o("inode", &["i_mode"])?,
            inode_i_rdev: o("inode", &["i_rdev"])?,
            inode_i_sb: o("inode", &["i_sb"])?,
            super_block_s_magic: o("super_block", &["s_magic"])?,
            sock_route_caps: o("sock", &["sk_route_caps"])?,
            msghdr_flags: o("msghdr", &["msg_flags"])?,
            skb_sk: o("sk_buff", &["sk"])?,
            task_tgid: o("task_struct", &["tgid"])?,
            file_dentry: o("file", &["f_path", "dentry"])?,
            dentry_name: o("dentry", &["d_name", "name"])?,
            inode_i_ino: o("inode", &["i_ino"])?,
            sock_daddr: o("sock", &["__sk_common", "skc_daddr"])?,
            sock_rcv_saddr: o("sock", &["__sk_common", "skc_rcv_saddr"])?,
            sock_dport: o("sock", &["__sk_common", "skc_dport"])?,
            sock_num: o("sock", &["__sk_common", "skc_num"])?,
            // Only on kernels built with IPv6: 0 turns IPv6 addresses off.
            sock_v6_daddr: o("sock", &["__sk_common", "skc_v6_daddr"]).unwrap_or(0),
            sock_v6_rcv_saddr: o("sock", &["__sk_common", "skc_v6_rcv_saddr"]).unwrap_or(0),
            file_mnt: o("file", &["f_path", "mnt"])?,
            dentry_parent: o("dentry", &["d_parent"])?,
            vfsmount_mnt_root: o("vfsmount", &["mnt_root"])?,
            mount_mnt: o("mount", &["mnt"])?,
            mount_mnt_parent: o("mount", &["mnt_parent"])?,
            mount_mnt_mountpoint: o("mount", &["mnt_mountpoint"])?,
            socket_sk: o("socket", &["sk"])?,
            sock_family: o("sock", &["__sk_common", "skc_family"])?,
            sock_type: o("sock", &["sk_type"])?,
            sock_protocol: o("sock", &["sk_protocol"])?,
            skb_len: o("sk_buff", &["len"])?,
            skb_data_len: o("sk_buff", &["data_len"])?,
            skb_head: o("sk_buff", &["head"])?,
            skb_end: o("sk_buff", &["end"])?,
            shinfo_nr_frags: o("skb_shared_info", &["nr_frags"])?,
            request_data_len: o("request", &["__data_len"])?,
            request_cmd_flags: o("request", &["cmd_flags"])?,
            regs_args: syscall_arg_registers(self)?,
            sock_socket: o("sock", &["sk_socket"]).unwrap_or(0),
            socket_ino: self.socket_ino().unwrap_or(0),
            regs_sp: stack_registers(self).map_or(0, |r| r[0]),
            regs_fp: stack_registers(self).map_or(0, |r| r[1]),
            task_state: o("task_struct", &["__state"]).or_else(|_| o("task_struct", &["state"])).unwrap_or(0),
            // This architecture's (libc's value is the kernel's UAPI for the target).
            o_direct: libc::O_DIRECT as u32,
        })
    }

    /// Whether the kernel has the BPF helper `name` (without `bpf_`): its `BPF_FUNC_<name>`
    /// number is in the kernel's own `enum bpf_func_id`, which lists exactly the helpers it
    /// was built with.
    pub fn has_helper(&self, name: &str) -> bool {
        let wanted = format!("BPF_FUNC_{name}");
        self.types_named(BPF_FUNC_ID).is_ok_and(|types| {
            types.iter().any(|t| match t {
                Type::Enum(e) => e.members.iter().any(|m| self.btf.resolve_name(m).is_ok_and(|n| n == wanted)),
                _ => false,
            })
        })
    }

    /// Whether hash maps that allocate their elements at run time are safe in tracing
    /// programs: since the kernel allocates them from `bpf_mem_alloc` caches (6.1). Before,
    /// the verifier warns on load (a kernel WARNING with a backtrace) and PREEMPT_RT kernels
    /// refuse such programs: the maps must be preallocated there.
    pub fn runtime_map_alloc(&self) -> bool {
        self.named_struct(BPF_MEM_ALLOC).is_ok()
    }

    /// Where `sched:sched_switch` passes `prev_state` (argument 3 since 5.18), by the names
    /// of its `TP_PROTO` parameters; `None` on kernels whose tracepoint does not pass it.
    pub fn sched_switch_prev_state(&self) -> Option<usize> {
        self.tracepoint_params("sched_switch", &[])?.iter().position(|p| p == "prev_state")
    }

    /// What typed loads need (see `zc_trace_common::TypedLoads`), and the BTF id of the
    /// `bpf_rdonly_cast` kfunc that the programs' placeholder calls become. Fails, saying
    /// why, on kernels without the kfunc (before 6.2): they read through helpers. `task_pid`
    /// is left 0: both read paths use it, and the loader sets it from the session's settings.
    pub fn typed_loads(&self) -> anyhow::Result<(TypedLoads, u32)> {
        let (kfunc, _) = self
            .first_named(RDONLY_CAST, |t| matches!(t, Type::Func(_)))?
            .ok_or_else(|| anyhow!("the kfunc {RDONLY_CAST} is not in this kernel's BTF (it came in Linux 6.2)"))?;
        let id = |name: &str| self.named_struct_with_id(name).map(|(id, _)| id);
        let loads = TypedLoads {
            enabled: 1,
            files_struct_id: id("files_struct")?,
            socket_id: id("socket")?,
            pt_regs_id: id("pt_regs")?,
            files_fd_array: self.offset("files_struct", &["fd_array"])?,
            task_pid: 0,
            task_btf: 0,
        };
        Ok((loads, kfunc))
    }

    /// From a `struct socket *` to its inode number: the socket and its inode are allocated
    /// together (`struct socket_alloc`).
    fn socket_ino(&self) -> anyhow::Result<u32> {
        let inode = self.offset("socket_alloc", &["vfs_inode"])?;
        let socket = self.offset("socket_alloc", &["socket"])?;
        Ok(inode - socket + self.offset("inode", &["i_ino"])?)
    }
}

/// The event class the single-buffer `dma:*` events are defined in (include/trace/events/dma.h).
const DMA_MAP_CLASSES: &[&str] = &["dma_map"];

/// The ids of the types called each of `names` (an empty list for a name no type has), in
/// ascending order and numbered as btf-rs numbers them, from one pass over raw BTF data: a header, then a table of types (each a
/// 12-byte `btf_type` and kind-specific data) and a string table, as the kernel documents in
/// Documentation/bpf/btf.rst. `None` for data this code does not understand.
fn type_ids_by_name(raw: &[u8], names: &[String]) -> Option<HashMap<String, Vec<u32>>> {
    let little_endian = match raw.get(..2)? {
        [0x9f, 0xeb] => true,
        [0xeb, 0x9f] => false,
        _ => return None,
    };
    let u32_at = |at: usize| -> Option<u32> {
        let bytes: [u8; 4] = raw.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if little_endian { u32::from_le_bytes(bytes) } else { u32::from_be_bytes(bytes) })
    };
    let header_len = u32_at(4)? as usize;
    let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
    let (str_off, str_len) = (u32_at(16)? as usize, u32_at(20)? as usize);
    let types = header_len + type_off..header_len + type_off + type_len;
    raw.get(types.clone())?;
    let strings = raw.get(header_len + str_off..header_len + str_off + str_len)?;

    let mut found: HashMap<String, Vec<u32>> = names.iter().map(|n| (n.clone(), Vec::new())).collect();
    let (mut at, mut id) = (types.start, 1u32); // id 0 is `void`, which has no entry
    while at < types.end {
        let (name_off, info) = (u32_at(at)? as usize, u32_at(at + 4)?);
        let vlen = (info & 0xffff) as usize;
        // Bytes that follow the btf_type, by kind (BTF_KIND_*).
        let extra = match (info >> 24) & 0x1f {
            1 | 14 | 17 => 4,             // INT (encoding), VAR (linkage), DECL_TAG (component)
            3 => 12,                      // ARRAY (btf_array)
            4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION (btf_member), DATASEC (btf_var_secinfo), ENUM64
            6 | 13 => 8 * vlen,           // ENUM (btf_enum), FUNC_PROTO (btf_param)
            2 | 7..=12 | 16 | 18 => 0,    // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
            _ => return None,             // a kind newer than this code
        };
        if name_off != 0 {
            let name = strings.get(name_off..)?;
            let name = &name[..name.iter().position(|&b| b == 0)?];
            if let Some(ids) = std::str::from_utf8(name).ok().and_then(|n| found.get_mut(n)) {
                ids.push(id);
            }
        }
        at += 12 + extra;
        id += 1;
    }
    // The table must end exactly where its last type does, or a size above was wrong.
    (at == types.end).then_some(found)
}

/// Offsets in `struct pt_regs` of the registers that carry syscall arguments 1..6.
#[cfg(target_arch = "x86_64")]
fn syscall_arg_registers(btf: &KernelBtf) -> anyhow::Result<[u32; 6]> {
    let mut out = [0; 6];
    for (slot, reg) in out.iter_mut().zip(["di", "si", "dx", "r10", "r8", "r9"]) {
        *slot = btf.offset("pt_regs", &[reg])?;
    }
    Ok(out)
}

/// The user stack pointer and frame pointer in `struct pt_regs`.
#[cfg(target_arch = "x86_64")]
fn stack_registers(btf: &KernelBtf) -> anyhow::Result<[u32; 2]> {
    Ok([btf.offset("pt_regs", &["sp"])?, btf.offset("pt_regs", &["bp"])?])
}

/// Offsets in `struct pt_regs` of the registers that carry syscall arguments 1..6: x0..x5,
/// except that x0 also carries the return value and is overwritten before `sys_exit`. The
/// kernel keeps the first argument in `orig_x0` (for syscall restarts), where both
/// tracepoints find it.
#[cfg(target_arch = "aarch64")]
fn syscall_arg_registers(btf: &KernelBtf) -> anyhow::Result<[u32; 6]> {
    let mut out = [btf.offset("pt_regs", &["orig_x0"])?, 0, 0, 0, 0, 0];
    for (n, slot) in out.iter_mut().enumerate().skip(1) {
        *slot = arm64_register(btf, n as u32)?;
    }
    Ok(out)
}

/// None on arm64: the registers serve the copy stacks' leaf fix-up, which reads the caller's
/// return address where an x86 `call` leaves it, at the stack pointer. arm64 keeps it in
/// x30, not in memory; reading `[sp]` there costs two reads per stack for a word user space
/// would ignore, and would split stack keys on it. 0 turns the fix-up off (see `StackKey`).
#[cfg(target_arch = "aarch64")]
fn stack_registers(_btf: &KernelBtf) -> anyhow::Result<[u32; 2]> {
    bail!("the copy stacks' leaf fix-up reads x86 return addresses: off on arm64")
}

/// Offset of general-purpose register `x<n>` in arm64's `struct pt_regs`, whose anonymous
/// union holds `u64 regs[31]; u64 sp; ...`. Member paths do not index arrays: the element is
/// found by its size, checked against where `sp` follows the array.
#[cfg(target_arch = "aarch64")]
fn arm64_register(btf: &KernelBtf, n: u32) -> anyhow::Result<u32> {
    let regs = btf.offset("pt_regs", &["regs"])?;
    let sp = btf.offset("pt_regs", &["sp"])?;
    if sp != regs + 31 * 8 || n > 30 {
        bail!("struct pt_regs is not laid out as arm64's `u64 regs[31]; u64 sp;` (regs at {regs}, sp at {sp})");
    }
    Ok(regs + 8 * n)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn stack_registers(_btf: &KernelBtf) -> anyhow::Result<[u32; 2]> {
    bail!("the stack registers are only mapped for x86-64 and arm64 so far")
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn syscall_arg_registers(_btf: &KernelBtf) -> anyhow::Result<[u32; 6]> {
    bail!("syscall argument registers are only mapped for x86-64 and arm64 so far")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the running kernel's BTF (no privileges needed): every offset must resolve, and
    /// the ones that are ABI (pt_regs) or long stable must have their known values.
    #[test]
    fn offsets_resolve_on_the_running_kernel() {
        if !std::path::Path::new(BTF_VMLINUX).exists() {
            eprintln!("no BTF on this kernel: nothing to check");
            return;
        }
        let btf = KernelBtf::load_for([], &[]).unwrap();
        let off = btf.kernel_offsets().unwrap();
        assert_eq!(off.valid, 1);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(off.regs_args, [112, 104, 96, 56, 72, 64], "pt_regs is x86-64 ABI");
        #[cfg(target_arch = "x86_64")]
        assert_eq!((off.regs_sp, off.regs_fp), (152, 32), "pt_regs is x86-64 ABI");
        // regs[31], sp, pc, pstate, orig_x0.
        #[cfg(target_arch = "aarch64")]
        assert_eq!(off.regs_args, [272, 8, 16, 24, 32, 40], "pt_regs is arm64 ABI");
        #[cfg(target_arch = "aarch64")]
        assert_eq!((off.regs_sp, off.regs_fp), (0, 0), "no leaf fix-up on arm64");
        assert_eq!(off.sock_family, 16, "skc_family follows the two 4-byte hash/addr unions");
        assert_eq!(off.fdtable_max_fds, 0);
        // A socket's inode follows its struct socket in struct socket_alloc.
        assert!(off.sock_socket > 0 && off.socket_ino > off.inode_i_ino, "{} {}", off.sock_socket, off.socket_ino);
        assert!(btf.offset("sock", &["no_such_member"]).is_err());
        assert!(btf.has_function("vfs_read"));
        assert_eq!(btf.function_params("vfs_read"), Some(4), "vfs_read(file, buf, count, pos)");
        assert_eq!(btf.tracepoint_args("sys_enter"), Some(2));
        assert_eq!(btf.tracepoint_args("sched_switch"), Some(4));
        if let Ok(io) = btf.io_uring_offsets() {
            assert_eq!(io.cqe_res, 8, "io_uring_cqe is UAPI: user_data, then res");
        }
        assert!(!btf.has_function("no_such_function_zc"));
        assert_eq!(btf.tracepoint_params("sched_switch", &[]).map(|p| p.len()), Some(4));
        // 6.18: prev_state is the tracepoint's last argument; helpers and allocator known.
        assert_eq!(btf.sched_switch_prev_state(), Some(3));
        assert!(btf.has_helper("get_current_task_btf") && btf.has_helper("probe_read_kernel"));
        assert!(!btf.has_helper("no_such_helper_zc"));
        assert!(btf.runtime_map_alloc());
        assert_eq!(off.task_state, btf.offset("task_struct", &["__state"]).unwrap());
        // The host kernel (6.18) has bpf_rdonly_cast: typed loads resolve, to structs with
        // the members the programs load through them.
        let (typed, kfunc) = btf.typed_loads().unwrap();
        assert_eq!(typed.enabled, 1);
        assert!(kfunc != 0 && typed.files_struct_id != 0 && typed.socket_id != 0 && typed.pt_regs_id != 0);
        assert_eq!(typed.files_fd_array, btf.offset("files_struct", &["fd_array"]).unwrap());
        assert_eq!(
            btf.offset("task_struct", &["pid"]).unwrap() + 4,
            off.task_tgid,
            "task_struct: pid_t pid; pid_t tgid;"
        );
    }

    /// The host kernel has `dma_map_phys`/`dma_map_sg` (docs/kernels.md): their parameters
    /// must be found by name.
    #[test]
    fn dma_layout_resolves_where_dma_tracepoints_exist() {
        if !std::path::Path::new(BTF_VMLINUX).exists() {
            return;
        }
        let btf = KernelBtf::load_for([], &[]).unwrap();
        let Some(params) = btf.tracepoint_params("dma_map_sg", &[]) else {
            eprintln!("no dma_map_sg on this kernel: nothing to check");
            return;
        };
        eprintln!("dma_map_sg({})", params.join(", "));
        let layout = btf.dma_layout().unwrap();
        assert_eq!(layout.valid, 1);
        assert_eq!(layout.sg_dev_arg, 0, "{params:?}");
        assert_ne!(layout.sg_nents_arg, DmaLayout::NO_ARG);
        assert!(layout.sg_stride >= layout.sg_length + 4);
        if let Some(p) = ["dma_map_phys", "dma_map_page"].iter().find_map(|e| btf.tracepoint_params(e, DMA_MAP_CLASSES))
        {
            eprintln!("single-buffer map: ({})", p.join(", "));
            assert_eq!(p[layout.map_size_arg as usize], "size");
        }
    }

    /// One pass at load must answer every lookup a session makes (the offsets, the DMA
    /// layout, the presence of the functions and `dma:*` events it passes: the probe
    /// catalogue's, of which these are a sample), with the answers of one scan per name.
    #[test]
    fn prefetch_covers_every_session_lookup_with_the_same_answers() {
        if !std::path::Path::new(BTF_VMLINUX).exists() {
            return;
        }
        const FUNCTIONS: &[&str] = &["filemap_read", "tcp_sendmsg_locked", "do_tcp_sendpages", "pipe_write"];
        const DMA_EVENTS: &[&str] = &["dma_map_phys", "dma_map_page", "dma_map_sg", "dma_map_resource"];
        let functions = || FUNCTIONS.iter().copied();
        let cached = KernelBtf::load_for(functions(), DMA_EVENTS).unwrap();
        let uncached = KernelBtf::open().unwrap();
        assert_eq!(cached.fallback_scans.get(), 0);
        for (name, ids) in cached.ids_by_name.borrow().iter() {
            assert_eq!(ids, &uncached.btf.resolve_ids_by_name(name).unwrap(), "ids of {name}");
        }

        let offsets = |b: &KernelBtf| b.kernel_offsets().map_err(|e| e.to_string());
        let io_uring = |b: &KernelBtf| b.io_uring_offsets().map_err(|e| e.to_string());
        let dma = |b: &KernelBtf| b.dma_layout().map_err(|e| e.to_string());
        let dma_events = |b: &KernelBtf| match b.dma_layout() {
            Ok(layout) => DMA_EVENTS.iter().map(|e| b.dma_event_matches(e, &layout)).collect(),
            Err(_) => Vec::new(),
        };
        let present = |b: &KernelBtf| functions().map(|f| b.has_function(f)).collect::<Vec<_>>();
        assert_eq!(offsets(&cached), offsets(&uncached));
        assert_eq!(io_uring(&cached), io_uring(&uncached));
        assert_eq!(dma(&cached), dma(&uncached));
        assert_eq!(dma_events(&cached), dma_events(&uncached));
        assert_eq!(present(&cached), present(&uncached));
        assert_eq!(cached.fallback_scans.get(), 0, "a name the session looks up is missing from the prefetch");
        assert!(uncached.fallback_scans.get() > 0, "the uncached path must really scan");

        // A name that was not prefetched is still answered, by a scan of its own.
        assert!(cached.has_function("vfs_read"));
        assert_eq!(cached.fallback_scans.get(), 1);
        assert!(cached.has_function("vfs_read"));
        assert_eq!(cached.fallback_scans.get(), 1, "the fallback's answer is kept");
    }

    /// A hand-made BTF blob with a type of each size class the pass must step over.
    #[test]
    fn type_ids_by_name_steps_over_every_kind_of_entry() {
        let strings = b"\0int\0pair\0a\0b\0f\0";
        let (int, pair, a, b, f) = (1u32, 5, 10, 12, 14);
        let kind = |kind: u32, vlen: u32| (kind << 24) | vlen;
        let mut types: Vec<u32> = Vec::new();
        types.extend([int, kind(1, 0), 4, 32]); // 1: int, 4 bytes (+ encoding word)
        types.extend([0, kind(2, 0), 1]); // 2: int *
        types.extend([0, kind(3, 0), 0, 1, 1, 8]); // 3: int[8] (+ btf_array)
        types.extend([pair, kind(4, 2), 8, a, 1, 0, b, 1, 32]); // 4: struct pair { int a, b; }
        types.extend([0, kind(13, 1), 1, a, 1]); // 5: int (*)(int a)
        types.extend([f, kind(12, 0), 5]); // 6: func f
        types.extend([pair, kind(8, 0), 4]); // 7: typedef struct pair pair
        let types: Vec<u8> = types.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut raw: Vec<u8> = vec![0x9f, 0xeb, 1, 0];
        for word in [24, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
            raw.extend(word.to_le_bytes());
        }
        raw.extend(&types);
        raw.extend(strings);

        let names = ["pair", "f", "int", "missing"].map(String::from);
        let found = type_ids_by_name(&raw, &names).unwrap();
        assert_eq!(found["pair"], [4, 7]);
        assert_eq!(found["f"], [6]);
        assert_eq!(found["int"], [1]);
        assert_eq!(found["missing"], Vec::<u32>::new());

        // A table whose entries do not end where it does is refused, not half-read.
        let mut short = raw.clone();
        short[12..16].copy_from_slice(&(types.len() as u32 - 4).to_le_bytes());
        short[16..20].copy_from_slice(&(types.len() as u32 - 4).to_le_bytes());
        assert!(type_ids_by_name(&short, &names).is_none());
        assert!(type_ids_by_name(b"not btf", &names).is_none());
    }
}
