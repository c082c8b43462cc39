//! prescale's own metrics: one Prometheus registry, a sub-registry per component, served at `/metrics`.
//!
//! Per-workload metrics come in two sets, chosen by [`Detail`] (`--metrics-detail`, the config's
//! `metricsDetail`). By default `/metrics` carries what an SRE alerts and graphs on: five series per workload in
//! steady state, and a flag while something is wrong, at most [`DEFAULT_SERIES_PER_WORKLOAD`] (ten thousand
//! workloads: 4.1 MB a scrape, 48 MB with detail); fit durations go to one histogram for all workloads. The flags
//! (`serving`, `serving_refused`, `fallback_active`, `slo_reachable`) are present by default only in the state an
//! alert or the dashboard looks for, so `serving{state="demoted"}` or `slo_reachable == 0` read the same in both
//! sets. With detail on, every per-workload series below is exported, the flags in every state.
//!
//! `/metrics` is gzip-encoded when the scraper accepts it (Prometheus does by default): about 15 times smaller.
//!
//! | component | by default (all prefixed `prescale_`) | with detail, also | source |
//! |---|---|---|---|
//! | forecast | `forecast_age_seconds`; `fallback_active` (value 1, while a fallback model is in use); `forecast_max_age_seconds` and `forecast_fit_duration_seconds` once for the process (no workload labels) | `fallback_active` 0, `forecast_demand{level}`, `forecast_replicas`, `planning_quantile`, `forecast_model_info{method,periods}`, `forecast_fits_total`, `forecast_workload_fit_duration_seconds` | the plan store at scrape time; fit durations pushed by the pipeline |
//! | serving | `served_replicas`, `observed_demand`, `serving{state}` (value 1, while the state is not `forecast`), `serving_refused{reason}` (value 1, while the API refuses the plan; in both sets) | `serving{state="forecast"}`, `served_demand`, `reactive_replicas`, `forecast_only` | the plan store |
//! | slo | `slo_error_budget_remaining_ratio`, `slo_reachable` (value 0, while no candidate meets the SLO) | `slo_reachable` 1, `slo_max_unserved_ratio`, `slo_unserved_ratio`, `slo_cost_vs_reactive_ratio`, `served_pods_vs_reactive_ratio` | the plan store: the SLO controller's report ([`crate::control::service_level::Report`]) |
//! | quality | (the `demoted` state of `serving`) | `quality_demoted`, `quality_coverage_ratio`, `quality_nominal_coverage_ratio`, `quality_under_prediction_ratio`, `quality_under_prediction_size_ratio`, `quality_shortfall_ratio`, `quality_window_samples`, `quality_scored_total`, `quality_demotions_total`, `quality_promotions_total` | the plan store |
//! | history | `history_data_age_seconds` | `history_query_errors_total`, `history_max_data_age_seconds`, `history_last_success_timestamp_seconds`, `history_missing_ratio` | the plan store |
//! | api, admin | `{api,admin}_requests_total{method,route,code}`, `{api,admin}_request_duration_seconds{method,route}` (no workload labels) | | [`instrument`] middleware (labels bounded: [`method_label`], route templates) |
//! | backtest (with `--backtest-configmap`) | `backtest_bar_failed_workloads{lead}`, `backtest_oldest_generated_timestamp_seconds` (no workload labels) | `backtest_*{policy,lead}` per workload | [`crate::backtest::publish`] |
//! | keda | `keda_requests_total{method,code}` (gRPC calls by RPC name and status code, streams counted when they end), `keda_streams_open` (no workload labels) | | [`crate::apiserver::keda`] (labels bounded: the service's five RPC names or `other`, gRPC code names) |
//! | state (with `--state-configmaps`) | `state_configmap_writes_total{result}` (ok, conflict, error), `state_dropped_total` (no workload labels) | | [`crate::k8s::states`] |
//!
//! Per-workload metrics carry `namespace` and `workload` labels, and no others but the bounded `state`, `reason`,
//! `level`, `method` and `periods` above. A value that is not known (no observation, no score yet) is absent rather
//! than zero.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::clock::Clock;
use crate::control::engine::{Mode, Serving};
use crate::control::quality::Health;
use crate::store::{PlanStore, WorkloadId};

/// The content type of the exposition: the Prometheus text format, which every Prometheus scrapes and
/// `promtool check metrics` lints.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Labels of every per-workload metric.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkloadLabels {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Workload name.
    pub workload: String,
}

impl From<&WorkloadId> for WorkloadLabels {
    fn from(id: &WorkloadId) -> Self {
        Self {
            namespace: id.namespace.clone(),
            workload: id.name.clone(),
        }
    }
}

/// Labels of HTTP request metrics. `route` is the matched route template, so paths with names in them do not
/// make a series per name.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// Route template, or `unmatched`.
    pub route: String,
    /// Status code.
    pub code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    method: String,
    route: String,
}

/// How much of each workload `/metrics` carries (see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Detail {
    /// The series an SRE alerts and graphs on: five per workload in steady state, flags only while they flag, at most
    /// [`DEFAULT_SERIES_PER_WORKLOAD`] per workload; fit durations in one histogram for all workloads.
    #[default]
    Default,
    /// Every per-workload series: forecast levels, quality scores, cost ratios, the model in use, counters, the flags
    /// in every state and a fit-duration histogram per workload (about 50 series per workload).
    Full,
}

impl Detail {
    /// `Full` when `on` (`--metrics-detail`, `metricsDetail: true`), else `Default`.
    pub fn full_if(on: bool) -> Self {
        if on {
            Self::Full
        } else {
            Self::Default
        }
    }
}

/// The most series one workload adds to `/metrics` with [`Detail::Default`]: the five always there (served replicas,
/// observed demand, the forecast's and the data's age, the SLO's error budget) and the four flags all raised at once
/// (a reactive serving state, a refusal, a fallback model, an SLO that cannot be met).
pub const DEFAULT_SERIES_PER_WORKLOAD: usize = 9;

/// Metrics the pipeline pushes (what cannot be read from the store afterwards).
#[derive(Debug, Clone)]
pub struct PipelineMetrics {
    fit_duration: Histogram,
    /// With [`Detail::Full`] only.
    fit_duration_by_workload: Option<Family<WorkloadLabels, Histogram>>,
}

/// 10 ms .. ~80 s: a short daily model fits in tens of ms, two weeks of 1-min data in about a second.
fn fit_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

impl Default for PipelineMetrics {
    /// Metrics not attached to any registry: recorded, never exported.
    fn default() -> Self {
        Self::new(Detail::Default)
    }
}

impl PipelineMetrics {
    fn new(detail: Detail) -> Self {
        Self {
            fit_duration: fit_histogram(),
            fit_duration_by_workload: (detail == Detail::Full)
                .then(|| Family::new_with_constructor(fit_histogram as fn() -> Histogram)),
        }
    }

    /// Records one model fit.
    pub fn fit(&self, id: &WorkloadId, seconds: f64) {
        self.fit_duration.observe(seconds);
        if let Some(by_workload) = &self.fit_duration_by_workload {
            by_workload.get_or_create(&id.into()).observe(seconds);
        }
    }
}

/// Request metrics of one HTTP server; apply them with [`instrument`].
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<LatencyLabels, Histogram>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        // 0.5 ms .. ~4 s: the API answers from memory; anything near a second is a problem worth seeing.
        Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 14))),
        }
    }
}

/// Adds request counting and latency to every route of `router` (apply after the routes are added).
pub fn instrument<S: Clone + Send + Sync + 'static>(router: Router<S>, metrics: HttpMetrics) -> Router<S> {
    router.layer(axum::middleware::from_fn_with_state(metrics, track))
}

/// The middleware behind [`instrument`], for callers that compose their own layers.
pub async fn track(State(metrics): State<HttpMetrics>, request: Request, next: Next) -> Response {
    let method = method_label(request.method()).to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let code = response.status().as_u16().to_string();
    metrics
        .duration
        .get_or_create(&LatencyLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels { method, route, code })
        .inc();
    response
}

/// The `method` label of a request: one of the methods HTTP defines, else `other`. Any token is a valid method, and
/// a label value taken from the request would let any caller (authenticated or not) add series without bound.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::CONNECT,
        Method::OPTIONS,
        Method::TRACE,
        Method::PATCH,
    ];
    KNOWN.iter().find(|m| *m == method).map_or("other", Method::as_str)
}

/// Labels of gRPC call metrics. Both are bounded by the caller: `method` is one of the service's RPC names or
/// `other`, `code` a gRPC status code name (`OK`, `NotFound`, ...).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    /// RPC name, or `other`.
    pub method: &'static str,
    /// gRPC status code name.
    pub code: &'static str,
}

/// Call metrics of one gRPC server.
#[derive(Debug, Clone, Default)]
pub struct GrpcMetrics {
    requests: Family<GrpcLabels, Counter>,
    streams: Gauge,
}

impl GrpcMetrics {
    /// Counts one call answered (a stream: ended) with `code`.
    pub fn handled(&self, labels: GrpcLabels) {
        self.requests.get_or_create(&labels).inc();
    }

    /// Counts a server stream as open until the returned guard is dropped.
    pub fn stream_opened(&self) -> OpenStream {
        self.streams.inc();
        OpenStream(self.streams.clone())
    }
}

/// An open server stream, counted in `streams_open` while it lives.
#[derive(Debug)]
pub struct OpenStream(Gauge);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The one Prometheus registry of a prescale process. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<RwLock<prometheus_client::registry::Registry>>,
    pipeline: PipelineMetrics,
    http: Arc<Mutex<BTreeMap<String, HttpMetrics>>>,
    detail: Detail,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("telemetry::Registry")
    }
}

impl Registry {
    /// A registry exporting the store's workloads (read at scrape time, ages against `clock`) and the pipeline's
    /// fit durations, with [`Detail::Default`].
    pub fn new(store: Arc<PlanStore>, clock: Clock) -> Self {
        Self::with_detail(store, clock, Detail::Default)
    }

    /// [`Registry::new`] exporting `detail` of each workload.
    pub fn with_detail(store: Arc<PlanStore>, clock: Clock, detail: Detail) -> Self {
        let mut root = prometheus_client::registry::Registry::with_prefix("prescale");
        let pipeline = PipelineMetrics::new(detail);
        root.register_collector(Box::new(StoreCollector { store, clock, detail }));
        let forecast = root.sub_registry_with_prefix("forecast");
        forecast.register(
            "fit_duration_seconds",
            "Duration of model fits, all workloads",
            pipeline.fit_duration.clone(),
        );
        if let Some(by_workload) = &pipeline.fit_duration_by_workload {
            forecast.register(
                "workload_fit_duration_seconds",
                "Duration of model fits, by workload",
                by_workload.clone(),
            );
        }
        Self {
            inner: Arc::new(RwLock::new(root)),
            pipeline,
            http: Arc::default(),
            detail,
        }
    }

    /// How much of each workload this registry exports (components registered with [`Registry::register_with`]
    /// follow it).
    pub fn detail(&self) -> Detail {
        self.detail
    }

    /// The metrics the pipeline records into (pass to `pipeline::Options`).
    pub fn pipeline(&self) -> PipelineMetrics {
        self.pipeline.clone()
    }

    /// Request metrics for the HTTP server `server` (`api`, `admin`), registered on first use as
    /// `prescale_{server}_requests_total` and `prescale_{server}_request_duration_seconds`.
    pub fn http(&self, server: &str) -> HttpMetrics {
        let mut map = self.http.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = map.get(server) {
            return m.clone();
        }
        let metrics = HttpMetrics::default();
        let mut root = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let sub = root.sub_registry_with_prefix(server);
        sub.register(
            "requests",
            "HTTP requests answered, by route and status code",
            metrics.requests.clone(),
        );
        sub.register(
            "request_duration_seconds",
            "Time to answer HTTP requests, by route",
            metrics.duration.clone(),
        );
        map.insert(server.to_owned(), metrics.clone());
        metrics
    }

    /// Call metrics for the gRPC server `server` (`keda`), registered on first use as `prescale_{server}_requests_total`
    /// and `prescale_{server}_streams_open`. Call once per server.
    pub fn grpc(&self, server: &str) -> GrpcMetrics {
        let metrics = GrpcMetrics::default();
        let mut root = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let sub = root.sub_registry_with_prefix(server);
        sub.register(
            "requests",
            "gRPC calls answered, by method and status code (streams when they end)",
            metrics.requests.clone(),
        );
        sub.register("streams_open", "Server streams open now", metrics.streams.clone());
        metrics
    }

    /// Lets another component register its own metrics (e.g. the Prometheus history client's
    /// `register_metrics`), under the `prescale_` prefix.
    pub fn register_with(&self, f: impl FnOnce(&mut prometheus_client::registry::Registry)) {
        f(&mut self.inner.write().unwrap_or_else(|e| e.into_inner()));
    }

    /// The exposition, in the Prometheus text format (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.inner.read().unwrap_or_else(|e| e.into_inner());
        // Writing to a String only fails if an encoder reports an error, which ours do not.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::warn!(%error, "encoding metrics failed");
        }
        openmetrics_to_prometheus(&out)
    }

    /// A router serving `GET /metrics`; merge it into the admin router. The exposition is gzip-encoded when the
    /// request accepts it ([`accepts_gzip`]), and both it and its encoding are made on a blocking thread: at ten
    /// thousand workloads they take a few hundred milliseconds of CPU.
    pub fn router(&self) -> Router {
        let registry = self.clone();
        Router::new().route(
            "/metrics",
            get(move |headers: HeaderMap| {
                let registry = registry.clone();
                async move { registry.respond(accepts_gzip(&headers)).await }
            }),
        )
    }

    async fn respond(self, compress: bool) -> Response {
        let body = tokio::task::spawn_blocking(move || {
            let text = self.encode();
            if compress {
                gzip(text.as_bytes())
            } else {
                text.into_bytes()
            }
        })
        .await;
        let body = match body {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%error, "encoding metrics failed");
                return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
        };
        let mut response = (
            [(header::CONTENT_TYPE, CONTENT_TYPE), (header::VARY, "Accept-Encoding")],
            body,
        )
            .into_response();
        if compress {
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        response
    }
}

/// Whether a request's `Accept-Encoding` accepts gzip: `gzip` (or `x-gzip`) listed with a non-zero weight, or else
/// `*` with a non-zero weight. No header: identity.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            let weight = parts
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("q")
                        .then(|| v.trim().parse::<f32>().ok())?
                })
                .next()
                .unwrap_or(1.0);
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                gzip = Some(weight > 0.0);
            } else if coding == "*" {
                any = Some(weight > 0.0);
            }
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// `bytes` gzip-encoded, as `/metrics` sends them: at the default level (6), as Prometheus's own client libraries
/// do. At ten thousand workloads it adds about a fifth to the time the exposition takes to make and sends 15× fewer
/// bytes; the fastest level would take an eighth of that time and send 11× fewer (`BENCHMARKS.md`).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 8), GZIP_LEVEL);
    // Writing to a Vec does not fail.
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

const GZIP_LEVEL: flate2::Compression = flate2::Compression::new(6);

/// Reads every workload's latest snapshot, insight and status at scrape time.
#[derive(Debug)]
struct StoreCollector {
    store: Arc<PlanStore>,
    clock: Clock,
    detail: Detail,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LevelLabels {
    namespace: String,
    workload: String,
    // Not `quantile`: that label is reserved for summaries.
    level: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    namespace: String,
    workload: String,
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    namespace: String,
    workload: String,
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    namespace: String,
    workload: String,
    method: String,
    periods: String,
}

type F64Gauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// One gauge family filled at scrape time; non-finite values are left out (never exported as NaN).
pub(crate) struct Emit<'a, L> {
    name: &'a str,
    help: &'a str,
    family: Family<L, F64Gauge>,
    /// False: nothing is recorded or encoded, not even the family's HELP and TYPE.
    enabled: bool,
}

impl<'a, L: Clone + Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static> Emit<'a, L> {
    pub(crate) fn new(name: &'a str, help: &'a str) -> Self {
        Self {
            name,
            help,
            family: Family::default(),
            enabled: true,
        }
    }

    /// The same family, exported only when `enabled`.
    pub(crate) fn only_if(self, enabled: bool) -> Self {
        Self { enabled, ..self }
    }

    pub(crate) fn set(&self, labels: L, value: f64) {
        // Never export NaN: a value that is not a number is not known.
        if self.enabled && value.is_finite() {
            self.family.get_or_create(&labels).set(value);
        }
    }

    pub(crate) fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if !self.enabled {
            return Ok(());
        }
        let metric = encoder.encode_descriptor(self.name, self.help, None, self.family.metric_type())?;
        self.family.encode(metric)
    }
}

/// Counters read from the store: encoded as counters so `rate()` works.
struct EmitCounter<'a> {
    name: &'a str,
    help: &'a str,
    family: Family<WorkloadLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    enabled: bool,
}

impl<'a> EmitCounter<'a> {
    fn new(name: &'a str, help: &'a str) -> Self {
        Self {
            name,
            help,
            family: Family::default(),
            enabled: true,
        }
    }

    fn only_if(self, enabled: bool) -> Self {
        Self { enabled, ..self }
    }

    fn set(&self, labels: WorkloadLabels, value: f64) {
        if self.enabled && value.is_finite() && value >= 0.0 {
            self.family.get_or_create(&labels).inc_by(value);
        }
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if !self.enabled {
            return Ok(());
        }
        let metric = encoder.encode_descriptor(self.name, self.help, None, self.family.metric_type())?;
        self.family.encode(metric)
    }
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = self.clock.now();
        let full = self.detail == Detail::Full;
        // The default set (see the module documentation): at most DEFAULT_SERIES_PER_WORKLOAD series a workload.
        let served = Emit::<WorkloadLabels>::new("served_replicas", "Replica target served to the HPA");
        let observed = Emit::<WorkloadLabels>::new("observed_demand", "Demand observed now");
        let forecast_age =
            Emit::<WorkloadLabels>::new("forecast_age_seconds", "Seconds since the served plan was published");
        let data_age = Emit::<WorkloadLabels>::new(
            "history_data_age_seconds",
            "Seconds since the end of the latest demand sample",
        );
        let slo_budget = Emit::<WorkloadLabels>::new(
            "slo_error_budget_remaining_ratio",
            "Error budget left over the SLO window: 1 - unserved share / serviceLevel.maxUnserved (negative: overspent)",
        );
        // Flags: by default present only in the state alerts and the dashboard look for; with detail in every state.
        let serving = Emit::<StateLabels>::new(
            "serving",
            "What the served target follows, as state: forecast, forecast_only, demoted, reactive (the SLO controller's choice) warming (the first model is being fitted) or restored (the last plan before a restart, while the first model is fitted); value 1, one series per planned workload (without metrics detail only while the state is not forecast)",
        );
        let refused = Emit::<ReasonLabels>::new(
            "serving_refused",
            "Present (value 1) while the API refuses the workload's plan, with the reason: not_planned, stale_data or stale_forecast; absent while the plan is served",
        );
        let fallback = Emit::<WorkloadLabels>::new(
            "fallback_active",
            "1 when the forecast comes from a fallback model, else 0 (without metrics detail only while 1)",
        );
        let slo_reachable = Emit::<WorkloadLabels>::new(
            "slo_reachable",
            "1 when some candidate recently met the SLO, 0 when none did (the SLO cannot be met now); absent before warm-up (without metrics detail only while 0)",
        );

        // Detail: only with Detail::Full.
        let served_demand =
            Emit::<WorkloadLabels>::new("served_demand", "Demand the served target is sized for").only_if(full);
        let reactive =
            Emit::<WorkloadLabels>::new("reactive_replicas", "ceil(observed demand / capacity), clamped").only_if(full);
        let slo_max = Emit::<WorkloadLabels>::new(
            "slo_max_unserved_ratio",
            "The SLO: the share of demand that may go unserved over the SLO window (serviceLevel.maxUnserved)",
        )
        .only_if(full);
        let slo_unserved = Emit::<WorkloadLabels>::new(
            "slo_unserved_ratio",
            "Share of demand the served plan's ready pods left unserved over the SLO window so far",
        )
        .only_if(full);
        let demoted =
            Emit::<WorkloadLabels>::new("quality_demoted", "1 while forecast quality has demoted the workload")
                .only_if(full);
        let query_errors = EmitCounter::new("history_query_errors", "History fetches that failed").only_if(full);
        let demand = Emit::<LevelLabels>::new(
            "forecast_demand",
            "Peak forecast demand over the lead window, by quantile (0.5 = median, and the planned quantile)",
        )
        .only_if(full);
        let forecast_replicas =
            Emit::<WorkloadLabels>::new("forecast_replicas", "Replicas the forecast asks for now").only_if(full);
        let planning_quantile = Emit::<WorkloadLabels>::new(
            "planning_quantile",
            "Quantile the forecast plan is made at now (adapted to the workload unless adaptiveQuantile is off)",
        )
        .only_if(full);
        let model = Emit::<ModelLabels>::new(
            "forecast_model_info",
            "The model family and seasonal periods in use (value 1)",
        )
        .only_if(full);
        let forecast_only =
            Emit::<WorkloadLabels>::new("forecast_only", "1 when the workload is configured forecastOnly")
                .only_if(full);
        let slo_cost = Emit::<WorkloadLabels>::new(
            "slo_cost_vs_reactive_ratio",
            "Recent pods held by the chosen candidate over those of the cheapest reactive HPA target that met the SLO (none did: the least unserved)",
        )
        .only_if(full);
        let served_pods = Emit::<WorkloadLabels>::new(
            "served_pods_vs_reactive_ratio",
            "Recent pods held by what was served over those of the cheapest reactive HPA target that met the SLO (none did: the least unserved)",
        )
        .only_if(full);
        let coverage = Emit::<WorkloadLabels>::new(
            "quality_coverage_ratio",
            "Share of recent actuals inside the forecast interval",
        )
        .only_if(full);
        let nominal = Emit::<WorkloadLabels>::new(
            "quality_nominal_coverage_ratio",
            "Coverage a calibrated forecast would have",
        )
        .only_if(full);
        let under = Emit::<WorkloadLabels>::new(
            "quality_under_prediction_ratio",
            "Share of recent slots whose demand exceeded the planned quantile",
        )
        .only_if(full);
        let under_size = Emit::<WorkloadLabels>::new(
            "quality_under_prediction_size_ratio",
            "Mean fraction of demand above the plan, over the under-predicted slots",
        )
        .only_if(full);
        let shortfall = Emit::<WorkloadLabels>::new(
            "quality_shortfall_ratio",
            "Mean fraction of demand above the plan, over all recent slots",
        )
        .only_if(full);
        let samples =
            Emit::<WorkloadLabels>::new("quality_window_samples", "Scored slots in the quality window").only_if(full);
        let scored = EmitCounter::new("quality_scored", "Forecast slots scored against observed demand").only_if(full);
        let demotions = EmitCounter::new("quality_demotions", "Demotions to reactive scaling").only_if(full);
        let promotions = EmitCounter::new("quality_promotions", "Promotions back to forecast scaling").only_if(full);
        let last_success = Emit::<WorkloadLabels>::new(
            "history_last_success_timestamp_seconds",
            "Unix time of the latest cycle that published a plan",
        )
        .only_if(full);
        let missing =
            Emit::<WorkloadLabels>::new("history_missing_ratio", "Share of missing slots in the history window")
                .only_if(full);
        let max_data_age = Emit::<WorkloadLabels>::new(
            "history_max_data_age_seconds",
            "maxDataAge: past it the API refuses the workload's plan and the HPA holds",
        )
        .only_if(full);
        let fits = EmitCounter::new("forecast_fits", "Models fitted").only_if(full);

        // One entry per workload: its plan, insight and status come from the same cycle.
        let max_forecast_age = self.store.max_forecast_age();
        let entries = self.store.entries();
        for (id, entry) in &entries {
            let Some(status) = &entry.status else { continue };
            let l = WorkloadLabels::from(id);
            // The newest sample fetched, also when no plan was made from it (stale data, never planned).
            if let Some(t) = status.data_until.or(entry.snapshot.as_ref().and_then(|s| s.data_until)) {
                data_age.set(l.clone(), seconds(now - t));
            }
            if let Some(max) = entry.max_data_age {
                max_data_age.set(l.clone(), seconds(max));
            }
            if let Err(why) = entry.servable(max_forecast_age, now) {
                refused.set(
                    ReasonLabels {
                        namespace: l.namespace.clone(),
                        workload: l.workload.clone(),
                        reason: why.reason().into(),
                    },
                    1.0,
                );
            }
            if let Some(t) = status.last_success {
                last_success.set(l.clone(), t.timestamp_millis() as f64 / 1000.0);
            }
            if status.slots > 0 {
                missing.set(l.clone(), status.missing as f64 / status.slots as f64);
            }
            query_errors.set(l.clone(), status.query_errors as f64);
            fits.set(l, status.fits as f64);
        }
        for entry in entries.iter().map(|(_, e)| e) {
            let Some(snap) = &entry.snapshot else { continue };
            let l = WorkloadLabels::from(&snap.id);
            let plan = &snap.plan;
            let q = |level: String| LevelLabels {
                namespace: snap.id.namespace.clone(),
                workload: snap.id.name.clone(),
                level,
            };
            forecast_age.set(l.clone(), seconds(now - snap.published_at));
            if let (None, Some(t)) = (&entry.status, snap.data_until) {
                data_age.set(l.clone(), seconds(now - t));
            }
            let f = &snap.forecast;
            if full || f.fallback.is_some() {
                fallback.set(l.clone(), if f.fallback.is_some() { 1.0 } else { 0.0 });
            }
            if full {
                model.set(
                    ModelLabels {
                        namespace: snap.id.namespace.clone(),
                        workload: snap.id.name.clone(),
                        method: serde_json::to_value(f.method)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        periods: f
                            .periods
                            .iter()
                            .map(|p| crate::duration::format(*p))
                            .collect::<Vec<_>>()
                            .join(","),
                    },
                    1.0,
                );
            }
            served.set(l.clone(), f64::from(plan.replicas));
            served_demand.set(l.clone(), plan.planned_demand);
            let insight = entry.insight.as_deref();
            let forecast_plan = insight.as_ref().map_or(plan, |i| &i.forecast_plan);
            if full {
                forecast_replicas.set(l.clone(), f64::from(forecast_plan.forecast_replicas));
                planning_quantile.set(l.clone(), forecast_plan.quantile);
                demand.set(q("0.5".into()), forecast_plan.median_demand);
                demand.set(q(format!("{}", forecast_plan.quantile)), forecast_plan.planned_demand);
            }
            if let Some(o) = plan.observed_demand {
                observed.set(l.clone(), o);
            }
            let Some(insight) = insight else { continue };
            reactive.set(l.clone(), f64::from(insight.reactive_plan.replicas));
            if full || insight.serving != Serving::Forecast {
                serving.set(
                    StateLabels {
                        namespace: l.namespace.clone(),
                        workload: l.workload.clone(),
                        state: insight.serving.as_str().into(),
                    },
                    1.0,
                );
            }
            forecast_only.set(l.clone(), if insight.mode == Mode::ForecastOnly { 1.0 } else { 0.0 });
            if let Some(a) = &insight.adaptive {
                slo_max.set(l.clone(), a.slo_max_unserved);
                if let Some(w) = &a.window {
                    slo_unserved.set(l.clone(), w.unserved_fraction);
                    slo_budget.set(l.clone(), w.error_budget_left);
                }
                if a.warmed_up && (full || !a.slo_reachable) {
                    slo_reachable.set(l.clone(), if a.slo_reachable { 1.0 } else { 0.0 });
                }
                if let Some(c) = a.cost_vs_reactive_at_slo {
                    slo_cost.set(l.clone(), c);
                }
                if let Some(s) = &a.served {
                    served_pods.set(l.clone(), s.pods_vs_reactive);
                }
            }
            let r = &insight.quality;
            demoted.set(l.clone(), if r.health == Health::Demoted { 1.0 } else { 0.0 });
            if full {
                nominal.set(l.clone(), r.scores.nominal_coverage);
                samples.set(l.clone(), r.scores.samples as f64);
                for (emit, value) in [
                    (&coverage, r.scores.coverage),
                    (&under, r.scores.under_rate),
                    (&under_size, r.scores.under_size),
                    (&shortfall, r.scores.shortfall),
                ] {
                    if let Some(v) = value {
                        emit.set(l.clone(), v);
                    }
                }
                scored.set(l.clone(), r.scored_total as f64);
                demotions.set(l.clone(), r.demotions as f64);
                promotions.set(l, r.promotions as f64);
            }
        }
        for e in [
            &forecast_replicas,
            &planning_quantile,
            &forecast_age,
            &fallback,
            &served,
            &served_demand,
            &reactive,
            &observed,
            &forecast_only,
            &slo_max,
            &slo_unserved,
            &slo_budget,
            &slo_reachable,
            &slo_cost,
            &served_pods,
            &coverage,
            &nominal,
            &under,
            &under_size,
            &shortfall,
            &samples,
            &demoted,
            &data_age,
            &max_data_age,
            &last_success,
            &missing,
        ] {
            e.encode(&mut encoder)?;
        }
        // maxForecastAge is the process's, not a workload's: one series.
        let max_age = F64Gauge::default();
        max_age.set(seconds(max_forecast_age));
        let metric = encoder.encode_descriptor(
            "forecast_max_age_seconds",
            "maxForecastAge: past it the API refuses a workload's plan and the HPA holds",
            None,
            max_age.metric_type(),
        )?;
        max_age.encode(metric)?;
        demand.encode(&mut encoder)?;
        model.encode(&mut encoder)?;
        serving.encode(&mut encoder)?;
        refused.encode(&mut encoder)?;
        for c in [&scored, &demotions, &promotions, &query_errors, &fits] {
            c.encode(&mut encoder)?;
        }
        Ok(())
    }
}

/// Rewrites prometheus-client's OpenMetrics text as the Prometheus text format (0.0.4): a counter family is named
/// with its `_total` suffix in HELP and TYPE, and `# UNIT` and `# EOF` lines go. Samples are the same in both.
pub fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

fn seconds(d: chrono::TimeDelta) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Method, StatusCode};
    use tower::ServiceExt;

    #[tokio::test]
    async fn request_labels_are_bounded_whatever_the_request_says() {
        let registry = Registry::new(Arc::new(PlanStore::new()), Clock::system());
        let router = instrument(
            Router::new().route("/apis/{group}", axum::routing::get(|| async { "ok" })),
            registry.http("api"),
        );
        // 200 made-up methods on made-up paths, and the standard ones.
        for k in 0..200 {
            let request = axum::http::Request::builder()
                .method(Method::from_bytes(format!("ZZ{k}").as_bytes()).unwrap())
                .uri(format!("/made/up/{k}"))
                .body(Body::empty())
                .unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            assert_ne!(response.status(), StatusCode::OK);
        }
        for (method, path) in [
            (Method::GET, "/apis/a"),
            (Method::GET, "/apis/b"),
            (Method::DELETE, "/apis/c"),
        ] {
            let request = axum::http::Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap();
            router.clone().oneshot(request).await.unwrap();
        }
        let text = registry.encode();
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("prescale_api_requests_total{"))
            .collect();
        assert!(
            series
                .iter()
                .all(|l| ["method=\"other\"", "method=\"GET\"", "method=\"DELETE\""]
                    .iter()
                    .any(|m| l.contains(m))),
            "{series:#?}"
        );
        assert!(
            series.len() <= 4,
            "one series per method class, route template and code: {series:#?}"
        );
        assert!(!text.contains("ZZ") && !text.contains("/made/up"), "{text}");
        assert!(text.contains("route=\"/apis/{group}\""), "{text}");
        assert_eq!(method_label(&Method::from_bytes(b"ZZZA").unwrap()), "other");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
    }

    #[test]
    fn gzip_is_sent_only_when_accepted() {
        let accepts = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            }
            accepts_gzip(&headers)
        };
        for yes in [
            &["gzip"][..],
            &["identity", "gzip"],
            &["deflate, GZip;q=0.2"],
            &["x-gzip"],
            &["*"],
            &["br;q=1.0, *;q=0.5"],
        ] {
            assert!(accepts(yes), "{yes:?}");
        }
        for no in [
            &[][..],
            &["identity"],
            &["br, deflate, zstd"],
            &["gzip;q=0"],
            &["gzip; q=0.000"],
            &["*;q=0.5, gzip;q=0"],
            &["*;q=0"],
        ] {
            assert!(!accepts(no), "{no:?}");
        }
        let text = "prescale_served_replicas{namespace=\"a\",workload=\"b\"} 5.0\n".repeat(1000);
        let gzipped = gzip(text.as_bytes());
        assert_eq!(gzipped[..2], [0x1f, 0x8b]);
        assert!(gzipped.len() < text.len() / 20, "{}", gzipped.len());
        let mut decoded = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gzipped[..]), &mut decoded).unwrap();
        assert_eq!(decoded, text);
    }
}
