//! Exact money. Prices come from providers as decimal strings or integer cents and end in a cost
//! audit that must agree to the cent, so no float ever holds an amount.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// An amount of US dollars, exact. On the wire it is a plain decimal string (`"2.49"`), never a
/// JSON number, so no client's float parser can round it.
///
/// Only plain decimals parse: digits, optionally a point and more digits (`^-?[0-9]+(\.[0-9]+)?$`).
/// No `1_000`, `1e3`, `+1`, `$3` or spaces: a string that a person or a program could read as two
/// different amounts is refused, not guessed at. The leading `-` exists because tgp's own records
/// may hold a negative amount; commands refuse one with a message of their own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Money(#[serde(serialize_with = "rust_decimal::serde::str::serialize")] Decimal);

/// Why a string is not an amount of money.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} is not a plain decimal amount of dollars: write digits with an optional decimal point, like \"2.49\" \
     (no sign, exponent, separator, \"$\" or space)",
    crate::limits::quote(input)
)]
pub struct MoneyParseError {
    /// The text that failed to parse.
    pub input: String,
}

/// True for `-?[0-9]+(\.[0-9]+)?`.
fn is_plain_decimal(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && fraction.is_none_or(digits)
}

impl Money {
    /// Zero dollars, the start of every sum.
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// Wraps an exact decimal number of dollars.
    pub fn from_decimal(d: Decimal) -> Self {
        Money(d)
    }

    /// Whole dollars, for limits fixed at compile time.
    pub const fn from_dollars(dollars: u32) -> Self {
        Money(Decimal::from_parts(dollars, 0, 0, false, 0))
    }

    /// Whole cents, as Lambda quotes prices (`price_cents_per_hour`).
    pub fn from_cents(cents: i64) -> Self {
        Money(Decimal::new(cents, 2))
    }

    /// The exact decimal, for arithmetic that needs more than addition.
    pub fn as_decimal(self) -> Decimal {
        self.0
    }

    /// True below zero: no price or budget may be negative.
    pub fn is_negative(self) -> bool {
        self.0.is_sign_negative() && !self.0.is_zero()
    }

    /// Rounded half-even to whole cents, how totals are shown.
    pub fn round_cents(self) -> Money {
        Money(self.0.round_dp(2))
    }
}

impl FromStr for Money {
    type Err = MoneyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let refused = || MoneyParseError { input: s.to_string() };
        if !is_plain_decimal(s) {
            return Err(refused());
        }
        Decimal::from_str_exact(s).map(Money).map_err(|_| refused())
    }
}

/// Decodes through [`FromStr`], so the wire and the command line accept exactly the same strings.
impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Plain;
        impl serde::de::Visitor<'_> for Plain {
            type Value = Money;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a plain decimal string of dollars, like \"2.49\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Money, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Plain)
    }
}

/// Dollars as people read them: at least two decimals (`$3.00`, `$226.70`), more only when the
/// amount has them (`$0.0045` per second stays exact).
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exact = self.0.normalize();
        if exact.scale() <= 2 { write!(f, "${exact:.2}") } else { write!(f, "${exact}") }
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0 + rhs.0)
    }
}

impl std::ops::Mul<u32> for Money {
    type Output = Money;
    fn mul(self, rhs: u32) -> Money {
        Money(self.0 * Decimal::from(rhs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_exactly() {
        let m: Money = "2.49".parse().unwrap();
        assert_eq!(m.to_string(), "$2.49");
        for (amount, shown) in [("3", "$3.00"), ("226.7", "$226.70"), ("1.100", "$1.10"), ("0.0045", "$0.0045")] {
            assert_eq!(amount.parse::<Money>().unwrap().to_string(), shown);
        }
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"2.49\"");
        assert_eq!(Money::from_cents(249), m);
        assert_eq!(m * 3, "7.47".parse().unwrap());
    }

    #[test]
    fn rejects_garbage_and_numbers() {
        assert!("two dollars".parse::<Money>().is_err());
        assert!(serde_json::from_str::<Money>("2.49").is_err(), "a JSON number is refused");
        assert!("-1".parse::<Money>().unwrap().is_negative());
    }

    #[test]
    fn only_plain_decimals_parse() {
        for text in ["1_000", "1e3", "+1", "$3", " 3", "3 ", "3.", ".5", "", "-", "1.2.3", "0x10", "1,000", "١"] {
            let err = text.parse::<Money>().unwrap_err().to_string();
            assert!(err.contains("plain decimal"), "{text:?}: {err}");
            let json = serde_json::to_string(text).unwrap();
            assert!(serde_json::from_str::<Money>(&json).is_err(), "{text:?} on the wire");
        }
        for (text, value) in [("0", "0"), ("1000", "1000"), ("2.49", "2.49"), ("007.50", "7.5"), ("-0.5", "-0.5")] {
            assert_eq!(text.parse::<Money>().unwrap(), Money::from_decimal(value.parse().unwrap()), "{text}");
        }
        let long = format!("{}x", "9".repeat(900_000));
        assert!(long.parse::<Money>().unwrap_err().to_string().len() < 400, "a refusal quotes 200 bytes at most");
    }

    #[test]
    fn what_tgp_writes_it_reads_back() {
        for amount in ["2.49", "-1.5", "0", "0.000000001", "123456789.123456789"] {
            let money: Money = amount.parse().unwrap();
            let json = serde_json::to_string(&money).unwrap();
            assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), money, "{json}");
        }
        let computed = Money::from_cents(249) * 3 + Money::from_decimal(Decimal::new(-1, 4));
        assert_eq!(serde_json::from_str::<Money>(&serde_json::to_string(&computed).unwrap()).unwrap(), computed);
    }
}
