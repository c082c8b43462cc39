//! Writing a report to disk: the JSON, the per-tick CSVs and the charts.

use std::path::{Path, PathBuf};

use super::chart;
use super::report::{ticks_csv, PolicyRun, Report, SloResult};
use super::BacktestError;

/// Writes `report.json`, `ticks/<run>.csv` per run ([`PolicyRun::file_stem`]), and per lead time `chart_L<lead>.svg`
/// and, when the frontier ran, `frontier_L<lead>.svg` into `dir`.
///
/// Returns the files written.
pub fn write_outputs(report: &Report, dir: &Path) -> Result<Vec<PathBuf>, BacktestError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BacktestError::Output { path, source }
    };
    let ticks_dir = dir.join("ticks");
    std::fs::create_dir_all(&ticks_dir).map_err(io(&ticks_dir))?;
    let mut written = Vec::new();
    let json_path = dir.join("report.json");
    let json = serde_json::to_string_pretty(report).expect("report serializes");
    std::fs::write(&json_path, json + "\n").map_err(io(&json_path))?;
    written.push(json_path);
    let several = report.several_slos();
    for run in &report.runs {
        let path = ticks_dir.join(format!("{}.csv", run.file_stem(several)));
        std::fs::write(&path, ticks_csv(&run.ticks)).map_err(io(&path))?;
        written.push(path);
    }
    for &lead in &report.settings.leads_seconds {
        let runs: Vec<&PolicyRun> = report.runs.iter().filter(|r| r.lead_seconds == lead).collect();
        let Some(first) = runs.first() else { continue };
        let path = dir.join(format!("chart_L{}.svg", first.lead));
        let svg = chart::svg(
            &report.trace,
            &first.lead,
            report.settings.capacity_per_replica,
            &runs,
            several,
        );
        std::fs::write(&path, svg).map_err(io(&path))?;
        written.push(path);
        if let Some(f) = report.frontier_at(lead) {
            let path = dir.join(format!("frontier_L{}.svg", f.lead));
            let results: Vec<&SloResult> = report.slo_results.iter().filter(|r| r.lead_seconds == lead).collect();
            std::fs::write(&path, chart::frontier_svg(&report.trace, f, &runs, &results)).map_err(io(&path))?;
            written.push(path);
        }
    }
    Ok(written)
}
