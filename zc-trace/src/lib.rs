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
#[path = "attribute/row.rs"]
pub mod attribute;
#[path = "kernel/btf.rs"]
pub mod btf_offsets;
pub mod cli;
#[path = "probe/collect.rs"]
pub mod collect;
pub mod commands;
#[path = "probe/doctor.rs"]
pub mod doctor;
#[path = "model/evidence.rs"]
pub mod evidence;
#[path = "model/exit.rs"]
pub mod exit;
#[path = "render/export.rs"]
pub mod export;
#[path = "attribute/flows.rs"]
pub mod flows;
#[path = "kernel/facts.rs"]
pub mod kernel;
#[path = "render/table.rs"]
pub mod lab;
#[path = "probe/loader.rs"]
pub mod loader;
#[path = "render/metrics.rs"]
pub mod metrics;
#[path = "attribute/classic.rs"]
pub mod model;
#[path = "render/output.rs"]
pub mod output;
#[path = "kernel/privileges.rs"]
pub mod privileges;
#[path = "probe/catalogue.rs"]
pub mod probes;
#[path = "model/report.rs"]
pub mod report;
#[path = "probe/session.rs"]
pub mod session;
#[path = "kernel/syscall_names.rs"]
pub mod syscall_names;
#[path = "kernel/syscall_table.rs"]
pub mod syscall_table;
#[path = "kernel/target.rs"]
pub mod target;
#[path = "render/trace.rs"]
pub mod trace_table;
pub mod workloads;
