//! A PredictiveAutoscaler's `status`: what prescale observed and serves for it, derived from the plan store the
//! same way the admin API and `prescale explain` derive it, and the bounds on how often it is written.
//!
//! Writes are bounded three ways, so 10,000 objects never hammer the API server:
//!
//! - **what counts as a change**: conditions (status, reason, message), `observedGeneration`, `currentTarget`,
//!   `model`, `periods`, `slo` and `unservedShare` (to three significant digits) are written when they change;
//!   `plannedDemand`, `medianDemand`, `dataAge` and `forecastAge` move every cycle and are only refreshed, at most
//!   every [`WriteLimits::refresh`] (default 5 minutes), or along with a change;
//! - **per object**: at most one write per [`WriteLimits::min_interval`] (default 30 s); a change arriving sooner is
//!   written when the interval has passed;
//! - **globally**: a token bucket of [`WriteLimits::rate`] writes per second (default 20) with a burst of
//!   [`WriteLimits::burst`] (default 20); objects waiting longest are written first, the rest at the next tick.
//!
//! In steady state (target unchanged) that is one write per object per 5 minutes: 10,000 objects make about 33
//! writes a second, which the bucket flattens to 20 (every object's ages are then at most ~8 minutes old).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::config::WorkloadConfig;
use crate::control::engine::Serving;
use crate::control::quality::Health;
use crate::sre::explain::{self, share};
use crate::sre::views::SloView;
use crate::store::{Entry, Refusal};
use crate::workload::{
    PredictiveAutoscalerStatus, CONDITION_FORECAST_TRUSTED, CONDITION_HPA_MANAGED, CONDITION_READY, CONDITION_SLO_MET,
};

/// Every field of [`PredictiveAutoscalerStatus`], as the API spells it: a merge patch sets the absent ones to
/// `null`, so a field that no longer applies (a target, after the spec turned invalid) is removed, not left stale.
pub const STATUS_FIELDS: &[&str] = &[
    "conditions",
    "observedGeneration",
    "currentTarget",
    "plannedDemand",
    "medianDemand",
    "model",
    "periods",
    "dataAge",
    "forecastAge",
    "unservedShare",
    "slo",
];

/// How often status is written (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriteLimits {
    /// The least time between two writes of one object's status.
    pub min_interval: Duration,
    /// How often values that move every cycle (demands, ages) are refreshed when nothing else changed.
    pub refresh: Duration,
    /// Writes per second across all objects.
    pub rate: f64,
    /// Writes allowed at once across all objects.
    pub burst: u32,
    /// How often every object's status is recomputed and compared with what was written.
    pub tick: Duration,
}

impl Default for WriteLimits {
    fn default() -> Self {
        Self {
            min_interval: Duration::from_secs(30),
            refresh: Duration::from_secs(300),
            rate: 20.0,
            burst: 20,
            tick: Duration::from_secs(5),
        }
    }
}

/// What the controller made of an object, beside what the store says of its workload.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Its workload runs with these settings.
    Running(Box<WorkloadConfig>),
    /// Its spec is invalid: one line per problem, naming the field and the fix. Nothing is served.
    InvalidSpec(String),
    /// Its demand source cannot be built (no Prometheus configured).
    SourceUnavailable(String),
    /// A workload of the workload file has the same namespace and name: the file's runs, this object is ignored.
    Conflict,
}

/// What happened to an object's managed HPA.
#[derive(Debug, Clone, PartialEq)]
pub enum HpaState {
    /// `hpa.managed: false`, or not applicable.
    Unmanaged,
    /// prescale's HPA is in step with the spec.
    Managed(String),
    /// Someone else's HPA has that name or targets the same object: left alone.
    Conflict(String),
    /// The API refused a read or a write; retried on the object's next change or relist, and by the periodic pass.
    Failed(String),
}

/// The status of an object of `generation` whose outcome is `outcome` and whose workload's store entry is `entry`,
/// at `now`; `previous` conditions keep their `lastTransitionTime` unless their status flips.
pub fn status_of(
    outcome: &Outcome,
    hpa: &HpaState,
    entry: Option<&Entry>,
    max_forecast_age: chrono::TimeDelta,
    generation: Option<i64>,
    previous: &[Condition],
    now: DateTime<Utc>,
) -> PredictiveAutoscalerStatus {
    let mut status = PredictiveAutoscalerStatus {
        observed_generation: generation,
        ..Default::default()
    };
    let condition = |type_: &str, state: &str, reason: &str, message: String| {
        let since = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == state)
            .map_or_else(|| time(now), |c| c.last_transition_time.clone());
        Condition {
            type_: type_.into(),
            status: state.into(),
            reason: reason.into(),
            message,
            observed_generation: generation,
            last_transition_time: since,
        }
    };
    let config = match outcome {
        Outcome::Running(config) => config,
        Outcome::InvalidSpec(problems) => {
            status.conditions.push(condition(
                CONDITION_READY,
                "False",
                "InvalidSpec",
                format!("the spec is invalid; nothing is served until it is fixed:\n{problems}"),
            ));
            return status;
        }
        Outcome::SourceUnavailable(message) => {
            status.conditions.push(condition(
                CONDITION_READY,
                "False",
                "SourceUnavailable",
                message.clone(),
            ));
            return status;
        }
        Outcome::Conflict => {
            status.conditions.push(condition(
                CONDITION_READY,
                "False",
                "Conflict",
                "a workload of prescale's workload file has this namespace and name; the file's settings are \
                 served, this object is ignored: rename it or remove the entry from the file"
                    .into(),
            ));
            return status;
        }
    };
    let slo = config.policy.adaptive.slo;
    status.slo = Some(format!(
        "{} over {}",
        share(slo.max_unserved),
        crate::duration::format(slo.window)
    ));
    let entry = entry.cloned().unwrap_or_default();
    let snapshot = entry.snapshot.clone();
    let ready = match entry.servable(max_forecast_age, now) {
        Ok(s) => condition(
            CONDITION_READY,
            "True",
            "Serving",
            format!(
                "serving {} replicas as prescale_replicas{{workload={}}}",
                s.plan.replicas, config.id.name
            ),
        ),
        Err(refusal) => {
            let reason = match refusal {
                Refusal::NotPlanned { .. } => "NotPlanned",
                Refusal::StaleData { .. } => "StaleData",
                Refusal::StaleForecast { .. } => "StaleForecast",
            };
            condition(
                CONDITION_READY,
                "False",
                reason,
                format!("not served, the HPA holds its scale: {refusal}"),
            )
        }
    };
    status.conditions.push(ready);
    let insight = entry.insight.clone();
    status
        .conditions
        .push(match insight.as_ref().map(|i| (i.serving, i.quality.health)) {
            Some((Serving::Warming | Serving::Restored, _)) => condition(
                CONDITION_FORECAST_TRUSTED,
                "Unknown",
                "Warming",
                "the first model is being fitted: the reactive target (after a restart, the last plan, never below it) is served until it is ready".into(),
            ),
            None => condition(
                CONDITION_FORECAST_TRUSTED,
                "Unknown",
                "NotPlanned",
                "no forecast yet".into(),
            ),
            Some((_, Health::Trusted)) => condition(
                CONDITION_FORECAST_TRUSTED,
                "True",
                "QualityWithinBounds",
                "live forecast quality is within its bounds (or not yet judged)".into(),
            ),
            Some((_, Health::Demoted)) => condition(
                CONDITION_FORECAST_TRUSTED,
                "False",
                "Demoted",
                "live forecast quality fell below its bounds: the reactive target is served until it recovers".into(),
            ),
        });
    let view = insight.as_ref().and_then(|i| i.adaptive.as_ref()).map(SloView::of);
    status.unserved_share = view.as_ref().and_then(|v| v.unserved_fraction).map(share);
    status.conditions.push(match view.as_ref().map(|v| v.met) {
        None => condition(
            CONDITION_SLO_MET,
            "Unknown",
            "NotMeasured",
            "the SLO is measured by the SLO controller (adaptiveQuantile), which is off or has not run".into(),
        ),
        Some(None) => condition(
            CONDITION_SLO_MET,
            "Unknown",
            "NotScoredYet",
            "no scored demand in the SLO window yet".into(),
        ),
        Some(Some(met)) => condition(
            CONDITION_SLO_MET,
            if met { "True" } else { "False" },
            if met { "WithinObjective" } else { "ObjectiveMissed" },
            format!(
                "{} of demand unserved over the window, objective {}",
                status.unserved_share.clone().unwrap_or_default(),
                status.slo.clone().unwrap_or_default()
            ),
        ),
    });
    match hpa {
        HpaState::Unmanaged => {}
        HpaState::Managed(name) => status.conditions.push(condition(
            CONDITION_HPA_MANAGED,
            "True",
            "Managed",
            format!("HorizontalPodAutoscaler {name} reads prescale_replicas and is kept in step with the spec"),
        )),
        HpaState::Conflict(message) => status.conditions.push(condition(
            CONDITION_HPA_MANAGED,
            "False",
            "HPAConflict",
            message.clone(),
        )),
        HpaState::Failed(message) => status.conditions.push(condition(
            CONDITION_HPA_MANAGED,
            "False",
            "HPAWriteFailed",
            message.clone(),
        )),
    }
    if let Some(s) = &snapshot {
        status.current_target = Some(s.plan.replicas as i32);
        status.planned_demand = Some(significant(s.plan.planned_demand));
        status.median_demand = Some(significant(s.plan.median_demand));
        let warming = insight
            .as_ref()
            .is_some_and(|i| matches!(i.serving, Serving::Warming | Serving::Restored));
        if !warming {
            status.model = Some(s.forecast.method.to_string());
            status.periods = s.forecast.periods.iter().map(|p| (*p).into()).collect();
        }
        status.forecast_age = Some(whole_seconds(now - s.published_at));
    }
    let data_until = entry
        .status
        .as_ref()
        .and_then(|s| s.data_until)
        .or(snapshot.as_ref().and_then(|s| s.data_until));
    status.data_age = data_until.map(|t| whole_seconds(now - t));
    status
}

/// The part of a status whose change is written at once (see the module documentation): everything but the
/// demands and ages, and the conditions without their transition times (which change only with their status).
pub fn key_of(status: &PredictiveAutoscalerStatus) -> PredictiveAutoscalerStatus {
    PredictiveAutoscalerStatus {
        planned_demand: None,
        median_demand: None,
        data_age: None,
        forecast_age: None,
        conditions: status
            .conditions
            .iter()
            .map(|c| Condition {
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                ..c.clone()
            })
            .collect(),
        ..status.clone()
    }
}

/// The merge patch that makes an object's status `status`: fields it does not set are removed.
pub fn patch_of(status: &PredictiveAutoscalerStatus) -> serde_json::Value {
    let mut value = serde_json::to_value(status).expect("a status serializes");
    if let Some(fields) = value.as_object_mut() {
        for field in STATUS_FIELDS {
            fields.entry(*field).or_insert(serde_json::Value::Null);
        }
    }
    serde_json::json!({ "status": value })
}

/// What was last written for one object, and when.
#[derive(Debug, Clone)]
pub struct Written {
    /// The status written.
    pub status: PredictiveAutoscalerStatus,
    /// When.
    pub at: Instant,
}

/// Whether `desired` should be written now, given what was last `written`.
pub fn due(
    desired: &PredictiveAutoscalerStatus,
    written: Option<&Written>,
    limits: &WriteLimits,
    now: Instant,
) -> bool {
    let Some(w) = written else { return true };
    if &w.status == desired {
        return false;
    }
    let since = now.saturating_duration_since(w.at);
    if since < limits.min_interval {
        return false;
    }
    key_of(&w.status) != key_of(desired) || since >= limits.refresh
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        Self {
            rate,
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            at: now,
        }
    }

    /// Takes a token if one is there.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn time(t: DateTime<Utc>) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(t.timestamp()).unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH))
}

fn whole_seconds(d: chrono::TimeDelta) -> crate::duration::Duration {
    chrono::TimeDelta::seconds(d.num_seconds().max(0)).into()
}

/// `x` to three significant digits, as people read it (`explain::num`).
fn significant(x: f64) -> f64 {
    explain::num(x).parse().unwrap_or(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(20.0, 20, start);
        let taken = (0..100).filter(|_| bucket.try_take(start)).count();
        assert_eq!(taken, 20);
        // Half a second later: ten more.
        let later = start + Duration::from_millis(500);
        let taken = (0..100).filter(|_| bucket.try_take(later)).count();
        assert_eq!(taken, 10);
    }

    #[test]
    fn ages_alone_are_written_only_every_refresh_and_changes_after_the_minimum_interval() {
        let limits = WriteLimits::default();
        let start = Instant::now();
        let written = Written {
            status: PredictiveAutoscalerStatus {
                current_target: Some(3),
                data_age: Some(chrono::TimeDelta::seconds(30).into()),
                ..Default::default()
            },
            at: start,
        };
        let older = PredictiveAutoscalerStatus {
            data_age: Some(chrono::TimeDelta::seconds(90).into()),
            ..written.status.clone()
        };
        assert!(!due(&older, Some(&written), &limits, start + Duration::from_secs(60)));
        assert!(due(&older, Some(&written), &limits, start + limits.refresh));
        let changed = PredictiveAutoscalerStatus {
            current_target: Some(4),
            ..older.clone()
        };
        assert!(!due(&changed, Some(&written), &limits, start + Duration::from_secs(10)));
        assert!(due(&changed, Some(&written), &limits, start + limits.min_interval));
        assert!(due(&changed, None, &limits, start));
    }

    #[test]
    fn a_patch_removes_what_no_longer_applies() {
        let patch = patch_of(&PredictiveAutoscalerStatus {
            observed_generation: Some(2),
            ..Default::default()
        });
        assert_eq!(patch["status"]["observedGeneration"], 2);
        assert!(patch["status"]["currentTarget"].is_null());
        assert!(patch["status"].as_object().unwrap().contains_key("currentTarget"));
    }
}
