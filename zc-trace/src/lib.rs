//! zc-trace: measures where a program's bytes get copied.
//!
//! The binary is a thin shell over these modules:
//! - [`cli`]: the command line (clap) and value parsing;
//! - [`privileges`], [`kernel`]: what the running kernel and our credentials allow;
//! - [`loader`]: the embedded eBPF objects and how they are loaded;
//! - [`doctor`]: attach-kind and copy-site checks by really loading programs;
//! - [`target`]: the process being traced (an existing PID or a spawned command);
//! - [`session`], [`collect`]: attaching the counting programs and reading their counters;
//! - [`workloads`]: one real implementation per copy strategy, for the lab;
//! - [`evidence`]: where each figure came from, as a value with a fixed vocabulary;
//! - [`syscall_names`], [`report`]: turning counts into tables and JSON;
//! - [`commands`]: one function per subcommand, gluing the above together.
pub mod attribute;
pub mod btf_offsets;
pub mod cli;
pub mod collect;
pub mod commands;
pub mod doctor;
pub mod evidence;
pub mod exit;
pub mod export;
pub mod flows;
pub mod kernel;
pub mod lab;
pub mod loader;
pub mod metrics;
pub mod model;
pub mod output;
pub mod privileges;
pub mod probes;
pub mod report;
pub mod session;
pub mod syscall_names;
pub mod syscall_table;
pub mod target;
pub mod trace_table;
pub mod workloads;
