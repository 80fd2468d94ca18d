//! The eBPF side seen from user space: the probe catalogue, loading the embedded objects,
//! choosing each probe's attach kind per tier and attaching it, reading (summing) the maps,
//! and doctor's attach checks. May use: model/, kernel/.
pub mod attach;
pub mod catalogue;
pub mod collect;
pub mod doctor;
pub mod footprint;
pub mod kfuncs;
pub mod loader;
pub mod prealloc;
pub mod session;
pub mod stack_maps;
