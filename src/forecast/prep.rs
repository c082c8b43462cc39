//! Preparing history for a fit: the fit window, an optional coarser fit grid, and deliberate gap filling.
//!
//! Missing slots are never read as zero. For the fit only, interior gaps are filled by seasonal interpolation (the
//! value one period earlier, shifted by the offsets seen at the gap's two edges) or, without a usable period, by
//! linear interpolation; leading and trailing gaps are trimmed. Calibration and level correction use only real
//! samples.
//!
//! Before any of that, isolated absurd samples are replaced (see [`despike`]): one scrape glitch (a `1e308`, a
//! counter reset read as a rate) would otherwise dominate the fit, the calibration's mean and errors and the level
//! correction, and move the plan by orders of magnitude.

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
            values: series.values().collect(),
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

/// Slots on each side of a sample that [`despike`] compares it with.
const SPIKE_HALF_WIDTH: usize = 5;
/// Slots before a stretch that [`despike`] needs to judge the stretch's first sample as it judges the others.
pub(crate) const SPIKE_CONTEXT: usize = SPIKE_HALF_WIDTH;
/// Fewest present neighbours for a sample to be judged at all.
const SPIKE_MIN_NEIGHBOURS: usize = 3;
/// Robust standard deviations (1.4826 × MAD) from the neighbours' median beyond which a sample is out of line.
///
/// High on purpose: a glitch is off by orders of magnitude, while a genuine burst replaced by the median would
/// narrow the calibrated band exactly where bursts are the point.
const SPIKE_SIGMAS: f64 = 12.0;
/// How many times the neighbours' median a sample must also exceed (or fall below zero): on a smooth series the MAD
/// is tiny, and bursts of three to five times the level are real demand, which the calibration must see to size
/// the band. The reactive floor draws the line at the same factor ([`super::GLITCH_FACTOR`]).
const SPIKE_MIN_RATIO: f64 = super::GLITCH_FACTOR;
/// Longest run of consecutive out-of-line samples that is replaced. A longer run is a surge that persists and is
/// kept; a run of this length at the very end of the history counts as glitches too, until a later sample
/// lengthens it into a surge (the reactive floor honours a rise on its second sample meanwhile, see
/// [`crate::control::planner`]).
pub(crate) const MAX_SPIKE_RUN: usize = 2;

/// `values` with isolated absurd samples replaced by the median of their neighbours, and how many were replaced
/// (or, non-finite, dropped).
///
/// A Hampel filter: each present sample is compared with the present samples up to [`SPIKE_HALF_WIDTH`] slots on
/// either side (one-sided at the ends). It is out of line when it is more than [`SPIKE_SIGMAS`] robust standard
/// deviations from their median, and more than [`SPIKE_MIN_RATIO`] times that median (or negative). Runs of at most
/// [`MAX_SPIKE_RUN`] consecutive out-of-line samples are replaced; longer runs are a genuine change of level and
/// stay. Non-finite samples become gaps (a series never holds them, but a grid of slot means may overflow).
/// Gaps stay gaps and break runs.
pub(crate) fn despike(values: &[Option<f64>]) -> (Vec<Option<f64>>, usize) {
    let n = values.len();
    let value = |i: usize| values[i].filter(|v| v.is_finite());
    let mut out: Vec<Option<f64>> = (0..n).map(value).collect();
    let mut medians = vec![None; n];
    let mut neighbours = Vec::with_capacity(2 * SPIKE_HALF_WIDTH);
    let mut deviations = Vec::with_capacity(2 * SPIKE_HALF_WIDTH);
    for (i, median_slot) in medians.iter_mut().enumerate() {
        let Some(x) = value(i) else { continue };
        neighbours.clear();
        let (from, to) = (i.saturating_sub(SPIKE_HALF_WIDTH), (i + SPIKE_HALF_WIDTH + 1).min(n));
        neighbours.extend((from..to).filter(|&j| j != i).filter_map(value));
        if neighbours.len() < SPIKE_MIN_NEIGHBOURS {
            continue;
        }
        let median = median_of(&mut neighbours);
        deviations.clear();
        deviations.extend(neighbours.iter().map(|v| (v - median).abs()));
        let sigma = 1.4826 * median_of(&mut deviations);
        let deviation = (x - median).abs();
        if deviation > SPIKE_SIGMAS * sigma && (x > SPIKE_MIN_RATIO * median.abs() || x < 0.0) {
            *median_slot = Some(median);
        }
    }
    let mut replaced = values.iter().filter(|v| v.is_some_and(|x| !x.is_finite())).count();
    let mut i = 0;
    while i < n {
        if medians[i].is_none() {
            i += 1;
            continue;
        }
        let end = (i..n).find(|&j| medians[j].is_none()).unwrap_or(n);
        if end - i <= MAX_SPIKE_RUN {
            for j in i..end {
                out[j] = medians[j];
                replaced += 1;
            }
        }
        i = end;
    }
    (out, replaced)
}

/// The median of `v` (reordered), which must not be empty.
pub(super) fn median_of(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

impl Grid {
    /// The same grid with isolated absurd samples replaced (see [`despike`]), and how many were replaced.
    pub fn despiked(mut self) -> (Self, usize) {
        let (values, replaced) = despike(&self.values);
        self.values = values;
        (self, replaced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::fixtures::t;

    /// A noisy level around 1,100 (±5%), `n` slots.
    fn level(n: usize) -> Vec<Option<f64>> {
        (0..n)
            .map(|i| Some(1100.0 + 55.0 * (((i * 7919) % 13) as f64 / 6.0 - 1.0)))
            .collect()
    }

    #[test]
    fn an_isolated_absurd_sample_is_replaced_by_its_neighbours_median() {
        let clean = level(40);
        for at in [0, 17, 39] {
            let mut v = clean.clone();
            v[at] = Some(1e308);
            let (out, replaced) = despike(&v);
            assert_eq!(replaced, 1, "at {at}");
            let x = out[at].unwrap();
            assert!((1045.0..=1155.0).contains(&x), "at {at}: {x}");
            for i in (0..40).filter(|&i| i != at) {
                assert_eq!(out[i], clean[i], "only the glitch changes (at {at}, slot {i})");
            }
        }
        // Two in a row (a glitch read twice), and a counter reset read as a huge negative rate.
        let mut v = clean.clone();
        v[20] = Some(4e9);
        v[21] = Some(3e9);
        v[30] = Some(-5e9);
        let (out, replaced) = despike(&v);
        assert_eq!(replaced, 3);
        assert!(out.iter().flatten().all(|x| (1045.0..=1155.0).contains(x)));
        // Non-finite values (a grid can overflow) become gaps, counted.
        let mut v = clean.clone();
        v[5] = Some(f64::INFINITY);
        v[6] = Some(f64::NAN);
        let (out, replaced) = despike(&v);
        assert_eq!((out[5], out[6], replaced), (None, None, 2));
    }

    #[test]
    fn a_surge_that_persists_is_kept() {
        let clean = level(60);
        // Three times the level for ten slots, and twenty times it for three: both are real.
        let mut v = clean.clone();
        for x in &mut v[20..30] {
            *x = x.map(|x| 3.0 * x);
        }
        for x in &mut v[45..48] {
            *x = x.map(|x| 20.0 * x);
        }
        assert_eq!(despike(&v), (v.clone(), 0));
        // The same surge still building at the very end of the history (three samples) is kept too.
        let mut v = clean.clone();
        for x in &mut v[57..] {
            *x = x.map(|x| 20.0 * x);
        }
        assert_eq!(despike(&v), (v.clone(), 0));
        // A smooth daily cycle and genuine bursts of a few times the level are no glitches.
        let cycle: Vec<Option<f64>> = (0..288)
            .map(|i| Some(1100.0 + 600.0 * (i as f64 / 288.0 * std::f64::consts::TAU).sin()))
            .collect();
        assert_eq!(despike(&cycle).1, 0);
        let mut bursty = clean;
        bursty[10] = Some(5000.0);
        bursty[11] = Some(4000.0);
        bursty[30] = Some(8000.0);
        assert_eq!(despike(&bursty).1, 0);
    }

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
