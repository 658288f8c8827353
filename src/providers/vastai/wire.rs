//! Vast.ai's JSON as the client reads it (shared/providers/vastai.md sections 3 and 4), and what its
//! status fields mean to tgp. Decoding is tolerant where Vast is loose (ids as numbers or strings,
//! prices as floats, `null` where a value is missing, trailing whitespace) and strict where a
//! renamed field must be noticed: a field tgp needs is required even when its value may be `null`.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use tgp_actors::provider::MachineStatus;
use tgp_events::events::InterruptionReason;

use crate::providers::http::ListField;

/// Decimal places Vast prices are kept to. Vast sends dollars as JSON floats; tgp takes the
/// shortest decimal that reads back as the same float (what Vast printed), then rounds half-even
/// to 6 places (the precision of Vast's own figures, e.g. `1.858333`), so float noise such as
/// `1.8583333333333334` never reaches the journal.
pub const PRICE_DECIMALS: u32 = 6;

/// `{"offers": [...]}` from `POST /api/v0/bundles/`.
#[derive(Debug, Deserialize)]
pub struct OffersAnswer {
    /// The offers; `null` is read as none.
    #[serde(deserialize_with = "nullable")]
    pub offers: Option<Vec<WireOffer>>,
}

/// One offer (ask); only what tgp reads.
#[derive(Debug, Deserialize)]
pub struct WireOffer {
    /// The ask id `PUT /asks/{id}/` takes.
    #[serde(deserialize_with = "id")]
    pub id: u64,
    /// Vast's GPU name (`"H100 SXM"`).
    pub gpu_name: String,
    /// GPUs in the offer.
    #[serde(deserialize_with = "count")]
    pub num_gpus: u32,
    /// MB per GPU; tells the A100 sizes apart.
    #[serde(default, deserialize_with = "opt_count")]
    pub gpu_ram: Option<u64>,
    /// $/h for the whole offer on demand, storage for `allocated_storage` included.
    #[serde(deserialize_with = "price")]
    pub dph_total: Option<Decimal>,
    /// $/h minimum bid for the whole offer's compute; a bid rental also pays storage.
    #[serde(default, deserialize_with = "price")]
    pub min_bid: Option<Decimal>,
    /// $/h for the search's `allocated_storage` GB of disk (`storage_cost` $/GB/month × GB / 720,
    /// as Vast rounds it): what a bid rental pays on top of its bid.
    #[serde(default, deserialize_with = "price")]
    pub storage_total_cost: Option<Decimal>,
    /// 0..1, the newer score dstack filters on.
    #[serde(default, deserialize_with = "price")]
    pub reliability2: Option<Decimal>,
    /// 0..1, the older score.
    #[serde(default, deserialize_with = "price")]
    pub reliability: Option<Decimal>,
    /// Host-written place, `"Texas, US"`; may be `null` or `", US"`.
    #[serde(default)]
    pub geolocation: Option<String>,
    /// The host machine's vCPUs; may be `null` or 0.
    #[serde(default, deserialize_with = "opt_count")]
    pub cpu_cores: Option<u64>,
    /// The vCPUs this offer rents out of them.
    #[serde(default, deserialize_with = "price")]
    pub cpu_cores_effective: Option<Decimal>,
    /// The host machine's RAM in MB (the renter's share is `cpu_ram × effective / cores`).
    #[serde(default, deserialize_with = "opt_count")]
    pub cpu_ram: Option<u64>,
    /// GB of disk available to allocate.
    #[serde(default, deserialize_with = "price")]
    pub disk_space: Option<Decimal>,
    /// 0 for a community host, 1 or more for a datacenter.
    #[serde(default, deserialize_with = "opt_count")]
    pub hosting_type: Option<u64>,
    /// Available to rent now.
    #[serde(default)]
    pub rentable: Option<bool>,
    /// Already rented.
    #[serde(default)]
    pub rented: Option<bool>,
}

/// `{"instances": {...} | null}` from `GET /api/v0/instances/{id}/`.
#[derive(Debug, Deserialize)]
pub struct OneInstance {
    /// The instance; `null` when unknown or destroyed.
    #[serde(deserialize_with = "nullable")]
    pub instances: Option<WireInstance>,
}

/// One page of `GET /api/v1/instances/`.
#[derive(Debug, Deserialize)]
pub struct InstancePage {
    /// The page's instances; `null` or absent is a contract change, never "none" (vast-cli reads
    /// `null` as none, and so did a peer control plane that then relaunched every machine).
    #[serde(default = "ListField::default")]
    pub instances: ListField<WireInstance>,
    /// Cursor for the next page; `null` on the last.
    #[serde(default)]
    pub next_token: Option<String>,
}

/// One instance; only what tgp reads.
#[derive(Debug, Deserialize)]
pub struct WireInstance {
    /// Instance (contract) id.
    #[serde(deserialize_with = "id")]
    pub id: u64,
    /// The label tgp gave it.
    #[serde(default)]
    pub label: Option<String>,
    /// What the container is doing; `null` while provisioning. Required: a rename must show.
    #[serde(deserialize_with = "nullable")]
    pub actual_status: Option<String>,
    /// What the user (or Vast) wants.
    #[serde(default)]
    pub intended_status: Option<String>,
    /// The contract's state.
    #[serde(default)]
    pub cur_state: Option<String>,
    /// The contract's next state.
    #[serde(default)]
    pub next_state: Option<String>,
    /// Free text; container errors show here.
    #[serde(default)]
    pub status_msg: Option<String>,
    /// Interruptible rental.
    #[serde(default)]
    pub is_bid: Option<bool>,
    /// $/h billed (on demand).
    #[serde(default, deserialize_with = "price")]
    pub dph_total: Option<Decimal>,
    /// Public address, maybe with trailing whitespace.
    #[serde(default)]
    pub public_ipaddr: Option<String>,
    /// Vast's SSH proxy host.
    #[serde(default)]
    pub ssh_host: Option<String>,
    /// Vast's SSH proxy port.
    #[serde(default, deserialize_with = "opt_count")]
    pub ssh_port: Option<u64>,
    /// Docker-style port map, only while running: `{"22/tcp": [{"HostPort": "40012"}]}`.
    #[serde(default)]
    pub ports: Option<Value>,
}

/// The answer to `PUT /api/v0/asks/{id}/`, success or not.
#[derive(Debug, Deserialize)]
pub struct CreateAnswer {
    /// False on failure (even with a 200).
    #[serde(default)]
    pub success: Option<bool>,
    /// The new instance's id; also sent with some failures (a stopped instance was made).
    #[serde(default, deserialize_with = "opt_id")]
    pub new_contract: Option<u64>,
    /// Vast's error code.
    #[serde(default)]
    pub error: Option<String>,
    /// Vast's message.
    #[serde(default)]
    pub msg: Option<String>,
}

/// Vast's error envelope: `{"success": false, "error": code, "msg": text}`, or only `msg`,
/// `message` or `detail` (the 429 JSON variant). Plain text is left to the shared fallback.
pub fn parse_error(body: &[u8]) -> Option<(Option<String>, String)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
    let code = text("error");
    let message = text("msg").or_else(|| text("message")).or_else(|| text("detail")).or_else(|| code.clone())?;
    Some((code, message))
}

/// What one instance's state fields mean to tgp, with the raw status kept as evidence and whether
/// the value is one the note knows (unknown ones are reported by the caller).
pub fn machine_status(instance: &WireInstance) -> (MachineStatus, String, bool) {
    let actual = instance.actual_status.as_deref().map(str::trim);
    let raw = actual.unwrap_or("null").to_string();
    let stopped = |s: &Option<String>| s.as_deref().map(str::trim) == Some("stopped");
    let stop_reason =
        if instance.is_bid == Some(true) { InterruptionReason::Outbid } else { InterruptionReason::StoppedOutsideTgp };
    // dstack's rule (PR #4037): the contract stopped and meant to stay stopped is an
    // interruption whatever the container field says; there is no "outbid" value.
    if stopped(&instance.cur_state) && stopped(&instance.next_state) && stopped(&instance.intended_status) {
        return (MachineStatus::Interrupted(stop_reason), raw, true);
    }
    let failed_start = instance.status_msg.as_deref().is_some_and(|m| m.contains("OCI runtime create failed"));
    let status = match actual {
        None | Some("loading") | Some("rebooting") | Some("recycling") => MachineStatus::Starting,
        Some("created") if failed_start => MachineStatus::Interrupted(InterruptionReason::HostLost),
        Some("created") => MachineStatus::Starting,
        Some("running") => MachineStatus::Running,
        // Paused: outbid for an interruptible rental; otherwise stopped by someone, by a credit
        // balance at zero, or by an on-demand contract's end.
        Some("stopped") | Some("frozen") => MachineStatus::Interrupted(stop_reason),
        // Vast: once exited, unknown or offline, it never becomes running.
        Some("exited") | Some("unknown") | Some("offline") => MachineStatus::Interrupted(InterruptionReason::HostLost),
        Some("destroyed") => MachineStatus::Terminated,
        // A value the note does not know: Starting, as SkyPilot does, because Vast adds lifecycle
        // states without notice and Terminated would make tgp forget a machine that may bill.
        Some(_) => return (MachineStatus::Starting, raw, false),
    };
    let raw = match (&status, instance.status_msg.as_deref()) {
        (MachineStatus::Interrupted(_), Some(msg)) if !msg.trim().is_empty() => {
            format!("{raw}: {}", msg.trim())
        }
        _ => raw,
    };
    (status, raw, true)
}

/// The host port mapped to `port`/tcp, from a Docker-style port map.
pub fn host_port(ports: Option<&Value>, port: u16) -> Option<u16> {
    let binding = ports?.get(format!("{port}/tcp"))?.as_array()?.first()?;
    match binding.get("HostPort")? {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        _ => None,
    }
}

fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)
}

/// A JSON number (or numeric string) as an exact decimal; see [`PRICE_DECIMALS`].
pub fn decimal_of(value: &Value) -> Result<Option<Decimal>, String> {
    let text = match value {
        Value::Null => return Ok(None),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => return Ok(Some(Decimal::from(i))),
            (None, Some(f)) => format!("{f}"),
            (None, None) => n.to_string(),
        },
        Value::String(s) if s.trim().is_empty() => return Ok(None),
        Value::String(s) => s.trim().to_string(),
        other => return Err(format!("expected a number, got {other}")),
    };
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map(|d| Some(d.round_dp(PRICE_DECIMALS)))
        .map_err(|e| format!("{text:?} is not a number: {e}"))
}

fn price<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    decimal_of(&Value::deserialize(d)?).map_err(D::Error::custom)
}

fn opt_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let value = decimal_of(&Value::deserialize(d)?).map_err(D::Error::custom)?;
    Ok(value.and_then(|v| u64::try_from(v.trunc()).ok()))
}

fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    opt_count(d)?.and_then(|n| u32::try_from(n).ok()).ok_or_else(|| D::Error::custom("expected a count, got null"))
}

fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Number(n) => {
            n.as_u64().map(Some).ok_or_else(|| D::Error::custom(format!("id {n} is not a whole number")))
        }
        Value::String(s) => {
            s.trim().parse().map(Some).map_err(|_| D::Error::custom(format!("id {s:?} is not a number")))
        }
        other => Err(D::Error::custom(format!("expected an id, got {other}"))),
    }
}

fn id<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    opt_id(d)?.ok_or_else(|| D::Error::custom("expected an id, got null"))
}

#[cfg(test)]
mod tests {
    use super::{OneInstance, decimal_of, host_port, parse_error};
    use serde_json::Value;
    use serde_json::json;

    #[test]
    fn floats_become_the_decimal_vast_printed() {
        let d = |v: Value| decimal_of(&v).unwrap().map(|d| d.to_string());
        assert_eq!(d(json!(1.8583333333333334)).as_deref(), Some("1.858333"));
        assert_eq!(d(json!(1.1)).as_deref(), Some("1.1"));
        assert_eq!(d(json!(2)).as_deref(), Some("2"));
        assert_eq!(d(json!(" 0.15 ")).as_deref(), Some("0.15"));
        assert_eq!(d(json!(1e-7)).as_deref(), Some("0.000000"));
        assert_eq!(d(Value::Null), None);
        assert!(decimal_of(&json!([1])).is_err());
    }

    #[test]
    fn ids_parse_as_numbers_or_strings_and_required_fields_must_be_there() {
        let one: OneInstance =
            serde_json::from_value(json!({"instances": {"id": "42", "actual_status": null, "ports": null}})).unwrap();
        assert_eq!(one.instances.map(|i| i.id), Some(42));
        let missing = serde_json::from_value::<OneInstance>(json!({"instances": {"id": 1}}));
        assert!(missing.unwrap_err().to_string().contains("actual_status"));
        let none: OneInstance = serde_json::from_value(json!({"instances": null})).unwrap();
        assert!(none.instances.is_none());
    }

    #[test]
    fn ports_and_error_envelopes() {
        let ports = json!({"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": "40012"}], "80/tcp": null});
        assert_eq!(host_port(Some(&ports), 22), Some(40012));
        assert_eq!(host_port(Some(&ports), 80), None);
        assert_eq!(host_port(None, 22), None);
        let e = |s: &str| parse_error(s.as_bytes());
        assert_eq!(
            e(r#"{"success":false,"error":"no_such_ask","msg":"gone"}"#),
            Some((Some("no_such_ask".into()), "gone".into()))
        );
        assert_eq!(e(r#"{"detail":"slow down"}"#), Some((None, "slow down".into())));
        assert_eq!(e("API requests too frequent"), None);
    }
}
