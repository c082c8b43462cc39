//! Published backtests: a compact summary per workload kept in one ConfigMap, written by the nightly
//! `prescale backtest --publish-configmap NS/NAME` and read back by the server, which serves it at
//! `GET /api/v1/backtests` and as `prescale_backtest_*` gauges.
//!
//! The ConfigMap holds one key per workload, `<namespace>.<name>.json`, each a [`BacktestSummary`]. The writer uses
//! server-side apply under one field manager, so its keys are its own: a key for a workload that is no longer
//! configured disappears at the next full run, while the key of a configured workload that was not backtested this
//! time (filtered by `--workload`, or its history failed) keeps its last summary, whose `generated_at` shows its age.
//!
//! A summary holds every run, the predictive policy's once per SLO it was run at (`slo`), and the bar per (SLO,
//! lead). The gauges carry one predictive run and one bar per lead: those at the summary's `slo`, the workload's own
//! service level (or, when `--slo` left it out, the lowest SLO run). Per workload they are exported only with
//! [`Detail::Full`] (`--metrics-detail`); by default `/metrics` carries two summaries without workload labels: how
//! many workloads missed the bar at each lead, and when the oldest summary was made.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};
use kube::Api;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::{PolicyName, Report};
use crate::sre::telemetry::{Detail, Emit};
use crate::store::WorkloadId;

/// The field manager of the writer's server-side apply.
pub const FIELD_MANAGER: &str = "prescale-backtest";
/// The route serving the summaries.
pub const ROUTE: &str = "/api/v1/backtests";

/// Why backtests could not be published or read.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A `NAMESPACE/NAME` argument is malformed.
    #[error(
        "`{given}` is not a ConfigMap reference: {problem}; write NAMESPACE/NAME, e.g. prescale/prescale-backtests"
    )]
    Reference {
        /// What was given.
        given: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// The Kubernetes API refused or failed a request.
    #[error("{action} ConfigMap {target}: {source}{hint}")]
    Kube {
        /// What was being done (`reading`, `applying`).
        action: &'static str,
        /// The ConfigMap.
        target: ConfigMapRef,
        /// What the caller can do about it (empty when nothing specific).
        hint: String,
        /// The underlying error.
        #[source]
        source: kube::Error,
    },
}

/// A ConfigMap named as `NAMESPACE/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMapRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl std::fmt::Display for ConfigMapRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl std::str::FromStr for ConfigMapRef {
    type Err = PublishError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |problem| PublishError::Reference {
            given: s.to_owned(),
            problem,
        };
        let (namespace, name) = s.split_once('/').ok_or_else(|| err("there is no `/`"))?;
        if namespace.is_empty() || name.is_empty() || name.contains('/') {
            return Err(err("both parts must be non-empty and there must be one `/`"));
        }
        let valid = |p: &str| {
            p.len() <= 253
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        };
        if !valid(namespace) || !valid(name) {
            return Err(err("names are lowercase letters, digits, '-' and '.'"));
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }
}

/// One policy at one lead time, as published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyScore {
    /// Policy name (`reactive`, `reactive-70`, `predictive`, `oracle`).
    pub policy: String,
    /// Cold start label, e.g. `5m`.
    pub lead: String,
    /// Cold start in seconds.
    pub lead_seconds: i64,
    /// The SLO the predictive policy aimed at; absent for the other policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<f64>,
    /// Share of demand not served by ready pods.
    pub unserved_fraction: f64,
    /// Minutes per scored day in which demand exceeded ready capacity.
    pub violation_minutes_per_day: f64,
    /// Pod-hours held (ready + starting).
    pub replica_hours: f64,
    /// `replica_hours` / the oracle's at the same lead; absent when the oracle did not run.
    pub replica_hours_ratio_to_oracle: Option<f64>,
    /// Scored ticks at which the desired replica count changed.
    pub scale_events: u32,
}

/// The project's bar at one (SLO, lead), as published (see [`super::frontier`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BarVerdict {
    /// Cold start label.
    pub lead: String,
    /// Cold start in seconds.
    pub lead_seconds: i64,
    /// The SLO (absent in summaries written before the SLO bar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<f64>,
    /// Context: predictive unserved ≤ reactive-70's (`None` when reactive-70 did not run).
    pub unserved_ok: Option<bool>,
    /// Context: predictive replica-hours ≤ 1.10 × oracle's (`None` when the oracle did not run).
    pub replica_hours_ok: Option<bool>,
    /// The SLO was met (≤ 1.1 × SLO), or no reactive target met it either.
    #[serde(default)]
    pub slo_ok: Option<bool>,
    /// Equal-service savings ≥ 0; `None` when undecided (outside the reactive frontier).
    #[serde(default)]
    pub savings_ok: Option<bool>,
    /// `1 − RH(predictive) / RH(best-tuned reactive HPA at the same unserved share)`.
    #[serde(default)]
    pub equal_service_savings: Option<f64>,
    /// `(RH_reactive − RH(predictive)) / (RH_reactive − RH(hpa-oracle))`.
    #[serde(default)]
    pub foresight_captured: Option<f64>,
    /// The bar: `slo_ok` and `savings_ok` both true.
    pub passed: bool,
}

/// A compact summary of one workload's backtest: what the ConfigMap holds and `GET /api/v1/backtests` lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacktestSummary {
    /// The workload's namespace.
    pub namespace: String,
    /// The workload's name.
    pub workload: String,
    /// Start of the requested window.
    pub from: DateTime<Utc>,
    /// End (exclusive) of the requested window.
    pub to: DateTime<Utc>,
    /// First scored tick (the warm-up before it is history only).
    pub scored_from: DateTime<Utc>,
    /// End of the data the backtest replayed.
    pub scored_to: DateTime<Utc>,
    /// When the backtest ran.
    pub generated_at: DateTime<Utc>,
    /// Where the demand came from (e.g. `promql sum(rate(...)) (step 60s)`).
    pub source: String,
    /// Capacity per replica used.
    pub capacity_per_replica: f64,
    /// Forecast quantile of the predictive policy.
    pub quantile: f64,
    /// The SLO whose predictive run and bar the gauges carry: the workload's own, when it was run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<f64>,
    /// Scores per policy and lead (the predictive policy's per SLO too).
    pub scores: Vec<PolicyScore>,
    /// The bar per (SLO, lead) (empty unless the predictive policy and the reactive frontier ran).
    pub bar: Vec<BarVerdict>,
}

impl BacktestSummary {
    /// Summarises `report`, a backtest of `id` over `[from, to)` generated at `generated_at`.
    pub fn new(
        id: &WorkloadId,
        source: String,
        (from, to): (DateTime<Utc>, DateTime<Utc>),
        generated_at: DateTime<Utc>,
        report: &Report,
    ) -> Self {
        let finite = |v: f64| v.is_finite().then_some(v);
        let scores = report
            .runs
            .iter()
            .map(|r| {
                let oracle = report.get(PolicyName::Oracle, r.lead_seconds);
                PolicyScore {
                    policy: r.policy.as_str().to_owned(),
                    lead: r.lead.clone(),
                    lead_seconds: r.lead_seconds,
                    slo: r.slo,
                    unserved_fraction: r.scores.unserved_fraction,
                    violation_minutes_per_day: r.scores.violation_minutes_per_day,
                    replica_hours: r.scores.replica_hours,
                    replica_hours_ratio_to_oracle: oracle
                        .and_then(|o| finite(r.scores.replica_hours / o.scores.replica_hours)),
                    scale_events: r.scores.scale_events,
                }
            })
            .collect();
        let bar = report
            .slo_results
            .iter()
            .map(|r| {
                let a = &r.assessment;
                BarVerdict {
                    lead: r.lead.clone(),
                    lead_seconds: r.lead_seconds,
                    slo: Some(r.slo),
                    unserved_ok: r.reactive70.map(|r70| r.unserved_fraction <= r70.unserved_fraction),
                    replica_hours_ok: a.replica_hours_vs_oracle.map(|x| x <= 1.10),
                    slo_ok: Some(a.bar.slo_ok),
                    savings_ok: a.bar.savings_ok,
                    equal_service_savings: a.equal_service_savings,
                    foresight_captured: a.foresight_captured,
                    passed: a.bar.passed,
                }
            })
            .collect();
        let slos = &report.settings.slos;
        let own = report.settings.slo_max_unserved;
        let slo = if slos.contains(&own) {
            Some(own)
        } else {
            slos.first().copied()
        };
        Self {
            namespace: id.namespace.clone(),
            workload: id.name.clone(),
            from,
            to,
            scored_from: report.settings.scored_start,
            scored_to: report.settings.trace_end,
            generated_at,
            source,
            capacity_per_replica: report.settings.capacity_per_replica,
            quantile: report.settings.quantile,
            slo,
            scores,
            bar,
        }
    }

    /// The ConfigMap key of this summary.
    pub fn key(&self) -> String {
        key_of(&self.namespace, &self.workload)
    }
}

/// The ConfigMap key of a workload's summary: `<namespace>.<name>.json`.
pub fn key_of(namespace: &str, name: &str) -> String {
    format!("{namespace}.{name}.json")
}

fn kube_error(action: &'static str, target: &ConfigMapRef, verbs: &str, source: kube::Error) -> PublishError {
    let hint = match &source {
        kube::Error::Api(status) if status.is_forbidden() => format!(
            "; grant this ServiceAccount {verbs} on configmaps `{}` in namespace `{}` (deploy/base/backtest-rbac.yaml)",
            target.name, target.namespace
        ),
        _ => String::new(),
    };
    PublishError::Kube {
        action,
        target: target.clone(),
        hint,
        source,
    }
}

/// Writes `summaries` into the ConfigMap `target` by server-side apply, creating it if needed.
///
/// `configured` lists every workload of the config: existing keys of configured workloads that are not in
/// `summaries` are applied again unchanged, keys of other workloads are dropped. Returns the resulting ConfigMap.
pub async fn publish(
    client: kube::Client,
    target: &ConfigMapRef,
    summaries: &[BacktestSummary],
    configured: &[WorkloadId],
) -> Result<ConfigMap, PublishError> {
    let api: Api<ConfigMap> = Api::namespaced(client, &target.namespace);
    let existing = api
        .get_opt(&target.name)
        .await
        .map_err(|e| kube_error("reading", target, "get and patch", e))?;
    let mut data: BTreeMap<String, String> = BTreeMap::new();
    let old = existing.and_then(|c| c.data).unwrap_or_default();
    for id in configured {
        let key = key_of(&id.namespace, &id.name);
        if let Some(value) = old.get(&key) {
            data.insert(key, value.clone());
        }
    }
    for s in summaries {
        data.insert(s.key(), serde_json::to_string(s).expect("summary serializes"));
    }
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "prescale".to_owned()),
        ("app.kubernetes.io/component".to_owned(), "backtest".to_owned()),
    ]);
    let desired = ConfigMap {
        metadata: ObjectMeta {
            name: Some(target.name.clone()),
            namespace: Some(target.namespace.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    };
    // Server-side apply needs apiVersion and kind in the body; the typed struct leaves them out.
    let mut body = serde_json::to_value(&desired).expect("ConfigMap serializes");
    body["apiVersion"] = "v1".into();
    body["kind"] = "ConfigMap".into();
    api.patch(
        &target.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| kube_error("applying", target, "get and patch", e))
}

/// The latest published summaries, kept in memory by [`PublishedBacktests::poll`] and served by its router and
/// metrics. Cheap to clone; clones share the state.
#[derive(Debug, Clone, Default)]
pub struct PublishedBacktests {
    inner: Arc<RwLock<BTreeMap<String, BacktestSummary>>>,
}

impl PublishedBacktests {
    /// An empty set: the router lists nothing and no gauge is exported until the first successful read.
    pub fn new() -> Self {
        Self::default()
    }

    /// The summaries, ordered by namespace and workload.
    pub fn summaries(&self) -> Vec<BacktestSummary> {
        let map = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<BacktestSummary> = map.values().cloned().collect();
        list.sort_by(|a, b| (&a.namespace, &a.workload).cmp(&(&b.namespace, &b.workload)));
        list
    }

    /// Replaces the summaries with those in `config_map`'s data; returns how many were read.
    ///
    /// A key whose value is not a summary is skipped with a warning, so one bad entry does not hide the others.
    pub fn load(&self, config_map: Option<&ConfigMap>) -> usize {
        let mut fresh = BTreeMap::new();
        let data = config_map.and_then(|c| c.data.as_ref());
        for (key, value) in data.into_iter().flatten() {
            if !key.ends_with(".json") {
                continue;
            }
            match serde_json::from_str::<BacktestSummary>(value) {
                Ok(summary) => {
                    fresh.insert(key.clone(), summary);
                }
                Err(error) => warn!(%error, key, "skipping a published backtest that is not a summary"),
            }
        }
        let n = fresh.len();
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        n
    }

    /// Reads the ConfigMap `target` once and keeps what it holds; an absent ConfigMap means no backtests yet.
    ///
    /// On an error the previous summaries are kept (each carries its `generated_at`).
    pub async fn refresh(&self, client: kube::Client, target: &ConfigMapRef) -> Result<usize, PublishError> {
        let api: Api<ConfigMap> = Api::namespaced(client, &target.namespace);
        let config_map = api
            .get_opt(&target.name)
            .await
            .map_err(|e| kube_error("reading", target, "get", e))?;
        Ok(self.load(config_map.as_ref()))
    }

    /// Re-reads the ConfigMap every `every`, forever; spawn it. Errors are logged and retried at the next tick.
    pub async fn poll(self, client: kube::Client, namespace: String, name: String, every: Duration) {
        let target = ConfigMapRef { namespace, name };
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match self.refresh(client.clone(), &target).await {
                Ok(n) => debug!(configmap = %target, summaries = n, "read published backtests"),
                Err(error) => warn!(%error, "reading published backtests failed; keeping the last ones"),
            }
        }
    }

    /// A router serving `GET /api/v1/backtests`: the summaries as a JSON array, ordered by namespace and workload.
    pub fn router(&self) -> Router {
        let this = self.clone();
        Router::new().route(
            ROUTE,
            get(move || {
                let this = this.clone();
                async move { Json(this.summaries()) }
            }),
        )
    }

    /// Registers the `backtest_*` gauges, read from the summaries at scrape time, on `registry` (whose prefix,
    /// `prescale`, the caller sets): the summaries by default, the per-workload gauges too with [`Detail::Full`].
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry, detail: Detail) {
        registry.register_collector(Box::new(Metrics(self.clone(), detail)));
    }
}

#[derive(Debug)]
struct Metrics(PublishedBacktests, Detail);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BarLabels {
    lead: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScoreLabels {
    namespace: String,
    workload: String,
    policy: String,
    lead: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LeadLabels {
    namespace: String,
    workload: String,
    lead: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkloadLabels {
    namespace: String,
    workload: String,
}

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let full = self.1 == Detail::Full;
        // By default: summaries over the workloads, no workload labels.
        let failed = Emit::<BarLabels>::new(
            "backtest_bar_failed_workloads",
            "Workloads whose last published backtest did not meet the bar at this lead (at each workload's SLO); per workload: backtest_bar_passed, with metrics detail",
        );
        // Per workload: with detail only.
        let unserved = Emit::<ScoreLabels>::new(
            "backtest_unserved_fraction",
            "Share of demand ready pods did not serve in the last published backtest",
        )
        .only_if(full);
        let violation = Emit::<ScoreLabels>::new(
            "backtest_violation_minutes_per_day",
            "Minutes per day demand exceeded ready capacity in the last published backtest",
        )
        .only_if(full);
        let hours = Emit::<ScoreLabels>::new(
            "backtest_replica_hours",
            "Pod-hours held (ready + starting) in the last published backtest",
        )
        .only_if(full);
        let ratio = Emit::<ScoreLabels>::new(
            "backtest_replica_hours_ratio_to_oracle",
            "Replica-hours relative to the perfect-foresight oracle at the same lead",
        )
        .only_if(full);
        let bar = Emit::<LeadLabels>::new(
            "backtest_bar_passed",
            "1 when predictive met the bar at the workload's SLO (SLO met where a reactive target meets it, and no more replica-hours than the best-tuned reactive HPA at the same unserved share), else 0",
        )
        .only_if(full);
        let generated = Emit::<WorkloadLabels>::new(
            "backtest_generated_timestamp_seconds",
            "When the last published backtest of the workload ran (Unix seconds)",
        )
        .only_if(full);
        let mut failures: BTreeMap<String, usize> = BTreeMap::new();
        let mut oldest_at: Option<DateTime<Utc>> = None;
        for s in self.0.summaries() {
            // One predictive run and one bar per lead: those at the summary's SLO.
            let at_slo = |slo: Option<f64>| slo.is_none() || slo == s.slo;
            for sc in s.scores.iter().filter(|sc| at_slo(sc.slo)) {
                let labels = ScoreLabels {
                    namespace: s.namespace.clone(),
                    workload: s.workload.clone(),
                    policy: sc.policy.clone(),
                    lead: sc.lead.clone(),
                };
                unserved.set(labels.clone(), sc.unserved_fraction);
                violation.set(labels.clone(), sc.violation_minutes_per_day);
                hours.set(labels.clone(), sc.replica_hours);
                if let Some(r) = sc.replica_hours_ratio_to_oracle {
                    ratio.set(labels, r);
                }
            }
            for v in s.bar.iter().filter(|v| at_slo(v.slo)) {
                let labels = LeadLabels {
                    namespace: s.namespace.clone(),
                    workload: s.workload.clone(),
                    lead: v.lead.clone(),
                };
                bar.set(labels, if v.passed { 1.0 } else { 0.0 });
                *failures.entry(v.lead.clone()).or_default() += usize::from(!v.passed);
            }
            oldest_at = Some(oldest_at.map_or(s.generated_at, |t| t.min(s.generated_at)));
            let labels = WorkloadLabels {
                namespace: s.namespace.clone(),
                workload: s.workload.clone(),
            };
            generated.set(labels, s.generated_at.timestamp_millis() as f64 / 1000.0);
        }
        for (lead, n) in failures {
            failed.set(BarLabels { lead }, n as f64);
        }
        failed.encode(&mut encoder)?;
        if let Some(t) = oldest_at {
            let oldest = Gauge::<f64, AtomicU64>::default();
            oldest.set(t.timestamp_millis() as f64 / 1000.0);
            let metric = encoder.encode_descriptor(
                "backtest_oldest_generated_timestamp_seconds",
                "When the oldest of the published backtests ran (Unix seconds)",
                None,
                oldest.metric_type(),
            )?;
            oldest.encode(metric)?;
        }
        unserved.encode(&mut encoder)?;
        violation.encode(&mut encoder)?;
        hours.encode(&mut encoder)?;
        ratio.encode(&mut encoder)?;
        bar.encode(&mut encoder)?;
        generated.encode(&mut encoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configmap_references_parse_or_say_how_to_fix_them() {
        let r: ConfigMapRef = "prescale/prescale-backtests".parse().unwrap();
        assert_eq!(
            (r.namespace.as_str(), r.name.as_str()),
            ("prescale", "prescale-backtests")
        );
        assert_eq!(r.to_string(), "prescale/prescale-backtests");
        for bad in ["prescale-backtests", "/x", "a/", "a/b/c", "A/b"] {
            let e = bad.parse::<ConfigMapRef>().unwrap_err().to_string();
            assert!(e.contains("write NAMESPACE/NAME"), "{bad}: {e}");
        }
    }

    fn summary(workload: &str, unserved: f64) -> BacktestSummary {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        BacktestSummary {
            namespace: "llm".into(),
            workload: workload.into(),
            from: t,
            to: t,
            scored_from: t,
            scored_to: t,
            generated_at: t,
            source: "promql up".into(),
            capacity_per_replica: 2.0,
            quantile: 0.9,
            slo: Some(0.01),
            scores: vec![PolicyScore {
                policy: "predictive".into(),
                lead: "5m".into(),
                lead_seconds: 300,
                slo: Some(0.01),
                unserved_fraction: unserved,
                violation_minutes_per_day: 1.0,
                replica_hours: 10.0,
                replica_hours_ratio_to_oracle: None,
                scale_events: 3,
            }],
            bar: vec![],
        }
    }

    #[test]
    fn the_gauges_carry_the_predictive_run_and_the_bar_at_the_summarys_slo() {
        let mut s = summary("a", 0.25);
        let mut strict = s.scores[0].clone();
        strict.slo = Some(0.001);
        strict.unserved_fraction = 0.125;
        s.scores.push(strict);
        let bar = |slo: f64, passed: bool| BarVerdict {
            lead: "5m".into(),
            lead_seconds: 300,
            slo: Some(slo),
            unserved_ok: None,
            replica_hours_ok: Some(true),
            slo_ok: Some(passed),
            savings_ok: Some(true),
            equal_service_savings: Some(0.1),
            foresight_captured: None,
            passed,
        };
        s.bar = vec![bar(0.001, false), bar(0.01, true)];
        let published = PublishedBacktests::new();
        let cm = ConfigMap {
            data: Some(BTreeMap::from([(
                "llm.a.json".to_owned(),
                serde_json::to_string(&s).unwrap(),
            )])),
            ..ConfigMap::default()
        };
        assert_eq!(published.load(Some(&cm)), 1);
        assert_eq!(published.summaries()[0], s, "every SLO is kept in the summary");
        let mut registry = prometheus_client::registry::Registry::with_prefix("prescale");
        published.register_metrics(&mut registry, Detail::Full);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let lines = |name: &str| text.lines().filter(|l| l.starts_with(name)).collect::<Vec<_>>();
        assert_eq!(
            lines("prescale_backtest_unserved_fraction{"),
            ["prescale_backtest_unserved_fraction{namespace=\"llm\",workload=\"a\",policy=\"predictive\",lead=\"5m\"} 0.25"]
        );
        assert_eq!(
            lines("prescale_backtest_bar_passed{"),
            ["prescale_backtest_bar_passed{namespace=\"llm\",workload=\"a\",lead=\"5m\"} 1.0"]
        );
        // A summary written before the SLO bar (no `slo` anywhere) still reads, and its bar is exported.
        let old = r#"{"namespace":"llm","workload":"b","from":"2026-03-01T00:00:00Z","to":"2026-03-08T00:00:00Z",
            "scored_from":"2026-03-01T00:00:00Z","scored_to":"2026-03-08T00:00:00Z","generated_at":"2026-03-08T00:00:00Z",
            "source":"promql up","capacity_per_replica":4.0,"quantile":0.9,"scores":[],
            "bar":[{"lead":"6m","lead_seconds":360,"unserved_ok":true,"replica_hours_ok":false,"passed":false}]}"#;
        let old: BacktestSummary = serde_json::from_str(old).unwrap();
        assert_eq!(
            (old.slo, old.bar[0].slo, old.bar[0].unserved_ok),
            (None, None, Some(true))
        );
    }

    #[test]
    fn load_skips_bad_entries_and_metrics_never_carry_nan() {
        let published = PublishedBacktests::new();
        let mut data = BTreeMap::new();
        data.insert(
            "llm.a.json".to_owned(),
            serde_json::to_string(&summary("a", 0.25)).unwrap(),
        );
        data.insert("llm.b.json".to_owned(), "{not json".to_owned());
        data.insert(
            "llm.c.json".to_owned(),
            serde_json::to_string(&summary("c", f64::NAN)).unwrap(),
        );
        let cm = ConfigMap {
            data: Some(data),
            ..ConfigMap::default()
        };
        // NaN is written as JSON null, which is not a number: the entry is skipped rather than served.
        assert_eq!(published.load(Some(&cm)), 1);
        assert_eq!(published.summaries()[0].workload, "a");
        let mut registry = prometheus_client::registry::Registry::with_prefix("prescale");
        published.register_metrics(&mut registry, Detail::Full);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                "prescale_backtest_unserved_fraction{namespace=\"llm\",workload=\"a\",policy=\"predictive\",lead=\"5m\"} 0.25"
            ),
            "{text}"
        );
        assert!(
            text.contains("prescale_backtest_generated_timestamp_seconds{namespace=\"llm\",workload=\"a\"} 1700000000"),
            "{text}"
        );
        assert!(!text.contains("NaN"), "{text}");
        assert!(
            !text.contains("backtest_replica_hours_ratio_to_oracle{"),
            "absent ratio is not exported: {text}"
        );
        assert_eq!(published.load(None), 0, "an absent ConfigMap means no backtests");
        assert!(published.summaries().is_empty());
    }

    #[test]
    fn by_default_the_gauges_summarise_the_workloads_without_their_labels() {
        let bar = |lead: &str, passed: bool| BarVerdict {
            lead: lead.into(),
            lead_seconds: 300,
            slo: Some(0.01),
            unserved_ok: None,
            replica_hours_ok: Some(passed),
            slo_ok: Some(true),
            savings_ok: Some(passed),
            equal_service_savings: None,
            foresight_captured: None,
            passed,
        };
        let mut a = summary("a", 0.25);
        a.bar = vec![bar("5m", true), bar("10m", true)];
        let mut b = summary("b", 0.5);
        b.bar = vec![bar("5m", false), bar("10m", true)];
        b.generated_at = a.generated_at - chrono::TimeDelta::days(2);
        let published = PublishedBacktests::new();
        let cm = ConfigMap {
            data: Some(BTreeMap::from([
                ("llm.a.json".to_owned(), serde_json::to_string(&a).unwrap()),
                ("llm.b.json".to_owned(), serde_json::to_string(&b).unwrap()),
            ])),
            ..ConfigMap::default()
        };
        assert_eq!(published.load(Some(&cm)), 2);
        let encode = |detail| {
            let mut registry = prometheus_client::registry::Registry::with_prefix("prescale");
            published.register_metrics(&mut registry, detail);
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            text
        };
        let text = encode(Detail::Default);
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let mut sorted = samples.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            [
                "prescale_backtest_bar_failed_workloads{lead=\"10m\"} 0.0",
                "prescale_backtest_bar_failed_workloads{lead=\"5m\"} 1.0",
                "prescale_backtest_oldest_generated_timestamp_seconds 1699827200.0",
            ],
            "{text}"
        );
        // With detail: the summaries and every workload's gauges.
        let text = encode(Detail::Full);
        assert!(
            text.contains("prescale_backtest_bar_failed_workloads{lead=\"5m\"} 1.0"),
            "{text}"
        );
        assert!(
            text.contains("prescale_backtest_bar_passed{namespace=\"llm\",workload=\"b\",lead=\"5m\"} 0.0"),
            "{text}"
        );
        assert!(
            text.contains("prescale_backtest_generated_timestamp_seconds{namespace=\"llm\",workload=\"b\"} 1699827200"),
            "{text}"
        );
        // Nothing published: no series at all.
        assert_eq!(published.load(None), 0);
        assert!(!encode(Detail::Default).lines().any(|l| !l.starts_with('#')));
    }
}
