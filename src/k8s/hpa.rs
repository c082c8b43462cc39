//! The Kubernetes HPA controller's arithmetic for External metrics, and a pod model, for simulation.
//!
//! [`Hpa::reconcile`] follows `pkg/controller/podautoscaler` (horizontal.go, replica_calculator.go) step by step:
//! AverageValue and Value targets, the tolerance band (one value, or one per direction), the legacy path
//! (`behavior` unset: 300 s scale-down stabilization over recorded recommendations, scale-up limited to
//! `max(2·current, 4)` per sync) and the `behavior` path (stabilization windows, Pods/Percent policies with
//! `selectPolicy` Min/Max/Disabled over scale events within `periodSeconds`), clamped to `[min, max]`.
//! Floating point is done in Go's operation order, so results agree with the controller to the replica, including
//! where `ceil` lands just above an integer (`ceil(ratio·ready)` on `3.0000000000000004` is 4).
//!
//! [`Pods`] models a Deployment's pods: a pod created at `t` is ready at `t + L`; a scale-down removes not-ready
//! pods first (newest first), then ready ones.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

/// The controller's default tolerance around a usage ratio of 1.
pub const DEFAULT_TOLERANCE: f64 = 0.1;
/// The controller's default downscale stabilization window (`--horizontal-pod-autoscaler-downscale-stabilization`).
pub const DEFAULT_DOWNSCALE_STABILIZATION: TimeDelta = TimeDelta::seconds(300);
/// The HPA sync period (`--horizontal-pod-autoscaler-sync-period`).
pub const SYNC_PERIOD: TimeDelta = TimeDelta::seconds(15);

/// Why an HPA specification is invalid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HpaError {
    /// `minReplicas` is negative or above `maxReplicas`, or `maxReplicas` is below 1.
    #[error("invalid replica bounds: minReplicas {min}, maxReplicas {max} (need 0 <= min <= max and max >= 1)")]
    Bounds {
        /// The offending minReplicas.
        min: i32,
        /// The offending maxReplicas.
        max: i32,
    },
    /// No metric is configured.
    #[error("an HPA needs at least one metric")]
    NoMetrics,
    /// A target quantity is zero or negative.
    #[error("metric target must be positive, got {milli}m")]
    Target {
        /// The offending target in milli-units.
        milli: i64,
    },
    /// A tolerance is negative or not finite.
    #[error("tolerance must be a finite number >= 0, got {0}")]
    Tolerance(f64),
    /// A stabilization window is outside 0..=3600 s.
    #[error("stabilizationWindowSeconds must be in 0..=3600, got {0}")]
    Window(i32),
    /// A scaling policy has a period outside 1..=1800 s or a non-positive value.
    #[error("scaling policy needs 0 < periodSeconds <= 1800 and value > 0, got period {period} value {value}")]
    Policy {
        /// The offending periodSeconds.
        period: i32,
        /// The offending value.
        value: i32,
    },
    /// A `policies` list is present but empty.
    #[error("scaling rules must list at least one policy when `policies` is set")]
    EmptyPolicies,
}

/// The target of an External metric, in milli-units (what `Quantity::MilliValue` returns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricTarget {
    /// `target.averageValue`: the metric total divided by the replica count should equal this.
    AverageValue(i64),
    /// `target.value`: the metric total should equal this.
    Value(i64),
}

/// How `selectPolicy` combines several policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SelectPolicy {
    /// The policy allowing the largest change (the default).
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// The unit of a scaling policy's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PolicyKind {
    /// Absolute number of pods per period.
    Pods,
    /// Percent of the replica count at the start of the period.
    Percent,
}

/// One `HPAScalingPolicy`: at most `value` pods (or percent) change per `period_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ScalingPolicy {
    /// Pods or Percent.
    pub kind: PolicyKind,
    /// Amount of change allowed per period.
    pub value: i32,
    /// Length of the period the change is measured over (1..=1800).
    pub period_seconds: i32,
}

/// The API server's default `scaleUp` policies: up to 4 pods or 100% every 15 s (with `selectPolicy: Max`).
pub const DEFAULT_SCALE_UP_POLICIES: [ScalingPolicy; 2] = [
    ScalingPolicy {
        kind: PolicyKind::Pods,
        value: 4,
        period_seconds: 15,
    },
    ScalingPolicy {
        kind: PolicyKind::Percent,
        value: 100,
        period_seconds: 15,
    },
];

/// The API server's default `scaleDown` policy: up to 100% every 15 s.
pub const DEFAULT_SCALE_DOWN_POLICIES: [ScalingPolicy; 1] = [ScalingPolicy {
    kind: PolicyKind::Percent,
    value: 100,
    period_seconds: 15,
}];

/// `HPAScalingRules` as written by a user: every field optional, defaulted like the API server does.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScalingRules {
    /// `stabilizationWindowSeconds`.
    pub stabilization_window_seconds: Option<i32>,
    /// `selectPolicy`.
    pub select_policy: Option<SelectPolicy>,
    /// `policies`.
    pub policies: Option<Vec<ScalingPolicy>>,
    /// `tolerance` (per direction; feature-gated in Kubernetes).
    pub tolerance: Option<f64>,
}

/// `spec.behavior`: setting any part switches the controller to the behavior path.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Behavior {
    /// `scaleUp` rules (defaults: window 0, Max, Pods 4/15 s and Percent 100/15 s).
    pub scale_up: Option<ScalingRules>,
    /// `scaleDown` rules (defaults: window = controller's 300 s, Max, Percent 100/15 s).
    pub scale_down: Option<ScalingRules>,
}

/// An HPA specification for one scale target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HpaSpec {
    /// `minReplicas`.
    pub min_replicas: i32,
    /// `maxReplicas`.
    pub max_replicas: i32,
    /// One target per External metric; the controller takes the largest proposal.
    pub metrics: Vec<MetricTarget>,
    /// `behavior`; `None` selects the legacy path.
    pub behavior: Option<Behavior>,
    /// The controller-wide tolerance (`--horizontal-pod-autoscaler-tolerance`), used where no per-direction one is set.
    pub tolerance: f64,
    /// The controller-wide downscale stabilization window.
    pub downscale_stabilization: TimeDelta,
}

impl HpaSpec {
    /// One External metric, controller defaults, no `behavior`.
    pub fn external(target: MetricTarget, min_replicas: i32, max_replicas: i32) -> Self {
        Self {
            min_replicas,
            max_replicas,
            metrics: vec![target],
            behavior: None,
            tolerance: DEFAULT_TOLERANCE,
            downscale_stabilization: DEFAULT_DOWNSCALE_STABILIZATION,
        }
    }
}

/// Scaling rules after API defaulting.
#[derive(Debug, Clone, PartialEq)]
struct Rules {
    window: TimeDelta,
    select: SelectPolicy,
    policies: Vec<ScalingPolicy>,
}

impl Rules {
    fn longest_period(&self) -> TimeDelta {
        TimeDelta::seconds(self.policies.iter().map(|p| p.period_seconds).max().unwrap_or(0).into())
    }
}

fn resolve(rules: Option<&ScalingRules>, window: i32, defaults: Vec<ScalingPolicy>) -> Rules {
    let rules = rules.cloned().unwrap_or_default();
    Rules {
        window: TimeDelta::seconds(rules.stabilization_window_seconds.unwrap_or(window).into()),
        select: rules.select_policy.unwrap_or(SelectPolicy::Max),
        policies: rules.policies.unwrap_or(defaults),
    }
}

/// Which way the tolerance band reaches: `1 - down <= ratio <= 1 + up` is "close enough".
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tolerances {
    down: f64,
    up: f64,
}

impl Tolerances {
    fn within(self, ratio: f64) -> bool {
        (1.0 - self.down) <= ratio && ratio <= (1.0 + self.up)
    }
}

/// What the controller decided at one sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Replicas were computed from the metrics (and possibly changed).
    Computed,
    /// `spec.replicas` is 0 while minReplicas is not: autoscaling is disabled, nothing changes.
    ScalingDisabled,
    /// Every metric failed, or one failed while the others asked for fewer replicas: hold, record nothing.
    MetricInvalid,
    /// `spec.replicas` was outside `[min, max]` and was clamped without reading metrics.
    OutOfRange,
}

/// The result of one sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Reconcile {
    /// The replica count the controller sets (equal to `spec.replicas` when nothing changes).
    pub desired_replicas: i32,
    /// The largest proposal over valid metrics, before stabilization and limits.
    pub metric_replicas: Option<i32>,
    /// Why the decision is what it is.
    pub condition: Condition,
}

/// The state the controller reads from the scale target at a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleStatus {
    /// `scale.spec.replicas`.
    pub spec_replicas: i32,
    /// `scale.status.replicas` (every pod, ready or not).
    pub status_replicas: i32,
    /// Pods that are Running and Ready (used by Value targets).
    pub ready_pods: i32,
}

/// One HPA object and the controller's memory of it (recommendations, scale events).
///
/// Holds only what its syncs read of the spec (the `behavior` resolved into rules, boxed): the SLO controller runs
/// dozens of these per workload on the legacy path, and each is 88 bytes instead of 352.
#[derive(Debug, Clone)]
pub struct Hpa {
    min_replicas: i32,
    max_replicas: i32,
    metrics: Box<[MetricTarget]>,
    downscale_stabilization: TimeDelta,
    tolerances: Tolerances,
    /// `Some` on the behavior path.
    behavior: Option<Box<Directions>>,
    recommendations: Vec<(i32, DateTime<Utc>)>,
}

/// The behavior path's rules, defaulted, and the scale events they limit by.
#[derive(Debug, Clone)]
struct Directions {
    up: Rules,
    down: Rules,
    up_events: Vec<(i32, DateTime<Utc>)>,
    down_events: Vec<(i32, DateTime<Utc>)>,
}

impl Hpa {
    /// Validates `spec` like the API server would and starts with no recorded history.
    pub fn new(spec: HpaSpec) -> Result<Self, HpaError> {
        if spec.min_replicas < 0 || spec.max_replicas < 1 || spec.min_replicas > spec.max_replicas {
            return Err(HpaError::Bounds {
                min: spec.min_replicas,
                max: spec.max_replicas,
            });
        }
        if spec.metrics.is_empty() {
            return Err(HpaError::NoMetrics);
        }
        for m in &spec.metrics {
            let (MetricTarget::AverageValue(milli) | MetricTarget::Value(milli)) = *m;
            if milli <= 0 {
                return Err(HpaError::Target { milli });
            }
        }
        let tol_ok = |t: f64| {
            if t.is_finite() && t >= 0.0 {
                Ok(t)
            } else {
                Err(HpaError::Tolerance(t))
            }
        };
        tol_ok(spec.tolerance)?;
        let rules = spec
            .behavior
            .iter()
            .flat_map(|b| [b.scale_up.as_ref(), b.scale_down.as_ref()])
            .flatten();
        for r in rules {
            if let Some(w) = r.stabilization_window_seconds {
                if !(0..=3600).contains(&w) {
                    return Err(HpaError::Window(w));
                }
            }
            if let Some(t) = r.tolerance {
                tol_ok(t)?;
            }
            if let Some(ps) = &r.policies {
                if ps.is_empty() {
                    return Err(HpaError::EmptyPolicies);
                }
                for p in ps {
                    if !(1..=1800).contains(&p.period_seconds) || p.value <= 0 {
                        return Err(HpaError::Policy {
                            period: p.period_seconds,
                            value: p.value,
                        });
                    }
                }
            }
        }
        let direction_tol = |r: Option<&ScalingRules>| r.and_then(|r| r.tolerance).unwrap_or(spec.tolerance);
        let behavior = spec.behavior.as_ref();
        let tolerances = Tolerances {
            down: direction_tol(behavior.and_then(|b| b.scale_down.as_ref())),
            up: direction_tol(behavior.and_then(|b| b.scale_up.as_ref())),
        };
        let window = i32::try_from(spec.downscale_stabilization.num_seconds()).unwrap_or(i32::MAX);
        let behavior = behavior.map(|b| {
            Box::new(Directions {
                up: resolve(b.scale_up.as_ref(), 0, DEFAULT_SCALE_UP_POLICIES.to_vec()),
                down: resolve(b.scale_down.as_ref(), window, DEFAULT_SCALE_DOWN_POLICIES.to_vec()),
                up_events: Vec::new(),
                down_events: Vec::new(),
            })
        });
        Ok(Self {
            min_replicas: spec.min_replicas,
            max_replicas: spec.max_replicas,
            metrics: spec.metrics.into_boxed_slice(),
            downscale_stabilization: spec.downscale_stabilization,
            tolerances,
            behavior,
            recommendations: Vec::new(),
        })
    }

    /// `minReplicas` and `maxReplicas`.
    pub fn replicas_range(&self) -> (i32, i32) {
        (self.min_replicas, self.max_replicas)
    }

    /// Seeds the recommendation history as the controller does on its first sync of this HPA.
    ///
    /// [`Hpa::reconcile`] does this itself when the history is empty; call it to start the history earlier.
    pub fn record_initial(&mut self, replicas: i32, now: DateTime<Utc>) {
        if self.recommendations.is_empty() {
            self.recommendations.push((replicas, now));
        }
    }

    /// One sync at `now`: `metrics[i]` is the summed `MilliValue` of metric `i`'s items, `None` when fetching it
    /// failed (non-2xx, or no items). Records recommendations and scale events like the controller.
    ///
    /// # Panics
    /// If `metrics` does not have one entry per configured metric (a programming error).
    pub fn reconcile(&mut self, now: DateTime<Utc>, scale: ScaleStatus, metrics: &[Option<i64>]) -> Reconcile {
        assert_eq!(
            metrics.len(),
            self.metrics.len(),
            "one metric value per configured metric"
        );
        let cur = scale.spec_replicas;
        self.record_initial(cur, now);
        let (min, max) = (self.min_replicas, self.max_replicas);
        if cur == 0 && min != 0 {
            return Reconcile {
                desired_replicas: cur,
                metric_replicas: None,
                condition: Condition::ScalingDisabled,
            };
        }
        let (desired, metric_replicas, condition) = if cur > max {
            (max, None, Condition::OutOfRange)
        } else if cur < min {
            (min, None, Condition::OutOfRange)
        } else {
            let mut best = 0;
            let mut bad = 0;
            for (target, value) in self.metrics.iter().zip(metrics) {
                match value {
                    Some(u) => {
                        let r = self.metric_replicas(*target, *u, scale);
                        if best == 0 || r > best {
                            best = r;
                        }
                    }
                    None => bad += 1,
                }
            }
            if bad == metrics.len() || (bad > 0 && best < cur) {
                return Reconcile {
                    desired_replicas: cur,
                    metric_replicas: None,
                    condition: Condition::MetricInvalid,
                };
            }
            // horizontal.go starts from desiredReplicas = 0 and only takes the metric proposal when larger.
            let proposal = best.max(0);
            let desired = if self.behavior.is_some() {
                self.with_behavior(now, cur, proposal)
            } else {
                self.legacy(now, cur, proposal)
            };
            (desired, Some(best), Condition::Computed)
        };
        if desired != cur && self.behavior.is_some() {
            self.store_event(now, cur, desired);
        }
        Reconcile {
            desired_replicas: desired,
            metric_replicas,
            condition,
        }
    }

    fn metric_replicas(&self, target: MetricTarget, usage: i64, scale: ScaleStatus) -> i32 {
        match target {
            MetricTarget::AverageValue(t) => {
                let stat = scale.status_replicas;
                let ratio = usage as f64 / (t as f64 * f64::from(stat));
                if self.tolerances.within(ratio) {
                    stat
                } else {
                    ceil_to_i32(usage as f64 / t as f64)
                }
            }
            MetricTarget::Value(t) => {
                let ratio = usage as f64 / t as f64;
                let cur = scale.spec_replicas;
                if cur == 0 {
                    ceil_to_i32(ratio)
                } else if self.tolerances.within(ratio) {
                    cur
                } else {
                    ceil_to_i32(ratio * f64::from(scale.ready_pods))
                }
            }
        }
    }

    fn legacy(&mut self, now: DateTime<Utc>, cur: i32, desired: i32) -> i32 {
        let cutoff = now - self.downscale_stabilization;
        let stabilized = self
            .recommendations
            .iter()
            .filter(|(_, t)| *t >= cutoff)
            .fold(desired, |s, (r, _)| s.max(*r));
        // Only the highest recommendation of the window counts here, so a record that has left the window, or that
        // this one matches or exceeds (it stays in the window longer), can never count again: dropped, the records
        // are a few instead of a window's worth, with the same results as the controller's list.
        self.recommendations.retain(|(r, t)| *t >= cutoff && *r > desired);
        self.recommendations.push((desired, now));
        // calculateScaleUpLimit: int32(math.Max(2*float64(cur), 4)).
        let up_limit = (2.0 * f64::from(cur)).max(4.0) as i32;
        let hi = self.max_replicas.min(up_limit);
        if stabilized < self.min_replicas {
            self.min_replicas
        } else if stabilized > hi {
            hi
        } else {
            stabilized
        }
    }

    fn record(&mut self, old: Option<usize>, desired: i32, now: DateTime<Utc>) {
        match old {
            Some(i) => self.recommendations[i] = (desired, now),
            None => self.recommendations.push((desired, now)),
        }
    }

    fn with_behavior(&mut self, now: DateTime<Utc>, cur: i32, desired: i32) -> i32 {
        let Some((up, down)) = self.behavior.as_ref().map(|b| (b.up.clone(), b.down.clone())) else {
            return desired;
        };
        let up_cutoff = now - up.window;
        let down_cutoff = now - down.window;
        let (mut up_rec, mut down_rec) = (desired, desired);
        let mut old = None;
        for (i, (r, t)) in self.recommendations.iter().enumerate() {
            if *t > up_cutoff {
                up_rec = up_rec.min(*r);
            }
            if *t > down_cutoff {
                down_rec = down_rec.max(*r);
            }
            if *t < up_cutoff && *t < down_cutoff {
                old = Some(i);
            }
        }
        let mut s = cur;
        if s < up_rec {
            s = up_rec;
        }
        if s > down_rec {
            s = down_rec;
        }
        self.record(old, desired, now);
        let (min, max) = (self.min_replicas, self.max_replicas);
        if s > cur {
            let limit = self.up_limit(now, cur, &up).max(cur);
            s.min(max.min(limit))
        } else if s < cur {
            let limit = self.down_limit(now, cur, &down).min(cur);
            s.max(min.max(limit))
        } else {
            s
        }
    }

    fn period_start(&self, now: DateTime<Utc>, cur: i32, period_seconds: i32) -> i32 {
        let cutoff = now - TimeDelta::seconds(period_seconds.into());
        let sum =
            |events: &[(i32, DateTime<Utc>)]| events.iter().filter(|(_, t)| *t > cutoff).map(|(r, _)| r).sum::<i32>();
        self.behavior
            .as_ref()
            .map_or(cur, |b| cur - sum(&b.up_events) + sum(&b.down_events))
    }

    fn up_limit(&self, now: DateTime<Utc>, cur: i32, rules: &Rules) -> i32 {
        let min_change = match rules.select {
            SelectPolicy::Disabled => return cur,
            SelectPolicy::Min => true,
            SelectPolicy::Max => false,
        };
        let mut acc = if min_change { i32::MAX } else { i32::MIN };
        for p in &rules.policies {
            let start = self.period_start(now, cur, p.period_seconds);
            let proposed = match p.kind {
                PolicyKind::Pods => start + p.value,
                PolicyKind::Percent => (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32,
            };
            acc = if min_change {
                acc.min(proposed)
            } else {
                acc.max(proposed)
            };
        }
        acc
    }

    fn down_limit(&self, now: DateTime<Utc>, cur: i32, rules: &Rules) -> i32 {
        let min_change = match rules.select {
            SelectPolicy::Disabled => return cur,
            SelectPolicy::Min => true,
            SelectPolicy::Max => false,
        };
        let mut acc = if min_change { i32::MIN } else { i32::MAX };
        for p in &rules.policies {
            let start = self.period_start(now, cur, p.period_seconds);
            let proposed = match p.kind {
                PolicyKind::Pods => start - p.value,
                // Go's int32(float64) conversion truncates toward zero.
                PolicyKind::Percent => (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32,
            };
            acc = if min_change {
                acc.max(proposed)
            } else {
                acc.min(proposed)
            };
        }
        acc
    }

    fn store_event(&mut self, now: DateTime<Utc>, prev: i32, new: i32) {
        let Some(b) = self.behavior.as_deref_mut() else { return };
        let (rules, events) = if new > prev {
            (&b.up, &mut b.up_events)
        } else {
            (&b.down, &mut b.down_events)
        };
        let cutoff = now - rules.longest_period();
        let old = events.iter().rposition(|(_, t)| *t < cutoff);
        let event = ((new - prev).abs(), now);
        match old {
            Some(i) => events[i] = event,
            None => events.push(event),
        }
    }
}

/// `min(int32(math.Ceil(x)), MaxInt32)`, with negative values floored at `i32::MIN` like a saturating cast.
fn ceil_to_i32(x: f64) -> i32 {
    let c = x.ceil();
    if c >= f64::from(i32::MAX) {
        i32::MAX
    } else {
        c as i32
    }
}

/// A Deployment's pods: creation times, oldest first. A pod is ready `lead` after it was created.
///
/// Kept as runs of pods created together (one per scale-up still starting, one for all the ready pods), not a time
/// per pod: the SLO controller holds a pod model for each of its candidates, and a workload of hundreds of pods
/// needs a few runs. Readiness is asked at or after the latest scale, as the HPA's simulations do.
#[derive(Debug, Clone, PartialEq)]
pub struct Pods {
    lead: TimeDelta,
    /// `(created, count)`, oldest first, each count at least 1.
    runs: Vec<(DateTime<Utc>, u32)>,
    len: usize,
}

impl Pods {
    /// `n` pods that are all ready at `now`.
    pub fn ready_at(n: usize, lead: TimeDelta, now: DateTime<Utc>) -> Self {
        let mut pods = Self {
            lead,
            runs: Vec::new(),
            len: 0,
        };
        pods.scale_to(n, now - lead);
        pods
    }

    /// Cold start: time from creation to ready.
    pub fn lead(&self) -> TimeDelta {
        self.lead
    }

    /// All pods, ready or not (`status.replicas`).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no pods.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pods ready at `now` (created at or before `now - lead`).
    pub fn ready(&self, now: DateTime<Utc>) -> usize {
        let cutoff = now - self.lead;
        // Pods are kept in creation order, so the ready ones form a prefix.
        self.runs
            .iter()
            .take_while(|(t, _)| *t <= cutoff)
            .map(|(_, n)| *n as usize)
            .sum()
    }

    /// Pods created but not ready at `now`.
    pub fn starting(&self, now: DateTime<Utc>) -> usize {
        self.len() - self.ready(now)
    }

    /// Scales to `n` pods at `now`: creates the missing ones now, or removes the newest first (which removes
    /// not-ready pods before ready ones, since readiness follows creation order).
    pub fn scale_to(&mut self, n: usize, now: DateTime<Utc>) {
        if n > self.len {
            let more = u32::try_from(n - self.len).expect("fewer than 2^32 pods");
            match self.runs.last_mut() {
                Some((t, count)) if *t == now => *count += more,
                _ => self.runs.push((now, more)),
            }
        } else {
            let mut excess = self.len - n;
            while excess > 0 {
                let (_, count) = self.runs.last_mut().expect("pods to remove");
                let take = excess.min(*count as usize);
                *count -= take as u32;
                excess -= take;
                if *count == 0 {
                    self.runs.pop();
                }
            }
        }
        self.len = n;
        // Pods ready now stay ready: one run holds them all (readiness is asked at or after the latest scale).
        let cutoff = now - self.lead;
        let ready = self.runs.iter().take_while(|(t, _)| *t <= cutoff).count();
        if ready > 1 {
            let count = self.runs[..ready].iter().map(|(_, n)| n).sum();
            let newest = self.runs[ready - 1].0;
            self.runs.splice(..ready, [(newest, count)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::fixtures::t;

    fn status(n: i32) -> ScaleStatus {
        ScaleStatus {
            spec_replicas: n,
            status_replicas: n,
            ready_pods: n,
        }
    }

    fn avg(target_milli: i64) -> Hpa {
        Hpa::new(HpaSpec::external(MetricTarget::AverageValue(target_milli), 1, 40)).unwrap()
    }

    #[test]
    fn an_hpa_on_the_legacy_path_stays_small() {
        // The SLO controller holds 29 per workload: the behavior path's rules and events are boxed, the spec is not
        // kept whole.
        assert!(std::mem::size_of::<Hpa>() <= 96, "{} bytes", std::mem::size_of::<Hpa>());
        let (legacy, behavior) = (avg(1000), {
            let mut spec = HpaSpec::external(MetricTarget::AverageValue(1000), 2, 40);
            spec.behavior = Some(Behavior::default());
            Hpa::new(spec).unwrap()
        });
        assert!(legacy.behavior.is_none() && behavior.behavior.is_some());
        assert_eq!((legacy.replicas_range(), behavior.replicas_range()), ((1, 40), (2, 40)));
    }

    #[test]
    fn legacy_stabilization_keeps_few_records_and_matches_the_whole_window() {
        // The controller's rule over every recommendation ever made: the highest of the window, clamped.
        let mut h = avg(1000);
        let mut all: Vec<(i32, DateTime<Utc>)> = Vec::new();
        let mut cur = 4;
        let mut seed = 12345u64;
        let mut longest = 0;
        for k in 0..2000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let usage = 500 + (seed >> 33) as i64 % 20_000;
            let now = t(15 * k + (seed >> 60) as i64);
            let r = h.reconcile(now, status(cur), &[Some(usage)]);
            // What the metric asked for, then the whole list's answer.
            let proposal = r.metric_replicas.unwrap();
            if all.is_empty() {
                all.push((4, now));
            }
            let cutoff = now - DEFAULT_DOWNSCALE_STABILIZATION;
            let stabilized = all
                .iter()
                .filter(|(_, t)| *t >= cutoff)
                .fold(proposal, |s, (r, _)| s.max(*r));
            all.push((proposal, now));
            let expected = stabilized.clamp(1, 40.min((2 * cur).max(4)));
            assert_eq!(r.desired_replicas, expected, "sync {k}");
            cur = r.desired_replicas;
            longest = longest.max(h.recommendations.len());
        }
        assert!(longest <= 21, "at most a window's worth, usually a few: {longest}");
        assert!(h.recommendations.len() < 10, "{}", h.recommendations.len());
    }

    #[test]
    fn average_value_uses_ceil_of_usage_over_target() {
        let mut h = avg(1000);
        // 7.5 units against 1 per pod from 4 pods: ratio 1.875, outside tolerance → ceil(7.5) = 8 (within 2·4).
        let r = h.reconcile(t(0), status(4), &[Some(7500)]);
        assert_eq!(
            (r.desired_replicas, r.metric_replicas, r.condition),
            (8, Some(8), Condition::Computed)
        );
    }

    #[test]
    fn tolerance_band_is_inclusive_and_uses_status_replicas() {
        // ratio exactly 1.1 (11000 / (1000·10)) is within: keep status.replicas.
        let mut h = avg(1000);
        assert_eq!(h.reconcile(t(0), status(10), &[Some(11_000)]).desired_replicas, 10);
        // 11001 → ratio 1.1001 → ceil(11.001) = 12.
        let mut h = avg(1000);
        assert_eq!(h.reconcile(t(0), status(10), &[Some(11_001)]).desired_replicas, 12);
        // ratio 0.9 is within too: no scale-down.
        let mut h = avg(1000);
        assert_eq!(h.reconcile(t(0), status(10), &[Some(9_000)]).metric_replicas, Some(10));
        // Within tolerance returns status.replicas even when spec differs.
        let mut h = avg(1000);
        let s = ScaleStatus {
            spec_replicas: 10,
            status_replicas: 9,
            ready_pods: 9,
        };
        assert_eq!(h.reconcile(t(0), s, &[Some(9_500)]).metric_replicas, Some(9));
    }

    #[test]
    fn per_direction_tolerance() {
        let rules = |tol| ScalingRules {
            tolerance: Some(tol),
            ..Default::default()
        };
        let mut spec = HpaSpec::external(MetricTarget::AverageValue(1000), 1, 40);
        spec.behavior = Some(Behavior {
            scale_up: Some(rules(0.0)),
            scale_down: Some(rules(0.5)),
        });
        let mut h = Hpa::new(spec).unwrap();
        // Up tolerance 0: ratio 1.05 scales up to ceil(10.5) = 11.
        assert_eq!(h.reconcile(t(0), status(10), &[Some(10_500)]).metric_replicas, Some(11));
        // Down tolerance 0.5: ratio 0.5 still within → 10.
        let mut h2 = h.clone();
        assert_eq!(
            h2.reconcile(t(15), status(10), &[Some(5_000)]).metric_replicas,
            Some(10)
        );
        assert_eq!(h.reconcile(t(15), status(10), &[Some(4_999)]).metric_replicas, Some(5));
    }

    #[test]
    fn value_target_multiplies_ratio_by_ready_pods_in_go_order() {
        let spec = HpaSpec::external(MetricTarget::Value(3000), 1, 40);
        // 3300/3000 is the double nearest 1.1, and 1.0 + 0.1 is that same double: within tolerance → cur.
        let mut h = Hpa::new(spec.clone()).unwrap();
        assert_eq!(h.reconcile(t(0), status(5), &[Some(3300)]).metric_replicas, Some(5));
        // ratio 1.5 × 2 ready pods (not spec.replicas 5) = 3.
        let mut h = Hpa::new(spec.clone()).unwrap();
        let s = ScaleStatus {
            spec_replicas: 5,
            status_replicas: 5,
            ready_pods: 2,
        };
        assert_eq!(h.reconcile(t(0), s, &[Some(4500)]).metric_replicas, Some(3));
        // 2900/700 × 7 is 29 exactly, but (2900/700)·7 in f64 is 29.000000000000004 → ceil 30, as in Go.
        assert_eq!(2900.0_f64 / 700.0 * 7.0, 29.000000000000004);
        let mut h = Hpa::new(HpaSpec::external(MetricTarget::Value(700), 1, 40)).unwrap();
        let s = ScaleStatus {
            spec_replicas: 20,
            status_replicas: 20,
            ready_pods: 7,
        };
        let r = h.reconcile(t(0), s, &[Some(2900)]);
        assert_eq!((r.metric_replicas, r.desired_replicas), (Some(30), 30));
        // cur == 0 with min 0: ceil(ratio).
        let mut h = Hpa::new(HpaSpec::external(MetricTarget::Value(1000), 0, 40)).unwrap();
        let s = ScaleStatus {
            spec_replicas: 0,
            status_replicas: 0,
            ready_pods: 0,
        };
        assert_eq!(h.reconcile(t(0), s, &[Some(2500)]).metric_replicas, Some(3));
    }

    #[test]
    fn average_value_ceil_of_division_is_exact_in_f64() {
        // 4350 milli over 1000 milli per pod: 4.35 → 5; 4000/1000 = 4 exactly → 4 (not 5).
        let mut h = avg(1000);
        assert_eq!(h.reconcile(t(0), status(1), &[Some(4000)]).metric_replicas, Some(4));
        let mut h = avg(1000);
        assert_eq!(h.reconcile(t(0), status(1), &[Some(4350)]).metric_replicas, Some(5));
        // A target that is not a power of ten: 700m per pod, usage 2100m → 2100/700 = 3 exactly.
        let mut h = avg(700);
        assert_eq!(h.reconcile(t(0), status(1), &[Some(2100)]).metric_replicas, Some(3));
    }

    #[test]
    fn legacy_scale_up_is_limited_to_twice_current_or_four() {
        let mut h = avg(1000);
        assert_eq!(h.reconcile(t(0), status(1), &[Some(30_000)]).desired_replicas, 4);
        let mut h = avg(1000);
        assert_eq!(h.reconcile(t(0), status(3), &[Some(30_000)]).desired_replicas, 6);
        let mut h = avg(1000);
        assert_eq!(h.reconcile(t(0), status(30), &[Some(100_000)]).desired_replicas, 40);
    }

    #[test]
    fn legacy_scale_down_waits_for_the_300s_window() {
        let mut h = avg(1000);
        h.record_initial(10, t(0));
        // Demand drops to 2 at t=15: the recommendation at t=0 (10) holds it at 10.
        for s in (15..=300).step_by(15) {
            let r = h.reconcile(t(s), status(10), &[Some(2000)]);
            assert_eq!(r.desired_replicas, 10, "at {s}");
            assert_eq!(r.metric_replicas, Some(2));
        }
        // At t=315 the t=0 record is older than now-300 s and is replaced: max over (15..=315) = 2.
        assert_eq!(h.reconcile(t(315), status(10), &[Some(2000)]).desired_replicas, 2);
    }

    #[test]
    fn legacy_window_keeps_the_highest_recent_recommendation() {
        let mut h = avg(1000);
        h.record_initial(4, t(0));
        assert_eq!(h.reconcile(t(15), status(4), &[Some(8000)]).desired_replicas, 8);
        // A dip to 3 at t=30 is held at 8 (t=15 recommendation), and a small scale-up to 9 passes.
        assert_eq!(h.reconcile(t(30), status(8), &[Some(3000)]).desired_replicas, 8);
        assert_eq!(h.reconcile(t(45), status(8), &[Some(9000)]).desired_replicas, 9);
        assert_eq!(h.reconcile(t(316), status(9), &[Some(3000)]).desired_replicas, 9);
        // By t=346 only recommendations from t>=46 count: [3 (t=316)] plus now → 3.
        assert_eq!(h.reconcile(t(346), status(9), &[Some(3000)]).desired_replicas, 3);
    }

    #[test]
    fn clamps_and_disabled_and_invalid_metrics() {
        let mut h = avg(1000);
        assert_eq!(
            h.reconcile(t(0), status(45), &[Some(1)]).condition,
            Condition::OutOfRange
        );
        let mut h = avg(1000);
        assert_eq!(h.reconcile(t(0), status(45), &[Some(1)]).desired_replicas, 40);
        let mut h = avg(1000);
        let r = h.reconcile(t(0), status(0), &[Some(5000)]);
        assert_eq!((r.desired_replicas, r.condition), (0, Condition::ScalingDisabled));
        let mut h = avg(1000);
        let r = h.reconcile(t(0), status(5), &[None]);
        assert_eq!((r.desired_replicas, r.condition), (5, Condition::MetricInvalid));
        // min clamp on the way down (after the window).
        let mut spec = HpaSpec::external(MetricTarget::AverageValue(1000), 3, 40);
        spec.downscale_stabilization = TimeDelta::zero();
        let mut h = Hpa::new(spec).unwrap();
        h.record_initial(5, t(0));
        assert_eq!(h.reconcile(t(15), status(5), &[Some(1000)]).desired_replicas, 3);
    }

    #[test]
    fn multiple_metrics_take_the_max_and_one_failing_blocks_scale_down() {
        let mut spec = HpaSpec::external(MetricTarget::AverageValue(1000), 1, 40);
        spec.metrics.push(MetricTarget::AverageValue(1000));
        let mut h = Hpa::new(spec.clone()).unwrap();
        assert_eq!(
            h.reconcile(t(0), status(4), &[Some(2000), Some(6000)]).desired_replicas,
            6
        );
        let mut h = Hpa::new(spec.clone()).unwrap();
        let r = h.reconcile(t(0), status(4), &[Some(2000), None]);
        assert_eq!(r.condition, Condition::MetricInvalid);
        let mut h = Hpa::new(spec).unwrap();
        assert_eq!(h.reconcile(t(0), status(4), &[Some(7000), None]).desired_replicas, 7);
    }

    fn behavior_hpa(up: ScalingRules, down: ScalingRules) -> Hpa {
        let mut spec = HpaSpec::external(MetricTarget::AverageValue(1000), 1, 100);
        spec.behavior = Some(Behavior {
            scale_up: Some(up),
            scale_down: Some(down),
        });
        Hpa::new(spec).unwrap()
    }

    #[test]
    fn behavior_defaults_allow_max_of_four_pods_or_double_per_15s() {
        let mut spec = HpaSpec::external(MetricTarget::AverageValue(1000), 1, 100);
        spec.behavior = Some(Behavior::default());
        let mut h = Hpa::new(spec).unwrap();
        // From 3: max(3+4, ceil(3·2)) = 7.
        assert_eq!(h.reconcile(t(0), status(3), &[Some(50_000)]).desired_replicas, 7);
        // 15 s later the t=0 event is not after the cutoff (now-15 s): a fresh period, from 7 → 14.
        assert_eq!(h.reconcile(t(15), status(7), &[Some(50_000)]).desired_replicas, 14);
        // Scale-down window defaults to 300 s: the recommendation of 50 holds.
        assert_eq!(h.reconcile(t(30), status(14), &[Some(1_000)]).desired_replicas, 14);
    }

    #[test]
    fn behavior_policies_count_events_within_their_period() {
        let pods = |v, p| ScalingPolicy {
            kind: PolicyKind::Pods,
            value: v,
            period_seconds: p,
        };
        let up = ScalingRules {
            policies: Some(vec![pods(2, 60)]),
            ..Default::default()
        };
        let down = ScalingRules {
            stabilization_window_seconds: Some(0),
            ..Default::default()
        };
        let mut h = behavior_hpa(up, down);
        assert_eq!(h.reconcile(t(0), status(2), &[Some(20_000)]).desired_replicas, 4);
        // Within 60 s, 2 pods were already added: periodStart = 4 - 2 = 2 → limit 4; stays.
        assert_eq!(h.reconcile(t(15), status(4), &[Some(20_000)]).desired_replicas, 4);
        assert_eq!(h.reconcile(t(59), status(4), &[Some(20_000)]).desired_replicas, 4);
        // At t=60 the event at t=0 is not after the cutoff: +2 again.
        assert_eq!(h.reconcile(t(60), status(4), &[Some(20_000)]).desired_replicas, 6);
        // Scale-down Percent 100 default: straight to the recommendation.
        assert_eq!(h.reconcile(t(75), status(6), &[Some(1_000)]).desired_replicas, 1);
    }

    #[test]
    fn behavior_select_min_and_percent_rounding() {
        let pol = |kind, v| ScalingPolicy {
            kind,
            value: v,
            period_seconds: 15,
        };
        let up = ScalingRules {
            select_policy: Some(SelectPolicy::Min),
            policies: Some(vec![pol(PolicyKind::Pods, 10), pol(PolicyKind::Percent, 50)]),
            ..Default::default()
        };
        let down = ScalingRules {
            stabilization_window_seconds: Some(0),
            select_policy: Some(SelectPolicy::Max),
            policies: Some(vec![pol(PolicyKind::Percent, 30), pol(PolicyKind::Pods, 1)]),
            ..Default::default()
        };
        let mut h = behavior_hpa(up, down);
        // Up, Min: min(5+10, ceil(5·1.5 = 7.5) = 8) = 8.
        assert_eq!(h.reconcile(t(0), status(5), &[Some(50_000)]).desired_replicas, 8);
        // Down, Max (largest change = smallest limit): min(trunc(10·0.7) = 7, 10-1 = 9) = 7.
        assert_eq!(h.reconcile(t(100), status(10), &[Some(1_000)]).desired_replicas, 7);
        // trunc(7·0.7 = 4.8999999999999995) = 4.
        assert_eq!(h.reconcile(t(200), status(7), &[Some(1_000)]).desired_replicas, 4);
    }

    #[test]
    fn behavior_disabled_and_stabilization_windows() {
        let up = ScalingRules {
            stabilization_window_seconds: Some(30),
            select_policy: Some(SelectPolicy::Max),
            ..Default::default()
        };
        let down = ScalingRules {
            select_policy: Some(SelectPolicy::Disabled),
            ..Default::default()
        };
        let mut h = behavior_hpa(up, down);
        h.record_initial(2, t(0));
        // Up window 30 s: the minimum over recommendations after now-30 s (2 at t=0) caps the scale-up.
        assert_eq!(h.reconcile(t(15), status(2), &[Some(10_000)]).desired_replicas, 2);
        // Then the default scale-up policies apply: max(2 + 4, ceil(2 · 2)) = 6.
        assert_eq!(h.reconcile(t(30), status(2), &[Some(10_000)]).desired_replicas, 6);
        // Scale-down disabled: never goes down.
        assert_eq!(h.reconcile(t(2000), status(10), &[Some(1_000)]).desired_replicas, 10);
    }

    #[test]
    fn validation_rejects_bad_specs() {
        let base = HpaSpec::external(MetricTarget::AverageValue(1000), 1, 40);
        assert!(matches!(
            Hpa::new(HpaSpec {
                min_replicas: 5,
                max_replicas: 2,
                ..base.clone()
            }),
            Err(HpaError::Bounds { .. })
        ));
        assert!(matches!(
            Hpa::new(HpaSpec {
                metrics: vec![MetricTarget::Value(0)],
                ..base.clone()
            }),
            Err(HpaError::Target { .. })
        ));
        let bad = ScalingRules {
            stabilization_window_seconds: Some(3601),
            ..Default::default()
        };
        let spec = HpaSpec {
            behavior: Some(Behavior {
                scale_up: Some(bad),
                scale_down: None,
            }),
            ..base.clone()
        };
        assert_eq!(Hpa::new(spec).unwrap_err(), HpaError::Window(3601));
        let bad = ScalingRules {
            policies: Some(vec![ScalingPolicy {
                kind: PolicyKind::Pods,
                value: 1,
                period_seconds: 1801,
            }]),
            ..Default::default()
        };
        let spec = HpaSpec {
            behavior: Some(Behavior {
                scale_up: None,
                scale_down: Some(bad),
            }),
            ..base
        };
        assert!(matches!(Hpa::new(spec), Err(HpaError::Policy { period: 1801, .. })));
    }

    #[test]
    fn pods_become_ready_after_lead_and_scale_down_drops_newest_first() {
        let lead = TimeDelta::seconds(120);
        let mut p = Pods::ready_at(2, lead, t(0));
        assert_eq!((p.ready(t(0)), p.starting(t(0))), (2, 0));
        p.scale_to(5, t(0));
        assert_eq!((p.ready(t(0)), p.starting(t(0))), (2, 3));
        assert_eq!(p.ready(t(119)), 2);
        assert_eq!(p.ready(t(120)), 5);
        p.scale_to(7, t(60));
        // Remove 4: both t=60 pods, then two of the t=0 pods that are not ready yet at t=90.
        p.scale_to(3, t(90));
        assert_eq!((p.ready(t(90)), p.starting(t(90))), (2, 1));
        p.scale_to(1, t(90));
        assert_eq!((p.len(), p.ready(t(90))), (1, 1));
    }

    #[test]
    fn pods_kept_as_runs_behave_as_one_creation_time_per_pod() {
        let lead = TimeDelta::seconds(150);
        let mut p = Pods::ready_at(30, lead, t(0));
        let mut each: Vec<DateTime<Utc>> = vec![t(0) - lead; 30];
        // A deterministic walk of scale-ups and scale-downs every 15 s.
        let mut x: u64 = 7;
        for k in 1..2000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let n = (x >> 33) as usize % 400;
            let now = t(15 * k);
            p.scale_to(n, now);
            if n > each.len() {
                each.resize(n, now);
            } else {
                each.truncate(n);
            }
            for probe in [now, now + TimeDelta::seconds(60), now + lead] {
                let cutoff = probe - lead;
                assert_eq!(p.ready(probe), each.partition_point(|c| *c <= cutoff), "step {k}");
            }
            assert_eq!(p.len(), each.len());
            // One run of ready pods, one per scale-up within the last cold start.
            assert!(
                p.runs.len() <= 2 + lead.num_seconds() as usize / 15,
                "{} runs",
                p.runs.len()
            );
        }
        // Runs, not pods: a few hundred pods in a handful of entries once the scale-ups are all ready.
        let mut p = Pods::ready_at(300, lead, t(0));
        p.scale_to(350, t(10));
        p.scale_to(320, t(20));
        assert_eq!(p.runs.len(), 2);
        assert_eq!((p.len(), p.ready(t(10) + lead)), (320, 320));
    }
}
