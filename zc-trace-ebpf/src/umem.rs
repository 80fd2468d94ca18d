//! Reading user memory (a syscall's iovecs, msghdrs, control messages) at syscall exit.

use aya_ebpf::helpers::generated;

/// A `T` of user memory at `addr`, or zeroes where it cannot be read (the helper clears its
/// destination on failure): no branch, so the verifier's paths do not split per read.
#[inline(always)]
pub fn user<T: Copy + Default>(addr: u64) -> T {
    let mut v = T::default();
    read_user(&mut v as *mut T as *mut u8, core::mem::size_of::<T>() as u32, addr);
    v
}

/// Reads `size` bytes of user memory at `addr` into `dst` (zeroes where unreadable).
#[inline(always)]
pub fn read_user(dst: *mut u8, size: u32, addr: u64) {
    // SAFETY: the callers' destinations hold at least `size` bytes.
    unsafe { generated::bpf_probe_read_user(dst as *mut core::ffi::c_void, size, addr as *const core::ffi::c_void) };
}
