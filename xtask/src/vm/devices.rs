//! The guest's devices for the DMA story (docs/dma.md, docs/vm-test.md): an emulated
//! NVMe disk holding an ext4 file system (the lab's TMPDIR, so its source file is read from a
//! real disk through the page cache), and two emulated e1000 NICs joined by a QEMU hub, the
//! second moved into a network namespace inside the guest as the receiving host. Their
//! drivers use the DMA API, so `dma:*` fires for every disk read and every transmitted
//! buffer. No network backend other than the hub: nothing leaves QEMU.
use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use super::{
    debian::{Kernel, find_module},
    progress::say,
};
use crate::setup;

/// PCI slots, fixed so that the guest (and the checks) can tell the devices apart by name:
/// `dma:*` events name a device by its PCI address.
pub const NVME_PCI: &str = "0000:00:05.0";
pub const TX_NIC_PCI: &str = "0000:00:06.0";
pub const RX_NIC_PCI: &str = "0000:00:07.0";
/// Interface names the guest gives the two NICs.
pub const TX_NIC: &str = "zctx";
pub const RX_NIC: &str = "zcrx";
pub const TX_ADDR: &str = "10.0.0.1";
pub const RX_ADDR: &str = "10.0.0.2";
/// The receiving host's network namespace, bound here as `ip netns add` would.
pub const RX_NETNS: &str = "/run/netns/rx";
/// Where the NVMe file system is mounted; the checks run with TMPDIR there.
pub const DISK_MOUNT: &str = "/mnt/nvme";

/// Modules the devices need; their dependencies are added from each module's `.modinfo`
/// (the .deb has no modules.dep: depmod runs at install). ext4 (and jbd2) ask the crypto API
/// for "crc32c" at mount time, a soft dependency that only modprobe would resolve: its
/// generic implementation is loaded first.
const MODULES: &[&str] = &["nvme", "crc32c_generic", "ext4", "e1000"];

/// QEMU options for the three devices.
pub fn qemu_args(disk: &Path) -> Vec<String> {
    let slot = |pci: &str| format!("addr=0x{}", &pci[8..10]);
    vec![
        "-drive".into(),
        format!("file={},if=none,id=d0,format=raw", disk.display()),
        "-device".into(),
        format!("nvme,drive=d0,serial=zc1,{}", slot(NVME_PCI)),
        // A hub: two ports, one NIC on each; the guest's traffic goes from one to the other.
        "-netdev".into(),
        "hubport,id=h0,hubid=0".into(),
        "-device".into(),
        format!("e1000,netdev=h0,mac=52:54:00:00:00:01,{}", slot(TX_NIC_PCI)),
        "-netdev".into(),
        "hubport,id=h1,hubid=0".into(),
        "-device".into(),
        format!("e1000,netdev=h1,mac=52:54:00:00:00:02,{}", slot(RX_NIC_PCI)),
    ]
}

/// A sparse raw disk image with an empty ext4 file system, made on the host.
pub fn make_disk(work: &Path) -> anyhow::Result<PathBuf> {
    let disk = work.join("disk.img");
    let _ = fs::remove_file(&disk);
    fs::File::create(&disk)?.set_len(128 << 20)?;
    if !Path::new("/sbin/mkfs.ext4").exists() && !Path::new("/usr/sbin/mkfs.ext4").exists() {
        say("installing e2fsprogs (mkfs.ext4 for the guest's NVMe disk)");
        setup::apt_install(&["e2fsprogs"])?;
    }
    crate::run::run_cmd({
        let mut cmd = Command::new("mkfs.ext4");
        cmd.args(["-q", "-F", "-L", "zc-nvme", "-E", "lazy_itable_init=0,lazy_journal_init=0"]).arg(&disk);
        cmd
    })?;
    Ok(disk)
}

/// The modules to insmod, dependencies first, each once.
pub(super) fn modules_in_load_order(kernel: &Kernel) -> anyhow::Result<Vec<String>> {
    let mut order = Vec::new();
    let mut visiting = BTreeSet::new();
    for name in MODULES {
        add_with_deps(kernel, name, &mut order, &mut visiting)?;
    }
    Ok(order)
}

fn add_with_deps(
    kernel: &Kernel,
    name: &str,
    order: &mut Vec<String>,
    visiting: &mut BTreeSet<String>,
) -> anyhow::Result<()> {
    let name = name.replace('_', "-");
    if order.contains(&name) || !visiting.insert(name.clone()) {
        return Ok(());
    }
    for dep in module_depends(&find_module(kernel, &name)?)? {
        add_with_deps(kernel, &dep, order, visiting)?;
    }
    order.push(name);
    Ok(())
}

/// The `depends=` entry of a module's `.modinfo` (NUL-separated `key=value` strings).
fn module_depends(path: &Path) -> anyhow::Result<Vec<String>> {
    let bytes = module_bytes(path)?;
    let key = b"\0depends=";
    let Some(at) = bytes.windows(key.len()).position(|w| w == key) else { return Ok(Vec::new()) };
    let value = &bytes[at + key.len()..];
    let value = &value[..value.iter().position(|&b| b == 0).unwrap_or(value.len())];
    Ok(String::from_utf8_lossy(value).split(',').filter(|s| !s.is_empty()).map(String::from).collect())
}

/// A module's ELF bytes (Debian xz-compresses most).
pub fn module_bytes(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.extension().is_some_and(|e| e == "xz") {
        let out = Command::new("xz").arg("-dc").arg(path).output().context("running xz")?;
        if !out.status.success() {
            bail!("xz -dc {} failed ({})", path.display(), out.status);
        }
        return Ok(out.stdout);
    }
    Ok(fs::read(path)?)
}

/// The /init lines that bring the devices up, after the modules are loaded: mount the NVMe
/// file system as TMPDIR, name the NICs by PCI slot, move the receiving one into a network
/// namespace held by a sleeping process, address both, and wait until they reach each other.
/// Any failure is printed and left to the checks to report.
pub fn init_lines() -> String {
    format!(
        r#"
# --- devices (xtask/src/vm/devices.rs) ---
wait_for() {{ i=0; while ! eval "$1"; do i=$((i+1)); [ $i -gt 100 ] && return 1; sleep 0.1; done; }}
mkdir -p {mount}
if wait_for '[ -b /dev/nvme0n1 ]' && mount -t ext4 /dev/nvme0n1 {mount}; then
    export TMPDIR={mount}
else
    echo "zc-vm: no NVMe file system; TMPDIR stays /tmp"
fi
for d in /sys/class/net/*; do
    case "$(readlink $d/device)" in
        *{tx_pci}) ip link set ${{d##*/}} name {tx} ;;
        *{rx_pci}) ip link set ${{d##*/}} name {rx} ;;
    esac
done
ip addr add {tx_addr}/24 dev {tx} && ip link set {tx} up
unshare -n sleep 1000000 &
NSPID=$!
wait_for '[ "$(readlink /proc/$NSPID/ns/net)" != "$(readlink /proc/self/ns/net)" ]'
mkdir -p /run/netns && touch {netns} && mount --bind /proc/$NSPID/ns/net {netns}
ip link set {rx} netns $NSPID
nsenter -t $NSPID -n sh -c 'ip link set lo up; ip addr add {rx_addr}/24 dev {rx}; ip link set {rx} up'
wait_for 'ping -c 1 -W 1 {rx_addr} >/dev/null 2>&1' || echo "zc-vm: {rx_addr} does not answer over the e1000 hub"
"#,
        mount = DISK_MOUNT,
        tx_pci = TX_NIC_PCI,
        rx_pci = RX_NIC_PCI,
        tx = TX_NIC,
        rx = RX_NIC,
        tx_addr = TX_ADDR,
        rx_addr = RX_ADDR,
        netns = RX_NETNS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_sit_in_the_pci_slots_the_guest_looks_for() {
        let args = qemu_args(Path::new("/tmp/d.img")).join(" ");
        assert!(args.contains("nvme,drive=d0,serial=zc1,addr=0x05"));
        assert!(args.contains("netdev=h0,mac=52:54:00:00:00:01,addr=0x06"));
        assert!(args.contains("netdev=h1,mac=52:54:00:00:00:02,addr=0x07"));
        assert!(!args.contains("user") && !args.contains("tap"), "only the hub: nothing leaves QEMU");
    }
}
