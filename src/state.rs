//! What prescale has learned per workload, kept across restarts: the SLO controller's record, the quality gate's
//! state, the last plan and when it was made, and a summary of the model. Never history (the source is the truth,
//! and it is fetched anew) and never the fitted model (refitted in the background at start).
//!
//! A restarted workload adopts its state at once: its SLO choice is warm from the first cycle (no startup replay),
//! and until its first model is in it serves its last plan while that is younger than `maxForecastAge` (never
//! below the reactive target), instead of the reactive target alone. A state saved for other settings (the
//! workload's [`fingerprint`] differs), by another format version, or that does not parse is not adopted: the
//! workload starts as a new one and says why in the log.
//!
//! States are written at a bounded rate: a workload saves at most once per `save interval` (default
//! [`DEFAULT_SAVE_INTERVAL`]), each at its own phase within it, so N workloads write N per interval, evenly spread.
//! One state is a few KiB of JSON (at most [`MAX_STATE_BYTES`]).

use std::path::{Path, PathBuf};
use std::pin::Pin;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::config::WorkloadConfig;
use crate::control::engine::Learned;
use crate::store::WorkloadId;

/// The format version written; a state of another version is not adopted.
pub const STATE_VERSION: u32 = 1;

/// The largest state written or read: a larger one is refused (a workload's state is a few KiB).
pub const MAX_STATE_BYTES: usize = 64 * 1024;

/// How often a workload saves its state by default.
pub const DEFAULT_SAVE_INTERVAL: TimeDelta = TimeDelta::minutes(5);

/// One workload's learned state, as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadState {
    /// [`STATE_VERSION`] when written.
    pub version: u32,
    /// The workload's namespace.
    pub namespace: String,
    /// The workload's name.
    pub name: String,
    /// [`fingerprint`] of the settings it was learned with.
    pub fingerprint: String,
    /// When it was saved.
    pub saved_at: DateTime<Utc>,
    /// The model in use when it was saved, for people (the model itself is refitted).
    pub model: Option<ModelSummary>,
    /// What the decision engine learned.
    pub learned: Learned,
}

/// What model a workload used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelSummary {
    /// Model family (`mstl`, `ets`, …).
    pub method: String,
    /// When it was fitted.
    pub fitted_at: DateTime<Utc>,
}

impl WorkloadState {
    /// The state of `config`'s workload as saved at `saved_at`, in this release's format.
    pub fn new(
        config: &WorkloadConfig,
        saved_at: DateTime<Utc>,
        model: Option<ModelSummary>,
        learned: Learned,
    ) -> Self {
        Self {
            version: STATE_VERSION,
            namespace: config.id.namespace.clone(),
            name: config.id.name.clone(),
            fingerprint: fingerprint(config),
            saved_at,
            model,
            learned,
        }
    }

    /// The workload this state belongs to.
    pub fn id(&self) -> WorkloadId {
        WorkloadId {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// Why this state may not be adopted by `config`, if it may not: another workload, another format version, or
    /// other settings.
    pub fn mismatch(&self, config: &WorkloadConfig) -> Option<String> {
        if self.id() != config.id {
            return Some(format!("it belongs to {}", self.id()));
        }
        if self.version != STATE_VERSION {
            return Some(format!(
                "it has format version {}, this release reads {STATE_VERSION}",
                self.version
            ));
        }
        let now = fingerprint(config);
        (self.fingerprint != now).then(|| {
            format!(
                "it was learned with other settings (fingerprint {}, now {now})",
                self.fingerprint
            )
        })
    }

    /// The state as JSON, refused past [`MAX_STATE_BYTES`].
    pub fn to_json(&self) -> Result<Vec<u8>, StateError> {
        let bytes = serde_json::to_vec(self).map_err(|e| StateError::Encode(e.to_string()))?;
        if bytes.len() > MAX_STATE_BYTES {
            return Err(StateError::TooLarge {
                bytes: bytes.len(),
                max: MAX_STATE_BYTES,
            });
        }
        Ok(bytes)
    }

    /// Parses a state written by [`WorkloadState::to_json`]; `what` names where it came from in the error.
    pub fn from_json(bytes: &[u8], what: &str) -> Result<Self, StateError> {
        if bytes.len() > MAX_STATE_BYTES {
            return Err(StateError::TooLarge {
                bytes: bytes.len(),
                max: MAX_STATE_BYTES,
            });
        }
        serde_json::from_slice(bytes).map_err(|e| StateError::Parse {
            what: what.to_owned(),
            message: e.to_string(),
        })
    }
}

/// A stable digest of the settings a workload learns under: its identity, demand source, policy, seasonality,
/// refit interval, history window and serving settings (not its HPA or scale target, which do not change what it
/// learns). FNV-1a over their JSON: the same on every replica and every release that serializes them alike.
pub fn fingerprint(config: &WorkloadConfig) -> String {
    let settings = serde_json::to_vec(&(
        &config.id,
        &config.demand,
        &config.unit,
        &config.policy,
        &config.seasonality,
        config.refit_interval.num_milliseconds(),
        config.history.num_milliseconds(),
        &config.serving,
    ))
    .unwrap_or_default();
    format!("{:016x}", fnv1a(&settings))
}

/// FNV-1a, 64 bits: a stable hash (unlike std's `DefaultHasher`, which may change between releases).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The offset of a workload's saves within the save interval, so that N workloads spread their writes evenly.
pub fn save_phase(id: &WorkloadId, interval: TimeDelta) -> TimeDelta {
    let ms = interval.num_milliseconds().max(1) as u64;
    let h = fnv1a(format!("{}/{}", id.namespace, id.name).as_bytes());
    TimeDelta::milliseconds((h % ms) as i64)
}

/// Why a state could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The saved state is not a state this release reads.
    #[error("{what}: not a saved workload state ({message}); it is ignored and overwritten at the next save")]
    Parse {
        /// Where it came from.
        what: String,
        /// What the parser said.
        message: String,
    },
    /// The state could not be encoded.
    #[error("encoding the state: {0}")]
    Encode(String),
    /// The state is larger than any state should be.
    #[error("the state is {bytes} bytes, more than the {max} a state may hold")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The bound.
        max: usize,
    },
    /// A name that cannot be a file name.
    #[error("{0}: not a Kubernetes name, so no state is kept for it")]
    BadName(String),
    /// The store (the Kubernetes API) refused or failed.
    #[error("{what}: {message}")]
    Store {
        /// What was being done, and to what.
        what: String,
        /// What failed, and how to fix it when that is known.
        message: String,
    },
}

/// A state store's answer.
pub type StateFuture<'a, T> = Pin<Box<dyn std::future::Future<Output = Result<T, StateError>> + Send + 'a>>;

/// Where workload states are kept.
pub trait StateStore: Send + Sync {
    /// The saved state of `id`, if any.
    fn load<'a>(&'a self, id: &'a WorkloadId) -> StateFuture<'a, Option<WorkloadState>>;
    /// Saves `state`, replacing the workload's previous one (a store that batches its writes may only take note).
    fn save<'a>(&'a self, state: &'a WorkloadState) -> StateFuture<'a, ()>;
    /// Writes every save not written yet (on shutdown); a store that writes at once has nothing to do.
    fn flush(&self) -> StateFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    /// Forgets what was read, so the next loads see what other replicas saved since (a store that reads at every
    /// load has nothing to do).
    fn refresh(&self) {}
    /// Where, for logs.
    fn describe(&self) -> String;
}

/// States as files in a directory: `DIR/<namespace>/<name>.json`, each replaced atomically (written beside it,
/// then renamed over it), so a crash mid-write leaves the previous state whole. Put the directory on a volume
/// that outlives the container (an `emptyDir` survives container restarts; a persistent volume, pod restarts).
#[derive(Debug, Clone)]
pub struct DirStore {
    dir: PathBuf,
}

impl DirStore {
    /// States under `dir` (created when the first is saved).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: &WorkloadId) -> Result<PathBuf, StateError> {
        let ok = |s: &str| {
            !s.is_empty()
                && !s.starts_with('.')
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        };
        if !ok(&id.namespace) || !ok(&id.name) {
            return Err(StateError::BadName(id.to_string()));
        }
        Ok(self.dir.join(&id.namespace).join(format!("{}.json", id.name)))
    }
}

/// File operations of every [`DirStore`] at once: two. Each runs on a blocking thread; thousands of workloads
/// loading their states at start would otherwise each take one (`tokio::fs` spawns one per call, up to 512), and
/// every such thread keeps its own allocator caches: measured at 1,000 workloads, ~150 MiB more resident at start.
static FILE_OPS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Runs `op` on a blocking thread, at most [`FILE_OPS`] at once.
async fn file_op<T: Send + 'static>(
    path: PathBuf,
    op: impl FnOnce(&Path) -> std::io::Result<T> + Send + 'static,
) -> Result<T, StateError> {
    let _turn = FILE_OPS.acquire().await;
    let (result, path) = tokio::task::spawn_blocking(move || (op(&path), path))
        .await
        .map_err(|e| StateError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(e.to_string()),
        })?;
    result.map_err(|source| StateError::Io { path, source })
}

impl StateStore for DirStore {
    fn load<'a>(&'a self, id: &'a WorkloadId) -> StateFuture<'a, Option<WorkloadState>> {
        Box::pin(async move {
            let path = self.path(id)?;
            let what = path.display().to_string();
            let read = file_op(path, |p| match std::fs::read(p) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            });
            match read.await? {
                Some(bytes) => WorkloadState::from_json(&bytes, &what).map(Some),
                None => Ok(None),
            }
        })
    }

    fn save<'a>(&'a self, state: &'a WorkloadState) -> StateFuture<'a, ()> {
        Box::pin(async move {
            let path = self.path(&state.id())?;
            let bytes = state.to_json()?;
            file_op(path, move |path| {
                let dir = path.parent().expect("a state file has a directory");
                std::fs::create_dir_all(dir)?;
                let partial = path.with_extension("json.partial");
                std::fs::write(&partial, &bytes)?;
                std::fs::rename(&partial, path)
            })
            .await
        })
    }

    fn describe(&self) -> String {
        format!("directory {}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(yaml_extra: &str) -> WorkloadConfig {
        let yaml = format!(
            "workloads:\n  - name: chat\n    demand: {{generator: {{profile: llm-chat}}}}\n    capacityPerReplica: 10\n    \
             maxReplicas: 40\n{yaml_extra}"
        );
        crate::config::parse(&yaml, Path::new("t.yaml"))
            .unwrap()
            .workloads
            .remove(0)
    }

    fn state(config: &WorkloadConfig) -> WorkloadState {
        let engine = crate::control::engine::Engine::new(
            crate::pipeline::forecast_settings(config),
            config.policy.clone(),
            config.refit_interval,
        );
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        WorkloadState::new(config, at, None, engine.learned())
    }

    #[test]
    fn the_fingerprint_is_stable_and_follows_the_settings_learning_depends_on() {
        let a = config("");
        assert_eq!(fingerprint(&a), fingerprint(&config("")));
        assert_eq!(fingerprint(&a).len(), 16);
        assert_ne!(fingerprint(&a), fingerprint(&config("    leadTime: 10m\n")));
        // FNV-1a's published test vectors.
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn a_state_is_adopted_only_by_its_own_workload_with_its_own_settings() {
        let a = config("");
        let s = state(&a);
        assert_eq!(s.mismatch(&a), None);
        let changed = config("    leadTime: 10m\n");
        assert!(s.mismatch(&changed).unwrap().contains("other settings"));
        let mut other = a.clone();
        other.id.name = "other".into();
        assert!(s.mismatch(&other).unwrap().contains("belongs to default/chat"));
        let old = WorkloadState { version: 0, ..s };
        assert!(old.mismatch(&a).unwrap().contains("format version 0"));
    }

    #[tokio::test]
    async fn a_directory_keeps_states_whole_and_says_what_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::new(dir.path().join("states"));
        let a = config("");
        assert!(store.load(&a.id).await.unwrap().is_none(), "nothing saved yet");
        let s = state(&a);
        store.save(&s).await.unwrap();
        assert_eq!(store.load(&a.id).await.unwrap(), Some(s.clone()));
        let file = dir.path().join("states/default/chat.json");
        assert!(file.exists());
        assert!(!file.with_extension("json.partial").exists());
        assert!(
            std::fs::metadata(&file).unwrap().len() < 16 * 1024,
            "a fresh state is small"
        );

        std::fs::write(&file, b"{\"version\": 1, \"namespace\": ").unwrap();
        let e = store.load(&a.id).await.unwrap_err().to_string();
        assert!(
            e.contains("chat.json") && e.contains("not a saved workload state"),
            "{e}"
        );

        let mut bad = s.clone();
        bad.name = "../escape".into();
        assert!(matches!(store.save(&bad).await, Err(StateError::BadName(_))));
    }

    #[test]
    fn saves_are_spread_over_the_interval() {
        let interval = TimeDelta::minutes(5);
        let phases: Vec<i64> = (0..1000)
            .map(|i| {
                let id = WorkloadId {
                    namespace: "ns".into(),
                    name: format!("w{i}"),
                };
                save_phase(&id, interval).num_milliseconds()
            })
            .collect();
        assert!(phases.iter().all(|p| (0..300_000).contains(p)));
        // Each fifth of the interval holds roughly a fifth of the workloads.
        for k in 0..5 {
            let n = phases.iter().filter(|p| **p / 60_000 == k).count();
            assert!((150..250).contains(&n), "{k}: {n}");
        }
    }
}
