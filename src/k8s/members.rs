//! Membership of sharded replicas, through one `coordination.k8s.io/v1` Lease per replica, and which replica owns
//! which workload (rendezvous hashing).
//!
//! - **Own Lease.** Replica `identity` holds the Lease `<prefix>-<identity>` in its namespace (labelled [`LABEL`]
//!   = prefix, its peer address in the [`ADDRESS_ANNOTATION`]), created at start or taken over when it is there
//!   (a restarted pod of the same name), and renewed every third of its duration, each attempt bounded by that
//!   third and run beside the round's list.
//! - **Others' Leases.** Every period the replica lists the member Leases. As with the leader election
//!   ([`crate::k8s::leader`]), a Lease is live while its `resourceVersion` has changed within its
//!   `leaseDurationSeconds` of when this replica first saw that version, on this replica's own monotonic clock:
//!   clocks of different nodes are never compared. A Lease without a holder (released) is not live. Liveness is
//!   judged only from lists that succeed: while this replica cannot list, it keeps the members it last knew
//!   (not being able to see a peer is no evidence that it died), and after the outage a Lease that has not
//!   changed for its duration is dead.
//! - **Joined.** A replica joins once a list that started after its own Lease was written has succeeded (so that
//!   replicas started together see each other before any claims a workload: without it, each would start every
//!   workload for a period and hand most over again).
//!   This replica counts itself a member while its last successful renewal started less than two thirds
//!   of the duration ago, judged the moment that passes even while a request hangs: it stops claiming workloads
//!   before any other replica may drop it (after the whole duration), so while clocks run at the same rate a
//!   workload never has two owners for long.
//! - **Ownership.** [`owner_of`]: the live member with the highest score, a stable 64-bit hash (FNV-1a with the
//!   murmur3 finalizer) of the member's identity and the workload; every replica computes the same owner from the
//!   same members, and a member joining or leaving moves only its own share.
//! - **Release.** On shutdown the replica deletes its Lease, so the others take its workloads over at their next
//!   list instead of a Lease duration later. A Lease this replica has seen unchanged for [`Settings::gc_after`]
//!   (a pod gone without releasing it) is deleted, guarded by its `resourceVersion`.
//! - **Failure.** When the renewals or the lists have failed without a success for [`Settings::failure_limit`],
//!   the task ends with an error, which ends the process: a pod must not run on unable to ever join (RBAC
//!   missing) while looking healthy, nor go on claiming workloads by members it can no longer see change.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::state::fnv1a;
use crate::store::WorkloadId;

/// The Lease name prefix when none is given.
pub const DEFAULT_PREFIX: &str = "prescale-member";

/// The label every member Lease carries, its value the prefix.
pub const LABEL: &str = "prescale.dev/members";

/// The annotation holding where a member's peer endpoint listens (`host:port`).
pub const ADDRESS_ANNOTATION: &str = "prescale.dev/peer-address";

/// How long a member Lease may stay unchanged before a replica deletes it.
pub const DEFAULT_GC_AFTER: Duration = Duration::from_secs(3600);

/// Who this replica is, where peers reach it, and the Leases' timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Lease names are `<prefix>-<identity>`.
    pub prefix: String,
    /// The Leases' namespace (the pod's).
    pub namespace: String,
    /// This replica's identity (the pod's name): unique among the replicas.
    pub identity: String,
    /// `host:port` of this replica's peer endpoint.
    pub address: String,
    /// `leaseDurationSeconds`: whole seconds, at least 1; renewed every third.
    pub duration: Duration,
    /// How long Lease requests may fail without a success before the task gives up.
    pub failure_limit: Duration,
    /// How long a member Lease may stay unchanged before it is deleted.
    pub gc_after: Duration,
}

impl Settings {
    /// Settings with the default timing: 15 s Leases, a 10-minute failure limit, deletion after an hour.
    pub fn new(prefix: &str, namespace: &str, identity: &str, address: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            namespace: namespace.to_owned(),
            identity: identity.to_owned(),
            address: address.to_owned(),
            duration: Duration::from_secs(15),
            failure_limit: crate::k8s::controller::DEFAULT_FAILURE_LIMIT,
            gc_after: DEFAULT_GC_AFTER,
        }
    }

    /// This replica's Lease.
    pub fn lease_name(&self) -> String {
        format!("{}-{}", self.prefix, self.identity)
    }
}

/// A live member.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    /// Its identity (pod name).
    pub identity: String,
    /// Where its peer endpoint listens; empty when unknown.
    pub address: String,
}

/// What one replica knows about the members at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// This replica's identity.
    pub me: String,
    /// This replica renewed its own Lease within two thirds of the duration.
    pub joined: bool,
    /// Live members by identity; this replica among them only while joined.
    pub members: Vec<Member>,
}

impl View {
    /// One replica on its own: always joined, owning everything.
    pub fn solo(identity: &str) -> View {
        View {
            me: identity.to_owned(),
            joined: true,
            members: vec![Member {
                identity: identity.to_owned(),
                address: String::new(),
            }],
        }
    }

    /// The member that owns `id` (see [`owner_of`]).
    pub fn owner(&self, id: &WorkloadId) -> Option<&Member> {
        owner_of(&self.members, id)
    }

    /// True when this replica is joined and owns `id`.
    pub fn owns(&self, id: &WorkloadId) -> bool {
        self.joined && self.owner(id).is_some_and(|m| m.identity == self.me)
    }
}

/// murmur3's 64-bit finalizer: every input bit flips each output bit with probability one half.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The rendezvous score of `identity` for `id`: stable across processes and releases.
pub fn score(identity: &str, id: &WorkloadId) -> u64 {
    let mut bytes = Vec::with_capacity(identity.len() + id.namespace.len() + id.name.len() + 2);
    bytes.extend_from_slice(identity.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(id.namespace.as_bytes());
    bytes.push(b'/');
    bytes.extend_from_slice(id.name.as_bytes());
    fmix64(fnv1a(&bytes))
}

/// Rendezvous hashing: the member with the highest [`score`] for `id`, ties broken by identity.
pub fn owner_of<'a>(members: &'a [Member], id: &WorkloadId) -> Option<&'a Member> {
    members.iter().max_by(|a, b| {
        score(&a.identity, id)
            .cmp(&score(&b.identity, id))
            .then_with(|| a.identity.cmp(&b.identity))
    })
}

/// The membership a replica's task publishes. Cheap to clone; every clone sees the same view.
#[derive(Debug, Clone)]
pub struct Membership(watch::Receiver<View>);

impl Membership {
    /// The views published on `views`.
    pub fn new(views: watch::Receiver<View>) -> Self {
        Self(views)
    }

    /// One replica on its own ([`View::solo`]), never changing.
    pub fn solo(identity: &str) -> Self {
        Self(watch::channel(View::solo(identity)).1)
    }

    /// The current view.
    pub fn view(&self) -> View {
        self.0.borrow().clone()
    }

    /// Waits for the next change (forever, once nothing publishes any more).
    pub async fn changed(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Registers `members_live` (live members this replica sees, itself included while joined) and `member_joined`
    /// (1 while this replica counts itself a member).
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register_collector(Box::new(Metric(self.clone())));
    }
}

#[derive(Debug)]
struct Metric(Membership);

impl prometheus_client::collector::Collector for Metric {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::gauge::ConstGauge;
        use prometheus_client::metrics::TypedMetric;
        let view = self.0.view();
        for (name, help, value) in [
            (
                "members_live",
                "Live members sharing the workloads, as this replica sees them (itself included while joined)",
                view.members.len() as i64,
            ),
            (
                "member_joined",
                "1 while this replica counts itself a member and plans the workloads it owns, else 0",
                i64::from(view.joined),
            ),
        ] {
            let metric = encoder.encode_descriptor(name, help, None, ConstGauge::<i64>::TYPE)?;
            ConstGauge::new(value).encode(metric)?;
        }
        Ok(())
    }
}

/// A peer's Lease as this replica last saw it.
#[derive(Debug, Clone)]
struct Seen {
    version: String,
    /// When this replica first saw `version`.
    since: Instant,
    holder: String,
    address: String,
    duration: Duration,
}

/// Whether a Lease seen as `seen` is live at `now`.
pub fn live(holder: &str, since: Instant, duration: Duration, now: Instant) -> bool {
    !holder.is_empty() && now.saturating_duration_since(since) < duration
}

/// Runs one replica's membership ([`Members::run`]).
pub struct Members {
    api: Api<Lease>,
    settings: Settings,
    views: watch::Sender<View>,
    seen: BTreeMap<String, Seen>,
    /// The Lease as last written, to renew without reading it first.
    mine: Option<Lease>,
    /// The other live members as of the last successful list.
    others: Vec<Member>,
}

/// The membership task for `settings`, and the views it publishes (not joined, alone, until its first renewal).
pub fn members(client: kube::Client, settings: Settings) -> (Members, Membership) {
    let (views, seen) = watch::channel(View {
        me: settings.identity.clone(),
        joined: false,
        members: Vec::new(),
    });
    let api = Api::namespaced(client, &settings.namespace);
    (
        Members {
            api,
            settings,
            views,
            seen: BTreeMap::new(),
            mine: None,
            others: Vec::new(),
        },
        Membership(seen),
    )
}

impl Members {
    /// Renews this replica's Lease and lists the others' every third of the duration, publishing the view, until
    /// `shutdown` resolves (then it deletes its Lease and returns) or Lease writes or lists have failed for the
    /// failure limit (an error).
    ///
    /// The renewal and the list of a round run side by side, each bounded by the period; while they are under way
    /// the replica stops counting itself a member the moment two thirds of the duration have passed since its last
    /// successful renewal started, and a shutdown is acted on at once.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let period = self.settings.duration / 3;
        let deadline = self.settings.duration * 2 / 3;
        let mut renewed: Option<Instant> = None;
        // When this replica's Lease first existed, and whether a list started after that has succeeded: until one
        // has, replicas that started at the same moment may not have seen each other's Leases yet, and each would
        // claim every workload for a period, start them all, and hand most over again.
        let mut first_renewed: Option<Instant> = None;
        let mut settled = false;
        let mut failing = Failing::default();
        let mut shutdown = std::pin::pin!(shutdown);
        info!(
            lease = %format!("{}/{}", self.settings.namespace, self.settings.lease_name()),
            address = %self.settings.address,
            "members: joining"
        );
        loop {
            let started = Instant::now();
            let round_end = started + period;
            let mine = self.mine.take();
            let round = {
                let renew = bounded(round_end, period, renew(&self.api, &self.settings, mine));
                let list = bounded(round_end, period, list(&self.api, &self.settings));
                let mut renew = std::pin::pin!(renew);
                let mut list = std::pin::pin!(list);
                let (mut renewal, mut listing) = (None, None);
                loop {
                    if renewal.is_some() && listing.is_some() {
                        break renewal.zip(listing);
                    }
                    let leave_at = renewed.map(|at| at + deadline).filter(|_| self.views.borrow().joined);
                    tokio::select! {
                        out = &mut renew, if renewal.is_none() => renewal = Some(out),
                        out = &mut list, if listing.is_none() => listing = Some(out),
                        () = sleep_until_some(leave_at) => self.publish(false),
                        () = &mut shutdown => break None,
                    }
                }
            };
            let Some((renewal, listing)) = round else {
                self.release().await;
                return Ok(());
            };
            match renewal {
                Ok(lease) => {
                    renewed = Some(started);
                    first_renewed.get_or_insert_with(Instant::now);
                    failing.renewal = None;
                    self.mine = Some(lease);
                }
                Err(error) => {
                    failing.renewal.get_or_insert(started);
                    warn!(%error, lease = %self.settings.lease_name(), "members: renewing this replica's Lease failed");
                }
            }
            match listing {
                Ok(leases) => {
                    failing.list = None;
                    settled |= first_renewed.is_some_and(|at| at <= started);
                    self.observe(leases, Instant::now());
                }
                Err(error) => {
                    failing.list.get_or_insert(started);
                    warn!(%error, "members: listing the member Leases failed; keeping the members last seen");
                }
            }
            if let Some(error) = failing.exceeded(self.settings.failure_limit, &self.settings) {
                self.publish(false);
                return Err(error);
            }
            let joined = settled && renewed.is_some_and(|at| at.elapsed() < deadline);
            self.publish(joined);
            let next = match renewed.filter(|_| joined) {
                Some(at) => round_end.min(at + deadline),
                None => round_end,
            };
            tokio::select! {
                _ = tokio::time::sleep_until(next.max(Instant::now())) => {}
                _ = &mut shutdown => {
                    self.release().await;
                    return Ok(());
                }
            }
        }
    }

    /// Publishes the view, saying when the members change.
    fn publish(&self, joined: bool) {
        let mut members = self.others.clone();
        if joined {
            members.push(Member {
                identity: self.settings.identity.clone(),
                address: self.settings.address.clone(),
            });
        }
        members.sort();
        let view = View {
            me: self.settings.identity.clone(),
            joined,
            members,
        };
        let changed = self.views.send_if_modified(|v| {
            if *v == view {
                false
            } else {
                *v = view.clone();
                true
            }
        });
        if changed {
            info!(
                joined,
                members = view.members.len(),
                identities = %view.members.iter().map(|m| m.identity.as_str()).collect::<Vec<_>>().join(","),
                "members: changed"
            );
        }
    }

    /// Notes the listed Leases' versions, decides who is live, and deletes a few long-dead Leases.
    fn observe(&mut self, leases: Vec<Lease>, now: Instant) {
        let own = self.settings.lease_name();
        let mut listed = BTreeMap::new();
        for lease in leases {
            let Some(name) = lease.metadata.name.clone() else {
                continue;
            };
            if name == own {
                continue;
            }
            let version = lease.metadata.resource_version.clone().unwrap_or_default();
            let spec = lease.spec.unwrap_or_default();
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .filter(|s| *s > 0)
                .map_or(self.settings.duration, Duration::from_secs);
            let since = match self.seen.get(&name) {
                Some(s) if s.version == version => s.since,
                _ => now,
            };
            let address = lease
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ADDRESS_ANNOTATION))
                .cloned()
                .unwrap_or_default();
            listed.insert(
                name,
                Seen {
                    version,
                    since,
                    holder: spec.holder_identity.unwrap_or_default(),
                    address,
                    duration,
                },
            );
        }
        self.seen = listed;
        self.others = self
            .seen
            .values()
            .filter(|s| s.holder != self.settings.identity && live(&s.holder, s.since, s.duration, now))
            .map(|s| Member {
                identity: s.holder.clone(),
                address: s.address.clone(),
            })
            .collect();
        let stale: Vec<(String, String)> = self
            .seen
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.since) >= self.settings.gc_after)
            .take(3)
            .map(|(name, s)| (name.clone(), s.version.clone()))
            .collect();
        for (name, version) in stale {
            let api = self.api.clone();
            self.seen.remove(&name);
            tokio::spawn(async move {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        resource_version: Some(version),
                        uid: None,
                    }),
                    ..DeleteParams::default()
                };
                match api.delete(&name, &params).await {
                    Ok(_) => info!(lease = %name, "members: deleted a member Lease left unrenewed"),
                    Err(error) => {
                        warn!(lease = %name, %error, "members: deleting a member Lease left unrenewed failed")
                    }
                }
            });
        }
    }

    /// Deletes this replica's Lease, so the others take its workloads over at once: tried three times within 2 s
    /// at most; a Lease left behind expires after its duration.
    async fn release(&mut self) {
        self.publish(false);
        let name = self.settings.lease_name();
        let params = DeleteParams::default();
        let give_up = Instant::now() + Duration::from_secs(2);
        for attempt in 1..=3 {
            match tokio::time::timeout_at(give_up, self.api.delete(&name, &params)).await {
                Ok(Ok(_)) => {
                    info!(lease = %name, "members: released this replica's Lease");
                    return;
                }
                Ok(Err(kube::Error::Api(status))) if status.code == 404 => {
                    info!(lease = %name, "members: this replica's Lease is gone already");
                    return;
                }
                Ok(Err(error)) if attempt < 3 => {
                    warn!(lease = %name, %error, attempt, "members: releasing this replica's Lease failed; trying again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(Err(error)) => {
                    warn!(lease = %name, %error, "members: releasing this replica's Lease failed; it expires");
                    return;
                }
                Err(_) => {
                    warn!(lease = %name, "members: releasing this replica's Lease took over 2 s; it expires");
                    return;
                }
            }
        }
    }
}

/// Since when the renewals and the lists have been failing without a success.
#[derive(Debug, Default)]
struct Failing {
    renewal: Option<Instant>,
    list: Option<Instant>,
}

impl Failing {
    /// The error that ends the task once renewals or lists have failed for `limit`: a replica that cannot write
    /// its Lease never plans, and one that cannot list would go on with members that may have changed.
    fn exceeded(&self, limit: Duration, settings: &Settings) -> Option<anyhow::Error> {
        let (what, since) = [("written", self.renewal), ("listed", self.list)]
            .into_iter()
            .find_map(|(what, since)| since.filter(|s| s.elapsed() >= limit).map(|s| (what, s)))?;
        Some(anyhow::anyhow!(
            "members: the Leases of {}/{} could not be {what} for {}s (grant get, list, create, update and delete on \
             coordination.k8s.io leases in namespace {} and check the API server can be reached)",
            settings.namespace,
            settings.prefix,
            since.elapsed().as_secs(),
            settings.namespace,
        ))
    }
}

/// `request`, answered by `at` (`period` from its start).
async fn bounded<T>(
    at: Instant,
    period: Duration,
    request: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout_at(at, request).await {
        Ok(result) => result,
        Err(_) => Err(anyhow::anyhow!("no answer within {} ms", period.as_millis())),
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Creates, takes over or renews the Lease of `settings` (`mine`: as last written, to renew without reading it
/// first), returning it as written.
async fn renew(api: &Api<Lease>, settings: &Settings, mine: Option<Lease>) -> anyhow::Result<Lease> {
    let name = settings.lease_name();
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let seconds = i32::try_from(settings.duration.as_secs().max(1)).unwrap_or(i32::MAX);
    let current = match mine {
        Some(lease) => Some(lease),
        None => api.get_opt(&name).await?,
    };
    let mut lease = current.unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(settings.namespace.clone()),
            ..ObjectMeta::default()
        },
        spec: None,
    });
    let creating = lease.metadata.resource_version.is_none();
    lease.metadata.labels.get_or_insert_with(Default::default).extend([
        (LABEL.to_owned(), settings.prefix.clone()),
        ("app.kubernetes.io/managed-by".to_owned(), "prescale".to_owned()),
    ]);
    lease
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(ADDRESS_ANNOTATION.to_owned(), settings.address.clone());
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(settings.identity.as_str()) {
        spec.holder_identity = Some(settings.identity.clone());
        spec.acquire_time = Some(now.clone());
    }
    spec.lease_duration_seconds = Some(seconds);
    spec.renew_time = Some(now);
    Ok(if creating {
        api.create(&PostParams::default(), &lease).await?
    } else {
        api.replace(&name, &PostParams::default(), &lease).await?
    })
}

/// The member Leases of `settings.prefix`.
async fn list(api: &Api<Lease>, settings: &Settings) -> anyhow::Result<Vec<Lease>> {
    let selector = format!("{LABEL}={}", settings.prefix);
    Ok(api.list(&ListParams::default().labels(&selector)).await?.items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: usize) -> WorkloadId {
        WorkloadId {
            namespace: format!("ns{}", i % 4),
            name: format!("w{i}"),
        }
    }

    fn members(names: &[&str]) -> Vec<Member> {
        names
            .iter()
            .map(|n| Member {
                identity: (*n).to_owned(),
                address: String::new(),
            })
            .collect()
    }

    #[test]
    fn rendezvous_is_stable_balanced_and_moves_only_the_share_of_a_member_that_comes_or_goes() {
        let three = members(&["prescale-7d9f-a", "prescale-7d9f-b", "prescale-7d9f-c"]);
        let n = 3000;
        let owners: Vec<&str> = (0..n)
            .map(|i| owner_of(&three, &id(i)).unwrap().identity.as_str())
            .collect();
        // The same on every call (and in every process: no random seed).
        assert!((0..n).all(|i| owner_of(&three, &id(i)).unwrap().identity == owners[i]));
        assert_eq!(
            score("a", &id(1)),
            fmix64(fnv1a(b"a\0ns1/w1")),
            "identity, a zero byte, namespace/name"
        );
        for m in &three {
            let share = owners.iter().filter(|o| **o == m.identity).count();
            assert!((850..=1150).contains(&share), "{}: {share} of {n}", m.identity);
        }
        // One leaves: only its workloads move.
        let two = three[..2].to_vec();
        for (i, before) in owners.iter().enumerate() {
            let after = owner_of(&two, &id(i)).unwrap().identity.as_str();
            if *before != three[2].identity {
                assert_eq!(after, *before, "w{i} moved though its owner stayed");
            }
        }
        // One joins: about a quarter moves, all of it to the newcomer.
        let mut four = three.clone();
        four.push(members(&["prescale-7d9f-d"])[0].clone());
        let moved: Vec<usize> = (0..n)
            .filter(|&i| owner_of(&four, &id(i)).unwrap().identity != owners[i])
            .collect();
        assert!((600..=900).contains(&moved.len()), "{} moved", moved.len());
        assert!(moved
            .iter()
            .all(|&i| owner_of(&four, &id(i)).unwrap().identity == "prescale-7d9f-d"));
        assert!(owner_of(&[], &id(1)).is_none());
    }

    #[test]
    fn a_replica_owns_only_while_joined_and_alone_it_owns_everything() {
        let solo = View::solo("a");
        assert!((0..100).all(|i| solo.owns(&id(i))));
        let view = View {
            me: "a".into(),
            joined: true,
            members: members(&["a", "b"]),
        };
        let mine = (0..100).filter(|&i| view.owns(&id(i))).count();
        assert!((30..=70).contains(&mine), "{mine}");
        let cut_off = View {
            joined: false,
            members: members(&["b"]),
            ..view
        };
        assert!((0..100).all(|i| !cut_off.owns(&id(i))));
        assert!((0..100).all(|i| cut_off.owner(&id(i)).unwrap().identity == "b"));
    }

    #[test]
    fn a_lease_is_live_until_it_stays_unchanged_for_its_duration_and_never_without_a_holder() {
        let t0 = Instant::now();
        let d = Duration::from_secs(15);
        assert!(live("b", t0, d, t0));
        assert!(live("b", t0, d, t0 + Duration::from_secs(14)));
        assert!(!live("b", t0, d, t0 + d));
        assert!(!live("", t0, d, t0), "released");
    }
}
