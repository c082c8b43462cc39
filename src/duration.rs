//! Durations as people write them in settings and on the command line: `500ms`, `30s`, `5m`, `1h30m`, `14d`, `1w`.
//!
//! One type for every setting ([`Duration`]: [`FromStr`], [`Display`](fmt::Display), serde as a string), so that the
//! workload file, the Prometheus settings and the command line read the same strings the same way and print what
//! they read back in the form they accept. Units: `ms`, `s`, `m`, `h`, `d` (24 h) and `w` (7 d), integers only,
//! combined largest first or in any order (`1h30m`, `90s`). Negative durations cannot be written.

use std::fmt;
use std::str::FromStr;

use chrono::TimeDelta;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative span of time, millisecond resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(TimeDelta);

/// What is wrong with a duration's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDurationError {
    /// Nothing was written.
    #[error("empty duration; {HINT}")]
    Empty,
    /// Something other than digits followed by units.
    #[error("`{0}` is not a duration; {HINT}")]
    Malformed(String),
    /// A number with no unit after it (`5`: five what?).
    #[error("`{0}` has no unit; {HINT}")]
    NoUnit(String),
    /// A unit that is not one of `ms s m h d w`.
    #[error("`{input}` has unknown unit `{unit}`; {HINT}")]
    UnknownUnit {
        /// The text read (shortened when long).
        input: String,
        /// The unit found.
        unit: String,
    },
    /// More than a duration can hold.
    #[error("`{0}` is too long")]
    TooLong(String),
}

const HINT: &str = "write a duration like 30s, 5m, 1h30m, 14d or 1w (or milliseconds like 500ms)";

/// The input as an error repeats it: at most 40 characters, so that a huge value does not come back doubled.
fn quoted(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

impl From<ParseDurationError> for String {
    fn from(e: ParseDurationError) -> Self {
        e.to_string()
    }
}

impl Duration {
    /// The span as chrono's type.
    pub fn as_delta(self) -> TimeDelta {
        self.0
    }

    /// The span as the standard library's type (durations are never negative).
    pub fn to_std(self) -> std::time::Duration {
        self.0.to_std().unwrap_or_default()
    }
}

impl From<Duration> for TimeDelta {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl From<TimeDelta> for Duration {
    /// A negative span becomes zero: durations in settings are never negative.
    fn from(d: TimeDelta) -> Self {
        Duration(d.max(TimeDelta::zero()))
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX))
    }
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let s = text.trim();
        if s.is_empty() {
            return Err(ParseDurationError::Empty);
        }
        let too_long = || ParseDurationError::TooLong(quoted(s));
        let mut total = TimeDelta::zero();
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(ParseDurationError::Malformed(quoted(s)));
            }
            let n: i64 = rest[..digits].parse().map_err(|_| too_long())?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            if unit_len == 0 {
                return Err(if rest.is_empty() {
                    ParseDurationError::NoUnit(quoted(s))
                } else {
                    ParseDurationError::Malformed(quoted(s))
                });
            }
            let unit = match &rest[..unit_len] {
                "ms" => TimeDelta::milliseconds(1),
                "s" => TimeDelta::seconds(1),
                "m" => TimeDelta::minutes(1),
                "h" => TimeDelta::hours(1),
                "d" => TimeDelta::days(1),
                "w" => TimeDelta::weeks(1),
                other => {
                    return Err(ParseDurationError::UnknownUnit {
                        input: quoted(s),
                        unit: quoted(other),
                    })
                }
            };
            rest = &rest[unit_len..];
            let n = i32::try_from(n).map_err(|_| too_long())?;
            let part = unit.checked_mul(n).ok_or_else(too_long)?;
            total = total.checked_add(&part).ok_or_else(too_long)?;
        }
        Ok(Duration(total))
    }
}

impl fmt::Display for Duration {
    /// The shortest form that reads back the same: `1h30m`, `500ms`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.num_milliseconds();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, n) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
            ("ms", 1),
        ] {
            if ms >= n {
                write!(f, "{}{unit}", ms / n)?;
                ms %= n;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a duration's text looks like in a schema (the PredictiveAutoscaler CRD): digits and a unit, repeated, with no
/// spaces. [`Duration`]'s parser reads the same, and trims surrounding spaces besides.
pub const PATTERN: &str = "^([0-9]+(ms|s|m|h|d|w))+$";

/// The longest duration text a schema admits: far past any duration a setting allows, and short enough that the
/// API server's CEL cost estimate for a rule reading it stays small.
pub const MAX_LENGTH: u32 = 32;

impl schemars::JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": PATTERN,
            "maxLength": MAX_LENGTH,
        })
    }
}

/// Reads a duration as chrono's type.
pub fn parse(s: &str) -> Result<TimeDelta, ParseDurationError> {
    s.parse::<Duration>().map(TimeDelta::from)
}

/// Writes a span the way [`parse`] reads it (`1h30m`); a negative span is written as `0s`.
pub fn format(d: TimeDelta) -> String {
    Duration::from(d).to_string()
}

/// serde for a [`std::time::Duration`] field written as a duration string (`#[serde(with = "crate::duration::std_serde")]`).
pub mod std_serde {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Duration;

    /// Reads the field.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
        Duration::deserialize(d).map(Duration::to_std)
    }

    /// Writes the field.
    pub fn serialize<S: Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        Duration::from(*d).serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_unit_and_combinations() {
        for (s, ms) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("90s", 90_000),
            ("14d", 14 * 86_400_000),
            ("1w", 7 * 86_400_000),
            ("1m30s250ms", 90_250),
            (" 15s ", 15_000),
            ("0s", 0),
        ] {
            assert_eq!(parse(s).unwrap(), TimeDelta::milliseconds(ms), "{s}");
        }
    }

    #[test]
    fn writes_what_it_reads() {
        for s in ["500ms", "30s", "5m", "1h30m", "14d", "1d1h1m1s1ms", "0s"] {
            assert_eq!(s.parse::<Duration>().unwrap().to_string(), s);
        }
        assert_eq!(format(TimeDelta::seconds(90)), "1m30s");
        assert_eq!(format(TimeDelta::weeks(1)), "7d");
        assert_eq!(format(TimeDelta::seconds(-5)), "0s");
    }

    #[test]
    fn errors_say_what_is_wrong_and_how_to_write_it() {
        assert_eq!(parse(""), Err(ParseDurationError::Empty));
        assert_eq!(parse("5"), Err(ParseDurationError::NoUnit("5".into())));
        assert_eq!(parse("soon"), Err(ParseDurationError::Malformed("soon".into())));
        assert_eq!(parse("-5s"), Err(ParseDurationError::Malformed("-5s".into())));
        assert_eq!(parse("1.5h"), Err(ParseDurationError::Malformed("1.5h".into())));
        assert!(matches!(parse("5y"), Err(ParseDurationError::UnknownUnit { unit, .. }) if unit == "y"));
        assert!(matches!(parse("99999999999999w"), Err(ParseDurationError::TooLong(_))));
        assert!(matches!(parse("3000000000w"), Err(ParseDurationError::TooLong(_))));
        let message = parse("5").unwrap_err().to_string();
        assert!(
            message.contains("has no unit") && message.contains("30s, 5m"),
            "{message}"
        );
    }

    #[test]
    fn a_huge_input_is_not_echoed_whole() {
        let huge = "x".repeat(50_000);
        let message = parse(&huge).unwrap_err().to_string();
        assert!(message.len() < 300, "{} bytes", message.len());
        assert!(message.contains('…'));
    }

    #[test]
    fn serde_reads_and_writes_strings() {
        #[derive(Serialize, Deserialize)]
        struct S {
            #[serde(with = "std_serde")]
            timeout: std::time::Duration,
            every: Duration,
        }
        let s: S = serde_json::from_str(r#"{"timeout": "250ms", "every": "1h30m"}"#).unwrap();
        assert_eq!(s.timeout, std::time::Duration::from_millis(250));
        assert_eq!(s.every.as_delta(), TimeDelta::minutes(90));
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"timeout":"250ms","every":"1h30m"}"#
        );
        let err = serde_json::from_str::<S>(r#"{"timeout": "5", "every": "1h"}"#)
            .err()
            .unwrap();
        assert!(err.to_string().contains("has no unit"), "{err}");
    }
}
