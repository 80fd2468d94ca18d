//! Test-only: makes the CPU it runs on spin in the kernel for minutes, so that the kernel's
//! soft-lockup watchdog fires. `cargo xtask vm-test --break-guest lockup` runs it in a guest
//! to show that vm-test notices a stuck kernel within seconds. Never run it on a host you
//! care about.
//!
//! How: a socket-filter BPF program, written here instruction by instruction, calls
//! `bpf_loop` (Linux 5.17+) a million times from a callback that itself calls `bpf_loop`
//! 8 million times; BPF_PROG_TEST_RUN runs it once in this process's context with
//! migration disabled, and nothing inside it can schedule. The watchdog threshold is set to
//! 1 s first (a soft lockup is reported after twice that).
use std::io::Write as _;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_BTF_LOAD: libc::c_long = 18;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
const BPF_FUNC_LOOP: i32 = 181;
const BPF_PSEUDO_FUNC: u8 = 4;

/// One `struct bpf_insn`: opcode, dst and src registers, offset, immediate.
fn insn(code: u8, dst: u8, src: u8, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = dst | (src << 4);
    b[4..8].copy_from_slice(&imm.to_le_bytes());
    b
}

const MOV64_IMM: u8 = 0xb7;
const LD_IMM64: u8 = 0x18;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;

/// `bpf_loop(iterations, callback 6 instructions after the ld_imm64's second half, 0, 0)`,
/// then return 0: the body of the program and of the outer callback (8 instructions).
fn loop_calling_next(iterations: i32) -> Vec<[u8; 8]> {
    vec![
        insn(MOV64_IMM, 1, 0, iterations),
        insn(LD_IMM64, 2, BPF_PSEUDO_FUNC, 6),
        insn(0, 0, 0, 0),
        insn(MOV64_IMM, 3, 0, 0),
        insn(MOV64_IMM, 4, 0, 0),
        insn(CALL, 0, 0, BPF_FUNC_LOOP),
        insn(MOV64_IMM, 0, 0, 0),
        insn(EXIT, 0, 0, 0),
    ]
}

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> i64 {
    // SAFETY: attr is a zeroed bpf_attr-sized buffer filled for `cmd`.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) }
}

fn put(attr: &mut [u8; 128], at: usize, bytes: &[u8]) {
    attr[at..at + bytes.len()].copy_from_slice(bytes);
}

/// The least BTF the verifier takes for a program with subprograms: `int` and a prototype
/// `int (void)`, and one static FUNC per subprogram (`main`, `outer`, `inner`: type ids 3-5).
fn btf() -> Vec<u8> {
    let strings = b"\0int\0main\0outer\0inner\0";
    let (int, main, outer, inner) = (1u32, 5u32, 10u32, 16u32);
    const INT: u32 = 1 << 24;
    const FUNC: u32 = 12 << 24;
    const FUNC_PROTO: u32 = 13 << 24;
    let words: [u32; 14] = [
        int,
        INT,
        4,
        (1 << 24) | 32, // 1: int, signed, 32 bits
        0,
        FUNC_PROTO,
        1, // 2: int (void)
        main,
        FUNC,
        2, // 3
        outer,
        FUNC,
        2, // 4
        inner,
    ];
    let mut types: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    types.extend([FUNC, 2].iter().flat_map(|w: &u32| w.to_le_bytes())); // 5
    let mut blob = Vec::new();
    blob.extend(0xeb9f_u16.to_le_bytes());
    blob.extend([1u8, 0]); // version, flags
    for word in [24u32, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
        blob.extend(word.to_le_bytes()); // hdr_len, type_off, type_len, str_off, str_len
    }
    blob.extend(types);
    blob.extend(strings);
    blob
}

fn load_btf() -> i64 {
    let blob = btf();
    let mut log = vec![0u8; 16 * 1024];
    let mut attr = [0u8; 128];
    put(&mut attr, 0, &(blob.as_ptr() as u64).to_le_bytes());
    put(&mut attr, 8, &(log.as_mut_ptr() as u64).to_le_bytes());
    put(&mut attr, 16, &(blob.len() as u32).to_le_bytes());
    put(&mut attr, 20, &(log.len() as u32).to_le_bytes());
    put(&mut attr, 24, &1u32.to_le_bytes());
    let fd = bpf(BPF_BTF_LOAD, &mut attr);
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        eprintln!("zc-spin-in-kernel: BPF_BTF_LOAD: {err}\n{}", String::from_utf8_lossy(&log[..end]));
        std::process::exit(1);
    }
    fd
}

fn main() {
    let _ = std::fs::write("/proc/sys/kernel/watchdog_thresh", "1");
    let mut program = loop_calling_next(1_000_000);
    program.extend(loop_calling_next(1 << 23));
    // The inner callback: return 0 (go on looping).
    program.push(insn(MOV64_IMM, 0, 0, 0));
    program.push(insn(EXIT, 0, 0, 0));
    let code: Vec<u8> = program.concat();
    let license = c"GPL";
    let mut log = vec![0u8; 64 * 1024];

    let btf_fd = load_btf();
    // (instruction offset, FUNC type id) of each subprogram.
    let func_info: Vec<u8> = [(0u32, 3u32), (8, 4), (16, 5)]
        .iter()
        .flat_map(|(at, id)| [at.to_le_bytes(), id.to_le_bytes()])
        .flatten()
        .collect();
    let mut attr = [0u8; 128];
    put(&mut attr, 0, &BPF_PROG_TYPE_SOCKET_FILTER.to_le_bytes());
    put(&mut attr, 4, &(program.len() as u32).to_le_bytes());
    put(&mut attr, 8, &(code.as_ptr() as u64).to_le_bytes());
    put(&mut attr, 16, &(license.as_ptr() as u64).to_le_bytes());
    put(&mut attr, 24, &1u32.to_le_bytes());
    put(&mut attr, 28, &(log.len() as u32).to_le_bytes());
    put(&mut attr, 32, &(log.as_mut_ptr() as u64).to_le_bytes());
    put(&mut attr, 72, &(btf_fd as u32).to_le_bytes());
    put(&mut attr, 76, &8u32.to_le_bytes());
    put(&mut attr, 80, &(func_info.as_ptr() as u64).to_le_bytes());
    put(&mut attr, 88, &3u32.to_le_bytes());
    let fd = bpf(BPF_PROG_LOAD, &mut attr);
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        eprintln!("zc-spin-in-kernel: BPF_PROG_LOAD: {err}\n{}", String::from_utf8_lossy(&log[..end]));
        std::process::exit(1);
    }

    println!("spinning in the kernel (BPF_PROG_TEST_RUN of nested bpf_loop)");
    let _ = std::io::stdout().flush();
    // A packet the size of an Ethernet header: the least an skb test run takes.
    let packet = [0u8; 64];
    let mut attr = [0u8; 128];
    put(&mut attr, 0, &(fd as u32).to_le_bytes());
    put(&mut attr, 8, &(packet.len() as u32).to_le_bytes());
    put(&mut attr, 16, &(packet.as_ptr() as u64).to_le_bytes());
    put(&mut attr, 32, &1u32.to_le_bytes());
    if bpf(BPF_PROG_TEST_RUN, &mut attr) < 0 {
        eprintln!("zc-spin-in-kernel: BPF_PROG_TEST_RUN: {}", std::io::Error::last_os_error());
        std::process::exit(1);
    }
    // Reached only if the kernel ran 8e12 iterations: it did not lock up after all.
    println!("the program returned");
}
