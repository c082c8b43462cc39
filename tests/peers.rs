//! Sharded replicas in one process: two replicas' pipelines, each planning the workloads it owns, serving each
//! other's plans pulled over real HTTP from the peers' admin routes, and taking workloads over when a member leaves.
//! The membership is given (a fixed view per replica); the Lease protocol behind it is tests/members.rs's.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prescale::clock::Clock;
use prescale::history::synthetic::{Generator, Profile};
use prescale::k8s::members::{Member, Membership, View};
use prescale::peers::{self, PeerState, Puller, Signing};
use prescale::pipeline::{Options, Pipelines, Workload};
use prescale::store::{PlanStore, WorkloadId};
use tokio::sync::watch;

const WORKLOADS: usize = 12;

fn workloads() -> Vec<Workload> {
    let mut yaml = String::from("workloads:\n");
    for i in 0..WORKLOADS {
        yaml.push_str(&format!(
            "  - name: w{i}\n    demand: {{generator: {{profile: web-frontend, seed: {i}}}, step: 5m}}\n    \
             capacityPerReplica: 10\n    maxReplicas: 200\n    history: 2d\n    adaptiveQuantile: {{replay: 0s}}\n"
        ));
    }
    let config = prescale::config::parse(&yaml, Path::new("peers.yaml")).unwrap();
    config
        .workloads
        .into_iter()
        .enumerate()
        .map(|(i, config)| Workload {
            config,
            history: Arc::new(Generator::new(Profile::WebFrontend, i as u64)),
        })
        .collect()
}

/// One replica: its store, pipelines, membership (a view the test sets), puller, and its admin route listening.
struct Replica {
    store: Arc<PlanStore>,
    pipelines: Arc<Pipelines>,
    view: watch::Sender<View>,
    puller: Puller,
}

async fn replica(
    name: &'static str,
    listener: tokio::net::TcpListener,
    members: &[Member],
    signing: Signing,
) -> Replica {
    let store = Arc::new(PlanStore::new());
    // Whole seconds: an owner republishes every 200 ms, the same plan under the same timestamp within a second,
    // so a pulled copy can be compared with its owner's; a fixed clock would hide a plan that changed (its first
    // model in) behind the timestamp of the first one pulled.
    let clock = Clock::from_fn(|| {
        use chrono::{DurationRound, TimeDelta};
        chrono::Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap()
    });
    let (view, seen) = watch::channel(View {
        me: name.into(),
        joined: true,
        members: members.to_vec(),
    });
    let membership = Membership::new(seen);
    let pipelines = Arc::new(
        Pipelines::new(
            store.clone(),
            clock.clone(),
            chrono::TimeDelta::milliseconds(200),
            Options::default(),
        )
        .with_membership(membership.clone()),
    );
    for w in workloads() {
        pipelines.apply(w).await;
    }
    tokio::spawn(pipelines.clone().follow());
    let router = peers::router(PeerState {
        store: store.clone(),
        membership: membership.clone(),
        signing: signing.clone(),
    });
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let wanted = Arc::downgrade(&pipelines);
    let puller = Puller::new(
        store.clone(),
        membership,
        signing,
        clock,
        Arc::new(move |id: &WorkloadId| wanted.upgrade().is_some_and(|p| p.wants(id))),
        Duration::from_secs(2),
    )
    .unwrap();
    Replica {
        store,
        pipelines,
        view,
        puller,
    }
}

async fn two(signing_a: Signing, signing_b: Signing) -> (Replica, Replica) {
    let la = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lb = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let members = vec![
        Member {
            identity: "a".into(),
            address: la.local_addr().unwrap().to_string(),
        },
        Member {
            identity: "b".into(),
            address: lb.local_addr().unwrap().to_string(),
        },
    ];
    let a = replica("a", la, &members, signing_a).await;
    let b = replica("b", lb, &members, signing_b).await;
    (a, b)
}

/// Every workload, ordered by namespace then name (as the pipelines list them).
fn ids() -> Vec<WorkloadId> {
    let mut ids: Vec<WorkloadId> = (0..WORKLOADS)
        .map(|i| WorkloadId {
            namespace: "default".into(),
            name: format!("w{i}"),
        })
        .collect();
    ids.sort();
    ids
}

/// Waits (60 s at most) until `done`, pulling on both replicas meanwhile.
async fn until(a: &Replica, b: &Replica, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "not within 60 s: {what}");
        a.puller.round().await;
        b.puller.round().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn planned_everywhere(a: &Replica, b: &Replica) -> bool {
    ids().iter().all(|id| {
        let (x, y) = (a.store.get(id), b.store.get(id));
        x.zip(y)
            .is_some_and(|(x, y)| x.plan == y.plan && x.published_at == y.published_at)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_replica_plans_its_share_and_both_serve_every_workload_the_same_plan() {
    let signing = Signing::from_secret(b"the serving key");
    let (a, b) = two(signing.clone(), signing).await;
    let view = a.view.borrow().clone();
    let owned_by = |who: &str| -> Vec<WorkloadId> {
        ids()
            .into_iter()
            .filter(|id| view.owner(id).is_some_and(|m| m.identity == who))
            .collect()
    };
    let (of_a, of_b) = (owned_by("a"), owned_by("b"));
    assert!(!of_a.is_empty() && !of_b.is_empty(), "both own some: {of_a:?} {of_b:?}");
    assert_eq!(of_a.len() + of_b.len(), WORKLOADS);
    // Each runs only its own; both know every workload.
    assert_eq!(a.pipelines.running_ids(), of_a);
    assert_eq!(b.pipelines.running_ids(), of_b);
    assert_eq!(a.pipelines.ids(), ids());
    until(&a, &b, "both serve every workload the same plan", || {
        planned_everywhere(&a, &b)
    })
    .await;
    for id in &of_b {
        let owner = a.store.owner(id).expect("a serves b's plan as b's");
        assert_eq!(owner.replica, "b");
        assert!(a.store.servable(id, chrono::Utc::now()).is_ok(), "{id} served by a");
    }
    for id in &of_a {
        assert!(a.store.owner(id).is_none(), "{id}: a's own plan");
        assert_eq!(b.store.owner(id).unwrap().replica, "a");
    }
    assert!(a.store.is_ready() && b.store.is_ready());
    assert!(
        a.store.entry(&of_b[0]).unwrap().insight.is_none(),
        "a peer's plan travels without its insight"
    );
    // The answer travels gzipped when asked, signed over the plans as JSON; plain otherwise.
    let url = format!("http://{}{}", view.members[1].address, peers::PLANS_PATH);
    let http = reqwest::Client::new();
    let plain = http.get(&url).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.unwrap();
    let gzipped = http.get(&url).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let signature = gzipped.headers()[peers::SIGNATURE_HEADER].to_str().unwrap().to_owned();
    let compressed = gzipped.bytes().await.unwrap();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&compressed[..]), &mut body).unwrap();
    assert!(
        compressed.len() * 3 < body.len(),
        "{} of {}",
        compressed.len(),
        body.len()
    );
    assert!(Signing::from_secret(b"the serving key").verify(&body, Some(&signature)));
    let (plain, body): (peers::PeerPlans, peers::PeerPlans) = (
        serde_json::from_slice(&plain).unwrap(),
        serde_json::from_slice(&body).unwrap(),
    );
    assert_eq!(plain.member, "b");
    assert_eq!(body.member, "b");
    assert_eq!(body.plans.len(), of_b.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_leaves_has_its_workloads_taken_over_without_a_gap_or_a_lower_target() {
    let signing = Signing::from_secret(b"the serving key");
    let (a, b) = two(signing.clone(), signing).await;
    until(&a, &b, "both serve every workload", || planned_everywhere(&a, &b)).await;
    let of_b: Vec<WorkloadId> = ids().into_iter().filter(|id| a.store.owner(id).is_some()).collect();
    let before: Vec<u32> = of_b.iter().map(|id| a.store.get(id).unwrap().plan.replicas).collect();
    // b leaves a's view: a takes its workloads over.
    a.view.send_modify(|v| v.members.retain(|m| m.identity == "a"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut first_own: Vec<Option<(u32, prescale::control::engine::Serving)>> = vec![None; of_b.len()];
    while first_own.iter().any(Option::is_none) {
        assert!(
            Instant::now() < deadline,
            "a has not taken every workload over within 60 s"
        );
        for (k, id) in of_b.iter().enumerate() {
            let entry = a.store.entry(id).unwrap();
            assert!(
                entry.servable(a.store.max_forecast_age(), chrono::Utc::now()).is_ok(),
                "{id}: served without a gap"
            );
            if first_own[k].is_none() && entry.owner.is_none() {
                let serving = entry.insight.as_ref().unwrap().serving;
                first_own[k] = Some((entry.snapshot.as_ref().unwrap().plan.replicas, serving));
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(a.pipelines.running_ids(), ids(), "a runs every workload");
    for ((id, before), first) in of_b.iter().zip(&before).zip(&first_own) {
        let (replicas, serving) = first.unwrap();
        // Its first own plan is the last owner's (never below it) until its own model is in.
        if serving == prescale::control::engine::Serving::Restored {
            assert!(
                replicas >= *before,
                "{id}: {replicas} < {before} served by the last owner"
            );
        }
    }
    // And a stops taking b's plans: b still answers, but no longer owns them in a's view.
    let taken = a.puller.round().await;
    assert_eq!(taken, 0);
    assert!(of_b.iter().all(|id| a.store.owner(id).is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_not_signed_with_the_deployment_key_are_refused() {
    let (a, b) = two(Signing::from_secret(b"key one"), Signing::from_secret(b"key two")).await;
    // Each plans its own; none crosses over.
    let own_planned = |r: &Replica| {
        r.pipelines
            .running_ids()
            .iter()
            .all(|id| r.store.get(id).is_some() && r.store.owner(id).is_none())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(own_planned(&a) && own_planned(&b)) {
        assert!(Instant::now() < deadline, "own plans within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(a.puller.round().await, 0);
    assert_eq!(b.puller.round().await, 0);
    for id in ids() {
        assert!(
            a.store.owner(&id).is_none() && b.store.owner(&id).is_none(),
            "{id}: nothing taken across"
        );
    }
    let not_a: Vec<WorkloadId> = ids()
        .into_iter()
        .filter(|id| !a.pipelines.running_ids().contains(id))
        .collect();
    assert!(!not_a.is_empty());
    for id in &not_a {
        assert!(
            a.store.servable(id, chrono::Utc::now()).is_err(),
            "{id}: not served by a from an unsigned answer"
        );
    }
    assert!(!a.store.is_ready(), "a waits for plans it cannot trust");
}
