//! zc-trace's kernel programs. One module per probe family. Counters live in per-CPU maps so
//! that hot paths never contend on a cache line, except the wide per-process records of
//! several traced processes, which are shared and added to atomically (stats.rs): per CPU,
//! they would cost hundreds of MiB on a large host. User space only reads totals.
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]

mod atomic;
mod filter;
mod kmem;
mod maps;
mod probes;
mod stats;
mod typed;
mod umem;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// GPL-compatible: bpf_probe_read_kernel and the tracing helpers are GPL-only.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
