//! The PredictiveAutoscaler controller: watches the objects (in every namespace, or one) and runs a workload for
//! each, beside the workload file's.
//!
//! - An added or changed object is checked with the workload file's validator ([`crate::config::check_spec`]);
//!   a valid one runs (its demand source built like the file's, by the composition root's [`HistoryFactory`]) and
//!   a change replaces only its own pipeline ([`Pipelines::apply`]); an invalid one serves nothing and says why in
//!   its `Ready` condition (`InvalidSpec`, one line per field and its fix).
//! - A deleted object's workload stops and is no longer served; its managed HPA is left to the garbage collector
//!   (it carries a controller ownerReference to the object).
//! - Managed HPAs follow their objects: on each change of an object, and every [`Settings::hpa_resync`] for all of
//!   them at once (one list of the HPAs, writes through the global bucket), prescale's HPA is created, restored
//!   after an edit or a deletion, deleted when the object sets `hpa.managed: false`, or deleted when another HPA
//!   scales the same target ([`managed_hpa::decide`]).
//! - After every (re)list of the watch, workloads whose object is gone are stopped: a deletion missed while the
//!   watch was down is caught there.
//! - An object with the namespace and name of a workload of the workload file is not run (`Ready=False`,
//!   `Conflict`): the file's workload keeps running.
//! - Each object's status is written from the plan store, as [`crate::k8s::status`] bounds it.
//! - With several replicas, one writes ([`crate::k8s::leader`]): every replica watches the objects and runs and
//!   serves every workload, but only the holder of the Lease writes status and managed HPAs. A follower keeps what
//!   the leader wrote (the status it watches), so once it leads it writes only what changed, after checking every
//!   managed HPA first.
//! - With sharded replicas ([`Controller::with_membership`]) there is no election: every replica watches every
//!   object, and each writes the status and managed HPA of the objects it owns
//!   ([`crate::k8s::members::View::owns`]), the plans of
//!   which it makes. The others keep what the owner wrote, as a follower does, so a replica that takes an object
//!   over checks its HPA first and then writes only what changed.
//! - Readiness waits for the first list ([`FIRST_LIST`]): a new replica answers only once it knows every object's
//!   workload (and then waits for their first cycles, like the workload file's); with no workload at all, a
//!   replica whose list is done is ready.
//!
//! Objects are read as untyped JSON so that a spec the typed struct cannot hold is still reported field by field
//! instead of failing the whole list.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::config::WorkloadConfig;
use crate::history::History;
use crate::k8s::leader::{self, Leadership};
use crate::k8s::managed_hpa::{self, Found, Owner, Step};
use crate::k8s::members::{Membership, View};
use crate::k8s::status::{self, HpaState, Outcome, TokenBucket, WriteLimits, Written};
use crate::pipeline::{Pipelines, Workload};
use crate::store::{PlanStore, WorkloadId};
use crate::workload::{PredictiveAutoscaler, PredictiveAutoscalerStatus};

/// Builds a workload's demand source from its settings (the composition root's, shared with the workload file).
pub type HistoryFactory = Arc<dyn Fn(&WorkloadConfig) -> anyhow::Result<Arc<dyn History>> + Send + Sync>;

/// What readiness waits for until the controller's first list of objects is done (see [`PlanStore::hold`]): the
/// workloads of the objects listed are then known, and readiness waits for their first cycles.
pub const FIRST_LIST: &str = "the PredictiveAutoscaler controller's first list of objects";

/// How long the watch may fail without a single success before the controller gives up and ends the process
/// (a pod whose controller cannot see its objects must not look healthy).
pub const DEFAULT_FAILURE_LIMIT: Duration = Duration::from_secs(600);

/// How often every managed HPA is checked against its object: an HPA someone edited or deleted is restored, one
/// whose object no longer asks for it is deleted, and one that another HPA for the same target now rivals is
/// deleted, within this time (or as fast as the global write bucket allows). Each pass is one list of the HPAs.
pub const DEFAULT_HPA_RESYNC: Duration = Duration::from_secs(30);

/// Two watch errors further apart than this belong to different failures (kube's watcher backs off at most 30 s
/// between attempts; a request may take up to 30 s more to fail).
const STREAK_GAP: Duration = Duration::from_secs(120);

/// What the controller watches and how it writes.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Watch this namespace only; every namespace when `None`.
    pub namespace: Option<String>,
    /// How often status is written.
    pub limits: WriteLimits,
    /// See [`DEFAULT_FAILURE_LIMIT`].
    pub failure_limit: Duration,
    /// How often every managed HPA is checked against its object ([`DEFAULT_HPA_RESYNC`]).
    pub hpa_resync: Duration,
    /// Elect one writer among the replicas through this Lease; `None`: this replica always writes (one replica).
    pub election: Option<leader::Settings>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespace: None,
            limits: WriteLimits::default(),
            failure_limit: DEFAULT_FAILURE_LIMIT,
            hpa_resync: DEFAULT_HPA_RESYNC,
            election: None,
        }
    }
}

/// The controller; [`Controller::run`] runs it until its watch fails for good.
pub struct Controller {
    client: kube::Client,
    pipelines: Arc<Pipelines>,
    store: Arc<PlanStore>,
    clock: Clock,
    reserved: BTreeSet<WorkloadId>,
    history: HistoryFactory,
    settings: Settings,
    /// The election [`Controller::run`] starts, when there is one.
    elector: Option<leader::Elector>,
    /// Which objects this replica writes.
    writer: Writer,
}

/// Which objects a replica writes the status and managed HPA of.
#[derive(Debug, Clone)]
enum Writer {
    /// Every object, while it leads (always, without an election).
    Leader(Leadership),
    /// The objects it owns among the sharded replicas.
    Owner(Membership),
}

impl Writer {
    /// What this replica writes now, read once for a pass over many objects.
    fn now(&self) -> Writes {
        match self {
            Writer::Leader(leadership) => Writes::All(leadership.is_leader()),
            Writer::Owner(membership) => Writes::Owned(membership.view()),
        }
    }

    /// True when this replica writes `id`'s status and HPA now.
    fn writes(&self, id: &WorkloadId) -> bool {
        self.now().writes(id)
    }

    /// Waits until what this replica writes may have changed.
    async fn changed(&mut self) {
        match self {
            Writer::Leader(leadership) => leadership.changed().await,
            Writer::Owner(membership) => membership.changed().await,
        }
    }
}

/// What a replica writes at one moment ([`Writer::now`]).
enum Writes {
    /// Every object, or none.
    All(bool),
    /// The objects this replica owns in the view.
    Owned(View),
}

impl Writes {
    /// True when `id`'s status and HPA are this replica's to write.
    fn writes(&self, id: &WorkloadId) -> bool {
        match self {
            Writes::All(all) => *all,
            Writes::Owned(view) => view.owns(id),
        }
    }

    /// True when some object may be.
    fn any(&self) -> bool {
        match self {
            Writes::All(all) => *all,
            Writes::Owned(view) => view.joined,
        }
    }
}

/// What the controller knows of one object.
struct Known {
    uid: String,
    generation: Option<i64>,
    outcome: Outcome,
    /// `None` until this replica has reconciled the HPA as its writer (another replica's to write: left to it).
    hpa: Option<HpaState>,
    /// What this replica last wrote; where another writes it, what that one last wrote (the status watched).
    written: Option<Written>,
    /// The conditions last written (or found on the object), whose transition times carry over.
    conditions: Vec<Condition>,
}

impl Controller {
    /// A controller running workloads in `pipelines` (which publish into `store`), building their demand sources
    /// with `history`; `reserved` are the workload file's workloads, which objects may not replace. `store` is not
    /// ready until the controller's first list is done ([`FIRST_LIST`]).
    pub fn new(
        client: kube::Client,
        pipelines: Arc<Pipelines>,
        store: Arc<PlanStore>,
        clock: Clock,
        reserved: BTreeSet<WorkloadId>,
        history: HistoryFactory,
        settings: Settings,
    ) -> Self {
        store.hold(FIRST_LIST);
        let (elector, leadership) = match &settings.election {
            Some(election) => {
                let (elector, leadership) = leader::elector(client.clone(), election.clone());
                (Some(elector), leadership)
            }
            None => (None, Leadership::always()),
        };
        Self {
            client,
            pipelines,
            store,
            clock,
            reserved,
            history,
            settings,
            elector,
            writer: Writer::Leader(leadership),
        }
    }

    /// Shards the writes among the replicas of `membership`: this replica writes the status and managed HPAs of
    /// the objects it owns, with no election (the settings' is dropped).
    pub fn with_membership(mut self, membership: Membership) -> Self {
        self.elector = None;
        self.writer = Writer::Owner(membership);
        self
    }

    /// Whether this replica writes status and managed HPAs, as the election decides it; `None` when sharded.
    pub fn leadership(&self) -> Option<Leadership> {
        match &self.writer {
            Writer::Leader(leadership) => Some(leadership.clone()),
            Writer::Owner(_) => None,
        }
    }

    /// Watches the objects and keeps their workloads, HPAs and status in step. Ends only with an error: when the
    /// watch has failed for [`Settings::failure_limit`] without a success, or the election failed
    /// ([`leader::Elector::run`]).
    pub async fn run(mut self) -> anyhow::Result<()> {
        // The election runs on its own task, so that renewing the Lease never waits for a long reconcile here; it
        // ends with the controller.
        let mut election = self.elector.take().map(|e| Aborting(tokio::spawn(e.run())));
        let mut writer = self.writer.clone();
        let resource = ApiResource::erase::<PredictiveAutoscaler>(&());
        let api: Api<DynamicObject> = match &self.settings.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        };
        let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
        let mut known: BTreeMap<WorkloadId, Known> = BTreeMap::new();
        let mut listing: Option<BTreeSet<WorkloadId>> = None;
        let limits = self.settings.limits;
        let mut bucket = TokenBucket::new(limits.rate, limits.burst, Instant::now());
        let mut tick = tokio::time::interval(limits.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing_since: Option<Instant> = None;
        let mut last_error: Option<Instant> = None;
        // The first pass over the HPAs comes one period after the start: the first list reconciles every object.
        let mut last_pass = Instant::now();
        let mut pass_unfinished = false;
        info!(namespace = ?self.settings.namespace, "watching PredictiveAutoscalers");
        loop {
            tokio::select! {
                ended = async {
                    match election.as_mut() {
                        Some(task) => (&mut task.0).await,
                        None => std::future::pending().await,
                    }
                } => {
                    return Err(match ended {
                        Ok(Ok(())) => anyhow::anyhow!("leader election ended"),
                        Ok(Err(error)) => error,
                        Err(error) => anyhow::Error::from(error).context("leader election panicked"),
                    });
                }
                _ = writer.changed() => {
                    // What another replica writes now is checked again before this one writes it: a new leader
                    // or owner checks the managed HPAs at the next tick, before it writes their status.
                    let writes = writer.now();
                    for (id, k) in known.iter_mut() {
                        if matches!(k.outcome, Outcome::Running(_)) && !writes.writes(id) {
                            k.hpa = None;
                        }
                    }
                    if writes.any() {
                        pass_unfinished = true;
                    }
                }
                event = events.next() => match event {
                    None => anyhow::bail!("the PredictiveAutoscaler watch ended"),
                    Some(Err(error)) => {
                        // Errors further apart than the watcher's longest backoff plus a request timeout are not
                        // one failure: the watch worked in between (a resumed watch sends nothing until a change).
                        let now = Instant::now();
                        if last_error.is_some_and(|last: Instant| now.duration_since(last) > STREAK_GAP) {
                            failing_since = None;
                        }
                        last_error = Some(now);
                        let since = *failing_since.get_or_insert(now);
                        warn!(%error, "watching PredictiveAutoscalers failed; retrying");
                        if since.elapsed() >= self.settings.failure_limit {
                            anyhow::bail!(
                                "watching PredictiveAutoscalers has failed for {}s: {error}",
                                since.elapsed().as_secs()
                            );
                        }
                    }
                    Some(Ok(event)) => {
                        // `Init` comes before the list is even tried: only what the API server sent proves contact.
                        if !matches!(event, Event::Init) {
                            failing_since = None;
                        }
                        match event {
                            Event::Init => listing = Some(BTreeSet::new()),
                            Event::InitApply(object) => {
                                if let (Some(listed), Some(id)) = (listing.as_mut(), id_of(&object)) {
                                    listed.insert(id);
                                }
                                self.reconcile(&object, true, &mut known, &resource, &mut bucket).await;
                            }
                            Event::InitDone => {
                                let listed = listing.take().unwrap_or_default();
                                let gone: Vec<WorkloadId> =
                                    known.keys().filter(|id| !listed.contains(*id)).cloned().collect();
                                for id in gone {
                                    self.forget(&id, &mut known).await;
                                }
                                // Every listed valid object's workload is in the store now: readiness waits for
                                // their first cycles, and with none at all the pod is ready.
                                self.store.release(FIRST_LIST);
                            }
                            Event::Apply(object) => {
                                self.reconcile(&object, false, &mut known, &resource, &mut bucket).await
                            }
                            Event::Delete(object) => {
                                if let Some(id) = id_of(&object) {
                                    self.forget(&id, &mut known).await;
                                }
                            }
                        }
                    }
                },
                _ = tick.tick() => {
                    if pass_unfinished || last_pass.elapsed() >= self.settings.hpa_resync {
                        pass_unfinished = !self.check_hpas(&mut known, &mut bucket).await;
                        last_pass = Instant::now();
                    }
                    self.write_statuses(&mut known, &resource, &mut bucket).await
                }
            }
        }
    }

    /// Runs, replaces or stops `object`'s workload, and brings its HPA and status in step. Unless `resync` (a
    /// relist), an object whose generation was already reconciled successfully is left be: its own status writes
    /// come back as changes.
    async fn reconcile(
        &self,
        object: &DynamicObject,
        resync: bool,
        known: &mut BTreeMap<WorkloadId, Known>,
        resource: &ApiResource,
        bucket: &mut TokenBucket,
    ) {
        let Some(id) = id_of(object) else { return };
        let uid = object.uid().unwrap_or_default();
        let generation = object.metadata.generation;
        let leading = self.writer.writes(&id);
        if let Some(k) = known.get_mut(&id) {
            if !leading && k.uid == uid {
                observe(k, object);
            }
            // A status write (ours, or the leader's) or a metadata change: nothing to do.
            let settled =
                !matches!(k.hpa, Some(HpaState::Failed(_))) && !matches!(k.outcome, Outcome::SourceUnavailable(_));
            if !resync && settled && k.uid == uid && k.generation == generation {
                return;
            }
        }
        let outcome = if self.reserved.contains(&id) {
            Outcome::Conflict
        } else {
            let spec = object.data.get("spec").cloned().unwrap_or(serde_json::Value::Null);
            match crate::config::check_spec(&id.namespace, &id.name, &spec) {
                Err(problems) => Outcome::InvalidSpec(
                    problems
                        .iter()
                        .map(|p| {
                            if p.field.is_empty() {
                                p.message.clone()
                            } else {
                                format!("{}: {}", p.field, p.message)
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
                Ok(config) => match (self.history)(&config) {
                    Err(error) => Outcome::SourceUnavailable(format!("{error:#}")),
                    Ok(history) => {
                        let applied = self
                            .pipelines
                            .apply(Workload {
                                config: config.clone(),
                                history,
                            })
                            .await;
                        info!(workload = %id, ?applied, "PredictiveAutoscaler applied");
                        Outcome::Running(Box::new(config))
                    }
                },
            }
        };
        if !matches!(outcome, Outcome::Running(_) | Outcome::Conflict) && self.pipelines.config(&id).is_some() {
            self.pipelines.remove(&id).await;
            info!(workload = %id, "PredictiveAutoscaler no longer valid: stopped");
        }
        let hpa = match &outcome {
            Outcome::Running(config) if leading => {
                let owner = Owner {
                    name: id.name.clone(),
                    uid: uid.clone(),
                };
                Some(managed_hpa::reconcile(&self.client, config, &owner).await)
            }
            // Another replica's to write; this one checks it when it writes it.
            Outcome::Running(_) => None,
            _ => Some(HpaState::Unmanaged),
        };
        if let Some(HpaState::Conflict(message) | HpaState::Failed(message)) = &hpa {
            warn!(workload = %id, "{message}");
        }
        let entry = known.entry(id.clone()).or_insert_with(|| Known {
            uid: uid.clone(),
            generation: None,
            outcome: outcome.clone(),
            hpa: None,
            written: None,
            conditions: conditions_of(object),
        });
        if entry.uid != uid {
            // The object was deleted and made again while the watch was down: what was written is gone with it.
            entry.written = None;
            entry.conditions = conditions_of(object);
        }
        if !leading && entry.written.is_none() {
            observe(entry, object);
        }
        entry.uid = uid;
        entry.generation = generation;
        entry.outcome = outcome;
        entry.hpa = hpa;
        self.write_one(&id, entry, resource, bucket).await;
    }

    /// Stops a deleted object's workload (unless it is the workload file's) and forgets the object.
    async fn forget(&self, id: &WorkloadId, known: &mut BTreeMap<WorkloadId, Known>) {
        known.remove(id);
        if !self.reserved.contains(id) && self.pipelines.remove(id).await {
            info!(workload = %id, "PredictiveAutoscaler deleted: stopped");
        }
    }

    /// The periodic pass over managed HPAs: lists the HPAs of the watched namespaces at once and brings each
    /// running object's in step ([`managed_hpa::decide`]), each write taking a token of the global bucket. False
    /// when the bucket ran out first: the pass goes on at the next tick, from a new list.
    async fn check_hpas(&self, known: &mut BTreeMap<WorkloadId, Known>, bucket: &mut TokenBucket) -> bool {
        let now = self.writer.now();
        let writes = |id: &WorkloadId, k: &Known| matches!(k.outcome, Outcome::Running(_)) && now.writes(id);
        if !known.iter().any(|(id, k)| writes(id, k)) {
            return true;
        }
        let api: Api<HorizontalPodAutoscaler> = match &self.settings.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let hpas = match api.list(&Default::default()).await {
            Ok(list) => list.items,
            Err(error) => {
                warn!(%error, "listing HorizontalPodAutoscalers to check the managed ones failed; retrying");
                // At the next tick while a new leader's objects wait for this pass to write their status, else at
                // the next pass.
                return !known.iter().any(|(id, k)| writes(id, k) && k.hpa.is_none());
            }
        };
        let mut by_namespace: BTreeMap<&str, Vec<&HorizontalPodAutoscaler>> = BTreeMap::new();
        for hpa in &hpas {
            by_namespace
                .entry(hpa.metadata.namespace.as_deref().unwrap_or_default())
                .or_default()
                .push(hpa);
        }
        for (id, k) in known.iter_mut() {
            let Outcome::Running(config) = &k.outcome else { continue };
            if !now.writes(id) {
                continue;
            }
            let owner = Owner {
                name: id.name.clone(),
                uid: k.uid.clone(),
            };
            let want = managed_hpa::desired(config, &owner);
            let here = by_namespace.get(id.namespace.as_str()).map_or(&[][..], Vec::as_slice);
            let named = here
                .iter()
                .copied()
                .find(|h| h.metadata.name.as_deref() == Some(&id.name));
            let rival = want
                .as_ref()
                .and_then(|w| managed_hpa::rival(here.iter().copied(), &id.name, w));
            let step = managed_hpa::decide(want, &owner, &id.name, Found { named, rival });
            let state = match step {
                Step::Keep(state) => state,
                step => {
                    if !self.writer.writes(id) {
                        continue;
                    }
                    if !bucket.try_take(Instant::now()) {
                        return false;
                    }
                    let what = match &step {
                        Step::Create(_) => "created (it was missing: deleted, or never written)",
                        Step::Replace(_) => "put back in step with its object (it was edited)",
                        _ => "deleted (the object no longer asks for it, or another HPA scales its target)",
                    };
                    let state = managed_hpa::apply(&self.client, &id.namespace, step).await;
                    if !matches!(state, HpaState::Failed(_)) {
                        info!(workload = %id, "managed HorizontalPodAutoscaler {what}");
                    }
                    state
                }
            };
            if let HpaState::Conflict(message) | HpaState::Failed(message) = &state {
                if k.hpa.as_ref() != Some(&state) {
                    warn!(workload = %id, "{message}");
                }
            }
            k.hpa = Some(state);
        }
        true
    }

    /// Writes every object's status that is due, longest-waiting first, as far as the global bucket allows.
    async fn write_statuses(
        &self,
        known: &mut BTreeMap<WorkloadId, Known>,
        resource: &ApiResource,
        bucket: &mut TokenBucket,
    ) {
        let writes = self.writer.now();
        if !writes.any() {
            return;
        }
        let now = Instant::now();
        let mut due: Vec<_> = known
            .iter()
            .filter(|(id, k)| k.hpa.is_some() && writes.writes(id))
            .map(|(id, k)| (k.written.as_ref().map(|w| w.at), id.clone(), self.desired(id, k)))
            .filter(|(_, id, desired)| status::due(desired, known[id].written.as_ref(), &self.settings.limits, now))
            .collect();
        due.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (_, id, desired) in due {
            let Some(k) = known.get_mut(&id) else { continue };
            if !self.write(&id, k, desired, resource, bucket).await {
                break;
            }
        }
    }

    fn desired(&self, id: &WorkloadId, k: &Known) -> PredictiveAutoscalerStatus {
        let entry = self.store.entry(id);
        status::status_of(
            &k.outcome,
            k.hpa.as_ref().unwrap_or(&HpaState::Unmanaged),
            entry.as_deref(),
            self.store.max_forecast_age(),
            k.generation,
            &k.conditions,
            self.clock.now(),
        )
    }

    /// Writes `k`'s status if it is due and a token is there; false when the bucket is empty.
    async fn write_one(
        &self,
        id: &WorkloadId,
        k: &mut Known,
        resource: &ApiResource,
        bucket: &mut TokenBucket,
    ) -> bool {
        if k.hpa.is_none() {
            // Written once the HPA is known (a new writer's first pass).
            return true;
        }
        let desired = self.desired(id, k);
        self.write(id, k, desired, resource, bucket).await
    }

    /// Writes `desired` as `k`'s status if it is due and a token is there; false when the bucket is empty.
    async fn write(
        &self,
        id: &WorkloadId,
        k: &mut Known,
        desired: PredictiveAutoscalerStatus,
        resource: &ApiResource,
        bucket: &mut TokenBucket,
    ) -> bool {
        let now = Instant::now();
        if !self.writer.writes(id) || !status::due(&desired, k.written.as_ref(), &self.settings.limits, now) {
            return true;
        }
        if !bucket.try_take(now) {
            return false;
        }
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &id.namespace, resource);
        let patch = status::patch_of(&desired);
        match api
            .patch_status(&id.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                k.conditions = desired.conditions.clone();
                k.written = Some(Written {
                    status: desired,
                    at: now,
                });
            }
            Err(error) => warn!(workload = %id, %error, "writing the PredictiveAutoscaler's status failed"),
        }
        true
    }
}

/// A task aborted when dropped: the election ends with the controller, however the controller ends.
struct Aborting(tokio::task::JoinHandle<anyhow::Result<()>>);

impl Drop for Aborting {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A record of what the replica writing `object` wrote: its status as watched (with when it was first seen), so
/// that once this replica writes it, it writes only what changed, no sooner than the per-object interval allows,
/// and keeps the conditions' transition times.
fn observe(k: &mut Known, object: &DynamicObject) {
    let Some(status) = object
        .data
        .get("status")
        .and_then(|s| serde_json::from_value::<PredictiveAutoscalerStatus>(s.clone()).ok())
    else {
        return;
    };
    if k.written.as_ref().is_some_and(|w| w.status == status) {
        return;
    }
    k.conditions = status.conditions.clone();
    k.written = Some(Written {
        status,
        at: Instant::now(),
    });
}

fn id_of(object: &DynamicObject) -> Option<WorkloadId> {
    Some(WorkloadId {
        namespace: object.namespace()?,
        name: object.metadata.name.clone()?,
    })
}

/// The conditions an object carries, so that a restart keeps their transition times.
fn conditions_of(object: &DynamicObject) -> Vec<Condition> {
    object
        .data
        .get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default()
}
