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
//! weekday on synthetic web traffic) does not hide a quiet Sunday.
//!
//! A workload's days are its users' days, not UTC's: read on UTC days, a workload whose midnight is eight hours from
//! UTC's has Friday evening in its Saturday and Sunday evening in its Monday, and on synthetic web traffic shifted by
//! eight hours factors so read gained nothing. So the week is read on days beginning at each whole hour of UTC's day
//! ([`Weekdays::utc_offset_hours`]). The days that set the weekend furthest below the weekdays ([`contrast`]) find
//! the workload's clock; it uses only the quietest weekday and weekend day, so a busy event Saturday does not move it.
//! With the day's turn at night, though, days beginning an hour or two apart set the weekend almost as far apart
//! ([`NEAR_TOP`]), and the one that reads Sunday's last hour as Monday's forecasts that hour at a weekday's level: on
//! synthetic web traffic the level correction that followed cut the plan for Monday's first hour by a third. Among
//! those, the hour the weekend begins is where a weekday level and a level each for Saturday and Sunday, times the
//! daily shape, fit the week best (absolute errors, so that an event's hours do not decide it). UTC's own days are
//! kept unless another's weekend stands [`OFFSET_GAIN`] further apart and the week fits better on them: days that
//! begin mid-afternoon spread a quiet weekday over two and so set the weekend further apart, but misplace the
//! weekend by as many hours (NASA's web traffic of July 1995, whose 4 July, a Tuesday, was its quietest weekday, read
//! on days from 20:00 UTC). Days other than UTC's need a weekend further apart to be used at all
//! ([`SHIFTED_WEEKEND_GAP`]): read 24 ways, chance alone sets some week's weekend apart.
//!
//! A week of history often holds a public holiday, and read as a weekday a holiday is the week's pattern: the same
//! weekday a week later is planned at the holiday's level, and a holiday as quiet as a weekend hides the weekend from
//! the test above. So the quietest weekday seen for half a day or more is read as a [`Holiday`] when both halves of
//! it are nearer the weekend's level than the weekdays' median and it stands [`WEEKEND_GAP`] below the other
//! weekdays: its date keeps the level it read, and its weekday takes the other weekdays' median. Both halves,
//! because on days that begin hours from the workload's own a Monday holds Sunday's last hours and reads quiet in
//! its first half only; read as a holiday, it would set such days' weekend further apart than the workload's own.

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeDelta, Timelike, Utc};
use serde::{Deserialize, Serialize};

use super::prep::median_of;

/// The lower of Saturday's and Sunday's factors is at most every weekday's divided by this, or no factors are used.
const WEEKEND_GAP: f64 = 1.15;
/// The same for days beginning at another hour than UTC midnight. Read 24 ways, a week's days are set apart further
/// by chance than read one way: on a recorded LLM trace with no weekly cycle, whose weekend stands 1.09× below its
/// weekdays on UTC days, days beginning at noon set it 1.22× apart.
const SHIFTED_WEEKEND_GAP: f64 = 1.3;
/// Fewest days of history for factors: every day of the week seen for half a day or more.
const MIN_DAYS: f64 = 6.5;
/// Days of history from which the weekly period itself can be detected (two cycles), and factors are not needed.
const WEEKLY_DAYS: usize = 14;
/// Smallest factor: a day at a twentieth of the week's mean or less (a closed office's Sunday) is modelled at this
/// share, so dividing by it stays finite and a day of zeros stays zero.
const MIN_FACTOR: f64 = 0.05;

/// Days that set the weekend at least this share as far apart as the best days ([`contrast`]) are candidates for the
/// hour the workload's days begin.
const NEAR_TOP: f64 = 0.98;
/// Days beginning at another hour than UTC midnight are kept only when they set the weekend this much further apart
/// than UTC's days (and the week fits them better).
const OFFSET_GAIN: f64 = 1.05;

/// Factors per day of the week, Monday first: a day's mean demand over the week's mean.
type Factors = [f64; 7];

/// Weekday factors and the days they were read on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Weekdays {
    /// Each day of the week's mean demand over the week's mean, Monday first.
    pub factors: [f64; 7],
    /// The workload's days as an offset from UTC's, in hours from −11 to 12, read from its demand: −8 for days that
    /// begin at 08:00 UTC (midnight on the US west coast), 0 for UTC days.
    pub utc_offset_hours: i32,
    /// A weekday of the last week whose demand read as a weekend's (a public holiday). Its weekday's factor in
    /// [`Weekdays::factors`] is the other weekdays' (the weekday's next week is an ordinary one); its own date keeps
    /// the factor it read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holiday: Option<Holiday>,
}

/// A weekday read as a holiday: its date on the workload's clock and its mean demand over the week's mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Holiday {
    /// The day, on the workload's clock ([`Weekdays::utc_offset_hours`]).
    pub date: NaiveDate,
    /// Its mean demand over the week's mean, on the same scale as [`Weekdays::factors`].
    pub factor: f64,
}

impl Weekdays {
    /// The factor of the day `t` falls on.
    pub(super) fn at(&self, t: DateTime<Utc>) -> f64 {
        let local = t + TimeDelta::hours(self.utc_offset_hours.into());
        match self.holiday {
            Some(h) if h.date == local.date_naive() => h.factor,
            _ => self.factors[day_of_week(local)],
        }
    }

    /// The holiday in words, when the week held one: "Tue 4 Jul read as a holiday (0.78)".
    pub fn holiday_in_words(&self) -> Option<String> {
        self.holiday
            .map(|h| format!("{} read as a holiday ({:.2})", h.date.format("%a %-d %b"), h.factor))
    }

    /// The workload's days in words when they are not UTC's: "days from 08:00 UTC" for an offset of −8, "days from
    /// 15:00 UTC" for +9.
    pub fn days_other_than_utc(&self) -> Option<String> {
        (self.utc_offset_hours != 0).then(|| format!("days from {:02}:00 UTC", (-self.utc_offset_hours).rem_euclid(24)))
    }
}

/// The day of the week of `t`, Monday = 0.
fn day_of_week(t: DateTime<Utc>) -> usize {
    t.weekday().num_days_from_monday() as usize
}

/// How far the weekend stands below the weekdays: the quietest weekday's factor over the quieter weekend day's.
fn contrast(f: &Factors) -> f64 {
    f[..5].iter().copied().fold(f64::INFINITY, f64::min) / f[5].min(f[6])
}

/// Weekday factors of `y` (a gap-free grid of `step` slots from `start`) read from its last seven days (or all of a
/// shorter history), when the history is long enough for them ([`MIN_DAYS`]) and too short for a weekly period
/// ([`WEEKLY_DAYS`]), whole slots make a day, and the weekend stands apart ([`WEEKEND_GAP`]) on UTC days or on days
/// beginning at the whole hour that sets it furthest apart and fits best ([`NEAR_TOP`], [`OFFSET_GAIN`],
/// [`SHIFTED_WEEKEND_GAP`]; a week fitted better than on UTC's days).
pub(super) fn detect(y: &[f64], start: DateTime<Utc>, step: TimeDelta) -> Option<Weekdays> {
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
    // The week read on the clock of a workload `hours` from UTC, for whole-slot offsets.
    let read = |hours: i32| {
        let shift = TimeDelta::hours(hours.into());
        (shift.num_milliseconds() % step_ms == 0)
            .then(|| read_week(y, start + shift, step, per_day))
            .flatten()
            .map(|read| {
                let week = Weekdays {
                    factors: read.factors,
                    utc_offset_hours: hours,
                    holiday: read.holiday,
                };
                (week, read.error)
            })
    };
    let weeks: Vec<(Weekdays, f64)> = (-11..=12).filter_map(read).collect();
    let apart = |w: &(Weekdays, f64)| contrast(&w.0.factors);
    let top = weeks.iter().map(apart).fold(0.0, f64::max);
    let best = weeks
        .iter()
        .filter(|w| apart(w) >= NEAR_TOP * top)
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let utc = weeks.iter().find(|w| w.0.utc_offset_hours == 0);
    match (utc, best) {
        (Some(utc), Some(best))
            if apart(best) > OFFSET_GAIN * apart(utc) && apart(best) >= SHIFTED_WEEKEND_GAP && best.1 < utc.1 =>
        {
            Some(best.0)
        }
        (None, Some(best)) if apart(best) >= SHIFTED_WEEKEND_GAP => Some(best.0),
        (Some(utc), _) if apart(utc) >= WEEKEND_GAP => Some(utc.0),
        _ => None,
    }
}

/// A week read on one clock: its factors, the weekday read as a holiday if any, and the absolute error left by a model
/// of its demand with one level for the weekdays and one each for Saturday and Sunday (each slot its level times the
/// daily shape).
struct Read {
    factors: Factors,
    holiday: Option<Holiday>,
    error: f64,
}

/// The factors of the last seven days of `y` (or all of a shorter history), `start` read on the workload's clock.
fn read_week(y: &[f64], start: DateTime<Utc>, step: TimeDelta, per_day: usize) -> Option<Read> {
    let step_ms = step.num_milliseconds();
    let n = y.len();
    // The last seven days, or all of a shorter history. A day seen in part is read against the daily shape of the
    // days seen whole (each over its own mean), so that the hours it misses do not bias its mean.
    let first = n.saturating_sub(7 * per_day);
    // Whole slots make a day, so slot `i` is slot `k0 + i` counted from the midnight that begins `start`'s day: its
    // place in the day and its day follow by integer arithmetic (24 clocks are read per fit).
    let k0 = (i64::from(start.num_seconds_from_midnight()) * 1000 / step_ms) as usize;
    let slot_of_day = |i: usize| (k0 + i) % per_day;
    let day_of = |i: usize| (k0 + i) / per_day;
    let start_day = day_of_week(start);
    let weekday = |i: usize| (start_day + day_of(i)) % 7;
    // The window's days as runs of slots sharing a date; the whole ones (every slot, some demand) give the shape.
    let mut days: Vec<std::ops::Range<usize>> = Vec::new();
    for i in first..n {
        match days.last_mut() {
            Some(day) if day_of(day.start) == day_of(i) => day.end = i + 1,
            _ => days.push(i..i + 1),
        }
    }
    let (mut shape, mut whole) = (vec![0.0; per_day], 0usize);
    for day in days.iter().filter(|d| d.len() == per_day).cloned() {
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
        let d = weekday(i);
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
    // Least-squares levels of the daily shape: one for the weekdays, one each for Saturday and Sunday.
    let class = |i: usize| weekday(i).saturating_sub(4);
    let (mut ys, mut ss) = ([0.0; 3], [0.0; 3]);
    for i in first..n {
        ys[class(i)] += y[i] * shape[slot_of_day(i)];
        ss[class(i)] += shape[slot_of_day(i)].powi(2);
    }
    let level = |k: usize| if ss[k] > 0.0 { ys[k] / ss[k] } else { 0.0 };
    let error = (first..n)
        .map(|i| (y[i] - level(class(i)) * shape[slot_of_day(i)]).abs())
        .sum();
    let mut factors: Factors = std::array::from_fn(|d| means[d] / mean);
    // A weekday whose demand reads as a weekend's is a holiday, not the week's pattern: the quietest weekday seen for
    // half a day or more, read against the daily shape, when it is nearer the weekend's level than the weekdays'
    // (their median). Its weekday's factor is the other weekdays' median; its date keeps the level it read.
    let weekend_level = (factors[5] + factors[6]) / 2.0;
    let usual = median_of(&mut factors[..5].to_vec());
    let level_of = |day: &std::ops::Range<usize>| {
        let (seen, expected) = day
            .clone()
            .fold((0.0, 0.0), |(s, e), i| (s + y[i], e + shape[slot_of_day(i)]));
        (expected > 0.0).then(|| seen / expected / mean)
    };
    let quietest = days
        .iter()
        .filter(|day| 2 * day.len() >= per_day && weekday(day.start) < 5)
        .filter_map(|day| Some((day, level_of(day)?)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    // Both halves of the day: read on days that begin hours from the workload's own, a Monday holds Sunday's last
    // hours and reads quiet in its first half only.
    let weekend_like = |day: &std::ops::Range<usize>| {
        let middle = day.start + day.len() / 2;
        [day.start..middle, middle..day.end]
            .iter()
            .all(|half| level_of(half).is_some_and(|read| 2.0 * read < weekend_level + usual))
    };
    // And it stands as far below the other weekdays as a weekend must ([`WEEKEND_GAP`]): a weekday a little quieter
    // by chance is not a holiday that, left out, would set a week with no weekly cycle's weekend apart.
    let mut holiday = None;
    if let Some((day, read)) = quietest.filter(|&(day, _)| usual > weekend_level && weekend_like(day)) {
        let d = weekday(day.start);
        let mut others: Vec<f64> = (0..5).filter(|&o| o != d).map(|o| factors[o]).collect();
        let ordinary = median_of(&mut others);
        if read * WEEKEND_GAP <= ordinary {
            factors[d] = ordinary;
            holiday = Some(Holiday {
                date: start.date_naive() + Days::new(day_of(day.start) as u64),
                factor: read,
            });
        }
    }
    // Factors average one over an ordinary week.
    let scale = factors.iter().sum::<f64>() / 7.0;
    Some(Read {
        factors: factors.map(|f| (f / scale).max(MIN_FACTOR)),
        holiday: holiday.map(|h| Holiday {
            factor: (h.factor / scale).max(MIN_FACTOR),
            ..h
        }),
        error,
    })
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
        let w = detect(&y, start, TimeDelta::hours(1)).expect("a weekend at half a weekday stands apart");
        assert_eq!((w.utc_offset_hours, w.days_other_than_utc()), (0, None), "UTC days");
        let f = w.factors;
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
            w.at(start + TimeDelta::days(5)),
            f[5],
            "the sixth day from a Monday is a Saturday"
        );
    }

    #[test]
    fn the_days_are_the_workloads_own_when_its_midnight_is_hours_from_utcs() {
        let step = TimeDelta::hours(1);
        let (y, monday) = hourly(10, 100.0, 50.0, 40.0);
        let utc = detect(&y, monday, step).unwrap();
        let read = |y: &[f64], start, hours: i64| read_week(y, start + TimeDelta::hours(hours), step, 24).unwrap();
        // The same demand on the clock of a workload eight hours west of UTC (its Monday begins at 08:00 UTC), and
        // nine hours east (at 15:00 UTC on Sunday).
        for (hours, words) in [(-8, "days from 08:00 UTC"), (9, "days from 15:00 UTC")] {
            let start = monday - TimeDelta::hours(hours.into());
            let w = detect(&y, start, step).expect("the weekend stands apart on the workload's days");
            assert_eq!(w.utc_offset_hours, hours);
            assert_eq!(w.days_other_than_utc().as_deref(), Some(words));
            assert!(
                w.factors.iter().zip(&utc.factors).all(|(a, b)| (a - b).abs() < 1e-9),
                "the same factors, Monday first: {:?} vs {:?}",
                w.factors,
                utc.factors
            );
            // Read on UTC days, Saturday would hold Friday evening and Monday Sunday evening.
            let (on_utc_days, own) = (read(&y, start, 0), read(&y, start, hours.into()));
            assert!(contrast(&on_utc_days.factors) * OFFSET_GAIN < contrast(&own.factors));
            assert!(on_utc_days.error > own.error);
            // Days beginning an hour earlier set the weekend almost as far apart (the day turns at night, and the
            // hour they move into Monday is Sunday's quietest): the fit, not the contrast, places the hour.
            let top = contrast(&own.factors);
            let earlier = read(&y, start, (hours + 1).into());
            assert!(contrast(&earlier.factors) >= NEAR_TOP * top, "{:?}", earlier.factors);
            assert!(earlier.error > own.error, "{} vs {}", earlier.error, own.error);
            assert_eq!(
                w.at(start + TimeDelta::days(5)),
                w.factors[5],
                "its sixth day is its Saturday"
            );
            assert_eq!(w.at(start + TimeDelta::days(7) - step), w.factors[6]);
            assert_eq!(w.at(start + TimeDelta::days(7)), w.factors[0]);
        }
        // A busy event Saturday (1.8 weekdays) moves neither UTC's days nor a workload's own.
        let (event, _) = hourly(10, 100.0, 180.0, 60.0);
        assert_eq!(detect(&event, monday, step).unwrap().utc_offset_hours, 0);
        assert_eq!(
            detect(&event, monday + TimeDelta::hours(8), step)
                .unwrap()
                .utc_offset_hours,
            -8
        );
        // A day that begins early once a week, so that days beginning an hour earlier set the weekend a little
        // further apart, does not move the days from UTC's: Sunday's last hour at twice its level.
        let early: Vec<f64> = y
            .iter()
            .enumerate()
            .map(|(i, v)| if i % 168 == 167 { 2.0 * v } else { *v })
            .collect();
        let best = (-11..=12)
            .filter(|&h| h != 0)
            .map(|h| contrast(&read(&early, monday, h).factors))
            .fold(0.0, f64::max);
        let at_utc = contrast(&read(&early, monday, 0).factors);
        assert!(best > at_utc && best < OFFSET_GAIN * at_utc, "{best} vs {at_utc}");
        assert_eq!(detect(&early, monday, step).unwrap().utc_offset_hours, 0);
        // Offsets are whole slots: two-hour slots are read on days from even hours only.
        let two_hourly: Vec<f64> = y.chunks(2).map(|c| c.iter().sum()).collect();
        let w = detect(&two_hourly, monday + TimeDelta::hours(8), TimeDelta::hours(2)).unwrap();
        assert_eq!(w.utc_offset_hours, -8);
    }

    #[test]
    fn days_other_than_utcs_need_a_weekend_further_apart() {
        // A quieter stretch from Saturday noon to Sunday noon UTC: on UTC days half of it falls on each weekend day;
        // on days beginning at noon UTC (twelve hours east) it is a whole day.
        let step = TimeDelta::hours(1);
        let quiet = |share: f64| {
            let (y, monday) = hourly(10, 100.0, 100.0, 100.0);
            let y: Vec<f64> = y
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    if (5 * 24 + 12..6 * 24 + 12).contains(&(i % 168)) {
                        v * share
                    } else {
                        *v
                    }
                })
                .collect();
            let on = |hours: i64| {
                contrast(
                    &read_week(&y, monday + TimeDelta::hours(hours), step, 24)
                        .unwrap()
                        .factors,
                )
            };
            (detect(&y, monday, step), on(0), on(12))
        };
        // At 80%, the stretch sets the weekend 1.25× apart on its own days: what chance alone does to a week read 24
        // ways, and too little.
        let (w, utc, noon) = quiet(0.8);
        assert!(
            utc < WEEKEND_GAP && (WEEKEND_GAP..SHIFTED_WEEKEND_GAP).contains(&noon),
            "{utc} {noon}"
        );
        assert_eq!(w, None);
        // At 65% (1.54× apart) it is a weekend, and the workload's days begin at noon UTC.
        let (w, _, _) = quiet(0.65);
        let w = w.expect("a weekend 1.5× below the week on the workload's days");
        assert_eq!(w.utc_offset_hours, 12, "{w:?}");
        assert!((w.factors[6] / w.factors[0] - 0.65).abs() < 0.02, "{w:?}");
    }

    #[test]
    fn a_weekday_at_a_weekends_level_is_a_holiday_not_the_weeks_pattern() {
        let step = TimeDelta::hours(1);
        // Ten days from a Monday, weekends at half a weekday; the second Wednesday (day 9) a holiday at 45%.
        let (y, monday) = hourly(10, 100.0, 50.0, 50.0);
        let with = |share: f64| -> Vec<f64> {
            y.iter()
                .enumerate()
                .map(|(i, v)| if i / 24 == 9 { v * share } else { *v })
                .collect()
        };
        let holiday_y = with(0.45);
        let w = detect(&holiday_y, monday, step).expect("the weekend stands apart from the other weekdays");
        let h = w.holiday.expect("the Wednesday reads as a weekend");
        assert_eq!(h.date, NaiveDate::from_ymd_opt(2026, 3, 11).unwrap());
        let f = w.factors;
        assert!(
            (f[2] / f[1] - 1.0).abs() < 0.02,
            "Wednesday's factor is an ordinary weekday's: {f:?}"
        );
        assert!((h.factor / f[1] - 0.45).abs() < 0.03, "{h:?} vs {f:?}");
        assert!(
            (f.iter().sum::<f64>() - 7.0).abs() < 1e-9,
            "an ordinary week averages one: {f:?}"
        );
        // The holiday's own date keeps its level, the next Wednesday is an ordinary one.
        let wednesday = monday + TimeDelta::days(9) + TimeDelta::hours(12);
        assert_eq!(w.at(wednesday), h.factor);
        assert_eq!(w.at(wednesday + TimeDelta::days(7)), f[2]);
        assert_eq!(
            w.holiday_in_words().as_deref(),
            Some(format!("Wed 11 Mar read as a holiday ({:.2})", h.factor).as_str())
        );
        // Read as the quietest weekday, the holiday would have set the weekend no further apart than 1.1×: no factors.
        assert!(
            contrast(&std::array::from_fn(|d| if d == 2 { h.factor } else { f[d] })) < WEEKEND_GAP,
            "{f:?}"
        );
        // A quieter weekday nearer the weekdays' level than the weekend's is read as it is, on UTC's days: days from
        // 07:00 UTC spread it over two and set the weekend 5% further apart, but misplace the weekend and fit the
        // week worse.
        let quiet_wednesday = with(0.8);
        let w = detect(&quiet_wednesday, monday, step).unwrap();
        assert_eq!((w.utc_offset_hours, w.holiday), (0, None));
        let (utc, spread) = (
            read_week(&quiet_wednesday, monday, step, 24).unwrap(),
            read_week(&quiet_wednesday, monday - TimeDelta::hours(7), step, 24).unwrap(),
        );
        assert!(contrast(&spread.factors) > OFFSET_GAIN * contrast(&utc.factors));
        assert!(spread.error > utc.error);
        assert!((w.factors[2] / w.factors[1] - 0.8).abs() < 0.02, "{w:?}");
        // A weekday nearer a weekend that is itself little below the week is not a holiday unless it stands as far
        // below the other weekdays as a weekend must: 10% below them is chance, and no factors are used.
        let (flat, _) = hourly(10, 100.0, 92.0, 92.0);
        let chance: Vec<f64> = flat
            .iter()
            .enumerate()
            .map(|(i, v)| if i / 24 == 9 { v * 0.9 } else { *v })
            .collect();
        assert_eq!(read_week(&chance, monday, step, 24).unwrap().holiday, None);
        assert_eq!(detect(&chance, monday, step), None);
        // On a workload's own clock, eight hours west of UTC, the holiday is its local date.
        let w = detect(&holiday_y, monday + TimeDelta::hours(8), step).unwrap();
        assert_eq!(w.utc_offset_hours, -8);
        assert_eq!(w.holiday.map(|h| h.date), NaiveDate::from_ymd_opt(2026, 3, 11));
        assert_eq!(w.at(wednesday + TimeDelta::hours(8)), w.holiday.unwrap().factor);
        // Read on UTC days, the Monday of a workload whose days begin eight hours earlier holds Sunday's evening: it
        // is quieter than its weekdays, but nearer their level than the weekend's, so not a holiday.
        let (y, monday) = hourly(10, 100.0, 50.0, 40.0);
        let on_utc_days = read_week(&y, monday + TimeDelta::hours(8), step, 24).unwrap();
        assert!(
            on_utc_days.factors[0] < 0.95 * on_utc_days.factors[1],
            "{:?}",
            on_utc_days.factors
        );
        assert_eq!(on_utc_days.holiday, None);
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
        let f = detect(&y, start, TimeDelta::hours(1)).unwrap().factors;
        assert!((f[6] / f[0] - 0.4).abs() < 0.02, "Sunday {:.3} of Monday", f[6] / f[0]);
        assert!(
            (f[5] / f[0] - 0.6).abs() < 0.02,
            "Saturday {:.3} of Monday",
            f[5] / f[0]
        );
        // A whole week of the same demand gives the same factors.
        let (whole, _) = hourly(7, 100.0, 60.0, 40.0);
        let g = detect(&whole, start, TimeDelta::hours(1)).unwrap().factors;
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
        let f = detect(&y, start, TimeDelta::hours(1)).unwrap().factors;
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
        // midnight the history holds one weekly cycle, too little for a weekly period. On UTC's clock, and on the
        // clock of a workload eight hours west of UTC (its days begin at 08:00 UTC).
        let level = |i: usize| if matches!((i / 24 + 4) % 7, 5 | 6) { 45.0 } else { 100.0 };
        let demand = |i: usize| {
            let hour = (i % 24) as f64 / 24.0 * std::f64::consts::TAU;
            level(i) * (1.0 - 0.4 * hour.cos()) + ((i * 7919) % 13) as f64 * 0.2
        };
        let step = TimeDelta::hours(1);
        let n = 10 * 24;
        let truth = (n..n + 12).map(demand).sum::<f64>() / 12.0;
        for utc_offset_hours in [0, -8] {
            let friday = DateTime::parse_from_rfc3339("2026-03-06T00:00:00Z").unwrap().to_utc()
                - TimeDelta::hours(utc_offset_hours.into());
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
            let (auto, with_factors) = monday(Seasonality::Auto);
            let w = auto
                .weekday_factors
                .expect("a weekend at 45% of the week's days gives factors");
            assert_eq!(w.utc_offset_hours, utc_offset_hours);
            assert!(w.factors[0] > 1.1 && w.factors[6] < 0.65, "{w:?}");
            assert!(
                (with_factors / truth - 1.0).abs() < 0.1,
                "{utc_offset_hours} h: Monday forecast {with_factors:.1} vs {truth:.1}"
            );
            // The daily period alone, as configured: Monday is forecast as another Sunday.
            let (daily, without) = monday(Seasonality::Periods(vec![TimeDelta::days(1)]));
            assert_eq!(daily.weekday_factors, None);
            assert!(
                without < 0.7 * truth,
                "{utc_offset_hours} h: Monday forecast {without:.1} vs {truth:.1}"
            );
        }
    }
}
