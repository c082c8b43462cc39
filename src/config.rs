//! The workload file: YAML parsed into typed structs (unknown fields are errors), validated once into a [`Config`].
//!
//! Every problem names the file, line and column, the field, what is allowed and how to fix it. Structural problems
//! (unknown fields, wrong types) are found per workload, so one bad workload does not hide another's problems;
//! value problems are all listed together.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::TimeDelta;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::control::engine::Mode;
use crate::control::policy::{Adaptive, ServiceLevel};
use crate::control::policy::{Policy, Replicas, ScaleIn, Utilization};
use crate::control::quality;
use crate::duration;
use crate::forecast::{Quantile, Seasonality};
use crate::history::prometheus::{self, BasicAuth, Combine, PrometheusSettings, Secret};
use crate::history::synthetic::{Generator, Profile};
use crate::store::WorkloadId;
use crate::workload::{PolicyType, ScaleTargetRef, SelectPolicy};
use k8s_openapi::api::autoscaling::v2::{HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscalerBehavior};

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
    /// The workloads to plan for; empty when the file lists none (valid for `serve --watch-objects` only).
    pub workloads: Vec<WorkloadConfig>,
    /// The Prometheus-compatible query API for `promql` demand sources.
    pub prometheus: Option<PrometheusSettings>,
    /// `/metrics` carries every per-workload series (`metricsDetail`), not only the default set
    /// ([`crate::sre::telemetry::Detail`]).
    pub metrics_detail: bool,
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
    /// The object scaled and the HPA that reads the target (`scaleTargetRef`, `hpa`); always set for a
    /// PredictiveAutoscaler, optional in the workload file.
    pub scale_target: Option<ScaleTarget>,
}

/// The object a workload scales, and the HPA that reads its target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleTarget {
    /// The object (`scaleTargetRef`).
    pub reference: ScaleTargetRef,
    /// Whether prescale creates and owns the HPA (`hpa.managed`).
    pub managed_hpa: bool,
    /// The managed HPA's behavior (`hpa.behavior`), when set.
    pub hpa_behavior: Option<HorizontalPodAutoscalerBehavior>,
}

/// Where a workload's spec is read from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Origin<'a> {
    /// An entry of the workload file at this path (relative trace paths are read from its directory).
    File(&'a Path),
    /// A PredictiveAutoscaler's spec: `scaleTargetRef` required, no trace or generator.
    Object,
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
            Seasonality::Periods(ps) if ps.is_empty() => "none".to_owned(),
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
        let target = match &self.scale_target {
            None => String::new(),
            Some(t) => format!(
                "\n  target: {} {} ({}), HPA {}",
                t.reference.kind,
                t.reference.name,
                t.reference.api_version,
                match (t.managed_hpa, &t.hpa_behavior) {
                    (false, _) => "not managed by prescale",
                    (true, None) => "managed by prescale",
                    (true, Some(_)) => "managed by prescale, with its behavior set",
                }
            ),
        };
        format!(
            "{id}: {source}, history {history}, seasonality {seasonality}, refit every {refit}\n  \
             slo: {slo}\n  \
             plan: {quantile} over lead {lead} at {cap} {unit} per replica, replicas {min}..{max}, \
             scale-in on {scale_in}\n  \
             serving: {mode}, {demotion}; fallback at {fallback}% utilization; not served once the newest \
             demand sample is over {max_data_age} old\n  \
             HPA: sync {sync}, scale-down hold {hold}{target}",
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

/// The bounds of a workload's settings: the validator checks them, and the PredictiveAutoscaler CRD's rules are built
/// from them ([`crate::workload`]).
pub mod bounds {
    use chrono::TimeDelta;

    /// Smallest `capacityPerReplica`: the HPA reads a target in thousandths of a unit.
    pub const MIN_CAPACITY: f64 = 0.001;
    /// Largest `capacityPerReplica`: far past any real replica, and well inside what a quantity can carry.
    pub const MAX_CAPACITY: f64 = 1e12;
    /// Shortest `maxDataAge`: Prometheus itself lags by a scrape interval and a rule evaluation.
    pub const MIN_DATA_AGE: TimeDelta = TimeDelta::minutes(1);
    /// Longest `maxDataAge`: a plan from demand a day old is a guess, not a forecast.
    pub const MAX_DATA_AGE: TimeDelta = TimeDelta::days(1);
    /// Longest `leadTime`: cold starts (node, image, model weights) take minutes; the plan looks this far ahead.
    pub const MAX_LEAD_TIME: TimeDelta = TimeDelta::hours(1);
    /// Finest `demand.step`: a second; scrapes come seconds apart, finer data only repeats samples.
    pub const MIN_STEP: TimeDelta = TimeDelta::seconds(1);
    /// Coarsest `demand.step`: an hour already blurs the daily shape the forecast is for.
    pub const MAX_STEP: TimeDelta = TimeDelta::hours(1);
    /// Fewest steps `history` may cover: below this no model has samples to fit on.
    pub const MIN_HISTORY_STEPS: i32 = 20;
    /// Longest `history`: what a fit reads at the coarsest step, [`crate::forecast::history_span`] of
    /// [`MAX_STEP`].
    pub const MAX_HISTORY: TimeDelta = TimeDelta::days(35);
    /// Shortest `refitInterval` (it is also never shorter than a step): a fit takes seconds of CPU.
    pub const MIN_REFIT: TimeDelta = TimeDelta::minutes(1);
    /// Longest `refitInterval`: a model refitted less than daily misses yesterday's demand.
    pub const MAX_REFIT: TimeDelta = TimeDelta::days(1);
    /// Longest `hpaSync`: the HPA controller syncs every 15s by default; minutes would make it blind to the plan.
    pub const MAX_HPA_SYNC: TimeDelta = TimeDelta::minutes(5);
    /// Longest `hpaScaleDownStabilization`: the HPA's own limit on `stabilizationWindowSeconds`.
    pub const MAX_SCALE_DOWN_STABILIZATION: TimeDelta = TimeDelta::hours(1);
    /// Shortest `adaptiveQuantile.halfLife`: scores fading faster would follow noise.
    pub const MIN_HALF_LIFE: TimeDelta = TimeDelta::hours(1);
    /// Longest `adaptiveQuantile` span (`halfLife`, `warmup`, `replay`).
    pub const MAX_ADAPTIVE_SPAN: TimeDelta = TimeDelta::days(60);
    /// Most seconds in an HPA behavior's `stabilizationWindowSeconds`.
    pub const MAX_STABILIZATION_SECONDS: i64 = 3600;
    /// Most seconds in an HPA scaling policy's `periodSeconds`.
    pub const MAX_POLICY_PERIOD_SECONDS: i64 = 1800;
    /// Most policies in one direction of an HPA behavior.
    pub const MAX_POLICIES: usize = 10;
}
use bounds::*;

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

/// Longest `interval`: the plan is recomputed at least this often.
const MAX_INTERVAL: TimeDelta = TimeDelta::hours(1);
/// Longest `maxForecastAge`: older plans no longer describe demand; the HPA holding is safer.
const MAX_FORECAST_AGE: TimeDelta = TimeDelta::hours(1);

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

/// How one workload's forecast is used and judged (`mode:` and `quality:` in the workload file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ServingConfig {
    /// `serve` (default) or `forecastOnly`.
    pub mode: Mode,
    /// When forecast quality demotes the workload to reactive scaling, and when it is promoted back.
    pub quality: quality::Bounds,
}

/// A YAML value with its position, read without a schema so that one wrong value never stops the reading of the
/// rest: types, ranges and unknown fields are all judged afterwards, each problem at its own line and column.
#[derive(Debug)]
enum Node {
    /// `~`, `null` or nothing at all.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A whole number.
    Int(i128),
    /// Any other number, `.nan` and `.inf` included (refused where they are read).
    Float(f64),
    /// Text.
    Str(String),
    /// A list.
    Seq(Vec<Spanned<Node>>),
    /// A mapping, keys in file order.
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl Node {
    /// What was found, as a problem names it: "the number 3", "text `lots`", "a list".
    fn found(&self) -> String {
        match self {
            Node::Null => "nothing".into(),
            Node::Bool(b) => format!("`{b}`"),
            Node::Int(i) => format!("the number {i}"),
            Node::Float(x) if x.is_nan() => "`.nan`".into(),
            Node::Float(x) if x.is_infinite() => format!("`{}.inf`", if *x < 0.0 { "-" } else { "" }),
            Node::Float(x) => format!("the number {x}"),
            Node::Str(s) => format!("text `{s}`"),
            Node::Seq(_) => "a list".into(),
            Node::Map(_) => "a mapping".into(),
        }
    }
}

/// A value as the file spells it, for messages that quote it back.
fn written(node: &Spanned<Node>) -> String {
    match &node.value {
        Node::Str(s) => s.clone(),
        other => other.found(),
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AnyValue;
        impl<'de> Visitor<'de> for AnyValue {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
                Ok(Node::Int(v.into()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Node, E> {
                Ok(Node::Int(v))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Node, E> {
                Ok(i128::try_from(v).map_or(Node::Float(v as f64), Node::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Str(v.into()))
            }
            fn visit_string<E>(self, v: String) -> Result<Node, E> {
                Ok(Node::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(AnyValue)
    }
}

/// The fields of one mapping in the file, with the dotted path that names them in problems.
struct Fields<'a> {
    path: String,
    node: &'a Spanned<Node>,
    entries: &'a [(Spanned<String>, Spanned<Node>)],
}

impl<'a> Fields<'a> {
    /// The value of `key`; `None` when it is absent or empty (`key:` or `key: ~`), which means "the default".
    fn get(&self, key: &str) -> Option<&'a Spanned<Node>> {
        self.entries
            .iter()
            .find(|(k, _)| k.value == key)
            .map(|(_, v)| v)
            .filter(|v| !matches!(v.value, Node::Null))
    }

    /// The dotted path of `key`.
    fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

const TOP_FIELDS: &[&str] = &[
    "apiAddr",
    "adminAddr",
    "maxForecastAge",
    "maxDataAge",
    "interval",
    "metricsDetail",
    "prometheus",
    "workloads",
];
/// The fields of a workload file entry before the spec's: a PredictiveAutoscaler's metadata.
const ENTRY_FIELDS: &[&str] = &["name", "namespace"];
/// The fields of a workload's spec, in the file's entries and in a PredictiveAutoscaler alike
/// ([`crate::workload::PredictiveAutoscalerSpec`]).
const SPEC_FIELDS: &[&str] = &[
    "scaleTargetRef",
    "demand",
    "unit",
    "capacityPerReplica",
    "leadTime",
    "quantile",
    "serviceLevel",
    "adaptiveQuantile",
    "minReplicas",
    "maxReplicas",
    "seasonality",
    "refitInterval",
    "history",
    "maxDataAge",
    "hpaSync",
    "hpaScaleDownStabilization",
    "scaleIn",
    "fallbackUtilization",
    "mode",
    "quality",
    "hpa",
];
const TARGET_FIELDS: &[&str] = &["apiVersion", "kind", "name"];
const DEMAND_FIELDS: &[&str] = &["promql", "combine", "step", "trace", "generator"];
const GENERATOR_FIELDS: &[&str] = &["profile", "seed", "scale"];
const SERVICE_LEVEL_FIELDS: &[&str] = &["maxUnserved", "window"];
/// `unservedVsReactive` is known only to say what replaced it.
const ADAPTIVE_FIELDS: &[&str] = &["enabled", "halfLife", "warmup", "replay", "unservedVsReactive"];
const RETIRED_FIELDS: &[&str] = &["adaptiveQuantile.unservedVsReactive"];
const QUALITY_FIELDS: &[&str] = &["autoDemote", "window", "minSamples", "demote", "promote"];
const LIMITS_FIELDS: &[&str] = &["minCoverage", "maxUnderPrediction", "maxShortfall"];
const HPA_FIELDS: &[&str] = &["managed", "behavior"];
const BEHAVIOR_FIELDS: &[&str] = &["scaleUp", "scaleDown"];
const RULES_FIELDS: &[&str] = &["stabilizationWindowSeconds", "selectPolicy", "policies"];
const POLICY_FIELDS: &[&str] = &["type", "value", "periodSeconds"];

/// Every field the validator accepts in a workload file entry, as dotted paths (`demand.step`; a list's items'
/// fields after the list's name: `hpa.behavior.scaleUp.policies.type`). The PredictiveAutoscaler's spec has the same
/// fields but [`crate::workload::FILE_ONLY_FIELDS`]; a test holds the two to that.
pub fn workload_fields() -> Vec<String> {
    fn add(out: &mut Vec<String>, prefix: &str, fields: &[&str]) {
        for f in fields {
            let path = if prefix.is_empty() {
                f.to_string()
            } else {
                format!("{prefix}.{f}")
            };
            if RETIRED_FIELDS.contains(&path.as_str()) {
                continue;
            }
            out.push(path.clone());
            let children: &[&[&str]] = match *f {
                "scaleTargetRef" => &[TARGET_FIELDS],
                "demand" => &[DEMAND_FIELDS],
                "generator" => &[GENERATOR_FIELDS],
                "serviceLevel" => &[SERVICE_LEVEL_FIELDS],
                "adaptiveQuantile" => &[ADAPTIVE_FIELDS],
                "quality" => &[QUALITY_FIELDS],
                "demote" | "promote" => &[LIMITS_FIELDS],
                "hpa" => &[HPA_FIELDS],
                "behavior" => &[BEHAVIOR_FIELDS],
                "scaleUp" | "scaleDown" => &[RULES_FIELDS],
                "policies" => &[POLICY_FIELDS],
                _ => &[],
            };
            for child in children {
                add(out, &path, child);
            }
        }
    }
    let mut out = Vec::new();
    add(&mut out, "", ENTRY_FIELDS);
    add(&mut out, "", SPEC_FIELDS);
    out
}
const PROMETHEUS_FIELDS: &[&str] = &[
    "url",
    "bearerToken",
    "bearerTokenFile",
    "basicAuth",
    "caFile",
    "timeout",
    "retries",
    "retryBackoff",
    "maxRetryBackoff",
    "maxConcurrentQueries",
];

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

/// Nodes a workload file may hold: 100,000 workloads of ~40 nodes each, twenty times the parser's default (which a
/// file of 10,000 workloads of ~25 nodes each already exceeds). Alias expansion stays capped by the parser's alias,
/// anchor and alias-to-anchor-ratio limits, so a small file still cannot expand into millions of nodes.
const MAX_YAML_NODES: usize = 5_000_000;

/// How workload files and object manifests are read: `.nan` and `.inf` are read as numbers and refused where they
/// stand, with the field's name; the node and event budgets allow [`MAX_YAML_NODES`].
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::PassThrough,
        budget: serde_saphyr::budget! {
            max_nodes: MAX_YAML_NODES,
            max_events: 2 * MAX_YAML_NODES,
        },
    }
}

/// Parses and validates config text; `path` names the file in problems and anchors relative trace paths.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let mut v = Validator {
        file: path.to_path_buf(),
        problems: Vec::new(),
    };
    let root: Spanned<Node> = match serde_saphyr::from_str_with_options(text, yaml_options()) {
        Ok(root) => root,
        Err(e) => {
            v.parse_error(&e);
            return Err(ConfigError::Invalid(v.problems));
        }
    };
    let Some(top) = v.fields(&root, "", TOP_FIELDS) else {
        return Err(ConfigError::Invalid(v.problems));
    };
    let mut workloads = Vec::new();
    // Where each read workload sits, so a duplicate is pointed at.
    let mut items_read = Vec::new();
    // No workloads is a valid file: `serve --watch-objects` plans for PredictiveAutoscaler objects only. Commands that
    // need the file's workloads (`serve` without the controller, `backtest --config`) refuse it themselves.
    match top.get("workloads") {
        None => {}
        Some(list) => match &list.value {
            Node::Null => {}
            Node::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(w) = v.workload(item, &format!("workloads[{i}]"), path) {
                        workloads.push(w);
                        items_read.push((i, item));
                    }
                }
            }
            other => v.at(
                list,
                "workloads",
                format!("expected a list of workloads (`- name: ...`), found {}", other.found()),
            ),
        },
    }
    let mut seen = std::collections::BTreeMap::new();
    for ((w, _), (i, item)) in workloads.iter().zip(&items_read) {
        if let Some(first) = seen.insert(w.id.clone(), *i) {
            let at = entry(item, "name").unwrap_or(item);
            v.at(
                at,
                &format!("workloads[{i}].name"),
                format!(
                    "workload {} is listed twice (first as workloads[{first}]); names must be unique within a \
                     namespace",
                    w.id
                ),
            );
        }
    }
    let api_addr = v.addr(top.get("apiAddr"), "apiAddr", defaults::API_ADDR);
    let admin_addr = v.addr(top.get("adminAddr"), "adminAddr", defaults::ADMIN_ADDR);
    let interval = v
        .duration_within(top.get("interval"), "interval", TimeDelta::seconds(1), MAX_INTERVAL, "")
        .unwrap_or(DEFAULT_INTERVAL);
    let max_forecast_age = v
        .duration_within(
            top.get("maxForecastAge"),
            "maxForecastAge",
            interval * 2,
            MAX_FORECAST_AGE,
            ": at least two intervals, so that one late refresh does not stop serving, and at most 1h, past which \
             a plan no longer describes demand and holding the HPA is safer",
        )
        .unwrap_or_else(|| duration::parse(defaults::MAX_FORECAST_AGE).expect("default parses"));
    if top.get("maxForecastAge").is_none() && max_forecast_age < interval * 2 {
        v.at(
            top.get("interval").unwrap_or(&root),
            "interval",
            format!(
                "{} leaves less than two intervals within the default maxForecastAge {}; lower it or raise \
                 maxForecastAge",
                duration::format(interval),
                defaults::MAX_FORECAST_AGE
            ),
        );
    }
    if let Some(raw) = top.get("maxDataAge") {
        if let Some(max_data_age) = v.duration(raw, "maxDataAge") {
            if !(MIN_DATA_AGE..=MAX_DATA_AGE).contains(&max_data_age) {
                v.at(
                    raw,
                    "maxDataAge",
                    format!(
                        "{} is outside 1m to 1d; leave it out for max(leadTime, 3 × demand.step, 2m) per workload",
                        written(raw)
                    ),
                );
            }
            // A workload's own `maxDataAge` wins over the file's.
            for (w, _) in workloads.iter_mut().filter(|(_, own)| !own) {
                if let DemandSource::Promql { step, .. } | DemandSource::Generator(Generator { step, .. }) = &w.demand {
                    if max_data_age < *step * 2 {
                        v.at(
                            raw,
                            "maxDataAge",
                            format!(
                                "{} is shorter than two demand steps of workload {} ({} each): its data is normally \
                                 that old; raise it to at least {}",
                                written(raw),
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
    }
    let metrics_detail = top
        .get("metricsDetail")
        .and_then(|b| v.boolean(b, "metricsDetail"))
        .unwrap_or(false);
    let prometheus = top.get("prometheus").and_then(|p| v.prometheus(p));
    if top.get("prometheus").is_none() {
        for ((w, _), (i, item)) in workloads.iter().zip(&items_read) {
            if matches!(w.demand, DemandSource::Promql { .. }) {
                let at = entry(item, "demand").and_then(|d| entry(d, "promql")).unwrap_or(item);
                v.at(
                    at,
                    &format!("workloads[{i}].demand.promql"),
                    format!(
                        "workload {} reads Prometheus, and the file has no `prometheus:` section; add \
                         `prometheus: {{url: http://prometheus:9090}}` at the top level",
                        w.id
                    ),
                );
            }
        }
    }
    let workloads: Vec<WorkloadConfig> = workloads.into_iter().map(|(w, _)| w).collect();
    if v.problems.is_empty() {
        Ok(Config {
            api_addr,
            admin_addr,
            max_forecast_age,
            interval,
            workloads,
            prometheus,
            metrics_detail,
        })
    } else {
        Err(ConfigError::Invalid(v.problems))
    }
}

/// Validates a PredictiveAutoscaler's spec, as the API serves it, with the rules of the workload file: the same
/// validator, the same messages. Problems name the object (`namespace/name`) where a file problem names the file,
/// and are located by field path (`spec.demand.step`).
pub fn check_spec(namespace: &str, name: &str, spec: &serde_json::Value) -> Result<WorkloadConfig, Vec<Problem>> {
    let mut v = Validator {
        file: PathBuf::from(format!("{namespace}/{name}")),
        problems: Vec::new(),
    };
    if !is_dns_label(name) {
        v.problems.push(Problem {
            file: v.file.clone(),
            line: 0,
            column: 0,
            field: "metadata.name".into(),
            message: format!("`{name}` must be a DNS label: it is the workload label on the served metric"),
        });
    }
    let id = WorkloadId {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    };
    let config = v.object_spec(&from_json(spec), Some(id));
    match config {
        Some(config) if v.problems.is_empty() => Ok(config),
        _ => Err(v.problems),
    }
}

/// Reads and validates a file of PredictiveAutoscaler objects (YAML documents, or a `List` of them as
/// `kubectl get -o yaml` writes it) with the rules of the workload file; problems are located by line and column.
pub fn load_objects(path: impl AsRef<Path>) -> Result<Vec<WorkloadConfig>, ConfigError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.into(),
        source,
    })?;
    parse_objects(&text, path)
}

/// Parses and validates PredictiveAutoscaler objects; `path` names the file in problems.
pub fn parse_objects(text: &str, path: &Path) -> Result<Vec<WorkloadConfig>, ConfigError> {
    let mut v = Validator {
        file: path.to_path_buf(),
        problems: Vec::new(),
    };
    let documents: Vec<Spanned<Node>> = match serde_saphyr::from_multiple_with_options(text, yaml_options()) {
        Ok(documents) => documents,
        Err(e) => {
            v.parse_error(&e);
            return Err(ConfigError::Invalid(v.problems));
        }
    };
    let mut objects = Vec::new();
    for document in &documents {
        match (entry(document, "kind").map(|k| &k.value), entry(document, "items")) {
            (Some(Node::Str(kind)), Some(items)) if kind == "List" => match &items.value {
                Node::Seq(items) => objects.extend(items),
                other => v.at(
                    items,
                    "items",
                    format!("expected a list of objects, found {}", other.found()),
                ),
            },
            _ => objects.push(document),
        }
    }
    if objects.is_empty() {
        v.problems.push(Problem {
            file: path.into(),
            line: 0,
            column: 0,
            field: String::new(),
            message: format!(
                "holds no object; write PredictiveAutoscaler objects (apiVersion: {}/{}, kind: PredictiveAutoscaler)",
                crate::workload::GROUP,
                crate::workload::VERSION
            ),
        });
    }
    let mut workloads: Vec<WorkloadConfig> = Vec::new();
    for object in objects {
        if let Some(w) = v.object(object) {
            if workloads.iter().any(|seen| seen.id == w.id) {
                v.at(object, "metadata.name", format!("{} is in the file twice", w.id));
            }
            workloads.push(w);
        }
    }
    if v.problems.is_empty() {
        Ok(workloads)
    } else {
        Err(ConfigError::Invalid(v.problems))
    }
}

/// The value of `key` in a mapping node.
fn entry<'a>(node: &'a Spanned<Node>, key: &str) -> Option<&'a Spanned<Node>> {
    match &node.value {
        Node::Map(entries) => entries.iter().find(|(k, _)| k.value == key).map(|(_, v)| v),
        _ => None,
    }
}

/// A JSON value as the validator reads YAML, without positions.
fn from_json(value: &serde_json::Value) -> Spanned<Node> {
    use serde_json::Value;
    let node = match value {
        Value::Null => Node::Null,
        Value::Bool(b) => Node::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Node::Int(i.into()),
            (None, Some(u)) => Node::Int(u.into()),
            (None, None) => Node::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Node::Str(s.clone()),
        Value::Array(items) => Node::Seq(items.iter().map(from_json).collect()),
        Value::Object(map) => Node::Map(map.iter().map(|(k, v)| (unplaced(k.clone()), from_json(v))).collect()),
    };
    unplaced(node)
}

/// A value with no position: a problem about it is located by its field path alone.
fn unplaced<T>(value: T) -> Spanned<T> {
    use serde_saphyr::Location;
    Spanned::new(value, Location::UNKNOWN, Location::UNKNOWN)
}

struct Validator {
    file: PathBuf,
    problems: Vec<Problem>,
}

impl Validator {
    /// A PredictiveAutoscaler's spec.
    fn object_spec(&mut self, spec: &Spanned<Node>, id: Option<WorkloadId>) -> Option<WorkloadConfig> {
        let before = self.problems.len();
        let w = self.fields(spec, "spec", SPEC_FIELDS)?;
        let config = self.spec(&w, id, Origin::Object).map(|(config, _)| config);
        config.filter(|_| self.problems.len() == before)
    }

    /// One PredictiveAutoscaler object read from YAML: its type, name and namespace, then its spec.
    fn object(&mut self, node: &Spanned<Node>) -> Option<WorkloadConfig> {
        let o = self.fields(node, "", &["apiVersion", "kind", "metadata", "spec", "status"])?;
        let api_version = format!("{}/{}", crate::workload::GROUP, crate::workload::VERSION);
        for (key, want) in [("apiVersion", api_version.as_str()), ("kind", "PredictiveAutoscaler")] {
            match o.get(key) {
                Some(n) if matches!(&n.value, Node::Str(s) if s == want) => {}
                Some(n) => self.at(
                    n,
                    key,
                    format!(
                        "{} is not `{want}`; this checks PredictiveAutoscaler objects",
                        n.value.found()
                    ),
                ),
                None => self.at(node, key, format!("is required; add `{key}: {want}`")),
            }
        }
        let Some(metadata) = o.get("metadata") else {
            self.at(
                node,
                "metadata",
                "is required; add `metadata: {name: web, namespace: default}`",
            );
            return None;
        };
        let name = match entry(metadata, "name") {
            None => {
                self.at(metadata, "metadata.name", "is required; add e.g. `name: web`");
                None
            }
            Some(n) => self.text(n, "metadata.name", "web").filter(|name| {
                let ok = is_dns_label(name);
                if !ok {
                    self.at(n, "metadata.name", format!("`{name}` must be a DNS label (lowercase letters, digits and '-', at most 63 characters): it is the workload label on the served metric"));
                }
                ok
            }),
        };
        let namespace = match entry(metadata, "namespace") {
            None => Some("default".to_owned()),
            Some(n) => self.text(n, "metadata.namespace", "default"),
        };
        let Some(spec) = o.get("spec") else {
            self.at(
                node,
                "spec",
                "is required; add the workload's settings (see the PredictiveAutoscaler reference)",
            );
            return None;
        };
        let id = name
            .zip(namespace)
            .map(|(name, namespace)| WorkloadId { namespace, name });
        self.object_spec(spec, id)
    }

    fn at<T>(&mut self, span: &Spanned<T>, field: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            line: span.referenced.line(),
            column: span.referenced.column(),
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// A file that is not YAML at all (bad indentation, an unclosed quote, a repeated key).
    fn parse_error(&mut self, e: &serde_saphyr::Error) {
        let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
        let message = e.without_snippet().to_string();
        // The parser prefixes its own position and may add advice about its own options; keep the first line.
        let mut message = message.lines().next().unwrap_or_default().to_string();
        if let Some(i) = message.rfind(" at line ") {
            message.truncate(i);
        }
        if let Some(rest) = message.strip_prefix("error: ") {
            message = rest.to_owned();
        }
        if let Some(i) = message.find("line ").filter(|i| *i == 0) {
            // "line 3 column 4: ..." repeats the position the problem already carries.
            if let Some(colon) = message[i..].find(": ") {
                message = message[i + colon + 2..].to_owned();
            }
        }
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            column,
            field: String::new(),
            message: format!("{message}; the file must be YAML (check indentation and quotes here)"),
        });
    }

    /// The fields of a mapping; every key not in `known` is a problem of its own. An empty value is an empty
    /// mapping; anything else is reported and `None` returned.
    fn fields<'a>(&mut self, node: &'a Spanned<Node>, path: &str, known: &[&str]) -> Option<Fields<'a>> {
        let entries: &[_] = match &node.value {
            Node::Map(entries) => entries,
            Node::Null => &[],
            other => {
                self.at(
                    node,
                    path,
                    format!(
                        "expected a mapping of fields ({}), found {}",
                        known.join(", "),
                        other.found()
                    ),
                );
                return None;
            }
        };
        for (key, _) in entries {
            if !known.contains(&key.value.as_str()) {
                self.at(
                    key,
                    path,
                    format!("unknown field `{}`, expected one of {}", key.value, known.join(", ")),
                );
            }
        }
        Some(Fields {
            path: path.to_owned(),
            node,
            entries,
        })
    }

    /// A finite number (a whole one is a number too).
    fn number(&mut self, node: &Spanned<Node>, field: &str, example: &str) -> Option<f64> {
        match &node.value {
            Node::Int(i) => Some(*i as f64),
            Node::Float(x) if x.is_finite() => Some(*x),
            Node::Str(s) if s.trim().parse::<f64>().is_ok_and(f64::is_finite) => {
                self.at(
                    node,
                    field,
                    format!("`{s}` is quoted text; write the number without quotes, e.g. {example}"),
                );
                None
            }
            other => {
                self.at(
                    node,
                    field,
                    format!("expected a number, found {}; write e.g. {example}", other.found()),
                );
                None
            }
        }
    }

    /// A whole number within `min..=max`.
    fn whole(&mut self, node: &Spanned<Node>, field: &str, min: i64, max: i64, example: &str) -> Option<i64> {
        let x = self.number(node, field, example)?;
        if x.fract() != 0.0 || x < min as f64 || x > max as f64 {
            self.at(
                node,
                field,
                format!("{x} must be a whole number from {min} to {max}, e.g. {example}"),
            );
            return None;
        }
        Some(x as i64)
    }

    /// Text (a number or `true` where text goes is refused: quote it if it is meant as text).
    fn text(&mut self, node: &Spanned<Node>, field: &str, example: &str) -> Option<String> {
        match &node.value {
            Node::Str(s) => Some(s.clone()),
            other => {
                self.at(
                    node,
                    field,
                    format!("expected text, found {}; write e.g. {example}", other.found()),
                );
                None
            }
        }
    }

    fn boolean(&mut self, node: &Spanned<Node>, field: &str) -> Option<bool> {
        match &node.value {
            Node::Bool(b) => Some(*b),
            other => {
                self.at(node, field, format!("expected true or false, found {}", other.found()));
                None
            }
        }
    }

    /// One of the names `names` (as the enum `T` spells its variants).
    fn choice<T: de::DeserializeOwned>(&mut self, node: &Spanned<Node>, field: &str, names: &[&str]) -> Option<T> {
        let found = match &node.value {
            Node::Str(s) if names.contains(&s.as_str()) => {
                return T::deserialize(de::value::StrDeserializer::<de::value::Error>::new(s)).ok();
            }
            Node::Str(s) => format!("`{s}`"),
            other => other.found(),
        };
        self.at(
            node,
            field,
            format!("{found} is not allowed; write one of {}", names.join(", ")),
        );
        None
    }

    /// A duration (`30s`, `5m`); a bare number gets the duration parser's advice about units.
    fn duration(&mut self, node: &Spanned<Node>, field: &str) -> Option<TimeDelta> {
        let text = match &node.value {
            Node::Str(s) => s.clone(),
            Node::Int(i) => i.to_string(),
            Node::Float(x) if x.is_finite() => x.to_string(),
            other => {
                self.at(
                    node,
                    field,
                    format!("expected a duration like 30s, 5m or 1h, found {}", other.found()),
                );
                return None;
            }
        };
        match duration::parse(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.at(node, field, e);
                None
            }
        }
    }

    /// An optional duration within `min..=max`; `why` ends the message (": ..."). `None` when absent or wrong.
    fn duration_within(
        &mut self,
        node: Option<&Spanned<Node>>,
        field: &str,
        min: TimeDelta,
        max: TimeDelta,
        why: &str,
    ) -> Option<TimeDelta> {
        let node = node?;
        let d = self.duration(node, field)?;
        if d < min || d > max {
            self.at(
                node,
                field,
                format!(
                    "{} must be between {} and {}{why}",
                    written(node),
                    duration::format(min),
                    duration::format(max)
                ),
            );
            return None;
        }
        Some(d)
    }

    fn addr(&mut self, raw: Option<&Spanned<Node>>, field: &str, default: &str) -> SocketAddr {
        let fallback: SocketAddr = default.parse().expect("default address parses");
        let Some(raw) = raw else { return fallback };
        let example = format!("{default} (host:port)");
        let Some(text) = self.text(raw, field, &example) else {
            return fallback;
        };
        text.parse().unwrap_or_else(|_| {
            self.at(
                raw,
                field,
                format!("`{text}` is not an address; write host:port, e.g. {default}"),
            );
            fallback
        })
    }

    /// One entry of the file's `workloads:` list: its name and namespace, then the spec's fields. The flag says
    /// whether the entry sets its own `maxDataAge` (the file's applies otherwise).
    fn workload(&mut self, node: &Spanned<Node>, field: &str, config_path: &Path) -> Option<(WorkloadConfig, bool)> {
        let before = self.problems.len();
        let w = self.fields(node, field, &[ENTRY_FIELDS, SPEC_FIELDS].concat())?;
        let f = |name: &str| w.path(name);
        let name = match w.get("name") {
            None => {
                self.at(w.node, &f("name"), "is required; add e.g. `name: web`");
                None
            }
            Some(n) => self.text(n, &f("name"), "web"),
        };
        if let (Some(name), Some(n)) = (&name, w.get("name")) {
            if !is_dns_label(name) {
                self.at(n, &f("name"), format!("`{name}` must be a DNS label: lowercase letters, digits and '-', at most 63 characters, starting and ending with a letter or digit"));
            }
        }
        let namespace = match w.get("namespace") {
            None => Some("default".to_owned()),
            Some(n) => self.text(n, &f("namespace"), "default").inspect(|ns| {
                if !is_dns_label(ns) {
                    self.at(
                        n,
                        &f("namespace"),
                        format!("`{ns}` is not a valid namespace name (DNS label)"),
                    );
                }
            }),
        };
        let id = name
            .zip(namespace)
            .map(|(name, namespace)| WorkloadId { namespace, name });
        let spec = self.spec(&w, id, Origin::File(config_path));
        // An unknown field or a bad name is a problem of the workload too.
        spec.filter(|_| self.problems.len() == before)
    }

    /// A workload's spec, from a file entry or a PredictiveAutoscaler: every field read and located, then the
    /// validated workload (`None` when `id` is, or when a problem was found). The flag says whether the spec sets its
    /// own `maxDataAge`.
    fn spec(&mut self, w: &Fields<'_>, id: Option<WorkloadId>, origin: Origin<'_>) -> Option<(WorkloadConfig, bool)> {
        let before = self.problems.len();
        let f = |name: &str| w.path(name);
        let required = |v: &mut Self, key: &str, example: &str| {
            let found = w.get(key);
            if found.is_none() {
                v.at(w.node, &f(key), format!("is required; add e.g. `{key}: {example}`"));
            }
            found
        };
        let target = match w.get("scaleTargetRef") {
            None if origin == Origin::Object => {
                self.at(
                    w.node,
                    &f("scaleTargetRef"),
                    "is required; add the object whose replicas are planned, e.g. \
                     `scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}`",
                );
                None
            }
            None => Some(None),
            Some(t) => self.scale_target_ref(t, &f("scaleTargetRef")).map(Some),
        };

        // Demand.
        let demand_node = required(self, "demand", "{promql: 'sum(rate(requests_total[1m]))'}");
        let d = demand_node.and_then(|d| self.fields(d, &f("demand"), DEMAND_FIELDS));
        let step = d
            .as_ref()
            .and_then(|d| d.get("step").map(|s| (s, d.path("step"))))
            .map_or(
                Some(duration::parse(defaults::STEP).expect("default parses")),
                |(s, sf)| {
                    let step = self.duration_within(
                        Some(s),
                        &sf,
                        MIN_STEP,
                        MAX_STEP,
                        ": the spacing of demand samples; scrapes come seconds apart and an hourly step already blurs \
                     the daily shape",
                    )?;
                    if step.subsec_nanos() != 0 {
                        self.at(s, &sf, format!("{} must be whole seconds", written(s)));
                        return None;
                    }
                    Some(step)
                },
            );
        let step_or_default = step.unwrap_or_else(|| duration::parse(defaults::STEP).expect("default parses"));
        let demand = d.as_ref().and_then(|d| {
            let Origin::File(config_path) = origin else {
                let file_only: Vec<_> = ["trace", "generator"]
                    .into_iter()
                    .filter_map(|k| Some((k, d.get(k)?)))
                    .collect();
                for (key, node) in &file_only {
                    self.at(
                        node,
                        &d.path(key),
                        "is for the workload file only; a PredictiveAutoscaler reads its demand from Prometheus: \
                         set `promql`",
                    );
                }
                if d.get("promql").is_none() {
                    if file_only.is_empty() {
                        self.at(
                            d.node,
                            &d.path("promql"),
                            "is required; add the PromQL query of the workload's demand, e.g. \
                             `promql: 'sum(rate(requests_total[1m]))'`",
                        );
                    }
                    return None;
                }
                return self.promql(d, step_or_default);
            };
            let sources: Vec<_> = ["promql", "trace", "generator"]
                .into_iter()
                .filter(|k| d.get(k).is_some())
                .collect();
            if sources.len() != 1 {
                self.at(
                    d.node,
                    &d.path.clone(),
                    "set exactly one of `promql`, `trace` or `generator`",
                );
                return None;
            }
            if d.get("promql").is_some() {
                return self.promql(d, step_or_default);
            }
            if let Some(c) = d.get("combine") {
                self.choice::<Combine>(c, &d.path("combine"), &["error", "sum", "max"]);
            }
            if let Some(t) = d.get("trace") {
                let tf = d.path("trace");
                let p = PathBuf::from(self.text(t, &tf, "traces/web.csv")?);
                // Relative to the config file, so the file and its traces move together.
                let p = if p.is_relative() {
                    config_path.parent().unwrap_or(Path::new(".")).join(p)
                } else {
                    p
                };
                if let Err(e) = crate::history::trace::load(&p) {
                    self.at(
                        t,
                        &tf,
                        format!("{e} (a relative path is read from the config file's directory)"),
                    );
                    return None;
                }
                return Some(DemandSource::Trace { path: p });
            }
            let g = d.get("generator")?;
            let gp = d.path("generator");
            let g = self.fields(g, &gp, GENERATOR_FIELDS)?;
            let profile = match g.get("profile") {
                None => {
                    self.at(
                        g.node,
                        &g.path("profile"),
                        "is required; write one of llm-chat, web-frontend, embeddings",
                    );
                    None
                }
                Some(p) => self.choice::<Profile>(p, &g.path("profile"), &["llm-chat", "web-frontend", "embeddings"]),
            };
            let seed = g.get("seed").map_or(Some(0), |s| {
                self.whole(s, &g.path("seed"), 0, i64::MAX, "3").map(|s| s as u64)
            });
            let scale = g.get("scale").map_or(Some(1.0), |s| {
                let x = self.number(s, &g.path("scale"), "1.5")?;
                if !(x > 0.0 && x <= MAX_CAPACITY) {
                    self.at(
                        s,
                        &g.path("scale"),
                        format!("{x} must be above 0 and at most 1e12, e.g. 1.5"),
                    );
                    return None;
                }
                Some(x)
            });
            Some(DemandSource::Generator(Generator {
                profile: profile?,
                seed: seed?,
                scale: scale?,
                step: step_or_default,
            }))
        });

        let cap = required(self, "capacityPerReplica", "12").and_then(|c| {
            let cf = f("capacityPerReplica");
            let cap = self.number(c, &cf, "12 (demand one replica serves)")?;
            if cap <= 0.0 {
                self.at(
                    c,
                    &cf,
                    format!("must be a positive number of demand units one replica serves, got {cap}"),
                );
                return None;
            }
            if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&cap) {
                self.at(
                    c,
                    &cf,
                    format!(
                        "{cap:e} is outside 0.001 to 1e12: the HPA reads targets in thousandths of a unit; measure \
                         demand in a unit that puts one replica's share in that range (e.g. requests/min instead of \
                         requests/s)"
                    ),
                );
                return None;
            }
            Some(cap)
        });
        let lead = match w.get("leadTime") {
            None => Some(duration::parse(defaults::LEAD_TIME).expect("default parses")),
            Some(l) => self.duration(l, &f("leadTime")).and_then(|lead| {
                if lead > MAX_LEAD_TIME {
                    self.at(
                        l,
                        &f("leadTime"),
                        format!(
                            "{} is longer than 1h: a cold start is node + image + model weights until Ready, minutes \
                             in practice; the plan looks this far ahead at every decision",
                            written(l)
                        ),
                    );
                    return None;
                }
                Some(lead)
            }),
        };
        let sync = match w.get("hpaSync") {
            None => Some(duration::parse(defaults::HPA_SYNC).expect("default parses")),
            some => self.duration_within(
                some,
                &f("hpaSync"),
                TimeDelta::seconds(1),
                MAX_HPA_SYNC,
                ": the HPA controller's --horizontal-pod-autoscaler-sync-period (Kubernetes' default 15s)",
            ),
        };
        let quantile = match w.get("quantile") {
            None => Some(Quantile::try_new(defaults::QUANTILE).expect("default quantile is valid")),
            Some(q) => self.number(q, &f("quantile"), "0.9").and_then(|x| {
                Quantile::try_new(x)
                    .map_err(|e| {
                        self.at(
                            q,
                            &f("quantile"),
                            format!("{e}; e.g. 0.9 to be ready for the 90th percentile"),
                        )
                    })
                    .ok()
            }),
        };
        let fallback_utilization = match w.get("fallbackUtilization") {
            None => Some(crate::control::policy::DEFAULT_FALLBACK_UTILIZATION),
            Some(u) => self.number(u, &f("fallbackUtilization"), "0.7").and_then(|x| {
                if !(x > 0.0 && x <= 1.0) {
                    self.at(
                        u,
                        &f("fallbackUtilization"),
                        format!(
                            "must be in (0, 1], got {x}; e.g. 0.7 to size the reactive fallback like an HPA at 70%"
                        ),
                    );
                    return None;
                }
                Utilization::new(x).ok()
            }),
        };
        let max_i32 = i64::from(i32::MAX);
        let min = match w.get("minReplicas") {
            None => Some(1),
            Some(m) => self.whole(m, &f("minReplicas"), 0, max_i32, "2"),
        };
        let max = required(self, "maxReplicas", "10")
            .and_then(|m| Some((m, self.whole(m, &f("maxReplicas"), 1, max_i32, "10")?)))
            .and_then(|(m, max)| {
                let min = min.unwrap_or(1);
                if max < min {
                    self.at(m, &f("maxReplicas"), format!("({max}) is below minReplicas ({min})"));
                    return None;
                }
                Some(max)
            });
        let refit_interval = match w.get("refitInterval") {
            None => Some(duration::parse(defaults::REFIT_INTERVAL).expect("default parses")),
            some => self.duration_within(
                some,
                &f("refitInterval"),
                MIN_REFIT.max(step_or_default),
                MAX_REFIT,
                ": at least one step (a refit sooner sees no new sample) and at most 1d, so the model keeps up \
                 with yesterday's demand",
            ),
        };
        // By default, all the history a fit reads: 15 days, more for coarse steps (see `forecast::history_span`).
        let read = crate::forecast::history_span(step_or_default);
        let history = match w.get("history") {
            None => Some(read),
            some => self.duration_within(
                some,
                &f("history"),
                step_or_default * MIN_HISTORY_STEPS,
                MAX_HISTORY,
                &format!(
                    ": at least {MIN_HISTORY_STEPS} demand steps to fit on, and at most 35d, more than any fit reads"
                ),
            ),
        };
        // What a fit actually sees: the history, within what a fit on this step reads.
        let seen = history.unwrap_or(read).min(read);
        let seasonality = match w.get("seasonality") {
            None => Some(Seasonality::Auto),
            Some(s) => match &s.value {
                Node::Str(word) if word == "auto" => Some(Seasonality::Auto),
                Node::Str(word) if word == "none" => Some(Seasonality::None),
                Node::Seq(items) => {
                    let mut out = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        let pf = format!("{}[{i}]", f("seasonality"));
                        let Some(p) = self.duration(item, &pf) else { continue };
                        let shown = written(item);
                        if p < step_or_default * 2 || p.num_milliseconds() % step_or_default.num_milliseconds() != 0 {
                            self.at(
                                item,
                                &pf,
                                format!(
                                    "period {shown} must be a whole number of demand steps ({}), at least two",
                                    duration::format(step_or_default)
                                ),
                            );
                        } else if p * 2 > seen {
                            self.at(
                                item,
                                &pf,
                                format!(
                                    "period {shown} is longer than half the history a fit sees ({}): a fit needs two \
                                     cycles; shorten the period or lengthen `history`",
                                    duration::format(seen)
                                ),
                            );
                        } else {
                            out.push(p);
                        }
                    }
                    Some(Seasonality::Periods(out))
                }
                other => {
                    let found = match other {
                        Node::Str(word) => format!("`{word}`"),
                        other => other.found(),
                    };
                    self.at(
                        s,
                        &f("seasonality"),
                        format!("{found} is not allowed; write `auto`, `none`, or a list of periods like [1d, 1w]"),
                    );
                    None
                }
            },
        };
        let scale_in = w.get("scaleIn").map_or(Some(ScaleIn::Forecast), |s| {
            self.choice(s, &f("scaleIn"), &["forecast", "observed"])
        });
        let mode = w.get("mode").map_or(Some(Mode::default()), |m| {
            self.choice(m, &f("mode"), &["serve", "forecastOnly"])
        });
        let unit = match w.get("unit") {
            None => Some("requests/s".to_owned()),
            Some(u) => self.text(u, &f("unit"), "requests/s"),
        };
        let bounds = w
            .get("quality")
            .map_or(Some(quality::Bounds::default()), |q| self.quality(q, &f("quality")));
        let adaptive = w
            .get("adaptiveQuantile")
            .map_or(Some(Adaptive::default()), |a| self.adaptive(a, &f("adaptiveQuantile")));
        let slo = w.get("serviceLevel").map_or(Some(ServiceLevel::default()), |l| {
            self.service_level(l, &f("serviceLevel"))
        });
        let own_max_data_age = match w.get("maxDataAge") {
            None => Some(None),
            Some(m) => self.duration(m, &f("maxDataAge")).and_then(|age| {
                if !(MIN_DATA_AGE..=MAX_DATA_AGE).contains(&age) {
                    self.at(
                        m,
                        &f("maxDataAge"),
                        format!(
                            "{} is outside 1m to 1d; leave it out for max(leadTime, 3 × demand.step, 2m)",
                            written(m)
                        ),
                    );
                    return None;
                }
                let stepped = !matches!(demand, Some(DemandSource::Trace { .. }));
                if stepped && age < step_or_default * 2 {
                    self.at(
                        m,
                        &f("maxDataAge"),
                        format!(
                            "{} is shorter than two demand steps ({} each): its data is normally that old; raise it \
                             to at least {}",
                            written(m),
                            duration::format(step_or_default),
                            duration::format(step_or_default * 2)
                        ),
                    );
                    return None;
                }
                Some(Some(age))
            }),
        };
        let hpa = match w.get("hpa") {
            None => Some((true, None)),
            Some(h) => {
                if matches!(target, Some(None)) {
                    self.at(
                        h,
                        &f("hpa"),
                        "needs scaleTargetRef, the object the HPA scales; add scaleTargetRef or remove hpa",
                    );
                }
                self.hpa(h, &f("hpa"))
            }
        };
        // The hold the HPA applies is the one the plan must cover: the managed HPA's behavior sets it, or agrees.
        let behavior_hold = hpa
            .as_ref()
            .and_then(|(_, b)| b.as_ref()?.scale_down.as_ref()?.stabilization_window_seconds);
        let downscale_stabilization = match (w.get("hpaScaleDownStabilization"), behavior_hold) {
            (None, None) => Some(crate::control::policy::DOWNSCALE_STABILIZATION),
            (None, Some(seconds)) => Some(TimeDelta::seconds(seconds.into())),
            (Some(s), hold) => self.duration(s, &f("hpaScaleDownStabilization")).and_then(|d| {
                if d > MAX_SCALE_DOWN_STABILIZATION {
                    self.at(
                        s,
                        &f("hpaScaleDownStabilization"),
                        "must be at most 1h, the HPA's own limit on stabilizationWindowSeconds",
                    );
                    return None;
                }
                if let Some(seconds) = hold.filter(|h| TimeDelta::seconds((*h).into()) != d) {
                    self.at(
                        s,
                        &f("hpaScaleDownStabilization"),
                        format!(
                            "{} differs from hpa.behavior.scaleDown.stabilizationWindowSeconds ({seconds}s), the hold \
                             the managed HPA applies; leave it out or make the two equal",
                            written(s)
                        ),
                    );
                    return None;
                }
                Some(d)
            }),
        };
        if self.problems.len() > before {
            return None;
        }
        let (max, min) = (max?, min?);
        let lead = lead?;
        let scale_target = target?.map(|reference| {
            let (managed, behavior) = hpa.clone().unwrap_or((true, None));
            ScaleTarget {
                reference,
                managed_hpa: managed,
                hpa_behavior: behavior,
            }
        });
        let own_max_data_age = own_max_data_age?;
        let config = WorkloadConfig {
            id: id?,
            demand: demand?,
            unit: unit?,
            policy: Policy {
                capacity_per_replica: cap?,
                lead,
                sync: sync?,
                quantile: quantile?,
                replicas: Replicas::new(min, max).ok()?,
                scale_in: scale_in?,
                fallback_utilization: fallback_utilization?,
                downscale_stabilization: downscale_stabilization?,
                adaptive: Adaptive { slo: slo?, ..adaptive? },
            },
            seasonality: seasonality?,
            refit_interval: refit_interval?,
            history: history?,
            max_data_age: own_max_data_age.unwrap_or_else(|| default_max_data_age(lead, step_or_default)),
            serving: ServingConfig {
                mode: mode?,
                quality: bounds?,
            },
            scale_target,
        };
        Some((config, own_max_data_age.is_some()))
    }

    /// `demand.promql` (and `combine`): the query parsed as Prometheus would parse it.
    fn promql(&mut self, d: &Fields<'_>, step: TimeDelta) -> Option<DemandSource> {
        let combine = d.get("combine").map_or(Some(Combine::default()), |c| {
            self.choice(c, &d.path("combine"), &["error", "sum", "max"])
        });
        let q = d.get("promql")?;
        let qf = d.path("promql");
        let query = self.text(q, &qf, "'sum(rate(requests_total[1m]))'")?;
        if query.trim().is_empty() {
            self.at(q, &qf, "is empty; write a PromQL query returning one series");
            return None;
        }
        if let Err(e) = promql_parser::parser::parse(&query) {
            self.at(
                q,
                &qf,
                format!(
                    "is not valid PromQL: {e}; check its brackets, quotes and operators (the query is sent to \
                     Prometheus as written, e.g. sum(rate(requests_total[1m])))"
                ),
            );
            return None;
        }
        Some(DemandSource::Promql {
            query,
            step,
            combine: combine?,
        })
    }

    /// `scaleTargetRef:` the object scaled, as an HPA names it.
    fn scale_target_ref(&mut self, node: &Spanned<Node>, field: &str) -> Option<ScaleTargetRef> {
        let t = self.fields(node, field, TARGET_FIELDS)?;
        let part = |v: &mut Self, key: &str, example: &str, valid: fn(&str) -> bool, what: &str| {
            let Some(n) = t.get(key) else {
                v.at(
                    t.node,
                    &t.path(key),
                    format!("is required; add e.g. `{key}: {example}`"),
                );
                return None;
            };
            let text = v.text(n, &t.path(key), example)?;
            if !valid(&text) {
                v.at(n, &t.path(key), format!("`{text}` is not {what}, e.g. {example}"));
                return None;
            }
            Some(text)
        };
        let api_version = part(
            self,
            "apiVersion",
            "apps/v1",
            is_api_version,
            "an API version (group/version or v1)",
        );
        let kind = part(
            self,
            "kind",
            "Deployment",
            is_kind,
            "a kind (a capital letter, then letters and digits)",
        );
        let name = part(
            self,
            "name",
            "web",
            is_dns_subdomain,
            "an object name (a DNS subdomain)",
        );
        Some(ScaleTargetRef {
            api_version: api_version?,
            kind: kind?,
            name: name?,
        })
    }

    /// `hpa:` whether prescale manages the HPA, and its behavior.
    fn hpa(&mut self, node: &Spanned<Node>, field: &str) -> Option<(bool, Option<HorizontalPodAutoscalerBehavior>)> {
        let h = self.fields(node, field, HPA_FIELDS)?;
        let before = self.problems.len();
        let managed = h
            .get("managed")
            .map_or(Some(true), |m| self.boolean(m, &h.path("managed")));
        let behavior = match h.get("behavior") {
            None => Some(None),
            Some(b) => {
                if managed == Some(false) {
                    self.at(
                        b,
                        &h.path("behavior"),
                        "applies only to a managed HPA; set managed: true or remove behavior",
                    );
                }
                self.behavior(b, &h.path("behavior")).map(Some)
            }
        };
        if self.problems.len() > before {
            return None;
        }
        Some((managed?, behavior?))
    }

    /// `hpa.behavior:` as autoscaling/v2 writes it, within the API server's bounds.
    fn behavior(&mut self, node: &Spanned<Node>, field: &str) -> Option<HorizontalPodAutoscalerBehavior> {
        let b = self.fields(node, field, BEHAVIOR_FIELDS)?;
        let rules = |v: &mut Self, key: &str| match b.get(key) {
            None => Some(None),
            Some(r) => v.scaling_rules(r, &b.path(key)).map(Some),
        };
        let scale_up = rules(self, "scaleUp");
        let scale_down = rules(self, "scaleDown");
        Some(HorizontalPodAutoscalerBehavior {
            scale_up: scale_up?,
            scale_down: scale_down?,
        })
    }

    /// One direction of `hpa.behavior`.
    fn scaling_rules(&mut self, node: &Spanned<Node>, field: &str) -> Option<HPAScalingRules> {
        let r = self.fields(node, field, RULES_FIELDS)?;
        let window = match r.get("stabilizationWindowSeconds") {
            None => Some(None),
            Some(n) => self
                .whole(
                    n,
                    &r.path("stabilizationWindowSeconds"),
                    0,
                    MAX_STABILIZATION_SECONDS,
                    "600",
                )
                .map(|x| Some(x as i32)),
        };
        let select_policy = match r.get("selectPolicy") {
            None => Some(None),
            Some(n) => self
                .choice::<SelectPolicy>(n, &r.path("selectPolicy"), &["Max", "Min", "Disabled"])
                .map(|p| Some(format!("{p:?}"))),
        };
        let policies = match r.get("policies") {
            None => Some(None),
            Some(n) => {
                let pf = r.path("policies");
                match &n.value {
                    Node::Seq(items) if (1..=MAX_POLICIES).contains(&items.len()) => {
                        let read: Vec<_> = items
                            .iter()
                            .enumerate()
                            .map(|(i, p)| self.scaling_policy(p, &format!("{pf}[{i}]")))
                            .collect();
                        read.into_iter().collect::<Option<Vec<_>>>().map(Some)
                    }
                    other => {
                        self.at(
                            n,
                            &pf,
                            format!(
                                "expected a list of 1 to {MAX_POLICIES} policies like \
                                 [{{type: Pods, value: 4, periodSeconds: 60}}], found {}",
                                match other {
                                    Node::Seq(items) => format!("{} policies", items.len()),
                                    other => other.found(),
                                }
                            ),
                        );
                        None
                    }
                }
            }
        };
        Some(HPAScalingRules {
            stabilization_window_seconds: window?,
            select_policy: select_policy?,
            policies: policies?,
            tolerance: None,
        })
    }

    /// One HPA scaling policy.
    fn scaling_policy(&mut self, node: &Spanned<Node>, field: &str) -> Option<HPAScalingPolicy> {
        let p = self.fields(node, field, POLICY_FIELDS)?;
        let required = |v: &mut Self, key: &str| {
            let found = p.get(key);
            if found.is_none() {
                v.at(
                    p.node,
                    &p.path(key),
                    format!(
                        "is required; add e.g. `{key}: {}`",
                        match key {
                            "type" => "Pods",
                            "value" => "4",
                            _ => "60",
                        }
                    ),
                );
            }
            found
        };
        let type_ = required(self, "type")
            .and_then(|t| self.choice::<PolicyType>(t, &p.path("type"), &["Pods", "Percent"]))
            .map(|t| format!("{t:?}"));
        let value = required(self, "value").and_then(|n| self.whole(n, &p.path("value"), 1, i64::from(i32::MAX), "4"));
        let period = required(self, "periodSeconds")
            .and_then(|n| self.whole(n, &p.path("periodSeconds"), 1, MAX_POLICY_PERIOD_SECONDS, "60"));
        Some(HPAScalingPolicy {
            type_: type_?,
            value: value? as i32,
            period_seconds: period? as i32,
        })
    }

    /// `quality:` over the defaults; nested limits are read one by one so each is located.
    fn quality(&mut self, node: &Spanned<Node>, field: &str) -> Option<quality::Bounds> {
        let d = quality::Bounds::default();
        let q = self.fields(node, field, QUALITY_FIELDS)?;
        let before = self.problems.len();
        let auto_demote = q
            .get("autoDemote")
            .map_or(Some(d.auto_demote), |b| self.boolean(b, &q.path("autoDemote")));
        let count = |v: &mut Self, key: &str, default: usize| {
            q.get(key).map_or(Some(default), |n| {
                v.whole(n, &q.path(key), 1, i64::from(u32::MAX), "30")
                    .map(|n| n as usize)
            })
        };
        let window = count(self, "window", d.window);
        let min_samples = count(self, "minSamples", d.min_samples);
        let limits = |v: &mut Self, key: &str, base: quality::Limits| {
            let Some(node) = q.get(key) else { return Some(base) };
            let l = v.fields(node, &q.path(key), LIMITS_FIELDS)?;
            let share = |v: &mut Self, key: &str, default: f64| {
                l.get(key).map_or(Some(default), |x| {
                    let value = v.number(x, &l.path(key), "0.5")?;
                    if !(0.0..=1.0).contains(&value) {
                        v.at(
                            x,
                            &l.path(key),
                            format!("{value} must be a share from 0 to 1, e.g. 0.5"),
                        );
                        return None;
                    }
                    Some(value)
                })
            };
            Some(quality::Limits {
                min_coverage: share(v, "minCoverage", base.min_coverage)?,
                max_under_rate: share(v, "maxUnderPrediction", base.max_under_rate)?,
                max_shortfall: share(v, "maxShortfall", base.max_shortfall)?,
            })
        };
        let demote = limits(self, "demote", d.demote);
        let promote = limits(self, "promote", d.promote);
        if self.problems.len() > before {
            return None;
        }
        let bounds = quality::Bounds {
            auto_demote: auto_demote?,
            window: window?,
            min_samples: min_samples?,
            demote: demote?,
            promote: promote?,
        };
        if let Err(e) = bounds.validate() {
            self.at(node, field, format!("{e} (defaults: {})", describe_bounds(&d)));
            return None;
        }
        Some(bounds)
    }

    /// `adaptiveQuantile:` over the defaults (the service level is read separately).
    fn adaptive(&mut self, node: &Spanned<Node>, field: &str) -> Option<Adaptive> {
        let d = Adaptive::default();
        let a = self.fields(node, field, ADAPTIVE_FIELDS)?;
        if let Some(old) = a.get("unservedVsReactive") {
            self.at(
                old,
                &a.path("unservedVsReactive"),
                "is replaced by serviceLevel.maxUnserved, the share of demand that may go unserved, e.g. \
                 serviceLevel: {maxUnserved: 0.1%, window: 7d}",
            );
        }
        let enabled = a
            .get("enabled")
            .map_or(Some(d.enabled), |e| self.boolean(e, &a.path("enabled")));
        let span = |v: &mut Self, key: &str, default: TimeDelta, least: TimeDelta| {
            let Some(node) = a.get(key) else { return Some(default) };
            let x = v.duration(node, &a.path(key))?;
            if x < least || x > MAX_ADAPTIVE_SPAN {
                v.at(
                    node,
                    &a.path(key),
                    format!(
                        "{} must be between {} and 60d (default {})",
                        written(node),
                        duration::format(least),
                        duration::format(default)
                    ),
                );
                return None;
            }
            Some(x)
        };
        let half_life = span(self, "halfLife", d.half_life, MIN_HALF_LIFE);
        let warmup = span(self, "warmup", d.warmup, TimeDelta::zero());
        let replay = span(self, "replay", d.replay, TimeDelta::zero());
        Some(Adaptive {
            enabled: enabled?,
            half_life: half_life?,
            warmup: warmup?,
            replay: replay?,
            slo: d.slo,
        })
    }

    /// `serviceLevel:` over the defaults.
    fn service_level(&mut self, node: &Spanned<Node>, field: &str) -> Option<ServiceLevel> {
        let d = ServiceLevel::default();
        let l = self.fields(node, field, SERVICE_LEVEL_FIELDS)?;
        let max_unserved = match l.get("maxUnserved") {
            None => Some(d.max_unserved),
            Some(x) => match &x.value {
                Node::Str(t) => ServiceLevel::parse_share(t)
                    .map_err(|e| self.at(x, &l.path("maxUnserved"), e.to_string()))
                    .ok(),
                Node::Int(_) | Node::Float(_) => {
                    self.at(
                        x,
                        &l.path("maxUnserved"),
                        format!(
                            "{} is not a percentage; write the share of demand that may go unserved with a % sign, \
                             e.g. {}",
                            match &x.value {
                                Node::Float(v) if v.is_finite() => v.to_string(),
                                Node::Int(i) => i.to_string(),
                                other => other.found(),
                            },
                            ServiceLevel::format_share(d.max_unserved)
                        ),
                    );
                    None
                }
                other => {
                    self.at(
                        x,
                        &l.path("maxUnserved"),
                        format!("expected a percentage like 1%, found {}", other.found()),
                    );
                    None
                }
            },
        };
        let window = match l.get("window") {
            None => Some(d.window),
            Some(w) => self.duration(w, &l.path("window")).and_then(|x| {
                if !(ServiceLevel::MIN_WINDOW..=ServiceLevel::MAX_WINDOW).contains(&x) {
                    self.at(
                        w,
                        &l.path("window"),
                        format!(
                            "{} must be between 1h and 60d (default {})",
                            written(w),
                            duration::format(d.window)
                        ),
                    );
                    return None;
                }
                Some(x)
            }),
        };
        Some(ServiceLevel {
            max_unserved: max_unserved?,
            window: window?,
        })
    }

    /// `prometheus:`: each field read and located, then [`PrometheusSettings::check`], the check the client runs.
    fn prometheus(&mut self, node: &Spanned<Node>) -> Option<PrometheusSettings> {
        let p = self.fields(node, "prometheus", PROMETHEUS_FIELDS)?;
        let before = self.problems.len();
        let url = match p.get("url") {
            None => {
                self.at(
                    node,
                    "prometheus.url",
                    "is required; write e.g. http://prometheus.monitoring:9090",
                );
                None
            }
            Some(u) => self.text(u, "prometheus.url", "http://prometheus.monitoring:9090"),
        };
        let mut s = PrometheusSettings::new(url.unwrap_or_default());
        // Relative to the config file, like trace paths: the file and what it names move together.
        let base = self.file.parent().map(Path::to_path_buf).unwrap_or_default();
        let file = |v: &mut Self, key: &str| {
            p.get(key)
                .and_then(|n| v.text(n, &p.path(key), "/var/run/secrets/token"))
                .map(|f| base.join(f))
        };
        s.bearer_token_file = file(self, "bearerTokenFile");
        s.ca_file = file(self, "caFile");
        s.bearer_token = p
            .get("bearerToken")
            .and_then(|n| self.text(n, "prometheus.bearerToken", "a token"))
            .map(Secret::new);
        if let Some(b) = p.get("basicAuth") {
            if let Some(b) = self.fields(b, "prometheus.basicAuth", &["username", "password", "passwordFile"]) {
                let username = match b.get("username") {
                    None => {
                        self.at(
                            b.node,
                            &b.path("username"),
                            "is required; write e.g. username: prescale",
                        );
                        None
                    }
                    Some(u) => self.text(u, &b.path("username"), "prescale"),
                };
                s.basic_auth = Some(BasicAuth {
                    username: username.unwrap_or_default(),
                    password: b
                        .get("password")
                        .and_then(|n| self.text(n, &b.path("password"), "a password"))
                        .map(Secret::new),
                    password_file: b
                        .get("passwordFile")
                        .and_then(|n| self.text(n, &b.path("passwordFile"), "/etc/prometheus/password"))
                        .map(|f| base.join(f)),
                });
            }
        }
        let std_duration = |v: &mut Self, key: &str, default: std::time::Duration| {
            p.get(key)
                .and_then(|n| v.duration(n, &p.path(key)))
                .map_or(default, |d| d.to_std().unwrap_or_default())
        };
        s.timeout = std_duration(self, "timeout", s.timeout);
        s.retry_backoff = std_duration(self, "retryBackoff", s.retry_backoff);
        s.max_retry_backoff = std_duration(self, "maxRetryBackoff", s.max_retry_backoff);
        if let Some(n) = p.get("retries") {
            let most = i64::from(prometheus::MAX_RETRIES);
            if let Some(r) = self.whole(n, "prometheus.retries", 0, most, "2") {
                s.retries = r as u32;
            }
        }
        if let Some(n) = p.get("maxConcurrentQueries") {
            let most = prometheus::MAX_CONCURRENT_QUERIES as i64;
            if let Some(m) = self.whole(n, "prometheus.maxConcurrentQueries", 1, most, "4") {
                s.max_concurrent_queries = m as usize;
            }
        }
        // A field refused above kept its default, so the check below does not repeat it.
        for problem in s.check() {
            // The field the check names is a key here, or a key of `basicAuth`.
            let key = problem.field().split('.').next().unwrap_or_default();
            let at = p.entries.iter().find(|(k, _)| k.value == key).map_or(node, |(_, v)| v);
            self.at(at, &format!("prometheus.{}", problem.field()), problem.problem());
        }
        (self.problems.len() == before).then_some(s)
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

/// True for a DNS subdomain (RFC 1123), as most object names are: DNS labels joined by dots, at most 253 characters.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// True for an API version: `v1`-like, after an optional API group and a slash (`apps/v1`, `argoproj.io/v1alpha1`).
fn is_api_version(s: &str) -> bool {
    let (group, version) = s.rsplit_once('/').unwrap_or(("", s));
    let Some(rest) = version.strip_prefix('v') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let tail = &rest[digits..];
    let tail_ok = tail.is_empty()
        || ["alpha", "beta"].iter().any(|stage| {
            tail.strip_prefix(stage)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
    s.len() <= 253 && digits > 0 && tail_ok && (!s.contains('/') || is_dns_subdomain(group))
}

/// True for a kind: a capital letter, then letters and digits, at most 63 characters.
fn is_kind(s: &str) -> bool {
    s.len() <= 63 && s.starts_with(|c: char| c.is_ascii_uppercase()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
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
    fn a_file_of_twelve_thousand_workloads_is_read() {
        // ~25 nodes a workload: past the YAML parser's default budget of 250,000 nodes.
        let mut text = String::from("interval: 30s\nworkloads:\n");
        for i in 0..12_000 {
            text.push_str(&format!(
                "  - name: w{i}\n    namespace: ns{}\n    demand: {{generator: {{profile: llm-chat, seed: {i}}}, step: 5m}}\n    \
                 capacityPerReplica: 10\n    maxReplicas: 200\n    history: 14d\n    adaptiveQuantile: {{replay: 0s}}\n",
                i % 4
            ));
        }
        let config = parse(&text, Path::new("many.yaml")).expect("12,000 workloads load");
        assert_eq!(config.workloads.len(), 12_000);
        // An alias bomb is still refused (the parser's alias limits).
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for k in 1..8 {
            let prev = k - 1;
            bomb.push_str(&format!("a{k}: &a{k} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"));
        }
        bomb.push_str("workloads: *a7\n");
        let refused = parse(&bomb, Path::new("bomb.yaml")).unwrap_err().to_string();
        assert!(refused.contains("budget"), "{refused}");
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
    fn metrics_detail_is_off_unless_asked_for() {
        let text = |top: &str| {
            format!(
                "{top}workloads:\n  - name: a\n    demand: {{generator: {{profile: embeddings}}}}\n    capacityPerReplica: 3\n    \
                 maxReplicas: 4\n"
            )
        };
        assert!(!parse(&text(""), Path::new("p.yaml")).unwrap().metrics_detail);
        assert!(
            parse(&text("metricsDetail: true\n"), Path::new("p.yaml"))
                .unwrap()
                .metrics_detail
        );
        assert!(
            !parse(&text("metricsDetail: false\n"), Path::new("p.yaml"))
                .unwrap()
                .metrics_detail
        );
        let ps = problems(&text("metricsDetail: yes please\n"));
        assert!(
            ps[0].starts_with("p.yaml:1:16: metricsDetail: expected true or false"),
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
                "p.yaml:6:34: workloads[0].adaptiveQuantile.halfLife: 10m must be between 1h and 60d (default 1d)",
            ),
            ("{warmup: soon}", "workloads[0].adaptiveQuantile.warmup:"),
            (
                "{replay: 90d}",
                "workloads[0].adaptiveQuantile.replay: 90d must be between 0s and 60d (default 3d)",
            ),
            ("{enable: true}", "unknown field `enable`"),
            (
                "{unservedVsReactive: 0.8}",
                "p.yaml:6:44: workloads[0].adaptiveQuantile.unservedVsReactive: is replaced by serviceLevel.maxUnserved",
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
                "p.yaml:6:33: workloads[0].serviceLevel.maxUnserved: 0.1 is not a percentage; write the share of \
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
    fn scale_target_hpa_and_own_data_age_are_read_and_checked() {
        let text = |extra: &str| {
            format!(
                "maxDataAge: 45m\nworkloads:\n  - name: a\n    demand: {{generator: {{profile: embeddings}}}}\n    \
                 capacityPerReplica: 3\n    maxReplicas: 4\n    seasonality: []\n{extra}"
            )
        };
        let target = "    scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: a}\n";
        let c = parse(&text(""), Path::new("p.yaml")).unwrap();
        let w = &c.workloads[0];
        assert_eq!(w.max_data_age, TimeDelta::minutes(45), "the file's");
        assert_eq!(w.scale_target, None);
        assert!(w.describe().contains("seasonality none"), "{}", w.describe());

        let own = format!(
            "{target}    maxDataAge: 20m\n    hpa: {{behavior: {{scaleDown: {{stabilizationWindowSeconds: 600}}}}}}\n"
        );
        let c = parse(&text(&own), Path::new("p.yaml")).unwrap();
        let w = &c.workloads[0];
        assert_eq!(w.max_data_age, TimeDelta::minutes(20), "its own wins over the file's");
        assert_eq!(
            w.policy.downscale_stabilization,
            TimeDelta::minutes(10),
            "the managed HPA's hold"
        );
        let t = w.scale_target.as_ref().unwrap();
        assert!(t.managed_hpa);
        assert_eq!(t.reference.name, "a");
        assert!(w
            .describe()
            .contains("target: Deployment a (apps/v1), HPA managed by prescale, with its behavior set"));

        for (extra, expect) in [
            ("    hpa: {managed: false}\n", "p.yaml:8:10: workloads[0].hpa: needs scaleTargetRef"),
            (
                &format!("{target}    hpaScaleDownStabilization: 5m\n    hpa: {{behavior: {{scaleDown: {{stabilizationWindowSeconds: 600}}}}}}\n"),
                "p.yaml:9:32: workloads[0].hpaScaleDownStabilization: 5m differs from hpa.behavior.scaleDown.stabilizationWindowSeconds (600s)",
            ),
            (
                &format!("{target}    hpa: {{managed: false, behavior: {{}}}}\n"),
                "workloads[0].hpa.behavior: applies only to a managed HPA",
            ),
            (
                &format!("{target}    hpa: {{behavior: {{scaleUp: {{policies: [], selectPolicy: Most}}}}}}\n"),
                "workloads[0].hpa.behavior.scaleUp.policies: expected a list of 1 to 10 policies",
            ),
            (
                "    scaleTargetRef: {apiVersion: apps, kind: Deployment}\n",
                "workloads[0].scaleTargetRef.apiVersion: `apps` is not an API version",
            ),
            (
                "    scaleTargetRef: {apiVersion: apps/v1, kind: Deployment}\n",
                "workloads[0].scaleTargetRef.name: is required",
            ),
            ("    maxDataAge: 1m\n", "p.yaml:8:17: workloads[0].maxDataAge: 1m is shorter than two demand steps (1m each)"),
            ("    maxDataAge: 2d\n", "workloads[0].maxDataAge: 2d is outside 1m to 1d"),
        ] {
            let joined = problems(&text(extra)).join("\n");
            assert!(joined.contains(expect), "{extra}: {joined}");
        }
        assert!(is_api_version("v1") && is_api_version("argoproj.io/v1alpha1") && !is_api_version("apps/v1gamma1"));
        assert_eq!(bounds::MAX_HISTORY, crate::forecast::history_span(MAX_STEP));
    }

    #[test]
    fn an_object_spec_is_checked_by_field_path() {
        let spec = serde_json::json!({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "demand": {"promql": "up", "generator": {"profile": "embeddings"}},
            "capacityPerReplica": 3, "maxReplicas": 4, "leadTime": "2h",
        });
        let ps: Vec<String> = check_spec("shop", "web", &spec)
            .unwrap_err()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            ps,
            [
                "shop/web: spec.demand.generator: is for the workload file only; a PredictiveAutoscaler reads its \
                 demand from Prometheus: set `promql`",
                "shop/web: spec.leadTime: 2h is longer than 1h: a cold start is node + image + model weights until \
                 Ready, minutes in practice; the plan looks this far ahead at every decision",
            ]
        );
        let mut ok = spec.clone();
        ok["demand"] = serde_json::json!({"promql": "up"});
        ok["leadTime"] = serde_json::json!("5m");
        let w = check_spec("shop", "web", &ok).unwrap();
        assert_eq!(w.id.to_string(), "shop/web");
        assert!(w.scale_target.unwrap().managed_hpa, "managed by default");
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
        assert!(
            ps[0].starts_with("p.yaml:4:25: workloads[0].capacityPerReplica: expected a number, found text `lots`"),
            "{ps:?}"
        );
        let ps = problems("listen: 1\nworkloads: []\n");
        assert!(ps[0].contains("unknown field `listen`"), "{ps:?}");
    }

    #[test]
    fn a_file_may_list_no_workloads() {
        // `serve --watch-objects` plans for objects only; the commands that need the file's workloads refuse it.
        for text in ["workloads: []\n", "workloads:\n", "interval: 1m\n", ""] {
            let c = parse(text, Path::new("p.yaml")).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert!(c.workloads.is_empty(), "{text:?}");
        }
        let c = parse("interval: 1m\n", Path::new("p.yaml")).unwrap();
        assert_eq!(c.interval, TimeDelta::minutes(1));
        let ps = problems("workloads: {name: a}\n");
        assert!(ps[0].contains("workloads: expected a list of workloads"), "{ps:?}");
    }

    #[test]
    fn mode_and_quality_bounds_default_and_parse() {
        let base =
            "workloads:\n  - name: a\n    demand: {generator: {profile: embeddings}}\n    capacityPerReplica: 3\n    \
                    maxReplicas: 4\n";
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
            ps[0].contains("workloads[0].mode: `forecast` is not allowed; write one of serve, forecastOnly"),
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

    /// A workload with a given body (indented four spaces), after a Prometheus section.
    fn one_workload(prometheus: &str, body: &str) -> String {
        format!("prometheus: {prometheus}\nworkloads:\n  - name: a\n{body}")
    }

    #[test]
    fn one_bad_value_never_hides_the_others() {
        let text = "\
prometheus: {url: 'http://p:9090', maxConcurrentQueries: -3, retries: .nan, timeout: [1]}
workloads:
  - name: 5
    demand: {promql: 'up', step: .inf}
    capacityPerReplica: lots
    quantile: .nan
    minReplicas: -1
    maxReplicas: '4'
    fallbackUtilization: -.inf
    unit: [a]
    quality: {window: x, demote: {minCoverage: .nan}}
    mode: 3
  - name: b
    demand: [promql]
    capacityPerReplica: .nan
    maxReplicas: 2.5
    hpaSync: {a: 1}
";
        let ps = problems(text);
        let joined = ps.join("\n");
        for expect in [
            "p.yaml:1:58: prometheus.maxConcurrentQueries: -3 must be a whole number from 1 to 1024",
            "p.yaml:1:71: prometheus.retries: expected a number, found `.nan`",
            "p.yaml:1:86: prometheus.timeout: expected a duration like 30s, 5m or 1h, found a list",
            "p.yaml:3:11: workloads[0].name: expected text, found the number 5",
            "p.yaml:4:34: workloads[0].demand.step: expected a duration like 30s, 5m or 1h, found `.inf`",
            "p.yaml:5:25: workloads[0].capacityPerReplica: expected a number, found text `lots`; write e.g. 12",
            "p.yaml:6:15: workloads[0].quantile: expected a number, found `.nan`; write e.g. 0.9",
            "p.yaml:7:18: workloads[0].minReplicas: -1 must be a whole number from 0 to 2147483647",
            "p.yaml:8:18: workloads[0].maxReplicas: `4` is quoted text; write the number without quotes",
            "p.yaml:9:26: workloads[0].fallbackUtilization: expected a number, found `-.inf`",
            "p.yaml:10:11: workloads[0].unit: expected text, found a list",
            "p.yaml:11:23: workloads[0].quality.window: expected a number, found text `x`",
            "p.yaml:11:48: workloads[0].quality.demote.minCoverage: expected a number, found `.nan`",
            "p.yaml:12:11: workloads[0].mode: the number 3 is not allowed; write one of serve, forecastOnly",
            "p.yaml:14:13: workloads[1].demand: expected a mapping of fields (promql, combine, step, trace, generator), \
             found a list",
            "p.yaml:15:25: workloads[1].capacityPerReplica: expected a number, found `.nan`",
            "p.yaml:16:18: workloads[1].maxReplicas: 2.5 must be a whole number from 1 to 2147483647",
            "p.yaml:17:14: workloads[1].hpaSync: expected a duration like 30s, 5m or 1h, found a mapping",
        ] {
            assert!(joined.contains(expect), "missing {expect}:\n{joined}");
        }
        assert_eq!(ps.len(), 18, "{joined}");
        assert!(
            !joined.contains("policy") && !joined.contains("invalid type"),
            "{joined}"
        );
    }

    #[test]
    fn steps_periods_and_windows_have_physical_bounds() {
        let p = "{url: 'http://p:9090'}";
        let cases = [
            ("    demand: {promql: up, step: 1000w}\n", "p.yaml:4:32: workloads[0].demand.step: 1000w must be between 1s and 1h"),
            ("    demand: {promql: up, step: 1500ms}\n", "workloads[0].demand.step: 1500ms must be whole seconds"),
            ("    demand: {promql: up}\n    seasonality: [1000w]\n", "p.yaml:5:19: workloads[0].seasonality[0]: period 1000w is longer than half the history a fit sees (15d)"),
            ("    demand: {promql: up}\n    seasonality: [1d, 90s]\n", "p.yaml:5:23: workloads[0].seasonality[1]: period 90s must be a whole number of demand steps (1m), at least two"),
            ("    demand: {promql: up}\n    history: 10m\n", "p.yaml:5:14: workloads[0].history: 10m must be between 20m and 35d"),
            ("    demand: {promql: up}\n    history: 1d\n    seasonality: [1w]\n", "workloads[0].seasonality[0]: period 1w is longer than half the history a fit sees (1d)"),
            ("    demand: {promql: up, step: 5m}\n    refitInterval: 1m\n", "workloads[0].refitInterval: 1m must be between 5m and 1d"),
            ("    demand: {promql: up}\n    refitInterval: 2d\n", "workloads[0].refitInterval: 2d must be between 1m and 1d"),
            ("    demand: {promql: up}\n    hpaSync: 10m\n", "workloads[0].hpaSync: 10m must be between 1s and 5m"),
            ("    demand: {promql: up}\n    leadTime: 1000w\n", "workloads[0].leadTime: 1000w is longer than 1h"),
        ];
        for (body, expect) in cases {
            let text = one_workload(p, &format!("{body}    capacityPerReplica: 3\n    maxReplicas: 4\n"));
            let joined = problems(&text).join("\n");
            assert!(joined.contains(expect), "{body}: {joined}");
        }
        let ok = one_workload(p, "    demand: {promql: up, step: 1h}\n    seasonality: [1d, 1w]\n    capacityPerReplica: 3\n    maxReplicas: 4\n    refitInterval: 1d\n    hpaSync: 5m\n");
        let c = parse(&ok, Path::new("p.yaml")).unwrap();
        assert_eq!(c.workloads[0].history, TimeDelta::days(35));
        let text = |top: &str| {
            format!(
                "{top}\n{}",
                one_workload(
                    p,
                    "    demand: {promql: up}\n    capacityPerReplica: 3\n    maxReplicas: 4\n"
                )
            )
        };
        let joined = problems(&text("maxForecastAge: 20s")).join("\n");
        assert!(
            joined.contains("p.yaml:1:17: maxForecastAge: 20s must be between 1m and 1h"),
            "{joined}"
        );
        let joined = problems(&text("interval: 10m")).join("\n");
        assert!(
            joined.contains("p.yaml:1:11: interval: 10m leaves less than two intervals"),
            "{joined}"
        );
    }

    #[test]
    fn promql_is_parsed_before_it_is_sent() {
        let text = |q: &str| {
            one_workload(
                "{url: 'http://p:9090'}",
                &format!("    demand: {{promql: '{q}'}}\n    capacityPerReplica: 3\n    maxReplicas: 4\n"),
            )
        };
        let joined = problems(&text("sum(rate(x[1m])")).join("\n");
        assert!(
            joined.contains("p.yaml:4:22: workloads[0].demand.promql: is not valid PromQL: unclosed left parenthesis"),
            "{joined}"
        );
        let joined = problems(&text("sum(x) +")).join("\n");
        assert!(
            joined.contains("workloads[0].demand.promql: is not valid PromQL: invalid promql query"),
            "{joined}"
        );
        assert!(parse(
            &text("histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))"),
            Path::new("p.yaml")
        )
        .is_ok());
    }

    #[test]
    fn prometheus_settings_are_refused_as_the_client_refuses_them() {
        let text = |p: &str| {
            one_workload(
                p,
                "    demand: {promql: up}\n    capacityPerReplica: 3\n    maxReplicas: 4\n",
            )
        };
        for (p, expect) in [
            (
                "{url: 'ftp://x'}",
                "p.yaml:1:19: prometheus.url: `ftp://x` must start with http:// or https://",
            ),
            ("{url: 'http://'}", "prometheus.url: `http://` is not a URL"),
            (
                "{url: 'http://p', timeout: 0s}",
                "p.yaml:1:40: prometheus.timeout: 0s must be longer than 0s and at most 5m",
            ),
            (
                "{url: 'http://p', timeout: 6m}",
                "prometheus.timeout: 6m must be longer than 0s and at most 5m",
            ),
            (
                "{url: 'http://p', maxConcurrentQueries: 0}",
                "p.yaml:1:53: prometheus.maxConcurrentQueries: 0 must be a whole number from 1 to 1024",
            ),
            (
                "{url: 'http://p', retries: 11}",
                "prometheus.retries: 11 must be a whole number from 0 to 10",
            ),
            (
                "{url: 'http://p', retryBackoff: 0s}",
                "prometheus.retryBackoff: 0s must be at least 10ms",
            ),
            (
                "{url: 'http://p', retryBackoff: 10s}",
                "prometheus.retryBackoff: 10s is longer than maxRetryBackoff 5s",
            ),
            (
                "{url: 'http://p', bearerTokenFile: /nonexistent/token}",
                "p.yaml:1:48: prometheus.bearerTokenFile: cannot read /nonexistent/token",
            ),
            (
                "{url: 'http://p', basicAuth: {username: u}}",
                "prometheus.basicAuth: set exactly one of password and passwordFile",
            ),
            (
                "{url: 'http://p', timeot: 5s}",
                "p.yaml:1:31: prometheus: unknown field `timeot`",
            ),
        ] {
            let joined = problems(&text(p)).join("\n");
            assert!(joined.contains(expect), "{p}: {joined}");
        }
    }

    #[test]
    fn trace_files_are_read_from_the_config_files_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t.csv"),
            "timestamp,value\n2024-01-01T00:00:00Z,1\n2024-01-01T00:01:00Z,2\n2024-01-01T00:02:00Z,3\n",
        )
        .unwrap();
        let body = |t: &str| {
            format!(
                "workloads:\n  - name: a\n    demand: {{trace: {t}}}\n    capacityPerReplica: 3\n    maxReplicas: 4\n"
            )
        };
        let c = parse(&body("t.csv"), &dir.path().join("p.yaml")).unwrap();
        assert!(matches!(&c.workloads[0].demand, DemandSource::Trace { path } if *path == dir.path().join("t.csv")));
        let err = parse(&body("missing.csv"), &dir.path().join("p.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("p.yaml:3:21: workloads[0].demand.trace:")
                && err.contains("missing.csv: cannot read trace")
                && err.contains("read from the config file's directory"),
            "{err}"
        );
    }

    #[test]
    fn credential_files_are_read_from_the_config_files_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
        std::fs::write(dir.path().join("password"), "hunter2\n").unwrap();
        let body = |token: &str| {
            format!(
                "prometheus: {{url: 'http://p:9090', bearerTokenFile: {token}}}\nworkloads:\n  - name: a\n    \
                 demand: {{promql: up}}\n    capacityPerReplica: 3\n    maxReplicas: 4\n"
            )
        };
        let c = parse(&body("token"), &dir.path().join("p.yaml")).unwrap();
        let prometheus = c.prometheus.unwrap();
        assert_eq!(prometheus.bearer_token_file, Some(dir.path().join("token")));
        let c = parse(&body("/nonexistent/token"), &dir.path().join("p.yaml")).unwrap_err();
        assert!(c.to_string().contains("cannot read /nonexistent/token"), "{c}");
        let basic = "prometheus: {url: 'http://p:9090', basicAuth: {username: u, passwordFile: password}}\n\
                     workloads:\n  - name: a\n    demand: {promql: up}\n    capacityPerReplica: 3\n    maxReplicas: 4\n";
        let c = parse(basic, &dir.path().join("p.yaml")).unwrap();
        let auth = c.prometheus.unwrap().basic_auth.unwrap();
        assert_eq!(auth.password_file, Some(dir.path().join("password")));
    }

    #[test]
    fn a_duplicate_workload_is_pointed_at_where_it_repeats() {
        let yaml =
            "workloads:\n  - name: a\n    demand: {promql: up}\n    capacityPerReplica: 3\n    maxReplicas: 4\n  \
                    - name: a\n    demand: {promql: up}\n    capacityPerReplica: 3\n    maxReplicas: 4\n";
        let err = parse(yaml, Path::new("p.yaml")).unwrap_err().to_string();
        assert!(
            err.contains("p.yaml:6:11: workloads[1].name: workload default/a is listed twice (first as workloads[0])"),
            "{err}"
        );
        assert!(
            err.contains(
                "p.yaml:3:22: workloads[0].demand.promql: workload default/a reads Prometheus, and the file \
                          has no `prometheus:` section"
            ),
            "{err}"
        );
    }
}
