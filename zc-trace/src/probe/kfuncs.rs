//! The one kfunc the counting programs call, `bpf_rdonly_cast` (typed loads, see
//! `zc_trace_common::TypedLoads`). aya cannot emit kfunc calls (it has no `.ksyms`
//! relocations), so the programs call a placeholder helper number and this module rewrites
//! each such call in the object before aya reads it:
//! - typed loads on: into a kfunc call (`src_reg` BPF_PSEUDO_KFUNC_CALL, `imm` the kfunc's id
//!   in the running kernel's vmlinux BTF);
//! - off: into `r0 = r1`, which the programs never reach on that path (the verifier drops
//!   the branch, `TYPED_LOADS.enabled` being a constant), but which would be harmless if run.

use std::borrow::Cow;

use anyhow::Context as _;
use object::{Object as _, ObjectSection as _, SectionKind};
use zc_trace_common::RDONLY_CAST_PLACEHOLDER;

/// `BPF_JMP | BPF_CALL`.
const CALL: u8 = 0x85;
/// `BPF_ALU64 | BPF_MOV | BPF_X`.
const MOV64_REG: u8 = 0xbf;
/// `src_reg` of a call to a kernel function by BTF id.
const PSEUDO_KFUNC_CALL: u8 = 2;
const INSN_SIZE: usize = 8;

/// `object` with every placeholder call rewritten: into a call of the kfunc whose vmlinux BTF
/// id is `kfunc`, or (`None`) into a register move. Borrowed unchanged when it has none.
pub fn patch_rdonly_cast(object: &[u8], kfunc: Option<u32>) -> anyhow::Result<Cow<'_, [u8]>> {
    let sites = placeholder_calls(object)?;
    if sites.is_empty() {
        return Ok(Cow::Borrowed(object));
    }
    let mut out = object.to_vec();
    for at in sites {
        let insn = &mut out[at..at + INSN_SIZE];
        match kfunc {
            Some(id) => {
                insn[1] = PSEUDO_KFUNC_CALL << 4; // dst_reg 0 (low nibble), src_reg high
                insn[2..4].copy_from_slice(&0i16.to_le_bytes()); // off 0: vmlinux, not a module
                insn[4..8].copy_from_slice(&(id as i32).to_le_bytes());
            }
            None => {
                insn[0] = MOV64_REG;
                insn[1] = 1 << 4; // r0 = r1
                insn[2..8].fill(0);
            }
        }
    }
    Ok(Cow::Owned(out))
}

/// File offsets of the placeholder calls in the object's code sections.
fn placeholder_calls(object: &[u8]) -> anyhow::Result<Vec<usize>> {
    let file = object::File::parse(object).context("parsing the eBPF object")?;
    if !file.is_little_endian() {
        anyhow::bail!("the eBPF object is big-endian: placeholder calls are only rewritten in little-endian code");
    }
    let mut sites = Vec::new();
    for section in file.sections().filter(|s| s.kind() == SectionKind::Text) {
        let Some((start, size)) = section.file_range() else { continue };
        let (start, size) = (start as usize, size as usize);
        for at in (start..start + size).step_by(INSN_SIZE) {
            let insn = object.get(at..at + INSN_SIZE).context("a code section runs past the end of the object")?;
            let imm = u32::from_le_bytes(insn[4..8].try_into().expect("4 bytes"));
            // A helper call (src_reg 0) to the placeholder number.
            if insn[0] == CALL && insn[1] >> 4 == 0 && imm == RDONLY_CAST_PLACEHOLDER {
                sites.push(at);
            }
        }
    }
    Ok(sites)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::loader;

    /// The embedded object has the placeholder calls (the syscall programs use typed loads),
    /// and both rewrites leave none, change nothing else, and write what the kernel expects.
    #[test]
    fn every_placeholder_call_is_rewritten_and_nothing_else() {
        let Ok(object) = loader::probes_object() else {
            eprintln!("built without eBPF programs: nothing to check");
            return;
        };
        let sites = placeholder_calls(object).unwrap();
        assert!(!sites.is_empty(), "the counting programs call bpf_rdonly_cast");
        for kfunc in [Some(0x1234_5678u32), None] {
            let patched = patch_rdonly_cast(object, kfunc).unwrap();
            assert_eq!(patched.len(), object.len());
            assert!(placeholder_calls(&patched).unwrap().is_empty());
            for at in 0..object.len() {
                if !sites.iter().any(|&s| (s..s + INSN_SIZE).contains(&at)) {
                    assert_eq!(patched[at], object[at], "byte {at} changed");
                }
            }
            let insn = &patched[sites[0]..sites[0] + INSN_SIZE];
            match kfunc {
                Some(id) => assert_eq!(insn, [CALL, 0x20, 0, 0, 0x78, 0x56, 0x34, 0x12], "call kfunc {id:#x}"),
                None => assert_eq!(insn, [MOV64_REG, 0x10, 0, 0, 0, 0, 0, 0]),
            }
        }
    }
}
