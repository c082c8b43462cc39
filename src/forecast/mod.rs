//! Demand forecasting: seasonal models with calibrated prediction intervals, and honest fallbacks.
//!
//! [`fit`] never fails: when data is short, flat or the seasonal fit errors, it falls back (seasonal-naive, then last
//! value) and records why on every [`Forecast`]. A fitted [`Model`] produces a forecast cheaply for any later origin,
//! folding in the samples that arrived since the fit.
//!
//! # Model choices
//! - **Fit window and grid.** At most [`MAX_HISTORY`] (two weekly cycles and a day) is used, more for coarse steps
//!   (2,000 slots, at most 35 days: see [`history_span`]) so that the calibration's holdout models keep two weekly
//!   cycles. When that is more than
//!   [`MAX_FIT_POINTS`] slots, the fit runs on a coarser grid (means over whole native steps, e.g. 5 min for 1-min
//!   data) and the result is interpolated back: MSTL+AutoETS on 14 days of 1-min data costs ~0.7 s, on 5-min data
//!   ~0.09 s, and the short-horizon detail comes from the level correction, which works on the native grid.
//! - **Gaps** are never read as zero. For the fit only, interior gaps are filled by seasonal interpolation
//!   (see `prep`); the fraction of missing slots is recorded as [`Forecast::missing_fraction`]. Residuals,
//!   calibration and the observed level use real samples only.
//! - **Glitches**: isolated absurd samples (a scrape that returned `1e308`, a counter reset read as a rate) are
//!   replaced by the median of their neighbours before anything else reads the history: the fit, the calibration
//!   (its mean, its errors, its choice of correction) and, at every forecast, the residuals of the level
//!   correction and the recent spread. Only runs of at most two samples far out of line with their neighbours are
//!   replaced, so a surge that persists stays (see `prep::despike`); the count is
//!   [`Forecast::replaced_samples`]. One such sample made the forecast peak at 1e299 and the plan `maxReplicas`.
//! - **Periods** are explicit, or calendar periods (1 day, 1 week) confirmed by a periodogram peak and the
//!   autocorrelation at that lag (see `seasons`); each needs two full cycles of history. From six and a half days
//!   of history to two weeks, with a daily period detected, a weekend clearly below every weekday in the last week
//!   gives weekday factors: the daily model is fitted on demand divided by its day's factor and multiplied back
//!   ([`Forecast::weekday_factors`]; see `weekdays`), so that the Monday after the first weekend is not planned as
//!   another Sunday. The days are the workload's own: the UTC hour they begin at is read from its demand
//!   ([`Weekdays::utc_offset_hours`]).
//! - **Model**: augurs MSTL with an AutoETS (non-seasonal) trend; with no usable period, AutoETS alone
//!   ([`Method::Ets`]). In-sample values are the ETS one-step-ahead fit plus the seasonal components, so the
//!   residuals before and after the fit boundary mean the same thing.
//! - **A workload's first fit** ([`Effort::First`]; `serve` only, while the workload is served its reactive target)
//!   fits the trend on the last [`FIRST_FIT_TREND`] of the seasonally adjusted series, with additive errors only
//!   (AutoETS `AZN`), and calibrates on one fold: several times cheaper, with the same forecast error on the
//!   recorded traces (median absolute error 0.94–1.00 of a full fit's over 9 origins on four traces, q10–q90
//!   coverage as close to 80% or closer). The next refit is a full one; backtests always fit in full.
//! - **The recent level, where it forecasts better** ([`Method::Level`]): when the fit is seasonal, the
//!   calibration also replays the recent level alone (a zero baseline the level correction lifts to an
//!   exponentially weighted mean of recent demand, its half-life chosen the same way, undamped) over the same
//!   origins, and the model with the lower mean absolute error over every replayed origin, at the horizons a plan
//!   reads ([`ForecastSettings::decision`]), is the one that forecasts. On 1-minute request counts (NASA HTTP) a
//!   30-minute mean of the recent past forecast the next 5 minutes with a lower error than MSTL (0.165 against
//!   0.179 req/s on a weekend, 0.209 against 0.228 on weekdays): there the daily cycle moves less within a
//!   horizon than the seasonal fit errs from day to day. Where the cycle moves more (30-minute taxi demand, an
//!   hour ahead) the seasonal model wins and is kept.
//! - **Fallbacks**: a fit that errors, or produces non-finite values, falls back to seasonal-naive (a period with at
//!   least one full cycle), then to the last value. Flat or very short histories go straight to the last value.
//! - **Level correction**: between refits, `Model::forecast` shifts the baseline by an exponentially weighted level
//!   of the residuals just before the origin, damped with horizon. This is what makes the forecast adapt within a
//!   step or two when demand runs above (or below) the model, e.g. during an event.
//! - **Calibration**: intervals come from the model's own out-of-sample errors, not from augurs (whose intervals
//!   reflect the ETS trend alone and covered 47–60% for a nominal 80% here). A holdout model fitted on history up
//!   to `now − C` (C = one day, less on short histories) is replayed as production would use it at every origin in
//!   `(now − C, now]`; coarse series, whose day holds few origins, add earlier one-day folds, each with its own
//!   holdout model, until 300 origins are replayed (a day of 30-minute data is 48, and a q90 band calibrated on
//!   them covered 95% of outcomes). The correction's half-life and damping are chosen on those errors at the
//!   horizons a plan reads (a forecast is remade from the latest sample at every decision), and the
//!   empirical percentiles of the scaled error per horizon become the quantiles (see `calibrate`). Each replay
//!   starts where its holdout's data ends, so calibration errors are genuinely out of sample. The model and the
//!   holdout models do not depend on each other, so they are fitted side by side, on as many threads as the process
//!   may use (`available_parallelism`: CPU affinity and cgroup quota); the result is the same on any number.
//! - **Error scale**: errors are divided by `max(point, floor)^power × mean^(1 − power)`, with the power (relative
//!   1, square-root 0.5, … absolute 0) chosen so that errors below and above the mean level look alike. Relative
//!   errors pooled over a daily cycle whose trough is relatively noisier (counting noise) made the band at the peak
//!   several times too wide: a backtest of 30-minute taxi demand planned +24% over the median where +7% covered
//!   90% of outcomes.

use std::sync::Arc;

use augurs::ets::AutoETS;
use augurs::mstl::MSTLModel;
use augurs::{Fit, Predict};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::series::Series;

mod calibrate;
#[cfg(test)]
mod eval;
mod parallel;
mod prep;
mod seasons;
mod weekdays;

pub use weekdays::{Holiday, Weekdays};

use calibrate::{Calibration, Correction, ErrorTable, Fold, Replay, Scale};
use prep::Grid;

/// Longest history a fit reads: two weekly cycles plus a day for the calibration holdout.
pub const MAX_HISTORY: TimeDelta = TimeDelta::days(15);
/// Most slots a fit runs on; longer windows are fitted on a coarser grid.
pub const MAX_FIT_POINTS: usize = 4_500;
/// Longest history a fit of a coarse series reads (see [`history_span`]).
const LONG_HISTORY: TimeDelta = TimeDelta::days(35);
/// A fit of a coarse series reads up to this many slots, when that is more than [`MAX_HISTORY`] (within [`LONG_HISTORY`]).
const SPAN_SLOTS: i32 = 2_000;
/// Calibration fold: a stretch replayed out of sample by a model fitted on the history before it.
const CALIBRATION_WINDOW: TimeDelta = TimeDelta::days(1);
/// The calibration replays at least this many origins, in as many folds as it takes (see `calibrate_holdout`), so
/// that tail percentiles rest on enough errors: a day of 30-minute data is 48 origins, and its q90 band covered 95%
/// of outcomes.
const CALIBRATION_ORIGINS: usize = 300;
/// Most calibration folds (holdout fits) per fit.
const MAX_FOLDS: usize = 7;
/// Fewest present samples for anything but the last value.
const MIN_SAMPLES: usize = 12;
/// How far back recent one-step errors are compared with the calibration's.
const RECENT_ERRORS: TimeDelta = TimeDelta::hours(3);
/// Bounds on the recent-error multiplier of the band.
const SPREAD_RANGE: (f64, f64) = (0.8, 3.0);
/// Floor of the error scale, as a fraction of the mean level of the fit window (see `calibrate::Scale`).
const SCALE_FLOOR: f64 = 0.1;
/// Longest horizon (in native steps) with its own calibration row; longer horizons reuse the last row.
pub(crate) const MAX_CALIBRATION_HORIZON: usize = 240;

/// How many times the recent reference (see [`crate::control::planner::glitch_limit`]) a single sample must exceed to be taken for a glitch.
///
/// One absurd sample (a `1e308`, a counter reset read as a rate) drove the floor to `maxReplicas`. Genuine demand
/// that jumps tenfold within one sample is rare, and costs at most one sample of delay: pods asked for on that
/// sample would not serve before the lead time anyway, and the second sample of a rise is honoured.
pub const GLITCH_FACTOR: f64 = 10.0;

/// Why a fit could not use the full model. Recorded (as text) on the forecast as [`Forecast::fallback`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum ForecastError {
    /// There is no sample at all in the history.
    #[error("no demand samples in the history")]
    NoData,
    /// Too few samples for a seasonal or trend model.
    #[error("only {present} samples (need {MIN_SAMPLES})")]
    TooShort {
        /// Samples present.
        present: usize,
    },
    /// Every sample has the same value: nothing to model beyond that value.
    #[error("history is flat")]
    Flat,
    /// A seasonal period was requested but has fewer than two full cycles of history.
    #[error("fewer than two full cycles of history for the seasonal period")]
    ShortSeason,
    /// augurs failed to fit or predict.
    #[error("model fit failed: {source}")]
    Fit {
        /// augurs' error.
        #[source]
        source: std::sync::Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The model answered with a different number of in-sample values than it was given samples.
    #[error("model fit failed: {got} in-sample values for {expected} samples")]
    InSampleLength {
        /// Values returned.
        got: usize,
        /// Samples given.
        expected: usize,
    },
    /// The model produced NaN or infinite values.
    #[error("model produced non-finite values")]
    NonFinite,
}

impl ForecastError {
    fn fit(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Fit {
            source: std::sync::Arc::new(source),
        }
    }

    fn fit_boxed(source: BoxError) -> Self {
        Self::Fit {
            source: std::sync::Arc::from(source),
        }
    }
}

/// A probability level in (0, 1) to plan at, e.g. 0.9 for the 90th percentile.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
pub struct Quantile(f64);

/// A quantile outside (0, 1).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("quantile must be strictly between 0 and 1, got {0}")]
pub struct QuantileError(pub f64);

impl Quantile {
    /// Validates `q` in the open interval (0, 1).
    pub fn try_new(q: f64) -> Result<Self, QuantileError> {
        if q.is_finite() && q > 0.0 && q < 1.0 {
            Ok(Self(q))
        } else {
            Err(QuantileError(q))
        }
    }

    /// The median.
    pub const MEDIAN: Quantile = Quantile(0.5);

    /// The level as a number in (0, 1).
    pub fn get(self) -> f64 {
        self.0
    }
}

/// Which seasonal periods to model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Seasonality {
    /// Detect periods and snap them to calendar periods (1 day, 1 week).
    Auto,
    /// Use exactly these periods (each used only with two full cycles of history).
    Periods(Vec<TimeDelta>),
    /// No seasonality: trend only.
    None,
}

/// Settings for fitting one workload's model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForecastSettings {
    /// Seasonal periods to model.
    pub seasonality: Seasonality,
    /// How far past the fit each forecast must reach (lead time + sync + refit interval).
    pub horizon: TimeDelta,
    /// How far past the latest sample a plan reads the forecast (lead time + two syncs): the horizons the level
    /// correction, and the model against the recent level, are chosen on. A forecast is remade from the latest
    /// sample at every decision, so an error further ahead never reaches a plan; chosen on every horizon to the next
    /// refit, a seasonal fit that tracks the hour's shape wins over a level that forecasts the next minutes better.
    pub decision: TimeDelta,
}

impl ForecastSettings {
    /// The settings a workload planning `lead` ahead, syncing every `sync` and refitting every `refit_interval` fits
    /// with: forecasts reach the next refit's first plan, and the level correction is chosen on the horizons a plan
    /// reads (the lead time and two syncs).
    pub fn for_plan(seasonality: Seasonality, lead: TimeDelta, sync: TimeDelta, refit_interval: TimeDelta) -> Self {
        Self {
            seasonality,
            horizon: refit_interval + lead + sync * 2,
            decision: lead + sync * 2,
        }
    }
}

/// The model family that produced a forecast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// MSTL decomposition with an AutoETS trend.
    Mstl,
    /// The value one season ago.
    SeasonalNaive,
    /// The last observed value.
    LastValue,
    /// AutoETS alone (no seasonal period found or requested).
    Ets,
    /// The recent level: an exponentially weighted mean of recent demand, chosen over the seasonal model because it
    /// forecast better out of sample (see [`fit`]).
    Level,
}

impl Method {
    /// The name every surface uses (the same as in JSON): `mstl`, `seasonal_naive`, `last_value`, `ets`, `level`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Mstl => "mstl",
            Method::SeasonalNaive => "seasonal_naive",
            Method::LastValue => "last_value",
            Method::Ets => "ets",
            Method::Level => "level",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A baseline forecast on a (possibly coarser) grid: in-sample fit, then out-of-sample prediction.
#[derive(Debug, Clone)]
struct Baseline {
    start: DateTime<Utc>,
    step: TimeDelta,
    /// As `f32`, as the history it was fitted on is held (`Series`): half the memory of a live model's largest part.
    values: Vec<f32>,
    /// Beyond the end, repeat with this period (slots) instead of holding the last value.
    wrap: Option<usize>,
}

impl Baseline {
    /// The baseline for the native slot `[t, t + native_step)`, linearly interpolated between grid slot centres.
    fn at(&self, t: DateTime<Utc>, native_step: TimeDelta) -> f64 {
        let centre = t + native_step / 2;
        let x = (centre - self.start).num_milliseconds() as f64 / self.step.num_milliseconds() as f64 - 0.5;
        if x <= 0.0 {
            return self.value(0);
        }
        let j = x.floor() as usize;
        let frac = x - j as f64;
        self.value(j) * (1.0 - frac) + self.value(j + 1) * frac
    }

    fn value(&self, j: usize) -> f64 {
        let n = self.values.len();
        let i = if j < n {
            j
        } else {
            match self.wrap {
                Some(p) if p > 0 && p <= n => j - (j - n + 1).div_ceil(p) * p,
                _ => n - 1,
            }
        };
        f64::from(self.values[i])
    }
}

/// Baseline values as held (beyond `f32`'s range they become infinite, which a forecast treats as an overflow).
fn held(values: Vec<f64>) -> Vec<f32> {
    values.into_iter().map(|v| v as f32).collect()
}

/// What one fit produced before calibration.
#[derive(Debug, Clone)]
struct BaselineFit {
    baseline: Baseline,
    method: Method,
    fallback: Option<String>,
    periods: Vec<TimeDelta>,
    /// Weekday factors (Monday first) the daily model's forecast is multiplied by (see `weekdays`).
    weekday_factors: Option<Weekdays>,
}

/// A fitted model: produce forecasts from it with [`Model::forecast`].
#[derive(Debug, Clone)]
pub struct Model {
    fitted_at: DateTime<Utc>,
    effort: Effort,
    step: TimeDelta,
    fit: Option<BaselineFit>,
    correction: Correction,
    table: Arc<ErrorTable>,
    missing_fraction: f64,
    /// Samples of the fit window replaced as glitches (see `prep::despike`).
    replaced: usize,
}

/// How much history a fit on `step` slots reads: [`MAX_HISTORY`], or for coarse series up to `SPAN_SLOTS` slots
/// within `LONG_HISTORY`, so that the calibration holdout still holds two weekly cycles and the calibration
/// window enough errors (30-minute data: 35 days, a week of it replayed out of sample).
pub fn history_span(step: TimeDelta) -> TimeDelta {
    (step * SPAN_SLOTS).clamp(MAX_HISTORY, LONG_HISTORY)
}

/// How thoroughly a model is fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Effort {
    /// The trend fitted on the whole fit window, calibrated on as many one-day folds as 300 replayed origins need.
    #[default]
    Full,
    /// A workload's first model, fitted while it is served its reactive target: the trend (AutoETS, nearly all of a
    /// fit's time) fitted on the last [`FIRST_FIT_TREND`] of the seasonally adjusted series only and with additive
    /// errors only (the multiplicative candidates' likelihood is most of AutoETS's time), the seasonal
    /// decomposition still on the whole window, and the calibration on its last fold. Several times cheaper, so that
    /// thousands of workloads get a model of their own within minutes of a start; the next refit is a full one.
    First,
}

/// The stretch of the seasonally adjusted series a first fit's trend is fitted on ([`Effort::First`]): long enough
/// for the level correction's residual window and the compacted baseline (a day and some hours) to lie in it.
pub const FIRST_FIT_TREND: TimeDelta = TimeDelta::days(3);

/// Fits a model to `history` as of `now`. Never fails: falls back and records the reason.
///
/// Only slots that ended by `now` are read, and at most [`history_span`] of them.
pub fn fit(history: &Series, settings: &ForecastSettings, now: DateTime<Utc>) -> Model {
    fit_with(history, settings, now, Effort::Full)
}

/// [`fit`], with `effort`.
pub fn fit_with(history: &Series, settings: &ForecastSettings, now: DateTime<Utc>, effort: Effort) -> Model {
    let mut models = fit_each(history, std::slice::from_ref(settings), now, effort);
    models.pop().expect("one model per setting")
}

/// One model per entry of `settings` (in order), each the model [`fit_with`] makes for it, sharing what does not
/// depend on the horizons: settings of one seasonality share the seasonal fits, made once for the longest horizon
/// (a forecast further ahead starts as a shorter one does), and each calibrates its own level correction and error
/// table on its own horizons. What a backtest of several lead times fits at each refit.
pub fn fit_each(history: &Series, settings: &[ForecastSettings], now: DateTime<Utc>, effort: Effort) -> Vec<Model> {
    let mut models: Vec<Option<Model>> = vec![None; settings.len()];
    for (k, s) in settings.iter().enumerate() {
        if models[k].is_some() {
            continue;
        }
        let alike: Vec<usize> = (k..settings.len())
            .filter(|&j| settings[j].seasonality == s.seasonality)
            .collect();
        let decisions: Vec<(TimeDelta, TimeDelta)> = alike
            .iter()
            .map(|&j| (settings[j].horizon, settings[j].decision))
            .collect();
        for (j, model) in alike
            .into_iter()
            .zip(fit_seasonality(history, &s.seasonality, &decisions, now, effort))
        {
            models[j] = Some(model);
        }
    }
    models
        .into_iter()
        .map(|m| m.expect("every setting is fitted"))
        .collect()
}

/// [`fit_each`] for settings of one seasonality: `horizons` holds each one's `(horizon, decision)`.
fn fit_seasonality(
    history: &Series,
    seasonality: &Seasonality,
    horizons: &[(TimeDelta, TimeDelta)],
    now: DateTime<Utc>,
    effort: Effort,
) -> Vec<Model> {
    let step = history.step();
    let native = Grid::of(&history.visible_at(now)).since(now - history_span(step));
    let (trimmed, replaced) = native.trim_gaps().despiked();
    let missing_fraction = if trimmed.values.is_empty() {
        1.0
    } else {
        1.0 - trimmed.present() as f64 / trimmed.values.len() as f64
    };
    let longest = horizons.iter().map(|h| h.0).max().unwrap_or(step).max(step);
    // The model and the calibration's holdout models are fitted independently of each other: side by side.
    let (folds, trend_tail) = match effort {
        Effort::Full => (Folds::of(&trimmed), None),
        Effort::First => (Folds::of(&trimmed).map(Folds::last), Some(FIRST_FIT_TREND)),
    };
    let holdout_data = folds.map(|f| f.holdouts(&trimmed, longest)).unwrap_or_default();
    let jobs: Vec<(&Grid, TimeDelta)> = std::iter::once((&trimmed, longest))
        .chain(holdout_data.iter().map(|(grid, h)| (grid, *h)))
        .collect();
    let mut fits = parallel::map(&jobs, |&(grid, h)| fit_baseline(grid, seasonality, h, trend_tail)).into_iter();
    let full = fits.next().flatten();
    let holdouts: Option<Vec<BaselineFit>> = fits.collect();

    let present: Vec<f64> = trimmed.values.iter().flatten().copied().collect();
    let mean = if present.is_empty() {
        0.0
    } else {
        present.iter().sum::<f64>() / present.len() as f64
    };
    // The calibration chooses how errors grow with the level; without it, errors are relative.
    let scale = Scale {
        floor: (SCALE_FLOOR * mean).max(1e-9),
        reference: mean.max(1e-9),
        power: 1.0,
    };

    horizons
        .iter()
        .map(|&(horizon, decision)| {
            let calibrated = folds
                .zip(holdouts.as_deref())
                .and_then(|(f, h)| f.calibrate(&trimmed, Some(h), (horizon.max(step), decision), scale));
            // The recent level alone, replayed over the same origins: where it forecasts better out of sample than the
            // seasonal model, it is what the workload's demand can be forecast with. Only a seasonal model is challenged:
            // AutoETS is itself a model of the level (and its trend), and on a short history with no cycle (a 15-minute
            // one) the two differ by the luck of a few origins.
            let level = folds
                .filter(|_| {
                    full.as_ref()
                        .is_some_and(|f| matches!(f.method, Method::Mstl | Method::SeasonalNaive))
                })
                .and_then(|f| f.calibrate(&trimmed, None, (horizon.max(step), decision), scale));
            let (fit, calibrated) = match (calibrated, level) {
                (Some(fitted), Some(level)) if level.mae < fitted.mae => {
                    let fit = BaselineFit {
                        baseline: Baseline {
                            start: trimmed.start,
                            step,
                            values: held(vec![0.0]),
                            wrap: None,
                        },
                        method: Method::Level,
                        fallback: None,
                        periods: Vec::new(),
                        weekday_factors: None,
                    };
                    (Some(fit), Some(level))
                }
                (fitted, _) => (full.clone(), fitted),
            };
            let (correction, table) = calibrated.map_or_else(
                || {
                    (
                        Correction {
                            half_life: 2.0,
                            damping: 0.97,
                        },
                        ErrorTable::uncalibrated(scale),
                    )
                },
                |c| (c.correction, c.table),
            );
            let mut model = Model {
                fitted_at: now,
                effort,
                step,
                fit,
                correction,
                table: Arc::new(table),
                missing_fraction,
                replaced,
            };
            model.compact();
            model
        })
        .collect()
}

/// How far before its fit a model's baseline is kept beyond what a forecast reads (`Model::compact`): a forecast
/// made from history that stopped up to this long before the fit reads the same residuals as before compaction.
const BASELINE_SLACK: TimeDelta = TimeDelta::days(1);

/// Where the calibration folds of a native grid lie.
///
/// A fold is the calibration window (a day, or a quarter of shorter histories); a day of a coarse series holds few
/// origins, so there are as many folds, back to back and each with its own holdout model, as it takes to replay
/// [`CALIBRATION_ORIGINS`] origins (at most [`MAX_FOLDS`], all within the last quarter of the history). Each holdout
/// model is fitted on history up to the start of its fold, so it is at most a fold older than the origins it is
/// replayed from, as a production model is at most a refit interval old: replaying one model over a longer stretch
/// would measure a staler model than production runs.
#[derive(Debug, Clone, Copy)]
struct Folds {
    /// Slots per fold.
    slots: usize,
    /// Number of folds.
    count: usize,
    /// Index of the first fold's first origin.
    first: usize,
}

impl Folds {
    /// The folds of `native`, `None` when it is too short to calibrate on.
    fn of(native: &Grid) -> Option<Self> {
        let n = native.values.len();
        if native.present() < 2 * MIN_SAMPLES {
            return None;
        }
        let slots = ((CALIBRATION_WINDOW.num_milliseconds() / native.step.num_milliseconds()) as usize)
            .min(n / 4)
            .max(MIN_SAMPLES);
        let count = CALIBRATION_ORIGINS
            .div_ceil(slots)
            .min((n / 4) / slots)
            .clamp(1, MAX_FOLDS);
        let first = n.checked_sub(count * slots)?;
        Some(Self { slots, count, first })
    }

    /// The last fold alone: a first fit's calibration ([`Effort::First`]).
    fn last(self) -> Self {
        Self {
            count: 1,
            first: self.first + (self.count - 1) * self.slots,
            ..self
        }
    }

    /// First origin of each fold.
    fn origins(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.count).map(|k| self.first + k * self.slots)
    }

    /// The history each holdout model is fitted on, with the horizon it must forecast (through its whole fold).
    fn holdouts(&self, native: &Grid, horizon: TimeDelta) -> Vec<(Grid, TimeDelta)> {
        let ahead = horizon + native.step * self.slots as i32;
        self.origins()
            .map(|origin| (native.clone().until(native.time_at(origin)).trim_gaps(), ahead))
            .collect()
    }

    /// Replays each holdout model (`fits`, one per fold, in order) over its fold and calibrates on the errors.
    /// Without `fits`, the recent level alone is replayed: a baseline of zero, which the correction lifts to the
    /// exponentially weighted mean of recent demand.
    fn calibrate(
        &self,
        native: &Grid,
        fits: Option<&[BaselineFit]>,
        (horizon, decision): (TimeDelta, TimeDelta),
        scale: Scale,
    ) -> Option<Calibration> {
        let (n, step) = (native.values.len(), native.step);
        let slots = |d: TimeDelta| (d.num_milliseconds() / step.num_milliseconds()).max(1) as usize;
        let h = slots(horizon);
        // The level alone: one zero baseline, shared by every fold.
        let bases: Vec<Vec<f64>> = match fits {
            Some(fits) => fits
                .iter()
                .map(|fit| (0..n).map(|i| fit.baseline.at(native.time_at(i), step)).collect())
                .collect(),
            None => vec![vec![0.0; n]],
        };
        let folds: Vec<Fold<'_>> = bases
            .iter()
            .cycle()
            .zip(self.origins())
            .map(|(base, first_origin)| Fold {
                base,
                first_origin,
                end: first_origin + self.slots,
            })
            .collect();
        Replay {
            y: &native.values,
            folds: &folds,
            scale,
            horizon: h,
            scored: slots(decision),
            level_only: fits.is_none(),
        }
        .calibrate()
    }
}

/// Fits the baseline for a gap-trimmed native grid, falling back as needed. `None` only without any sample.
/// The baseline of `native` over `horizon`; with `trend_tail`, the trend is fitted on that last stretch only.
fn fit_baseline(
    native: &Grid,
    seasonality: &Seasonality,
    horizon: TimeDelta,
    trend_tail: Option<TimeDelta>,
) -> Option<BaselineFit> {
    let last = native.values.iter().rev().find_map(|v| *v)?;
    let present = native.present();
    let last_value = |reason: ForecastError| BaselineFit {
        baseline: Baseline {
            start: native.start,
            step: native.step,
            values: held(vec![last]),
            wrap: None,
        },
        method: Method::LastValue,
        fallback: Some(reason.to_string()),
        periods: Vec::new(),
        weekday_factors: None,
    };
    if present < MIN_SAMPLES {
        return Some(last_value(ForecastError::TooShort { present }));
    }
    let first = native.values.iter().find_map(|v| *v).unwrap_or(last);
    if native
        .values
        .iter()
        .flatten()
        .all(|v| (v - first).abs() <= 1e-12 * first.abs().max(1.0))
    {
        return Some(last_value(ForecastError::Flat));
    }

    let factor = native.values.len().div_ceil(MAX_FIT_POINTS).max(1);
    let factor = snap_factor(factor, native.step);
    let grid = native.downsample(factor).trim_gaps();
    let step = grid.step;
    let n = grid.values.len();
    let linear = prep::fill(&grid.values, None);

    let (periods, one_cycle) = match seasonality {
        Seasonality::Auto => (seasons::detect(&linear, step), Vec::new()),
        Seasonality::Periods(p) => seasons::explicit(p, step, n),
        Seasonality::None => (Vec::new(), Vec::new()),
    };
    let y = match periods.first().or(one_cycle.first()) {
        Some(&p) => prep::fill(&grid.values, Some(p)),
        None => linear,
    };
    let h = (horizon.num_milliseconds() as f64 / step.num_milliseconds() as f64).ceil() as usize + 2;
    let to_delta = |p: &usize| step * *p as i32;
    let trend = TrendTail(trend_tail.map(|t| (t.num_milliseconds() / step.num_milliseconds().max(1)).max(1) as usize));

    // A daily model on one week and more of history, before the weekly period can be fitted: the weekend from
    // weekday factors (see `weekdays`).
    let per_day = TimeDelta::days(1).num_milliseconds() / step.num_milliseconds().max(1);
    let factors = (matches!(seasonality, Seasonality::Auto) && periods.len() == 1 && periods[0] as i64 == per_day)
        .then(|| weekdays::detect(&y, grid.start, step))
        .flatten();
    let day_factor = |i: usize| factors.map_or(1.0, |w| w.at(grid.start + step * i as i32));
    let adjusted: std::borrow::Cow<[f64]> = match factors {
        Some(_) => y.iter().enumerate().map(|(i, v)| v / day_factor(i)).collect(),
        None => (&y[..]).into(),
    };

    let model = if periods.is_empty() {
        if !one_cycle.is_empty() {
            Err(ForecastError::ShortSeason)
        } else {
            fit_ets(&adjusted, h, trend).map(|v| (v, Method::Ets))
        }
    } else {
        fit_mstl(&adjusted, &periods, h, trend).map(|v| (v, Method::Mstl))
    };
    match model {
        Ok((values, method)) => Some(BaselineFit {
            baseline: Baseline {
                start: grid.start,
                step,
                values: held(values.iter().enumerate().map(|(i, v)| v * day_factor(i)).collect()),
                // Beyond the forecast, a day repeats, or with weekday factors the week.
                wrap: periods.last().map(|p| if factors.is_some() { 7 * p } else { *p }),
            },
            method,
            fallback: None,
            periods: periods.iter().map(to_delta).collect(),
            weekday_factors: factors,
        }),
        Err(error) => {
            let season = periods.last().or(one_cycle.last()).copied();
            match season {
                Some(p) if n >= p => Some(BaselineFit {
                    baseline: Baseline {
                        start: grid.start,
                        step,
                        values: held(seasonal_naive(&y, p)),
                        wrap: Some(p),
                    },
                    method: Method::SeasonalNaive,
                    fallback: Some(error.to_string()),
                    periods: vec![to_delta(&p)],
                    weekday_factors: None,
                }),
                _ => Some(last_value(error)),
            }
        }
    }
}

/// Rounds a downsampling factor up so that whole fit slots make a day, when the native step allows it.
fn snap_factor(factor: usize, step: TimeDelta) -> usize {
    if factor <= 1 {
        return 1;
    }
    let per_day = (TimeDelta::days(1).num_milliseconds() / step.num_milliseconds().max(1)) as usize;
    (factor..factor * 2).find(|f| per_day % f == 0).unwrap_or(factor)
}

/// MSTL + AutoETS: in-sample one-step fit plus `h` predicted slots.
fn fit_mstl(y: &[f64], periods: &[usize], h: usize, trend: TrendTail) -> Result<Vec<f64>, ForecastError> {
    let fitted = match trend.0 {
        None => MSTLModel::new(periods.to_vec(), AutoETS::non_seasonal().into_trend_model()).fit(y),
        Some(_) => MSTLModel::new(periods.to_vec(), trend).fit(y),
    }
    .map_err(ForecastError::fit)?;
    let in_sample = fitted.predict_in_sample(None).map_err(ForecastError::fit)?;
    let ahead = fitted.predict(h, None).map_err(ForecastError::fit)?;
    join_finite(in_sample.point, ahead.point, y.len())
}

/// AutoETS alone: in-sample one-step fit plus `h` predicted slots.
fn fit_ets(y: &[f64], h: usize, trend: TrendTail) -> Result<Vec<f64>, ForecastError> {
    use augurs::mstl::TrendModel;
    let (in_sample, ahead) = match trend.0 {
        None => {
            let fitted = AutoETS::non_seasonal().fit(y).map_err(ForecastError::fit)?;
            (
                fitted.predict_in_sample(None).map_err(ForecastError::fit)?.point,
                fitted.predict(h, None).map_err(ForecastError::fit)?.point,
            )
        }
        Some(_) => {
            let fitted = trend.fit(y).map_err(ForecastError::fit_boxed)?;
            (
                fitted.predict_in_sample(None).map_err(ForecastError::fit_boxed)?.point,
                fitted.predict(h, None).map_err(ForecastError::fit_boxed)?.point,
            )
        }
    };
    join_finite(in_sample, ahead, y.len())
}

/// AutoETS fitted on the last `.0` slots of a series only (all of it with `None`); before them its in-sample fit is
/// the series itself. A first fit's trend ([`Effort::First`]): AutoETS's cost grows with the length it is fitted on.
#[derive(Debug, Clone, Copy)]
struct TrendTail(Option<usize>);

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl augurs::mstl::TrendModel for TrendTail {
    fn name(&self) -> std::borrow::Cow<'_, str> {
        "AutoETS on the recent stretch".into()
    }

    fn fit(&self, y: &[f64]) -> Result<Box<dyn augurs::mstl::FittedTrendModel + Sync + Send>, BoxError> {
        let start = self.0.map_or(0, |tail| y.len().saturating_sub(tail));
        let inner = AutoETS::new(1, "AZN")?.into_trend_model().fit(&y[start..])?;
        Ok(Box::new(FittedTail {
            head: y[..start].to_vec(),
            inner,
        }))
    }
}

#[derive(Debug)]
struct FittedTail {
    head: Vec<f64>,
    inner: Box<dyn augurs::mstl::FittedTrendModel + Sync + Send>,
}

impl augurs::mstl::FittedTrendModel for FittedTail {
    fn predict_inplace(
        &self,
        horizon: usize,
        level: Option<f64>,
        forecast: &mut augurs::Forecast,
    ) -> Result<(), BoxError> {
        self.inner.predict_inplace(horizon, level, forecast)
    }

    fn predict_in_sample_inplace(&self, level: Option<f64>, forecast: &mut augurs::Forecast) -> Result<(), BoxError> {
        let mut tail = augurs::Forecast::with_capacity(0);
        self.inner.predict_in_sample_inplace(None, &mut tail)?;
        forecast.point.extend_from_slice(&self.head);
        forecast.point.extend(tail.point);
        if let Some(level) = level {
            // The head is the series itself: no spread there; the tail's band is the trend model's.
            let mut banded = augurs::Forecast::with_capacity_and_level(0, level);
            self.inner.predict_in_sample_inplace(Some(level), &mut banded)?;
            if let (Some(into), Some(band)) = (forecast.intervals.as_mut(), banded.intervals) {
                into.lower.extend_from_slice(&self.head);
                into.lower.extend(band.lower);
                into.upper.extend_from_slice(&self.head);
                into.upper.extend(band.upper);
            }
        }
        Ok(())
    }

    fn training_data_size(&self) -> Option<usize> {
        Some(self.head.len() + self.inner.training_data_size()?)
    }
}

fn join_finite(mut in_sample: Vec<f64>, ahead: Vec<f64>, n: usize) -> Result<Vec<f64>, ForecastError> {
    if in_sample.len() != n {
        return Err(ForecastError::InSampleLength {
            got: in_sample.len(),
            expected: n,
        });
    }
    in_sample.extend(ahead);
    if in_sample.iter().all(|v| v.is_finite()) {
        Ok(in_sample)
    } else {
        Err(ForecastError::NonFinite)
    }
}

/// Seasonal-naive baseline: the value one period earlier (the first cycle is its own baseline).
fn seasonal_naive(y: &[f64], p: usize) -> Vec<f64> {
    (0..y.len()).map(|i| if i >= p { y[i - p] } else { y[i] }).collect()
}

impl Model {
    /// Drops the in-sample part of the baseline no forecast reads: forecasts made at or after the fit read the
    /// baseline only over the recent residual window (the level correction's, the recent spread's, the glitch
    /// filter's context; [`BASELINE_SLACK`] earlier still for a history that stopped before the fit) and, beyond its
    /// end, its last season. The rest was the largest part of a live model's memory (a week of 5-minute slots for
    /// two weeks of history: 16 KiB a workload).
    fn compact(&mut self) {
        let Some(fit) = self.fit.as_mut() else { return };
        let b = &mut fit.baseline;
        let native = (RECENT_ERRORS.num_milliseconds()
            + (self.correction.window() + prep::SPIKE_CONTEXT + 1) as i64 * self.step.num_milliseconds())
            + BASELINE_SLACK.num_milliseconds();
        let from = self.fitted_at - TimeDelta::milliseconds(native);
        let step_ms = b.step.num_milliseconds().max(1);
        // One slot more for the interpolation between slot centres.
        let first_read = ((from - b.start).num_milliseconds() / step_ms - 1).max(0) as usize;
        let season = b.wrap.unwrap_or(1).max(1);
        let drop = first_read.min(b.values.len().saturating_sub(season));
        if drop == 0 {
            return;
        }
        b.values.drain(..drop);
        b.values.shrink_to_fit();
        b.start += b.step * drop as i32;
    }

    /// How thoroughly the model was fitted.
    pub fn effort(&self) -> Effort {
        self.effort
    }

    /// When the model was fitted.
    pub fn fitted_at(&self) -> DateTime<Utc> {
        self.fitted_at
    }

    /// The model family in use.
    pub fn method(&self) -> Option<Method> {
        self.fit.as_ref().map(|f| f.method)
    }

    /// Forecast from the end of `history` (which may hold samples newer than the fit) over `horizon`.
    ///
    /// Only slots that ended by `now` are read. The forecast starts at the end of those slots and covers at least
    /// one slot. With no sample at all, the forecast has no slots ([`Forecast::is_empty`]).
    pub fn forecast(&self, history: &Series, now: DateTime<Utc>, horizon: TimeDelta) -> Forecast {
        let visible = history.visible_at(now);
        let step = self.step;
        let origin = visible.end();
        let n = (horizon.num_milliseconds() as f64 / step.num_milliseconds() as f64)
            .ceil()
            .max(1.0) as usize;
        let (Some(fit), Some((last_t, _))) = (&self.fit, visible.last_present()) else {
            return Forecast::empty(origin, step, self.fitted_at, self.missing_fraction);
        };
        let visible = self.despiked_tail(&visible);
        let o = visible.len();
        let window = self.correction.window();
        let residuals = (o.saturating_sub(window)..o).filter_map(|i| {
            visible
                .get(i)
                .map(|y| (o - 1 - i, y - fit.baseline.at(visible.time_at(i), step)))
        });
        let level = self.correction.level(residuals);
        // Steps since the last real sample: a trailing gap makes every forecast slot that much further ahead.
        let last_slot = visible.slot_of(last_t).unwrap_or(o.saturating_sub(1));
        let last_value = visible.last_present().map_or(0.0, |(_, v)| v);
        let gap = o - 1 - last_slot;

        let mut point = Vec::with_capacity(n);
        let mut horizons = Vec::with_capacity(n);
        for j in 0..n {
            let h = gap + j + 1;
            let t = origin + step * j as i32;
            let base = fit.baseline.at(t, step);
            let p = base + self.correction.shift(level, h);
            // An overflowing point is no reason to plan for nothing: fall back to the baseline, then to the latest
            // sample.
            let p = [p, base, last_value].into_iter().find(|v| v.is_finite()).unwrap_or(0.0);
            point.push(p.max(0.0));
            horizons.push(h);
        }
        let spread = self.recent_spread(&visible, fit);
        let bands = Bands {
            point,
            horizons,
            scale: self.table.scale,
            table: self.table.clone(),
            spread,
        };
        let median = (0..n).map(|i| bands.at(i, 0.5)).collect();
        Forecast {
            origin,
            step,
            median,
            fitted_at: self.fitted_at,
            method: fit.method,
            fallback: fit.fallback.clone(),
            periods: fit.periods.clone(),
            weekday_factors: fit.weekday_factors,
            missing_fraction: self.missing_fraction,
            replaced_samples: self.replaced,
            first_fit: self.effort == Effort::First,
            calibration_samples: self.table.samples,
            bands: Some(bands),
        }
    }
}

impl Model {
    /// `visible` with glitches replaced over the stretch a forecast reads (the level correction's window and the
    /// recent spread's), judged with as much context before it as the filter looks at.
    ///
    /// The fit saw a cleaned history; residuals of raw samples against it would bring the glitch back through the
    /// level correction, which follows the latest residuals closely.
    fn despiked_tail(&self, visible: &Series) -> Series {
        let o = visible.len();
        let recent = (RECENT_ERRORS.num_milliseconds() / self.step.num_milliseconds()).max(1) as usize;
        let from = o.saturating_sub(recent + self.correction.window() + prep::SPIKE_CONTEXT);
        let (tail, _) = prep::despike(&visible.slots(from..o).collect::<Vec<_>>());
        let mut cleaned = visible.clone();
        for (k, v) in tail.into_iter().enumerate() {
            cleaned.set(from + k, v);
        }
        cleaned
    }

    /// Samples of the fit window that were replaced as glitches.
    pub fn replaced_samples(&self) -> usize {
        self.replaced
    }

    /// How much wider (or narrower) than calibrated the band should be now: the median absolute one-step error
    /// over the recent past, relative to the calibration's, clamped to [`SPREAD_RANGE`].
    ///
    /// Calibration looks at the last day as a whole; when demand turns noisier (an event, a new regime) the band
    /// widens within hours instead of waiting for the next day's errors to dominate.
    fn recent_spread(&self, visible: &Series, fit: &BaselineFit) -> f64 {
        let scale = self.table.one_step_scale;
        if scale <= 0.0 {
            return 1.0;
        }
        let o = visible.len();
        let recent = (RECENT_ERRORS.num_milliseconds() / self.step.num_milliseconds()).max(1) as usize;
        let window = self.correction.window();
        let from = o.saturating_sub(recent + window);
        let decay = 0.5f64.powf(1.0 / self.correction.half_life);
        let cut = decay.powi(window as i32);
        let (mut s, mut w) = (0.0, 0.0);
        let mut errors = Vec::new();
        let base: Vec<f64> = (from..o)
            .map(|i| fit.baseline.at(visible.time_at(i), self.step))
            .collect();
        for i in from..o {
            let k = i - from;
            if let Some(y) = visible.get(i) {
                if i >= o - recent.min(o) && w > 1e-9 {
                    let point = (base[k] + self.correction.shift(s / w, 1)).max(0.0);
                    errors.push(((y - point) / self.table.scale.of(point)).abs());
                }
            }
            s *= decay;
            w *= decay;
            if let Some(y) = visible.get(i) {
                s += y - base[k];
                w += 1.0;
            }
            if k >= window {
                if let Some(y) = visible.get(i - window) {
                    s -= cut * (y - base[k - window]);
                    w -= cut;
                }
            }
        }
        if errors.len() < MIN_SAMPLES {
            return 1.0;
        }
        errors.sort_by(f64::total_cmp);
        let median = errors[errors.len() / 2];
        (median / scale).clamp(SPREAD_RANGE.0, SPREAD_RANGE.1)
    }
}

/// Point forecasts with the error table that turns them into quantiles.
#[derive(Debug, Clone)]
struct Bands {
    point: Vec<f64>,
    horizons: Vec<usize>,
    scale: Scale,
    table: Arc<ErrorTable>,
    /// Multiplier on the calibrated spread around the median, from recent one-step errors.
    spread: f64,
}

impl Bands {
    fn at(&self, i: usize, q: f64) -> f64 {
        let p = self.point[i];
        let h = self.horizons[i];
        let mid = self.table.quantile(h, 0.5);
        let rel = mid + (self.table.quantile(h, q) - mid) * self.spread;
        let v = p + self.scale.of(p) * rel;
        if v.is_finite() {
            v.max(0.0)
        } else {
            p
        }
    }
}

/// Forecast demand on a grid from `origin`, with calibrated quantiles.
///
/// Invariant: every value is finite and ≥ 0.
#[derive(Debug, Clone, Serialize)]
pub struct Forecast {
    /// Start of the first forecast slot (the end of the history it saw).
    pub origin: DateTime<Utc>,
    /// Slot length.
    #[serde(skip)]
    pub step: TimeDelta,
    /// Median forecast per slot.
    pub median: Vec<f64>,
    /// When the model behind this forecast was fitted.
    pub fitted_at: DateTime<Utc>,
    /// Model family.
    pub method: Method,
    /// Why a fallback is in use, if one is.
    pub fallback: Option<String>,
    /// Seasonal periods in use.
    #[serde(skip)]
    pub periods: Vec<TimeDelta>,
    /// With a daily period and six and a half days to two weeks of history: each day of the week's mean demand over
    /// the week's (Monday first), read from the last seven days on the workload's own days, by which the daily
    /// model's forecast is multiplied. Used only when the weekend stands clearly below every weekday.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weekday_factors: Option<Weekdays>,
    /// Fraction of slots missing in the fitted history (0 = complete), from its first sample to its last.
    pub missing_fraction: f64,
    /// Number of out-of-sample errors the intervals were calibrated on (0: uncalibrated default band).
    pub calibration_samples: usize,
    /// Samples of the fitted history replaced as glitches: isolated and far out of line with their neighbours
    /// (0 for a clean history).
    #[serde(skip_serializing_if = "is_zero")]
    pub replaced_samples: usize,
    /// The model is a workload's first, fitted with less effort ([`Effort::First`]) while it was served its
    /// reactive target; a full fit replaces it at the next refit.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub first_fit: bool,
    #[serde(skip)]
    bands: Option<Bands>,
}

impl Forecast {
    /// A forecast with exactly these medians and no spread (every quantile is the median). For tests and
    /// callers that bring their own forecast.
    pub fn from_median(origin: DateTime<Utc>, step: TimeDelta, median: Vec<f64>, fitted_at: DateTime<Utc>) -> Self {
        let median = median
            .into_iter()
            .map(|v| if v.is_finite() { v.max(0.0) } else { 0.0 })
            .collect();
        Forecast {
            origin,
            step,
            median,
            fitted_at,
            method: Method::LastValue,
            fallback: None,
            periods: Vec::new(),
            weekday_factors: None,
            missing_fraction: 0.0,
            replaced_samples: 0,
            first_fit: false,
            calibration_samples: 0,
            bands: None,
        }
    }

    fn empty(origin: DateTime<Utc>, step: TimeDelta, fitted_at: DateTime<Utc>, missing_fraction: f64) -> Self {
        Forecast {
            fallback: Some(ForecastError::NoData.to_string()),
            missing_fraction,
            ..Self::from_median(origin, step, Vec::new(), fitted_at)
        }
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.median.len()
    }

    /// True when there was nothing to forecast from.
    pub fn is_empty(&self) -> bool {
        self.median.is_empty()
    }

    /// Start of slot `i`.
    pub fn time_at(&self, i: usize) -> DateTime<Utc> {
        self.origin + self.step * i as i32
    }

    /// The forecast at quantile `q` for slot `i` (calibrated; equals the median at q = 0.5).
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn quantile_at(&self, i: usize, q: Quantile) -> f64 {
        match &self.bands {
            Some(b) if q != Quantile::MEDIAN => b.at(i, q.get()),
            _ => self.median[i],
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[cfg(test)]
mod span_tests {
    use super::*;

    /// `a` and `b` forecast `history` alike at `now` (`minutes` after their fit), to the last quantile.
    fn assert_same_forecasts(
        a: &Model,
        b: &Model,
        history: &Series,
        now: DateTime<Utc>,
        horizon: TimeDelta,
        minutes: i64,
    ) {
        let (x, y) = (a.forecast(history, now, horizon), b.forecast(history, now, horizon));
        assert_eq!(x.median, y.median, "{minutes} min after the fit");
        for q in [0.1, 0.9, 0.99] {
            let q = Quantile::try_new(q).unwrap();
            for i in 0..x.len() {
                assert_eq!(x.quantile_at(i, q), y.quantile_at(i, q), "{minutes} min, {q:?}");
            }
        }
    }

    #[test]
    fn a_compacted_model_forecasts_exactly_as_the_whole_one_until_its_next_refit_and_beyond() {
        // 14 days of 5-minute demand with daily and weekly cycles, noise and a gap.
        let step = TimeDelta::minutes(5);
        let start = DateTime::from_timestamp(1_699_920_000, 0).unwrap();
        let n = 16 * 288;
        let values: Vec<Option<f64>> = (0..n)
            .map(|i| {
                let day = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
                let week = (i % 2016) as f64 / 2016.0 * std::f64::consts::TAU;
                let noise = ((i * 7919) % 17) as f64 - 8.0;
                ((i % 997) > 3).then_some(200.0 + 80.0 * day.sin() + 30.0 * week.cos() + noise)
            })
            .collect();
        let full = Series::from_values(start, step, values);
        let fitted_at = start + step * (14 * 288);
        let settings = ForecastSettings {
            seasonality: Seasonality::Auto,
            horizon: TimeDelta::minutes(10),
            decision: TimeDelta::minutes(10),
        };
        let compact = fit(&full.window(start, fitted_at), &settings, fitted_at);
        let mut whole = compact.clone();
        whole.fit = fit_baseline(
            &Grid::of(&full.visible_at(fitted_at))
                .since(fitted_at - history_span(step))
                .trim_gaps()
                .despiked()
                .0,
            &settings.seasonality,
            settings.horizon.max(step),
            None,
        );
        let (a, b) = (compact.fit.as_ref().unwrap(), whole.fit.as_ref().unwrap());
        assert_eq!(a.method, b.method);
        assert!(
            a.baseline.values.len() * 3 < b.baseline.values.len() * 2,
            "{} of {} slots kept",
            a.baseline.values.len(),
            b.baseline.values.len()
        );
        // Forecasts from the fit on, each from the history up to its time: refit due after an hour, but a model can
        // serve longer (a slow or failing refit), and past the in-sample end the baseline wraps by its season.
        for minutes in [0, 5, 30, 60, 125, 600, 2 * 1440] {
            let now = fitted_at + TimeDelta::minutes(minutes);
            let history = full.window(start, now);
            assert_same_forecasts(&compact, &whole, &history, now, settings.horizon, minutes);
        }
    }

    #[test]
    fn models_fitted_together_forecast_as_each_fitted_alone() {
        // 14 days of 5-minute demand with a daily cycle and noise; three workloads' settings: two lead times of one
        // seasonality (their seasonal fits shared), and one with none.
        let step = TimeDelta::minutes(5);
        let start = DateTime::from_timestamp(1_699_920_000, 0).unwrap();
        let values: Vec<Option<f64>> = (0..14 * 288)
            .map(|i| {
                let day = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
                Some(200.0 + 80.0 * day.sin() + ((i * 7919) % 23) as f64 - 11.0)
            })
            .collect();
        let series = Series::from_values(start, step, values);
        let fitted_at = series.end();
        let refit = TimeDelta::hours(1);
        let settings = [
            ForecastSettings::for_plan(Seasonality::Auto, TimeDelta::minutes(5), TimeDelta::seconds(15), refit),
            ForecastSettings::for_plan(Seasonality::Auto, TimeDelta::hours(1), TimeDelta::seconds(15), refit),
            ForecastSettings::for_plan(Seasonality::None, TimeDelta::minutes(5), TimeDelta::seconds(15), refit),
        ];
        let together = fit_each(&series, &settings, fitted_at, Effort::Full);
        assert_eq!(together.len(), settings.len());
        for (model, s) in together.iter().zip(&settings) {
            let alone = fit(&series, s, fitted_at);
            assert_eq!(model.method(), alone.method());
            assert_eq!(model.correction, alone.correction);
            for minutes in [0, 20, 55] {
                let now = fitted_at + TimeDelta::minutes(minutes);
                assert_same_forecasts(model, &alone, &series, now, s.horizon, minutes);
            }
        }
        assert_eq!(together[0].method(), Some(Method::Mstl));
        assert_eq!(together[2].method(), Some(Method::Ets));
    }

    #[test]
    fn coarse_series_read_more_history_and_calibrate_on_enough_errors() {
        assert_eq!(history_span(TimeDelta::minutes(1)), MAX_HISTORY);
        assert_eq!(history_span(TimeDelta::minutes(10)), MAX_HISTORY);
        assert_eq!(history_span(TimeDelta::minutes(30)), LONG_HISTORY);
        assert_eq!(history_span(TimeDelta::hours(1)), LONG_HISTORY);

        // 40 days of 30-minute demand with a daily cycle and deterministic noise.
        let step = TimeDelta::minutes(30);
        let start = DateTime::from_timestamp(1_699_920_000, 0).unwrap();
        let values = (0..40 * 48)
            .map(|i| {
                let day = (i % 48) as f64 / 48.0 * std::f64::consts::TAU;
                let noise = ((i * 7919) % 13) as f64 - 6.0;
                Some(100.0 + 40.0 * day.sin() + noise)
            })
            .collect();
        let history = Series::from_values(start, step, values);
        let now = history.end();
        let settings = ForecastSettings {
            seasonality: Seasonality::Auto,
            horizon: step,
            decision: step,
        };
        let model = fit(&history, &settings, now);
        let forecast = model.forecast(&history, now, step);
        // A day of 30-minute slots is only 48 origins; the calibration replays at least 300.
        assert!(
            forecast.calibration_samples >= CALIBRATION_ORIGINS - 2,
            "{} calibration errors",
            forecast.calibration_samples
        );
        assert_eq!(forecast.method, Method::Mstl);
    }
}

#[cfg(test)]
mod first_fit_tests {
    use super::*;

    /// Median absolute error and q10–q90 coverage of `model`'s forecasts from `now` over `h` slots.
    fn score(series: &Series, model: &Model, now: DateTime<Utc>, h: usize) -> (f64, usize, usize) {
        let step = series.step();
        let f = model.forecast(series, now, step * h as i32);
        let o = series.count_ended_by(now);
        let q = |p| Quantile::try_new(p).unwrap();
        let (mut err, mut n, mut inside) = (0.0, 0, 0);
        for k in 0..h {
            let Some(y) = series.get(o + k) else { continue };
            err += (f.median[k] - y).abs();
            n += 1;
            inside += usize::from(y >= f.quantile_at(k, q(0.1)) && y <= f.quantile_at(k, q(0.9)));
        }
        (err, n, inside)
    }

    /// Measured (9 origins 8 h apart, 2-hour horizon): median absolute error first/full 1.002 (nasa), 0.976
    /// (servegen), 0.940 (twitter), 0.977 (nyc taxi); q10–q90 coverage 0.74/0.74, 0.88/0.95, 0.74/0.64, 0.58/0.56.
    #[test]
    fn a_first_fit_forecasts_recorded_traffic_nearly_as_well_as_a_full_one() {
        let mut ratios = Vec::new();
        for name in [
            "nasa_http_1995.csv",
            "servegen_lang_m_small.csv",
            "twitter_mentions_aapl_2015.csv",
            "nyc_taxi_passengers_2014.csv",
        ] {
            let series = eval::load_trace(name);
            let step = series.step();
            let h = (TimeDelta::hours(2).num_milliseconds() / step.num_milliseconds()).max(1) as usize;
            let settings = ForecastSettings {
                seasonality: Seasonality::Auto,
                horizon: TimeDelta::hours(2),
                decision: TimeDelta::hours(2),
            };
            let (mut full, mut first) = ((0.0, 0, 0), (0.0, 0, 0));
            let end = series.time_at(series.len() - h - 1);
            for k in 0..9 {
                let now = end - TimeDelta::hours(8 * k);
                let a = fit(&series, &settings, now);
                let b = fit_with(&series, &settings, now, Effort::First);
                assert_eq!((a.effort(), b.effort()), (Effort::Full, Effort::First));
                // The same model family, unless one of them chose the recent level on its calibration: a first
                // fit calibrates on its last fold alone, so the two may judge it differently.
                let methods = (b.fit.as_ref().unwrap().method, a.fit.as_ref().unwrap().method);
                assert!(
                    methods.0 == methods.1 || methods.0 == Method::Level || methods.1 == Method::Level,
                    "{name}: {methods:?}"
                );
                let f = b.forecast(&series, now, step * h as i32);
                assert!(f.first_fit && !a.forecast(&series, now, step).first_fit);
                assert!(f.calibration_samples > 0, "{name}: calibrated on its last fold");
                for (total, model) in [(&mut full, &a), (&mut first, &b)] {
                    let (e, n, i) = score(&series, model, now, h);
                    *total = (total.0 + e, total.1 + n, total.2 + i);
                }
            }
            let mae = |s: (f64, usize, usize)| s.0 / s.1 as f64;
            let coverage = |s: (f64, usize, usize)| s.2 as f64 / s.1 as f64;
            ratios.push(mae(first) / mae(full));
            assert!(
                mae(first) <= 1.10 * mae(full),
                "{name}: first fit's error {:.4} against a full fit's {:.4}",
                mae(first),
                mae(full)
            );
            // Against the nominal 80%: no farther from it than a full fit's, but for 5 points.
            assert!(
                (coverage(first) - 0.8).abs() <= (coverage(full) - 0.8).abs() + 0.05,
                "{name}: first fit's q10–q90 coverage {:.2} against {:.2}",
                coverage(first),
                coverage(full)
            );
        }
        let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
        assert!(
            mean <= 1.03,
            "first fits' error against full fits', on average: {mean:.3} ({ratios:?})"
        );
    }
}

#[cfg(test)]
mod model_choice_tests {
    use super::*;

    /// A deterministic stand-in for uniform noise in [0, 1).
    fn uniform(i: usize) -> f64 {
        let x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((x ^ (x >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn fitted(values: Vec<Option<f64>>, step: TimeDelta, seasonality: Seasonality) -> (Model, Series, DateTime<Utc>) {
        let start = DateTime::from_timestamp(1_699_920_000, 0).unwrap();
        let n = values.len();
        let series = Series::from_values(start, step, values);
        let now = start + step * n as i32;
        let settings = ForecastSettings {
            seasonality,
            horizon: TimeDelta::minutes(70),
            decision: TimeDelta::seconds(630),
        };
        (fit(&series, &settings, now), series, now)
    }

    #[test]
    fn noisy_counts_whose_level_wanders_from_day_to_day_are_forecast_by_their_recent_level() {
        // 15 days of 1-minute request rates: a daily cycle of ±20%, each day's level 0.6–1.4× at random (no weekly
        // pattern foretells it), and counting noise of 40 requests a minute at the mean level.
        let n = 15 * 1440;
        let values: Vec<Option<f64>> = (0..n)
            .map(|i| {
                let day = (i % 1440) as f64 / 1440.0 * std::f64::consts::TAU;
                let level = 0.6 + 0.8 * uniform(1_000_000 + i / 1440);
                let rate = 40.0 * level * (1.0 + 0.2 * day.sin());
                // Normal approximation of a Poisson count, by the sum of twelve uniforms.
                let z = (0..12).map(|k| uniform(i * 12 + k)).sum::<f64>() - 6.0;
                Some((rate + z * rate.sqrt()).max(0.0).round() / 60.0)
            })
            .collect();
        // Daily and weekly periods given, as a team would configure them: the seasonal model is fitted (its weekly
        // cycle from two weeks of wandering days), and loses.
        let periods = Seasonality::Periods(vec![TimeDelta::days(1), TimeDelta::days(7)]);
        let (model, series, now) = fitted(values.clone(), TimeDelta::minutes(1), periods);
        assert_eq!(model.method(), Some(Method::Level));
        let forecast = model.forecast(&series, now, TimeDelta::minutes(10));
        assert_eq!(forecast.method, Method::Level);
        // Flat at the recent level: the mean of the last half hour, within the noise of its estimate.
        let recent: f64 = (n - 30..n).filter_map(|i| series.get(i)).sum::<f64>() / 30.0;
        for (i, m) in forecast.median.iter().enumerate() {
            assert!(
                (m - recent).abs() <= 0.25 * recent.max(0.1),
                "slot {i}: median {m}, recent mean {recent}"
            );
        }
        let q = |p| Quantile::try_new(p).unwrap();
        assert!(forecast.quantile_at(5, q(0.9)) > forecast.quantile_at(5, q(0.5)));
        // With no cycle to fit (detection finds none in the wandering days), AutoETS models the level itself and
        // is not challenged.
        let (model, _, _) = fitted(values, TimeDelta::minutes(1), Seasonality::Auto);
        assert_eq!(model.method(), Some(Method::Ets));
    }

    #[test]
    fn a_cycle_that_moves_more_within_the_horizon_than_the_noise_keeps_the_seasonal_model() {
        // 16 days of 5-minute demand with a strong daily cycle and 2% noise: an hour ahead, the cycle moves far
        // more than the recent level could follow.
        let n = 16 * 288;
        let values = (0..n)
            .map(|i| {
                let day = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
                Some(100.0 * (1.0 + 0.6 * day.sin()) * (1.0 + 0.04 * (uniform(i) - 0.5)))
            })
            .collect();
        let (model, _, _) = fitted(values, TimeDelta::minutes(5), Seasonality::Auto);
        assert_eq!(model.method(), Some(Method::Mstl));
    }
}
