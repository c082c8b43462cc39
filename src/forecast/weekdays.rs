//! Weekday factors from one week of history, for the days before a weekly period can be fitted.
//!
//! A weekly period needs two full cycles of history (see `seasons`), so for the second week of a workload's life
//! a daily model plans Monday morning as another Sunday: on recorded web traffic (NASA HTTP) the first scored week
//! left half of a backtest's unserved demand, and synthetic weekday traffic four fifths. With one week of history
//! the weekend is already plain to see, so [`detect`] reads each day of the week's mean over the last seven days as
//! a factor of the week's mean; the daily model is fitted on demand divided by its day's factor and its forecast is
//! multiplied back (see `fit_baseline`). Factors are read from six and a half days of history on: the plan for the
//! first hour of a workload's second week is made from a model fitted before the week is whole, and on synthetic
//! hourly web traffic that hour, Monday's step from Sunday night's level, was most of a whole run's unserved demand.
//! A day seen in part is read against the window's daily profile, so that missing night hours do not lift its mean.
//!
//! The factors are used only for a weekend apart from the week: the lower of Saturday and Sunday at least
//! [`WEEKEND_GAP`] below every weekday. Seven daily means differ by chance as well (a recorded LLM trace's days
//! differ 1.23× with no weekly cycle, its Sunday 9% below its lowest weekday), and factors read from one week of
//! such noise cost where they do not help. Only the lower weekend day is tested: a busy event Saturday (1.8× a
//! weekday on synthetic web traffic) does not hide a quiet Sunday. Days are UTC days: for a workload whose midnight
//! is hours from UTC's, Saturday's factor mixes in Friday evening and Monday's Sunday evening, and on synthetic web
//! traffic shifted by 8 hours the factors gained nothing (docs/backtest.md, "Synthetic traffic").

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc};

/// The lower of Saturday's and Sunday's factors is at most every weekday's divided by this, or no factors are used.
const WEEKEND_GAP: f64 = 1.15;
/// Fewest days of history for factors: every day of the week seen for half a day or more.
const MIN_DAYS: f64 = 6.5;
/// Days of history from which the weekly period itself can be detected (two cycles), and factors are not needed.
const WEEKLY_DAYS: usize = 14;
/// Smallest factor: a day at a twentieth of the week's mean or less (a closed office's Sunday) is modelled at this
/// share, so dividing by it stays finite and a day of zeros stays zero.
const MIN_FACTOR: f64 = 0.05;

/// Factors per day of the week, Monday first: a day's mean demand over the week's mean.
pub(super) type Factors = [f64; 7];

/// The day of the week (Monday = 0) of slot `i` of a grid starting at `start`.
pub(super) fn weekday(start: DateTime<Utc>, step: TimeDelta, i: usize) -> usize {
    (start + step * i as i32).weekday().num_days_from_monday() as usize
}

/// Weekday factors of `y` (a gap-free grid of `step` slots from `start`) read from its last seven days (or all of a
/// shorter history), when the history is long enough for them ([`MIN_DAYS`]) and too short for a weekly period
/// ([`WEEKLY_DAYS`]), whole slots make a day, and the weekend stands apart ([`WEEKEND_GAP`]).
pub(super) fn detect(y: &[f64], start: DateTime<Utc>, step: TimeDelta) -> Option<Factors> {
    let day = TimeDelta::days(1).num_milliseconds();
    let step_ms = step.num_milliseconds();
    if step_ms <= 0 || day % step_ms != 0 {
        return None;
    }
    let per_day = (day / step_ms) as usize;
    let n = y.len();
    if (n as f64) < MIN_DAYS * per_day as f64 || n >= WEEKLY_DAYS * per_day {
        return None;
    }
    // The last seven days, or all of a shorter history. A day seen in part is read against the daily shape of the
    // days seen whole (each over its own mean), so that the hours it misses do not bias its mean.
    let first = n.saturating_sub(7 * per_day);
    let at = |i: usize| start + step * i as i32;
    let slot_of_day = |i: usize| (i64::from(at(i).num_seconds_from_midnight()) * 1000 / step_ms) as usize % per_day;
    // The window's days as runs of slots sharing a date; the whole ones (every slot, some demand) give the shape.
    let mut days: Vec<std::ops::Range<usize>> = Vec::new();
    for i in first..n {
        match days.last_mut() {
            Some(day) if at(day.start).date_naive() == at(i).date_naive() => day.end = i + 1,
            _ => days.push(i..i + 1),
        }
    }
    let (mut shape, mut whole) = (vec![0.0; per_day], 0usize);
    for day in days.into_iter().filter(|d| d.len() == per_day) {
        let mean = y[day.clone()].iter().sum::<f64>() / per_day as f64;
        if mean > 0.0 {
            for i in day {
                shape[slot_of_day(i)] += y[i] / mean;
            }
            whole += 1;
        }
    }
    if whole == 0 {
        return None;
    }
    shape.iter_mut().for_each(|x| *x /= whole as f64);
    let (mut sum, mut expected, mut count) = ([0.0; 7], [0.0; 7], [0usize; 7]);
    for (i, v) in y.iter().enumerate().skip(first) {
        let d = weekday(start, step, i);
        sum[d] += v;
        expected[d] += shape[slot_of_day(i)];
        count[d] += 1;
    }
    if count.iter().any(|c| 2 * c < per_day) {
        return None;
    }
    let means: Vec<f64> = (0..7)
        .map(|d| {
            if count[d] == per_day {
                sum[d] / per_day as f64
            } else if expected[d] > 0.0 {
                sum[d] / expected[d]
            } else {
                0.0
            }
        })
        .collect();
    let mean = means.iter().sum::<f64>() / 7.0;
    if !(mean.is_finite() && mean > 0.0) || means.iter().any(|m| !m.is_finite()) {
        return None;
    }
    let factors: Factors = std::array::from_fn(|d| (means[d] / mean).max(MIN_FACTOR));
    let weekend = factors[5].min(factors[6]);
    let quietest_weekday = factors[..5].iter().copied().fold(f64::INFINITY, f64::min);
    (weekend * WEEKEND_GAP <= quietest_weekday).then_some(factors)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `days` of hourly demand from a Monday midnight: a daily cycle, weekdays at `weekday` and Saturday and Sunday
    /// at `saturday` and `sunday`, with a little deterministic noise.
    fn hourly(days: usize, weekday: f64, saturday: f64, sunday: f64) -> (Vec<f64>, DateTime<Utc>) {
        let monday = DateTime::parse_from_rfc3339("2026-03-02T00:00:00Z").unwrap().to_utc();
        let y = (0..days * 24)
            .map(|i| {
                let level = match (i / 24) % 7 {
                    5 => saturday,
                    6 => sunday,
                    _ => weekday,
                };
                let hour = (i % 24) as f64 / 24.0 * std::f64::consts::TAU;
                level * (1.0 - 0.4 * hour.cos()) + ((i * 7919) % 13) as f64 * 0.01 * level
            })
            .collect();
        (y, monday)
    }

    #[test]
    fn a_quiet_weekend_in_the_last_week_gives_factors_monday_first() {
        let (y, start) = hourly(10, 100.0, 50.0, 40.0);
        let f = detect(&y, start, TimeDelta::hours(1)).expect("a weekend at half a weekday stands apart");
        assert!((f.iter().sum::<f64>() - 7.0).abs() < 1e-9, "factors average one: {f:?}");
        assert!(
            f[..5].iter().all(|w| (w / f[0] - 1.0).abs() < 0.02),
            "weekdays alike: {f:?}"
        );
        assert!(
            (f[5] / f[0] - 0.5).abs() < 0.02 && (f[6] / f[0] - 0.4).abs() < 0.02,
            "{f:?}"
        );
        assert_eq!(
            weekday(start, TimeDelta::hours(1), 5 * 24),
            5,
            "the sixth day from a Monday is a Saturday"
        );
    }

    #[test]
    fn factors_are_used_only_between_six_and_a_half_days_of_history_and_two_weeks() {
        for (hours, used) in [
            (155, false),
            (156, true),
            (167, true),
            (13 * 24, true),
            (14 * 24, false),
        ] {
            let (mut y, start) = hourly(14, 100.0, 50.0, 50.0);
            y.truncate(hours);
            assert_eq!(detect(&y, start, TimeDelta::hours(1)).is_some(), used, "{hours} hours");
        }
    }

    #[test]
    fn a_day_seen_in_part_is_read_against_the_daily_profile() {
        // Six and a half days from a Monday: Sunday seen from midnight to noon only, its quieter half (the cycle
        // peaks at noon and midnight is its trough). A plain mean would put Sunday well below 40% of a weekday.
        let (mut y, start) = hourly(7, 100.0, 60.0, 40.0);
        y.truncate(156);
        let f = detect(&y, start, TimeDelta::hours(1)).unwrap();
        assert!((f[6] / f[0] - 0.4).abs() < 0.02, "Sunday {:.3} of Monday", f[6] / f[0]);
        assert!(
            (f[5] / f[0] - 0.6).abs() < 0.02,
            "Saturday {:.3} of Monday",
            f[5] / f[0]
        );
        // A whole week of the same demand gives the same factors.
        let (whole, _) = hourly(7, 100.0, 60.0, 40.0);
        let g = detect(&whole, start, TimeDelta::hours(1)).unwrap();
        assert!(
            f.iter().zip(&g).all(|(a, b)| (a / b - 1.0).abs() < 0.03),
            "{f:?} vs {g:?}"
        );
    }

    #[test]
    fn only_a_weekend_clearly_below_every_weekday_gives_factors() {
        let step = TimeDelta::hours(1);
        // A Sunday 9% below the quietest weekday is a chance difference between seven days, not a weekly cycle.
        let (y, start) = hourly(10, 100.0, 100.0, 91.0);
        assert_eq!(detect(&y, start, step), None);
        // A busy Saturday does not hide a quiet Sunday.
        let (y, start) = hourly(10, 100.0, 180.0, 60.0);
        assert!(detect(&y, start, step).is_some());
        // A weekend above the week (leisure traffic) is not the pattern these factors are for.
        let (y, start) = hourly(10, 100.0, 150.0, 140.0);
        assert_eq!(detect(&y, start, step), None);
    }

    #[test]
    fn a_weekend_of_zeros_gets_the_smallest_factor_and_no_demand_gets_none() {
        let (y, start) = hourly(9, 100.0, 0.0, 0.0);
        let f = detect(&y, start, TimeDelta::hours(1)).unwrap();
        assert_eq!((f[5], f[6]), (MIN_FACTOR, MIN_FACTOR));
        assert_eq!(
            detect(&[0.0; 240], start, TimeDelta::hours(1)),
            None,
            "no demand, no factors"
        );
    }

    #[test]
    fn the_monday_after_a_quiet_weekend_is_forecast_at_a_weekday_level() {
        use crate::forecast::{fit, ForecastSettings, Seasonality};
        use crate::series::Series;
        // Ten days of hourly demand from a Friday: weekdays at 100, weekends at 45, the same daily cycle. At Monday
        // midnight the history holds one weekly cycle, too little for a weekly period.
        let friday = DateTime::parse_from_rfc3339("2026-03-06T00:00:00Z").unwrap().to_utc();
        let level = |i: usize| if matches!((i / 24 + 4) % 7, 5 | 6) { 45.0 } else { 100.0 };
        let demand = |i: usize| {
            let hour = (i % 24) as f64 / 24.0 * std::f64::consts::TAU;
            level(i) * (1.0 - 0.4 * hour.cos()) + ((i * 7919) % 13) as f64 * 0.2
        };
        let step = TimeDelta::hours(1);
        let n = 10 * 24;
        let series = Series::from_values(friday, step, (0..n).map(|i| Some(demand(i))).collect());
        let now = friday + step * n as i32;
        let settings = |seasonality| ForecastSettings {
            seasonality,
            horizon: TimeDelta::hours(13),
            decision: TimeDelta::hours(1),
        };
        let monday = |seasonality| {
            let f = fit(&series, &settings(seasonality), now).forecast(&series, now, TimeDelta::hours(12));
            let mean = f.median.iter().sum::<f64>() / f.median.len() as f64;
            (f, mean)
        };
        let truth = (n..n + 12).map(demand).sum::<f64>() / 12.0;
        let (auto, with_factors) = monday(Seasonality::Auto);
        let f = auto
            .weekday_factors
            .expect("a weekend at 45% of the week's days gives factors");
        assert!(f[0] > 1.1 && f[6] < 0.65, "{f:?}");
        assert!(
            (with_factors / truth - 1.0).abs() < 0.1,
            "Monday forecast {with_factors:.1} vs {truth:.1}"
        );
        // The daily period alone, as configured: Monday is forecast as another Sunday.
        let (daily, without) = monday(Seasonality::Periods(vec![TimeDelta::days(1)]));
        assert_eq!(daily.weekday_factors, None);
        assert!(without < 0.7 * truth, "Monday forecast {without:.1} vs {truth:.1}");
    }
}
