//! `prescale backtest`: flags, and the glue from a trace file, or from the workloads of a config file and their
//! demand history, to the report files, the terminal summary and the published summaries.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};

use super::publish::{self, BacktestSummary, ConfigMapRef};
use super::{write_outputs, PolicyName, Settings, TICK};
use crate::config::{Config, DemandSource, WorkloadConfig};
use crate::control::policy::{ScaleIn, Utilization};
use crate::forecast::Quantile;
use crate::history::prometheus::{PromQuery, PrometheusClient, PrometheusSettings};
use crate::history::trace::Replay;
use crate::history::History;

/// Lead times of a `--trace` run when `--lead` is not given.
const DEFAULT_LEADS: [TimeDelta; 3] = [TimeDelta::minutes(2), TimeDelta::minutes(5), TimeDelta::minutes(10)];
/// History fetched before `--from` so the scored window starts at `--from`: the protocol's warm-up for traces of
/// 7 days or more.
pub const WARM_UP: TimeDelta = TimeDelta::days(7);

/// Where a backtest of configured workloads gets its clients: the composition root builds them
/// ([`crate::app::Connector`]), so that every client of the process is configured in one place.
pub trait Connect {
    /// The Prometheus client for the config's `prometheus:` section.
    fn prometheus(&self, settings: &PrometheusSettings) -> anyhow::Result<PrometheusClient>;
    /// The Kubernetes client `--publish-configmap` writes with (in-cluster, or `KUBECONFIG`).
    fn kubernetes(&self) -> futures::future::BoxFuture<'_, anyhow::Result<kube::Client>>;
}

/// Flags of `prescale backtest`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["trace", "config"])))]
pub struct BacktestArgs {
    /// Trace CSV (`timestamp,value`) to replay. Either this or `--config`.
    #[arg(long, env = "PRESCALE_BACKTEST_TRACE")]
    pub trace: Option<PathBuf>,
    /// Workload config (YAML): backtest each configured workload on its own demand history over `--from`..`--to`,
    /// with its capacityPerReplica, leadTime, quantile and refitInterval. Either this or `--trace`.
    #[arg(long, env = "PRESCALE_BACKTEST_CONFIG")]
    pub config: Option<PathBuf>,
    /// Start of the scored window (with `--config`): RFC3339 (`2026-03-01T00:00:00Z`), `now`, or relative to now
    /// (`-7d`, `now-36h`). The 7 days before it are fetched too, as the model's warm-up.
    #[arg(long, env = "PRESCALE_BACKTEST_FROM", conflicts_with = "trace", allow_hyphen_values = true, value_parser = parse_time)]
    pub from: Option<TimeArg>,
    /// End (exclusive) of the scored window (with `--config`); same forms as `--from`; default `now`.
    #[arg(long, env = "PRESCALE_BACKTEST_TO", conflicts_with = "trace", allow_hyphen_values = true, value_parser = parse_time)]
    pub to: Option<TimeArg>,
    /// Backtest only this workload (with `--config`): `name` or `namespace/name`.
    #[arg(long, env = "PRESCALE_BACKTEST_WORKLOAD", conflicts_with = "trace")]
    pub workload: Option<String>,
    /// Publish a summary per workload into this ConfigMap (`NAMESPACE/NAME`, with `--config`), key
    /// `<namespace>.<name>.json`, by server-side apply with the in-cluster or KUBECONFIG credentials.
    #[arg(long, env = "PRESCALE_BACKTEST_PUBLISH_CONFIGMAP", conflicts_with = "trace")]
    pub publish_configmap: Option<ConfigMapRef>,
    /// Cold-start lead times to simulate (multiples of 15 s), e.g. `--lead 2m --lead 5m` or `--lead 2m,5m,10m`.
    /// Default: 2m,5m,10m with `--trace`; each workload's leadTime with `--config`.
    #[arg(long = "lead", env = "PRESCALE_BACKTEST_LEADS", value_delimiter = ',', value_parser = parse_lead)]
    pub leads: Vec<TimeDelta>,
    /// Directory for report.json, ticks/*.csv, chart_L*.svg and frontier_L*.svg (created if missing); with
    /// `--config`, one subdirectory `<namespace>.<name>` per workload.
    #[arg(long, env = "PRESCALE_BACKTEST_OUT", default_value = "backtest-out")]
    pub out: PathBuf,
    /// Forecast quantile the predictive policy plans at, in (0, 1). Default: 0.9 with `--trace`; each workload's
    /// quantile with `--config`.
    #[arg(long, env = "PRESCALE_BACKTEST_QUANTILE", value_parser = parse_quantile)]
    pub quantile: Option<Quantile>,
    /// How often the predictive policy refits its model on visible history. Default: 1h with `--trace`; each
    /// workload's refitInterval with `--config`.
    #[arg(long, env = "PRESCALE_BACKTEST_REFIT", value_parser = parse_positive)]
    pub refit: Option<TimeDelta>,
    /// Policies to run (`hpa-oracle` is needed for "foresight captured").
    #[arg(
        long,
        env = "PRESCALE_BACKTEST_POLICIES",
        value_delimiter = ',',
        default_value = "reactive,reactive-70,predictive,oracle,hpa-oracle"
    )]
    pub policies: Vec<PolicyName>,
    /// Service-level objectives to run the predictive policy at, as the share of demand that may go unserved, e.g.
    /// `--slo 0.1%` or `--slo 0.1%,1%` (one predictive run per SLO at every lead, judged against the reactive
    /// frontier). Default: 1% with `--trace`; each workload's serviceLevel.maxUnserved with `--config`.
    #[arg(long = "slo", env = "PRESCALE_BACKTEST_SLOS", value_delimiter = ',', value_parser = parse_slo)]
    pub slos: Vec<f64>,
    /// The predictive planner scales in only when observed demand allows it too (with `--config`, also when the
    /// workload sets `scaleIn: observed`).
    #[arg(long, env = "PRESCALE_BACKTEST_SCALE_IN_ON_OBSERVED_ONLY")]
    pub scale_in_on_observed_only: bool,
    /// Target utilization of the reactive target the predictive policy serves while its forecast is demoted, in
    /// (0, 1]. Default: 0.7 with `--trace`; each workload's fallbackUtilization with `--config`.
    #[arg(long, env = "PRESCALE_BACKTEST_FALLBACK_UTILIZATION", value_parser = parse_utilization)]
    pub fallback_utilization: Option<Utilization>,
    /// Plan at `--quantile` throughout instead of adapting the quantile to the trace (with `--config`, also when
    /// the workload sets `adaptiveQuantile.enabled: false`).
    #[arg(long, env = "PRESCALE_BACKTEST_FIXED_QUANTILE")]
    pub fixed_quantile: bool,
    /// History replayed through the predictive policy before the first scored tick, as `prescale serve` replays
    /// at startup to warm the adaptive quantile and the quality gate (`0s`: none; the configured quantile then
    /// holds for the warm-up). Default: 3d with `--trace`; each workload's adaptiveQuantile.replay with `--config`.
    #[arg(long, env = "PRESCALE_BACKTEST_REPLAY", value_parser = parse_replay)]
    pub replay: Option<TimeDelta>,
    /// Hide the progress bar (it is only drawn when stderr is a terminal anyway).
    #[arg(long, env = "PRESCALE_BACKTEST_QUIET")]
    pub quiet: bool,
}

/// A point in time as given on the command line: absolute, or an offset from the moment the command starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeArg {
    /// An RFC3339 time.
    At(DateTime<Utc>),
    /// `now` plus this offset (`-7d` is seven days ago).
    Relative(TimeDelta),
}

impl TimeArg {
    /// The time this stands for when the command starts at `now`.
    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            TimeArg::At(t) => t,
            TimeArg::Relative(d) => now + d,
        }
    }
}

/// Reads `now`, `-7d`, `now-36h`, `now+1h` or an RFC3339 time.
pub fn parse_time(s: &str) -> Result<TimeArg, String> {
    let hint = "write RFC3339 (2026-03-01T00:00:00Z), `now`, or a time relative to now like -7d or now-36h";
    let t = s.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(TimeArg::At(at.with_timezone(&Utc)));
    }
    let rest = t.strip_prefix("now").unwrap_or(t);
    if rest.is_empty() {
        return Ok(TimeArg::Relative(TimeDelta::zero()));
    }
    let (sign, duration) = match rest.split_at(1) {
        ("-", d) => (-1, d),
        ("+", d) => (1, d),
        _ => return Err(format!("`{s}` is not a time; {hint}")),
    };
    let d = crate::duration::parse(duration).map_err(|_| format!("`{s}` is not a time; {hint}"))?;
    Ok(TimeArg::Relative(d * sign))
}

fn parse_lead(s: &str) -> Result<TimeDelta, String> {
    crate::duration::parse(s).map_err(|e| e.to_string())
}

fn parse_positive(s: &str) -> Result<TimeDelta, String> {
    let d = crate::duration::parse(s)?;
    if d <= TimeDelta::zero() {
        return Err(format!("`{s}` must be a positive duration, e.g. 1h"));
    }
    Ok(d)
}

fn parse_replay(s: &str) -> Result<TimeDelta, String> {
    let d = crate::duration::parse(s)?;
    if d < TimeDelta::zero() || d > TimeDelta::days(60) {
        return Err(format!("`{s}` must be between 0s and 60d, e.g. 3d"));
    }
    Ok(d)
}

fn parse_slo(s: &str) -> Result<f64, String> {
    crate::control::policy::ServiceLevel::parse_share(s).map_err(|e| e.to_string())
}

fn parse_utilization(s: &str) -> Result<Utilization, String> {
    match s.trim().parse::<f64>() {
        Ok(u) => Utilization::new(u).map_err(|_| format!("{u} is not in (0, 1]; write e.g. 0.7")),
        Err(_) => Err(format!("`{s}` is not a number; write e.g. 0.7")),
    }
}

fn parse_quantile(s: &str) -> Result<Quantile, String> {
    let q: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number; write e.g. 0.9"))?;
    Quantile::try_new(q).map_err(|e| e.to_string())
}

/// Runs a backtest from CLI flags (synchronous: call it outside an async runtime, or in `spawn_blocking`).
///
/// With `--trace`: loads the trace, runs every policy at every lead time, writes the outputs into `--out`, and
/// prints the summary table and the list of files to stdout. With `--config`: the same per workload, on history
/// fetched from its demand source, into `--out/<namespace>.<name>/`, then publishes the summaries when
/// `--publish-configmap` is given. Fails after the others ran when any workload failed.
pub fn run_cli(args: BacktestArgs, connect: &dyn Connect) -> anyhow::Result<()> {
    if let Some(config) = args.config.clone() {
        return run_config(&config, args, connect);
    }
    let BacktestArgs {
        trace,
        config: _,
        from: _,
        to: _,
        workload: _,
        publish_configmap: _,
        leads,
        out,
        quantile,
        refit,
        policies,
        slos,
        scale_in_on_observed_only,
        fallback_utilization,
        fixed_quantile,
        replay,
        quiet,
    } = args;
    let trace = trace.context("give --trace FILE.csv, or --config FILE with --from and --to")?;
    let series = crate::history::trace::load(&trace)?;
    let name = trace
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "trace".into());
    let defaults = Settings::default();
    let settings = Settings {
        leads: if leads.is_empty() {
            DEFAULT_LEADS.to_vec()
        } else {
            leads
        },
        quantile: quantile.unwrap_or(defaults.quantile),
        refit_interval: refit.unwrap_or(defaults.refit_interval),
        policies: sorted(policies),
        capacity: None,
        scale_in: if scale_in_on_observed_only {
            ScaleIn::Observed
        } else {
            ScaleIn::Forecast
        },
        fallback_utilization: fallback_utilization.unwrap_or(defaults.fallback_utilization),
        quality: defaults.quality,
        adaptive: crate::control::policy::Adaptive {
            enabled: defaults.adaptive.enabled && !fixed_quantile,
            replay: replay.unwrap_or(defaults.adaptive.replay),
            ..defaults.adaptive
        },
        slos,
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

fn sorted(mut policies: Vec<PolicyName>) -> Vec<PolicyName> {
    policies.sort();
    policies.dedup();
    policies
}

/// `--config`: every selected workload on its own history.
fn run_config(path: &Path, args: BacktestArgs, connect: &dyn Connect) -> anyhow::Result<()> {
    let BacktestArgs {
        trace: _,
        config: _,
        from,
        to,
        workload,
        publish_configmap,
        leads,
        out,
        quantile,
        refit,
        policies,
        slos,
        scale_in_on_observed_only,
        fallback_utilization,
        fixed_quantile,
        replay,
        quiet,
    } = args;
    let now = Utc::now();
    let from = from.context("--config needs --from, e.g. --from -7d")?.resolve(now);
    let to = to.unwrap_or(TimeArg::Relative(TimeDelta::zero())).resolve(now);
    anyhow::ensure!(
        from < to,
        "--from ({from}) is not before --to ({to}); give an earlier --from or a later --to"
    );
    let config = crate::config::load(path)?;
    anyhow::ensure!(
        !config.workloads.is_empty(),
        "{}: workloads: none listed, so there is nothing to backtest: list a workload under `workloads:`, or \
         backtest a recorded trace with --trace",
        path.display()
    );
    let selected = select(&config, workload.as_deref(), path)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let prometheus = config
        .prometheus
        .as_ref()
        .filter(|_| selected.iter().any(|w| matches!(w.demand, DemandSource::Promql { .. })))
        .map(|settings| connect.prometheus(settings))
        .transpose()
        .with_context(|| format!("{}: prometheus", path.display()))?;
    let policies = sorted(policies);
    let mut summaries = Vec::new();
    let mut failures = Vec::new();
    for w in selected {
        let settings = Settings {
            leads: if leads.is_empty() {
                vec![w.policy.lead]
            } else {
                leads.clone()
            },
            quantile: quantile.unwrap_or(w.policy.quantile),
            refit_interval: refit.unwrap_or(w.refit_interval),
            policies: policies.clone(),
            capacity: Some(w.policy.capacity_per_replica),
            scale_in: if scale_in_on_observed_only {
                ScaleIn::Observed
            } else {
                w.policy.scale_in
            },
            fallback_utilization: fallback_utilization.unwrap_or(w.policy.fallback_utilization),
            quality: w.serving.quality,
            adaptive: crate::control::policy::Adaptive {
                enabled: w.policy.adaptive.enabled && !fixed_quantile,
                replay: replay.unwrap_or(w.policy.adaptive.replay),
                ..w.policy.adaptive
            },
            slos: slos.clone(),
            progress: !quiet,
        };
        let dir = out.join(format!("{}.{}", w.id.namespace, w.id.name));
        let result = runtime.block_on(async {
            if leads.is_empty() && w.policy.lead.num_milliseconds() % TICK.num_milliseconds() != 0 {
                anyhow::bail!(
                    "leadTime {} is not a multiple of the backtest's 15 s tick; pass --lead (e.g. --lead 5m)",
                    crate::duration::format(w.policy.lead)
                );
            }
            let history = history_for(w, prometheus.as_ref())?;
            backtest_workload(w, history.as_ref(), (from, to), &settings, &dir).await
        });
        match result {
            Ok(summary) => summaries.push(summary),
            Err(error) => {
                eprintln!("error: workload {}: {error:#}", w.id);
                failures.push(format!("{}: {error:#}", w.id));
            }
        }
    }
    if let Some(target) = publish_configmap {
        let configured: Vec<_> = config.workloads.iter().map(|w| w.id.clone()).collect();
        runtime.block_on(async {
            let client = connect
                .kubernetes()
                .await
                .context("building the Kubernetes client for --publish-configmap (in-cluster, or set KUBECONFIG)")?;
            publish::publish(client, &target, &summaries, &configured).await?;
            println!(
                "published {} workload summar{} to ConfigMap {target}",
                summaries.len(),
                if summaries.len() == 1 { "y" } else { "ies" }
            );
            anyhow::Ok(())
        })?;
    }
    anyhow::ensure!(
        failures.is_empty(),
        "{} of {} workload(s) failed:\n  {}",
        failures.len(),
        failures.len() + summaries.len(),
        failures.join("\n  ")
    );
    Ok(())
}

/// The workloads `--workload` selects (all when it is absent).
fn select<'a>(config: &'a Config, wanted: Option<&str>, path: &Path) -> anyhow::Result<Vec<&'a WorkloadConfig>> {
    let Some(wanted) = wanted else {
        return Ok(config.workloads.iter().collect());
    };
    let found: Vec<_> = config
        .workloads
        .iter()
        .filter(|w| w.id.to_string() == wanted || w.id.name == wanted)
        .collect();
    match found.len() {
        1 => Ok(found),
        0 => {
            let names: Vec<String> = config.workloads.iter().map(|w| w.id.to_string()).collect();
            anyhow::bail!(
                "--workload {wanted}: no such workload in {}; configured: {}",
                path.display(),
                names.join(", ")
            )
        }
        _ => anyhow::bail!("--workload {wanted} is in several namespaces; write namespace/name"),
    }
}

/// The demand source of a workload, built as `serve` builds it except that a recorded trace keeps its own
/// timestamps (a backtest window names recorded time, not a replay aligned to now).
fn history_for(w: &WorkloadConfig, prometheus: Option<&PrometheusClient>) -> anyhow::Result<Arc<dyn History>> {
    Ok(match &w.demand {
        DemandSource::Generator(g) => Arc::new(g.clone()),
        DemandSource::Trace { path } => {
            let series = crate::history::trace::load(path)?;
            let start = series.start();
            Arc::new(Replay::new(series, path.clone(), start, start))
        }
        DemandSource::Promql { query, step, combine } => {
            let client = prometheus.context(
                "PromQL sources need the `prometheus:` section of the config, e.g. url: http://prometheus:9090",
            )?;
            Arc::new(PromQuery::new(client, query.clone(), *step)?.combine(*combine))
        }
    })
}

/// Fetches `[from − WARM_UP, to)` (clipped to a recorded trace's span), backtests it and writes the outputs.
async fn backtest_workload(
    w: &WorkloadConfig,
    history: &dyn History,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    settings: &Settings,
    dir: &Path,
) -> anyhow::Result<BacktestSummary> {
    let started = std::time::Instant::now();
    let (mut fetch_from, mut fetch_to) = (from - WARM_UP, to);
    if let DemandSource::Trace { path } = &w.demand {
        // A replay loops outside the recording; a backtest must see recorded demand only.
        let recorded = crate::history::trace::load(path)?;
        let (start, end) = (recorded.start(), recorded.end());
        if fetch_to <= start || fetch_from >= end {
            anyhow::bail!(
                "trace {} covers {start} to {end}, outside the window; give --from/--to within it",
                path.display()
            );
        }
        fetch_from = fetch_from.max(start);
        fetch_to = fetch_to.min(end);
    }
    let series = history
        .fetch(fetch_from, fetch_to)
        .await
        .with_context(|| format!("fetching {}", history.describe()))?;
    anyhow::ensure!(
        series.points().next().is_some(),
        "{} returned no samples between {fetch_from} and {fetch_to}; check the query and the window",
        history.describe()
    );
    let name = w.id.to_string();
    let report = super::run(&series, &name, settings).with_context(|| format!("backtest of {name}"))?;
    let files = write_outputs(&report, dir)?;
    println!("== {name} ({})", history.describe());
    print!("{}", report.summary());
    println!(
        "wrote {} files to {} in {:.1} s",
        files.len(),
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(BacktestSummary::new(
        &w.id,
        history.describe(),
        (from, to),
        Utc::now(),
        &report,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_absolute_or_relative_to_now() {
        let now = DateTime::parse_from_rfc3339("2026-03-10T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s: &str| parse_time(s).unwrap().resolve(now);
        assert_eq!(at("now"), now);
        assert_eq!(at("-7d"), now - TimeDelta::days(7));
        assert_eq!(at("now-36h"), now - TimeDelta::hours(36));
        assert_eq!(at("now+1h"), now + TimeDelta::hours(1));
        assert_eq!(at("2026-03-01T00:00:00Z").to_rfc3339(), "2026-03-01T00:00:00+00:00");
        assert_eq!(
            at("2026-03-01T02:00:00+02:00").to_rfc3339(),
            "2026-03-01T00:00:00+00:00"
        );
        for bad in ["yesterday", "7d", "now-", "-7 days", "2026-03-01"] {
            let e = parse_time(bad).unwrap_err();
            assert!(e.contains("RFC3339") && e.contains("-7d"), "{bad}: {e}");
        }
    }
}
