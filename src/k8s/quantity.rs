//! Kubernetes `resource.Quantity` strings: canonical output from `f64`, and the HPA's reading of any input.
//!
//! The HPA reads every served value with `MilliValue()`: the quantity rounded up (away from zero) to whole
//! thousandths. [`format()`] therefore works on the shortest round-trip decimal digits of the `f64` (never on
//! `x * 1000.0` in binary floating point, where `4.35 * 1000.0` is `4350.000000000001`), quantizes up to milli,
//! and writes the canonical form apimachinery would write: the exponent lowered to a multiple of three with a
//! decimal SI suffix (`1500m`, `12`, `1k`, `1500k`).
//!
//! [`parse_milli`] reads any Quantity string (decimal SI suffixes, binary `Ki..Ei`, or `e`/`E` exponents) the way
//! apimachinery's `ParseQuantity(s).MilliValue()` does, with exact decimal arithmetic.

use thiserror::Error;

/// Why a value cannot be written as, or read from, a Quantity.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityError {
    /// NaN or an infinity was asked to be served.
    #[error("cannot express the non-finite value {0} as a Kubernetes quantity")]
    NotFinite(String),
    /// The value's milli-value does not fit in an int64 (|value| above about 9.22e15).
    #[error("quantity {0} is too large: its milli-value overflows int64 (the limit is about 9.22e15)")]
    Overflow(String),
    /// The string is empty.
    #[error("empty string is not a quantity (expected e.g. \"1500m\", \"12\", \"1Ki\")")]
    Empty,
    /// The string does not match `[+-]digits[.digits][suffix]`.
    #[error(
        "quantity {0:?} does not match the format [+-]<number>[suffix] (e.g. \"1500m\", \"1.5\", \"2Gi\", \"1e3\")"
    )]
    Format(String),
    /// The suffix is not one of `n u m k M G T P E`, `Ki..Ei`, or an exponent `e<int>`/`E<int>`.
    #[error(
        "quantity {input:?} has the unknown suffix {suffix:?} (known: n u m k M G T P E, Ki Mi Gi Ti Pi Ei, e<int>)"
    )]
    Suffix {
        /// The whole input.
        input: String,
        /// The offending suffix.
        suffix: String,
    },
}

/// Largest milli-value apimachinery's `MilliValue()` can return.
const MAX_MILLI: u128 = i64::MAX as u128;

/// The canonical Quantity string of `v`, quantized up (away from zero) to whole milli units.
///
/// Nonzero magnitudes below `1m` are the exception: they keep nano precision (rounded up, as apimachinery stores
/// them) and read as `100u` for `1e-4` rather than a `1m` that hides how small they are. Their `MilliValue()` is `1`
/// either way, so what the HPA computes never depends on the exception.
///
/// Errors on NaN/±Inf and on magnitudes whose milli-value overflows int64.
///
/// ```
/// assert_eq!(prescale::k8s::quantity::format(4.35).unwrap(), "4350m");
/// assert_eq!(prescale::k8s::quantity::format(1.5e6).unwrap(), "1500k");
/// ```
pub fn format(v: f64) -> Result<String, QuantityError> {
    if !v.is_finite() {
        return Err(QuantityError::NotFinite(v.to_string()));
    }
    // `{:e}` prints the shortest digits that round-trip, e.g. "-4.35e0" or "1e-4".
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').ok_or_else(|| QuantityError::Format(sci.clone()))?;
    let exp: i64 = exp.parse().map_err(|_| QuantityError::Format(sci.clone()))?;
    let negative = mantissa.starts_with('-');
    let mantissa = mantissa.trim_start_matches('-');
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // At most 17 significant digits: fits u128 with room for the scaling below.
    let digits: u128 = format!("{int}{frac}")
        .parse()
        .map_err(|_| QuantityError::Format(sci.clone()))?;
    if digits == 0 {
        return Ok("0".to_owned());
    }
    let exp10 = exp - frac.len() as i64;

    let overflow = || QuantityError::Overflow(v.to_string());
    let (milli, inexact) = scale(digits, exp10 + 3).ok_or_else(overflow)?;
    let (mut m, mut e) = if milli >= 1 {
        let milli = milli + u128::from(inexact);
        if milli > MAX_MILLI {
            return Err(overflow());
        }
        (milli, -3i64)
    } else {
        // Below one milli: keep nano precision, rounded up.
        let (nano, inexact) = scale(digits, exp10 + 9).ok_or_else(overflow)?;
        (nano + u128::from(inexact), -9)
    };
    while m % 10 == 0 {
        m /= 10;
        e += 1;
    }
    while e.rem_euclid(3) != 0 {
        m *= 10;
        e -= 1;
    }
    let suffix = match e {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        18 => "E",
        // Unreachable: the milli-value fits int64, so the exponent lies in -9..=15.
        _ => return Err(QuantityError::Overflow(v.to_string())),
    };
    Ok(format!("{}{m}{suffix}", if negative { "-" } else { "" }))
}

/// `digits * 10^k` truncated to an integer, and whether the truncation dropped a nonzero fraction.
/// `None` when the result does not fit in a u128.
fn scale(digits: u128, k: i64) -> Option<(u128, bool)> {
    if k >= 0 {
        let p = 10u128.checked_pow(u32::try_from(k).ok()?)?;
        Some((digits.checked_mul(p)?, false))
    } else {
        match u32::try_from(-k).ok().and_then(|k| 10u128.checked_pow(k)) {
            Some(p) => Some((digits / p, digits % p != 0)),
            // 10^-k exceeds u128 > digits: nothing but a fraction.
            None => Some((0, digits != 0)),
        }
    }
}

/// The pieces of a Quantity string, split exactly as apimachinery's `parseQuantityString` does.
struct Parts<'a> {
    negative: bool,
    /// Integer digits without leading zeros (may be empty).
    num: &'a str,
    /// Fraction digits (may be empty).
    denom: &'a str,
    suffix: &'a str,
}

fn split(s: &str) -> Result<Parts<'_>, QuantityError> {
    let b = s.as_bytes();
    let end = b.len();
    let mut pos = 0;
    let mut negative = false;
    match b.first() {
        Some(b'-') => {
            negative = true;
            pos += 1;
        }
        Some(b'+') => pos += 1,
        _ => {}
    }
    while pos < end && b[pos] == b'0' {
        pos += 1;
    }
    let num_start = pos;
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let num = &s[num_start..pos];
    let mut denom = "";
    if pos < end && b[pos] == b'.' {
        pos += 1;
        let start = pos;
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        denom = &s[start..pos];
    }
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < end && (b[pos] == b'-' || b[pos] == b'+') {
        pos += 1;
    }
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos != end {
        return Err(QuantityError::Format(s.to_owned()));
    }
    Ok(Parts {
        negative,
        num,
        denom,
        suffix: &s[suffix_start..],
    })
}

/// Base and exponent of a suffix: `(10, e)` for decimal suffixes and exponents, `(2, e)` for binary ones.
fn interpret(suffix: &str) -> Option<(u32, i64)> {
    let decimal = |e| Some((10, e));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => Some((2, 10)),
        "Mi" => Some((2, 20)),
        "Gi" => Some((2, 30)),
        "Ti" => Some((2, 40)),
        "Pi" => Some((2, 50)),
        "Ei" => Some((2, 60)),
        s if s.len() > 1 && (s.starts_with('e') || s.starts_with('E')) => {
            // apimachinery keeps the exponent as an int32.
            let e: i32 = s[1..].parse().ok()?;
            decimal(i64::from(e))
        }
        _ => None,
    }
}

/// `ParseQuantity(s).MilliValue()`: the value in thousandths, rounded up away from zero.
///
/// Accepts everything apimachinery accepts: an optional sign, digits with an optional fraction, and a decimal SI
/// suffix (`n u m k M G T P E`), a binary one (`Ki Mi Gi Ti Pi Ei`) or an exponent (`e3`, `E-2`). Errors when the
/// milli-value does not fit in an int64.
///
/// ```
/// assert_eq!(prescale::k8s::quantity::parse_milli("1500001u").unwrap(), 1501);
/// assert_eq!(prescale::k8s::quantity::parse_milli("1Ki").unwrap(), 1_024_000);
/// ```
pub fn parse_milli(s: &str) -> Result<i64, QuantityError> {
    if s.is_empty() {
        return Err(QuantityError::Empty);
    }
    let parts = split(s)?;
    let (base, exponent) = interpret(parts.suffix).ok_or_else(|| QuantityError::Suffix {
        input: s.to_owned(),
        suffix: parts.suffix.to_owned(),
    })?;

    // Exact decimal arithmetic on the digit string: value = digits * 10^k * 2^b, in milli units.
    let mut digits: Vec<u8> = parts.num.bytes().chain(parts.denom.bytes()).map(|c| c - b'0').collect();
    let first_nonzero = digits.iter().position(|&d| d != 0);
    let Some(first_nonzero) = first_nonzero else {
        return Ok(0);
    };
    digits.drain(..first_nonzero);
    let (k, doublings) = match base {
        10 => (exponent - parts.denom.len() as i64 + 3, 0),
        _ => (3 - parts.denom.len() as i64, exponent),
    };
    for _ in 0..doublings {
        double(&mut digits);
    }

    let overflow = || QuantityError::Overflow(s.to_owned());
    let magnitude: u128 = if k >= 0 {
        // A nonzero integer with more than 19 digits exceeds int64.
        if digits.len() as i64 + k > 19 {
            return Err(overflow());
        }
        to_u128(&digits) * 10u128.pow(k as u32)
    } else {
        let frac_len = usize::try_from(-k).unwrap_or(usize::MAX);
        if frac_len >= digits.len() {
            // Nonzero and below one milli: rounds up to one.
            1
        } else {
            let (int, frac) = digits.split_at(digits.len() - frac_len);
            if int.len() > 19 {
                return Err(overflow());
            }
            to_u128(int) + u128::from(frac.iter().any(|&d| d != 0))
        }
    };
    if magnitude > MAX_MILLI {
        return Err(overflow());
    }
    let magnitude = magnitude as i64;
    Ok(if parts.negative { -magnitude } else { magnitude })
}

/// `MilliValue()` of the Quantity `v` is served as (its shortest round-trip decimal, rounded up to a milli-unit):
/// what the HPA reads. `None` when it cannot be served (the HPA sees an error).
pub fn served_milli(v: f64) -> Option<i64> {
    format(v).ok().and_then(|s| parse_milli(&s).ok())
}

fn double(digits: &mut Vec<u8>) {
    let mut carry = 0;
    for d in digits.iter_mut().rev() {
        let v = *d * 2 + carry;
        *d = v % 10;
        carry = v / 10;
    }
    if carry > 0 {
        digits.insert(0, carry);
    }
}

fn to_u128(digits: &[u8]) -> u128 {
    digits.iter().fold(0u128, |acc, &d| acc * 10 + u128::from(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Independent oracle: the milli-value of the shortest decimal of `v`, from its positional rendering.
    fn oracle_milli(v: f64) -> i128 {
        let s = format!("{v}");
        let negative = s.starts_with('-');
        let s = s.trim_start_matches('-');
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let int: i128 = int.parse().unwrap();
        let padded = format!("{frac:0<3}");
        let (head, rest) = padded.split_at(3);
        let mut m = int * 1000 + head.parse::<i128>().unwrap();
        if rest.bytes().any(|c| c != b'0') {
            m += 1;
        }
        if negative {
            -m
        } else {
            m
        }
    }

    #[test]
    fn spec_examples() {
        for (v, want) in [
            (1.5, "1500m"),
            (0.25, "250m"),
            (12.0, "12"),
            (120.0, "120"),
            (1000.0, "1k"),
            (1.5e6, "1500k"),
            (1e-4, "100u"),
            (0.0, "0"),
            (-0.0, "0"),
            (-0.5, "-500m"),
            (4.35, "4350m"),
        ] {
            assert_eq!(format(v).unwrap(), want, "format({v})");
        }
    }

    #[test]
    fn quantizes_up_to_milli() {
        assert_eq!(format(0.1234567).unwrap(), "124m");
        assert_eq!(format(1.0005).unwrap(), "1001m");
        assert_eq!(format(-1.0005).unwrap(), "-1001m");
        assert_eq!(format(0.001).unwrap(), "1m");
        assert_eq!(format(123456.7891).unwrap(), "123456790m");
        assert_eq!(format(1e15).unwrap(), "1P");
        assert_eq!(format(2.5e12).unwrap(), "2500G");
        assert_eq!(format(3e9).unwrap(), "3G");
    }

    #[test]
    fn sub_milli_keeps_nano_precision_rounded_up() {
        assert_eq!(format(1e-9).unwrap(), "1n");
        assert_eq!(format(1e-12).unwrap(), "1n");
        assert_eq!(format(1.5e-9).unwrap(), "2n");
        assert_eq!(format(1.23456789e-4).unwrap(), "123457n");
        assert_eq!(format(-2e-5).unwrap(), "-20u");
        assert_eq!(format(f64::MIN_POSITIVE).unwrap(), "1n");
    }

    #[test]
    fn rejects_non_finite_and_overflow() {
        assert!(matches!(format(f64::NAN), Err(QuantityError::NotFinite(_))));
        assert!(matches!(format(f64::INFINITY), Err(QuantityError::NotFinite(_))));
        assert!(matches!(format(f64::NEG_INFINITY), Err(QuantityError::NotFinite(_))));
        assert!(matches!(format(1e16), Err(QuantityError::Overflow(_))));
        assert!(matches!(format(-1e16), Err(QuantityError::Overflow(_))));
        assert!(matches!(format(f64::MAX), Err(QuantityError::Overflow(_))));
        assert!(matches!(format(9.3e15), Err(QuantityError::Overflow(_))));
        assert_eq!(format(9.2e15).unwrap(), "9200T");
        assert_eq!(parse_milli("9200T").unwrap(), 9_200_000_000_000_000_000);
    }

    #[test]
    fn parse_matches_apimachinery() {
        for (s, want) in [
            ("0", 0),
            ("1500001n", 2),
            ("1500001u", 1501),
            ("-1500001u", -1501),
            ("1500m", 1500),
            ("1.5", 1500),
            ("+1.5", 1500),
            (".5", 500),
            ("5.", 5000),
            ("100u", 1),
            ("1n", 1),
            ("-1n", -1),
            ("12", 12_000),
            ("1k", 1_000_000),
            ("1500k", 1_500_000_000),
            ("1M", 1_000_000_000),
            ("1Ki", 1_024_000),
            ("1.5Ki", 1_536_000),
            ("1Mi", 1_048_576_000),
            ("0.001Ki", 1024),
            ("1Ti", 1_099_511_627_776_000),
            ("1e3", 1_000_000),
            ("1E3", 1_000_000),
            ("1e+3", 1_000_000),
            ("1E-2", 10),
            ("1.5e-4", 1),
            ("4350m", 4350),
            ("4.35e0", 4350),
            ("007", 7000),
            ("0.0000", 0),
            ("0e9", 0),
            ("1e-999999", 1),
            ("9223372036854775807m", i64::MAX),
            ("-9223372036854775807m", -i64::MAX),
        ] {
            assert_eq!(parse_milli(s), Ok(want), "parse_milli({s:?})");
        }
    }

    #[test]
    fn parse_rejects_bad_input_with_a_reason() {
        assert_eq!(parse_milli(""), Err(QuantityError::Empty));
        for s in ["abc", "1.5.5", "1 ", " 1", "1e3.5", "1KiB", "1,5"] {
            assert!(
                matches!(parse_milli(s), Err(QuantityError::Format(_))),
                "{s:?} -> {:?}",
                parse_milli(s)
            );
        }
        for s in ["1K", "1e", "1i", "1mm", "1Ki5", "1kM", "1e99999999999", "--1", "1-"] {
            assert!(
                matches!(parse_milli(s), Err(QuantityError::Suffix { .. })),
                "{s:?} -> {:?}",
                parse_milli(s)
            );
        }
        for s in ["9223372036854775808m", "10P", "8Ei", "1e16", "99999999999999999999999"] {
            assert!(
                matches!(parse_milli(s), Err(QuantityError::Overflow(_))),
                "{s:?} -> {:?}",
                parse_milli(s)
            );
        }
        let msg = parse_milli("1K").unwrap_err().to_string();
        assert!(msg.contains("\"K\"") && msg.contains("Ki"), "{msg}");
    }

    fn canonical(s: &str) -> bool {
        let body = s.trim_start_matches('-');
        let digits_end = body.find(|c: char| !c.is_ascii_digit()).unwrap_or(body.len());
        let (m, suffix) = body.split_at(digits_end);
        let suffix_ok = ["", "n", "u", "m", "k", "M", "G", "T", "P", "E"].contains(&suffix);
        let no_leading_zero = m == "0" || !m.starts_with('0');
        // A mantissa ending in 000 would have taken the next suffix.
        let exponent_maximal = m == "0" || !m.ends_with("000");
        !m.is_empty() && suffix_ok && no_leading_zero && exponent_maximal && (s != "-0")
    }

    fn any_value() -> impl Strategy<Value = f64> {
        prop_oneof![
            -1e15..1e15f64,
            -1e3..1e3f64,
            -1.0..1.0f64,
            -1e-3..1e-3f64,
            (-1_000_000_000i64..1_000_000_000).prop_map(|m| m as f64 / 1000.0),
            (0i64..1_000_000, 0u32..10).prop_map(|(m, p)| m as f64 * 10f64.powi(p as i32)),
            (0i64..1_000_000, 1u32..12).prop_map(|(m, p)| m as f64 / 10f64.powi(p as i32)),
        ]
    }

    proptest! {
        #[test]
        fn format_then_parse_is_the_ceiling_of_the_decimal(v in any_value()) {
            let q = format(v).unwrap();
            prop_assert!(canonical(&q), "{v} -> {q:?} is not canonical");
            prop_assert_eq!(i128::from(parse_milli(&q).unwrap()), oracle_milli(v), "{} -> {:?}", v, q);
        }

        #[test]
        fn at_least_one_milli_is_quantized_to_milli(v in any_value()) {
            let q = format(v).unwrap();
            if v.abs() >= 1e-3 {
                prop_assert!(!q.ends_with('n') && !q.ends_with('u'), "{v} -> {q}");
            } else if v != 0.0 {
                prop_assert!(q.ends_with('n') || q.ends_with('u'), "{v} -> {q}");
            }
        }

        #[test]
        fn parse_agrees_with_exponent_notation(v in any_value()) {
            // `{:e}` output is itself a Quantity (an exponent suffix): both spellings read the same.
            let q = format(v).unwrap();
            prop_assert_eq!(parse_milli(&q).unwrap(), parse_milli(&format!("{v:e}")).unwrap());
        }

        #[test]
        fn format_round_trips_milli_values(m in -9_000_000_000_000_000i64..9_000_000_000_000_000) {
            // Integers of milli are exact in their decimal digits only below 2^53; compare through the string.
            let v: f64 = format!("{}.{:03}", m / 1000, (m % 1000).abs()).parse().unwrap();
            let v = if m < 0 && m > -1000 { -v } else { v };
            let q = format(v).unwrap();
            prop_assert_eq!(i128::from(parse_milli(&q).unwrap()), oracle_milli(v));
        }

        #[test]
        fn parse_never_panics(s in "[-+]?[0-9.]{0,25}[eEinumkKMGTP+-]{0,3}[0-9]{0,4}") {
            let _ = parse_milli(&s);
        }
    }
}
