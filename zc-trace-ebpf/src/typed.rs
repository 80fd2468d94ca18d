//! Typed loads: kernel memory read by plain loads through pointers the verifier knows by
//! their BTF type, instead of one `bpf_probe_read_kernel` call per read (see
//! `zc_trace_common::TypedLoads`). Only where user space turned them on (kernels with the
//! `bpf_rdonly_cast` kfunc, 6.2+); the helper-read path stays for the others.
//!
//! What the verifier makes of it: `cast` returns an untrusted pointer to a struct of the given
//! BTF id; a load at a constant offset from it is checked against that struct's layout and
//! compiled to a load the kernel's exception table protects (a bad address reads as zero).
//! A load of a pointer member gives a pointer typed as the member's pointee, so a walk such as
//! `file->f_inode->i_mode` needs no cast after its first step.

use zc_trace_common::{RDONLY_CAST_PLACEHOLDER, TypedLoads};

#[unsafe(no_mangle)]
pub static TYPED_LOADS: TypedLoads = TypedLoads {
    enabled: 0,
    files_struct_id: 0,
    socket_id: 0,
    pt_regs_id: 0,
    files_fd_array: 0,
    task_pid: 0,
    task_btf: 0,
};

/// One setting, read at run time (volatile: see `kmem::off!`); a constant to the verifier.
macro_rules! typed {
    ($field:ident) => {
        unsafe { core::ptr::read_volatile(&$crate::typed::TYPED_LOADS.$field) }
    };
}
pub(crate) use typed;

/// True when this load uses typed loads. A constant to the verifier, which then never
/// explores the other path: the placeholder call of a helper-read load is never reached.
#[inline(always)]
pub fn enabled() -> bool {
    typed!(enabled) != 0
}

/// `bpf_rdonly_cast(addr, btf_id)`: `addr` as an untrusted, read-only pointer to the struct
/// with that BTF id. `btf_id` must be a constant to the verifier (a `TYPED_LOADS` field).
#[inline(always)]
pub fn cast(addr: u64, btf_id: u32) -> *const u8 {
    // SAFETY: a call to helper number RDONLY_CAST_PLACEHOLDER, which user space rewrites into
    // the kfunc call before load (zc-trace/src/probe/kfuncs.rs); the kfunc reads nothing.
    unsafe {
        let f: unsafe extern "C" fn(u64, u64) -> *const u8 = core::mem::transmute(RDONLY_CAST_PLACEHOLDER as usize);
        f(addr, btf_id as u64)
    }
}

/// A load of a `T` at `base + offset`, `base` a BTF-typed pointer and `offset` a constant to
/// the verifier (a `kmem::OFFSETS` or `TYPED_LOADS` field); the verifier refuses the
/// program otherwise.
#[inline(always)]
pub fn load<T: Copy>(base: *const u8, offset: u32) -> T {
    // SAFETY: the verifier checks the access against the kernel's BTF and the kernel makes it
    // fault-safe; nothing is written.
    unsafe { core::ptr::read_volatile(base.add(offset as usize) as *const T) }
}
