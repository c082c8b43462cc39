//! Demand history from any Prometheus-compatible query API (`/api/v1/query_range`).
//!
//! One [`PrometheusClient`] is built from [`PrometheusSettings`] and shared by every workload: it owns the HTTP
//! client (timeouts, TLS, auth), bounds how many queries run at once and counts what happens to them. Each workload
//! gets a [`PromQuery`], which implements [`History`] for one PromQL expression at one step.
//!
//! Time convention: the value Prometheus returns at evaluation time `T` is the demand of the slot that **ends** at `T`,
//! `[T − step, T)`. That is what `sum(rate(requests_total[1m]))` evaluated at a 1-minute step means: the rate over the
//! minute before `T`. So slot `s` is read from the evaluation at `s + step`.
//!
//! Prometheus refuses range queries over 11,000 points per series; longer ranges are split into consecutive requests
//! of at most [`MAX_POINTS_PER_REQUEST`] points, run one after the other.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use prometheus_http_query::response::Data;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::history::{align_down, Fetch, History, HistoryError};
use crate::series::Series;

/// Prometheus answers "exceeded maximum resolution of 11,000 points per timeseries" above this.
pub const MAX_POINTS_PER_REQUEST: i64 = 11_000;

/// Why a Prometheus client or query could not be set up (bad settings; the message names the field and the fix).
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    /// A setting has a value prescale cannot use.
    #[error("prometheus.{field}: {problem}")]
    Invalid {
        /// The setting, as spelled in the config file.
        field: &'static str,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// A file named by a setting could not be read.
    #[error("prometheus.{field}: cannot read {}: {source}", path.display())]
    ReadFile {
        /// The setting, as spelled in the config file.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client could not be built (for example an unusable CA file).
    #[error("prometheus: cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// How to reach Prometheus: the `prometheus:` section of the config file.
///
/// Only `url` is required. At most one of `bearerToken`, `bearerTokenFile` and `basicAuth` may be set.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrometheusSettings {
    /// Base URL of the Prometheus HTTP API, e.g. `http://prometheus.monitoring:9090`; a path prefix such as
    /// `https://thanos.example/prometheus` is kept. `http` and `https` only.
    pub url: String,
    /// Bearer token sent as `Authorization: Bearer <token>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<Secret>,
    /// File holding the bearer token, re-read for every request so a rotated token (for example a projected
    /// service-account token) is picked up without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<PathBuf>,
    /// HTTP basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// PEM file of CA certificates trusted for an `https` URL, in addition to the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Bound on one HTTP request, connect to last byte (default `10s`); also sent to Prometheus as the query's
    /// evaluation timeout. Accepts `500ms`, `10s`, `1m`.
    #[serde(default = "defaults::timeout", with = "crate::duration::std_serde")]
    pub timeout: Duration,
    /// Further attempts after a request fails with a transport error, a timeout or a 5xx/429 answer (default 2).
    /// Query errors (bad PromQL, 4xx) are not retried.
    #[serde(default = "defaults::retries")]
    pub retries: u32,
    /// Wait before the first retry (default `500ms`); doubled for each further retry, capped at `maxRetryBackoff`.
    #[serde(default = "defaults::retry_backoff", with = "crate::duration::std_serde")]
    pub retry_backoff: Duration,
    /// Longest wait between retries (default `5s`).
    #[serde(default = "defaults::max_retry_backoff", with = "crate::duration::std_serde")]
    pub max_retry_backoff: Duration,
    /// Most queries in flight at once, over all workloads (default 4), so a large fleet refreshing together does
    /// not swamp Prometheus.
    #[serde(default = "defaults::max_concurrent_queries")]
    pub max_concurrent_queries: usize,
}

/// HTTP basic authentication credentials; exactly one of `password` and `passwordFile`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// File holding the password, re-read for every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

/// A credential: never printed by `Debug` and serialized as `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// Default values of [`PrometheusSettings`].
pub mod defaults {
    use std::time::Duration;

    /// Request timeout.
    pub fn timeout() -> Duration {
        Duration::from_secs(10)
    }
    /// Retries after the first attempt.
    pub fn retries() -> u32 {
        2
    }
    /// First retry wait.
    pub fn retry_backoff() -> Duration {
        Duration::from_millis(500)
    }
    /// Longest retry wait.
    pub fn max_retry_backoff() -> Duration {
        Duration::from_secs(5)
    }
    /// Queries in flight at once.
    pub fn max_concurrent_queries() -> usize {
        4
    }
}

impl PrometheusSettings {
    /// Settings for `url` with every other field at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            bearer_token: None,
            bearer_token_file: None,
            basic_auth: None,
            ca_file: None,
            timeout: defaults::timeout(),
            retries: defaults::retries(),
            retry_backoff: defaults::retry_backoff(),
            max_retry_backoff: defaults::max_retry_backoff(),
            max_concurrent_queries: defaults::max_concurrent_queries(),
        }
    }
}

/// Longest `timeout`: a range query that needs more than this will not get faster by waiting; split or simplify it.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Most `retries`: past this a dead Prometheus only delays the fallback, and `maxForecastAge` decides anyway.
pub const MAX_RETRIES: u32 = 10;
/// Shortest `retryBackoff`: retrying sooner only adds load to a Prometheus that is already failing.
pub const MIN_RETRY_BACKOFF: Duration = Duration::from_millis(10);
/// Longest `maxRetryBackoff`: a plan waits on its query; waiting longer than this outlasts a default `maxForecastAge`.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(5 * 60);
/// Most `maxConcurrentQueries`: far more than any Prometheus serves at once (its own default is 20).
pub const MAX_CONCURRENT_QUERIES: usize = 1024;

impl PrometheusSettings {
    /// Every problem with these settings, each naming its field and the fix; empty when they can be used.
    ///
    /// The one check of the `prometheus:` section: the config check reports all of them with positions, and
    /// [`PrometheusClient::new`] refuses the first. Files named by the settings are read (relative paths from the
    /// working directory), so a typo fails here and not at the first query.
    pub fn check(&self) -> Vec<PrometheusError> {
        let invalid = |field, problem: String| PrometheusError::Invalid { field, problem };
        let mut problems = Vec::new();
        match reqwest::Url::parse(&self.url) {
            Ok(u) if !matches!(u.scheme(), "http" | "https") => problems.push(invalid(
                "url",
                format!(
                    "`{}` must start with http:// or https://, e.g. http://prometheus.monitoring:9090",
                    self.url
                ),
            )),
            Ok(u) if u.host_str().is_none_or(str::is_empty) => problems.push(invalid(
                "url",
                format!("`{}` has no host; write e.g. http://prometheus.monitoring:9090", self.url),
            )),
            Ok(_) => {}
            Err(e) => problems.push(invalid(
                "url",
                format!(
                    "`{}` is not a URL ({e}); write http:// or https:// and a host, e.g. http://prometheus.monitoring:9090",
                    self.url
                ),
            )),
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            problems.push(invalid(
                "timeout",
                format!(
                    "{} must be longer than 0s and at most 5m (default 10s): it bounds one request, connect to last \
                     byte",
                    crate::duration::Duration::from(self.timeout)
                ),
            ));
        }
        if self.retries > MAX_RETRIES {
            problems.push(invalid(
                "retries",
                format!("{} must be from 0 to {MAX_RETRIES} (default 2)", self.retries),
            ));
        }
        if self.max_concurrent_queries == 0 || self.max_concurrent_queries > MAX_CONCURRENT_QUERIES {
            problems.push(invalid(
                "maxConcurrentQueries",
                format!(
                    "{} must be from 1 to {MAX_CONCURRENT_QUERIES} (default 4): at least one query must run",
                    self.max_concurrent_queries
                ),
            ));
        }
        let show = |d: Duration| crate::duration::Duration::from(d).to_string();
        if self.max_retry_backoff > MAX_RETRY_BACKOFF {
            problems.push(invalid(
                "maxRetryBackoff",
                format!("{} must be at most 5m (default 5s)", show(self.max_retry_backoff)),
            ));
        }
        if self.retry_backoff < MIN_RETRY_BACKOFF {
            problems.push(invalid(
                "retryBackoff",
                format!("{} must be at least 10ms (default 500ms)", show(self.retry_backoff)),
            ));
        } else if self.retry_backoff > self.max_retry_backoff {
            problems.push(invalid(
                "retryBackoff",
                format!(
                    "{} is longer than maxRetryBackoff {}; lower it or raise maxRetryBackoff",
                    show(self.retry_backoff),
                    show(self.max_retry_backoff)
                ),
            ));
        }
        match (&self.bearer_token, &self.bearer_token_file, &self.basic_auth) {
            (_, Some(path), None) if self.bearer_token.is_none() => {
                if let Err(e) = read_secret("bearerTokenFile", path) {
                    problems.push(e);
                }
            }
            (None, None, Some(basic)) => match (&basic.password, &basic.password_file) {
                (Some(_), None) => {}
                (None, Some(path)) => {
                    if let Err(e) = read_secret("basicAuth.passwordFile", path) {
                        problems.push(e);
                    }
                }
                _ => problems.push(invalid(
                    "basicAuth",
                    "set exactly one of password and passwordFile".into(),
                )),
            },
            (_, None, None) => {}
            _ => problems.push(invalid(
                "bearerToken",
                "bearerToken, bearerTokenFile and basicAuth are exclusive; keep one".into(),
            )),
        }
        if let Some(path) = &self.ca_file {
            match std::fs::read(path) {
                Err(source) => problems.push(PrometheusError::ReadFile {
                    field: "caFile",
                    path: path.clone(),
                    source,
                }),
                Ok(pem) => match reqwest::Certificate::from_pem_bundle(&pem) {
                    Err(e) => problems.push(invalid(
                        "caFile",
                        format!("{} is not a PEM certificate bundle: {e}", path.display()),
                    )),
                    Ok(certs) if certs.is_empty() => problems.push(invalid(
                        "caFile",
                        format!("{} holds no PEM certificate", path.display()),
                    )),
                    Ok(_) => {}
                },
            }
        }
        problems
    }
}

impl PrometheusError {
    /// The setting the error is about, as spelled in the config file (`basicAuth.passwordFile`); empty for a
    /// client that could not be built.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Invalid { field, .. } | Self::ReadFile { field, .. } => field,
            Self::Client(_) => "",
        }
    }

    /// What is wrong and how to fix it, without the field name.
    pub fn problem(&self) -> String {
        match self {
            Self::Invalid { problem, .. } => problem.clone(),
            Self::ReadFile { path, source, .. } => format!("cannot read {}: {source}", path.display()),
            Self::Client(e) => format!("cannot build the HTTP client: {e}"),
        }
    }
}

/// What a PromQL query returning several series is reduced to (`combine`): `error` (the default, naming them),
/// `sum` or `max`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Combine {
    /// Several series are an error naming them (the query should aggregate, e.g. `sum(...)`).
    #[default]
    Error,
    /// Add the series at each timestamp.
    Sum,
    /// Take the largest series at each timestamp.
    Max,
}

/// How one HTTP request to Prometheus ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    /// Prometheus answered with data (possibly empty).
    ok,
    /// Prometheus answered with an error about the query (bad PromQL, execution error).
    query_error,
    /// A non-success HTTP status without a Prometheus error body (proxy errors, 401/403, 5xx).
    http_error,
    /// The request did not finish within the timeout.
    timeout,
    /// No connection, or the connection broke.
    unreachable,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DroppedLabels {
    reason: DropReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum DropReason {
    non_finite,
}

/// prescale's own metrics about its Prometheus queries.
#[derive(Clone)]
struct Metrics {
    requests: Family<OutcomeLabels, Counter>,
    duration: Histogram,
    dropped: Family<DroppedLabels, Counter>,
}

impl Metrics {
    fn new() -> Self {
        Self {
            requests: Family::default(),
            // 5 ms .. ~41 s: local Prometheus answers in milliseconds, a struggling one hits the timeout.
            duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            dropped: Family::default(),
        }
    }
}

/// A Prometheus connection shared by all workloads: HTTP client, auth, retries and a concurrency limit.
///
/// Cheap to clone; clones share the limit and the metrics.
#[derive(Clone)]
pub struct PrometheusClient {
    inner: Arc<Inner>,
}

struct Inner {
    api: prometheus_http_query::Client,
    url: String,
    auth: Auth,
    timeout: Duration,
    retries: u32,
    retry_backoff: Duration,
    max_retry_backoff: Duration,
    permits: Semaphore,
    metrics: Metrics,
}

enum Auth {
    None,
    Bearer(Secret),
    BearerFile(PathBuf),
    Basic { username: String, password: Secret },
    BasicFile { username: String, password_file: PathBuf },
}

impl PrometheusClient {
    /// Validates `settings` and builds the client; files named by the settings are read once here so a typo fails
    /// at startup.
    pub fn new(settings: &PrometheusSettings) -> Result<Self, PrometheusError> {
        let PrometheusSettings {
            url,
            bearer_token,
            bearer_token_file,
            basic_auth,
            ca_file,
            timeout,
            retries,
            retry_backoff,
            max_retry_backoff,
            max_concurrent_queries,
        } = settings;
        // The config check runs the same checks first, so `serve` and `check-config` refuse the same settings.
        if let Some(first) = settings.check().into_iter().next() {
            return Err(first);
        }
        let invalid = |field, problem: String| PrometheusError::Invalid { field, problem };
        let auth = match (bearer_token, bearer_token_file, basic_auth) {
            (None, None, None) => Auth::None,
            (Some(token), None, None) => Auth::Bearer(token.clone()),
            (None, Some(path), None) => {
                read_secret("bearerTokenFile", path)?;
                Auth::BearerFile(path.clone())
            }
            (
                None,
                None,
                Some(BasicAuth {
                    username,
                    password,
                    password_file,
                }),
            ) => match (password, password_file) {
                (Some(password), None) => Auth::Basic {
                    username: username.clone(),
                    password: password.clone(),
                },
                (None, Some(path)) => {
                    read_secret("basicAuth.passwordFile", path)?;
                    Auth::BasicFile {
                        username: username.clone(),
                        password_file: path.clone(),
                    }
                }
                _ => {
                    return Err(invalid(
                        "basicAuth",
                        "set exactly one of password and passwordFile".into(),
                    ));
                }
            },
            _ => {
                return Err(invalid(
                    "bearerToken",
                    "bearerToken, bearerTokenFile and basicAuth are exclusive; keep one".into(),
                ))
            }
        };

        let mut builder = reqwest::Client::builder().timeout(*timeout).connect_timeout(*timeout);
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|source| PrometheusError::ReadFile {
                field: "caFile",
                path: path.clone(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                invalid(
                    "caFile",
                    format!("{} is not a PEM certificate bundle: {e}", path.display()),
                )
            })?;
            if certs.is_empty() {
                return Err(invalid(
                    "caFile",
                    format!("{} holds no PEM certificate", path.display()),
                ));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder.build().map_err(PrometheusError::Client)?;
        let api = prometheus_http_query::Client::from(http, url)
            .map_err(|e| invalid("url", format!("`{url}` is not a usable URL: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                api,
                url: url.clone(),
                auth,
                timeout: *timeout,
                retries: *retries,
                retry_backoff: *retry_backoff,
                max_retry_backoff: *max_retry_backoff,
                permits: Semaphore::new(*max_concurrent_queries),
                metrics: Metrics::new(),
            }),
        })
    }

    /// The Prometheus base URL.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Registers prescale's query metrics (names prefixed by whatever prefix `registry` carries):
    /// `prometheus_requests_total{outcome}`, `prometheus_request_duration_seconds` and
    /// `prometheus_samples_dropped_total{reason}`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let m = &self.inner.metrics;
        registry.register(
            "prometheus_requests",
            "HTTP requests to Prometheus by outcome (ok, query_error, http_error, timeout, unreachable)",
            m.requests.clone(),
        );
        registry.register(
            "prometheus_request_duration_seconds",
            "Duration of HTTP requests to Prometheus, whatever their outcome",
            m.duration.clone(),
        );
        registry.register(
            "prometheus_samples_dropped",
            "Samples returned by Prometheus that prescale dropped (NaN or infinite values)",
            m.dropped.clone(),
        );
    }

    /// One range query with retries. `start` and `end` are evaluation times (inclusive) in Unix seconds.
    async fn query_range(&self, query: &str, start: i64, end: i64, step: i64) -> Result<Data, HistoryError> {
        let inner = &self.inner;
        let mut backoff = inner.retry_backoff;
        let mut attempt = 0;
        loop {
            let (outcome, result) = self.attempt(query, start, end, step).await;
            if let Some(outcome) = outcome {
                inner.metrics.requests.get_or_create(&OutcomeLabels { outcome }).inc();
            }
            let error = match result {
                Ok(data) => return Ok(data),
                Err(error) => error,
            };
            if !error.retryable || attempt >= inner.retries {
                let tries = if attempt == 0 {
                    String::new()
                } else {
                    format!(" (after {} attempts)", attempt + 1)
                };
                return Err(HistoryError::Unavailable {
                    message: format!("{}: {}{tries}", inner.url, error.message),
                    source: error.source,
                });
            }
            attempt += 1;
            warn!(url = %inner.url, %query, error = %error.message, attempt, ?backoff, "prometheus query failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(inner.max_retry_backoff);
        }
    }

    /// One request; the outcome is `None` when no request was sent (an unreadable credential file).
    async fn attempt(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> (Option<Outcome>, Result<Data, AttemptError>) {
        let inner = &self.inner;
        let header = match self.auth_header().await {
            Ok(header) => header,
            Err(error) => {
                return (
                    None,
                    Err(AttemptError {
                        message: error.to_string(),
                        retryable: false,
                        source: Some(Box::new(error)),
                    }),
                )
            }
        };
        // The limit covers only the request itself, not retry waits, so a failing workload does not hold a slot.
        let Ok(_permit) = inner.permits.acquire().await else {
            unreachable!("the semaphore is never closed");
        };
        let mut request = inner
            .api
            .query_range(query, start, end, step as f64)
            .timeout(i64::try_from(inner.timeout.as_millis()).unwrap_or(i64::MAX));
        if let Some(header) = header {
            request = request.header(AUTHORIZATION, header);
        }
        let began = Instant::now();
        let result = request.get().await;
        inner.metrics.duration.observe(began.elapsed().as_secs_f64());
        match result {
            Ok(answer) => (Some(Outcome::ok), Ok(answer.into_inner().0)),
            Err(error) => {
                let (outcome, error) = classify(error, inner.timeout);
                (Some(outcome), Err(error))
            }
        }
    }

    async fn auth_header(&self) -> Result<Option<HeaderValue>, CredentialError> {
        let (scheme, credential) = match &self.inner.auth {
            Auth::None => return Ok(None),
            Auth::Bearer(token) => ("Bearer", token.expose().to_owned()),
            Auth::BearerFile(path) => ("Bearer", read_secret_async(path).await?),
            Auth::Basic { username, password } => ("Basic", basic(username, password.expose())),
            Auth::BasicFile {
                username,
                password_file,
            } => ("Basic", basic(username, &read_secret_async(password_file).await?)),
        };
        let mut value =
            HeaderValue::try_from(format!("{scheme} {credential}")).map_err(|_| CredentialError::NotAHeader)?;
        value.set_sensitive(true);
        Ok(Some(value))
    }
}

fn basic(username: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
}

fn read_secret(field: &'static str, path: &Path) -> Result<String, PrometheusError> {
    let text = std::fs::read_to_string(path).map_err(|source| PrometheusError::ReadFile {
        field,
        path: path.into(),
        source,
    })?;
    if text.trim().is_empty() {
        return Err(PrometheusError::Invalid {
            field,
            problem: format!("{} is empty", path.display()),
        });
    }
    Ok(text.trim().to_owned())
}

/// Why a credential could not be sent.
#[derive(Debug, thiserror::Error)]
enum CredentialError {
    #[error("cannot read credential file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("credential file {} is empty", path.display())]
    Empty { path: PathBuf },
    #[error("the credential holds characters not allowed in an HTTP header")]
    NotAHeader,
}

async fn read_secret_async(path: &Path) -> Result<String, CredentialError> {
    match tokio::fs::read_to_string(path).await {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        Ok(_) => Err(CredentialError::Empty { path: path.into() }),
        Err(source) => Err(CredentialError::Read {
            path: path.into(),
            source,
        }),
    }
}

struct AttemptError {
    message: String,
    retryable: bool,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// Sorts a failed request into an outcome, a message for logs and whether trying again can help.
fn classify(error: prometheus_http_query::Error, timeout: Duration) -> (Outcome, AttemptError) {
    use prometheus_http_query::error::PrometheusErrorType as T;
    let (outcome, message, retryable) = match &error {
        prometheus_http_query::Error::Prometheus(e) => {
            let retryable = matches!(e.error_type(), T::Timeout | T::Unavailable | T::Internal | T::Canceled);
            (
                Outcome::query_error,
                format!("prometheus answered {}: {}", e.error_type(), e.message()),
                retryable,
            )
        }
        prometheus_http_query::Error::Client(e) => match e.inner() {
            Some(source) if source.is_timeout() => (
                Outcome::timeout,
                format!("no answer within the {timeout:?} timeout"),
                true,
            ),
            Some(source) if source.status().is_some() => {
                let status = source.status().unwrap_or_default();
                let retryable = status.is_server_error() || status.as_u16() == 429;
                (Outcome::http_error, format!("HTTP {status}: {e}"), retryable)
            }
            Some(source) => (
                Outcome::unreachable,
                format!("{e}: {}", crate::error::chain(source)),
                true,
            ),
            None => (Outcome::unreachable, e.to_string(), true),
        },
        other => (Outcome::unreachable, other.to_string(), false),
    };
    let source = Some(Box::new(error) as Box<dyn std::error::Error + Send + Sync>);
    (
        outcome,
        AttemptError {
            message,
            retryable,
            source,
        },
    )
}

/// One workload's demand: a PromQL expression evaluated at a fixed step; implements [`History`].
#[derive(Clone)]
pub struct PromQuery {
    client: PrometheusClient,
    query: String,
    step: TimeDelta,
    combine: Combine,
}

impl PromQuery {
    /// A query at `step` (whole seconds, at least 1 s) that must return one series (see [`PromQuery::combine`]).
    pub fn new(client: &PrometheusClient, query: impl Into<String>, step: TimeDelta) -> Result<Self, PrometheusError> {
        let query = query.into();
        if query.trim().is_empty() {
            return Err(PrometheusError::Invalid {
                field: "query",
                problem: "the PromQL query is empty".into(),
            });
        }
        if step < TimeDelta::seconds(1) || step.subsec_nanos() != 0 {
            return Err(PrometheusError::Invalid {
                field: "step",
                problem: format!("{step} is not a whole number of seconds ≥ 1s; use e.g. 1m"),
            });
        }
        Ok(Self {
            client: client.clone(),
            query,
            step,
            combine: Combine::Error,
        })
    }

    /// How several returned series are reduced to one (default: they are an error).
    pub fn combine(mut self, combine: Combine) -> Self {
        self.combine = combine;
        self
    }

    /// The PromQL expression.
    pub fn query(&self) -> &str {
        &self.query
    }

    async fn fetch_range(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Series, HistoryError> {
        let step = self.step;
        let step_s = step.num_seconds();
        let first_slot = align_up(from, step);
        let last_eval = align_down(to, step);
        let mut matrix: Vec<Labelled> = Vec::new();
        // Evaluation times are the slot ends: first_slot + step ..= last_eval.
        let mut start = (first_slot + step).timestamp();
        let end = last_eval.timestamp();
        while start <= end {
            let chunk_end = (start + (MAX_POINTS_PER_REQUEST - 1) * step_s).min(end);
            let data = self.client.query_range(&self.query, start, chunk_end, step_s).await?;
            match data {
                Data::Matrix(series) => matrix.extend(series.into_iter().map(|s| {
                    let (labels, samples) = s.into_inner();
                    (
                        labels.into_iter().collect(),
                        samples.iter().map(|s| (s.timestamp(), s.value())).collect(),
                    )
                })),
                other => {
                    return Err(HistoryError::Unusable(format!(
                        "query `{}` answered a {} instead of a range of samples",
                        self.query,
                        match other {
                            Data::Vector(_) => "vector",
                            _ => "scalar",
                        }
                    )))
                }
            }
            start = chunk_end + step_s;
        }
        let assembled = assemble(&self.query, first_slot, step, matrix, self.combine)?;
        if assembled.dropped > 0 {
            self.client
                .inner
                .metrics
                .dropped
                .get_or_create(&DroppedLabels {
                    reason: DropReason::non_finite,
                })
                .inc_by(assembled.dropped as u64);
            warn!(query = %self.query, dropped = assembled.dropped, "dropped NaN/infinite samples from prometheus");
        }
        debug!(query = %self.query, %from, %to, slots = assembled.series.len(), "fetched from prometheus");
        Ok(assembled.series)
    }
}

impl fmt::Debug for PromQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PromQuery")
            .field("url", &self.client.url())
            .field("query", &self.query)
            .field("step", &self.step)
            .field("combine", &self.combine)
            .finish()
    }
}

impl History for PromQuery {
    fn step(&self) -> TimeDelta {
        self.step
    }

    fn fetch(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Fetch<'_> {
        Box::pin(self.fetch_range(from, to))
    }

    fn describe(&self) -> String {
        format!("promql {} (step {}s)", self.query, self.step.num_seconds())
    }
}

/// Aligns `t` up to a multiple of `step` since the Unix epoch.
fn align_up(t: DateTime<Utc>, step: TimeDelta) -> DateTime<Utc> {
    let down = align_down(t, step);
    if down == t {
        t
    } else {
        down + step
    }
}

/// One returned series: sorted labels and `(evaluation time in Unix seconds, value)` samples.
type Labelled = (BTreeMap<String, String>, Vec<(f64, f64)>);

/// A series assembled from Prometheus samples and the number of non-finite samples dropped.
#[derive(Debug, PartialEq)]
struct Assembled {
    series: Series,
    dropped: usize,
}

/// Turns returned series (possibly from several requests) into one demand series starting at `first_slot`.
///
/// Samples are keyed by label set, so one series split over several requests stays one; non-finite values are
/// dropped before combining; a sample evaluated at `T` fills the slot ending at `T`; out-of-order and duplicate
/// samples are resolved by [`Series::from_points`] (the later one wins).
fn assemble(
    query: &str,
    first_slot: DateTime<Utc>,
    step: TimeDelta,
    matrix: Vec<Labelled>,
    combine: Combine,
) -> Result<Assembled, HistoryError> {
    let mut by_labels: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
    for (labels, samples) in matrix {
        by_labels.entry(labels).or_default().extend(samples);
    }
    if by_labels.len() > 1 && combine == Combine::Error {
        const SHOWN: usize = 5;
        let names: Vec<String> = by_labels.keys().take(SHOWN).map(format_labels).collect();
        let more = by_labels.len().saturating_sub(SHOWN);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        return Err(HistoryError::Unusable(format!(
            "query `{query}` returned {} series ({}{more}); it must return one: aggregate it, e.g. sum(...), \
             or set `combine: sum` or `combine: max`",
            by_labels.len(),
            names.join(", ")
        )));
    }
    let mut dropped = 0;
    let mut points: Vec<(DateTime<Utc>, f64)> = Vec::new();
    let mut combined: BTreeMap<i64, f64> = BTreeMap::new();
    for samples in by_labels.into_values() {
        for (t, v) in samples {
            if !v.is_finite() {
                dropped += 1;
                continue;
            }
            let ms = (t * 1000.0).round() as i64;
            match combine {
                Combine::Error => {
                    if let Some(end) = DateTime::from_timestamp_millis(ms) {
                        points.push((end - step, v));
                    }
                }
                Combine::Sum => *combined.entry(ms).or_insert(0.0) += v,
                Combine::Max => {
                    let slot = combined.entry(ms).or_insert(v);
                    *slot = slot.max(v);
                }
            }
        }
    }
    points.extend(
        combined
            .into_iter()
            .filter_map(|(ms, v)| DateTime::from_timestamp_millis(ms).map(|end| (end - step, v))),
    );
    let (series, ingest) = Series::from_points(first_slot, step, points);
    if ingest.out_of_range > 0 {
        debug!(
            query,
            out_of_range = ingest.out_of_range,
            "ignored samples before the requested range"
        );
    }
    Ok(Assembled { series, dropped })
}

/// `{a="1", b="2"}` as Prometheus prints a label set.
fn format_labels(labels: &BTreeMap<String, String>) -> String {
    let name = labels.get("__name__").map(String::as_str).unwrap_or("");
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{name}{{{}}}", rest.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::fixtures::t;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn secs(s: i64) -> f64 {
        t(s).timestamp() as f64
    }

    const STEP: TimeDelta = TimeDelta::seconds(60);

    #[test]
    fn samples_fill_the_slot_ending_at_their_timestamp() {
        // One series split over two requests, delivered out of order with a duplicate and a gap at slot 2.
        let matrix = vec![
            (labels(&[("job", "a")]), vec![(secs(240), 4.0), (secs(60), 1.0)]),
            (labels(&[("job", "a")]), vec![(secs(120), 2.0), (secs(60), 1.5)]),
        ];
        let a = assemble("q", t(0), STEP, matrix, Combine::Error).unwrap();
        assert_eq!(
            a.series,
            Series::from_values(t(0), STEP, vec![Some(1.5), Some(2.0), None, Some(4.0)])
        );
        assert_eq!(a.dropped, 0);
    }

    #[test]
    fn non_finite_samples_are_dropped_and_counted() {
        let matrix = vec![(
            labels(&[]),
            vec![(secs(60), f64::NAN), (secs(120), f64::INFINITY), (secs(180), 3.0)],
        )];
        let a = assemble("q", t(0), STEP, matrix, Combine::Error).unwrap();
        assert_eq!(a.series, Series::from_values(t(0), STEP, vec![None, None, Some(3.0)]));
        assert_eq!(a.dropped, 2);
    }

    #[test]
    fn several_series_are_an_error_naming_them_unless_combined() {
        let matrix = || {
            vec![
                (
                    labels(&[("__name__", "up"), ("pod", "a")]),
                    vec![(secs(60), 1.0), (secs(120), 5.0)],
                ),
                (
                    labels(&[("__name__", "up"), ("pod", "b")]),
                    vec![(secs(60), 3.0), (secs(180), f64::NAN)],
                ),
            ]
        };
        let err = assemble("up", t(0), STEP, matrix(), Combine::Error).unwrap_err();
        assert_eq!(
            err.to_string(),
            "history query returned unusable data: query `up` returned 2 series (up{pod=\"a\"}, up{pod=\"b\"}); \
             it must return one: aggregate it, e.g. sum(...), or set `combine: sum` or `combine: max`"
        );
        let sum = assemble("up", t(0), STEP, matrix(), Combine::Sum).unwrap();
        assert_eq!(sum.series.values().collect::<Vec<_>>(), [Some(4.0), Some(5.0)]);
        assert_eq!(sum.dropped, 1);
        let max = assemble("up", t(0), STEP, matrix(), Combine::Max).unwrap();
        assert_eq!(max.series.values().collect::<Vec<_>>(), [Some(3.0), Some(5.0)]);
    }

    #[test]
    fn no_series_is_an_empty_series() {
        let a = assemble("q", t(0), STEP, vec![], Combine::Error).unwrap();
        assert!(a.series.is_empty());
        assert_eq!(a.series.start(), t(0));
    }

    #[test]
    fn settings_default_every_field_but_url() {
        let s: PrometheusSettings = serde_saphyr::from_str("url: http://prom:9090").unwrap();
        assert_eq!(s, PrometheusSettings::new("http://prom:9090"));
        let s: PrometheusSettings = serde_saphyr::from_str(
            "url: https://prom\nbearerTokenFile: /var/run/token\ntimeout: 750ms\nretries: 0\nretryBackoff: 1s\n\
             maxRetryBackoff: 1m\nmaxConcurrentQueries: 2\ncaFile: ca.pem",
        )
        .unwrap();
        assert_eq!(s.timeout, Duration::from_millis(750));
        assert_eq!(s.retries, 0);
        assert_eq!(s.retry_backoff, Duration::from_secs(1));
        assert_eq!(s.max_retry_backoff, Duration::from_secs(60));
        assert_eq!(s.max_concurrent_queries, 2);
        assert_eq!(s.bearer_token_file, Some(PathBuf::from("/var/run/token")));
    }

    #[test]
    fn settings_reject_unknown_fields_and_bad_durations() {
        let err = serde_saphyr::from_str::<PrometheusSettings>("url: http://p\ntimeot: 5s").unwrap_err();
        assert!(err.to_string().contains("unknown field `timeot`"), "{err}");
        let err = serde_saphyr::from_str::<PrometheusSettings>("url: http://p\ntimeout: 5 sec").unwrap_err();
        assert!(err.to_string().contains("500ms"), "{err}");
    }

    #[test]
    fn secrets_are_never_printed() {
        let mut s = PrometheusSettings::new("http://p");
        s.bearer_token = Some(Secret::new("hunter2"));
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&s).unwrap().contains("hunter2"));
    }

    #[test]
    fn bad_settings_name_the_field() {
        crate::app::init();
        let check = |s: PrometheusSettings, expected: &str| {
            let err = PrometheusClient::new(&s)
                .err()
                .expect("settings must be rejected")
                .to_string();
            assert!(err.starts_with(expected), "{err}");
        };
        check(
            PrometheusSettings::new("prom:9090"),
            "prometheus.url: `prom:9090` must start with http://",
        );
        let mut s = PrometheusSettings::new("http://p");
        s.bearer_token = Some(Secret::new("x"));
        s.basic_auth = Some(BasicAuth {
            username: "u".into(),
            password: Some(Secret::new("p")),
            password_file: None,
        });
        check(
            s,
            "prometheus.bearerToken: bearerToken, bearerTokenFile and basicAuth are exclusive",
        );
        let mut s = PrometheusSettings::new("http://p");
        s.bearer_token_file = Some("/nonexistent/token".into());
        check(s, "prometheus.bearerTokenFile: cannot read /nonexistent/token");
        let mut s = PrometheusSettings::new("http://p");
        s.max_concurrent_queries = 0;
        check(s, "prometheus.maxConcurrentQueries: 0 must be from 1 to 1024");
    }

    #[tokio::test]
    async fn auth_headers_carry_the_credentials() {
        crate::app::init();
        let mut s = PrometheusSettings::new("http://p");
        s.basic_auth = Some(BasicAuth {
            username: "alice".into(),
            password: Some(Secret::new("s3cret")),
            password_file: None,
        });
        let header = PrometheusClient::new(&s).unwrap().auth_header().await.unwrap().unwrap();
        assert_eq!(header, "Basic YWxpY2U6czNjcmV0");
        assert!(header.is_sensitive());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let mut s = PrometheusSettings::new("http://p");
        s.bearer_token_file = Some(path.clone());
        let client = PrometheusClient::new(&s).unwrap();
        assert_eq!(client.auth_header().await.unwrap().unwrap(), "Bearer first");
        std::fs::write(&path, "rotated").unwrap();
        assert_eq!(client.auth_header().await.unwrap().unwrap(), "Bearer rotated");
    }

    #[test]
    fn steps_must_be_whole_seconds() {
        crate::app::init();
        let client = PrometheusClient::new(&PrometheusSettings::new("http://p")).unwrap();
        assert!(PromQuery::new(&client, "up", TimeDelta::milliseconds(1500)).is_err());
        assert!(PromQuery::new(&client, " ", TimeDelta::seconds(60)).is_err());
        let q = PromQuery::new(&client, "sum(rate(x[1m]))", TimeDelta::seconds(60)).unwrap();
        assert_eq!(q.describe(), "promql sum(rate(x[1m])) (step 60s)");
    }
}
