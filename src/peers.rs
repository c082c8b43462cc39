//! Sharded replicas share their plans, so that every replica answers for every workload with the same value.
//!
//! With `--shard-members`, each workload is planned by one replica, its owner ([`crate::k8s::members`]: Lease
//! membership and rendezvous hashing). Every replica still answers the HPAs for every workload: each pulls the
//! plans its peers own from their admin listener ([`PLANS_PATH`]) twice a cycle and serves them as its own
//! ([`PlanStore::record_remote`]), so Prometheus is queried once per workload whatever the number of replicas, and
//! two replicas serve a workload the same value but for the cycle between a plan and its pull.
//!
//! - **What travels.** Per workload: the plan as served, when it was published, the end of the demand it saw and
//!   its `maxDataAge`, and a summary of the model (method, periods, when fitted): no history, forecast or
//!   explanation. The owner's SRE page and explanation have the detail; the others name the owner.
//! - **Who is believed.** A plan is taken only from the replica that owns the workload in this replica's view of the
//!   members, only for a workload this replica is configured for, and never over a newer plan of the workload.
//! - **Integrity.** The plans decide replica counts, so a replica checks that each answer comes from a replica of
//!   the same deployment: the answer carries an HMAC-SHA256 of its body ([`SIGNATURE_HEADER`]) keyed from the
//!   serving certificate's private key, which every replica mounts from the same Secret. An answer without a valid
//!   signature is refused (counted, logged). Only `--insecure-no-auth` runs unsigned.
//! - **Size.** A replica asks for the answer gzipped (`Accept-Encoding: gzip`), and the owner compresses it: plans
//!   of many workloads repeat the same field names and similar numbers (4.7× smaller for six plans in
//!   tests/peers.rs; the more plans, the more repeats). The signature is the uncompressed body's, checked after
//!   decompression, which stops at [`MAX_ANSWER_BYTES`].
//! - **Failures.** A peer that does not answer leaves its plans as last pulled: they are served until
//!   `maxForecastAge`, then refused like any stale plan. A peer that dies drops out of the members after its Lease
//!   duration, and its workloads' new owners take over from the last plan pulled and the saved states.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::clock::Clock;
use crate::control::engine::Serving;
use crate::control::planner::ReplicaPlan;
use crate::forecast::{Forecast, Method};
use crate::k8s::members::{Member, Membership, View};
use crate::store::{PlanStore, Problem, Remote, Snapshot, WorkloadId};

/// Where a replica's admin listener answers with the plans it owns.
pub const PLANS_PATH: &str = "/peers/v1/plans";

/// The header carrying the answer's HMAC-SHA256, lowercase hex.
pub const SIGNATURE_HEADER: &str = "x-prescale-signature";

/// The largest answer a replica reads (decompressed): far beyond the plans of 100,000 workloads (~35 MB).
pub const MAX_ANSWER_BYTES: u64 = 512 << 20;

/// The plans one replica owns, as it answers [`PLANS_PATH`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerPlans {
    /// The answering replica's identity.
    pub member: String,
    /// Its plans, by namespace then name.
    pub plans: Vec<PeerPlan>,
    /// The workloads it owns that have no plan, and why (readiness and the API's refusals need to know).
    #[serde(default)]
    pub unplanned: Vec<Unplanned>,
}

/// A workload its owner runs without a plan so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unplanned {
    /// The workload's namespace.
    pub namespace: String,
    /// The workload's name.
    pub name: String,
    /// What its cycles ran into (`None`: its first cycle is under way).
    pub problem: Option<Problem>,
}

/// One workload's plan, as its owner published it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerPlan {
    /// The workload's namespace.
    pub namespace: String,
    /// The workload's name.
    pub name: String,
    /// When the owner published the plan.
    pub published_at: DateTime<Utc>,
    /// The end of the newest demand sample behind it.
    pub data_until: Option<DateTime<Utc>>,
    /// The workload's `maxDataAge`, in seconds.
    pub max_data_age_seconds: Option<i64>,
    /// What the served target follows on the owner.
    pub serving: Serving,
    /// The model behind the plan.
    pub model: ModelInfo,
    /// The plan as served.
    pub plan: ReplicaPlan,
}

/// What a peer's plan says of its forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelInfo {
    /// The model family.
    pub method: Method,
    /// Why a fallback is in use, if one is.
    pub fallback: Option<String>,
    /// Seasonal periods, in seconds.
    pub periods_seconds: Vec<i64>,
    /// When the model was fitted.
    pub fitted_at: DateTime<Utc>,
    /// The slot length, in seconds.
    pub step_seconds: i64,
}

impl PeerPlan {
    fn of(id: &WorkloadId, snapshot: &Snapshot, serving: Serving, max_data_age: Option<TimeDelta>) -> Self {
        let f = &snapshot.forecast;
        PeerPlan {
            namespace: id.namespace.clone(),
            name: id.name.clone(),
            published_at: snapshot.published_at,
            data_until: snapshot.data_until,
            max_data_age_seconds: max_data_age.map(|d| d.num_seconds()),
            serving,
            model: ModelInfo {
                method: f.method,
                fallback: f.fallback.clone(),
                periods_seconds: f.periods.iter().map(|p| p.num_seconds()).collect(),
                fitted_at: f.fitted_at,
                step_seconds: f.step.num_seconds(),
            },
            plan: snapshot.plan.clone(),
        }
    }

    /// The workload.
    pub fn id(&self) -> WorkloadId {
        WorkloadId {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// The snapshot this replica serves for it: the plan, with a forecast that has the model summary and no values.
    fn snapshot(&self) -> Snapshot {
        let m = &self.model;
        let step = TimeDelta::seconds(m.step_seconds.max(1));
        let mut forecast = Forecast::from_median(self.published_at, step, Vec::new(), m.fitted_at);
        forecast.method = m.method;
        forecast.fallback = m.fallback.clone();
        forecast.periods = m.periods_seconds.iter().map(|s| TimeDelta::seconds(*s)).collect();
        Snapshot {
            id: self.id(),
            published_at: self.published_at,
            data_until: self.data_until,
            forecast: Arc::new(forecast),
            plan: self.plan.clone(),
        }
    }
}

/// The plans this replica owns in `view`: those it planned itself, newest as published.
pub fn owned_plans(store: &PlanStore, view: &View) -> PeerPlans {
    let mut plans = Vec::new();
    let mut unplanned = Vec::new();
    for (id, entry) in store.entries() {
        if !view.owns(&id) {
            continue;
        }
        match (&entry.snapshot, &entry.owner) {
            (Some(snapshot), None) => {
                let serving = entry.insight.as_ref().map_or(Serving::Forecast, |i| i.serving);
                plans.push(PeerPlan::of(&id, snapshot, serving, entry.max_data_age));
            }
            // Taken over, not planned here yet: the last owner's plan is served until this replica's first.
            (Some(_), Some(_)) => {}
            (None, _) => unplanned.push(Unplanned {
                namespace: id.namespace.clone(),
                name: id.name.clone(),
                problem: entry.status.as_ref().and_then(|s| s.problem),
            }),
        }
    }
    PeerPlans {
        member: view.me.clone(),
        plans,
        unplanned,
    }
}

/// How peers' answers are signed and checked.
#[derive(Clone)]
pub enum Signing {
    /// HMAC-SHA256 with a key every replica derives from the same secret.
    Hmac(Arc<Keys>),
    /// Unsigned (`--insecure-no-auth` only).
    None,
}

/// The signing key, derived from a secret file and derived again when the file changes (cert-manager renews the
/// serving key): answers are signed with the newest key and checked against it and the one before, so replicas
/// that have seen the renewal and replicas that have not yet still understand each other.
pub struct Keys {
    path: Option<std::path::PathBuf>,
    state: std::sync::Mutex<KeyState>,
}

struct KeyState {
    modified: Option<std::time::SystemTime>,
    current: ring::hmac::Key,
    previous: Option<ring::hmac::Key>,
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signing::Hmac(_) => "Signing::Hmac",
            Signing::None => "Signing::None",
        })
    }
}

fn derive(secret: &[u8]) -> ring::hmac::Key {
    let digest = ring::digest::digest(&ring::digest::SHA256, &[b"prescale peer plans v1\0", secret].concat());
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, digest.as_ref())
}

impl Signing {
    /// A fixed key derived from `secret`.
    pub fn from_secret(secret: &[u8]) -> Self {
        Signing::Hmac(Arc::new(Keys {
            path: None,
            state: std::sync::Mutex::new(KeyState {
                modified: None,
                current: derive(secret),
                previous: None,
            }),
        }))
    }

    /// A key derived from the file at `path` (the serving certificate's private key, as every replica mounts it),
    /// derived again whenever the file changes.
    pub fn from_file(path: &std::path::Path) -> std::io::Result<Self> {
        let secret = std::fs::read(path)?;
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        Ok(Signing::Hmac(Arc::new(Keys {
            path: Some(path.to_owned()),
            state: std::sync::Mutex::new(KeyState {
                modified,
                current: derive(&secret),
                previous: None,
            }),
        })))
    }

    /// The newest key and the one before it.
    fn keys(keys: &Keys) -> (ring::hmac::Key, Option<ring::hmac::Key>) {
        let mut state = keys.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(path) = &keys.path {
            let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            if modified.is_some() && modified != state.modified {
                match std::fs::read(path) {
                    Ok(secret) => {
                        let next = derive(&secret);
                        let probe = |k: &ring::hmac::Key| ring::hmac::sign(k, b"").as_ref().to_vec();
                        if probe(&next) != probe(&state.current) {
                            state.previous = Some(std::mem::replace(&mut state.current, next));
                        }
                        state.modified = modified;
                    }
                    Err(error) => {
                        warn!(path = %path.display(), %error, "the key peers' plans are signed with cannot be read again; keeping the one read before")
                    }
                }
            }
        }
        (state.current.clone(), state.previous.clone())
    }

    /// The signature of `body`, or `None` unsigned.
    pub fn sign(&self, body: &[u8]) -> Option<String> {
        match self {
            Signing::Hmac(keys) => Some(hex(ring::hmac::sign(&Self::keys(keys).0, body).as_ref())),
            Signing::None => None,
        }
    }

    /// Whether `signature` is `body`'s under the newest key or the one before (any answer is, unsigned).
    pub fn verify(&self, body: &[u8], signature: Option<&str>) -> bool {
        match self {
            Signing::Hmac(keys) => {
                let Some(tag) = signature.and_then(unhex) else {
                    return false;
                };
                let (current, previous) = Self::keys(keys);
                ring::hmac::verify(&current, body, &tag).is_ok()
                    || previous.is_some_and(|p| ring::hmac::verify(&p, body, &tag).is_ok())
            }
            Signing::None => true,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What the plans route reads.
#[derive(Clone)]
pub struct PeerState {
    /// Published plans.
    pub store: Arc<PlanStore>,
    /// The members, as this replica sees them.
    pub membership: Membership,
    /// How answers are signed.
    pub signing: Signing,
}

/// The admin route answering [`PLANS_PATH`].
pub fn router(state: PeerState) -> axum::Router {
    axum::Router::new()
        .route(PLANS_PATH, axum::routing::get(plans))
        .with_state(state)
}

async fn plans(
    axum::extract::State(state): axum::extract::State<PeerState>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = match serde_json::to_vec(&owned_plans(&state.store, &state.membership.view())) {
        Ok(body) => body,
        Err(error) => {
            return (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("encoding the plans: {error}"),
            )
                .into_response()
        }
    };
    let signature = state.signing.sign(&body);
    let gzip = headers
        .get_all(axum::http::header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|c| c.trim().split(';').next() == Some("gzip")));
    let mut response = if gzip {
        match gzipped(&body) {
            Ok(compressed) => (
                [
                    (axum::http::header::CONTENT_TYPE, "application/json"),
                    (axum::http::header::CONTENT_ENCODING, "gzip"),
                ],
                compressed,
            )
                .into_response(),
            Err(_) => ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response(),
        }
    } else {
        ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
    };
    if let Some(value) = signature.and_then(|s| axum::http::HeaderValue::from_str(&s).ok()) {
        response.headers_mut().insert(SIGNATURE_HEADER, value);
    }
    response
}

/// `body` gzipped, at a fast level: the answer is made twice a cycle.
fn gzipped(body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::fast());
    encoder.write_all(body)?;
    encoder.finish()
}

/// `compressed` gunzipped, failing past `limit` bytes ([`MAX_ANSWER_BYTES`] for answers).
fn gunzipped(compressed: &[u8], limit: u64) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut body = Vec::with_capacity(compressed.len() * 6);
    flate2::read::GzDecoder::new(compressed)
        .take(limit + 1)
        .read_to_end(&mut body)?;
    anyhow::ensure!(
        body.len() as u64 <= limit,
        "the answer is over {limit} bytes decompressed"
    );
    Ok(body)
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Pulls the peers' plans into this replica's store ([`Puller::run`]).
#[derive(Clone)]
pub struct Puller {
    http: reqwest::Client,
    store: Arc<PlanStore>,
    membership: Membership,
    signing: Signing,
    clock: Clock,
    wanted: Arc<dyn Fn(&WorkloadId) -> bool + Send + Sync>,
    pulls: Family<ResultLabels, Counter>,
    taken: Counter,
    peers: Gauge,
}

impl Puller {
    /// A puller into `store`, taking only plans of workloads `wanted` (the ones this replica is configured for),
    /// each pull bounded by `timeout`.
    pub fn new(
        store: Arc<PlanStore>,
        membership: Membership,
        signing: Signing,
        clock: Clock,
        wanted: Arc<dyn Fn(&WorkloadId) -> bool + Send + Sync>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        crate::apiserver::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self {
            http,
            store,
            membership,
            signing,
            clock,
            wanted,
            pulls: Family::default(),
            taken: Counter::default(),
            peers: Gauge::default(),
        })
    }

    /// Registers `peer_pulls_total{result}` (ok, error, refused: unsigned or wrongly signed), `peer_plans_taken_total`
    /// and `peers` (the peers pulled from in the last round).
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "peer_pulls",
            "Pulls of a peer replica's plans, by result (ok; error: no answer or not plans; refused: not signed by \
             a replica of this deployment)",
            self.pulls.clone(),
        );
        registry.register(
            "peer_plans_taken",
            "Plans taken from peer replicas (newer than the plan held)",
            self.taken.clone(),
        );
        registry.register(
            "peers",
            "Peer replicas pulled from in the last round",
            self.peers.clone(),
        );
    }

    /// Pulls from every peer every `every`, forever.
    pub async fn run(self, every: Duration) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.round().await;
        }
    }

    /// One round: every peer of the current view, at once. Returns the plans taken.
    pub async fn round(&self) -> usize {
        let view = self.membership.view();
        let peers: Vec<&Member> = view
            .members
            .iter()
            .filter(|m| m.identity != view.me && !m.address.is_empty())
            .collect();
        self.peers.set(peers.len() as i64);
        let pulls = peers.iter().map(|peer| self.pull(&view, peer));
        futures::future::join_all(pulls).await.into_iter().sum()
    }

    async fn pull(&self, view: &View, peer: &Member) -> usize {
        let url = format!("http://{}{PLANS_PATH}", peer.address);
        let answer = match self.fetch(&url).await {
            Ok(answer) => answer,
            Err(error) => {
                self.pulls.get_or_create(&ResultLabels { result: "error" }).inc();
                warn!(peer = %peer.identity, %url, %error, "pulling a peer's plans failed; its plans are served as last pulled");
                return 0;
            }
        };
        let (body, signature) = answer;
        if !self.signing.verify(&body, signature.as_deref()) {
            self.pulls.get_or_create(&ResultLabels { result: "refused" }).inc();
            warn!(
                peer = %peer.identity,
                %url,
                "a peer's plans are not signed with this deployment's key: refused (every replica must mount the \
                 same serving certificate Secret)"
            );
            return 0;
        }
        let plans: PeerPlans = match serde_json::from_slice(&body) {
            Ok(plans) => plans,
            Err(error) => {
                self.pulls.get_or_create(&ResultLabels { result: "error" }).inc();
                warn!(peer = %peer.identity, %url, %error, "a peer's answer is not plans");
                return 0;
            }
        };
        if plans.member != peer.identity {
            self.pulls.get_or_create(&ResultLabels { result: "refused" }).inc();
            warn!(peer = %peer.identity, answered = %plans.member, %url, "another replica answered at a peer's address");
            return 0;
        }
        self.pulls.get_or_create(&ResultLabels { result: "ok" }).inc();
        let now = self.clock.now();
        let mut taken = 0;
        for plan in plans.plans {
            let id = plan.id();
            let owned_by_peer = view.owner(&id).is_some_and(|o| o.identity == peer.identity);
            if !owned_by_peer || !(self.wanted)(&id) || plan.published_at > now + TimeDelta::minutes(1) {
                continue;
            }
            let max_data_age = plan.max_data_age_seconds.map(TimeDelta::seconds);
            let owner = Remote {
                replica: peer.identity.clone(),
                serving: plan.serving,
            };
            if self.store.record_remote(plan.snapshot(), owner, max_data_age) {
                taken += 1;
            }
        }
        for u in plans.unplanned {
            let id = WorkloadId {
                namespace: u.namespace,
                name: u.name,
            };
            if view.owner(&id).is_some_and(|o| o.identity == peer.identity) && (self.wanted)(&id) {
                let owner = Remote {
                    replica: peer.identity.clone(),
                    serving: Serving::Warming,
                };
                self.store.record_remote_unplanned(&id, owner, u.problem);
            }
        }
        self.taken.inc_by(taken as u64);
        debug!(peer = %peer.identity, taken, "pulled a peer's plans");
        taken
    }

    async fn fetch(&self, url: &str) -> anyhow::Result<(Vec<u8>, Option<String>)> {
        let response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT_ENCODING, "gzip")
            .send()
            .await?
            .error_for_status()?;
        let signature = response
            .headers()
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let gzip = response
            .headers()
            .get(reqwest::header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let bytes = response.bytes().await?;
        let body = if gzip {
            gunzipped(&bytes, MAX_ANSWER_BYTES)?
        } else {
            bytes.to_vec()
        };
        Ok((body, signature))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_gzipped_and_read_back_within_a_bound() {
        let body = br#"{"member":"a","plans":[]}"#.repeat(1000);
        let compressed = gzipped(&body).unwrap();
        assert!(
            compressed.len() * 20 < body.len(),
            "{} of {}",
            compressed.len(),
            body.len()
        );
        assert_eq!(gunzipped(&compressed, MAX_ANSWER_BYTES).unwrap(), body);
        assert!(gunzipped(b"not gzip", MAX_ANSWER_BYTES).is_err());
        // A bomb: more than the bound decompressed is refused, not read whole.
        let bomb = gzipped(&vec![0u8; 10 << 20]).unwrap();
        assert!(bomb.len() < 100 << 10, "{}", bomb.len());
        let error = gunzipped(&bomb, 1 << 20).unwrap_err().to_string();
        assert!(error.contains("over 1048576 bytes decompressed"), "{error}");
        assert_eq!(gunzipped(&bomb, 10 << 20).unwrap().len(), 10 << 20);
    }

    #[test]
    fn signatures_verify_only_with_the_same_secret_and_body() {
        let a = Signing::from_secret(b"key one");
        let b = Signing::from_secret(b"key two");
        let signature = a.sign(b"plans").unwrap();
        assert_eq!(signature.len(), 64);
        assert!(a.verify(b"plans", Some(&signature)));
        assert!(!a.verify(b"plans!", Some(&signature)), "another body");
        assert!(!b.verify(b"plans", Some(&signature)), "another key");
        assert!(!a.verify(b"plans", None), "unsigned");
        assert!(!a.verify(b"plans", Some("zz")), "not hex");
        assert!(Signing::None.verify(b"plans", None));
        assert_eq!(unhex(&hex(&[0, 1, 254, 255])), Some(vec![0, 1, 254, 255]));
    }

    #[test]
    fn a_renewed_key_file_signs_at_once_and_answers_under_the_old_key_still_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tls.key");
        std::fs::write(&path, "old key").unwrap();
        let signing = Signing::from_file(&path).unwrap();
        let old = signing.sign(b"plans").unwrap();
        assert_eq!(Signing::from_secret(b"old key").sign(b"plans").unwrap(), old);
        // A renewal: another key, another modification time.
        std::fs::write(&path, "new key").unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let new = signing.sign(b"plans").unwrap();
        assert_ne!(new, old, "signed with the new key");
        assert_eq!(Signing::from_secret(b"new key").sign(b"plans").unwrap(), new);
        assert!(
            signing.verify(b"plans", Some(&old)),
            "a peer that has not seen the renewal yet"
        );
        assert!(signing.verify(b"plans", Some(&new)));
        assert!(!signing.verify(b"plans", Some(&Signing::from_secret(b"other").sign(b"plans").unwrap())));
    }
}
