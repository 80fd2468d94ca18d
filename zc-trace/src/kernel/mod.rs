//! The running kernel and its processes as user space sees them, known before any probe is
//! loaded: release, lockdown, PID namespace, this process's privileges, the kernel's BTF
//! (btf-rs, plus a one-pass index of type names), syscall names and table, and the target
//! process (a PID, or a command held until attached, through pidfd and fork), and the signals
//! that stop zc-trace (from a signalfd, with who sent them). May use: model/.
pub mod btf;
pub mod cgroups;
pub mod facts;
pub mod pidns;
pub mod privileges;
pub mod signals;
pub mod symbols;
pub mod syscall_names;
pub mod syscall_table;
pub mod target;
