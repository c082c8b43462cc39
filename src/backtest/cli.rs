//! `prescale backtest`: flags, and the glue from a trace file to the report files and the terminal summary.

use std::path::PathBuf;

use anyhow::Context as _;
use chrono::TimeDelta;

use super::{write_outputs, PolicyName, Settings};
use crate::forecast::Quantile;

/// Flags of `prescale backtest`.
#[derive(Debug, Clone, clap::Args)]
pub struct BacktestArgs {
    /// Trace CSV (`timestamp,value`) to replay.
    #[arg(long, env = "PRESCALE_BACKTEST_TRACE")]
    pub trace: PathBuf,
    /// Cold-start lead times to simulate (multiples of 15 s), e.g. `--lead 2m --lead 5m` or `--lead 2m,5m,10m`.
    #[arg(long = "lead", env = "PRESCALE_BACKTEST_LEADS", value_delimiter = ',', default_value = "2m,5m,10m", value_parser = parse_lead)]
    pub leads: Vec<TimeDelta>,
    /// Directory for report.json, ticks/*.csv and chart_L*.svg (created if missing).
    #[arg(long, env = "PRESCALE_BACKTEST_OUT", default_value = "backtest-out")]
    pub out: PathBuf,
    /// Forecast quantile the predictive policy plans at, in (0, 1).
    #[arg(long, env = "PRESCALE_BACKTEST_QUANTILE", default_value = "0.9", value_parser = parse_quantile)]
    pub quantile: Quantile,
    /// How often the predictive policy refits its model on visible history.
    #[arg(long, env = "PRESCALE_BACKTEST_REFIT", default_value = "1h", value_parser = parse_positive)]
    pub refit: TimeDelta,
    /// Policies to run.
    #[arg(
        long,
        env = "PRESCALE_BACKTEST_POLICIES",
        value_delimiter = ',',
        default_value = "reactive,reactive-70,predictive,oracle"
    )]
    pub policies: Vec<PolicyName>,
    /// The predictive planner scales in only when observed demand allows it too.
    #[arg(long, env = "PRESCALE_BACKTEST_SCALE_IN_ON_OBSERVED_ONLY")]
    pub scale_in_on_observed_only: bool,
    /// Hide the progress bar (it is only drawn when stderr is a terminal anyway).
    #[arg(long, env = "PRESCALE_BACKTEST_QUIET")]
    pub quiet: bool,
}

fn parse_lead(s: &str) -> Result<TimeDelta, String> {
    crate::config::parse_duration(s)
}

fn parse_positive(s: &str) -> Result<TimeDelta, String> {
    let d = crate::config::parse_duration(s)?;
    if d <= TimeDelta::zero() {
        return Err(format!("`{s}` must be a positive duration, e.g. 1h"));
    }
    Ok(d)
}

fn parse_quantile(s: &str) -> Result<Quantile, String> {
    let q: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number; write e.g. 0.9"))?;
    Quantile::try_new(q)
}

/// Runs a backtest from CLI flags (synchronous: call it outside an async runtime, or in `spawn_blocking`).
///
/// Loads the trace, runs every policy at every lead time, writes the outputs into `--out`, and prints the summary
/// table and the list of files to stdout.
pub fn run_cli(args: BacktestArgs) -> anyhow::Result<()> {
    let BacktestArgs {
        trace,
        leads,
        out,
        quantile,
        refit,
        policies,
        scale_in_on_observed_only,
        quiet,
    } = args;
    let series = crate::history::trace::load(&trace)?;
    let name = trace
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "trace".into());
    let mut policies = policies;
    policies.sort();
    policies.dedup();
    let settings = Settings {
        leads,
        quantile,
        refit_interval: refit,
        policies,
        capacity: None,
        scale_in_on_observed_only,
        progress: !quiet,
    };
    let started = std::time::Instant::now();
    let report = super::run(&series, &name, &settings).with_context(|| format!("backtest of {}", trace.display()))?;
    let files = write_outputs(&report, &out)?;
    print!("{}", report.summary());
    println!(
        "wrote {} files to {} in {:.1} s",
        files.len(),
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
