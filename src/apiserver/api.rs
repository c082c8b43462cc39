//! The `external.metrics.k8s.io/v1beta1` API: serves published plans to the HPA through the aggregator.
//!
//! Metrics (lowercase, as client-go sends them), one item per workload in the asked namespace whose labels
//! `{"workload": <name>}` match the `labelSelector`:
//!
//! | metric | value | HPA target |
//! |---|---|---|
//! | [`METRIC_REPLICAS`] | planned replica count (`ceil` of the value, see [`crate::control::planner::served_value`]) | `AverageValue: "1"` (the HPA lands on exactly the plan) |
//! | [`METRIC_DEMAND_PLANNED`] | planned demand (forecast quantile over the lead window) | `AverageValue`: capacity per replica |
//! | [`METRIC_DEMAND_MEDIAN`] | median forecast demand over the lead window | informational |
//!
//! Items carry no `window`: a forecast peak is not an average over a trailing window, and the lead time is not part
//! of the published snapshot, so any number there would be invented (the field is optional and the HPA ignores it).
//!
//! Errors are always `metav1.Status` JSON: a bad selector is 400, an unknown metric or a selector matching no
//! workload is 404 (never an empty list: the HPA treats both as "metric invalid" and holds), a forecast older than
//! [`ApiState::max_forecast_age`] or a value that is not a finite quantity is 500 (the HPA holds instead of acting on
//! stale or garbage numbers). Handlers only read the [`PlanStore`] and never wait on anything else.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, GroupVersionForDiscovery, ListMeta, Status,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{debug, info_span, warn, Instrument};

use crate::clock::Clock;
use crate::k8s::quantity::{self, QuantityError};
use crate::k8s::selector::{Selector, SelectorError};
use crate::store::{PlanStore, Snapshot, WorkloadId};

/// The API group served.
pub const GROUP: &str = "external.metrics.k8s.io";
/// The API version served.
pub const VERSION: &str = "v1beta1";
/// `group/version`.
pub const GROUP_VERSION: &str = "external.metrics.k8s.io/v1beta1";
/// The planned replica count. Target it with `AverageValue: "1"`.
pub const METRIC_REPLICAS: &str = "prescale_replicas";
/// The planned demand (forecast quantile). Target it with `AverageValue` = capacity per replica.
pub const METRIC_DEMAND_PLANNED: &str = "prescale_demand_planned";
/// The median forecast demand.
pub const METRIC_DEMAND_MEDIAN: &str = "prescale_demand_median";
/// Every metric served, in discovery order.
pub const METRICS: [&str; 3] = [METRIC_REPLICAS, METRIC_DEMAND_PLANNED, METRIC_DEMAND_MEDIAN];
/// The label carrying the workload name on every item.
pub const WORKLOAD_LABEL: &str = "workload";

/// What the API handlers read.
#[derive(Clone, Debug)]
pub struct ApiState {
    /// Published plans.
    pub store: Arc<PlanStore>,
    /// Older snapshots are refused with a 500 so the HPA holds rather than acting on them.
    pub max_forecast_age: TimeDelta,
    /// The source of "now" for the age check.
    pub clock: Clock,
}

/// `external.metrics.k8s.io/v1beta1` `ExternalMetricValueList` (not in k8s-openapi).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalMetricValueList {
    /// Always `ExternalMetricValueList`.
    pub kind: String,
    /// Always `external.metrics.k8s.io/v1beta1`.
    pub api_version: String,
    /// Empty list metadata.
    pub metadata: ListMeta,
    /// One value per matching series; never empty when served.
    pub items: Vec<ExternalMetricValue>,
}

impl ExternalMetricValueList {
    /// A list holding `items`.
    pub fn new(items: Vec<ExternalMetricValue>) -> Self {
        Self {
            kind: "ExternalMetricValueList".to_owned(),
            api_version: GROUP_VERSION.to_owned(),
            metadata: ListMeta::default(),
            items,
        }
    }
}

/// One `ExternalMetricValue`: a metric's value for one label set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalMetricValue {
    /// The metric name, as asked.
    pub metric_name: String,
    /// The series' labels (always emitted).
    pub metric_labels: BTreeMap<String, String>,
    /// When the value was computed, RFC 3339 UTC with second precision.
    #[serde(serialize_with = "rfc3339_seconds")]
    pub timestamp: DateTime<Utc>,
    /// Seconds the value was averaged over, when that means something (omitted by this server).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "window")]
    pub window_seconds: Option<i64>,
    /// A canonical Quantity string.
    pub value: String,
}

fn rfc3339_seconds<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// Why a request was refused; each maps to one `metav1.Status`.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The `labelSelector` parameter does not parse.
    #[error("invalid labelSelector {selector:?}: {source}")]
    BadSelector {
        /// The selector as received (after form decoding).
        selector: String,
        /// Where and why it failed.
        #[source]
        source: SelectorError,
    },
    /// The metric is not one this server provides.
    #[error("the server could not find the metric {metric:?}; served metrics are {}", METRICS.join(", "))]
    UnknownMetric {
        /// The metric asked for.
        metric: String,
    },
    /// No workload in the namespace matches the selector.
    #[error("no workload in namespace {namespace:?} matches labelSelector {selector:?} for metric {metric}")]
    NoMatch {
        /// The namespace asked for.
        namespace: String,
        /// The metric asked for.
        metric: String,
        /// The selector (canonical form; empty = everything).
        selector: String,
    },
    /// A matching workload's snapshot is older than the allowed age.
    #[error(
        "the forecast for workload {workload} is stale (older than the allowed {max_age_seconds}s); the HPA will hold \
         its current scale until a fresh forecast is published"
    )]
    Stale {
        /// The stale workload.
        workload: WorkloadId,
        /// Age of its snapshot.
        age_seconds: i64,
        /// The limit.
        max_age_seconds: i64,
    },
    /// A value could not be written as a Quantity (NaN, infinite, or out of range).
    #[error("the value of metric {metric} for workload {workload} cannot be served; see the prescale logs")]
    BadValue {
        /// The workload.
        workload: WorkloadId,
        /// The metric.
        metric: String,
        /// The raw value.
        value: f64,
        /// Why formatting failed.
        #[source]
        source: QuantityError,
    },
    /// No route for the path.
    #[error("the server could not find the requested resource")]
    NotFound,
    /// Anything but GET/HEAD.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// Only aggregated-discovery (apidiscovery.k8s.io) documents were acceptable.
    #[error("only the following media types are accepted: application/json")]
    NotAcceptable,
}

impl ApiError {
    fn code_and_reason(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadSelector { .. } => (StatusCode::BAD_REQUEST, "BadRequest"),
            ApiError::UnknownMetric { .. } | ApiError::NoMatch { .. } | ApiError::NotFound => {
                (StatusCode::NOT_FOUND, "NotFound")
            }
            ApiError::Stale { .. } | ApiError::BadValue { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            ApiError::NotAcceptable => (StatusCode::NOT_ACCEPTABLE, "NotAcceptable"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, reason) = self.code_and_reason();
        match &self {
            ApiError::Stale {
                workload,
                age_seconds,
                max_age_seconds,
            } => {
                warn!(%workload, age_seconds, max_age_seconds, "refusing to serve a stale forecast");
            }
            ApiError::BadValue {
                workload,
                metric,
                value,
                source,
            } => {
                warn!(%workload, %metric, value, error = %source, "refusing to serve a value that is not a quantity");
            }
            _ => debug!(error = %self, code = code.as_u16(), "request refused"),
        }
        let status = Status {
            code: Some(i32::from(code.as_u16())),
            message: Some(self.to_string()),
            reason: Some(reason.to_owned()),
            status: Some("Failure".to_owned()),
            ..Status::default()
        };
        let mut response = json(code, &status);
        if code == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        response
    }
}

/// A JSON response with `Content-Type: application/json`, whatever the request's `Accept` said.
fn json<T: Serialize>(code: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            code,
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            bytes,
        )
            .into_response(),
        Err(error) => {
            warn!(%error, "cannot encode a response");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "application/json")],
                INTERNAL_ERROR_BODY,
            )
                .into_response()
        }
    }
}

const INTERNAL_ERROR_BODY: &str = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"internal error encoding the response","reason":"InternalError","code":500}"#;

/// The API router. Routes: discovery, data, `/apis`, OpenAPI (404), health; 405 for non-GET, 404 otherwise.
pub fn router(state: ApiState) -> Router {
    let base = format!("/apis/{GROUP_VERSION}");
    Router::new()
        .route("/apis", get(api_group_list))
        .route(&format!("/apis/{GROUP}"), get(api_group))
        .route(&base, get(discovery))
        .route(
            &format!("{base}/namespaces/{{namespace}}/{{metric}}"),
            get(metric_values),
        )
        .route("/healthz", get(ok))
        .route("/livez", get(ok))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .layer(middleware::from_fn(per_request))
        .with_state(state)
}

/// A span per request; refuses anything but GET and HEAD before routing (the API is read-only).
async fn per_request(request: Request, next: Next) -> Response {
    let span =
        info_span!("api", method = %request.method(), path = %request.uri().path(), status = tracing::field::Empty);
    async move {
        let response = if request.method() == Method::GET || request.method() == Method::HEAD {
            next.run(request).await
        } else {
            ApiError::MethodNotAllowed.into_response()
        };
        tracing::Span::current().record("status", response.status().as_u16());
        debug!("served");
        response
    }
    .instrument(span)
    .await
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn ok() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<ApiState>) -> Response {
    if state.store.is_ready() {
        "ok".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no forecast has been published yet",
        )
            .into_response()
    }
}

fn our_group() -> APIGroup {
    let version = GroupVersionForDiscovery {
        group_version: GROUP_VERSION.to_owned(),
        version: VERSION.to_owned(),
    };
    APIGroup {
        name: GROUP.to_owned(),
        preferred_version: Some(version.clone()),
        server_address_by_client_cidrs: None,
        versions: vec![version],
    }
}

/// `GET /apis`: a plain `APIGroupList`, or 406 when only aggregated discovery (apidiscovery.k8s.io) is acceptable,
/// which makes the aggregator fall back to the per-version discovery document.
async fn api_group_list(headers: HeaderMap) -> Response {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    if !plain_json_acceptable(&accept) {
        return ApiError::NotAcceptable.into_response();
    }
    json(
        StatusCode::OK,
        &APIGroupList {
            groups: vec![our_group()],
        },
    )
}

/// Whether a plain JSON document satisfies `accept`. Only an Accept made solely of typed JSON variants
/// (`application/json;g=apidiscovery.k8s.io;...`) rules it out; protobuf-only clients still get JSON.
fn plain_json_acceptable(accept: &str) -> bool {
    let ranges: Vec<&str> = accept.split(',').map(str::trim).filter(|r| !r.is_empty()).collect();
    let typed = |r: &str| {
        r.split(';')
            .skip(1)
            .any(|p| matches!(p.trim().split_once('='), Some(("g" | "as", _))))
    };
    if ranges.iter().any(|r| r.contains("apidiscovery.k8s.io")) {
        ranges.iter().any(|r| {
            let media = r.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            matches!(media.as_str(), "application/json" | "application/*" | "*/*") && !typed(r)
        })
    } else {
        true
    }
}

/// `GET /apis/external.metrics.k8s.io`: the group, as a real API server would answer it.
async fn api_group() -> Response {
    json(StatusCode::OK, &our_group())
}

/// `GET /apis/external.metrics.k8s.io/v1beta1`: one namespaced resource per metric, never an empty list.
async fn discovery() -> Response {
    let resources = METRICS
        .iter()
        .map(|name| APIResource {
            name: (*name).to_owned(),
            singular_name: String::new(),
            namespaced: true,
            kind: "ExternalMetricValueList".to_owned(),
            verbs: vec!["get".to_owned()],
            ..APIResource::default()
        })
        .collect();
    json(
        StatusCode::OK,
        &APIResourceList {
            group_version: GROUP_VERSION.to_owned(),
            resources,
        },
    )
}

/// The value of `metric` in a snapshot.
fn value_of(metric: &str, snapshot: &Snapshot) -> Option<f64> {
    match metric {
        METRIC_REPLICAS => Some(snapshot.plan.served),
        METRIC_DEMAND_PLANNED => Some(snapshot.plan.planned_demand),
        METRIC_DEMAND_MEDIAN => Some(snapshot.plan.median_demand),
        _ => None,
    }
}

impl ApiState {
    /// The value of `metric` in `snapshot` as this API serves it, with its canonical Quantity, or the refusal: a
    /// snapshot older than [`Self::max_forecast_age`] at `now` is [`ApiError::Stale`], a value that is not a finite
    /// quantity (or a metric not served) is [`ApiError::BadValue`]. Every surface serving plans (this API, the KEDA
    /// external scaler) goes through here, so they agree on the value and on what is refused.
    pub fn serve(&self, snapshot: &Snapshot, metric: &str, now: DateTime<Utc>) -> Result<(f64, String), Box<ApiError>> {
        let age = now - snapshot.published_at;
        if age > self.max_forecast_age {
            return Err(Box::new(ApiError::Stale {
                workload: snapshot.id.clone(),
                age_seconds: age.num_seconds(),
                max_age_seconds: self.max_forecast_age.num_seconds(),
            }));
        }
        let value = value_of(metric, snapshot).unwrap_or(f64::NAN);
        let quantity = quantity::format(value).map_err(|source| {
            Box::new(ApiError::BadValue {
                workload: snapshot.id.clone(),
                metric: metric.to_owned(),
                value,
                source,
            })
        })?;
        Ok((value, quantity))
    }
}

/// `GET .../namespaces/{namespace}/{metric}?labelSelector=...`
async fn metric_values(
    State(state): State<ApiState>,
    Path((namespace, metric)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    // The aggregator re-encodes the query with Go's url.Values.Encode(): form encoding, `+` is a space.
    let raw_selector = query
        .as_deref()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "labelSelector"))
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let selector = Selector::parse(&raw_selector).map_err(|source| ApiError::BadSelector {
        selector: raw_selector.clone(),
        source,
    })?;
    if !METRICS.contains(&metric.as_str()) {
        return Err(ApiError::UnknownMetric { metric });
    }

    let now = state.clock.now();
    let mut items = Vec::new();
    for snapshot in state.store.in_namespace(&namespace) {
        let labels = BTreeMap::from([(WORKLOAD_LABEL.to_owned(), snapshot.id.name.clone())]);
        if !selector.matches(&labels) {
            continue;
        }
        // One stale item would skew the HPA's sum: refuse the whole answer.
        let (_, quantity) = state.serve(&snapshot, &metric, now).map_err(|e| *e)?;
        items.push(ExternalMetricValue {
            metric_name: metric.clone(),
            metric_labels: labels,
            timestamp: snapshot.published_at,
            window_seconds: None,
            value: quantity,
        });
    }
    if items.is_empty() {
        return Err(ApiError::NoMatch {
            namespace,
            metric,
            selector: selector.to_string(),
        });
    }
    debug!(%namespace, %metric, %selector, items = items.len(), "metric values served");
    Ok(json(StatusCode::OK, &ExternalMetricValueList::new(items)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation_for_apis() {
        assert!(plain_json_acceptable(""));
        assert!(plain_json_acceptable("application/json"));
        assert!(plain_json_acceptable("application/vnd.kubernetes.protobuf, */*"));
        assert!(!plain_json_acceptable(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        ));
        assert!(!plain_json_acceptable(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,\
             application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
        ));
        // kubectl offers plain JSON as a fallback after the typed variants.
        assert!(plain_json_acceptable(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(plain_json_acceptable(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList, */*;q=0.1"
        ));
    }

    #[test]
    fn timestamps_are_seconds_utc() {
        let item = ExternalMetricValue {
            metric_name: METRIC_REPLICAS.into(),
            metric_labels: BTreeMap::new(),
            timestamp: "2025-04-07T14:31:11.987654Z".parse().unwrap(),
            window_seconds: None,
            value: "1".into(),
        };
        let v = serde_json::to_value(&item).unwrap();
        assert_eq!(v["timestamp"], "2025-04-07T14:31:11Z");
        assert!(v.get("window").is_none());
        assert_eq!(v["metricLabels"], serde_json::json!({}));
    }
}
