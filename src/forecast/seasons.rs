//! Which seasonal periods to model: explicit ones, or calendar periods confirmed by the data.
//!
//! Demand has calendar seasonality (a day, a week), but raw periodogram peaks land on FFT bin sizes (1638 or 1365
//! for a true 1440), so a detected period is only used as evidence for the calendar period it is near (±25%),
//! never as a period itself. Because a two-cycle weekly history is exactly one Welch segment long (a length the
//! periodogram discards), the autocorrelation at the calendar lag is a second line of evidence: a day needs ACF ≥
//! 0.3 (0.15 when the periodogram peaks near it), a week the same and clearly more than the day's (a week is a multiple of a day, so a daily cycle alone
//! already makes the weekly ACF high). A period is used only with two full cycles of history.

use augurs::seasons::{Detector, PeriodogramDetector};
use chrono::TimeDelta;

/// Minimum autocorrelation at a calendar lag for that period to count as present.
const MIN_ACF: f64 = 0.3;
/// How much more the weekly ACF must be than the daily ACF for a weekly period to add anything.
const WEEK_OVER_DAY_ACF: f64 = 0.05;
/// How far (relative) a periodogram peak may be from a calendar period and still count as evidence of it.
const SNAP_TOLERANCE: f64 = 0.25;

/// Periods in fit-grid steps from explicit durations: those that are whole steps (≥ 2) with two full cycles in `n`.
pub(crate) fn explicit(periods: &[TimeDelta], step: TimeDelta, n: usize) -> (Vec<usize>, Vec<usize>) {
    let mut usable = Vec::new();
    let mut one_cycle = Vec::new();
    for p in periods {
        let steps = p.num_milliseconds() as f64 / step.num_milliseconds() as f64;
        let steps = steps.round() as usize;
        if steps < 2 {
            continue;
        }
        if n >= 2 * steps {
            usable.push(steps);
        } else if n >= steps {
            one_cycle.push(steps);
        }
    }
    usable.sort_unstable();
    usable.dedup();
    one_cycle.sort_unstable();
    one_cycle.dedup();
    (usable, one_cycle)
}

/// Calendar periods (1 day, 1 week, in `step`s) present in `y` (gap-free), each with two full cycles.
pub(crate) fn detect(y: &[f64], step: TimeDelta) -> Vec<usize> {
    let n = y.len();
    let per_day = TimeDelta::days(1).num_milliseconds() / step.num_milliseconds().max(1);
    let day = usize::try_from(per_day).unwrap_or(0);
    let week = day * 7;
    if day < 4 || n < 2 * day {
        return Vec::new();
    }
    let peaks = periodogram_peaks(y, if n >= 2 * week { week } else { day });
    let near = |p: usize| {
        peaks
            .iter()
            .any(|&q| (q as f64 - p as f64).abs() <= SNAP_TOLERANCE * p as f64)
    };
    let acf_day = acf(y, day);
    let mut out = Vec::new();
    // The periodogram alone is never enough (it always has a highest bin); near a calendar period it halves the
    // autocorrelation needed.
    let confirmed = |p: usize, acf: f64| acf >= MIN_ACF || (near(p) && acf >= MIN_ACF / 2.0);
    if confirmed(day, acf_day) {
        out.push(day);
    }
    if n >= 2 * week {
        let acf_week = acf(y, week);
        if confirmed(week, acf_week) && acf_week >= acf_day + WEEK_OVER_DAY_ACF {
            out.push(week);
        }
    }
    out
}

fn periodogram_peaks(y: &[f64], longest: usize) -> Vec<usize> {
    let max_period = ((longest as f64 * (1.0 + SNAP_TOLERANCE)) as usize)
        .min(y.len() / 2)
        .max(5);
    let detector = PeriodogramDetector::builder()
        .min_period(4)
        .max_period(max_period as u32)
        .threshold(0.5)
        .build();
    detector.detect(y).into_iter().map(|p| p as usize).collect()
}

/// Autocorrelation of `y` at `lag`, as the Pearson correlation of `y[..n−lag]` with `y[lag..]`.
///
/// The textbook estimator shrinks by `(n − lag) / n`, which would rate a week with two weekly cycles at half its
/// strength and make it lose to the day it contains.
pub(crate) fn acf(y: &[f64], lag: usize) -> f64 {
    let n = y.len();
    if lag == 0 || lag + 2 > n {
        return 0.0;
    }
    let (a, b) = (&y[..n - lag], &y[lag..]);
    let m = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / m, b.iter().sum::<f64>() / m);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, z) in a.iter().zip(b) {
        cov += (x - ma) * (z - mb);
        va += (x - ma).powi(2);
        vb += (z - mb).powi(2);
    }
    if va <= 0.0 || vb <= 0.0 {
        0.0
    } else {
        cov / (va * vb).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daily(days: usize, per_day: usize, weekend_factor: f64) -> Vec<f64> {
        (0..days * per_day)
            .map(|i| {
                let phase = (i % per_day) as f64 / per_day as f64 * std::f64::consts::TAU;
                let day = i / per_day;
                let w = if day % 7 >= 5 { weekend_factor } else { 1.0 };
                w * (10.0 + 5.0 * phase.sin()) + ((i * 7919) % 13) as f64 * 0.1
            })
            .collect()
    }

    #[test]
    fn detects_a_day_and_snaps_it_to_the_calendar() {
        let y = daily(7, 288, 1.0);
        assert_eq!(detect(&y, TimeDelta::minutes(5)), vec![288]);
    }

    #[test]
    fn detects_a_week_only_with_two_weekly_cycles_and_weekly_structure() {
        let y = daily(14, 48, 0.5);
        assert_eq!(detect(&y, TimeDelta::minutes(30)), vec![48, 336]);
        let y = daily(13, 48, 0.5);
        assert_eq!(detect(&y, TimeDelta::minutes(30)), vec![48]);
        let y = daily(14, 48, 1.0);
        assert_eq!(detect(&y, TimeDelta::minutes(30)), vec![48]);
    }

    #[test]
    fn noise_has_no_season() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let y: Vec<f64> = (0..2016)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 1000) as f64
            })
            .collect();
        assert!(detect(&y, TimeDelta::minutes(5)).is_empty());
    }

    #[test]
    fn explicit_periods_need_two_cycles() {
        let (usable, one) = explicit(&[TimeDelta::days(1), TimeDelta::days(7)], TimeDelta::hours(1), 24 * 10);
        assert_eq!(usable, vec![24]);
        assert_eq!(one, vec![168]);
    }
}
