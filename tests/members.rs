//! Lease membership of sharded replicas against the in-memory kube-apiserver stand-in (no real one can run here):
//! real kube clients, one door per replica, short Leases.

mod support;

use std::time::{Duration, Instant};

use prescale::k8s::members::{self, Membership, Settings, View};
use prescale::store::WorkloadId;
use support::apiserver::{ApiServer, Kind};

const LEASE: Duration = Duration::from_secs(2);

fn settings(name: &str) -> Settings {
    let mut s = Settings::new(
        "prescale-member",
        "prescale",
        name,
        &format!("10.0.0.{}:8080", name.len()),
    );
    s.duration = LEASE;
    s
}

/// A running member: its view, and the means to stop it with (release) or without (abort) its Lease.
struct Running {
    membership: Membership,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(cluster: &ApiServer, settings: Settings) -> Running {
    let client = cluster.client_as(&settings.identity).await;
    let (members, membership) = members::members(client, settings);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(members.run(async move {
        let _ = stopped.await;
    }));
    Running { membership, stop, task }
}

fn identities(view: &View) -> Vec<String> {
    view.members.iter().map(|m| m.identity.clone()).collect()
}

/// Waits until `done(view)` holds for `who` (10 s at most); returns how long it took.
async fn until(who: &Running, what: &str, done: impl Fn(&View) -> bool) -> Duration {
    let started = Instant::now();
    while !done(&who.membership.view()) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not within 10 s: {what}; view {:?}",
            who.membership.view()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Members `a` and `bb`, once both are joined and see each other.
async fn pair(cluster: &ApiServer) -> (Running, Running) {
    let a = start(cluster, settings("a")).await;
    let b = start(cluster, settings("bb")).await;
    until(&a, "both", |v| identities(v) == ["a", "bb"]).await;
    until(&b, "both", |v| v.joined && identities(v) == ["a", "bb"]).await;
    (a, b)
}

fn ids(n: usize) -> Vec<WorkloadId> {
    (0..n)
        .map(|i| WorkloadId {
            namespace: format!("ns{}", i % 4),
            name: format!("w{i}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_converge_agree_on_every_owner_and_a_released_lease_is_dropped_at_once() {
    let cluster = ApiServer::start().await;
    let replicas = [
        start(&cluster, settings("a")).await,
        start(&cluster, settings("bb")).await,
        start(&cluster, settings("ccc")).await,
    ];
    for r in &replicas {
        until(r, "all three joined", |v| {
            v.joined && identities(v) == ["a", "bb", "ccc"]
        })
        .await;
    }
    let views: Vec<View> = replicas.iter().map(|r| r.membership.view()).collect();
    assert_eq!(
        views[0].members[1].address, "10.0.0.2:8080",
        "addresses travel in the Leases"
    );
    let lease = cluster.get(Kind::Lease, "prescale", "prescale-member-bb").unwrap();
    assert_eq!(lease["metadata"]["labels"][members::LABEL], "prescale-member");
    assert_eq!(lease["spec"]["holderIdentity"], "bb");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 2);
    // Every workload has exactly one owner, the same in every view.
    for id in ids(3000) {
        let owners: Vec<&str> = views.iter().map(|v| v.owner(&id).unwrap().identity.as_str()).collect();
        assert!(owners.iter().all(|o| *o == owners[0]), "{id}: {owners:?}");
        assert_eq!(views.iter().filter(|v| v.owns(&id)).count(), 1, "{id}");
    }
    // A member that stops releases its Lease: the others drop it at their next list, well before its duration.
    let [a, b, c] = replicas;
    b.stop.send(()).unwrap();
    b.task.await.unwrap().unwrap();
    assert!(
        cluster.get(Kind::Lease, "prescale", "prescale-member-bb").is_none(),
        "deleted"
    );
    let took = until(&a, "bb dropped", |v| identities(v) == ["a", "ccc"]).await;
    assert!(
        took < LEASE,
        "a released Lease is dropped at the next list, not after its duration: {took:?}"
    );
    until(&c, "bb dropped", |v| identities(v) == ["a", "ccc"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_started_together_see_each_other_before_any_claims_a_workload() {
    let cluster = ApiServer::start().await;
    let mut replicas = Vec::new();
    let mut seen = Vec::new();
    for name in ["a", "bb", "ccc"] {
        // A 3 s Lease: a second of margin between one member's first list and another's first renewal, on a
        // loaded machine too.
        let mut s = settings(name);
        s.duration = Duration::from_secs(3);
        let r = start(&cluster, s).await;
        // Every view it publishes, as it publishes them.
        let mut membership = r.membership.clone();
        let (tx, rx) = std::sync::mpsc::channel::<View>();
        tokio::spawn(async move {
            loop {
                membership.changed().await;
                if tx.send(membership.view()).is_err() {
                    return;
                }
            }
        });
        replicas.push(r);
        seen.push(rx);
    }
    for r in &replicas {
        until(r, "all three joined", |v| {
            v.joined && identities(v) == ["a", "bb", "ccc"]
        })
        .await;
    }
    for (name, views) in ["a", "bb", "ccc"].iter().zip(&seen) {
        let views: Vec<View> = views.try_iter().collect();
        assert!(views.iter().any(|v| v.joined), "{name}: {views:?}");
        for v in &views {
            assert!(
                !v.joined || v.members.len() == 3,
                "{name} claimed workloads while seeing only {:?}",
                identities(v)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_dies_without_releasing_is_dropped_after_its_lease_duration_and_not_before() {
    let cluster = ApiServer::start().await;
    let a = start(&cluster, settings("a")).await;
    let b = start(&cluster, settings("bb")).await;
    until(&a, "both", |v| identities(v) == ["a", "bb"]).await;
    b.task.abort();
    let died = Instant::now();
    until(&a, "bb dropped", |v| identities(v) == ["a"]).await;
    let after = died.elapsed();
    // Its last renewal was at most a period before it died; it is dropped once unchanged for the duration.
    assert!(
        after >= LEASE - LEASE / 3 - Duration::from_millis(100),
        "dropped too soon: {after:?}"
    );
    assert!(after < LEASE + LEASE, "dropped too late: {after:?}");
    assert!(a.membership.view().joined);
    drop(a.stop);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cut_off_from_the_api_stops_owning_before_the_others_drop_it_and_rejoins() {
    let cluster = ApiServer::start().await;
    let (a, b) = pair(&cluster).await;
    cluster.cut_off("bb", true);
    let cut = Instant::now();
    until(&b, "bb leaves", |v| !v.joined).await;
    let left = cut.elapsed();
    until(&a, "bb dropped", |v| identities(v) == ["a"]).await;
    let dropped = cut.elapsed();
    assert!(
        left < dropped,
        "bb stopped owning ({left:?}) before a took over ({dropped:?})"
    );
    assert!(left <= LEASE * 2 / 3 + Duration::from_millis(200), "{left:?}");
    // bb cannot list: it keeps the members it last saw, itself aside (it owns nothing), so it still knows a.
    let seen = b.membership.view();
    assert_eq!(identities(&seen), ["a"]);
    assert!(ids(100)
        .iter()
        .all(|id| !seen.owns(id) && seen.owner(id).unwrap().identity == "a"));
    cluster.cut_off("bb", false);
    until(&b, "bb rejoins", |v| v.joined && identities(v) == ["a", "bb"]).await;
    until(&a, "bb back", |v| identities(v) == ["a", "bb"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_requests_hang_stops_owning_in_time_and_still_stops_at_once() {
    let cluster = ApiServer::start().await;
    let (a, b) = pair(&cluster).await;
    // The API server takes bb's requests and never answers: bb's last renewal started before this.
    cluster.hang("bb", true);
    let hung = Instant::now();
    until(&b, "bb leaves", |v| !v.joined).await;
    let left = hung.elapsed();
    assert!(
        left <= LEASE * 2 / 3 + Duration::from_millis(200),
        "bb claimed workloads {left:?} after its last renewal could have started (two thirds of {LEASE:?} at most)"
    );
    until(&a, "bb dropped", |v| identities(v) == ["a"]).await;
    assert!(left < hung.elapsed(), "bb stopped owning before a took over");
    // A shutdown is acted on though the round's requests hang: the release is given up after 2 s.
    let stopping = Instant::now();
    b.stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(4), b.task)
        .await
        .expect("stops while its requests hang")
        .unwrap()
        .unwrap();
    assert!(
        stopping.elapsed() < Duration::from_millis(2500),
        "{:?}",
        stopping.elapsed()
    );
    drop(a.stop);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_renews_but_cannot_list_gives_up_after_the_failure_limit() {
    let cluster = ApiServer::start().await;
    let a = start(&cluster, settings("a")).await;
    let mut s = settings("bb");
    s.failure_limit = Duration::from_secs(2);
    let b = start(&cluster, s).await;
    until(&b, "both", |v| v.joined && identities(v) == ["a", "bb"]).await;
    // bb still renews its Lease, but cannot see members come and go: it must not plan on them for ever.
    cluster.cut_off_lists("bb", true);
    let error = tokio::time::timeout(Duration::from_secs(6), b.task)
        .await
        .expect("gives up within the failure limit and a round")
        .unwrap()
        .expect_err("an error ends the process");
    let message = error.to_string();
    assert!(message.contains("could not be listed"), "{message}");
    assert!(
        message.contains("coordination.k8s.io leases in namespace prescale"),
        "{message}"
    );
    assert!(!b.membership.view().joined, "no longer claims workloads");
    drop(a.stop);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_left_unrenewed_is_deleted_and_a_restarted_member_takes_its_own_lease_over() {
    let cluster = ApiServer::start().await;
    let mut s = settings("a");
    s.gc_after = Duration::from_secs(3);
    let a = start(&cluster, s).await;
    let ghost = start(&cluster, settings("ghost")).await;
    until(&a, "both", |v| identities(v) == ["a", "ghost"]).await;
    ghost.task.abort();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.get(Kind::Lease, "prescale", "prescale-member-ghost").is_some() {
        assert!(Instant::now() < deadline, "the unrenewed Lease is not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(identities(&a.membership.view()), ["a"]);
    // A pod of the same name starting again takes over the Lease it finds.
    a.task.abort();
    let again = start(&cluster, settings("a")).await;
    until(&again, "rejoined", |v| v.joined && identities(v) == ["a"]).await;
    assert_eq!(
        cluster.get(Kind::Lease, "prescale", "prescale-member-a").unwrap()["spec"]["holderIdentity"],
        "a"
    );
    drop((a.stop, again.stop));
}
