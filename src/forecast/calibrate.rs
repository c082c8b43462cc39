//! Calibrated prediction intervals and the level correction, both learnt from the model's own out-of-sample errors.
//!
//! A model is fitted on history up to `now − C` (the holdout fit), then replayed as production would use it: at
//! every origin in `(now − C, now]` it forecasts with the level correction from the residuals before that origin.
//! The realised errors give (1) the correction's half-life and damping, chosen by mean absolute error from a small
//! grid, and (2) the empirical percentiles of the scaled error per horizon. Errors are divided by a [`Scale`] of the
//! point forecast so that one table serves the trough and the peak of a daily cycle.

use super::{parallel, MAX_CALIBRATION_HORIZON};
use crate::series::percentile;

/// Number of stored percentile levels: 1%, 2%, …, 99%.
const LEVELS: usize = 99;
/// A horizon with fewer errors than this borrows the previous horizon's percentiles.
const MIN_ERRORS: usize = 20;
/// Half-lives (in steps) the level correction may use.
const HALF_LIVES: [f64; 6] = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0];
/// Per-step persistence of the correction (0: no correction).
const DAMPINGS: [f64; 5] = [0.0, 0.9, 0.97, 0.99, 1.0];
/// How many half-lives of residuals the correction reads (older weights are below 0.1%).
const WINDOW_HALF_LIVES: f64 = 10.0;

/// Exponents the error scale may grow with the level (see [`Scale`]): 1 is relative error, 0 absolute error.
const POWERS: [f64; 5] = [1.0, 0.75, 0.5, 0.25, 0.0];

/// The yardstick forecast errors are measured in: `max(point, floor)^power × reference^(1 − power)`.
///
/// Dividing errors by this scale lets one error table serve the trough and the peak of a daily cycle, provided the
/// scale grows with the level as the errors do. Multiplicative noise is relative (`power = 1`); counting noise grows
/// with the square root of the level (`0.5`); noise that does not grow with the level is absolute (`0`). A wrong
/// power is costly: with relative errors pooled over a cycle whose trough is relatively noisier, the band at the
/// peak comes out several times too wide, and costs replicas exactly when there are most of them. So the power is
/// chosen by the calibration from the errors themselves (see [`Replay::calibrate`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scale {
    /// Lowest level the scale is taken at: without it, near-zero points would make any error huge.
    pub floor: f64,
    /// Typical level of the series (the mean over the fit window); keeps scaled errors dimensionless.
    pub reference: f64,
    /// How errors grow with the level, in [0, 1].
    pub power: f64,
}

impl Scale {
    /// The error scale at point forecast `point`; > 0 for a positive floor and reference.
    pub fn of(&self, point: f64) -> f64 {
        let p = point.max(self.floor);
        if self.power >= 1.0 {
            p
        } else {
            p.powf(self.power) * self.reference.max(self.floor).powf(1.0 - self.power)
        }
    }

    /// The same scale with another power.
    fn with_power(self, power: f64) -> Self {
        Self { power, ..self }
    }
}

/// How residuals of the recent past shift the forecast: an exponentially weighted level, damped with horizon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Correction {
    /// Half-life of the residual weights, in steps.
    pub half_life: f64,
    /// Per-step persistence of the level into the future.
    pub damping: f64,
}

impl Correction {
    /// How many trailing slots the level reads.
    pub fn window(&self) -> usize {
        (self.half_life * WINDOW_HALF_LIVES).ceil() as usize + 1
    }

    /// The residual level from `(age in steps before the origin, residual)` pairs; 0 with no residuals.
    pub fn level(&self, residuals: impl Iterator<Item = (usize, f64)>) -> f64 {
        let decay = 0.5f64.powf(1.0 / self.half_life);
        let (mut s, mut w) = (0.0, 0.0);
        for (age, r) in residuals {
            let wt = decay.powi(age as i32);
            s += wt * r;
            w += wt;
        }
        if w > 1e-9 {
            s / w
        } else {
            0.0
        }
    }

    /// The shift at `h` steps ahead (h ≥ 1) for residual level `level`.
    pub fn shift(&self, level: f64, h: usize) -> f64 {
        level * self.damping.powi(h as i32)
    }
}

/// Percentiles of relative error per horizon (row `h − 1` for `h` steps ahead).
///
/// Rows are held as `f32`: a percentile of scaled errors needs no more than seven significant digits, and at half
/// the size the table stops being one of the largest parts of a live workload (99 levels × up to
/// `MAX_CALIBRATION_HORIZON` rows per model).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ErrorTable {
    rows: Vec<[f32; LEVELS]>,
    /// Number of out-of-sample errors behind the table (0 for the uncalibrated default).
    pub samples: usize,
    /// Median absolute one-step scaled error: the yardstick recent errors are compared with.
    pub one_step_scale: f64,
    /// What errors are divided by: quantiles of demand are `point + scale.of(point) × table quantile`.
    pub scale: Scale,
}

impl ErrorTable {
    /// A wide, uncalibrated band for when there is no out-of-sample history: ±50% at the 10/90th percentiles,
    /// from a normal shape. It keeps the planner cautious until real errors exist.
    pub fn uncalibrated(scale: Scale) -> Self {
        let mut row = [0.0; LEVELS];
        for (k, r) in row.iter_mut().enumerate() {
            let q = (k + 1) as f64 / 100.0;
            *r = (normal_quantile(q) * 0.5 / 1.2816) as f32;
        }
        Self {
            rows: vec![row],
            samples: 0,
            one_step_scale: 0.0,
            scale,
        }
    }

    /// Builds the table from relative errors per horizon (`errors[h − 1]`). `None` when horizon 1 lacks errors.
    ///
    /// Upper percentiles never shrink and lower ones never grow with horizon: uncertainty does not fall with
    /// distance, and a non-monotone band would make the planner's peak depend on sampling noise.
    pub fn from_errors(mut errors: Vec<Vec<f64>>, scale: Scale) -> Option<Self> {
        let samples = errors.iter().map(Vec::len).sum();
        let one_step_scale = errors.first().map_or(0.0, |e| {
            let mut abs: Vec<f64> = e.iter().filter(|v| v.is_finite()).map(|v| v.abs()).collect();
            abs.sort_by(f64::total_cmp);
            if abs.is_empty() {
                0.0
            } else {
                percentile(&abs, 0.5)
            }
        });
        let mut rows: Vec<[f32; LEVELS]> = Vec::with_capacity(errors.len());
        for errs in errors.iter_mut() {
            errs.retain(|e| e.is_finite());
            if errs.len() < MIN_ERRORS {
                let prev = *rows.last()?;
                rows.push(prev);
                continue;
            }
            errs.sort_by(f64::total_cmp);
            let mut row = [0.0; LEVELS];
            for (k, r) in row.iter_mut().enumerate() {
                *r = percentile(errs, (k + 1) as f64 / 100.0) as f32;
            }
            if let Some(prev) = rows.last() {
                for k in 0..LEVELS {
                    if k > LEVELS / 2 {
                        row[k] = row[k].max(prev[k]);
                    } else if k < LEVELS / 2 {
                        row[k] = row[k].min(prev[k]);
                    }
                }
            }
            rows.push(row);
        }
        (!rows.is_empty()).then_some(Self {
            rows,
            samples,
            one_step_scale,
            scale,
        })
    }

    /// The relative error at quantile `q` for `h` steps ahead (h beyond the table uses its last row).
    pub fn quantile(&self, h: usize, q: f64) -> f64 {
        let row = &self.rows[h.clamp(1, self.rows.len()) - 1];
        let x = (q * 100.0 - 1.0).clamp(0.0, (LEVELS - 1) as f64);
        let k = x.floor() as usize;
        let frac = x - k as f64;
        let at = |k: usize| f64::from(row[k]);
        if k + 1 < LEVELS {
            at(k) + (at(k + 1) - at(k)) * frac
        } else {
            at(k)
        }
    }

    /// Number of horizons in the table.
    #[cfg(test)]
    pub fn horizons(&self) -> usize {
        self.rows.len()
    }
}

/// One holdout model and the origins it is replayed from.
pub(crate) struct Fold<'a> {
    /// The holdout model's baseline at every native slot.
    pub base: &'a [f64],
    /// Origins replayed: from the first slot the holdout model did not see, up to (not including) `end`.
    pub first_origin: usize,
    /// End of the origins (the next fold's first origin, or the number of slots).
    pub end: usize,
}

/// The out-of-sample replay the calibration runs on.
pub(crate) struct Replay<'a> {
    /// Native samples, `None` for gaps.
    pub y: &'a [Option<f64>],
    /// Holdout models, each replayed over its own stretch of origins.
    pub folds: &'a [Fold<'a>],
    /// The error scale (errors are divided by `scale.of(point)`).
    pub scale: Scale,
    /// Longest horizon to calibrate, in steps.
    pub horizon: usize,
    /// Horizons (1 to this, in steps) the correction is chosen on and the mean absolute error is taken over: those
    /// a plan reads ([`super::ForecastSettings::decision`]).
    pub scored: usize,
    /// The folds' baselines are zero (the recent level alone): the correction then persists undamped, since a
    /// level that fades with the horizon would forecast demand falling to nothing.
    pub level_only: bool,
}

/// What a calibration learnt: the correction, the error table, and how well the point forecast did.
#[derive(Debug, Clone)]
pub(crate) struct Calibration {
    pub correction: Correction,
    pub table: ErrorTable,
    /// Mean absolute error of the point forecast over every replayed origin, at the horizons a plan reads
    /// ([`Replay::scored`]), in demand units: how two models replayed over the same origins compare.
    pub mae: f64,
}

impl Replay<'_> {
    /// Chooses the correction and builds the error table. `None` when there are no out-of-sample errors.
    pub fn calibrate(&self) -> Option<Calibration> {
        let horizon = self.horizon.clamp(1, MAX_CALIBRATION_HORIZON);
        let dampings: &[f64] = if self.level_only { &[1.0] } else { &DAMPINGS };
        let grid: Vec<Correction> = dampings
            .iter()
            .flat_map(|&damping| {
                let half_lives: &[f64] = if damping == 0.0 { &[1.0] } else { &HALF_LIVES };
                half_lives
                    .iter()
                    .map(move |&half_life| Correction { half_life, damping })
            })
            .collect();
        // Each candidate replays every origin: side by side, then compared in grid order (the first of equals wins).
        let reads = self.scored.clamp(1, horizon);
        let scored = parallel::map(&grid, |&c| self.absolute_error(c, reads));
        let mut best: Option<(f64, Correction)> = None;
        for (&c, (sum, n)) in grid.iter().zip(scored) {
            if n == 0 {
                return None;
            }
            let mae = sum / n as f64;
            if best.is_none_or(|(b, _)| mae < b) {
                best = Some((mae, c));
            }
        }
        let (mae, correction) = best?;
        let mut raw = vec![Vec::new(); horizon];
        self.each_error(correction, horizon, |h, y, point| raw[h - 1].push((y - point, point)));
        let scale = self.scale.with_power(self.power(&raw));
        let errors = raw
            .iter()
            .map(|row| row.iter().map(|&(e, point)| e / scale.of(point)).collect())
            .collect();
        ErrorTable::from_errors(errors, scale).map(|table| Calibration { correction, table, mae })
    }

    /// The power of the error scale under which errors below and above the reference level are most alike (median
    /// absolute scaled error, compared as a ratio); relative error (1) when either side has too few errors.
    fn power(&self, raw: &[Vec<(f64, f64)>]) -> f64 {
        let reference = self.scale.reference;
        let (low, high): (Vec<&(f64, f64)>, Vec<_>) = raw.iter().flatten().partition(|(_, p)| *p < reference);
        if low.len() < MIN_ERRORS || high.len() < MIN_ERRORS {
            return 1.0;
        }
        let median = |side: &[&(f64, f64)], scale: Scale| {
            let mut v: Vec<f64> = side.iter().map(|&&(e, p)| (e / scale.of(p)).abs()).collect();
            v.sort_by(f64::total_cmp);
            percentile(&v, 0.5)
        };
        let medians = parallel::map(&POWERS, |&power| {
            let scale = self.scale.with_power(power);
            (median(&low, scale), median(&high, scale))
        });
        let mut best = (f64::INFINITY, 1.0);
        for (power, (a, b)) in POWERS.into_iter().zip(medians) {
            if !(a > 0.0 && b > 0.0) {
                return 1.0;
            }
            let mismatch = (a / b).ln().abs();
            // Earlier powers win ties: relative error unless the data says otherwise.
            if mismatch < best.0 - 1e-9 {
                best = (mismatch, power);
            }
        }
        best.1
    }

    fn absolute_error(&self, c: Correction, horizon: usize) -> (f64, usize) {
        let (mut sum, mut n) = (0.0, 0);
        self.each_error(c, horizon, |_, y, point| {
            sum += (y - point).abs();
            n += 1;
        });
        (sum, n)
    }

    /// Calls `f(h, actual, point)` for every origin and horizon with an actual sample.
    fn each_error(&self, c: Correction, horizon: usize, mut f: impl FnMut(usize, f64, f64)) {
        let n = self.y.len();
        let window = c.window();
        let decay = 0.5f64.powf(1.0 / c.half_life);
        // Running weighted sums equal `Correction::level` over the trailing window up to rounding; the window
        // cut-off is applied by subtracting the slot that leaves it.
        let cut = decay.powi(window as i32);
        // `c.shift(level, h)` is `level × damping^h`: the powers once, not at every origin.
        let damped: Vec<f64> = (0..=horizon).map(|h| c.shift(1.0, h)).collect();
        for fold in self.folds {
            let base = fold.base;
            let from = fold.first_origin.saturating_sub(window);
            let (mut s, mut w) = (0.0, 0.0);
            for o in from..fold.end.min(n) {
                if o >= fold.first_origin {
                    let level = if w > 1e-9 { s / w } else { 0.0 };
                    for h in 1..=horizon.min(n - o) {
                        if let Some(y) = self.y[o + h - 1] {
                            let point = (base[o + h - 1] + level * damped[h]).max(0.0);
                            f(h, y, point);
                        }
                    }
                }
                s *= decay;
                w *= decay;
                if let Some(y) = self.y[o] {
                    s += y - base[o];
                    w += 1.0;
                }
                if o >= from + window {
                    if let Some(y) = self.y[o - window] {
                        s -= cut * (y - base[o - window]);
                        w -= cut;
                    }
                }
            }
        }
    }
}

/// The standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9).
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relative() -> Scale {
        Scale {
            floor: 1.0,
            reference: 100.0,
            power: 1.0,
        }
    }

    #[test]
    fn normal_quantile_matches_tables() {
        assert!((normal_quantile(0.9) - 1.281_551_6).abs() < 1e-6);
        assert!((normal_quantile(0.05) + 1.644_853_6).abs() < 1e-6);
        assert!(normal_quantile(0.5).abs() < 1e-9);
    }

    #[test]
    fn table_interpolates_and_widens_with_horizon() {
        let h1: Vec<f64> = (0..=100).map(|i| (i as f64 - 50.0) / 100.0).collect(); // uniform −0.5..0.5
        let h2: Vec<f64> = (0..=100).map(|i| (i as f64 - 50.0) / 200.0).collect(); // narrower: must not shrink
        let t = ErrorTable::from_errors(vec![h1, h2, vec![1.0]], relative()).unwrap();
        // Rows are f32: seven significant digits.
        assert!((t.quantile(1, 0.9) - 0.4).abs() < 1e-7);
        assert!((t.quantile(1, 0.5)).abs() < 1e-7);
        assert!((t.quantile(1, 0.105) + 0.395).abs() < 1e-7);
        assert_eq!(t.quantile(2, 0.9), t.quantile(1, 0.9));
        assert!(t.quantile(2, 0.5).abs() < 1e-7);
        assert_eq!(t.horizons(), 3);
        assert_eq!(
            t.quantile(3, 0.9),
            t.quantile(2, 0.9),
            "a horizon with too few errors borrows the previous row"
        );
        assert_eq!(t.quantile(50, 0.9), t.quantile(3, 0.9));
        assert!(ErrorTable::from_errors(vec![vec![0.0; 5]], relative()).is_none());
    }

    #[test]
    fn correction_level_weights_recent_residuals() {
        let c = Correction {
            half_life: 1.0,
            damping: 0.5,
        };
        let level = c.level([(0, 4.0), (1, 1.0)].into_iter());
        // weights 1 and 0.5
        assert!((level - 3.0).abs() < 1e-12);
        assert!((c.shift(level, 2) - 0.75).abs() < 1e-12);
        assert_eq!(c.level(std::iter::empty()), 0.0);
    }

    #[test]
    fn the_recent_level_alone_is_never_damped_towards_nothing() {
        // Demand falling steadily: a correction damped towards a zero baseline would cut the level's lag, and
        // forecast demand vanishing a few hours on.
        let n = 400;
        let base = vec![0.0; n];
        let y: Vec<Option<f64>> = (0..n).map(|i| Some(200.0 - 0.4 * i as f64)).collect();
        let folds = [Fold {
            base: &base,
            first_origin: 200,
            end: n,
        }];
        let replay = |level_only| Replay {
            y: &y,
            folds: &folds,
            scale: relative(),
            horizon: 30,
            scored: 30,
            level_only,
        };
        assert!(replay(false).calibrate().unwrap().correction.damping < 1.0);
        assert_eq!(replay(true).calibrate().unwrap().correction.damping, 1.0);
    }

    #[test]
    fn the_correction_is_chosen_for_the_horizons_a_plan_reads() {
        // The model misses a ±10 swing that flips every 20 steps: a step or three ahead the latest residual
        // persists, twenty ahead it has as often flipped.
        let n = 400;
        let base = vec![100.0; n];
        let y: Vec<Option<f64>> = (0..n)
            .map(|i| Some(100.0 + if (i / 20) % 2 == 0 { 10.0 } else { -10.0 }))
            .collect();
        let folds = [Fold {
            base: &base,
            first_origin: 200,
            end: n,
        }];
        let chosen = |scored| {
            Replay {
                y: &y,
                folds: &folds,
                scale: relative(),
                horizon: 20,
                scored,
                level_only: false,
            }
            .calibrate()
            .unwrap()
        };
        let (near, far) = (chosen(3), chosen(20));
        assert_eq!(near.correction.damping, 1.0, "{:?}", near.correction);
        assert!(far.correction.damping <= 0.9, "{:?}", far.correction);
        assert!(near.mae < far.mae / 2.0, "{} vs {}", near.mae, far.mae);
        // Either way the table covers every horizon to the next refit.
        assert_eq!((near.table.horizons(), far.table.horizons()), (20, 20));
    }

    #[test]
    fn replay_learns_a_persistent_offset_and_its_spread() {
        // Baseline misses a level shift of +10 in the last part; noise ±1 alternating.
        let n = 400;
        let base = vec![100.0; n];
        let y: Vec<Option<f64>> = (0..n)
            .map(|i| Some(100.0 + if i >= 200 { 10.0 } else { 0.0 } + if i % 2 == 0 { 1.0 } else { -1.0 }))
            .collect();
        let replay = Replay {
            y: &y,
            folds: &[Fold {
                base: &base,
                first_origin: 200,
                end: n,
            }],
            scale: relative(),
            horizon: 3,
            scored: 3,
            level_only: false,
        };
        let Calibration {
            correction: c, table, ..
        } = replay.calibrate().unwrap();
        assert!(
            c.damping >= 0.97,
            "a persistent shift needs a persistent correction, got {c:?}"
        );
        // With the shift learnt, the remaining error is the ±1 noise, i.e. about ±1% of 110.
        assert!(table.quantile(1, 0.95) < 0.03, "{}", table.quantile(1, 0.95));
        assert!(table.quantile(1, 0.05) > -0.03);
    }
    /// Demand alternating between a trough of 10 and a peak of 100 (mean 55) around a perfect baseline, with noise
    /// of `size(level)` in a fixed ±pattern; the calibration's chosen power and its q90 band at both levels.
    fn calibrated(size: impl Fn(f64) -> f64) -> (f64, f64, f64) {
        let n = 800;
        let base: Vec<f64> = (0..n).map(|i| if (i / 20) % 2 == 0 { 10.0 } else { 100.0 }).collect();
        let y: Vec<Option<f64>> = (0..n)
            .map(|i| Some(base[i] + size(base[i]) * if (i * 7) % 5 < 2 { 1.0 } else { -0.75 }))
            .collect();
        let replay = Replay {
            y: &y,
            folds: &[Fold {
                base: &base,
                first_origin: 400,
                end: n,
            }],
            scale: Scale {
                floor: 5.5,
                reference: 55.0,
                power: 1.0,
            },
            horizon: 1,
            scored: 1,
            level_only: false,
        };
        let Calibration { table, .. } = replay.calibrate().unwrap();
        let band = |level: f64| table.scale.of(level) * table.quantile(1, 0.9);
        (table.scale.power, band(10.0), band(100.0))
    }

    #[test]
    fn the_error_scale_grows_with_the_level_as_the_errors_do() {
        // Multiplicative noise (±5%): relative errors.
        let (power, trough, peak) = calibrated(|level| 0.05 * level);
        assert_eq!(power, 1.0);
        assert!(
            (trough - 0.5).abs() < 0.05 && (peak - 5.0).abs() < 0.5,
            "{trough} {peak}"
        );
        // Counting noise (±0.5·sqrt(level): 16% at the trough, 5% at the peak). Relative errors pooled over both
        // would give the peak a band of ±16; the square-root scale gives each level its own.
        let (power, trough, peak) = calibrated(|level| 0.5 * level.sqrt());
        assert_eq!(power, 0.5);
        assert!(
            (trough - 1.58).abs() < 0.15 && (peak - 5.0).abs() < 0.5,
            "{trough} {peak}"
        );
        // The same noise at every level: absolute errors.
        let (power, trough, peak) = calibrated(|_| 2.0);
        assert_eq!(power, 0.0);
        assert!(
            (trough - 2.0).abs() < 0.2 && (peak - 2.0).abs() < 0.2,
            "{trough} {peak}"
        );
        let s = Scale {
            floor: 5.5,
            reference: 55.0,
            power: 0.5,
        };
        assert!((s.of(100.0) - 5500f64.sqrt()).abs() < 1e-12);
        assert!((s.of(0.0) - (5.5f64 * 55.0).sqrt()).abs() < 1e-12, "the floor applies");
    }
}
