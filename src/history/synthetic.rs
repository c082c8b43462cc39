//! The built-in demand generator: realistic, deterministic demand for demos and tests.
//!
//! Demand is a pure function of (profile, seed, wall time), so the generator needs no state, any window can be
//! fetched at any moment, and "now" moves like a live system. Shapes: daily and weekly cycles, a business-hours
//! ramp, a scheduled spike, multiplicative noise and occasional collection gaps.

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc, Weekday};
use serde::{Deserialize, Serialize};

use crate::history::{align_down, Fetch, History};
use crate::series::Series;

/// A named demand shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// LLM chat: evening peak, quieter weekends, a daily product-launch spike at 14:00 UTC.
    LlmChat,
    /// Web frontend: business-hours ramp on weekdays with a lunch dip.
    WebFrontend,
    /// Embedding batch: low background with a nightly batch at 01:00 UTC.
    Embeddings,
}

impl Profile {
    /// Every profile, in demo order.
    pub const ALL: [Profile; 3] = [Profile::LlmChat, Profile::WebFrontend, Profile::Embeddings];

    /// The profile's name as written in configs.
    pub fn name(self) -> &'static str {
        match self {
            Profile::LlmChat => "llm-chat",
            Profile::WebFrontend => "web-frontend",
            Profile::Embeddings => "embeddings",
        }
    }

    /// The noise-free demand (units/s) at `t`.
    pub fn mean_at(self, t: DateTime<Utc>) -> f64 {
        let hour = t.hour() as f64 + t.minute() as f64 / 60.0 + t.second() as f64 / 3600.0;
        let weekend = matches!(t.weekday(), Weekday::Sat | Weekday::Sun);
        let daily = |peak_hour: f64, depth: f64| {
            let phase = (hour - peak_hour) / 24.0 * std::f64::consts::TAU;
            1.0 - depth * (1.0 - phase.cos()) / 2.0
        };
        match self {
            Profile::LlmChat => {
                let base = 120.0 * daily(19.0, 0.75) * if weekend { 0.7 } else { 1.0 };
                let spike = bump(hour, 14.0, 14.5, 0.05) * 90.0;
                base + spike
            }
            Profile::WebFrontend => {
                let ramp = if weekend {
                    0.0
                } else {
                    smoothstep(7.5, 9.5, hour) * (1.0 - smoothstep(17.0, 19.0, hour))
                };
                let lunch = 1.0 - 0.25 * bump(hour, 12.0, 13.0, 0.25);
                (40.0 + 360.0 * ramp * lunch) * daily(15.0, 0.3)
            }
            Profile::Embeddings => {
                let batch = bump(hour, 1.0, 1.75, 0.1);
                25.0 * daily(13.0, 0.4) + 400.0 * batch
            }
        }
    }
}

/// 0 below `a`, 1 above `b`, smooth in between.
fn smoothstep(a: f64, b: f64, x: f64) -> f64 {
    let u = ((x - a) / (b - a)).clamp(0.0, 1.0);
    u * u * (3.0 - 2.0 * u)
}

/// 1 inside `[from, to]` hours, with `edge`-hour ramps on both sides.
fn bump(hour: f64, from: f64, to: f64, edge: f64) -> f64 {
    smoothstep(from - edge, from, hour) * (1.0 - smoothstep(to, to + edge, hour))
}

/// SplitMix64: a tiny, well-mixed hash so demand is a pure function of (seed, slot).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A generated workload: a profile, a seed, a scale and a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generator {
    /// The demand shape.
    pub profile: Profile,
    /// Seed for noise and gaps.
    pub seed: u64,
    /// Multiplier on the profile's demand.
    pub scale: f64,
    /// Sample spacing.
    #[serde(skip, default = "default_step")]
    pub step: TimeDelta,
}

fn default_step() -> TimeDelta {
    TimeDelta::minutes(1)
}

impl Generator {
    /// A generator with unit scale and 1-minute steps.
    pub fn new(profile: Profile, seed: u64) -> Self {
        Self {
            profile,
            seed,
            scale: 1.0,
            step: default_step(),
        }
    }

    /// Demand for the slot starting at `t`, or `None` when the slot falls in a collection gap.
    pub fn sample(&self, t: DateTime<Utc>) -> Option<f64> {
        let slot = t.timestamp().div_euclid(self.step.num_seconds().max(1)) as u64;
        let salt = self.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ self.profile as u64;
        // Gaps: about one 5–20-slot outage per ~3 days of 1-minute slots, plus rare single lost scrapes.
        let block = slot / 32;
        let g = mix(salt ^ block.wrapping_mul(0xA24B_AED4_963E_E407));
        if g % 140 == 0 && slot % 32 < 5 + (g >> 32) % 16 {
            return None;
        }
        if mix(salt ^ slot ^ 0x5555) % 500 == 0 {
            return None;
        }
        // Noise: a sum of uniforms is close enough to normal, and stays bounded.
        let n: f64 = (0..4)
            .map(|k| unit(mix(salt ^ slot.wrapping_mul(4).wrapping_add(k))))
            .sum::<f64>()
            - 2.0;
        let mean = self.profile.mean_at(t) * self.scale;
        Some((mean * (1.0 + 0.08 * n)).max(0.0))
    }
}

impl History for Generator {
    fn step(&self) -> TimeDelta {
        self.step
    }

    fn fetch(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Fetch<'_> {
        let step = self.step;
        let first = align_down(from, step);
        let first = if first < from { first + step } else { first };
        let mut out = Series::empty(first, step);
        let mut t = first;
        while t + step <= to {
            if let Some(v) = self.sample(t) {
                out.insert(t, v);
            }
            t += step;
        }
        out.pad_to(t);
        Box::pin(std::future::ready(Ok(out)))
    }

    fn describe(&self) -> String {
        format!("generator {} (seed {})", self.profile.name(), self.seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[tokio::test]
    async fn deterministic_by_seed_and_time() {
        let g = Generator::new(Profile::LlmChat, 7);
        let a = g
            .fetch(at("2026-03-02T00:00:00Z"), at("2026-03-03T00:00:00Z"))
            .await
            .unwrap();
        let b = g
            .fetch(at("2026-03-02T00:00:00Z"), at("2026-03-03T00:00:00Z"))
            .await
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 1440);
        let other = Generator::new(Profile::LlmChat, 8);
        assert_ne!(
            a,
            other
                .fetch(at("2026-03-02T00:00:00Z"), at("2026-03-03T00:00:00Z"))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn shapes_have_cycles_spikes_and_gaps() {
        let g = Generator::new(Profile::LlmChat, 1);
        let week = g
            .fetch(at("2026-03-02T00:00:00Z"), at("2026-03-09T00:00:00Z"))
            .await
            .unwrap();
        let missing = week.missing();
        assert!(missing > 0 && missing < week.len() / 50, "some but few gaps: {missing}");
        let mean = |from: &str, to: &str| week.window(at(from), at(to)).points().map(|p| p.1).sum::<f64>() / 60.0;
        let evening = mean("2026-03-03T19:00:00Z", "2026-03-03T20:00:00Z");
        let night = mean("2026-03-03T07:00:00Z", "2026-03-03T08:00:00Z");
        assert!(evening > 2.5 * night, "daily cycle: evening {evening} vs night {night}");
        let spike = mean("2026-03-03T14:00:00Z", "2026-03-03T14:30:00Z") * 2.0;
        assert!(
            spike > mean("2026-03-03T13:00:00Z", "2026-03-03T14:00:00Z") * 1.5,
            "scheduled spike"
        );
        let weekday = mean("2026-03-04T19:00:00Z", "2026-03-04T20:00:00Z");
        let saturday = mean("2026-03-07T19:00:00Z", "2026-03-07T20:00:00Z");
        assert!(saturday < 0.8 * weekday, "weekly cycle: {saturday} vs {weekday}");
        assert!(week.points().all(|(_, v)| v.is_finite() && v >= 0.0));
    }
}
