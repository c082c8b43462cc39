//! Where demand history comes from: one trait, one implementation per outside system.
//!
//! The pipeline and the backtest see only [`History`]; Prometheus, a recorded trace and the built-in demand
//! generator are interchangeable behind it.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, TimeDelta, Utc};

use crate::series::Series;

/// A boxed future returned by [`History::fetch`].
pub type Fetch<'a> = Pin<Box<dyn Future<Output = Result<Series, HistoryError>> + Send + 'a>>;

/// A source of one workload's demand history.
pub trait History: Send + Sync {
    /// The grid step of the samples this source returns.
    fn step(&self) -> TimeDelta;

    /// Demand for the slots in `[from, to)` that have ended by `to`, on a grid aligned to `step()`
    /// (slot starts are multiples of the step since the Unix epoch). Missing data stays missing.
    fn fetch(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Fetch<'_>;

    /// A short human description ("trace traces/web.csv", "promql sum(rate(...))").
    fn describe(&self) -> String;
}

/// Why history could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The source could not be reached or answered with an error (the message is for logs, not for API callers).
    #[error("history source unavailable: {message}")]
    Unavailable {
        /// What happened, for people: where, what failed and after how many attempts.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The query answered with data prescale cannot use as one demand series.
    #[error("history query returned unusable data: {0}")]
    Unusable(String),
}

/// Aligns `t` down to a multiple of `step` since the Unix epoch.
pub fn align_down(t: DateTime<Utc>, step: TimeDelta) -> DateTime<Utc> {
    let step_ms = step.num_milliseconds();
    let ms = t.timestamp_millis();
    DateTime::from_timestamp_millis(ms - ms.rem_euclid(step_ms)).unwrap_or(t)
}

pub mod prometheus;
pub mod synthetic;
pub mod trace;
