//! Leader election for the controller's writes: of N replicas, one — the holder of a `coordination.k8s.io/v1`
//! Lease — writes objects' status and managed HPAs; every replica still watches the objects and plans and serves
//! every workload (reads stay local).
//!
//! The protocol is client-go's `leaderelection`, on one Lease (default `prescale-controller` in the pod's namespace):
//!
//! - A replica takes the Lease when there is none, when it has no holder, or when it has expired: unchanged for its
//!   `leaseDurationSeconds` (default 15) since this replica first saw that version of it. Time is measured on this
//!   replica's own monotonic clock from its own observation, never by comparing `renewTime` with the local clock,
//!   so clock skew between nodes cannot make two leaders.
//! - The leader renews every third of the duration (5 s), each attempt bounded by that third. A renewal that finds
//!   another holder, or loses a write race (409 Conflict), ends the leadership at once. A leader that has not
//!   renewed for two thirds of the duration (10 s) steps down, before any other replica may take over (15 s after
//!   it last saw the Lease change), so two replicas never write at once while their clocks run at the same rate.
//! - A replica whose Lease requests keep failing (no other outcome) for [`Settings::failure_limit`] ends the
//!   elector with an error, which ends the controller and the process: a pod must not run on as a follower that
//!   can never lead (RBAC missing) while looking healthy.
//!
//! Writes are gated by [`Leadership::is_leader`], read right before each write; a write already sent when the
//! leadership ends is not recalled (as with client-go).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

/// The Lease's name when none is given.
pub const DEFAULT_LEASE_NAME: &str = "prescale-controller";

/// The Lease's duration when none is given: the longest a dead leader holds up writes.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);

/// Which Lease, held as whom, for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The Lease's name.
    pub name: String,
    /// Its namespace (the pod's).
    pub namespace: String,
    /// This replica's `holderIdentity` (the pod's name): unique among the replicas.
    pub identity: String,
    /// `leaseDurationSeconds`: whole seconds, at least 1.
    pub duration: Duration,
    /// How long Lease requests may fail without another outcome before the elector gives up.
    pub failure_limit: Duration,
}

/// Whether this replica leads, as its elector last decided. Cheap to clone; every clone sees the same decision.
#[derive(Debug, Clone)]
pub struct Leadership(watch::Receiver<bool>);

impl Leadership {
    /// Leadership without an election: a single replica, which always leads.
    pub fn always() -> Self {
        Self(watch::channel(true).1)
    }

    /// True while this replica leads: it may write.
    pub fn is_leader(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until the leadership changes (never, without an election).
    pub async fn changed(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Registers `controller_leader`: 1 while this replica writes, else 0 (across the replicas, the sum is 1 but
    /// for at most a Lease duration after a leader dies).
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register_collector(Box::new(Metric(self.clone())));
    }
}

#[derive(Debug)]
struct Metric(Leadership);

impl prometheus_client::collector::Collector for Metric {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::TypedMetric;
        let gauge = prometheus_client::metrics::gauge::ConstGauge::new(i64::from(self.0.is_leader()));
        let metric = encoder.encode_descriptor(
            "controller_leader",
            "1 while this replica writes the PredictiveAutoscalers' status and managed HPAs (it holds the Lease, or \
             runs without leader election), else 0",
            None,
            prometheus_client::metrics::gauge::ConstGauge::<i64>::TYPE,
        )?;
        gauge.encode(metric)
    }
}

/// Runs the election for one replica ([`Elector::run`]).
pub struct Elector {
    api: Api<Lease>,
    settings: Settings,
    leading: watch::Sender<bool>,
    /// The Lease's resourceVersion last seen, and when this replica first saw it.
    observed: Option<(String, Instant)>,
}

/// An elector for `settings`, and the leadership it decides (not leading until it has taken the Lease).
pub fn elector(client: kube::Client, settings: Settings) -> (Elector, Leadership) {
    let (leading, leadership) = watch::channel(false);
    let api = Api::namespaced(client, &settings.namespace);
    (
        Elector {
            api,
            settings,
            leading,
            observed: None,
        },
        Leadership(leadership),
    )
}

/// What a replica does about the Lease it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// It holds the Lease: renew it.
    Renew,
    /// The Lease has no holder or has expired: take it.
    Take,
    /// Another replica holds it and it has not expired: wait.
    Wait,
}

/// What replica `me` does about `spec`, a Lease unchanged since `observed_at` (when this replica first saw its
/// current version), at `now`; a Lease that states no duration lasts `default_duration`.
pub fn decide(
    spec: Option<&LeaseSpec>,
    me: &str,
    observed_at: Instant,
    now: Instant,
    default_duration: Duration,
) -> Decision {
    let holder = spec.and_then(|s| s.holder_identity.as_deref()).unwrap_or_default();
    if holder == me {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::Take;
    }
    let duration = spec
        .and_then(|s| s.lease_duration_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .map_or(default_duration, Duration::from_secs);
    if now.saturating_duration_since(observed_at) >= duration {
        Decision::Take
    } else {
        Decision::Wait
    }
}

impl Elector {
    /// Takes and renews the Lease for as long as it runs, publishing the leadership. Ends only with an error: when
    /// Lease requests have failed for [`Settings::failure_limit`] without another outcome.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let period = self.settings.duration / 3;
        let deadline = self.settings.duration * 2 / 3;
        // The start of the last attempt that renewed (or took) the Lease, while leading.
        let mut renewed: Option<Instant> = None;
        let mut failing_since: Option<Instant> = None;
        info!(
            lease = %format!("{}/{}", self.settings.namespace, self.settings.name),
            identity = %self.settings.identity,
            "leader election: starting"
        );
        loop {
            let started = Instant::now();
            let budget = match renewed {
                Some(at) => (at + deadline).saturating_duration_since(started).min(period),
                None => period,
            };
            let outcome = if budget.is_zero() {
                None
            } else {
                match tokio::time::timeout(budget, self.attempt()).await {
                    Ok(result) => Some(result),
                    Err(_) => Some(Err(anyhow::anyhow!("no answer within {} ms", budget.as_millis()))),
                }
            };
            match outcome {
                Some(Ok(true)) => {
                    failing_since = None;
                    renewed = Some(started);
                    self.lead(true);
                }
                Some(Ok(false)) => {
                    failing_since = None;
                    renewed = None;
                    self.lead(false);
                }
                Some(Err(error)) => {
                    let since = *failing_since.get_or_insert(started);
                    warn!(%error, lease = %self.settings.name, "leader election: the Lease request failed; retrying");
                    if since.elapsed() >= self.settings.failure_limit {
                        self.lead(false);
                        anyhow::bail!(
                            "leader election: the Lease {}/{} could not be read or written for {}s: {error:#}",
                            self.settings.namespace,
                            self.settings.name,
                            since.elapsed().as_secs()
                        );
                    }
                }
                None => {}
            }
            if renewed.is_some_and(|at| at.elapsed() >= deadline) {
                warn!(
                    lease = %self.settings.name,
                    "leader election: the Lease was not renewed for {} ms; no longer leading",
                    deadline.as_millis()
                );
                renewed = None;
                self.lead(false);
            }
            let next = match renewed {
                Some(at) => (started + period).min(at + deadline),
                None => started + period,
            };
            tokio::time::sleep_until(next.max(Instant::now())).await;
        }
    }

    /// Publishes the leadership, saying when it changes.
    fn lead(&self, leading: bool) {
        let changed = self
            .leading
            .send_if_modified(|l| std::mem::replace(l, leading) != leading);
        if changed {
            info!(
                identity = %self.settings.identity,
                lease = %self.settings.name,
                "leader election: {}",
                if leading {
                    "leading: this replica writes status and managed HPAs"
                } else {
                    "following: another replica writes status and managed HPAs"
                }
            );
        }
    }

    /// Notes `lease`'s version, and when it was first seen.
    fn observe(&mut self, lease: &Lease, now: Instant) {
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        if self.observed.as_ref().is_none_or(|(seen, _)| *seen != version) {
            self.observed = Some((version, now));
        }
    }

    /// One read, and the write it calls for: true when this replica holds the Lease afterwards.
    async fn attempt(&mut self) -> anyhow::Result<bool> {
        let now = Instant::now();
        let name = self.settings.name.clone();
        let Some(lease) = self.api.get_opt(&name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(None, true)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created, now);
                    Ok(true)
                }
                // Another replica created it first.
                Err(kube::Error::Api(status)) if status.is_already_exists() || status.is_conflict() => Ok(false),
                Err(error) => Err(error.into()),
            };
        };
        self.observe(&lease, now);
        let observed_at = self.observed.as_ref().map_or(now, |(_, at)| *at);
        let decision = decide(
            lease.spec.as_ref(),
            &self.settings.identity,
            observed_at,
            now,
            self.settings.duration,
        );
        if decision == Decision::Wait {
            return Ok(false);
        }
        let mut next = lease.clone();
        next.spec = Some(self.spec(lease.spec.as_ref(), decision == Decision::Take));
        match self.api.replace(&name, &PostParams::default(), &next).await {
            Ok(written) => {
                self.observe(&written, now);
                Ok(true)
            }
            // Someone wrote it since the read (another replica took it): not ours.
            Err(kube::Error::Api(status)) if status.is_conflict() => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// The spec this replica writes: a renewal of `previous`, or (`take`) a new term.
    fn spec(&self, previous: Option<&LeaseSpec>, take: bool) -> LeaseSpec {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        let taken_from_another = take && previous.is_some();
        LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: Some(self.settings.duration.as_secs().try_into().unwrap_or(i32::MAX)),
            acquire_time: if take {
                Some(now.clone())
            } else {
                previous.and_then(|p| p.acquire_time.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if taken_from_another {
                transitions + 1
            } else {
                transitions
            }),
            ..previous.cloned().unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(seconds),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_is_taken_only_when_free_or_unchanged_for_its_duration() {
        let seen = Instant::now();
        let default = Duration::from_secs(15);
        let at = |secs: u64| seen + Duration::from_secs(secs);
        // Its own: renewed.
        assert_eq!(
            decide(Some(&held_by("a", 15)), "a", seen, at(100), default),
            Decision::Renew
        );
        // Another's: waited for until it has not changed for its own duration, as this replica measured it.
        let other = held_by("b", 10);
        assert_eq!(decide(Some(&other), "a", seen, at(9), default), Decision::Wait);
        assert_eq!(decide(Some(&other), "a", seen, at(10), default), Decision::Take);
        // No duration stated: the default.
        let undated = LeaseSpec {
            holder_identity: Some("b".into()),
            ..Default::default()
        };
        assert_eq!(decide(Some(&undated), "a", seen, at(14), default), Decision::Wait);
        assert_eq!(decide(Some(&undated), "a", seen, at(15), default), Decision::Take);
        // Released, or no spec at all: taken at once.
        assert_eq!(decide(Some(&held_by("", 15)), "a", seen, seen, default), Decision::Take);
        assert_eq!(decide(None, "a", seen, seen, default), Decision::Take);
    }

    #[test]
    fn the_renew_time_is_not_compared_with_the_local_clock() {
        // A renewTime far in the past (the holder's clock is behind) does not make the Lease expired: only the
        // time since this replica saw it change counts.
        let seen = Instant::now();
        let spec = LeaseSpec {
            renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
            ..held_by("b", 15)
        };
        assert_eq!(
            decide(
                Some(&spec),
                "a",
                seen,
                seen + Duration::from_secs(1),
                DEFAULT_LEASE_DURATION
            ),
            Decision::Wait
        );
    }

    #[tokio::test]
    async fn leadership_without_an_election_always_leads_and_never_changes() {
        let mut always = Leadership::always();
        assert!(always.is_leader());
        let changed = tokio::time::timeout(Duration::from_millis(50), always.changed()).await;
        assert!(changed.is_err(), "no change ever comes");
    }
}
