//! The published plans as a KEDA external scaler: `externalscaler.ExternalScaler` over gRPC
//! (`proto/externalscaler.proto`), on its own listener.
//!
//! A ScaledObject trigger of type `external` (KEDA polls) or `external-push` (KEDA also holds a [`StreamIsActive`]
//! stream open) names the workload in its metadata:
//!
//! | `scalerMetadata` key | meaning |
//! |---|---|
//! | [`METADATA_WORKLOAD`] (`workload`) | the prescale workload's name, required; its namespace is the ScaledObject's |
//! | `scalerAddress`, `enableTLS`, `unsafeSsl`, ... | KEDA's own keys, ignored here |
//!
//! | rpc | answer |
//! |---|---|
//! | `GetMetricSpec` | one metric [`METRIC_REPLICAS`] with `targetSizeFloat: 1` (and `targetSize: 1`): the HPA lands on the plan |
//! | `GetMetrics` | the planned replica count exactly as the external metrics API serves `prescale_replicas` ([`ApiState::serve`]): `metricValueFloat`, and its ceiling (the replica count) in `metricValue` for KEDA releases that read only that |
//! | `IsActive` | `true` when that value is above zero: a plan of zero replicas lets KEDA scale to zero (`minReplicaCount: 0`) |
//! | `StreamIsActive` | the `IsActive` answer now, then each change (the store is read every [`STREAM_POLL`]), until the client goes away or the server shuts down |
//! | `StreamMetricSpec` | `UNIMPLEMENTED` (KEDA then uses `GetMetricSpec`) |
//!
//! Errors are gRPC statuses whose message names the workload: no `workload` key is `INVALID_ARGUMENT`, a workload
//! prescale does not plan (or a metric it does not serve) is `NOT_FOUND`, and a workload whose plan is missing (not
//! yet published) or stale (older than `maxForecastAge`) is `UNAVAILABLE` — never a value: KEDA counts the error
//! towards the ScaledObject's `fallback`, and `behavior: currentReplicasIfHigher` keeps a prescale outage from ever
//! scaling a workload down. A value that is not a finite number is `INTERNAL`. `IsActive` refuses the same way, so
//! KEDA never scales to zero on a plan it cannot trust.
//!
//! With [`Transport::Tls`] the listener reuses [`tls::serve`] (certificate reload included); when a client CA is
//! given every call must come with a client certificate it verifies, else `UNAUTHENTICATED`.
//!
//! [`StreamIsActive`]: proto::external_scaler_server::ExternalScaler::stream_is_active

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use futures::Stream;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::{Code, Status};
use tracing::{debug, info, warn};

use crate::apiserver::api::{ApiError, ApiState, METRIC_REPLICAS};
use crate::apiserver::http;
use crate::apiserver::tls::{self, CaPool, CaPools, ClientCas, PeerIdentity, TlsSettings};
use crate::sre::telemetry::{GrpcLabels, GrpcMetrics, OpenStream};
use crate::store::WorkloadId;

use proto::external_scaler_server::{ExternalScaler, ExternalScalerServer};
use proto::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec, MetricValue,
    ScaledObjectRef,
};

/// The messages and server generated from `proto/externalscaler.proto` (KEDA's contract, package `externalscaler`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("externalscaler");
}

/// The `scalerMetadata` key naming the workload.
pub const METADATA_WORKLOAD: &str = "workload";
/// The gRPC service's full name.
pub const SERVICE: &str = "externalscaler.ExternalScaler";
/// The service's RPCs: the only values of the `method` metric label besides `other`.
pub const METHODS: [&str; 5] = [
    "IsActive",
    "StreamIsActive",
    "GetMetricSpec",
    "GetMetrics",
    "StreamMetricSpec",
];
/// How often an open `StreamIsActive` stream re-reads the plan. Plans change once per pipeline interval (a minute
/// by default), and a read is a map lookup, so a second costs nothing and pushes a change promptly.
pub const STREAM_POLL: Duration = Duration::from_secs(1);

/// Why a call was refused; each maps to one gRPC status.
#[derive(Debug, Error)]
pub enum KedaError {
    /// The trigger's metadata has no `workload` key.
    #[error(
        "scalerMetadata has no {METADATA_WORKLOAD:?} key: set the trigger's metadata.{METADATA_WORKLOAD} to the name \
         of the prescale workload (its namespace is the ScaledObject's)"
    )]
    NoWorkloadKey,
    /// No configured workload has this namespace and name.
    #[error("prescale plans no workload {0} (check the trigger's metadata.{METADATA_WORKLOAD} and the namespace)")]
    UnknownWorkload(WorkloadId),
    /// The metric asked for is not the one served.
    #[error("unknown metric {0:?}; prescale serves {METRIC_REPLICAS}")]
    UnknownMetric(String),
    /// The plan may not be served (none yet, forecast or data too old, or not a finite value).
    #[error("{0}")]
    Refused(#[source] Box<ApiError>),
}

impl KedaError {
    /// The gRPC code of this refusal.
    pub fn code(&self) -> Code {
        match self {
            KedaError::NoWorkloadKey => Code::InvalidArgument,
            KedaError::UnknownWorkload(_) | KedaError::UnknownMetric(_) => Code::NotFound,
            KedaError::Refused(refused) => match **refused {
                ApiError::Refused { .. } => Code::Unavailable,
                _ => Code::Internal,
            },
        }
    }
}

impl From<KedaError> for Status {
    fn from(error: KedaError) -> Self {
        let message = match &error {
            KedaError::Refused(refused) => match &**refused {
                ApiError::Refused { workload, refusal } => {
                    warn!(%workload, reason = refusal.reason(), "refusing to serve a plan to KEDA");
                    format!(
                        "workload {workload} cannot be served: {refusal}; KEDA's fallback applies until prescale \
                         has a fresh plan (see `prescale explain {name} -n {namespace}`)",
                        name = workload.name,
                        namespace = workload.namespace
                    )
                }
                _ => {
                    warn!(error = %refused, "refusing to serve a value to KEDA");
                    error.to_string()
                }
            },
            _ => {
                debug!(%error, "KEDA call refused");
                error.to_string()
            }
        };
        Status::new(error.code(), message)
    }
}

/// What the scaler reads.
#[derive(Clone, Debug)]
pub struct KedaState {
    /// The plans, their age limit and clock: the external metrics API's own state, so both serve the same values.
    pub api: ApiState,
    /// Becomes `true` at shutdown; open streams end then, so the server can drain.
    pub stopping: watch::Receiver<bool>,
}

impl KedaState {
    /// The workload a ScaledObjectRef names.
    fn workload(&self, reference: &ScaledObjectRef) -> Result<WorkloadId, KedaError> {
        let name = reference
            .scaler_metadata
            .get(METADATA_WORKLOAD)
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .ok_or(KedaError::NoWorkloadKey)?;
        let id = WorkloadId {
            namespace: reference.namespace.clone(),
            name: name.to_owned(),
        };
        // The same workloads the external metrics API knows: configured, reporting or planned.
        if self.api.store.knows(&id) {
            Ok(id)
        } else {
            Err(KedaError::UnknownWorkload(id))
        }
    }

    /// The planned replicas of `id`, as the external metrics API serves `prescale_replicas` now.
    fn replicas(&self, id: &WorkloadId) -> Result<f64, KedaError> {
        let (_, value, _) = self
            .api
            .serve(id, METRIC_REPLICAS, self.api.clock.now())
            .map_err(KedaError::Refused)?;
        Ok(value)
    }

    fn is_active(&self, id: &WorkloadId) -> Result<bool, KedaError> {
        Ok(self.replicas(id)? > 0.0)
    }
}

/// True for `prescale_replicas`, bare or with the `s<N>-` prefix KEDA puts on the HPA's metric name (KEDA strips it
/// before calling, but a client that does not is not wrong), and for an empty name (the only metric).
fn is_replicas_metric(name: &str) -> bool {
    let bare = name
        .strip_prefix('s')
        .and_then(|rest| rest.split_once('-'))
        .filter(|(index, _)| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()))
        .map_or(name, |(_, bare)| bare);
    bare.is_empty() || bare == METRIC_REPLICAS
}

/// The `externalscaler.ExternalScaler` implementation.
#[derive(Clone, Debug)]
struct Scaler(KedaState);

/// A `StreamIsActive` stream.
type ActiveStream = Pin<Box<dyn Stream<Item = Result<IsActiveResponse, Status>> + Send>>;
/// A `StreamMetricSpec` stream (never produced).
type SpecStream = Pin<Box<dyn Stream<Item = Result<GetMetricSpecResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalScaler for Scaler {
    async fn is_active(
        &self,
        request: tonic::Request<ScaledObjectRef>,
    ) -> Result<tonic::Response<IsActiveResponse>, Status> {
        let id = self.0.workload(request.get_ref())?;
        let result = self.0.is_active(&id)?;
        Ok(tonic::Response::new(IsActiveResponse { result }))
    }

    type StreamIsActiveStream = ActiveStream;

    async fn stream_is_active(
        &self,
        request: tonic::Request<ScaledObjectRef>,
    ) -> Result<tonic::Response<ActiveStream>, Status> {
        let id = self.0.workload(request.get_ref())?;
        debug!(workload = %id, "StreamIsActive opened");
        Ok(tonic::Response::new(Box::pin(watch_active(self.0.clone(), id))))
    }

    async fn get_metric_spec(
        &self,
        request: tonic::Request<ScaledObjectRef>,
    ) -> Result<tonic::Response<GetMetricSpecResponse>, Status> {
        // A missing or stale plan does not change the target: only the workload must exist.
        self.0.workload(request.get_ref())?;
        #[allow(deprecated)]
        let spec = MetricSpec {
            metric_name: METRIC_REPLICAS.to_owned(),
            target_size: 1,
            target_size_float: 1.0,
        };
        Ok(tonic::Response::new(GetMetricSpecResponse {
            metric_specs: vec![spec],
        }))
    }

    async fn get_metrics(
        &self,
        request: tonic::Request<GetMetricsRequest>,
    ) -> Result<tonic::Response<GetMetricsResponse>, Status> {
        let GetMetricsRequest {
            scaled_object_ref,
            metric_name,
        } = request.into_inner();
        let id = self.0.workload(&scaled_object_ref.unwrap_or_default())?;
        if !is_replicas_metric(&metric_name) {
            return Err(KedaError::UnknownMetric(metric_name).into());
        }
        let value = self.0.replicas(&id)?;
        // `served` is finite here ([`ApiState::serve`] refuses anything else) and at most u32::MAX.
        #[allow(deprecated, clippy::cast_possible_truncation)]
        let metric = MetricValue {
            metric_name: if metric_name.is_empty() {
                METRIC_REPLICAS.to_owned()
            } else {
                metric_name
            },
            metric_value: value.ceil() as i64,
            metric_value_float: value,
        };
        Ok(tonic::Response::new(GetMetricsResponse {
            metric_values: vec![metric],
        }))
    }

    type StreamMetricSpecStream = SpecStream;

    async fn stream_metric_spec(
        &self,
        _request: tonic::Request<ScaledObjectRef>,
    ) -> Result<tonic::Response<SpecStream>, Status> {
        Err(Status::unimplemented(
            "StreamMetricSpec is not served: the metric spec never changes; use GetMetricSpec",
        ))
    }
}

/// The `IsActive` answer for `id` now and at each change, until the stream is dropped (the client went away), the
/// server is stopping, or the answer becomes an error (sent, then the stream ends; KEDA reconnects with backoff and
/// its polling carries on meanwhile). Spawns nothing: dropping the stream ends it.
fn watch_active(state: KedaState, id: WorkloadId) -> impl Stream<Item = Result<IsActiveResponse, Status>> + Send {
    struct Watch {
        state: KedaState,
        id: WorkloadId,
        last: Option<bool>,
        ticker: tokio::time::Interval,
        done: bool,
    }
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + STREAM_POLL, STREAM_POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watch = Watch {
        state,
        id,
        last: None,
        ticker,
        done: false,
    };
    futures::stream::unfold(watch, |mut w| async move {
        if w.done {
            return None;
        }
        loop {
            if w.last.is_some() {
                let mut stopping = w.state.stopping.clone();
                let stopped = async move {
                    let _ = stopping.wait_for(|s| *s).await;
                };
                tokio::select! {
                    _ = w.ticker.tick() => {}
                    () = stopped => return None,
                }
            }
            match w.state.is_active(&w.id) {
                Ok(active) if w.last == Some(active) => {}
                Ok(active) => {
                    w.last = Some(active);
                    return Some((Ok(IsActiveResponse { result: active }), w));
                }
                Err(error) => {
                    w.done = true;
                    return Some((Err(error.into()), w));
                }
            }
        }
    })
}

/// The scaler's router: the gRPC service, call metrics around everything (refusals included), and, when
/// `require_client_ca` is set, a check that the TLS layer verified the caller's certificate against it.
pub fn router(state: KedaState, metrics: GrpcMetrics, require_client_ca: bool) -> Router {
    let service = ExternalScalerServer::new(Scaler(state));
    let mut router = tonic::service::Routes::new(service).prepare().into_axum_router();
    if require_client_ca {
        router = router.layer(axum::middleware::from_fn(require_client_certificate));
    }
    router.layer(axum::middleware::from_fn_with_state(metrics, track))
}

/// Refuses calls whose connection did not present a certificate verified by the client CA.
async fn require_client_certificate(request: Request, next: Next) -> Response {
    let verified = request
        .extensions()
        .get::<PeerIdentity>()
        .is_some_and(|peer| peer.client_ca_verified);
    if verified {
        return next.run(request).await;
    }
    debug!("KEDA call without a verified client certificate refused");
    Status::unauthenticated("a client certificate signed by the CA of --keda-client-ca-file is required")
        .into_http::<axum::body::Body>()
}

/// The `method` label of a call: an RPC of [`SERVICE`], else `other` (the path comes from the caller).
pub fn method_label(path: &str) -> &'static str {
    path.strip_prefix('/')
        .and_then(|p| p.strip_prefix(SERVICE))
        .and_then(|p| p.strip_prefix('/'))
        .and_then(|m| METHODS.iter().find(|known| **known == m))
        .copied()
        .unwrap_or("other")
}

/// The name of a gRPC code, as Go's `codes.Code.String()` writes it (and grpc-prometheus labels it).
pub fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

fn grpc_status(headers: &axum::http::HeaderMap) -> Option<Code> {
    headers.get("grpc-status").map(|v| Code::from_bytes(v.as_bytes()))
}

/// Counts each call once, with the code it ended with: from the headers of a trailers-only answer (every refusal),
/// else from the trailers at the end of the body; a body dropped before its trailers (the client went away
/// mid-stream) counts as `Canceled`.
async fn track(State(metrics): State<GrpcMetrics>, request: Request, next: Next) -> Response {
    let method = method_label(request.uri().path());
    let response = next.run(request).await;
    if let Some(code) = grpc_status(response.headers()) {
        metrics.handled(GrpcLabels {
            method,
            code: code_label(code),
        });
        return response;
    }
    let open = (method == "StreamIsActive").then(|| metrics.stream_opened());
    response.map(|body| {
        axum::body::Body::new(Counted {
            inner: body,
            metrics: Some(metrics),
            method,
            _open: open,
        })
    })
}

/// A response body that reports the call's code when its trailers pass, or when it is dropped without them.
struct Counted {
    inner: axum::body::Body,
    /// `None` once counted.
    metrics: Option<GrpcMetrics>,
    method: &'static str,
    _open: Option<OpenStream>,
}

impl Counted {
    fn count(&mut self, code: Code) {
        if let Some(metrics) = self.metrics.take() {
            metrics.handled(GrpcLabels {
                method: self.method,
                code: code_label(code),
            });
        }
    }
}

impl http_body::Body for Counted {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    self.count(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.count(Code::Internal),
            Poll::Ready(None) => self.count(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.count(Code::Cancelled);
    }
}

/// How the listener is secured.
#[derive(Debug, Clone)]
pub enum Transport {
    /// Plain gRPC (h2c): the demo on loopback only.
    Plain,
    /// TLS through [`tls::serve`]; with `client_ca_file`, every call needs a client certificate it verifies.
    Tls {
        /// Serving certificate, reload interval and the client CA handle.
        settings: TlsSettings,
        /// The client CA bundle, re-read every reload interval (rotation needs no restart).
        client_ca_file: Option<PathBuf>,
    },
}

/// Flags of the KEDA listener's TLS, meant to be flattened into the `serve` command.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KedaTlsArgs {
    /// PEM certificate chain of the KEDA gRPC listener (default: the API's --tls-cert-file). Re-read when it changes.
    #[arg(long, env = "PRESCALE_KEDA_TLS_CERT_FILE", requires_all = ["keda_tls_key_file", "keda_addr"])]
    pub keda_tls_cert_file: Option<PathBuf>,
    /// PEM private key for --keda-tls-cert-file.
    #[arg(long, env = "PRESCALE_KEDA_TLS_KEY_FILE", requires = "keda_tls_cert_file")]
    pub keda_tls_key_file: Option<PathBuf>,
    /// PEM CA bundle: every call to the KEDA listener must come with a client certificate it verifies (mutual TLS,
    /// KEDA's `tlsClientCert`/`tlsClientKey`). Re-read when it changes. Without it, any caller that can reach the
    /// port may read replica targets: restrict it with the NetworkPolicy.
    #[arg(long, env = "PRESCALE_KEDA_CLIENT_CA_FILE", requires = "keda_addr")]
    pub keda_client_ca_file: Option<PathBuf>,
}

impl KedaTlsArgs {
    /// The listener's TLS: its own certificate files, else the API's (`api_tls`), else a self-signed certificate
    /// for the API's self-signed names; the client CA, when given, is loaded now so that a bad file stops startup.
    pub fn into_transport(self, api_tls: &tls::TlsArgs) -> Result<Transport, tls::TlsError> {
        let Self {
            keda_tls_cert_file,
            keda_tls_key_file,
            keda_client_ca_file,
        } = self;
        let mut settings = api_tls.clone();
        if let (Some(cert), Some(key)) = (keda_tls_cert_file, keda_tls_key_file) {
            settings.tls_cert_file = Some(cert);
            settings.tls_key_file = Some(key);
        }
        if let (Some(cert), Some(key)) = (&settings.tls_cert_file, &settings.tls_key_file) {
            tls::load_certified_key(cert, key)?;
        }
        let client_ca = keda_client_ca_file.as_deref().map(CaPool::from_file).transpose()?;
        let client_cas = ClientCas::new(CaPools {
            client_ca,
            requestheader_ca: None,
        });
        Ok(Transport::Tls {
            settings: settings.into_settings(client_cas),
            client_ca_file: keda_client_ca_file,
        })
    }
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    transport: Transport,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tls::TlsError> {
    info!(addr = ?listener.local_addr().ok(), "KEDA external scaler listening");
    match transport {
        Transport::Plain => http::serve_plain(listener, router, http::HttpSettings::default(), shutdown)
            .await
            .map_err(tls::TlsError::Accept),
        Transport::Tls {
            settings,
            client_ca_file,
        } => {
            let reload = client_ca_file.map(|path| {
                tokio::spawn(reload_client_ca(
                    path,
                    settings.client_cas.clone(),
                    settings.reload_interval,
                ))
            });
            let result = tls::serve(listener, router, settings, shutdown).await;
            if let Some(reload) = reload {
                reload.abort();
            }
            result
        }
    }
}

/// Re-reads the client CA bundle every `every`; a bundle that no longer loads is logged and the previous one kept.
async fn reload_client_ca(path: PathBuf, client_cas: ClientCas, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut last = std::fs::read(&path).ok();
    loop {
        ticker.tick().await;
        let now = std::fs::read(&path).ok();
        if now.is_none() || now == last {
            continue;
        }
        last = now;
        match CaPool::from_file(&path) {
            Ok(pool) => {
                if client_cas.set(CaPools {
                    client_ca: Some(pool),
                    requestheader_ca: None,
                }) {
                    info!(path = %path.display(), "KEDA client CA reloaded");
                }
            }
            Err(error) => warn!(%error, "new KEDA client CA rejected; keeping the current one"),
        }
    }
}

/// A ScaledObject for `workload` with `external` and `external-push` triggers pointing at `address`, and the
/// fallback that keeps a prescale outage from scaling it down: printed by `prescale demo`, kept in step with
/// docs/deploy.md.
pub fn scaled_object(address: &str, workload: &WorkloadId, tls: bool) -> String {
    let tls = if tls { "\n      enableTLS: \"true\"" } else { "" };
    format!(
        "apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {name}
  namespace: {namespace}
spec:
  scaleTargetRef:
    name: {name}
  minReplicaCount: 1
  fallback:
    failureThreshold: 3
    replicas: 1
    behavior: currentReplicasIfHigher
  triggers:
  - type: external-push
    metadata:
      scalerAddress: {address}
      workload: {name}{tls}
",
        name = workload.name,
        namespace = workload.namespace,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replicas_metric_is_accepted_with_and_without_keda_prefix() {
        for name in ["prescale_replicas", "s0-prescale_replicas", "s12-prescale_replicas", ""] {
            assert!(is_replicas_metric(name), "{name:?}");
        }
        for name in [
            "prescale_demand_planned",
            "s-prescale_replicas",
            "sx-prescale_replicas",
            "x0-prescale_replicas",
            "s0-other",
        ] {
            assert!(!is_replicas_metric(name), "{name:?}");
        }
    }

    #[test]
    fn method_labels_are_bounded() {
        assert_eq!(method_label("/externalscaler.ExternalScaler/GetMetrics"), "GetMetrics");
        assert_eq!(
            method_label("/externalscaler.ExternalScaler/StreamMetricSpec"),
            "StreamMetricSpec"
        );
        assert_eq!(method_label("/externalscaler.ExternalScaler/Nope"), "other");
        assert_eq!(method_label("/other.Service/GetMetrics"), "other");
        assert_eq!(method_label("/externalscaler.ExternalScalerX/GetMetrics"), "other");
    }
}
