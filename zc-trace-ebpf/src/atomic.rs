//! Atomic adds to counters that every CPU may update at once (shared map values).

/// Adds `n` to `*counter` with BPF_ATOMIC | BPF_ADD. Rust offers no `fetch_add` on the BPF
/// target (it has no compare-and-swap), hence the instruction itself.
///
/// # Safety
/// `counter` points to a u64 in a map value (8-byte aligned), alive for the program's run.
#[inline(always)]
pub unsafe fn add(counter: *mut u64, n: u64) {
    unsafe { core::arch::asm!("lock *(u64 *)({0} + 0) += {1}", in(reg) counter, in(reg) n) };
}
