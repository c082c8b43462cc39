//! One workload, one type: [`PredictiveAutoscalerSpec`] is both the spec of the namespaced `PredictiveAutoscaler`
//! custom resource (`prescale.dev/v1alpha1`) and the body of an entry in the workload file's `workloads:` list
//! ([`WorkloadEntry`]: the same fields after `name` and `namespace`).
//!
//! The CRD's schema is generated from this type (`prescale crd`, committed as
//! `deploy/crd/prescale.dev_predictiveautoscalers.yaml`): field names, nesting, descriptions, enums, the duration
//! pattern, and CEL rules (`x-kubernetes-validations`) built from the validator's own bounds. Both the workload file
//! and an object's spec are then checked by one validator, [`crate::config`]'s, which knows more than a schema can
//! say (cross-field bounds, durations in days and weeks, PromQL syntax) and names every problem's field and fix;
//! [`crate::config::check_spec`] and [`crate::config::parse_objects`] are its entry points for objects. A test keeps
//! the fields the validator accepts and the fields of this type's schema the same, so neither can drift.
//!
//! Durations are strings (`30s`, `5m`, `1h30m`, `14d`, `1w`). The API server's CEL `duration()` reads Go's syntax,
//! which has no days or weeks: at admission, a duration's range is checked when it is written in `h`, `m`, `s` and
//! `ms`; settings bounded below a day refuse days and weeks outright; the rest (a range written in days, bounds
//! that depend on another field) is checked by the validator when the object is read.

use std::path::PathBuf;

use chrono::TimeDelta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::core::{Message, Rule};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::bounds;
use crate::control::engine::Mode;
use crate::control::policy::{ScaleIn, ServiceLevel};
use crate::duration::{self, Duration};
use crate::history::prometheus::Combine;
use crate::history::synthetic::Profile;

/// The API group of prescale's custom resources.
pub const GROUP: &str = "prescale.dev";
/// The version of the `PredictiveAutoscaler` resource.
pub const VERSION: &str = "v1alpha1";

/// Fields the workload file accepts in an entry that a `PredictiveAutoscaler`'s spec does not have, as dotted paths:
/// the object's metadata carries its name and namespace, and a recorded trace file or the demo generator exist only
/// beside a workload file, not in a cluster.
pub const FILE_ONLY_FIELDS: &[&str] = &[
    "name",
    "namespace",
    "demand.trace",
    "demand.generator",
    "demand.generator.profile",
    "demand.generator.seed",
    "demand.generator.scale",
];

/// The `type` of the condition that says whether the workload's target is being served.
pub const CONDITION_READY: &str = "Ready";
/// The `type` of the condition that says whether the forecast is trusted (not demoted for poor live quality).
pub const CONDITION_FORECAST_TRUSTED: &str = "ForecastTrusted";
/// The `type` of the condition that says whether the SLO is met over its window.
pub const CONDITION_SLO_MET: &str = "SLOMet";
/// The `type` of the condition that says whether prescale manages the workload's HPA (with `hpa.managed` only).
pub const CONDITION_HPA_MANAGED: &str = "HPAManaged";

/// The settings of one workload prescale plans replicas for: where its demand comes from, what one replica serves,
/// how far ahead to plan, the SLO and the bounds. Every field but `scaleTargetRef`, `demand.promql`,
/// `capacityPerReplica` and `maxReplicas` has a default.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "prescale.dev",
    version = "v1alpha1",
    kind = "PredictiveAutoscaler",
    namespaced,
    status = "PredictiveAutoscalerStatus",
    shortname = "pas",
    category = "prescale",
    doc = "A workload prescale plans replicas for: it forecasts the workload's demand, plans the replicas that must \
           be ready one cold start ahead, and serves that plan to the HPA as the external metric prescale_replicas \
           (selector workload=<name>).",
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".spec.scaleTargetRef.name",
        description = "The object scaled"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.currentTarget",
        description = "The replica target served now"
    ),
    printcolumn(
        name = "SLO",
        type_ = "string",
        json_path = ".status.slo",
        description = "The objective: the share of demand that may go unserved, over its window"
    ),
    printcolumn(
        name = "Unserved",
        type_ = "string",
        json_path = ".status.unservedShare",
        description = "The share of demand left unserved over the SLO window"
    ),
    printcolumn(
        name = "Model",
        type_ = "string",
        json_path = ".status.model",
        description = "The forecast model and its seasonal periods"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether a fresh target is being served"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(
        "self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')"
    )
    .message(
        "metadata.name must be a DNS label (lowercase letters, digits and '-', at most 63 characters): it is the \
         workload label on the served metric"
    )
)]
#[x_kube(
    validation = Rule::new("has(self.scaleTargetRef)").message(
        "scaleTargetRef is required: the object whose replicas are planned, e.g. {apiVersion: apps/v1, kind: \
         Deployment, name: web}"
    ),
    validation = Rule::new("!has(self.minReplicas) || self.minReplicas <= self.maxReplicas")
        .message("minReplicas must not exceed maxReplicas")
)]
#[serde(rename_all = "camelCase")]
pub struct PredictiveAutoscalerSpec {
    /// The object whose replicas are planned: a Deployment, StatefulSet or anything with a scale subresource, in
    /// the object's namespace. Required in a PredictiveAutoscaler; optional in the workload file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_target_ref: Option<ScaleTargetRef>,
    /// Where demand history comes from.
    pub demand: DemandSpec,
    /// The unit demand is measured in, for people (default `requests/s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Demand one replica serves at its target latency, in `unit`: 0.001 to 1e12 (the HPA reads targets in
    /// thousandths).
    #[x_kube(validation = capacity_rule())]
    pub capacity_per_replica: f64,
    /// Cold start: pod creation to Ready, the time the plan looks ahead (default `5m`, at most `1h`).
    #[x_kube(validation = no_days_rule(bounds::MAX_LEAD_TIME), validation = duration_rule(TimeDelta::zero(), bounds::MAX_LEAD_TIME))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_time: Option<Duration>,
    /// The forecast quantile to be ready for, strictly between 0 and 1 (default `0.9`); with `adaptiveQuantile` on,
    /// the quantile planned at until the SLO controller has warmed up.
    #[x_kube(validation = Rule::new("self > 0.0 && self < 1.0")
        .message("quantile must be strictly between 0 and 1, e.g. 0.9 to be ready for the 90th percentile"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantile: Option<f64>,
    /// The SLO: the share of demand that may find the ready replicas full, over a rolling window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_level: Option<ServiceLevelSpec>,
    /// The SLO controller: serve the cheapest forecast quantile or reactive target that recently met the SLO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive_quantile: Option<AdaptiveQuantileSpec>,
    /// The fewest replicas planned (default 1; 0 allowed).
    #[schemars(range(min = 0))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i32>,
    /// The most replicas planned (at least 1 and at least `minReplicas`).
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Seasonal periods: each a whole number of demand steps, at least two, and at most half the history a fit
    /// sees, e.g. `[1d, 1w]`; `[]` for none; absent to detect them (the workload file also accepts the words
    /// `auto` and `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seasonality: Option<SeasonalitySpec>,
    /// How often the model is refitted: from one step (and at least `1m`) to `1d` (default `1h`).
    #[x_kube(validation = duration_rule(bounds::MIN_REFIT, bounds::MAX_REFIT))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refit_interval: Option<Duration>,
    /// The history window the model sees: at least 20 steps, at most `35d` (default `15d`; for coarse steps
    /// 2,000 steps).
    #[x_kube(validation = duration_rule(TimeDelta::zero(), bounds::MAX_HISTORY))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Duration>,
    /// A plan is not served, nor made, from demand whose newest sample ended longer ago than this: the API errors
    /// and the HPA holds. `1m` to `1d` and at least two steps (default `max(leadTime, 3 × demand.step, 2m)`; in the
    /// workload file, the file's top-level `maxDataAge` when it sets one).
    #[x_kube(validation = duration_rule(bounds::MIN_DATA_AGE, bounds::MAX_DATA_AGE))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_data_age: Option<Duration>,
    /// The HPA's sync period, added to the lead window: `1s` to `5m` (default `15s`).
    #[x_kube(validation = no_days_rule(bounds::MAX_HPA_SYNC), validation = duration_rule(TimeDelta::seconds(1), bounds::MAX_HPA_SYNC))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hpa_sync: Option<Duration>,
    /// The HPA's scale-down hold, at most `1h` (default `5m`, or the managed HPA's
    /// `behavior.scaleDown.stabilizationWindowSeconds` when `hpa.behavior` sets it).
    #[x_kube(validation = no_days_rule(bounds::MAX_SCALE_DOWN_STABILIZATION), validation = duration_rule(TimeDelta::zero(), bounds::MAX_SCALE_DOWN_STABILIZATION))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hpa_scale_down_stabilization: Option<Duration>,
    /// `forecast` (default) follows the forecast down; `observed` scales in only when observed demand allows it
    /// too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_in: Option<ScaleIn>,
    /// Utilization target of the reactive target (forecast-only mode, or a demoted forecast before the SLO
    /// controller has warmed up), in (0, 1] (default `0.7`).
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 1.0")
        .message("fallbackUtilization must be in (0, 1], e.g. 0.7 to size the reactive fallback like an HPA at 70%"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_utilization: Option<f64>,
    /// `serve` (default) serves the plan; `forecastOnly` forecasts, shows and scores it but serves the reactive
    /// target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Bounds on live forecast quality below which the workload is demoted to the reactive target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<QualitySpec>,
    /// The HPA that reads the served target. Needs `scaleTargetRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hpa: Option<HpaSpec>,
}

/// The object a workload scales, as an HPA's `scaleTargetRef` names it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTargetRef {
    /// Its API version, e.g. `apps/v1`.
    #[schemars(length(min = 1, max = 253), pattern(API_VERSION_PATTERN))]
    pub api_version: String,
    /// Its kind, e.g. `Deployment`.
    #[schemars(length(min = 1, max = 63), pattern(KIND_PATTERN))]
    pub kind: String,
    /// Its name, in the PredictiveAutoscaler's namespace.
    #[schemars(length(min = 1, max = 253), pattern(SUBDOMAIN_PATTERN))]
    pub name: String,
}

/// `group/version` or a core version (`v1`): a lowercase DNS subdomain, a slash, and a version.
pub const API_VERSION_PATTERN: &str =
    "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?v[0-9]+((alpha|beta)[0-9]+)?$";
/// A kind: a capital letter, then letters and digits.
pub const KIND_PATTERN: &str = "^[A-Z][A-Za-z0-9]*$";
/// A DNS subdomain, as most object names are.
pub const SUBDOMAIN_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Where a workload's demand history comes from: a PromQL query (in the workload file, also a recorded trace or
/// the demo generator).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.promql)").message(
    "demand.promql is required: the PromQL query of the workload's demand, e.g. sum(rate(requests_total[1m]))"
))]
#[serde(rename_all = "camelCase")]
pub struct DemandSpec {
    /// PromQL returning one series of demand in units per second, e.g.
    /// `sum(rate(http_requests_total{service="web"}[2m]))`; parsed when the object or file is checked.
    #[schemars(length(min = 1))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promql: Option<String>,
    /// What a query returning several series is reduced to: `error` (default, naming them), `sum` or `max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub combine: Option<Combine>,
    /// Query resolution and sample spacing: whole seconds from `1s` to `1h` (default `1m`).
    #[x_kube(validation = no_days_rule(bounds::MAX_STEP), validation = duration_rule(bounds::MIN_STEP, bounds::MAX_STEP))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Duration>,
    /// Workload file only: a recorded trace CSV (`timestamp,value`), replayed aligned to now; a relative path is
    /// read from the file's directory.
    #[schemars(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<PathBuf>,
    /// Workload file only: the built-in demand generator.
    #[schemars(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<GeneratorSpec>,
}

/// The demo's demand generator (workload file only).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct GeneratorSpec {
    /// `llm-chat`, `web-frontend` or `embeddings`.
    pub profile: Profile,
    /// The random seed (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// A factor on the profile's demand (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
}

/// Seasonal periods. In a PredictiveAutoscaler, a list (`[]` for none); the workload file also accepts the words
/// `auto` (the default: detect them) and `none`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum SeasonalitySpec {
    /// `auto` or `none` (workload file only).
    Word(String),
    /// The periods, e.g. `[1d, 1w]`.
    Periods(Vec<Duration>),
}

impl JsonSchema for SeasonalitySpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Seasonality".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "array",
            "items": generator.subschema_for::<Duration>(),
        })
    }
}

/// The SLO (`serviceLevel`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceLevelSpec {
    /// The share of demand that may find the ready replicas full, as a percentage from `0.001%` to `50%`
    /// (default `1%`).
    #[schemars(length(max = 16), pattern(PERCENT_PATTERN))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unserved: Option<String>,
    /// The rolling window the SLO is measured over, `1h` to `60d` (default `7d`).
    #[x_kube(validation = duration_rule(ServiceLevel::MIN_WINDOW, ServiceLevel::MAX_WINDOW))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
}

/// A percentage: a number, then `%`.
pub const PERCENT_PATTERN: &str = "^[0-9]+(\\.[0-9]+)?%$";

/// The SLO controller (`adaptiveQuantile`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdaptiveQuantileSpec {
    /// `false` plans at `quantile` always (default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// How fast old scores fade, `1h` to `60d` (default `1d`).
    #[x_kube(validation = duration_rule(bounds::MIN_HALF_LIFE, bounds::MAX_ADAPTIVE_SPAN))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_life: Option<Duration>,
    /// Scored time before the controller's choice takes over from `quantile`, `0s` to `60d` (default `1d`).
    #[x_kube(validation = duration_rule(TimeDelta::zero(), bounds::MAX_ADAPTIVE_SPAN))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<Duration>,
    /// History replayed at startup so the choice starts warm, `0s` to `60d` (default `3d`).
    #[x_kube(validation = duration_rule(TimeDelta::zero(), bounds::MAX_ADAPTIVE_SPAN))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<Duration>,
}

/// Live forecast quality bounds (`quality`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QualitySpec {
    /// `false` scores and reports quality only, never demoting (default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_demote: Option<bool>,
    /// Scored forecasts the bounds are judged over.
    #[schemars(range(min = 1, max = u32::MAX))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<i64>,
    /// Scored forecasts needed before the bounds are judged at all.
    #[schemars(range(min = 1, max = u32::MAX))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<i64>,
    /// Below these the forecast is demoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demote: Option<QualityLimitsSpec>,
    /// Above these a demoted forecast is promoted back (stricter than `demote`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<QualityLimitsSpec>,
}

/// Limits on live forecast quality, each a share from 0 to 1.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QualityLimitsSpec {
    /// Least share of outcomes inside the forecast interval.
    #[x_kube(validation = share_rule())]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_coverage: Option<f64>,
    /// Largest share of outcomes above the planned quantile.
    #[x_kube(validation = share_rule())]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_under_prediction: Option<f64>,
    /// Largest shortfall of the plan against demand, as a share of demand.
    #[x_kube(validation = share_rule())]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_shortfall: Option<f64>,
}

/// The HPA that reads the served target (`hpa`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.behavior) || self.managed")
    .message("hpa.behavior applies only to a managed HPA; set managed: true or remove behavior"))]
#[serde(rename_all = "camelCase")]
pub struct HpaSpec {
    /// Whether prescale creates and owns an HPA for `scaleTargetRef` that reads its target (default `true`);
    /// `false` when you ship the HPA yourself.
    #[serde(default = "managed_by_default")]
    pub managed: bool,
    /// The managed HPA's `behavior` (autoscaling/v2); unset fields keep prescale's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<HpaBehaviorSpec>,
}

fn managed_by_default() -> bool {
    true
}

/// An HPA's scaling behavior, as `autoscaling/v2` writes it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HpaBehaviorSpec {
    /// Rules for scaling up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<HpaScalingRulesSpec>,
    /// Rules for scaling down; its `stabilizationWindowSeconds` is the hold prescale plans for
    /// (`hpaScaleDownStabilization`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<HpaScalingRulesSpec>,
}

/// One direction's scaling rules.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HpaScalingRulesSpec {
    /// Seconds of past recommendations considered, 0 to 3600.
    #[schemars(range(min = 0, max = 3600))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stabilization_window_seconds: Option<i32>,
    /// Which policy wins: `Max`, `Min` or `Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_policy: Option<SelectPolicy>,
    /// The policies, 1 to 10.
    #[schemars(length(min = 1, max = 10))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<HpaScalingPolicySpec>>,
}

/// Which of several HPA scaling policies wins.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SelectPolicy {
    /// The policy allowing the largest change.
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// One HPA scaling policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HpaScalingPolicySpec {
    /// `Pods` or `Percent`.
    #[serde(rename = "type")]
    pub type_: PolicyType,
    /// Pods, or percent of the current replicas, per period; at least 1.
    #[schemars(range(min = 1))]
    pub value: i32,
    /// The period, 1 to 1800 seconds.
    #[schemars(range(min = 1, max = 1800))]
    pub period_seconds: i32,
}

/// What an HPA scaling policy's value counts.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PolicyType {
    /// Pods.
    Pods,
    /// Percent of the current replicas.
    Percent,
}

/// What prescale last observed and served for a workload.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PredictiveAutoscalerStatus {
    /// `Ready` (a fresh target is served), `ForecastTrusted` (the forecast is not demoted for poor live quality),
    /// `SLOMet` (the SLO holds over its window) and, with `hpa.managed`, `HPAManaged` (prescale's HPA reads the
    /// target).
    #[schemars(schema_with = "conditions_schema")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The replica target served now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_target: Option<i32>,
    /// The demand the plan is sized for (the planned quantile's peak over the lead window), in `unit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_demand: Option<f64>,
    /// The median forecast's peak over the same window, in `unit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_demand: Option<f64>,
    /// The forecast model, e.g. `mstl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The seasonal periods the model uses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub periods: Vec<Duration>,
    /// The age of the newest demand sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_age: Option<Duration>,
    /// The age of the plan served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast_age: Option<Duration>,
    /// The share of demand left unserved over the SLO window, as a percentage, e.g. `0.42%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unserved_share: Option<String>,
    /// The objective, e.g. `1% over 7d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<String>,
}

/// One entry of the workload file's `workloads:` list: a name and namespace (a PredictiveAutoscaler's metadata),
/// then the fields of [`PredictiveAutoscalerSpec`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEntry {
    /// A DNS label: the `workload` label on the served metric.
    pub name: String,
    /// The namespace of the HPA that reads the metric (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The workload's settings.
    #[serde(flatten)]
    pub spec: PredictiveAutoscalerSpec,
}

/// The CRD as YAML, as `prescale crd` prints it and `deploy/crd/` ships it.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let yaml = serde_saphyr::to_string(&PredictiveAutoscaler::crd()).expect("the CRD serializes");
    format!(
        "# The PredictiveAutoscaler CRD, generated from the Rust type by `prescale crd`: do not edit; regenerate with\n\
         # cargo run -- crd > deploy/crd/prescale.dev_predictiveautoscalers.yaml\n{yaml}"
    )
}

/// The list schema of `status.conditions`: Kubernetes' `metav1.Condition`, one per `type`.
fn conditions_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": 8,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "required": ["type", "status", "lastTransitionTime", "reason", "message"],
            "properties": {
                "type": {"type": "string", "maxLength": 316, "description": "Ready, ForecastTrusted, SLOMet or HPAManaged."},
                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
                "lastTransitionTime": {"type": "string", "format": "date-time"},
                "reason": {"type": "string", "maxLength": 1024},
                "message": {"type": "string", "maxLength": 32768},
            },
        },
    })
}

/// Durations CEL's `duration()` reads (Go's syntax): ours without days and weeks.
const GO_DURATION: &str = "^([0-9]+(ms|s|m|h))+$";

/// A span as Go writes it: whole hours, minutes or seconds.
fn go_duration(d: TimeDelta) -> String {
    let s = d.num_seconds();
    match s {
        _ if s % 3600 == 0 => format!("{}h", s / 3600),
        _ if s % 60 == 0 => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// A duration from `min` to `max`, checked when it is written in Go's units; a value in days or weeks is left to
/// the validator.
fn duration_rule(min: TimeDelta, max: TimeDelta) -> Rule {
    let range = if min > TimeDelta::zero() {
        format!(
            "duration(self) >= duration('{}') && duration(self) <= duration('{}')",
            go_duration(min),
            go_duration(max)
        )
    } else {
        format!("duration(self) <= duration('{}')", go_duration(max))
    };
    let message = if min > TimeDelta::zero() {
        format!(
            "must be between {} and {}",
            duration::format(min),
            duration::format(max)
        )
    } else {
        format!("must be at most {}", duration::format(max))
    };
    Rule::new(format!("!self.matches('{GO_DURATION}') || ({range})")).message(Message::Message(message))
}

/// A duration bounded below a day is written without days or weeks.
fn no_days_rule(max: TimeDelta) -> Rule {
    Rule::new("!self.matches('[dw]')").message(Message::Message(format!(
        "must be at most {}: write it in h, m, s or ms, e.g. 5m",
        duration::format(max)
    )))
}

/// `capacityPerReplica` within the validator's bounds.
fn capacity_rule() -> Rule {
    Rule::new(format!(
        "self >= {:e} && self <= {:e}",
        bounds::MIN_CAPACITY,
        bounds::MAX_CAPACITY
    ))
    .message(
        "capacityPerReplica must be from 0.001 to 1e12: the demand one replica serves, which the HPA reads in \
         thousandths",
    )
}

/// A share from 0 to 1.
fn share_rule() -> Rule {
    Rule::new("self >= 0.0 && self <= 1.0").message("must be a share from 0 to 1, e.g. 0.5")
}
