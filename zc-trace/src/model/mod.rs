//! Plain data every layer shares: a row and its cells, the evidence each figure rests on, what
//! the probes did (tier, status, drops), the classic model's table, the JSON report types and
//! the exit codes. Pure code, no I/O. May use: nothing else in the crate (the bottom layer).
pub mod classic;
pub mod doctor;
pub mod evidence;
pub mod exit;
pub mod report;
pub mod row;
pub mod run;
pub mod stacks;
