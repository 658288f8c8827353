//! Spans of time as people write them in commands and flags (`90s`, `45m`, `8h`, `1h30m`, `2d`),
//! kept as whole seconds so limits compare exactly and journal as the text the user wrote means.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A span of whole seconds, written as a sum of `<n>d`, `<n>h`, `<n>m` and `<n>s` parts, each
/// unit at most once and the largest first (`1h30m`; not `1h1h` or `30m1h`), so a span has one
/// reading and prints back as it was meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Span {
    seconds: u64,
}

impl Span {
    /// A span of `seconds`.
    pub const fn from_secs(seconds: u64) -> Self {
        Span { seconds }
    }

    /// Its length in seconds.
    pub const fn as_secs(self) -> u64 {
        self.seconds
    }

    /// Its length as a std duration, for timers.
    pub const fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.seconds)
    }

    /// Its length as a chrono duration, for arithmetic on event times; `None` beyond what
    /// chrono can represent (launch commands refuse spans that long).
    pub fn to_chrono(self) -> Option<chrono::Duration> {
        chrono::Duration::try_seconds(i64::try_from(self.seconds).ok()?)
    }
}

/// The text is not a span.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid span of time {}: {why}; write e.g. 90s, 45m, 8h, 1h30m or 2d", crate::limits::quote(text))]
pub struct InvalidSpan {
    /// What was written.
    pub text: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl FromStr for Span {
    type Err = InvalidSpan;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |why| InvalidSpan { text: text.to_string(), why };
        let mut seconds: u64 = 0;
        let mut digits = String::new();
        // The last unit read: each must be smaller than the one before it.
        let mut previous = u64::MAX;
        for c in text.trim().chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = match c {
                'd' => 86_400,
                'h' => 3_600,
                'm' => 60,
                's' => 1,
                _ => return Err(invalid("units are d, h, m and s")),
            };
            if unit >= previous {
                return Err(invalid("each unit may appear once, the largest first"));
            }
            previous = unit;
            if digits.is_empty() {
                return Err(invalid("each unit needs a number before it"));
            }
            let n: u64 = digits.parse().map_err(|_| invalid("too long"))?;
            seconds = n.checked_mul(unit).and_then(|s| seconds.checked_add(s)).ok_or_else(|| invalid("too long"))?;
            digits.clear();
        }
        if !digits.is_empty() {
            return Err(invalid("a number needs a unit after it"));
        }
        if text.trim().is_empty() {
            return Err(invalid("it is empty"));
        }
        Ok(Span { seconds })
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.seconds;
        for (unit, name) in [(86_400, 'd'), (3_600, 'h'), (60, 'm')] {
            if rest >= unit {
                write!(f, "{}{name}", rest / unit)?;
                rest %= unit;
            }
        }
        if rest > 0 || self.seconds == 0 {
            write!(f, "{rest}s")?;
        }
        Ok(())
    }
}

impl TryFrom<String> for Span {
    type Error = InvalidSpan;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Span> for String {
    fn from(span: Span) -> String {
        span.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_and_print_as_written() {
        for (text, seconds, printed) in [
            ("90s", 90, "1m30s"),
            ("45m", 2_700, "45m"),
            ("8h", 28_800, "8h"),
            ("1h30m", 5_400, "1h30m"),
            ("2d", 172_800, "2d"),
        ] {
            let span: Span = text.parse().unwrap();
            assert_eq!(span.as_secs(), seconds, "{text}");
            assert_eq!(span.to_string(), printed);
            assert_eq!(printed.parse::<Span>().unwrap(), span);
        }
    }

    #[test]
    fn bad_spans_say_what_is_wrong() {
        for (text, why) in [
            ("8", "needs a unit"),
            ("h", "needs a number"),
            ("3w", "units are"),
            ("", "empty"),
            ("1h1h", "once, the largest first"),
            ("30m1h", "once, the largest first"),
            ("1s1s", "once, the largest first"),
            ("+1h", "units are"),
            ("1h 30m", "units are"),
            ("99999999999999999999999s", "too long"),
        ] {
            let err = text.parse::<Span>().unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
        let long = "1".repeat(900_000);
        assert!(long.parse::<Span>().unwrap_err().to_string().len() < 400, "a refusal quotes 200 bytes at most");
    }
}
