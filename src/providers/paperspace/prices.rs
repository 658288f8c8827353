//! The dated price table Paperspace offers are priced from.
//!
//! Paperspace's API has **no price endpoint** (and no machine-type listing), so tgp ships a table
//! (`src/providers/paperspace_prices.toml`, compiled in) that the `price_table` option (a path)
//! replaces. The table's `as_of` date travels in every offer id and is logged when the client is
//! built, so nobody mistakes a shipped price for a live quote.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use tgp_events::Money;

/// The table compiled into tgp.
pub const SHIPPED_TABLE: &str = include_str!("../paperspace_prices.toml");

/// One machine type's row: its hourly price and where it is sold.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceRow {
    /// USD per hour for the whole machine: a decimal string in the file (a TOML float is refused,
    /// so no price passes through binary floating point).
    #[serde(deserialize_with = "money_string")]
    pub hourly: Money,
    /// The API's region strings (`"East Coast (NY2)"`) where the type is sold.
    pub regions: Vec<String>,
    /// The type's vCPUs, where the table's source gives them (a launch asking for vCPUs leaves
    /// out a type without them).
    #[serde(default)]
    pub vcpus: Option<u32>,
    /// The type's RAM in GiB, where the table's source gives it.
    #[serde(default)]
    pub memory_gib: Option<u32>,
}

fn money_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

/// A dated price table: machine type label (`A100-80Gx8`) to its row.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// The date the prices were taken (`YYYY-MM-DD`), shown in offer ids.
    pub as_of: String,
    /// Always `USD`; anything else is refused, because tgp's money is US dollars.
    pub currency: String,
    /// Where the prices come from, for people reading the file.
    #[serde(default)]
    pub source: Option<String>,
    /// The rows, by machine type label.
    pub machine_types: BTreeMap<String, PriceRow>,
}

/// Why a price table cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Paperspace price table {origin}: {message}")]
pub struct PriceTableError {
    /// Which table (`shipped` or a path).
    pub origin: String,
    /// What is wrong.
    pub message: String,
}

impl PriceTable {
    /// Parses and checks a table; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, PriceTableError> {
        let error = |message: String| PriceTableError { origin: origin.to_string(), message };
        let table: PriceTable = toml::from_str(text).map_err(|e| error(e.to_string()))?;
        if chrono::NaiveDate::parse_from_str(&table.as_of, "%Y-%m-%d").is_err() {
            return Err(error(format!("as_of {:?} is not a YYYY-MM-DD date", table.as_of)));
        }
        if table.currency != "USD" {
            return Err(error(format!("currency {:?} is not USD", table.currency)));
        }
        for (label, row) in &table.machine_types {
            if row.hourly.is_negative() {
                return Err(error(format!("{label}: negative price {}", row.hourly)));
            }
            if label.contains('/') {
                return Err(error(format!("{label}: a machine type may not contain '/'")));
            }
        }
        Ok(table)
    }

    /// The shipped table, or the one at `path` when given.
    pub fn load(path: Option<&Path>) -> Result<Self, PriceTableError> {
        match path {
            None => Self::parse(SHIPPED_TABLE, "shipped with tgp"),
            Some(path) => {
                let origin = path.display().to_string();
                let text = std::fs::read_to_string(path)
                    .map_err(|e| PriceTableError { origin: origin.clone(), message: e.to_string() })?;
                Self::parse(&text, &origin)
            }
        }
    }

    /// The hourly price of a machine type, when the table has it.
    pub fn hourly(&self, machine_type: &str) -> Option<Money> {
        self.machine_types.get(machine_type).map(|r| r.hourly)
    }
}

#[cfg(test)]
mod tests {
    use super::PriceTable;

    #[test]
    fn the_shipped_table_parses_and_is_dated() {
        let table = PriceTable::load(None).unwrap();
        assert!(table.as_of.starts_with("2026-"), "{}", table.as_of);
        assert_eq!(table.hourly("A100-80G"), Some("3.18".parse().unwrap()));
        assert_eq!(table.hourly("H100x8"), Some("47.60".parse().unwrap()));
        assert!(table.machine_types.values().all(|r| !r.regions.is_empty()));
    }

    #[test]
    fn a_bad_table_says_what_is_wrong() {
        let no_date = "as_of = \"soon\"\ncurrency = \"USD\"\n[machine_types]\n";
        assert!(PriceTable::parse(no_date, "t").unwrap_err().message.contains("soon"));
        let float = "as_of = \"2026-01-01\"\ncurrency = \"USD\"\n[machine_types.A4000]\nhourly = 0.76\nregions = []\n";
        assert!(PriceTable::parse(float, "t").is_err());
        let euro = "as_of = \"2026-01-01\"\ncurrency = \"EUR\"\n[machine_types]\n";
        assert!(PriceTable::parse(euro, "t").unwrap_err().message.contains("EUR"));
    }
}
