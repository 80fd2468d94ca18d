//! zc-trace: measures where a program's bytes get copied.
//!
//! The binary is a thin shell over layers whose imports point one way, down this list (each
//! folder's `mod.rs` says what it owns; `docs/ARCHITECTURE.md` draws them; `tests/layers.rs`
//! fails on an import that goes up):
//! - [`commands`]: one function per subcommand, glue only;
//! - [`cli`]: the command line (clap) and value parsing;
//! - [`workloads`]: one real implementation per copy strategy, the sinks, the lab's harness;
//! - [`render`]: terminal tables, CSV/SVG, OpenMetrics, JSON output;
//! - [`advise`]: the priced advisor (a flow's better strategy, what it removes, and the CPU
//!   time that saves by the cost model `zc-trace calibrate` measures);
//! - [`attribute`]: counters -> rows (copy cells and their evidence, DMA, strategy,
//!   corrections, flows, the classic model's comparison);
//! - [`probe`]: the probe catalogue, loading, attaching per tier, reading the maps, doctor;
//! - [`kernel`]: what the running kernel and our credentials allow, BTF, syscall names and
//!   table, the target process;
//! - [`model`]: plain data (rows, evidence, probe status, tier, report types, exit codes).
pub mod advise;
pub mod attribute;
pub mod cli;
pub mod commands;
pub mod kernel;
pub mod model;
pub mod probe;
pub mod render;
pub mod workloads;
