//! Kernel struct member offsets from the running kernel's BTF. The kernel programs read
//! `task->files->fdt->fd[n]->f_inode->i_mode` and friends at these offsets, so they are right
//! on every kernel that ships BTF, whatever its configuration or version; nothing here comes
//! from one kernel's headers.
use anyhow::{Context as _, anyhow, bail};
use btf_rs::{Btf, Type};
use zc_trace_common::{IoUringOffsets, KernelOffsets};

use crate::kernel::BTF_VMLINUX;

/// A parsed kernel BTF with member-offset lookups.
pub struct KernelBtf(Btf);

impl KernelBtf {
    pub fn load() -> anyhow::Result<Self> {
        Ok(Self(Btf::from_file(BTF_VMLINUX).with_context(|| format!("reading {BTF_VMLINUX}"))?))
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
        if bits % 8 != 0 {
            bail!("{name}.{} is a bitfield", path.join("."));
        }
        Ok(bits / 8)
    }

    /// True when the kernel has a function of this name (not inlined away).
    pub fn has_function(&self, name: &str) -> bool {
        self.0.resolve_types_by_name(name).is_ok_and(|ts| ts.iter().any(|t| matches!(t, Type::Func(_))))
    }

    fn named_struct(&self, name: &str) -> anyhow::Result<Type> {
        self.0
            .resolve_types_by_name(name)
            .map_err(|e| anyhow!("struct {name} not in BTF: {e}"))?
            .into_iter()
            .find(|t| matches!(t, Type::Struct(s) if !s.members.is_empty()))
            .ok_or_else(|| anyhow!("struct {name} not in BTF"))
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn strip(&self, mut ty: Type) -> anyhow::Result<Type> {
        for _ in 0..16 {
            match &ty {
                Type::Typedef(_) | Type::Volatile(_) | Type::Const(_) | Type::Restrict(_) | Type::TypeTag(_) => {
                    let bt = ty.as_btf_type().ok_or_else(|| anyhow!("untyped modifier"))?;
                    ty = self.0.resolve_chained_type(bt)?;
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
            let name = self.0.resolve_name(m).unwrap_or_default();
            let mty = self.0.resolve_chained_type(m)?;
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
        let ty = self.0.resolve_types_by_name(&format!("btf_trace_{name}")).ok()?.into_iter().next()?;
        let ptr = self.0.resolve_chained_type(ty.as_btf_type()?).ok()?;
        match self.0.resolve_chained_type(ptr.as_btf_type()?).ok()? {
            Type::FuncProto(proto) => Some(proto.parameters.len().saturating_sub(1)),
            _ => None,
        }
    }

    /// What `io_uring_complete` needs; fails on kernels without io_uring.
    pub fn io_uring_offsets(&self) -> anyhow::Result<IoUringOffsets> {
        let res_in_cqe = match self.tracepoint_args("io_uring_complete") {
            Some(3) => 1, // (ctx, req, cqe)
            Some(7) => 0, // (ctx, req, user_data, res, cflags, extra1, extra2)
            other => bail!("io_uring_complete has an argument list zc-trace does not know ({other:?})"),
        };
        Ok(IoUringOffsets {
            valid: 1,
            req_opcode: self.offset("io_kiocb", &["opcode"])?,
            req_file: self.offset("io_kiocb", &["file"])?,
            cqe_res: self.offset("io_uring_cqe", &["res"])?,
            res_in_cqe,
        })
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
        })
    }
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

#[cfg(not(target_arch = "x86_64"))]
fn syscall_arg_registers(_btf: &KernelBtf) -> anyhow::Result<[u32; 6]> {
    bail!("syscall argument registers are only mapped for x86-64 so far")
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
        let btf = KernelBtf::load().unwrap();
        let off = btf.kernel_offsets().unwrap();
        assert_eq!(off.valid, 1);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(off.regs_args, [112, 104, 96, 56, 72, 64], "pt_regs is x86-64 ABI");
        assert_eq!(off.sock_family, 16, "skc_family follows the two 4-byte hash/addr unions");
        assert_eq!(off.fdtable_max_fds, 0);
        assert!(btf.offset("sock", &["no_such_member"]).is_err());
        assert!(btf.has_function("vfs_read"));
        assert_eq!(btf.tracepoint_args("sys_enter"), Some(2));
        assert_eq!(btf.tracepoint_args("sched_switch"), Some(4));
        if let Ok(io) = btf.io_uring_offsets() {
            assert_eq!(io.cqe_res, 8, "io_uring_cqe is UAPI: user_data, then res");
        }
        assert!(!btf.has_function("no_such_function_zc"));
    }
}
