//! Counters -> rows: each row's copy cells and their evidence, DMA, the strategy a process's
//! activity looks like, corrections (zero-copy completions, copies at transmit), flows, the
//! syscall report's rows, and the classic model's comparison. Pure code on what `probe/`
//! read. May use: model/, kernel/, probe/.
pub mod classic;
pub mod corrections;
pub mod dma;
pub mod flows;
pub mod groups;
pub mod row;
pub mod sources;
pub mod stacks;
pub mod strategy;
pub mod syscalls;
