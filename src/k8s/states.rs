//! Workload states kept in ConfigMaps, where every replica can read them and they outlive any pod.
//!
//! States are spread over `shards` ConfigMaps named `<prefix>-<k>` in one namespace, `k` the FNV-1a hash of
//! `namespace/name` modulo `shards` (the same on every replica and release), one `binaryData` key per workload,
//! `<namespace>.<name>.json.gz`: its [`WorkloadState`] as gzipped JSON (1–5 KiB).
//!
//! - **Writes are batched.** A save changes memory only. A flusher writes each ConfigMap that has changes once per
//!   flush interval, each at its own phase within it: `shards` writes per interval at most, whatever the number of
//!   workloads (64 shards every 5 minutes: one write every 4.7 s), and on shutdown
//!   ([`crate::state::StateStore::flush`]).
//! - **Replicas share ConfigMaps without losing each other's keys.** A write replaces the ConfigMap with what was
//!   last read of it plus this replica's changes, carrying its `resourceVersion`; when another replica wrote in
//!   between, the API server answers 409 Conflict and the write re-reads and merges (a key this replica changed
//!   takes its value; every other key is kept as read).
//! - **Read once.** A ConfigMap is read when the first of its workloads loads its state, once per process, and
//!   again after [`StateStore::refresh`] (sharded replicas, when workloads move between them).
//! - **Bounded.** A ConfigMap holds at most 1 MiB of data: a state that would overflow its ConfigMap is not written,
//!   and the error says to raise `--state-shards`. A key whose state was not saved for [`RETENTION`] (a workload
//!   that is gone) is dropped at the next write of its ConfigMap.
//! - **Nothing is lost to a failed write.** Changes stay pending and are written at the ConfigMap's next turn.
//!
//! Changing the number of shards moves most workloads to another ConfigMap: they start afresh once.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex, Weak};

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::PostParams;
use kube::Api;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tracing::{debug, warn};

use crate::clock::Clock;
use crate::state::{fnv1a, StateError, StateFuture, StateStore, WorkloadState, MAX_STATE_BYTES};
use crate::store::WorkloadId;

/// The data one ConfigMap may hold (Kubernetes refuses more than 1 MiB of `data` and `binaryData` values), less
/// room for the object's own fields.
pub const MAX_SHARD_BYTES: usize = 1_000_000;

/// The default number of ConfigMaps: at ~4 KiB a state, room for ~15,000 workloads.
pub const DEFAULT_SHARDS: u32 = 64;

/// How long a state not saved again is kept: a workload gone for longer loses it at the next write of its
/// ConfigMap.
pub const RETENTION: TimeDelta = TimeDelta::days(14);

/// How many times a write re-reads and merges after a conflict before it waits for the ConfigMap's next turn.
const CONFLICT_RETRIES: usize = 4;

/// Where the states are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfigMaps {
    /// The namespace of the ConfigMaps (default: the client's, a pod's own).
    pub namespace: Option<String>,
    /// The ConfigMaps are `<prefix>-0` … `<prefix>-<shards-1>`.
    pub prefix: String,
}

impl std::str::FromStr for StateConfigMaps {
    type Err = String;

    /// `[NAMESPACE/]PREFIX`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (namespace, prefix) = match s.split_once('/') {
            Some((ns, prefix)) => (Some(ns), prefix),
            None => (None, s),
        };
        let label = |v: &str| {
            !v.is_empty()
                && v.len() <= 63
                && v.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !v.starts_with('-')
                && !v.ends_with('-')
        };
        if namespace.is_some_and(|ns| !label(ns)) || !label(prefix) {
            return Err(format!(
                "{s}: write [NAMESPACE/]PREFIX, each a DNS label (lowercase letters, digits and '-', at most 63 \
                 characters), e.g. prescale/prescale-state"
            ));
        }
        Ok(Self {
            namespace: namespace.map(str::to_owned),
            prefix: prefix.to_owned(),
        })
    }
}

/// The `binaryData` key of a workload's state. A namespace has no dot, so the first dot ends it.
pub fn key_of(id: &WorkloadId) -> String {
    format!("{}.{}.json.gz", id.namespace, id.name)
}

/// The shard (ConfigMap index) of a workload among `shards`.
pub fn shard_of(id: &WorkloadId, shards: u32) -> u32 {
    (fnv1a(format!("{}/{}", id.namespace, id.name).as_bytes()) % u64::from(shards.max(1))) as u32
}

/// A state as stored: gzipped JSON.
pub fn encode(state: &WorkloadState) -> Result<Vec<u8>, StateError> {
    let json = state.to_json()?;
    let mut gz = flate2::write::GzEncoder::new(Vec::with_capacity(json.len() / 3), flate2::Compression::default());
    gz.write_all(&json)
        .and_then(|()| gz.finish())
        .map_err(|e| StateError::Encode(e.to_string()))
}

/// A state from its stored bytes; `what` names where they came from in the error.
pub fn decode(bytes: &[u8], what: &str) -> Result<WorkloadState, StateError> {
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_STATE_BYTES as u64 + 1)
        .read_to_end(&mut json)
        .map_err(|e| StateError::Parse {
            what: what.to_owned(),
            message: format!("not gzip: {e}"),
        })?;
    WorkloadState::from_json(&json, what)
}

/// A key's stored value, and when it was saved: known for this replica's saves, decoded from the value when first
/// asked (a write's retention check), not when the ConfigMap is read at start (`None`: not a state this release
/// reads; such a key is kept).
#[derive(Debug, Clone)]
struct Entry {
    bytes: Vec<u8>,
    saved_at: std::sync::OnceLock<Option<DateTime<Utc>>>,
}

impl Entry {
    fn read(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            saved_at: std::sync::OnceLock::new(),
        }
    }

    fn saved(bytes: Vec<u8>, saved_at: Option<DateTime<Utc>>) -> Self {
        Self {
            bytes,
            saved_at: saved_at.into(),
        }
    }

    fn saved_at(&self) -> Option<DateTime<Utc>> {
        *self
            .saved_at
            .get_or_init(|| decode(&self.bytes, "").ok().map(|s| s.saved_at))
    }
}

#[derive(Debug, Default)]
struct ShardData {
    /// The ConfigMap's keys as last read or written.
    stored: BTreeMap<String, Entry>,
    /// Its `resourceVersion` then; `None` when it did not exist.
    resource_version: Option<String>,
    /// Saves not written yet.
    pending: BTreeMap<String, Entry>,
}

#[derive(Debug, Default)]
struct Shard {
    /// The generation of the store ([`Inner::generation`]) the ConfigMap was last read in; `None` before the first
    /// read. One read at a time.
    read: tokio::sync::Mutex<Option<u64>>,
    data: Mutex<ShardData>,
    /// One write of this ConfigMap at a time.
    writing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug)]
struct Inner {
    api: Api<ConfigMap>,
    namespace: String,
    prefix: String,
    shards: Vec<Shard>,
    clock: Clock,
    writes: Family<ResultLabels, Counter>,
    dropped: Counter,
    /// Bumped by [`StateStore::refresh`]: a ConfigMap read in an older generation is read again at its next load.
    generation: std::sync::atomic::AtomicU64,
}

/// Workload states in sharded ConfigMaps (module docs). Cheap to clone; clones share the store. Writes run on a
/// background task that ends when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct ConfigMapStore {
    inner: Arc<Inner>,
}

impl ConfigMapStore {
    /// States in `shards` ConfigMaps `<prefix>-<k>` of `namespace`, each written at most once per `flush_every`.
    /// Spawns the flusher: call inside a Tokio runtime.
    pub fn start(
        client: kube::Client,
        namespace: &str,
        prefix: &str,
        shards: u32,
        flush_every: TimeDelta,
        clock: Clock,
    ) -> Self {
        let shards = shards.max(1);
        let inner = Arc::new(Inner {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            prefix: prefix.to_owned(),
            shards: (0..shards).map(|_| Shard::default()).collect(),
            clock,
            writes: Family::default(),
            dropped: Counter::default(),
            generation: Default::default(),
        });
        let every = flush_every.to_std().unwrap_or(std::time::Duration::from_secs(300));
        tokio::spawn(flusher(Arc::downgrade(&inner), every));
        Self { inner }
    }

    /// The ConfigMap of shard `k`.
    pub fn name_of(&self, k: u32) -> String {
        format!("{}-{k}", self.inner.prefix)
    }

    /// Registers `state_configmap_writes_total{result}` (ok, conflict, error) and `state_dropped_total` (states not
    /// written because their ConfigMap is full).
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "state_configmap_writes",
            "Writes of the ConfigMaps that keep workload states, by result (ok, conflict: another replica wrote \
             first and the write merged and retried, error)",
            self.inner.writes.clone(),
        );
        registry.register(
            "state_dropped",
            "Workload states not written because their ConfigMap is full (raise --state-shards)",
            self.inner.dropped.clone(),
        );
    }

    /// States waiting to be written.
    pub fn pending(&self) -> usize {
        let lock = |s: &Shard| s.data.lock().unwrap_or_else(|e| e.into_inner()).pending.len();
        self.inner.shards.iter().map(lock).sum()
    }

    fn shard(&self, id: &WorkloadId) -> (u32, &Shard) {
        let k = shard_of(id, self.inner.shards.len() as u32);
        (k, &self.inner.shards[k as usize])
    }

    fn what(&self, k: u32, key: &str) -> String {
        format!("configmap {}/{} key {key}", self.inner.namespace, self.name_of(k))
    }

    fn api_error(&self, action: &str, k: u32, source: kube::Error) -> StateError {
        let hint = match &source {
            kube::Error::Api(status) if status.is_forbidden() => format!(
                "; grant this ServiceAccount get, create and update on configmaps in namespace `{}` \
                 (deploy/base/state-rbac.yaml)",
                self.inner.namespace
            ),
            _ => String::new(),
        };
        StateError::Store {
            what: format!("{action} configmap {}/{}", self.inner.namespace, self.name_of(k)),
            message: format!("{source}{hint}"),
        }
    }

    /// Reads ConfigMap `k` into memory, replacing what was known of it.
    async fn read(&self, k: u32) -> Result<(), StateError> {
        let name = self.name_of(k);
        let found = self
            .inner
            .api
            .get_opt(&name)
            .await
            .map_err(|e| self.api_error("reading", k, e))?;
        let (stored, resource_version) = match found {
            Some(cm) => {
                let entries = cm
                    .binary_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(key, value)| (key, Entry::read(value.0)));
                (entries.collect(), cm.metadata.resource_version)
            }
            None => (BTreeMap::new(), None),
        };
        debug!(configmap = name, states = stored.len(), "read workload states");
        let mut data = self.inner.shards[k as usize]
            .data
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        data.stored = stored;
        data.resource_version = resource_version;
        Ok(())
    }

    /// Reads ConfigMap `k` unless it has been read since the last [`StateStore::refresh`].
    async fn ensure_read(&self, k: u32) -> Result<(), StateError> {
        let mut read = self.inner.shards[k as usize].read.lock().await;
        let generation = self.inner.generation.load(std::sync::atomic::Ordering::SeqCst);
        if *read != Some(generation) {
            self.read(k).await?;
            *read = Some(generation);
        }
        Ok(())
    }

    /// Writes ConfigMap `k`'s pending states, merging with what another replica wrote meanwhile.
    async fn write(&self, k: u32) -> Result<(), StateError> {
        let shard = &self.inner.shards[k as usize];
        let _one = shard.writing.lock().await;
        self.ensure_read(k).await?;
        let name = self.name_of(k);
        for attempt in 0..=CONFLICT_RETRIES {
            let (desired, written, dropped) = {
                let data = shard.data.lock().unwrap_or_else(|e| e.into_inner());
                if data.pending.is_empty() {
                    return Ok(());
                }
                self.desired(&name, &data)
            };
            if !dropped.is_empty() {
                self.inner.dropped.inc_by(dropped.len() as u64);
                warn!(
                    configmap = %format!("{}/{name}", self.inner.namespace),
                    states = dropped.len(),
                    "the ConfigMap is full ({MAX_SHARD_BYTES} bytes): these workloads' states are not kept; raise \
                     --state-shards (their states start afresh once)"
                );
                let mut data = shard.data.lock().unwrap_or_else(|e| e.into_inner());
                for key in &dropped {
                    data.pending.remove(key);
                }
            }
            let creating = desired.metadata.resource_version.is_none();
            let result = if creating {
                self.inner.api.create(&PostParams::default(), &desired).await
            } else {
                self.inner.api.replace(&name, &PostParams::default(), &desired).await
            };
            match result {
                Ok(cm) => {
                    self.inner.writes.get_or_create(&ResultLabels { result: "ok" }).inc();
                    let mut data = shard.data.lock().unwrap_or_else(|e| e.into_inner());
                    data.resource_version = cm.metadata.resource_version;
                    let mut stored = BTreeMap::new();
                    for (key, value) in cm.binary_data.unwrap_or_default() {
                        let entry = match written.get(&key) {
                            Some(saved_at) => Entry::saved(value.0, *saved_at),
                            None => Entry::read(value.0),
                        };
                        stored.insert(key, entry);
                    }
                    // A save made while this write was under way stays pending.
                    data.pending
                        .retain(|key, entry| stored.get(key).is_none_or(|s| s.bytes != entry.bytes));
                    data.stored = stored;
                    return Ok(());
                }
                Err(kube::Error::Api(status))
                    if (status.is_conflict() || status.is_already_exists() || status.code == 404)
                        && attempt < CONFLICT_RETRIES =>
                {
                    self.inner
                        .writes
                        .get_or_create(&ResultLabels { result: "conflict" })
                        .inc();
                    debug!(
                        configmap = name,
                        attempt, "another replica wrote the ConfigMap first; merging"
                    );
                    self.read(k).await?;
                }
                Err(e) => {
                    self.inner.writes.get_or_create(&ResultLabels { result: "error" }).inc();
                    return Err(self.api_error(if creating { "creating" } else { "replacing" }, k, e));
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    /// The ConfigMap to write: what was read, with the pending states over it and states older than [`RETENTION`]
    /// left out, up to [`MAX_SHARD_BYTES`]. Also the keys written with their save times, and the pending keys that
    /// did not fit.
    #[allow(clippy::type_complexity)]
    fn desired(
        &self,
        name: &str,
        data: &ShardData,
    ) -> (ConfigMap, BTreeMap<String, Option<DateTime<Utc>>>, Vec<String>) {
        let oldest = self.inner.clock.now() - RETENTION;
        let mut merged: BTreeMap<&String, &Entry> = data
            .stored
            .iter()
            .filter(|(_, e)| e.saved_at().is_none_or(|t| t >= oldest))
            .collect();
        let mut bytes: usize = merged.values().map(|e| e.bytes.len()).sum();
        let mut dropped = Vec::new();
        for (key, entry) in &data.pending {
            let before = merged.get(key).map_or(0, |e| e.bytes.len());
            if bytes - before + entry.bytes.len() > MAX_SHARD_BYTES {
                dropped.push(key.clone());
                continue;
            }
            bytes = bytes - before + entry.bytes.len();
            merged.insert(key, entry);
        }
        let written = merged.iter().map(|(k, e)| ((*k).clone(), e.saved_at())).collect();
        let binary_data = merged
            .into_iter()
            .map(|(k, e)| (k.clone(), ByteString(e.bytes.clone())))
            .collect();
        let labels = BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), "prescale".to_owned()),
            ("app.kubernetes.io/component".to_owned(), "state".to_owned()),
        ]);
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(self.inner.namespace.clone()),
                labels: Some(labels),
                resource_version: data.resource_version.clone(),
                ..ObjectMeta::default()
            },
            binary_data: Some(binary_data),
            ..ConfigMap::default()
        };
        (cm, written, dropped)
    }
}

/// Writes each ConfigMap with pending states once per `every`, shard `k` at phase `k/shards` of it, until the
/// store is dropped.
async fn flusher(store: Weak<Inner>, every: std::time::Duration) {
    let shards = match store.upgrade() {
        Some(inner) => inner.shards.len() as u32,
        None => return,
    };
    let mut ticker = tokio::time::interval(every / shards);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    for k in (0..shards).cycle() {
        ticker.tick().await;
        let Some(inner) = store.upgrade() else { return };
        let store = ConfigMapStore { inner };
        if let Err(error) = store.write(k).await {
            warn!(%error, "writing workload states failed; they are written at the ConfigMap's next turn");
        }
    }
}

impl StateStore for ConfigMapStore {
    fn load<'a>(&'a self, id: &'a WorkloadId) -> StateFuture<'a, Option<WorkloadState>> {
        Box::pin(async move {
            let (k, shard) = self.shard(id);
            self.ensure_read(k).await?;
            let key = key_of(id);
            let bytes = {
                let data = shard.data.lock().unwrap_or_else(|e| e.into_inner());
                data.pending
                    .get(&key)
                    .or_else(|| data.stored.get(&key))
                    .map(|e| e.bytes.clone())
            };
            bytes.map(|b| decode(&b, &self.what(k, &key))).transpose()
        })
    }

    fn save<'a>(&'a self, state: &'a WorkloadState) -> StateFuture<'a, ()> {
        Box::pin(async move {
            let id = state.id();
            let bytes = encode(state)?;
            let (_, shard) = self.shard(&id);
            let entry = Entry::saved(bytes, Some(state.saved_at));
            shard
                .data
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pending
                .insert(key_of(&id), entry);
            Ok(())
        })
    }

    fn flush(&self) -> StateFuture<'_, ()> {
        Box::pin(async move {
            let mut first_error = None;
            for k in 0..self.inner.shards.len() as u32 {
                if let Err(e) = self.write(k).await {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        })
    }

    fn refresh(&self) {
        self.inner.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn describe(&self) -> String {
        format!(
            "ConfigMaps {}/{}-{{0..{}}}",
            self.inner.namespace,
            self.inner.prefix,
            self.inner.shards.len() - 1
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> WorkloadId {
        WorkloadId {
            namespace: "team-a".into(),
            name: name.into(),
        }
    }

    #[test]
    fn names_parse_with_or_without_a_namespace_and_bad_ones_say_how_to_write_them() {
        let r: StateConfigMaps = "prescale/prescale-state".parse().unwrap();
        assert_eq!(r.namespace.as_deref(), Some("prescale"));
        assert_eq!(r.prefix, "prescale-state");
        let r: StateConfigMaps = "states".parse().unwrap();
        assert_eq!(r.namespace, None);
        for bad in ["", "Prescale", "a/b/c", "/x", "x/", "-x", &"x".repeat(64)] {
            let e = bad.parse::<StateConfigMaps>().unwrap_err();
            assert!(e.contains("[NAMESPACE/]PREFIX"), "{bad}: {e}");
        }
    }

    #[test]
    fn workloads_spread_over_the_shards_and_keys_are_valid_configmap_keys() {
        let mut counts = [0usize; 16];
        for i in 0..1600 {
            counts[shard_of(&id(&format!("w{i}")), 16) as usize] += 1;
        }
        assert!(counts.iter().all(|n| (60..140).contains(n)), "{counts:?}");
        assert_eq!(shard_of(&id("w1"), 16), shard_of(&id("w1"), 16));
        let key = key_of(&WorkloadId {
            namespace: "ns".into(),
            name: "web.v2".into(),
        });
        assert_eq!(key, "ns.web.v2.json.gz");
        assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)));
    }

    #[test]
    fn a_stored_value_that_is_not_a_gzipped_state_is_named_in_the_error() {
        let e = decode(b"{}", "configmap p/s-1 key a.b.json.gz")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("configmap p/s-1 key a.b.json.gz") && e.contains("not gzip"),
            "{e}"
        );
    }
}
