//! `--advise` on `trace` and `lab`: the advisor's answer for each row of a report, beside the
//! report (the advisor is a layer above the report's model, so its answer is put next to the
//! report here rather than inside its rows).
use serde::Serialize;

use crate::{
    advise::{
        self,
        advice::Advice,
        cost::{CostModel, LoadedCostModel},
    },
    cli::AdviseArgs,
    model::report::AttributionReport,
    render,
};

/// A report with the advice for its rows: the report's JSON fields, plus `advice`.
#[derive(Debug, Serialize)]
pub struct Advised<'a> {
    #[serde(flatten)]
    pub report: &'a AttributionReport,
    pub advice: &'a [RowAdvice],
}

/// The advice for one row.
#[derive(Debug, Clone, Serialize)]
pub struct RowAdvice {
    pub pid: u32,
    pub comm: String,
    pub strategy: String,
    pub advice: Vec<Advice>,
}

/// The cost model `--advise` prices with: `--cost-model FILE`, else the default one if
/// `zc-trace calibrate` has measured it. A default model that cannot be read is said and
/// left out (the advice is then unpriced); a named one that cannot be read is an error.
pub fn cost_model(args: &AdviseArgs) -> anyhow::Result<Option<LoadedCostModel>> {
    match &args.cost_model {
        Some(path) => Ok(Some(CostModel::load(path)?)),
        None => Ok(CostModel::load_default().unwrap_or_else(|e| {
            eprintln!("zc-trace: {e:#}; the advice is unpriced");
            None
        })),
    }
}

/// The advice for every row of `report` that has any flow.
pub fn advise(report: &AttributionReport, model: Option<&LoadedCostModel>) -> Vec<RowAdvice> {
    report
        .rows
        .iter()
        .filter(|row| !row.flows.is_empty())
        .map(|row| RowAdvice {
            pid: row.pid,
            comm: row.comm.clone(),
            strategy: row.strategy.clone(),
            advice: advise::advise(row, model),
        })
        .collect()
}

/// The advice section of the terminal report: the rows that have advice.
pub fn render_text(advice: &[RowAdvice]) -> String {
    let with_advice: Vec<&RowAdvice> = advice.iter().filter(|r| !r.advice.is_empty()).collect();
    if with_advice.is_empty() {
        return "\nAdvice: nothing to advise: no flow costs CPU copies that another strategy removes\n".into();
    }
    let mut out = String::new();
    for row in with_advice {
        out += &format!("\nPID {} ({}), strategy {}: ", row.pid, row.comm, row.strategy);
        out += &render::advice::table(&row.advice);
    }
    out
}
