//! RunPod's wire shapes (REST v2 and the GraphQL pieces tgp uses), the error envelopes, and the
//! mapping of pod status values to [`MachineStatus`]. Public parsers let tests feed RunPod's own
//! example payloads through exactly the code the client runs.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use tgp_actors::provider::{MachineStatus, ProviderInstance};
use tgp_events::events::{Connection, InterruptionReason};
use tgp_events::{BillingGranularity, Money};

use crate::providers::http::ListField;

/// Environment variable tgp adds to spot pods: REST v2 has no spot flag, and the pod's own env is
/// the one place that survives a restart of tgp to tell an interrupted spot pod from a stopped one.
pub const SPOT_MARKER: &str = "TGP_SPOT";

/// A JSON number (RunPod sends prices as floats) read as the shortest decimal that prints the
/// same float, so `0.44` is exactly 0.44: no rounding beyond what the sender's float already did.
pub fn decimal_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Decimal>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a number or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(self)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(Decimal::from(v)))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(Decimal::from(v)))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Decimal::from_str(&v.to_string())
                .or_else(|_| Decimal::from_scientific(&format!("{v:e}")))
                .map(Some)
                .map_err(|_| E::custom(format!("{v} is not a price")))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Decimal::from_str(v.trim()).map(Some).map_err(|_| E::custom(format!("{v:?} is not a price")))
        }
    }
    d.deserialize_option(V)
}

/// `{"gpus": [...]}` from `GET /v2/catalog/gpus`.
#[derive(Debug, Deserialize)]
pub struct CatalogGpus {
    /// The GPU types.
    pub gpus: Vec<CatalogGpu>,
}

/// One GPU type of the v2 catalog: per-GPU on-demand prices and, with `include=AVAILABILITY`,
/// the data centers that have it for the asked count.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogGpu {
    /// The `gpuTypeId`.
    pub id: String,
    /// Prices per GPU per hour.
    pub price: CatalogPrice,
    /// Sold on secure cloud.
    #[serde(default)]
    pub secure: Option<bool>,
    /// Sold on community cloud.
    #[serde(default)]
    pub community: Option<bool>,
    /// Most GPUs of this type in one pod, per cloud.
    #[serde(default)]
    pub max_count: Option<CloudCounts>,
    /// Where it is, with stock levels; absent when it is nowhere.
    #[serde(default)]
    pub data_centers: Vec<CatalogDataCenter>,
}

/// `price` of a catalog GPU.
#[derive(Debug, Deserialize)]
pub struct CatalogPrice {
    /// Secure cloud, USD per GPU-hour.
    #[serde(default, deserialize_with = "decimal_opt")]
    pub secure: Option<Decimal>,
    /// Community cloud, USD per GPU-hour.
    #[serde(default, deserialize_with = "decimal_opt")]
    pub community: Option<Decimal>,
}

/// `maxCount` of a catalog GPU.
#[derive(Debug, Deserialize)]
pub struct CloudCounts {
    /// Secure cloud.
    #[serde(default)]
    pub secure: Option<u32>,
    /// Community cloud.
    #[serde(default)]
    pub community: Option<u32>,
}

/// One place of a catalog GPU.
#[derive(Debug, Deserialize)]
pub struct CatalogDataCenter {
    /// Data-center id (`US-KS-2`).
    pub id: String,
    /// `NONE|LOW|MEDIUM|HIGH`.
    #[serde(default)]
    pub availability: Option<String>,
}

/// A stock level as a small ordinal (RunPod gives levels, not counts): NONE 0, LOW 1, MEDIUM 2,
/// HIGH 3. `None` for a level no table knows (the caller reports it and shows the offer as 1).
pub fn stock_level(availability: &str) -> Option<u32> {
    match availability.to_ascii_uppercase().as_str() {
        "NONE" => Some(0),
        "LOW" => Some(1),
        "MEDIUM" => Some(2),
        "HIGH" => Some(3),
        _ => None,
    }
}

/// `{"pods": [...]}` from `GET /v2/pods`.
#[derive(Debug, Deserialize)]
pub struct PodList {
    /// The account's pods; `null` or absent is a contract change, never "no pods".
    #[serde(default = "ListField::default")]
    pub pods: ListField<Pod>,
}

/// A REST v2 pod, the fields tgp reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    /// Pod id.
    pub id: String,
    /// The name tgp gave it (the attempt id).
    pub name: String,
    /// `PROVISIONING|STARTING|RUNNING|EXITED|ERROR|TERMINATED`.
    pub status: String,
    /// Environment (carries [`SPOT_MARKER`] on spot pods).
    #[serde(default)]
    pub env: BTreeMap<String, serde_json::Value>,
    /// SSH endpoints, once known.
    #[serde(default)]
    pub ssh: Option<PodSsh>,
    /// USD per hour for the whole pod (0 when stopped).
    #[serde(default, deserialize_with = "decimal_opt")]
    pub cost: Option<Decimal>,
    /// Null until the container is up.
    #[serde(default)]
    pub runtime: Option<PodRuntime>,
}

/// `ssh` of a v2 pod.
#[derive(Debug, Default, Deserialize)]
pub struct PodSsh {
    /// RunPod's SSH proxy (`<podHostId>@ssh.runpod.io`).
    #[serde(default)]
    pub proxy: Option<SshEndpoint>,
    /// Direct TCP to the pod's public port for 22.
    #[serde(default)]
    pub direct: Option<SshEndpoint>,
}

/// One SSH endpoint.
#[derive(Debug, Deserialize)]
pub struct SshEndpoint {
    /// Host.
    #[serde(default)]
    pub host: Option<String>,
    /// Port.
    #[serde(default)]
    pub port: Option<u16>,
    /// Login.
    #[serde(default)]
    pub username: Option<String>,
}

/// `runtime` of a v2 pod.
#[derive(Debug, Default, Deserialize)]
pub struct PodRuntime {
    /// Port mappings; may be null while the container comes up.
    #[serde(default)]
    pub ports: Option<Vec<RuntimePort>>,
}

/// One port mapping.
#[derive(Debug, Deserialize)]
pub struct RuntimePort {
    /// Container port.
    #[serde(default)]
    pub private: Option<u16>,
    /// Public port.
    #[serde(default)]
    pub public: Option<u16>,
    /// Address.
    #[serde(default)]
    pub ip: Option<String>,
}

impl Pod {
    /// Whether tgp launched it as spot (the env marker).
    pub fn is_spot(&self) -> bool {
        self.env.contains_key(SPOT_MARKER)
    }

    /// How to reach it: the direct endpoint when 22/tcp has a public port, else the proxy.
    pub fn connection(&self) -> Connection {
        let port22 = self
            .runtime
            .as_ref()
            .and_then(|r| r.ports.as_ref())
            .and_then(|ports| ports.iter().find(|p| p.private == Some(22)));
        let ssh = self.ssh.as_ref();
        let direct = ssh.and_then(|s| s.direct.as_ref());
        let proxy = ssh.and_then(|s| s.proxy.as_ref());
        let public_ip = port22.and_then(|p| p.ip.clone()).or_else(|| direct.and_then(|d| d.host.clone()));
        match direct.or(proxy) {
            Some(e) => {
                Connection { public_ip, ssh_host: e.host.clone(), ssh_port: e.port, ssh_user: e.username.clone() }
            }
            None => Connection {
                ssh_host: public_ip.clone(),
                ssh_port: port22.and_then(|p| p.public),
                ssh_user: public_ip.as_ref().map(|_| "root".to_string()),
                public_ip,
            },
        }
    }
}

/// What a v2 status value means. `None` for a value no table knows.
///
/// PROVISIONING and STARTING are booting; RUNNING is up once `runtime` is there (before that the
/// container is still being pulled: Starting); EXITED is an interruption: preempted for a spot
/// pod, stopped outside tgp otherwise (tgp never stops pods, it terminates them); ERROR is a pod
/// RunPod could not keep (host lost); TERMINATED is gone.
pub fn v2_status(status: &str, has_runtime: bool, spot: bool) -> Option<MachineStatus> {
    Some(match status {
        "PROVISIONING" | "STARTING" => MachineStatus::Starting,
        "RUNNING" if has_runtime => MachineStatus::Running,
        "RUNNING" => MachineStatus::Starting,
        "EXITED" if spot => MachineStatus::Interrupted(InterruptionReason::Preempted),
        "EXITED" => MachineStatus::Interrupted(InterruptionReason::StoppedOutsideTgp),
        "ERROR" => MachineStatus::Interrupted(InterruptionReason::HostLost),
        "TERMINATED" => MachineStatus::Terminated,
        _ => return None,
    })
}

/// What a GraphQL `desiredStatus` means (`podType` `INTERRUPTABLE` marks spot). CREATED and
/// RESTARTING are booting; RUNNING is up once `runtime` is there; EXITED is an interruption
/// (preempted for spot, stopped outside tgp otherwise); PAUSED is stopped outside tgp; DEAD is a
/// lost host; TERMINATED is gone. `None` for a value no table knows.
pub fn graphql_status(desired: &str, pod_type: Option<&str>, has_runtime: bool) -> Option<MachineStatus> {
    let spot = matches!(pod_type, Some("INTERRUPTABLE") | Some("BID"));
    Some(match desired {
        "CREATED" | "RESTARTING" => MachineStatus::Starting,
        "RUNNING" if has_runtime => MachineStatus::Running,
        "RUNNING" => MachineStatus::Starting,
        "EXITED" if spot => MachineStatus::Interrupted(InterruptionReason::Preempted),
        "EXITED" | "PAUSED" => MachineStatus::Interrupted(InterruptionReason::StoppedOutsideTgp),
        "DEAD" => MachineStatus::Interrupted(InterruptionReason::HostLost),
        "TERMINATED" => MachineStatus::Terminated,
        _ => return None,
    })
}

/// A v2 pod as tgp sees it, and whether its status value was unknown (the caller reports it).
/// An unknown status is treated as Starting: most likely a new intermediate state; Terminated
/// would make tgp relaunch (and pay twice) while the pod may be running, whereas Starting keeps
/// it watched and the boot timeout catches one that never comes up.
pub fn pod_instance(pod: &Pod) -> (ProviderInstance, bool) {
    let mapped = v2_status(&pod.status, pod.runtime.is_some(), pod.is_spot());
    let status = mapped.unwrap_or(MachineStatus::Starting);
    let connection = if status == MachineStatus::Running { pod.connection() } else { Connection::default() };
    let instance = ProviderInstance {
        id: pod.id.clone(),
        label: Some(pod.name.clone()).filter(|n| !n.is_empty()),
        status,
        raw_status: pod.status.clone(),
        connection,
        hourly_price: pod.cost.filter(|c| *c > Decimal::ZERO).map(Money::from_decimal),
        billing: Some(BillingGranularity::PER_SECOND),
    };
    (instance, mapped.is_none())
}

/// Parses a `GET /v2/pods` body (for tests and tools; the client decodes through the same types):
/// a `null` or absent `pods` is an error, as in the client.
pub fn parse_pod_list(body: &[u8]) -> Result<Vec<ProviderInstance>, serde_json::Error> {
    let list: PodList = serde_json::from_slice(body)?;
    let pods = list.pods.into_list("pods").map_err(<serde_json::Error as de::Error>::custom)?;
    Ok(pods.iter().map(|p| pod_instance(p).0).collect())
}

/// A GraphQL error entry.
#[derive(Debug, Deserialize)]
pub struct GqlError {
    /// The message (what every client reads).
    #[serde(default)]
    pub message: String,
    /// `extensions.code`, when given.
    #[serde(default)]
    pub extensions: Option<GqlExtensions>,
}

/// `extensions` of a GraphQL error.
#[derive(Debug, Deserialize)]
pub struct GqlExtensions {
    /// The code (`INTERNAL_SERVER_ERROR`, `POD_NOT_FOUND`, ...).
    #[serde(default)]
    pub code: Option<String>,
}

/// The GraphQL envelope; `data` is decoded only once `errors` is known to be empty.
#[derive(Debug, Deserialize)]
pub struct GqlEnvelope {
    /// The data, raw.
    #[serde(default)]
    pub data: Option<Box<serde_json::value::RawValue>>,
    /// Errors (resolver errors come with HTTP 200).
    #[serde(default)]
    pub errors: Vec<GqlError>,
}

/// RunPod's error bodies: v2 problem+json (`detail`, `title`, `errors`), GraphQL
/// (`errors[0].message`, `extensions.code`) and v1 (`error`).
pub fn parse_error(body: &[u8]) -> Option<(Option<String>, String)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text = |key: &str| v.get(key).and_then(|x| x.as_str()).map(str::to_string);
    if let Some(first) = v.get("errors").and_then(|e| e.as_array()).and_then(|a| a.first())
        && let Some(message) = first.get("message").and_then(|m| m.as_str())
    {
        let code = first.pointer("/extensions/code").and_then(|c| c.as_str()).map(str::to_string);
        return Some((code, message.to_string()));
    }
    if let Some(detail) = text("detail").or_else(|| text("title")) {
        let listed: Vec<String> = v
            .get("errors")
            .and_then(|e| e.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let message = if listed.is_empty() { detail } else { format!("{detail}: {}", listed.join("; ")) };
        return Some((text("title"), message));
    }
    text("error").or_else(|| text("message")).map(|m| (None, m))
}
