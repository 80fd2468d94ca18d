//! The priced advisor. For each flow of a report row that costs CPU copies and has a better
//! strategy: which one, what the switch removes (copies, syscalls, mode switches, computed
//! from the flow's measured bytes and calls) and, with a cost model measured on this machine
//! by `zc-trace calibrate`, the CPU time that saves; then whether it pays, and why (see
//! docs/advice.md).
//!
//! `cost` is the model (stored as JSON, interpolated by chunk size), `advice` the answer's
//! types and fixed vocabulary, `rules` the decisions. May use: model/, kernel/, attribute/
//! (and any layer below).
pub mod advice;
pub mod cost;
pub mod rules;

pub use rules::advise;
