//! Workload states in ConfigMaps (`--state-configmaps`), against the in-memory stand-in for kube-apiserver (none can
//! run here; tests/support/apiserver.rs) through the real kube client: replicas sharing ConfigMaps keep each other's
//! states, writes are batched per ConfigMap, a failing API loses nothing, a full ConfigMap says what to raise, gone
//! workloads are dropped after the retention, and the real binary restarted against the stand-in adopts every
//! workload's state.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, TimeDelta, Utc};
use prescale::clock::Clock;
use prescale::k8s::states::{self, ConfigMapStore};
use prescale::state::{StateStore, WorkloadState};
use prescale::store::WorkloadId;
use support::apiserver::{ApiServer, Kind};

const NS: &str = "prescale";

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

/// A fresh state of workload `name` in namespace `team`, saved at `at`.
fn state(name: &str, at: DateTime<Utc>) -> WorkloadState {
    let yaml = format!(
        "workloads:\n  - name: {name}\n    namespace: team\n    demand: {{generator: {{profile: llm-chat}}}}\n    \
         capacityPerReplica: 10\n    maxReplicas: 40\n"
    );
    let config = prescale::config::parse(&yaml, Path::new("t.yaml"))
        .unwrap()
        .workloads
        .remove(0);
    let engine = prescale::control::engine::Engine::new(
        prescale::pipeline::forecast_settings(&config),
        config.policy.clone(),
        config.refit_interval,
    );
    WorkloadState::new(&config, at, None, engine.learned())
}

fn id(name: &str) -> WorkloadId {
    WorkloadId {
        namespace: "team".into(),
        name: name.into(),
    }
}

/// A replica's store on the stand-in, through its own door; the flusher's own turn is an hour away, so the tests
/// write with `flush`.
async fn replica(api: &ApiServer, door: &str, shards: u32) -> ConfigMapStore {
    prescale::apiserver::tls::install_crypto_provider();
    ConfigMapStore::start(
        api.client_as(door).await,
        NS,
        "prescale-state",
        shards,
        TimeDelta::hours(1),
        Clock::fixed(now()),
    )
}

/// The keys of the state ConfigMaps, from the stand-in.
fn stored_keys(api: &ApiServer, shards: u32) -> BTreeSet<String> {
    (0..shards)
        .filter_map(|k| api.get(Kind::ConfigMap, NS, &format!("prescale-state-{k}")))
        .flat_map(|cm| {
            cm["binaryData"]
                .as_object()
                .map(|m| m.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn replicas_sharing_configmaps_keep_each_other_s_states_and_write_each_once_a_flush() {
    let api = ApiServer::start().await;
    let shards = 4;
    let a = replica(&api, "a", shards).await;
    let b = replica(&api, "b", shards).await;
    // Each replica reads every ConfigMap before the other writes (as at start), so B's writes carry stale
    // resourceVersions and must merge.
    for k in 0..20 {
        assert_eq!(a.load(&id(&format!("w{k}"))).await.unwrap(), None);
        assert_eq!(b.load(&id(&format!("w{k}"))).await.unwrap(), None);
    }
    for k in 0..10 {
        a.save(&state(&format!("w{k}"), now())).await.unwrap();
    }
    for k in 10..20 {
        b.save(&state(&format!("w{k}"), now())).await.unwrap();
    }
    assert_eq!(a.pending(), 10);
    assert_eq!(api.writes_via("a", "POST", ""), 0, "a save writes nothing by itself");
    a.flush().await.unwrap();
    assert_eq!(a.pending(), 0);
    let a_writes = api.writes_via("a", "POST", "configmaps") + api.writes_via("a", "PUT", "configmaps");
    assert!(
        a_writes <= shards as usize,
        "one write per ConfigMap, not per state: {a_writes}"
    );
    b.flush().await.unwrap();
    let expected: BTreeSet<String> = (0..20).map(|k| format!("team.w{k}.json.gz")).collect();
    assert_eq!(
        stored_keys(&api, shards),
        expected,
        "neither replica dropped the other's states"
    );

    // A restarted replica reads each ConfigMap once and finds every state, whoever wrote it.
    let c = replica(&api, "c", shards).await;
    for k in 0..20 {
        let name = format!("w{k}");
        assert_eq!(c.load(&id(&name)).await.unwrap(), Some(state(&name, now())), "{name}");
    }
    assert!(
        c.describe().contains("prescale/prescale-state-{0..3}"),
        "{}",
        c.describe()
    );
}

#[tokio::test]
async fn a_refused_write_loses_no_state_and_the_error_names_the_configmap_and_the_role() {
    let api = ApiServer::start().await;
    let store = replica(&api, "a", 2).await;
    assert_eq!(store.load(&id("chat")).await.unwrap(), None);
    store.save(&state("chat", now())).await.unwrap();
    api.forbid_configmaps(true);
    let e = store.flush().await.unwrap_err().to_string();
    assert!(
        e.contains("configmap prescale/prescale-state-") && e.contains("state-rbac.yaml"),
        "the error names the ConfigMap and the Role to grant: {e}"
    );
    assert_eq!(store.pending(), 1, "the state waits for the next write");
    // A load meanwhile answers from what this replica saved.
    assert_eq!(store.load(&id("chat")).await.unwrap(), Some(state("chat", now())));
    api.forbid_configmaps(false);
    store.flush().await.unwrap();
    assert_eq!(store.pending(), 0);
    assert_eq!(stored_keys(&api, 2), BTreeSet::from(["team.chat.json.gz".to_owned()]));
}

#[tokio::test]
async fn a_full_configmap_keeps_what_fits_and_says_to_raise_the_shards() {
    let api = ApiServer::start().await;
    let store = replica(&api, "a", 1).await;
    let one = states::encode(&state("w0", now())).unwrap().len();
    // Enough states to overflow one ConfigMap's megabyte.
    let n = states::MAX_SHARD_BYTES / one + 50;
    for k in 0..n {
        store.save(&state(&format!("w{k}"), now())).await.unwrap();
    }
    store.flush().await.unwrap();
    let kept = stored_keys(&api, 1).len();
    assert!(
        kept < n && kept * 100 >= states::MAX_SHARD_BYTES / one * 95,
        "{kept} of {n} kept"
    );
    assert_eq!(store.pending(), 0, "what does not fit is dropped, not retried forever");
    let text = api.get(Kind::ConfigMap, NS, "prescale-state-0").unwrap().to_string();
    assert!(
        text.len() < 1_500_000,
        "the stand-in accepted it as a real server would"
    );
}

#[tokio::test]
async fn a_state_not_saved_for_the_retention_is_dropped_at_the_next_write() {
    let api = ApiServer::start().await;
    let store = replica(&api, "a", 1).await;
    store
        .save(&state("gone", now() - states::RETENTION - TimeDelta::hours(1)))
        .await
        .unwrap();
    store.save(&state("recent", now() - TimeDelta::days(3))).await.unwrap();
    store.flush().await.unwrap();
    // Written once (it was pending); the next write of its ConfigMap leaves it out.
    store.save(&state("live", now())).await.unwrap();
    store.flush().await.unwrap();
    assert_eq!(
        stored_keys(&api, 1),
        BTreeSet::from(["team.live.json.gz".to_owned(), "team.recent.json.gz".to_owned()])
    );
}

/// The real binary, restarted against the stand-in through a kubeconfig: the first process saves each demo
/// workload's state into ConfigMaps, the second adopts all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_process_adopts_every_state_from_the_configmaps() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let api = ApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster:\n    server: {}\n\
             users:\n- name: prescale\n  user:\n    token: t\ncontexts:\n- name: stand-in\n  context:\n    \
             cluster: stand-in\n    user: prescale\n    namespace: {NS}\ncurrent-context: stand-in\n",
            api.url()
        ),
    )
    .unwrap();
    let start = |log: &Path| {
        support::demo_command(log)
            .args(["--state-configmaps", "prescale-state", "--state-shards", "2"])
            .args(["--state-save-interval", "1s"])
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("POD_NAMESPACE")
            .stdout(Stdio::null())
            .spawn()
            .expect("start `prescale demo`")
    };

    let first_log = dir.path().join("first.log");
    let mut first = start(&first_log);
    // Each workload saves once its first model is in; each ConfigMap is written every second at most.
    let deadline = Instant::now() + Duration::from_secs(180);
    while stored_keys(&api, 2).len() < 3 {
        let text = std::fs::read_to_string(&first_log).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "{:?} written within 180 s:\n{text}",
            stored_keys(&api, 2)
        );
        assert!(first.try_wait().unwrap().is_none(), "the demo exited early:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    support::terminate(&mut first);
    assert_eq!(stored_keys(&api, 2).len(), 3);

    let second_log = dir.path().join("second.log");
    let mut second = start(&second_log);
    // Blocking is fine on this multi-threaded runtime: the stand-in's tasks move to the other worker.
    tokio::task::block_in_place(|| support::wait_for_adoptions(&mut second, &second_log, 3));
    support::terminate(&mut second);
}
