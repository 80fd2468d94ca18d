//! Text for people and programs: the terminal tables of every command, CSV and SVG, the
//! OpenMetrics exposition, where JSON goes (`output`), the advisor's section (`advice`) and
//! `calibrate`'s cost model (`cost_model`). May use: model/, kernel/, probe/, attribute/,
//! advise/.
pub mod advice;
pub mod classic;
pub mod cost_model;
pub mod doctor;
pub mod export;
pub mod flamegraph;
pub mod metrics;
pub mod output;
pub mod stacks;
pub mod syscalls;
pub mod table;
pub mod top;
pub mod trace;
