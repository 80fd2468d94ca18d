#![no_std]
// Empty library target: zc-trace build-depends on this crate so that cargo rebuilds the
// embedded eBPF object when the kernel-side sources change. The programs are the binaries.
