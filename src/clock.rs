//! Time as an argument: the one place that reads the wall clock.

use std::sync::Arc;

use chrono::{DateTime, Utc};

/// A source of "now". Production uses [`Clock::system`]; tests pass a fixed or stepped clock.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The system wall clock.
    pub fn system() -> Self {
        Self(Arc::new(Utc::now))
    }

    /// A clock that always reads `t`.
    pub fn fixed(t: DateTime<Utc>) -> Self {
        Self(Arc::new(move || t))
    }

    /// A clock backed by any function.
    pub fn from_fn(f: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// Instants for unit tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use chrono::{DateTime, Utc};

    /// Midnight UTC of 2023-11-14: aligned to every step and season a test uses.
    const BASE: i64 = 1_699_920_000;

    /// `s` seconds after a fixed midnight.
    pub fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(BASE + s, 0).expect("a test instant")
    }
}
