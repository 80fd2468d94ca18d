pub mod drops;
pub mod syscalls;
