//! Recorded traces: CSV files `timestamp,value` (RFC3339 UTC interval start, demand in units/s).
//!
//! A missing row is a gap. The step is the most common spacing between consecutive rows. Every problem names the
//! file and line and says how to fix it.

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};

use crate::history::{Fetch, History};
use crate::series::Series;

/// Why a trace file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be opened or read.
    #[error("{path}: cannot read trace: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A line is not `timestamp,value` with an RFC3339 timestamp and a finite, non-negative number.
    #[error("{path}:{line}: {problem}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// The file as a whole is unusable (no rows, no regular step, out of order).
    #[error("{path}: {problem}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

/// Reads a trace file into a [`Series`] (gaps preserved).
pub fn load(path: impl AsRef<Path>) -> Result<Series, TraceError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| TraceError::Io {
        path: path.into(),
        source,
    })?;
    parse(&text, path)
}

/// Parses trace text; `path` is only used in error messages.
pub fn parse(text: &str, path: &Path) -> Result<Series, TraceError> {
    let line_err = |line: usize, problem: String| TraceError::Line {
        path: path.into(),
        line,
        problem,
    };
    let file_err = |problem: String| TraceError::File {
        path: path.into(),
        problem,
    };
    let mut rows: Vec<(usize, DateTime<Utc>, f64)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        if line == 1 || rows.is_empty() && raw.eq_ignore_ascii_case("timestamp,value") {
            if raw.eq_ignore_ascii_case("timestamp,value") {
                continue;
            }
            return Err(line_err(
                line,
                format!("expected the header `timestamp,value`, found `{raw}`"),
            ));
        }
        let mut fields = raw.split(',');
        let (Some(ts), Some(value), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(line_err(
                line,
                format!("expected two fields `timestamp,value`, found `{raw}`"),
            ));
        };
        let t = DateTime::parse_from_rfc3339(ts.trim())
            .map_err(|e| {
                line_err(
                    line,
                    format!("timestamp `{ts}` is not RFC3339 ({e}); write e.g. 2024-05-01T12:00:00Z"),
                )
            })?
            .with_timezone(&Utc);
        let v: f64 = value.trim().parse().map_err(|_| {
            line_err(
                line,
                format!("value `{value}` is not a number; write demand in units/s"),
            )
        })?;
        if !v.is_finite() || v < 0.0 {
            return Err(line_err(
                line,
                format!("value `{value}` must be a finite, non-negative demand; leave the row out for a gap"),
            ));
        }
        if let Some(&(prev_line, prev, _)) = rows.last() {
            if t <= prev {
                return Err(line_err(
                    line,
                    format!("timestamp {ts} is not after line {prev_line}'s; sort rows by time, one row per interval"),
                ));
            }
        }
        rows.push((line, t, v));
    }
    if rows.len() < 2 {
        return Err(file_err(
            "needs at least two rows of `timestamp,value` to know its step".into(),
        ));
    }
    let step =
        modal_step(&rows).ok_or_else(|| file_err("no two rows share a spacing; cannot infer the step".into()))?;
    let start = rows[0].1;
    let mut series = Series::empty(start, step);
    for &(line, t, v) in &rows {
        let offset = (t - start).num_milliseconds();
        if offset % step.num_milliseconds() != 0 {
            return Err(line_err(
                line,
                format!(
                    "timestamp is off the {}s grid that starts at {start}; resample the trace",
                    step.num_seconds()
                ),
            ));
        }
        series.insert(t, v);
    }
    Ok(series)
}

fn modal_step(rows: &[(usize, DateTime<Utc>, f64)]) -> Option<TimeDelta> {
    let mut counts = std::collections::HashMap::<i64, usize>::new();
    for w in rows.windows(2) {
        *counts.entry((w[1].1 - w[0].1).num_milliseconds()).or_default() += 1;
    }
    let (ms, _) = counts.into_iter().max_by_key(|&(ms, n)| (n, std::cmp::Reverse(ms)))?;
    Some(TimeDelta::milliseconds(ms))
}

/// A recorded trace replayed on a clock aligned to now: trace time `origin` maps to wall time `anchor`, and the
/// trace loops so a demo can run for as long as it likes.
#[derive(Debug, Clone)]
pub struct Replay {
    series: Series,
    source: PathBuf,
    /// Wall time minus trace time.
    shift: TimeDelta,
}

impl Replay {
    /// Replays `series` so that trace time `origin` happens at wall time `anchor`. The offset is rounded to a whole
    /// number of steps so slots stay aligned to the epoch grid.
    pub fn new(series: Series, source: PathBuf, origin: DateTime<Utc>, anchor: DateTime<Utc>) -> Self {
        let step_ms = series.step().num_milliseconds();
        let raw = (anchor - origin).num_milliseconds();
        let start_ms = series.start().timestamp_millis() + raw;
        let aligned = start_ms - start_ms.rem_euclid(step_ms);
        let shift = TimeDelta::milliseconds(aligned - series.start().timestamp_millis());
        Self { series, source, shift }
    }

    /// The default demo alignment: the end of the warm-up (7 days, or 25% of a shorter trace) happens now.
    pub fn at_warmup_end(series: Series, source: PathBuf, now: DateTime<Utc>) -> Self {
        let span = series.end() - series.start();
        let warmup = if span >= TimeDelta::days(7) {
            TimeDelta::days(7)
        } else {
            span / 4
        };
        let origin = series.start() + warmup;
        Self::new(series, source, origin, now)
    }

    fn value_at(&self, wall: DateTime<Utc>) -> Option<f64> {
        let span_ms = (self.series.end() - self.series.start()).num_milliseconds();
        let offset = (wall - self.shift - self.series.start())
            .num_milliseconds()
            .rem_euclid(span_ms);
        let i = (offset / self.series.step().num_milliseconds()) as usize;
        self.series.get(i)
    }
}

impl History for Replay {
    fn step(&self) -> TimeDelta {
        self.series.step()
    }

    fn fetch(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Fetch<'_> {
        let step = self.step();
        let first = crate::history::align_down(from, step);
        let first = if first < from { first + step } else { first };
        let mut out = Series::empty(first, step);
        let mut t = first;
        while t + step <= to {
            if let Some(v) = self.value_at(t) {
                out.insert(t, v);
            }
            t += step;
        }
        // A trailing gap is still a slot that ended: keep the grid's length honest.
        out.pad_to(t);
        Box::pin(std::future::ready(Ok(out)))
    }

    fn describe(&self) -> String {
        format!("trace {}", self.source.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Series, TraceError> {
        parse(text, Path::new("t.csv"))
    }

    #[test]
    fn gaps_are_missing_rows() {
        let s = parse_str(
            "timestamp,value\n2024-01-01T00:00:00Z,1\n2024-01-01T00:01:00Z,2\n2024-01-01T00:03:00Z,4\n2024-01-01T00:04:00Z,5\n",
        )
        .unwrap();
        assert_eq!(s.step(), TimeDelta::minutes(1));
        assert_eq!(
            s.values().collect::<Vec<_>>(),
            [Some(1.0), Some(2.0), None, Some(4.0), Some(5.0)]
        );
    }

    #[test]
    fn errors_name_the_line_and_the_fix() {
        let e = parse_str("timestamp,value\n2024-01-01T00:00:00Z,1\n2024-01-01T00:01:00Z,abc\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.csv:3: value `abc` is not a number; write demand in units/s"
        );
        let e = parse_str("timestamp,value\n2024-01-01T00:00:00Z,1\n2024-01-01 00:01,2\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("t.csv:3: timestamp `2024-01-01 00:01` is not RFC3339"),
            "{e}"
        );
        let e = parse_str("timestamp,value\n2024-01-01T00:01:00Z,1\n2024-01-01T00:00:00Z,2\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("t.csv:3: timestamp 2024-01-01T00:00:00Z is not after line 2's"),
            "{e}"
        );
        let e = parse_str("timestamp,value\n2024-01-01T00:00:00Z,NaN\n2024-01-01T00:01:00Z,2\n").unwrap_err();
        assert!(e.to_string().contains("t.csv:2: value `NaN` must be a finite"), "{e}");
        let e = parse_str("time,v\n").unwrap_err();
        assert!(e.to_string().contains("t.csv:1: expected the header"), "{e}");
    }

    #[tokio::test]
    async fn replay_aligns_to_now_and_loops() {
        let s = parse_str(
            "timestamp,value\n2000-01-01T00:00:00Z,1\n2000-01-01T00:01:00Z,2\n2000-01-01T00:02:00Z,3\n2000-01-01T00:03:00Z,4\n",
        )
        .unwrap();
        let now = DateTime::parse_from_rfc3339("2026-01-01T12:00:30Z")
            .unwrap()
            .with_timezone(&Utc);
        let origin = s.start() + TimeDelta::minutes(2);
        let r = Replay::new(s, "t.csv".into(), origin, now);
        // 12:00 on the wall is trace minute 2 (value 3); the slot in progress is not returned.
        let got = r.fetch(now - TimeDelta::minutes(3), now).await.unwrap();
        assert_eq!(
            got.start(),
            DateTime::parse_from_rfc3339("2026-01-01T11:58:00Z")
                .unwrap()
                .with_timezone(&Utc)
        );
        assert_eq!(got.values().collect::<Vec<_>>(), [Some(1.0), Some(2.0)]);
        let later = r
            .fetch(now + TimeDelta::minutes(2), now + TimeDelta::minutes(5))
            .await
            .unwrap();
        assert_eq!(
            later.values().collect::<Vec<_>>(),
            [Some(2.0), Some(3.0)],
            "loops back to the start"
        );
    }
}
