//! The workload file: YAML parsed into typed structs (unknown fields are errors), validated once into a [`Config`].
//!
//! Every problem names the file, line and column, the field, what is allowed and how to fix it. Structural problems
//! (unknown fields, wrong types) are found per workload, so one bad workload does not hide another's problems;
//! value problems are all listed together.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::TimeDelta;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::control::engine::Mode;
use crate::control::policy::{Adaptive, ServiceLevel};
use crate::control::policy::{Policy, Replicas, ScaleIn, Utilization};
use crate::control::quality;
use crate::duration;
use crate::forecast::{Quantile, Seasonality};
use crate::history::prometheus::{Combine, PrometheusSettings};
use crate::history::synthetic::{Generator, Profile};
use crate::store::WorkloadId;

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Where the external metrics API listens.
    pub api_addr: SocketAddr,
    /// Where the admin/SRE HTTP server listens.
    pub admin_addr: SocketAddr,
    /// A forecast older than this is not served; the API answers an error so the HPA holds.
    pub max_forecast_age: TimeDelta,
    /// How often each workload's history is refreshed and its plan recomputed.
    pub interval: TimeDelta,
    /// The workloads to plan for.
    pub workloads: Vec<WorkloadConfig>,
    /// The Prometheus-compatible query API for `promql` demand sources.
    pub prometheus: Option<PrometheusSettings>,
}

/// One validated workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadConfig {
    /// Namespace and name.
    pub id: WorkloadId,
    /// Where demand history comes from.
    pub demand: DemandSource,
    /// The unit demand is measured in (for people; e.g. "requests/s").
    pub unit: String,
    /// Scaling policy.
    pub policy: Policy,
    /// Seasonal periods.
    pub seasonality: Seasonality,
    /// How often the model is refitted.
    pub refit_interval: TimeDelta,
    /// How much history the model sees.
    pub history: TimeDelta,
    /// A plan made from demand data older than this is not served: the API answers an error so the HPA holds
    /// (`maxDataAge`, by default [`default_max_data_age`]).
    pub max_data_age: TimeDelta,
    /// How the forecast is used (`mode`) and judged (`quality`).
    pub serving: ServingConfig,
}

impl WorkloadConfig {
    /// The workload's effective settings, defaults included, as `check-config` prints them: one line per concern.
    pub fn describe(&self) -> String {
        let p = &self.policy;
        let source = match &self.demand {
            DemandSource::Promql { step, .. } => format!("promql at a {} step", duration::format(*step)),
            DemandSource::Trace { path } => format!("trace {}", path.display()),
            DemandSource::Generator(g) => format!("generator {} (seed {})", g.profile.name(), g.seed),
        };
        let seasonality = match &self.seasonality {
            Seasonality::Auto => "auto".to_owned(),
            Seasonality::None => "none".to_owned(),
            Seasonality::Periods(ps) => ps.iter().map(|d| duration::format(*d)).collect::<Vec<_>>().join(", "),
        };
        let mode = match self.serving.mode {
            Mode::Serve => "serve",
            Mode::ForecastOnly => "forecastOnly",
        };
        let demotion = if self.serving.quality.auto_demote {
            "demoted to reactive when forecast quality breaks its bounds"
        } else {
            "quality scored and reported only"
        };
        let scale_in = match p.scale_in {
            ScaleIn::Observed => "observed demand",
            ScaleIn::Forecast => "the forecast",
        };
        let quantile = if p.adaptive.enabled {
            format!(
                "the cheapest forecast quantile or reactive target that met the SLO (p{q} until {warmup} scored, \
                 half-life {half_life}, {replay})",
                q = p.quantile.get() * 100.0,
                warmup = duration::format(p.adaptive.warmup),
                half_life = duration::format(p.adaptive.half_life),
                replay = match p.adaptive.replay_span(self.history) {
                    span if span > TimeDelta::zero() => {
                        format!("{} of history replayed at startup", duration::format(span))
                    }
                    _ => "no replay at startup".to_owned(),
                },
            )
        } else {
            format!("p{} of demand", p.quantile.get() * 100.0)
        };
        format!(
            "{id}: {source}, history {history}, seasonality {seasonality}, refit every {refit}\n  \
             slo: {slo}\n  \
             plan: {quantile} over lead {lead} at {cap} {unit} per replica, replicas {min}..{max}, \
             scale-in on {scale_in}\n  \
             serving: {mode}, {demotion}; fallback at {fallback}% utilization; not served once the newest \
             demand sample is over {max_data_age} old\n  \
             HPA: sync {sync}, scale-down hold {hold}",
            id = self.id,
            slo = p.adaptive.slo,
            history = duration::format(self.history),
            refit = duration::format(self.refit_interval),
            lead = duration::format(p.lead),
            cap = p.capacity_per_replica,
            unit = self.unit,
            min = p.replicas.min(),
            max = p.replicas.max(),
            fallback = p.fallback_utilization.get() * 100.0,
            sync = duration::format(p.sync),
            hold = duration::format(p.downscale_stabilization),
            max_data_age = duration::format(self.max_data_age),
        )
    }
}

/// Smallest `capacityPerReplica`: the HPA reads a target in thousandths of a unit.
const MIN_CAPACITY: f64 = 0.001;
/// Largest `capacityPerReplica`: far past any real replica, and well inside what a quantity can carry.
const MAX_CAPACITY: f64 = 1e12;
/// Shortest `maxDataAge`: Prometheus itself lags by a scrape interval and a rule evaluation.
const MIN_DATA_AGE: TimeDelta = TimeDelta::minutes(1);
/// Longest `maxDataAge`: a plan from demand a day old is a guess, not a forecast.
const MAX_DATA_AGE: TimeDelta = TimeDelta::days(1);

/// The `maxDataAge` a workload gets when the file sets none: `max(leadTime, 3 × demand.step, 2m)`.
///
/// The plan looks one `leadTime` ahead and its quality is scored at that horizon; data older than the lead time
/// would make every plan a forecast at more than twice the horizon it was judged on, and the reactive floor would
/// react to demand from before the pods it asks for could even start. A sample covers a whole step and arrives a
/// step after it starts, so data is normally up to about two steps old: three tolerate one late evaluation. Two
/// minutes absorb Prometheus' own scrape and rule-evaluation lag on fine steps.
pub fn default_max_data_age(lead: TimeDelta, step: TimeDelta) -> TimeDelta {
    lead.max(step * 3).max(TimeDelta::minutes(2))
}

/// Longest `leadTime`: cold starts (node, image, model weights) take minutes; the plan looks this far ahead.
const MAX_LEAD_TIME: TimeDelta = TimeDelta::hours(1);

/// Where a workload's demand history comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DemandSource {
    /// A PromQL query returning one series of demand in units/s.
    Promql {
        /// The query.
        query: String,
        /// Query resolution.
        step: TimeDelta,
        /// What to do when the query returns several series.
        combine: Combine,
    },
    /// A recorded trace CSV replayed on a clock aligned to now.
    Trace {
        /// The CSV file (relative paths are relative to the config file).
        path: PathBuf,
    },
    /// The built-in demand generator.
    Generator(Generator),
}

/// How often each workload's cycle runs (fetch the new tail, plan, publish) where the file sets no `interval`, and in
/// the demo: twice the HPA's sync period, so the HPA never waits more than one sync for a new target while the
/// Prometheus load stays at one small query per workload per 30 s.
pub const DEFAULT_INTERVAL: TimeDelta = TimeDelta::seconds(30);

/// Defaults applied where the file is silent.
pub mod defaults {
    /// API listener.
    pub const API_ADDR: &str = "0.0.0.0:6443";
    /// Admin listener.
    pub const ADMIN_ADDR: &str = "0.0.0.0:8080";
    /// Max forecast age.
    pub const MAX_FORECAST_AGE: &str = "5m";
    /// Cold start lead time.
    pub const LEAD_TIME: &str = "5m";
    /// Quantile to plan at.
    pub const QUANTILE: f64 = 0.9;
    /// Refit interval.
    pub const REFIT_INTERVAL: &str = "1h";
    /// History window for fine steps (coarser steps default to more, see `forecast::history_span`).
    pub const HISTORY: &str = "15d";
    /// Query step.
    pub const STEP: &str = "1m";
    /// HPA sync period.
    pub const HPA_SYNC: &str = "15s";
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTop {
    api_addr: Option<Spanned<String>>,
    admin_addr: Option<Spanned<String>>,
    max_forecast_age: Option<Spanned<String>>,
    max_data_age: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    prometheus: Option<Spanned<PrometheusSettings>>,
    #[serde(deserialize_with = "count_workloads")]
    workloads: Spanned<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawWorkload {
    name: Spanned<String>,
    #[serde(default)]
    namespace: Option<Spanned<String>>,
    demand: Spanned<RawDemand>,
    #[serde(default)]
    unit: Option<String>,
    capacity_per_replica: Spanned<f64>,
    lead_time: Option<Spanned<String>>,
    quantile: Option<Spanned<f64>>,
    min_replicas: Option<Spanned<i64>>,
    max_replicas: Spanned<i64>,
    seasonality: Option<Spanned<RawSeasonality>>,
    refit_interval: Option<Spanned<String>>,
    history: Option<Spanned<String>>,
    hpa_sync: Option<Spanned<String>>,
    scale_in: Option<Spanned<ScaleIn>>,
    fallback_utilization: Option<Spanned<f64>>,
    hpa_scale_down_stabilization: Option<Spanned<String>>,
    mode: Option<Spanned<Mode>>,
    quality: Option<Spanned<RawQuality>>,
    adaptive_quantile: Option<Spanned<RawAdaptive>>,
    service_level: Option<Spanned<RawServiceLevel>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawServiceLevel {
    max_unserved: Option<RawShare>,
    window: Option<String>,
}

/// A share as written: `0.1%`, or a bare number (refused with a hint).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawShare {
    Number(f64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawAdaptive {
    enabled: Option<bool>,
    half_life: Option<String>,
    warmup: Option<String>,
    replay: Option<String>,
    /// Replaced by `serviceLevel.maxUnserved`: read only to say so.
    unserved_vs_reactive: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawQuality {
    auto_demote: Option<bool>,
    window: Option<u32>,
    min_samples: Option<u32>,
    demote: Option<RawLimits>,
    promote: Option<RawLimits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawLimits {
    min_coverage: Option<f64>,
    max_under_prediction: Option<f64>,
    max_shortfall: Option<f64>,
}

impl RawLimits {
    fn over(&self, d: quality::Limits) -> quality::Limits {
        quality::Limits {
            min_coverage: self.min_coverage.unwrap_or(d.min_coverage),
            max_under_rate: self.max_under_prediction.unwrap_or(d.max_under_rate),
            max_shortfall: self.max_shortfall.unwrap_or(d.max_shortfall),
        }
    }
}

/// How one workload's forecast is used and judged (`mode:` and `quality:` in the workload file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ServingConfig {
    /// `serve` (default) or `forecastOnly`.
    pub mode: Mode,
    /// When forecast quality demotes the workload to reactive scaling, and when it is promoted back.
    pub quality: quality::Bounds,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDemand {
    promql: Option<String>,
    combine: Option<Combine>,
    step: Option<Spanned<String>>,
    trace: Option<String>,
    generator: Option<RawGenerator>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawGenerator {
    profile: Profile,
    #[serde(default)]
    seed: u64,
    #[serde(default = "one")]
    scale: f64,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawSeasonality {
    Word(String),
    Periods(Vec<String>),
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, 0 when unknown.
    pub line: u64,
    /// 1-based column, 0 when unknown.
    pub column: u64,
    /// Dotted path of the field, e.g. `workloads[0].quantile`.
    pub field: String,
    /// What is wrong, what is allowed, how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

/// Every problem found in a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read config: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is invalid; all problems found are listed.
    #[error("{} problem(s) in the config:\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// Reads and validates a config file.
pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.into(),
        source,
    })?;
    parse(&text, path)
}

/// Parses and validates config text; `path` names the file in problems and anchors relative trace paths.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let mut v = Validator {
        file: path.to_path_buf(),
        problems: Vec::new(),
    };
    let top: Option<RawTop> = match serde_saphyr::from_str(text) {
        Ok(top) => Some(top),
        Err(e) => {
            v.parse_error(&e, "");
            None
        }
    };
    let mut workloads = Vec::new();
    let count = top
        .as_ref()
        .map(|t| t.workloads.value)
        .unwrap_or_else(|| count_leniently(text));
    for i in 0..count {
        let field = format!("workloads[{i}]");
        match pick_workload(text, i) {
            Ok(raw) => {
                if let Some(w) = v.workload(raw, &field, path) {
                    workloads.push(w);
                }
            }
            Err(e) => v.parse_error(&e, &field),
        }
    }
    let Some(top) = top else {
        return Err(ConfigError::Invalid(v.problems));
    };
    if count == 0 {
        v.at(
            &top.workloads,
            "workloads",
            "is empty; list at least one workload (see the README's config reference)",
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for w in &workloads {
        if !seen.insert(w.id.clone()) {
            v.problems.push(Problem {
                file: path.into(),
                line: 0,
                column: 0,
                field: "workloads".into(),
                message: format!(
                    "workload {} is listed twice; names must be unique within a namespace",
                    w.id
                ),
            });
        }
    }
    let api_addr = v.addr(top.api_addr.as_ref(), "apiAddr", defaults::API_ADDR);
    let admin_addr = v.addr(top.admin_addr.as_ref(), "adminAddr", defaults::ADMIN_ADDR);
    let max_forecast_age = v.duration(
        top.max_forecast_age.as_ref(),
        "maxForecastAge",
        defaults::MAX_FORECAST_AGE,
    );
    if let Some(raw) = &top.max_data_age {
        let max_data_age = v.duration(Some(raw), "maxDataAge", "5m");
        if !(MIN_DATA_AGE..=MAX_DATA_AGE).contains(&max_data_age) {
            v.at(
                raw,
                "maxDataAge",
                format!(
                    "{} is outside 1m to 1d; leave it out for max(leadTime, 3 × demand.step, 2m) per workload",
                    raw.value
                ),
            );
        }
        for w in &mut workloads {
            if let DemandSource::Promql { step, .. } | DemandSource::Generator(Generator { step, .. }) = &w.demand {
                if max_data_age < *step * 2 {
                    v.at(
                        raw,
                        "maxDataAge",
                        format!(
                            "{} is shorter than two demand steps of workload {} ({} each): its data is normally \
                             that old; raise it to at least {}",
                            raw.value,
                            w.id,
                            duration::format(*step),
                            duration::format(*step * 2)
                        ),
                    );
                }
            }
            w.max_data_age = max_data_age;
        }
    }
    let interval = v.duration(top.interval.as_ref(), "interval", &duration::format(DEFAULT_INTERVAL));
    let prometheus = top.prometheus.map(|p| p.value);
    if prometheus.is_none() {
        for w in &workloads {
            if matches!(w.demand, DemandSource::Promql { .. }) {
                v.problems.push(Problem {
                    file: path.into(),
                    line: 0,
                    column: 0,
                    field: "prometheus".into(),
                    message: format!(
                        "workload {} has a `promql` demand source; add `prometheus: {{url: http://prometheus:9090}}`",
                        w.id
                    ),
                });
            }
        }
    }
    if v.problems.is_empty() {
        Ok(Config {
            api_addr,
            admin_addr,
            max_forecast_age,
            interval,
            workloads,
            prometheus,
        })
    } else {
        Err(ConfigError::Invalid(v.problems))
    }
}

struct Validator {
    file: PathBuf,
    problems: Vec<Problem>,
}

impl Validator {
    fn at<T>(&mut self, span: &Spanned<T>, field: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            line: span.referenced.line(),
            column: span.referenced.column(),
            field: field.to_string(),
            message: message.into(),
        });
    }

    fn parse_error(&mut self, e: &serde_saphyr::Error, field: &str) {
        let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
        let message = e.without_snippet().to_string();
        // The parser already prefixes its own position; keep just the message.
        let mut message = message.lines().next().unwrap_or_default().to_string();
        if let Some(i) = message.rfind(" at line ") {
            message.truncate(i);
        }
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            column,
            field: field.into(),
            message,
        });
    }

    fn addr(&mut self, raw: Option<&Spanned<String>>, field: &str, default: &str) -> SocketAddr {
        let fallback: SocketAddr = default.parse().expect("default address parses");
        let Some(raw) = raw else { return fallback };
        raw.value.parse().unwrap_or_else(|_| {
            self.at(
                raw,
                field,
                format!("`{}` is not an address; write host:port, e.g. {default}", raw.value),
            );
            fallback
        })
    }

    fn duration(&mut self, raw: Option<&Spanned<String>>, field: &str, default: &str) -> TimeDelta {
        let fallback = duration::parse(default).expect("default duration parses");
        let Some(raw) = raw else { return fallback };
        match duration::parse(&raw.value) {
            Ok(d) if d > TimeDelta::zero() => d,
            Ok(_) => {
                self.at(raw, field, "must be longer than zero");
                fallback
            }
            Err(e) => {
                self.at(raw, field, e);
                fallback
            }
        }
    }

    fn workload(&mut self, raw: RawWorkload, field: &str, config_path: &Path) -> Option<WorkloadConfig> {
        let before = self.problems.len();
        let f = |name: &str| format!("{field}.{name}");
        let name = raw.name.value.clone();
        if !is_dns_label(&name) {
            self.at(&raw.name, &f("name"), format!("`{name}` must be a DNS label: lowercase letters, digits and '-', at most 63 characters, starting and ending with a letter or digit"));
        }
        let namespace = raw
            .namespace
            .as_ref()
            .map(|n| n.value.clone())
            .unwrap_or_else(|| "default".into());
        if let Some(ns) = &raw.namespace {
            if !is_dns_label(&ns.value) {
                self.at(
                    ns,
                    &f("namespace"),
                    format!("`{}` is not a valid namespace name (DNS label)", ns.value),
                );
            }
        }
        let step = self.duration(raw.demand.value.step.as_ref(), &f("demand.step"), defaults::STEP);
        let d = &raw.demand.value;
        let sources = [d.promql.is_some(), d.trace.is_some(), d.generator.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        let demand = if sources != 1 {
            self.at(
                &raw.demand,
                &f("demand"),
                "set exactly one of `promql`, `trace` or `generator`",
            );
            None
        } else if let Some(q) = &d.promql {
            if q.trim().is_empty() {
                self.at(
                    &raw.demand,
                    &f("demand.promql"),
                    "is empty; write a PromQL query returning one series",
                );
            }
            Some(DemandSource::Promql {
                query: q.clone(),
                step,
                combine: d.combine.unwrap_or_default(),
            })
        } else if let Some(t) = &d.trace {
            let p = PathBuf::from(t);
            let p = if p.is_relative() {
                config_path.parent().unwrap_or(Path::new(".")).join(p)
            } else {
                p
            };
            Some(DemandSource::Trace { path: p })
        } else {
            d.generator.as_ref().map(|g| {
                DemandSource::Generator(Generator {
                    profile: g.profile,
                    seed: g.seed,
                    scale: g.scale,
                    step,
                })
            })
        };
        if let Some(g) = &d.generator {
            if !(g.scale.is_finite() && g.scale > 0.0) {
                self.at(&raw.demand, &f("demand.generator.scale"), "must be a positive number");
            }
        }
        let cap = raw.capacity_per_replica.value;
        if !(cap.is_finite() && cap > 0.0) {
            self.at(
                &raw.capacity_per_replica,
                &f("capacityPerReplica"),
                format!("must be a positive number of demand units one replica serves, got {cap}"),
            );
        } else if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&cap) {
            self.at(
                &raw.capacity_per_replica,
                &f("capacityPerReplica"),
                format!(
                    "{cap:e} is outside 0.001 to 1e12: the HPA reads targets in thousandths of a unit; measure demand \
                     in a unit that puts one replica's share in that range (e.g. requests/min instead of requests/s)"
                ),
            );
        }
        let lead = self.duration(raw.lead_time.as_ref(), &f("leadTime"), defaults::LEAD_TIME);
        if let Some(raw_lead) = raw.lead_time.as_ref().filter(|_| lead > MAX_LEAD_TIME) {
            self.at(
                raw_lead,
                &f("leadTime"),
                format!(
                    "{} is longer than 1h: a cold start is node + image + model weights until Ready, minutes in \
                     practice; the plan looks this far ahead at every decision",
                    raw_lead.value
                ),
            );
        }
        let sync = self.duration(raw.hpa_sync.as_ref(), &f("hpaSync"), defaults::HPA_SYNC);
        let downscale_stabilization = match &raw.hpa_scale_down_stabilization {
            None => crate::control::policy::DOWNSCALE_STABILIZATION,
            Some(raw) => match duration::parse(&raw.value) {
                Ok(d) if d <= TimeDelta::hours(1) => d,
                Ok(_) => {
                    self.at(
                        raw,
                        &f("hpaScaleDownStabilization"),
                        "must be at most 1h, the HPA's own limit on stabilizationWindowSeconds",
                    );
                    crate::control::policy::DOWNSCALE_STABILIZATION
                }
                Err(e) => {
                    self.at(raw, &f("hpaScaleDownStabilization"), e);
                    crate::control::policy::DOWNSCALE_STABILIZATION
                }
            },
        };
        let quantile = match &raw.quantile {
            None => Quantile::try_new(defaults::QUANTILE).expect("default quantile is valid"),
            Some(q) => Quantile::try_new(q.value).unwrap_or_else(|e| {
                self.at(
                    q,
                    &f("quantile"),
                    format!("{e}; e.g. 0.9 to be ready for the 90th percentile"),
                );
                Quantile::MEDIAN
            }),
        };
        let fallback_utilization = match &raw.fallback_utilization {
            None => crate::control::policy::DEFAULT_FALLBACK_UTILIZATION,
            Some(u) => Utilization::new(u.value).unwrap_or_else(|_| {
                self.at(
                    u,
                    &f("fallbackUtilization"),
                    format!(
                        "must be in (0, 1], got {}; e.g. 0.7 to size the reactive fallback like an HPA at 70%",
                        u.value
                    ),
                );
                Utilization::FULL
            }),
        };
        let min = raw.min_replicas.as_ref().map(|m| m.value).unwrap_or(1);
        if let Some(m) = &raw.min_replicas {
            if !(0..=i64::from(i32::MAX)).contains(&m.value) {
                self.at(m, &f("minReplicas"), "must be between 0 and 2147483647");
            }
        }
        let max = raw.max_replicas.value;
        if !(1..=i64::from(i32::MAX)).contains(&max) {
            self.at(&raw.max_replicas, &f("maxReplicas"), "must be between 1 and 2147483647");
        } else if max < min {
            self.at(
                &raw.max_replicas,
                &f("maxReplicas"),
                format!("({max}) is below minReplicas ({min})"),
            );
        }
        let replicas = Replicas::new(min, max).ok();
        let seasonality = match &raw.seasonality {
            None => Seasonality::Auto,
            Some(s) => match &s.value {
                RawSeasonality::Word(w) if w == "auto" => Seasonality::Auto,
                RawSeasonality::Word(w) if w == "none" => Seasonality::None,
                RawSeasonality::Word(w) => {
                    self.at(
                        s,
                        &f("seasonality"),
                        format!("`{w}` is not allowed; write `auto`, `none`, or a list of periods like [1d, 1w]"),
                    );
                    Seasonality::Auto
                }
                RawSeasonality::Periods(ps) => {
                    let mut out = Vec::new();
                    for p in ps {
                        match duration::parse(p) {
                            Ok(d) if d > step => out.push(d),
                            Ok(_) => self.at(
                                s,
                                &f("seasonality"),
                                format!("period {p} must be longer than the demand step"),
                            ),
                            Err(e) => self.at(s, &f("seasonality"), e),
                        }
                    }
                    Seasonality::Periods(out)
                }
            },
        };
        let refit_interval = self.duration(
            raw.refit_interval.as_ref(),
            &f("refitInterval"),
            defaults::REFIT_INTERVAL,
        );
        // By default, all the history a fit reads: 15 days, more for coarse steps (see `forecast::history_span`).
        let history = match &raw.history {
            Some(_) => self.duration(raw.history.as_ref(), &f("history"), defaults::HISTORY),
            None => crate::forecast::history_span(step),
        };
        if let Some(h) = &raw.history {
            if history < step * 20 {
                self.at(h, &f("history"), "must cover at least 20 demand steps");
            }
        }
        let scale_in = raw.scale_in.as_ref().map(|s| s.value).unwrap_or(ScaleIn::Forecast);
        let mode = raw.mode.as_ref().map(|m| m.value).unwrap_or_default();
        let bounds = raw.quality.as_ref().map_or_else(quality::Bounds::default, |q| {
            let d = quality::Bounds::default();
            let r = &q.value;
            let bounds = quality::Bounds {
                auto_demote: r.auto_demote.unwrap_or(d.auto_demote),
                window: r.window.map_or(d.window, |w| w as usize),
                min_samples: r.min_samples.map_or(d.min_samples, |m| m as usize),
                demote: r.demote.as_ref().map_or(d.demote, |l| l.over(d.demote)),
                promote: r.promote.as_ref().map_or(d.promote, |l| l.over(d.promote)),
            };
            if let Err(e) = bounds.validate() {
                self.at(q, &f("quality"), format!("{e} (defaults: {})", describe_bounds(&d)));
            }
            bounds
        });
        let adaptive = raw.adaptive_quantile.as_ref().map_or_else(Adaptive::default, |a| {
            let d = Adaptive::default();
            if a.value.unserved_vs_reactive.is_some() {
                self.at(
                    a,
                    &f("adaptiveQuantile.unservedVsReactive"),
                    "is replaced by serviceLevel.maxUnserved, the share of demand that may go unserved, e.g. \
                     serviceLevel: {maxUnserved: 0.1%, window: 7d}",
                );
            }
            let mut duration = |value: &Option<String>, name: &str, default: TimeDelta, least: TimeDelta| {
                let Some(v) = value else { return default };
                match duration::parse(v) {
                    Ok(x) if x >= least && x <= TimeDelta::days(60) => x,
                    Ok(_) => {
                        self.at(
                            a,
                            &f(&format!("adaptiveQuantile.{name}")),
                            format!(
                                "{v} must be between {} and 60d (default {})",
                                duration::format(least),
                                duration::format(default)
                            ),
                        );
                        default
                    }
                    Err(e) => {
                        self.at(a, &f(&format!("adaptiveQuantile.{name}")), e);
                        default
                    }
                }
            };
            Adaptive {
                enabled: a.value.enabled.unwrap_or(d.enabled),
                half_life: duration(&a.value.half_life, "halfLife", d.half_life, TimeDelta::hours(1)),
                warmup: duration(&a.value.warmup, "warmup", d.warmup, TimeDelta::zero()),
                replay: duration(&a.value.replay, "replay", d.replay, TimeDelta::zero()),
                slo: d.slo,
            }
        });
        let slo = raw.service_level.as_ref().map_or_else(ServiceLevel::default, |l| {
            let d = ServiceLevel::default();
            let max_unserved = match &l.value.max_unserved {
                None => d.max_unserved,
                Some(RawShare::Text(t)) => ServiceLevel::parse_share(t).unwrap_or_else(|e| {
                    self.at(l, &f("serviceLevel.maxUnserved"), e.to_string());
                    d.max_unserved
                }),
                Some(RawShare::Number(x)) => {
                    self.at(
                        l,
                        &f("serviceLevel.maxUnserved"),
                        format!(
                            "{x} is not a percentage; write the share of demand that may go unserved with a % sign, \
                             e.g. {}",
                            ServiceLevel::format_share(d.max_unserved)
                        ),
                    );
                    d.max_unserved
                }
            };
            let window = match &l.value.window {
                None => d.window,
                Some(v) => match duration::parse(v) {
                    Ok(w) if (ServiceLevel::MIN_WINDOW..=ServiceLevel::MAX_WINDOW).contains(&w) => w,
                    Ok(_) => {
                        self.at(
                            l,
                            &f("serviceLevel.window"),
                            format!(
                                "{v} must be between 1h and 60d (default {})",
                                duration::format(d.window)
                            ),
                        );
                        d.window
                    }
                    Err(e) => {
                        self.at(l, &f("serviceLevel.window"), e);
                        d.window
                    }
                },
            };
            ServiceLevel { max_unserved, window }
        });
        let adaptive = Adaptive { slo, ..adaptive };
        if self.problems.len() > before {
            return None;
        }
        let id = WorkloadId { namespace, name };
        Some(WorkloadConfig {
            id,
            demand: demand?,
            unit: raw.unit.unwrap_or_else(|| "requests/s".into()),
            policy: Policy {
                capacity_per_replica: cap,
                lead,
                sync,
                quantile,
                replicas: replicas?,
                scale_in,
                fallback_utilization,
                downscale_stabilization,
                adaptive,
            },
            seasonality,
            refit_interval,
            history,
            max_data_age: default_max_data_age(lead, step),
            serving: ServingConfig { mode, quality: bounds },
        })
    }
}

/// The bounds as they are written in the file.
fn describe_bounds(b: &quality::Bounds) -> String {
    format!(
        "window {}, minSamples {}, demote {{minCoverage {}, maxUnderPrediction {}, maxShortfall {}}}, promote {{minCoverage {}, maxUnderPrediction {}, maxShortfall {}}}",
        b.window,
        b.min_samples,
        b.demote.min_coverage,
        b.demote.max_under_rate,
        b.demote.max_shortfall,
        b.promote.min_coverage,
        b.promote.max_under_rate,
        b.promote.max_shortfall
    )
}

/// True for a Kubernetes DNS label (RFC 1123).
fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !s.is_empty()
        && s.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn count_workloads<'de, D: de::Deserializer<'de>>(d: D) -> Result<Spanned<usize>, D::Error> {
    struct Count;
    impl<'de> Deserialize<'de> for Count {
        fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_seq(CountVisitor).map(|_| Count)
        }
    }
    struct CountVisitor;
    impl<'de> Visitor<'de> for CountVisitor {
        type Value = usize;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of workloads")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let mut n = 0;
            while seq.next_element::<IgnoredAny>()?.is_some() {
                n += 1;
            }
            COUNTED.with(|c| c.set(n));
            Ok(n)
        }
    }
    let spanned = Spanned::<Count>::deserialize(d)?;
    let n = COUNTED.with(|c| c.get());
    Ok(Spanned {
        value: n,
        referenced: spanned.referenced,
        defined: spanned.defined,
    })
}

thread_local! {
    // serde's derive cannot pass state into a field's deserializer; these carry it within one parse on one thread.
    static COUNTED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    static PICK: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts `workloads` entries when the top level failed to parse, so their own problems are still reported.
fn count_leniently(text: &str) -> usize {
    #[derive(Deserialize)]
    struct Loose {
        #[serde(default)]
        workloads: Vec<IgnoredAny>,
    }
    serde_saphyr::from_str::<Loose>(text)
        .map(|l| l.workloads.len())
        .unwrap_or(0)
}

/// Deserializes only `workloads[index]` from the whole document, so its errors carry exact positions.
fn pick_workload(text: &str, index: usize) -> Result<RawWorkload, serde_saphyr::Error> {
    struct Top(usize);
    impl<'de> DeserializeSeed<'de> for Top {
        type Value = Option<RawWorkload>;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Top {
        type Value = Option<RawWorkload>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a config mapping")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(key) = map.next_key::<String>()? {
                if key == "workloads" {
                    found = map.next_value_seed(Pick(self.0))?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }
    struct Pick(usize);
    impl<'de> DeserializeSeed<'de> for Pick {
        type Value = Option<RawWorkload>;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de> Visitor<'de> for Pick {
        type Value = Option<RawWorkload>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of workloads")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            let mut i = 0;
            loop {
                if i == self.0 {
                    match seq.next_element::<RawWorkload>()? {
                        Some(w) => found = Some(w),
                        None => break,
                    }
                } else if seq.next_element::<IgnoredAny>()?.is_none() {
                    break;
                }
                i += 1;
            }
            Ok(found)
        }
    }
    struct PickedDoc(Option<RawWorkload>);
    impl<'de> Deserialize<'de> for PickedDoc {
        fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let index = PICK.with(|c| c.get());
            Top(index).deserialize(d).map(PickedDoc)
        }
    }
    PICK.with(|c| c.set(index));
    let picked: PickedDoc = serde_saphyr::from_str(text)?;
    // The top-level pass counted this many entries, so the index exists; stay total anyway.
    picked
        .0
        .ok_or_else(|| <serde_saphyr::Error as de::Error>::custom(format!("workloads[{index}] is missing")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match parse(text, Path::new("p.yaml")) {
            Err(ConfigError::Invalid(ps)) => ps.iter().map(|p| p.to_string()).collect(),
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn the_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prescale.yaml");
        let c = load(&path).unwrap();
        assert_eq!(c.workloads.len(), 2);
        let w = &c.workloads[0];
        assert_eq!(w.id.to_string(), "inference/llm-chat");
        assert_eq!(w.policy.lead, TimeDelta::minutes(5));
        assert_eq!(w.policy.quantile.get(), 0.9);
        assert_eq!((w.policy.replicas.min(), w.policy.replicas.max()), (2, 40));
        assert!(matches!(&w.demand, DemandSource::Promql { step, .. } if *step == TimeDelta::minutes(1)));
        assert_eq!(
            c.workloads[1].seasonality,
            Seasonality::Periods(vec![TimeDelta::days(1)])
        );
        assert_eq!(c.workloads[1].policy.replicas.min(), 1, "default");
        assert_eq!(c.max_forecast_age, TimeDelta::minutes(5));
        assert_eq!(w.policy.fallback_utilization.get(), 0.7);
        assert_eq!(w.history, TimeDelta::days(15));
    }

    #[test]
    fn max_data_age_defaults_per_workload_and_is_checked() {
        let text = |top: &str| {
            format!(
                "{top}workloads:\n  - name: a\n    demand: {{generator: {{profile: embeddings}}}}\n    capacityPerReplica: 3\n    \
                 maxReplicas: 4\n  - name: b\n    demand: {{generator: {{profile: embeddings}}, step: 10m}}\n    \
                 capacityPerReplica: 3\n    maxReplicas: 4\n    leadTime: 90s\n"
            )
        };
        let c = parse(&text(""), Path::new("p.yaml")).unwrap();
        // max(leadTime, 3 steps, 2m): the 5m lead at a 1m step; three 10m steps.
        assert_eq!(c.workloads[0].max_data_age, TimeDelta::minutes(5));
        assert_eq!(c.workloads[1].max_data_age, TimeDelta::minutes(30));
        assert_eq!(
            default_max_data_age(TimeDelta::seconds(30), TimeDelta::seconds(15)),
            TimeDelta::minutes(2)
        );
        let c = parse(&text("maxDataAge: 45m\n"), Path::new("p.yaml")).unwrap();
        assert!(c.workloads.iter().all(|w| w.max_data_age == TimeDelta::minutes(45)));
        assert!(
            c.workloads[0].describe().contains("over 45m old"),
            "{}",
            c.workloads[0].describe()
        );

        let ps = problems(&text("maxDataAge: 15m\n"));
        assert_eq!(ps.len(), 1, "{ps:?}");
        assert!(
            ps[0].starts_with("p.yaml:1:13: maxDataAge: 15m is shorter than two demand steps of workload default/b"),
            "{ps:?}"
        );
        let ps = problems(&text("maxDataAge: 2d\n"));
        assert!(ps[0].contains("maxDataAge: 2d is outside 1m to 1d"), "{ps:?}");
        let ps = problems(&text("maxDataAge: soon\n"));
        assert!(
            ps[0].starts_with("p.yaml:1:13: maxDataAge: `soon` is not a duration"),
            "{ps:?}"
        );
    }

    #[test]
    fn adaptive_quantile_settings_are_read_and_checked() {
        let text = |block: &str| {
            format!(
                "workloads:\n  - name: a\n    demand: {{generator: {{profile: embeddings}}}}\n    capacityPerReplica: 3\n    \
                 maxReplicas: 4\n    adaptiveQuantile: {block}\n"
            )
        };
        let c = parse(&text("{halfLife: 12h, warmup: 6h, replay: 2d}"), Path::new("p.yaml")).unwrap();
        let a = c.workloads[0].policy.adaptive;
        assert_eq!(
            (a.enabled, a.half_life, a.warmup, a.replay, a.slo),
            (
                true,
                TimeDelta::hours(12),
                TimeDelta::hours(6),
                TimeDelta::days(2),
                ServiceLevel::default()
            )
        );
        assert!(
            c.workloads[0].describe().contains("2d of history replayed at startup"),
            "{}",
            c.workloads[0].describe()
        );
        let c = parse(&text("{replay: 0s}"), Path::new("p.yaml")).unwrap();
        assert_eq!(c.workloads[0].policy.adaptive.replay, TimeDelta::zero());
        assert!(c.workloads[0].describe().contains("no replay at startup"));
        for (block, expect) in [
            (
                "{halfLife: 10m}",
                "p.yaml:6:23: workloads[0].adaptiveQuantile.halfLife: 10m must be between 1h and 60d (default 1d)",
            ),
            ("{warmup: soon}", "workloads[0].adaptiveQuantile.warmup:"),
            (
                "{replay: 90d}",
                "workloads[0].adaptiveQuantile.replay: 90d must be between 0s and 60d (default 3d)",
            ),
            ("{enable: true}", "unknown field `enable`"),
            (
                "{unservedVsReactive: 0.8}",
                "p.yaml:6:23: workloads[0].adaptiveQuantile.unservedVsReactive: is replaced by serviceLevel.maxUnserved",
            ),
        ] {
            let err = parse(&text(block), Path::new("p.yaml")).unwrap_err().to_string();
            assert!(err.contains(expect), "{block}: {err}");
        }
    }

    #[test]
    fn capacity_and_lead_time_have_physical_bounds() {
        let text = |cap: &str, lead: &str| {
            format!(
                "workloads:\n  - name: a\n    demand: {{generator: {{profile: embeddings}}}}\n    capacityPerReplica: {cap}\n    \
                 maxReplicas: 4\n    leadTime: {lead}\n"
            )
        };
        assert!(parse(&text("0.001", "1h"), Path::new("p.yaml")).is_ok());
        assert!(parse(&text("1e12", "15s"), Path::new("p.yaml")).is_ok());
        for (cap, lead, expect) in [
            (
                "1e-320",
                "5m",
                "p.yaml:4:25: workloads[0].capacityPerReplica: 1e-320 is outside 0.001 to 1e12",
            ),
            (
                "1e13",
                "5m",
                "workloads[0].capacityPerReplica: 1e13 is outside 0.001 to 1e12",
            ),
            (
                "3",
                "1000w",
                "p.yaml:6:15: workloads[0].leadTime: 1000w is longer than 1h",
            ),
            ("3", "61m", "workloads[0].leadTime: 61m is longer than 1h"),
        ] {
            let err = parse(&text(cap, lead), Path::new("p.yaml")).unwrap_err().to_string();
            assert!(err.contains(expect), "{cap} {lead}: {err}");
        }
    }

    #[test]
    fn the_service_level_is_a_percentage_over_a_window() {
        let text = |block: &str| {
            format!(
                "workloads:\n  - name: a\n    demand: {{generator: {{profile: embeddings}}}}\n    capacityPerReplica: 3\n    \
                 maxReplicas: 4\n    serviceLevel: {block}\n"
            )
        };
        let c = parse(&text("{maxUnserved: 0.1%, window: 3d}"), Path::new("p.yaml")).unwrap();
        let w = &c.workloads[0];
        assert_eq!(
            w.policy.adaptive.slo,
            ServiceLevel {
                max_unserved: 0.001,
                window: TimeDelta::days(3)
            }
        );
        assert!(
            w.describe().contains("at most 0.1% of demand unserved over 3d"),
            "{}",
            w.describe()
        );
        let c = parse(&text("{window: 1d}"), Path::new("p.yaml")).unwrap();
        assert_eq!(
            c.workloads[0].policy.adaptive.slo.max_unserved, 0.01,
            "the default share"
        );
        for (block, expect) in [
            (
                "{maxUnserved: 0.1}",
                "p.yaml:6:19: workloads[0].serviceLevel.maxUnserved: 0.1 is not a percentage; write the share of \
                 demand that may go unserved with a % sign, e.g. 1%",
            ),
            (
                "{maxUnserved: 80%}",
                "workloads[0].serviceLevel.maxUnserved: 80% must be between 0.001% and 50%",
            ),
            (
                "{maxUnserved: lots}",
                "serviceLevel.maxUnserved: `lots` is not a percentage",
            ),
            (
                "{window: 10m}",
                "workloads[0].serviceLevel.window: 10m must be between 1h and 60d (default 7d)",
            ),
            ("{window: soon}", "workloads[0].serviceLevel.window:"),
            ("{max: 1%}", "unknown field `max`"),
        ] {
            let err = parse(&text(block), Path::new("p.yaml")).unwrap_err().to_string();
            assert!(err.contains(expect), "{block}: {err}");
        }
    }

    #[test]
    fn fallback_utilization_and_history_default_and_are_checked() {
        let text = "\
prometheus: {url: 'http://prometheus:9090'}
workloads:
  - name: a
    demand: {promql: 'up', step: 30m}
    capacityPerReplica: 3
    maxReplicas: 4
  - name: b
    demand: {promql: 'up'}
    capacityPerReplica: 3
    maxReplicas: 4
    fallbackUtilization: 1
    hpaScaleDownStabilization: 1m
    adaptiveQuantile: {enabled: false}
";
        let c = parse(text, Path::new("p.yaml")).unwrap();
        let (a, b) = (&c.workloads[0], &c.workloads[1]);
        assert_eq!(a.policy.adaptive, Adaptive::default());
        assert!(!b.policy.adaptive.enabled);
        assert!(
            b.describe().contains("plan: p90 of demand over lead 5m"),
            "{}",
            b.describe()
        );
        assert_eq!(
            a.policy.fallback_utilization,
            crate::control::policy::DEFAULT_FALLBACK_UTILIZATION
        );
        assert_eq!(b.policy.fallback_utilization.get(), 1.0);
        assert_eq!(
            a.policy.downscale_stabilization,
            TimeDelta::minutes(5),
            "the HPA's legacy default"
        );
        assert_eq!(
            a.describe(),
            "default/a: promql at a 30m step, history 35d, seasonality auto, refit every 1h\n  \
             slo: at most 1% of demand unserved over 7d\n  \
             plan: the cheapest forecast quantile or reactive target that met the SLO (p90 until 1d scored, \
             half-life 1d, 3d of history replayed at startup) over lead 5m \
             at 3 requests/s per replica, replicas 1..4, scale-in on the forecast\n  \
             serving: serve, demoted to reactive when forecast quality breaks its bounds; fallback at 70% utilization; \
             not served once the newest demand sample is over 1h30m old\n  \
             HPA: sync 15s, scale-down hold 5m"
        );
        assert!(
            b.describe().contains("fallback at 100% utilization"),
            "{}",
            b.describe()
        );
        assert!(b.describe().contains("scale-down hold 1m"), "{}", b.describe());
        assert_eq!(b.policy.downscale_stabilization, TimeDelta::minutes(1));
        let ps = problems(&text.replace("hpaScaleDownStabilization: 1m", "hpaScaleDownStabilization: 2h"));
        assert!(
            ps.iter()
                .any(|p| p.starts_with("p.yaml:12:32: workloads[1].hpaScaleDownStabilization: must be at most 1h")),
            "{ps:?}"
        );
        // Coarse steps read more history by default (what a fit reads), fine ones 15 days.
        assert_eq!(a.history, TimeDelta::days(35));
        assert_eq!(b.history, TimeDelta::days(15));
        let ps = problems(&text.replace("fallbackUtilization: 1", "fallbackUtilization: .nan"));
        assert!(ps.iter().any(|p| p.starts_with("p.yaml:11:26:")), "{ps:?}");
        for bad in ["0", "1.5", "-0.7"] {
            let ps = problems(&text.replace("fallbackUtilization: 1", &format!("fallbackUtilization: {bad}")));
            let joined = ps.join("\n");
            assert!(
                joined.contains("p.yaml:11:26: workloads[1].fallbackUtilization: must be in (0, 1]"),
                "{bad}: {joined}"
            );
        }
    }

    #[test]
    fn every_problem_is_listed_with_its_position() {
        let text = "\
workloads:
  - name: Web_1
    demand: {promql: 'up'}
    capacityPerReplica: -3
    quantile: 1.5
    maxReplicas: 4
    minReplicas: 9
  - name: ok
    demand: {promql: 'up'}
    capacityPerReplica: 3
    maxReplicas: 4
    capcity: 7
  - name: lead
    demand: {promql: 'up', trace: x.csv}
    capacityPerReplica: 3
    maxReplicas: 4
    leadTime: 5 minutes
maxForecastAge: soon
";
        let ps = problems(text);
        let joined = ps.join("\n");
        assert!(
            joined.contains("p.yaml:2:11: workloads[0].name: `Web_1` must be a DNS label"),
            "{joined}"
        );
        assert!(
            joined.contains("p.yaml:4:25: workloads[0].capacityPerReplica: must be a positive number"),
            "{joined}"
        );
        assert!(
            joined.contains("p.yaml:5:15: workloads[0].quantile: quantile must be strictly between 0 and 1, got 1.5"),
            "{joined}"
        );
        assert!(
            joined.contains("workloads[0].maxReplicas: (4) is below minReplicas (9)"),
            "{joined}"
        );
        assert!(joined.contains("workloads[1]: unknown field `capcity`"), "{joined}");
        assert!(
            joined.contains("workloads[2].demand: set exactly one of `promql`, `trace` or `generator`"),
            "{joined}"
        );
        assert!(
            joined.contains("workloads[2].leadTime: `5 minutes` is not a duration"),
            "{joined}"
        );
        assert!(
            joined.contains("p.yaml:18:17: maxForecastAge: `soon` is not a duration"),
            "{joined}"
        );
        assert!(
            joined.contains("p.yaml:12:5: workloads[1]: unknown field `capcity`, expected one of name,"),
            "{joined}"
        );
        assert!(!joined.contains("at line 12"), "position is not repeated: {joined}");
        assert_eq!(ps.len(), 8, "{joined}");
    }

    #[test]
    fn structural_errors_are_located() {
        let ps = problems(
            "workloads:\n  - name: a\n    demand: {promql: up}\n    capacityPerReplica: lots\n    maxReplicas: 3\n",
        );
        assert_eq!(ps.len(), 1, "{ps:?}");
        assert!(ps[0].starts_with("p.yaml:4:25: workloads[0]:"), "{ps:?}");
        let ps = problems("listen: 1\nworkloads: []\n");
        assert!(ps[0].contains("unknown field `listen`"), "{ps:?}");
        let ps = problems("workloads: []\n");
        assert!(ps[0].contains("workloads: is empty"), "{ps:?}");
    }

    #[test]
    fn mode_and_quality_bounds_default_and_parse() {
        let base =
            "workloads:\n  - name: a\n    demand: {trace: a.csv}\n    capacityPerReplica: 3\n    maxReplicas: 4\n";
        let c = parse(base, Path::new("p.yaml")).unwrap();
        assert_eq!(c.workloads[0].serving, ServingConfig::default());
        assert_eq!(c.workloads[0].serving.mode, Mode::Serve);
        let text = format!("{base}    mode: forecastOnly\n    quality: {{window: 30, minSamples: 10, demote: {{maxUnderPrediction: 0.5}}}}\n");
        let c = parse(&text, Path::new("p.yaml")).unwrap();
        let s = c.workloads[0].serving;
        assert_eq!(s.mode, Mode::ForecastOnly);
        assert_eq!(
            (s.quality.window, s.quality.min_samples, s.quality.demote.max_under_rate),
            (30, 10, 0.5)
        );
        assert_eq!(
            s.quality.promote,
            quality::Bounds::default().promote,
            "unset limits keep their defaults"
        );

        let ps = problems(&format!("{base}    mode: forecast\n"));
        assert!(
            ps[0].contains("workloads[0]") && ps[0].contains("unknown variant `forecast`"),
            "{ps:?}"
        );
        let ps = problems(&format!(
            "{base}    quality: {{promote: {{maxUnderPrediction: 0.9}}}}\n"
        ));
        assert!(
            ps[0].starts_with("p.yaml:6:14: workloads[0].quality: `promote.maxUnderPrediction` (0.9)"),
            "{ps:?}"
        );
        let ps = problems(&format!("{base}    quality: {{demote: {{maxUnder: 0.9}}}}\n"));
        assert!(ps[0].contains("unknown field `maxUnder`"), "{ps:?}");
    }
}
