//! One workload's decision step, shared by production and the backtest: refit when due, forecast, plan.
//!
//! Pure: no I/O, no clock. The pipeline runs it on live history; the backtest runs the very same code on the
//! samples visible at each simulated tick.

use chrono::{DateTime, TimeDelta, Utc};

use crate::forecast::{self, Forecast, ForecastSettings, Model};
use crate::planner::{self, Policy, ReplicaPlan};
use crate::series::Series;

/// Demand observed "now": the mean of samples whose intervals end in `(at − 60 s, at]`, or else the latest sample.
///
/// `None` when there is no sample at all. Missing samples are never read as zero.
pub fn observed_demand(history: &Series, at: DateTime<Utc>) -> Option<f64> {
    history
        .mean_ending_in(at - TimeDelta::seconds(60), at)
        .or_else(|| history.visible_at(at).last_present().map(|(_, v)| v))
}

/// A workload's model state and policy.
#[derive(Debug, Clone)]
pub struct Engine {
    settings: ForecastSettings,
    policy: Policy,
    refit_interval: TimeDelta,
    model: Option<Model>,
    last_plan: Option<ReplicaPlan>,
}

/// The result of one decision.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The forecast the plan was made from.
    pub forecast: Forecast,
    /// The plan.
    pub plan: ReplicaPlan,
}

impl Engine {
    /// A new engine with no model yet.
    pub fn new(settings: ForecastSettings, policy: Policy, refit_interval: TimeDelta) -> Self {
        Self { settings, policy, refit_interval, model: None, last_plan: None }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The forecast settings.
    pub fn settings(&self) -> &ForecastSettings {
        &self.settings
    }

    /// True when there is no model or the model is older than the refit interval.
    pub fn needs_refit(&self, now: DateTime<Utc>) -> bool {
        self.model.as_ref().is_none_or(|m| now - m.fitted_at() >= self.refit_interval)
    }

    /// Installs a model fitted elsewhere (e.g. on a blocking thread).
    pub fn install(&mut self, model: Model) {
        self.model = Some(model);
    }

    /// Fits a model in place when one is due.
    pub fn refit_if_due(&mut self, history: &Series, now: DateTime<Utc>) {
        if self.needs_refit(now) {
            self.model = Some(forecast::fit(history, &self.settings, now));
        }
    }

    /// Forecasts from `history` and plans for `now`. `None` when there is no model or no sample to plan from.
    ///
    /// `observed_at` is the instant whose recent samples count as observed demand (now, less any scrape lag).
    pub fn decide(&mut self, history: &Series, now: DateTime<Utc>, observed_at: DateTime<Utc>) -> Option<Decision> {
        let model = self.model.as_ref()?;
        let observed = observed_demand(history, observed_at);
        history.last_present()?;
        let lag = (now - history.end()).max(TimeDelta::zero());
        let horizon = lag + self.policy.lead + self.policy.sync + self.policy.sync;
        let forecast = model.forecast(history, now, horizon);
        let plan = planner::plan_from(&forecast, observed, &self.policy, now, self.last_plan.as_ref());
        self.last_plan = Some(plan.clone());
        Some(Decision { forecast, plan })
    }

    /// The most recent plan.
    pub fn last_plan(&self) -> Option<&ReplicaPlan> {
        self.last_plan.as_ref()
    }
}
