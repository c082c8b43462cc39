//! Regular time series with explicit gaps.
//!
//! A [`Series`] is a grid of `step`-long intervals starting at `start`; each slot holds the mean demand over its
//! interval (units/s), or `None` when nothing was recorded. Gaps stay gaps: nothing here reads a missing slot as zero.

use chrono::{DateTime, TimeDelta, Utc};

/// A regular grid of optional samples: slot `i` covers `[start + i·step, start + (i+1)·step)`.
///
/// Invariants: `step > 0`; every present value is finite (constructors drop NaN/±Inf and count them).
///
/// Slots are stored as `f32` with NaN for a gap (4 bytes a slot, a quarter of `Option<f64>`: a live history of 15
/// days of one-minute slots is 84 KiB a workload). Seven significant digits are far finer than any demand is
/// measured; every accessor speaks `f64`. A finite sample beyond `f32`'s range is held at its bound (±3.4·10³⁸: as
/// absurd a demand as the sample was, which the glitch filter treats alike). NaN never stands for a value:
/// non-finite samples are refused on the way in, so the encoding is one-to-one with `Option<f32>`.
#[derive(Debug, Clone)]
pub struct Series {
    start: DateTime<Utc>,
    step: TimeDelta,
    values: Vec<f32>,
}

/// A gap, as stored.
const GAP: f32 = f32::NAN;

fn decode(v: f32) -> Option<f64> {
    (!v.is_nan()).then_some(f64::from(v))
}

/// A sample as stored (beyond `f32`'s range, at its bound), or `None` when it is not finite.
fn encode(v: f64) -> Option<f32> {
    let bound = f64::from(f32::MAX);
    v.is_finite().then(|| v.clamp(-bound, bound) as f32)
}

impl PartialEq for Series {
    fn eq(&self, other: &Self) -> bool {
        self.start == other.start && self.step == other.step && self.values().eq(other.values())
    }
}

impl Series {
    /// An empty series whose first slot will start at `start`.
    ///
    /// # Panics
    /// If `step` is not positive (a programming error: steps are validated at the edge).
    pub fn empty(start: DateTime<Utc>, step: TimeDelta) -> Self {
        assert!(step > TimeDelta::zero(), "series step must be positive");
        Self {
            start,
            step,
            values: Vec::new(),
        }
    }

    /// A series from slot values; non-finite values become gaps.
    pub fn from_values(start: DateTime<Utc>, step: TimeDelta, values: Vec<Option<f64>>) -> Self {
        let mut series = Self::empty(start, step);
        series.values = values.into_iter().map(|v| v.and_then(encode).unwrap_or(GAP)).collect();
        series
    }

    /// Builds a series from timestamped samples (any order, duplicates allowed).
    ///
    /// Each sample lands in the slot containing its timestamp, aligned to `start`; a later duplicate replaces an
    /// earlier one. Samples before `start` and non-finite samples are dropped and counted in the returned
    /// [`Ingest`].
    pub fn from_points(
        start: DateTime<Utc>,
        step: TimeDelta,
        points: impl IntoIterator<Item = (DateTime<Utc>, f64)>,
    ) -> (Self, Ingest) {
        let mut series = Self::empty(start, step);
        let mut ingest = Ingest::default();
        for (t, v) in points {
            ingest.merge(series.insert(t, v));
        }
        (series, ingest)
    }

    /// Places one sample; grows the grid with gaps as needed. Returns what happened to it.
    pub fn insert(&mut self, t: DateTime<Utc>, value: f64) -> Ingest {
        let mut ingest = Ingest::default();
        let Some(value) = encode(value) else {
            ingest.non_finite += 1;
            return ingest;
        };
        let Some(i) = self.slot_of(t) else {
            ingest.out_of_range += 1;
            return ingest;
        };
        if i >= self.values.len() {
            self.grow_to(i + 1);
        } else if !self.values[i].is_nan() {
            ingest.duplicates += 1;
        }
        self.values[i] = value;
        ingest.accepted += 1;
        ingest
    }

    /// The slot index containing `t`, or `None` before the start.
    pub fn slot_of(&self, t: DateTime<Utc>) -> Option<usize> {
        let offset = (t - self.start).num_milliseconds();
        if offset < 0 {
            return None;
        }
        usize::try_from(offset / self.step.num_milliseconds()).ok()
    }

    /// Start of the first slot.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// Length of one slot.
    pub fn step(&self) -> TimeDelta {
        self.step
    }

    /// End (exclusive) of the last slot.
    pub fn end(&self) -> DateTime<Utc> {
        self.time_at(self.values.len())
    }

    /// Start of slot `i`.
    pub fn time_at(&self, i: usize) -> DateTime<Utc> {
        self.start + self.step * i as i32
    }

    /// Number of slots, present or missing.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when the series has no slots.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The slots in order, `None` for gaps.
    pub fn values(&self) -> Slots<'_> {
        self.slots(0..self.values.len())
    }

    /// The slots with indices in `range`, `None` for gaps.
    ///
    /// # Panics
    /// If `range` reaches past the last slot, as slicing does.
    pub fn slots(&self, range: std::ops::Range<usize>) -> Slots<'_> {
        Slots(self.values[range].iter())
    }

    /// Slot `i`: `None` for a gap or past the end.
    pub fn get(&self, i: usize) -> Option<f64> {
        self.values.get(i).copied().and_then(decode)
    }

    /// Sets slot `i` (a non-finite value becomes a gap).
    ///
    /// # Panics
    /// If `i` is past the last slot.
    pub fn set(&mut self, i: usize, value: Option<f64>) {
        self.values[i] = value.and_then(encode).unwrap_or(GAP);
    }

    /// Number of missing slots.
    pub fn missing(&self) -> usize {
        self.values.iter().filter(|v| v.is_nan()).count()
    }

    /// The present samples as `(slot start, value)`.
    pub fn points(&self) -> impl Iterator<Item = (DateTime<Utc>, f64)> + '_ {
        self.values()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (self.time_at(i), v)))
    }

    /// The latest present sample, if any.
    pub fn last_present(&self) -> Option<(DateTime<Utc>, f64)> {
        self.values
            .iter()
            .rposition(|v| !v.is_nan())
            .map(|i| (self.time_at(i), f64::from(self.values[i])))
    }

    /// The prefix of slots whose interval ended at or before `t` (what a policy may see at `t`).
    pub fn visible_at(&self, t: DateTime<Utc>) -> Series {
        let n = self.count_ended_by(t);
        Series {
            start: self.start,
            step: self.step,
            values: self.values[..n].to_vec(),
        }
    }

    /// How many slots ended at or before `t`.
    pub fn count_ended_by(&self, t: DateTime<Utc>) -> usize {
        let offset = (t - self.start).num_milliseconds();
        if offset <= 0 {
            return 0;
        }
        let n = (offset / self.step.num_milliseconds()) as usize;
        n.min(self.values.len())
    }

    /// The slots in `[from, to)`, aligned to this grid (slots that start at or after `from` and before `to`).
    pub fn window(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Series {
        let step_ms = self.step.num_milliseconds();
        let first = ((from - self.start).num_milliseconds().max(0) + step_ms - 1) / step_ms;
        let first = (first as usize).min(self.values.len());
        let last = self.count_starting_before(to).max(first);
        Series {
            start: self.time_at(first),
            step: self.step,
            values: self.values[first..last].to_vec(),
        }
    }

    fn count_starting_before(&self, t: DateTime<Utc>) -> usize {
        let offset = (t - self.start).num_milliseconds();
        if offset <= 0 {
            return 0;
        }
        let step_ms = self.step.num_milliseconds();
        (((offset + step_ms - 1) / step_ms) as usize).min(self.values.len())
    }

    /// Extends the grid with missing slots so that it ends at or after `end` (rounded up to a whole slot).
    pub fn pad_to(&mut self, end: DateTime<Utc>) {
        let offset = (end - self.start).num_milliseconds();
        let step_ms = self.step.num_milliseconds();
        let want = ((offset.max(0) + step_ms - 1) / step_ms) as usize;
        if want > self.values.len() {
            self.grow_to(want);
        }
    }

    /// Extends the grid with gaps to `len` slots, keeping the spare capacity to a sixteenth of the length (at least
    /// 16 slots). A live history grows by a few slots a cycle and is trimmed at the front: a doubling `Vec` would
    /// hold up to twice the window (for 15 days of 1-minute slots, 180 KiB more per workload), forever.
    fn grow_to(&mut self, len: usize) {
        let spare = len / 16 + 16;
        if len > self.values.capacity() {
            self.values.reserve_exact(len + spare - self.values.len());
        }
        self.values.resize(len, GAP);
    }

    /// Drops slots that start before `t`, keeping the grid aligned.
    pub fn trim_before(&mut self, t: DateTime<Utc>) {
        let n = self.count_starting_before(t);
        if n > 0 {
            self.values.drain(..n);
            self.start += self.step * n as i32;
        }
    }

    /// Appends the slots of `other` (same step, aligned to this grid), overwriting overlapping slots.
    ///
    /// Returns the number of samples taken from `other`.
    pub fn merge(&mut self, other: &Series) -> Ingest {
        // Room for all of `other` at once, not a reallocation per sixteenth.
        if let Some(last) = other.len().checked_sub(1).and_then(|i| self.slot_of(other.time_at(i))) {
            if last >= self.values.capacity() {
                self.values
                    .reserve_exact(last + 1 + (last + 1) / 16 + 16 - self.values.len());
            }
        }
        let mut ingest = Ingest::default();
        for (t, v) in other.points() {
            ingest.merge(self.insert(t, v));
        }
        ingest
    }

    /// Mean of the present samples whose intervals end in `(from, to]`; `None` when there are none.
    pub fn mean_ending_in(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<f64> {
        let (sum, n) = self
            .points()
            .filter(|(t, _)| {
                let end = *t + self.step;
                end > from && end <= to
            })
            .fold((0.0, 0usize), |(s, n), (_, v)| (s + v, n + 1));
        (n > 0).then(|| sum / n as f64)
    }
}

/// The slots of a [`Series`] (or of a range of them) in order, `None` for gaps.
#[derive(Debug, Clone)]
pub struct Slots<'a>(std::slice::Iter<'a, f32>);

impl Iterator for Slots<'_> {
    type Item = Option<f64>;

    fn next(&mut self) -> Option<Option<f64>> {
        self.0.next().map(|&v| decode(v))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }

    fn nth(&mut self, n: usize) -> Option<Option<f64>> {
        self.0.nth(n).map(|&v| decode(v))
    }
}

impl DoubleEndedIterator for Slots<'_> {
    fn next_back(&mut self) -> Option<Option<f64>> {
        self.0.next_back().map(|&v| decode(v))
    }
}

impl ExactSizeIterator for Slots<'_> {}

/// What happened to samples offered to a [`Series`]: kept, or dropped and why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Ingest {
    /// Samples stored.
    pub accepted: usize,
    /// Samples that replaced an earlier sample in the same slot.
    pub duplicates: usize,
    /// NaN or ±Inf samples, dropped.
    pub non_finite: usize,
    /// Samples before the start of the series, dropped.
    pub out_of_range: usize,
}

impl Ingest {
    /// Adds another tally to this one.
    pub fn merge(&mut self, other: Ingest) {
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        self.non_finite += other.non_finite;
        self.out_of_range += other.out_of_range;
    }
}

/// The linearly interpolated percentile of `sorted` (ascending) at `q` in [0, 1], as numpy's default computes it;
/// `NaN` for an empty slice.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let x = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let k = x.floor() as usize;
    let frac = x - k as f64;
    if k + 1 < sorted.len() {
        sorted[k] + (sorted[k + 1] - sorted[k]) * frac
    } else {
        sorted[k]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::fixtures::t;

    #[test]
    fn points_align_to_slots_and_gaps_stay_gaps() {
        let (s, ingest) = Series::from_points(
            t(0),
            TimeDelta::seconds(60),
            [
                (t(0), 1.0),
                (t(185), 3.0),
                (t(61), 2.0),
                (t(70), 2.5),
                (t(200), f64::NAN),
                (t(-5), 9.0),
            ],
        );
        assert_eq!(s.values().collect::<Vec<_>>(), [Some(1.0), Some(2.5), None, Some(3.0)]);
        assert_eq!(
            ingest,
            Ingest {
                accepted: 4,
                duplicates: 1,
                non_finite: 1,
                out_of_range: 1
            }
        );
        assert_eq!(s.missing(), 1);
        assert_eq!(s.end(), t(240));
    }

    #[test]
    fn gaps_are_stored_compactly_and_read_back_as_none() {
        let mut s = Series::from_values(
            t(0),
            TimeDelta::seconds(60),
            vec![Some(1.5), None, Some(f64::NAN), Some(f64::INFINITY), Some(-0.0)],
        );
        assert_eq!(std::mem::size_of_val(&s.values[..]), 5 * 4, "4 bytes a slot");
        assert_eq!(
            s.values().collect::<Vec<_>>(),
            [Some(1.5), None, None, None, Some(-0.0)]
        );
        assert_eq!(s.missing(), 3);
        // Beyond what a slot holds is held at its bound, still absurd; within it, seven significant digits.
        let mut wide = Series::empty(t(0), TimeDelta::seconds(60));
        assert_eq!(wide.insert(t(0), 1e308).accepted, 1);
        assert_eq!(wide.insert(t(60), -1e39).accepted, 1);
        assert_eq!(wide.insert(t(120), 1234.5678).accepted, 1);
        assert_eq!(wide.get(0), Some(f64::from(f32::MAX)));
        assert_eq!(wide.get(1), Some(-f64::from(f32::MAX)));
        assert!((wide.get(2).unwrap() - 1234.5678).abs() < 1e-4, "{:?}", wide.get(2));
        assert_eq!(wide.missing(), 0);
        assert_eq!((s.get(0), s.get(1), s.get(99)), (Some(1.5), None, None));
        assert_eq!(s.slots(1..5).rev().collect::<Vec<_>>(), [Some(-0.0), None, None, None]);
        assert_eq!(s.values().len(), 5);
        assert_eq!(s.last_present(), Some((t(240), -0.0)));
        s.set(4, None);
        s.set(1, Some(f64::NEG_INFINITY));
        assert_eq!(s.last_present(), Some((t(0), 1.5)));
        assert_eq!(s.points().collect::<Vec<_>>(), [(t(0), 1.5)]);
        // Equality reads slots, not bits: two gaps are equal though NaN != NaN.
        assert_eq!(
            s,
            Series::from_values(t(0), TimeDelta::seconds(60), vec![Some(1.5), None, None, None, None])
        );
        assert_ne!(
            s,
            Series::from_values(
                t(0),
                TimeDelta::seconds(60),
                vec![Some(1.5), None, None, None, Some(0.0)]
            )
        );
    }

    #[test]
    fn visibility_only_includes_finished_intervals() {
        let s = Series::from_values(t(0), TimeDelta::seconds(60), vec![Some(1.0), Some(2.0), Some(3.0)]);
        assert_eq!(s.visible_at(t(119)).len(), 1);
        assert_eq!(s.visible_at(t(120)).len(), 2);
        assert_eq!(s.visible_at(t(10_000)).len(), 3);
        assert_eq!(s.visible_at(t(-1)).len(), 0);
    }

    #[test]
    fn window_and_trim_keep_alignment() {
        let mut s = Series::from_values(t(0), TimeDelta::seconds(60), (0..10).map(|i| Some(i as f64)).collect());
        let w = s.window(t(90), t(300));
        assert_eq!(w.start(), t(120));
        assert_eq!(w.values().collect::<Vec<_>>(), [Some(2.0), Some(3.0), Some(4.0)]);
        s.trim_before(t(150));
        assert_eq!(s.start(), t(180));
        assert_eq!(s.get(0), Some(3.0));
    }

    #[test]
    fn mean_over_window_ignores_gaps() {
        let s = Series::from_values(
            t(0),
            TimeDelta::seconds(30),
            vec![Some(1.0), None, Some(3.0), Some(5.0)],
        );
        // intervals end at 30, 60(gap), 90, 120
        assert_eq!(s.mean_ending_in(t(30), t(120)), Some(4.0));
        assert_eq!(s.mean_ending_in(t(30), t(60)), None);
    }

    #[test]
    fn percentile_interpolates_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        // numpy.percentile([1, 2, 3, 4], 99) = 3.97
        assert!((percentile(&v, 0.99) - 3.97).abs() < 1e-12);
        assert_eq!(percentile(&v, 0.5), 2.5);
        assert_eq!(percentile(&v, 1.0), 4.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 0.9), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn a_live_window_keeps_little_spare_capacity() {
        // Fifteen days of one-minute slots, then a day of cycles that add three slots and trim the front.
        let step = TimeDelta::minutes(1);
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let n = 15 * 1440;
        let fresh = Series::from_values(t0, step, vec![Some(1.0); n]);
        let mut live = Series::empty(t0, step);
        live.merge(&fresh);
        let tight = |s: &Series| s.values.capacity() <= s.len() + s.len() / 16 + 16;
        assert!(
            tight(&live),
            "{} slots in {} capacity",
            live.len(),
            live.values.capacity()
        );
        for k in 0..480 {
            let end = t0 + step * (n as i32 + 3 * (k + 1));
            let more = Series::from_values(end - step * 3, step, vec![Some(2.0); 3]);
            live.merge(&more);
            live.pad_to(end);
            live.trim_before(end - step * n as i32);
            assert_eq!(live.len(), n);
            assert!(
                tight(&live),
                "cycle {k}: {} slots in {} capacity",
                live.len(),
                live.values.capacity()
            );
        }
    }
}
