//! Preparing history for a fit: the fit window, an optional coarser fit grid, and deliberate gap filling.
//!
//! Missing slots are never read as zero. For the fit only, interior gaps are filled by seasonal interpolation (the
//! value one period earlier, shifted by the offsets seen at the gap's two edges) or, without a usable period, by
//! linear interpolation; leading and trailing gaps are trimmed. Calibration and level correction use only real
//! samples.

use chrono::{DateTime, TimeDelta, Utc};

use crate::series::Series;

/// A regular grid of values, each the mean of its `[start + i·step, start + (i+1)·step)` interval.
#[derive(Debug, Clone)]
pub(crate) struct Grid {
    /// Start of slot 0.
    pub start: DateTime<Utc>,
    /// Slot length.
    pub step: TimeDelta,
    /// Slot means, `None` where nothing was recorded.
    pub values: Vec<Option<f64>>,
}

impl Grid {
    /// The slots of `series` as a grid.
    pub fn of(series: &Series) -> Self {
        Self {
            start: series.start(),
            step: series.step(),
            values: series.values().to_vec(),
        }
    }

    /// Start of slot `i`.
    pub fn time_at(&self, i: usize) -> DateTime<Utc> {
        self.start + self.step * i as i32
    }

    /// Number of present samples.
    pub fn present(&self) -> usize {
        self.values.iter().filter(|v| v.is_some()).count()
    }

    /// Drops leading and trailing gaps.
    pub fn trim_gaps(mut self) -> Self {
        let Some(first) = self.values.iter().position(Option::is_some) else {
            self.values.clear();
            return self;
        };
        let last = self.values.iter().rposition(Option::is_some).unwrap_or(first);
        self.values.truncate(last + 1);
        self.values.drain(..first);
        self.start += self.step * first as i32;
        self
    }

    /// Keeps only slots that start at or after `from`.
    pub fn since(mut self, from: DateTime<Utc>) -> Self {
        let step_ms = self.step.num_milliseconds();
        let skip = (from - self.start).num_milliseconds();
        if skip > 0 {
            let n = (((skip + step_ms - 1) / step_ms) as usize).min(self.values.len());
            self.values.drain(..n);
            self.start += self.step * n as i32;
        }
        self
    }

    /// Keeps only slots that ended at or before `to`.
    pub fn until(mut self, to: DateTime<Utc>) -> Self {
        let offset = (to - self.start).num_milliseconds();
        let n = if offset <= 0 {
            0
        } else {
            (offset / self.step.num_milliseconds()) as usize
        };
        self.values.truncate(n);
        self
    }

    /// Means over `factor` slots at a time, buckets aligned to multiples of `step·factor` since the Unix epoch.
    ///
    /// A bucket with fewer than half of its slots present is a gap: a mean of one or two samples in a wide bucket
    /// would be mostly noise.
    pub fn downsample(&self, factor: usize) -> Grid {
        if factor <= 1 || self.values.is_empty() {
            return self.clone();
        }
        let step = self.step * factor as i32;
        let step_ms = step.num_milliseconds();
        let ms = self.start.timestamp_millis();
        let bucket_start = DateTime::from_timestamp_millis(ms - ms.rem_euclid(step_ms)).unwrap_or(self.start);
        let lead = ((self.start - bucket_start).num_milliseconds() / self.step.num_milliseconds()) as usize;
        let n_buckets = (lead + self.values.len()).div_ceil(factor);
        let mut sums = vec![(0.0, 0usize); n_buckets];
        for (i, v) in self.values.iter().enumerate() {
            if let Some(v) = v {
                let b = (lead + i) / factor;
                sums[b].0 += v;
                sums[b].1 += 1;
            }
        }
        let values = sums
            .into_iter()
            .map(|(s, n)| (n * 2 >= factor).then(|| s / n as f64))
            .collect();
        Grid {
            start: bucket_start,
            step,
            values,
        }
    }
}

/// Fills interior gaps of a grid whose ends are present (see [`Grid::trim_gaps`]).
///
/// With `period`, a gap slot takes the filled value one period earlier plus the edge offsets interpolated across
/// the gap; slots with no earlier cycle, or without a period, are interpolated linearly between the gap's edges.
pub(crate) fn fill(values: &[Option<f64>], period: Option<usize>) -> Vec<f64> {
    let n = values.len();
    let mut out: Vec<f64> = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        if let Some(v) = values[i] {
            out.push(v);
            i += 1;
            continue;
        }
        let left = i.checked_sub(1);
        let right = (i..n).find(|&j| values[j].is_some());
        let gap_end = right.unwrap_or(n);
        let lv = left.map(|l| out[l]);
        let rv = right.and_then(|r| values[r]);
        for j in i..gap_end {
            let frac = match (left, right) {
                (Some(l), Some(r)) => (j - l) as f64 / (r - l) as f64,
                _ => 0.5,
            };
            let seasonal = period
                .filter(|&p| p > 0 && j >= p && left.is_some_and(|l| l >= p))
                .and_then(|p| {
                    let l = left?;
                    let r = right?;
                    // The right edge's earlier-cycle value may itself be a filled slot; it is already in `out`
                    // only when r - p < j, otherwise it is an original sample.
                    let r_prev = if r - p < out.len() {
                        Some(out[r - p])
                    } else {
                        values[r - p]
                    }?;
                    let l_off = out[l] - out[l - p];
                    let r_off = values[r]? - r_prev;
                    Some(out[j - p] + l_off + (r_off - l_off) * frac)
                });
            let linear = match (lv, rv) {
                (Some(a), Some(b)) => a + (b - a) * frac,
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => 0.0,
            };
            out.push(seasonal.unwrap_or(linear).max(0.0));
        }
        i = gap_end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::fixtures::t;

    #[test]
    fn linear_fill_between_edges() {
        let filled = fill(&[Some(1.0), None, None, Some(4.0)], None);
        assert_eq!(filled, vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn seasonal_fill_repeats_the_earlier_cycle_with_edge_offsets() {
        // Period 3: [0, 10, 0] repeating, second cycle shifted up by 1, its peak missing.
        let v = [Some(0.0), Some(10.0), Some(0.0), Some(1.0), None, Some(1.0)];
        let filled = fill(&v, Some(3));
        assert_eq!(filled, vec![0.0, 10.0, 0.0, 1.0, 11.0, 1.0]);
        // Linear would have missed the peak entirely.
        assert_eq!(fill(&v, None)[4], 1.0);
    }

    #[test]
    fn downsample_aligns_to_epoch_and_marks_sparse_buckets_missing() {
        let start = t(60); // one minute into a 5-min bucket
        let g = Grid {
            start,
            step: TimeDelta::minutes(1),
            values: vec![
                Some(1.0),
                Some(2.0),
                Some(3.0),
                Some(6.0),
                None,
                None,
                None,
                None,
                Some(5.0),
            ],
        };
        let d = g.downsample(5);
        assert_eq!(d.start, t(0));
        assert_eq!(d.values, vec![Some(3.0), None]);
    }

    #[test]
    fn trim_since_until() {
        let g = Grid {
            start: t(0),
            step: TimeDelta::seconds(60),
            values: vec![None, Some(1.0), Some(2.0), None],
        };
        let g = g.trim_gaps();
        assert_eq!(g.start, t(60));
        assert_eq!(g.values, vec![Some(1.0), Some(2.0)]);
        let g = Grid {
            start: t(0),
            step: TimeDelta::seconds(60),
            values: vec![Some(0.0); 5],
        };
        let g = g.since(t(30)).until(t(179));
        assert_eq!(g.start, t(60));
        assert_eq!(g.values.len(), 1);
    }
}
