//! Text for people and programs: the terminal tables of every command, CSV and SVG, the
//! OpenMetrics exposition, and where JSON goes (`output`). May use: model/, kernel/, probe/,
//! attribute/.
pub mod classic;
pub mod doctor;
pub mod export;
pub mod metrics;
pub mod output;
pub mod syscalls;
pub mod table;
pub mod trace;
