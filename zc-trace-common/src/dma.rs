//! DMA-API mappings: where the `dma:*` tracepoints keep their arguments on the running kernel,
//! and the per-device counters. Re-exported at the crate root.

use crate::Tally;

/// Where the `dma:*` tracepoints keep the arguments zc-trace reads, and the struct members
/// behind them, from the running kernel's BTF (the `btf_trace_dma_*` prototypes name their
/// parameters; their order changed between kernels). Argument indices count `TP_PROTO`
/// parameters from 0; [`DmaLayout::NO_ARG`] marks one the kernel does not pass. A zero `valid`
/// means only events are counted (no bytes, no direction).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DmaLayout {
    pub valid: u32,
    /// `dma_map_page` / `dma_map_phys` / `dma_map_resource`: the device, size and direction.
    pub map_dev_arg: u32,
    pub map_size_arg: u32,
    pub map_dir_arg: u32,
    /// `dma_map_sg`: the device, the list, its entry count and the direction.
    pub sg_dev_arg: u32,
    pub sg_list_arg: u32,
    pub sg_nents_arg: u32,
    pub sg_dir_arg: u32,
    /// `struct scatterlist`: `page_link` (chain/end bits), `length`, and its size (the stride
    /// of an array of them).
    pub sg_page_link: u32,
    pub sg_length: u32,
    pub sg_stride: u32,
    /// `struct device`: `driver` and `kobj.name`; `struct device_driver`: `name`.
    pub device_driver: u32,
    pub device_name: u32,
    pub driver_name: u32,
}

impl DmaLayout {
    pub const NO_ARG: u32 = 0xff;
    pub const EMPTY: DmaLayout = DmaLayout {
        valid: 0,
        map_dev_arg: Self::NO_ARG,
        map_size_arg: Self::NO_ARG,
        map_dir_arg: Self::NO_ARG,
        sg_dev_arg: Self::NO_ARG,
        sg_list_arg: Self::NO_ARG,
        sg_nents_arg: Self::NO_ARG,
        sg_dir_arg: Self::NO_ARG,
        sg_page_link: 0,
        sg_length: 0,
        sg_stride: 0,
        device_driver: 0,
        device_name: 0,
        driver_name: 0,
    };
}

/// `enum dma_data_direction`, as the kernel numbers it.
pub mod dma_dir {
    pub const BIDIRECTIONAL: u32 = 0;
    pub const TO_DEVICE: u32 = 1;
    pub const FROM_DEVICE: u32 = 2;
}

/// Entries of a scatterlist the `dma_map_sg` program walks at most (NVMe lists are far
/// shorter); a longer list's remaining bytes are counted in `DmaDevice::sg_truncated`.
pub const DMA_SG_MAX_WALK: u32 = 256;
/// Devices whose DMA-API mappings are counted system-wide.
pub const DMA_DEVICES_MAX_ENTRIES: u32 = 64;

/// Value of the `DMA_DEVICES` map (key: the `struct device *`): every DMA-API mapping of one
/// device while the programs are attached, whoever's context it was made in. Per-CPU.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DmaDevice {
    /// The bound driver's name (`e1000`, `nvme`) and the device's own (`0000:00:06.0`),
    /// NUL-padded.
    pub driver: [u8; 16],
    pub name: [u8; 32],
    pub to_device: Tally,
    pub from_device: Tally,
    pub bidirectional: Tally,
    pub segments: u64,
    /// Of all those bytes, the ones mapped in a traced process's context.
    pub traced_bytes: u64,
    /// `dma_map_sg` lists longer than [`DMA_SG_MAX_WALK`]: their bytes are undercounted.
    pub sg_truncated: u64,
    /// How many of the mappings were whole scatterlists (`dma_map_sg`).
    pub sg_lists: u64,
}

impl DmaDevice {
    pub const ZERO: DmaDevice = DmaDevice {
        driver: [0; 16],
        name: [0; 32],
        to_device: Tally { bytes: 0, calls: 0 },
        from_device: Tally { bytes: 0, calls: 0 },
        bidirectional: Tally { bytes: 0, calls: 0 },
        segments: 0,
        traced_bytes: 0,
        sg_truncated: 0,
        sg_lists: 0,
    };
}
