//! zc-trace's kernel programs. One module per probe family; every counter lives in a per-CPU map
//! so that hot paths never contend on a cache line and user space only reads totals.
#![no_std]
#![no_main]

mod filter;
mod kmem;
mod maps;
mod probes;
mod stats;
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
