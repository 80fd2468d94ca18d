// The eBPF object is linked by `bpf-linker`, which cargo knows nothing about. Rebuild when the
// linker binary changes so that an upgraded linker is not silently ignored.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
