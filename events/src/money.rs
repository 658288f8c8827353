//! Exact money. Prices come from providers as decimal strings or integer cents and end in a cost
//! audit that must agree to the cent, so no float ever holds an amount.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// An amount of US dollars, exact. On the wire it is a decimal string (`"2.49"`), never a JSON
/// number, so no client's float parser can round it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(#[serde(with = "rust_decimal::serde::str")] Decimal);

/// Why a string is not an amount of money.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a decimal amount of dollars (expected something like \"2.49\")")]
pub struct MoneyParseError {
    /// The text that failed to parse.
    pub input: String,
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
        let trimmed = s.trim().trim_start_matches('$');
        Decimal::from_str_exact(trimmed).map(Money).map_err(|_| MoneyParseError { input: s.to_string() })
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
}
