//! Lambda Cloud's JSON shapes, as the client reads and writes them (spec v1.10.0, see
//! `shared/providers/lambda.md`), and its error envelope. Unknown fields are ignored everywhere
//! (Lambda adds fields such as `workspace_id`, `tags`, `actions` over time); a missing required
//! field is a contract change that names the field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tgp_events::events::FailureClass;

use crate::providers::http::ListField;

/// Every successful answer: `{"data": ...}`.
#[derive(Debug, Deserialize)]
pub struct Envelope<T> {
    /// The payload.
    pub data: T,
}

/// A list answer, `{"data": [...]}`, read strictly: `data` `null` or absent is a contract
/// change, never an empty account ([`ListField`]).
#[derive(Debug, Deserialize)]
pub struct ListEnvelope<T> {
    /// The list.
    #[serde(default = "ListField::default")]
    pub data: ListField<T>,
}

/// One entry of `GET /instance-types` (`data` is a map keyed by the type name).
#[derive(Debug, Deserialize)]
pub struct InstanceTypeEntry {
    /// The type and its price.
    pub instance_type: InstanceType,
    /// Regions where a launch should succeed right now; `[]` when sold out everywhere.
    pub regions_with_capacity_available: Vec<RegionRef>,
}

/// An instance type: name, price in integer US cents per hour, specs.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct InstanceType {
    /// `gpu_1x_h100_pcie`.
    pub name: String,
    /// `1x H100 (80 GB PCIe)`.
    #[serde(default)]
    pub description: String,
    /// `H100 (80 GB PCIe)`.
    #[serde(default)]
    pub gpu_description: String,
    /// Whole machine, integer cents per hour, the same in every region.
    pub price_cents_per_hour: i64,
    /// Hardware.
    pub specs: Specs,
}

/// Hardware of an instance type.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Specs {
    /// GPUs in the machine (0 for `cpu_*` types).
    pub gpus: u32,
    /// vCPUs.
    #[serde(default)]
    pub vcpus: u32,
    /// RAM in GiB.
    #[serde(default)]
    pub memory_gib: u32,
    /// Local disk in GiB.
    #[serde(default)]
    pub storage_gib: u32,
}

/// A region as Lambda names it.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct RegionRef {
    /// `us-east-1`.
    pub name: String,
    /// `Virginia, USA`.
    #[serde(default)]
    pub description: String,
}

/// An instance (`GET /instances`, `GET /instances/{id}`, terminate answers).
#[derive(Debug, Deserialize)]
pub struct Instance {
    /// 32 hex characters.
    pub id: String,
    /// The name given at launch (tgp writes the attempt id here).
    #[serde(default)]
    pub name: Option<String>,
    /// Public IPv4; absent or null while booting.
    #[serde(default)]
    pub ip: Option<String>,
    /// Raw status: `booting`, `active`, `unhealthy`, `terminating`, `terminated`, `preempted`.
    pub status: String,
    /// The type, with its price.
    pub instance_type: InstanceType,
    /// Tags (v1.10.0); tgp also writes its attempt id as tag `tgp-attempt`.
    #[serde(default)]
    pub tags: Option<Vec<Tag>>,
}

/// A key/value tag.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Tag {
    /// `^[a-z][a-z0-9-:]+$`, at most 55 characters.
    pub key: String,
    /// At most 128 characters.
    pub value: String,
}

/// `POST /instance-operations/launch` answer.
#[derive(Debug, Deserialize)]
pub struct LaunchAnswer {
    /// The new instance ids (one: a launch without `quantity` starts one machine).
    pub instance_ids: Vec<String>,
}

/// `POST /instance-operations/terminate` answer.
#[derive(Debug, Deserialize)]
pub struct TerminateAnswer {
    /// The instances now terminating (full Instance objects; only their presence matters).
    pub terminated_instances: Vec<serde::de::IgnoredAny>,
}

/// An SSH key as `GET /ssh-keys` lists it.
#[derive(Debug, Deserialize)]
pub struct SshKey {
    /// Its name, what a launch refers to.
    pub name: String,
    /// The public half.
    #[serde(default)]
    pub public_key: Option<String>,
}

/// `POST /instance-operations/launch` body.
#[derive(Debug, Serialize)]
pub struct LaunchBody {
    /// Region code.
    pub region_name: String,
    /// Instance type name.
    pub instance_type_name: String,
    /// Exactly one key name.
    pub ssh_key_names: Vec<String>,
    /// No filesystems (dstack sends `[]` too).
    pub file_system_names: Vec<String>,
    /// The attempt id.
    pub name: String,
    /// The attempt id again, as a tag.
    pub tags: Vec<Tag>,
    /// cloud-init user data that runs the image with its environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

/// Lambda's error envelope: `{"error": {"code", "message", "suggestion"?}}`.
#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    suggestion: Option<String>,
    #[serde(default)]
    field_errors: Option<BTreeMap<String, serde_json::Value>>,
}

/// Parses Lambda's error envelope into (code, message); the suggestion and any v1.5.3
/// `field_errors` are appended to the message so a user sees them.
pub fn parse_error(body: &[u8]) -> Option<(Option<String>, String)> {
    let envelope: ErrorEnvelope = serde_json::from_slice(body).ok()?;
    let e = envelope.error;
    let mut message = e.message;
    if let Some(s) = e.suggestion.filter(|s| !s.is_empty()) {
        message = format!("{message} ({s})");
    }
    if let Some(fields) = e.field_errors.filter(|f| !f.is_empty()) {
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        message = format!("{message} [fields: {}]", names.join(", "));
    }
    Some((Some(e.code), message))
}

/// The class Lambda's own error code calls for, where it differs from what the HTTP status
/// says (Lambda answers "no capacity" and "resource not found" as 400). `None`: keep the status'.
/// Clients branch on `code` only, as the spec asks; never on the message.
pub fn class_for_code(code: &str) -> Option<FailureClass> {
    Some(match code {
        "instance-operations/launch/insufficient-capacity" | "global/quota-exceeded" => FailureClass::Capacity,
        "global/object-does-not-exist" | "global/not-found" => FailureClass::NotFound,
        "global/invalid-api-key" | "global/account-inactive" | "global/forbidden" | "global/invalid-address" => {
            FailureClass::Auth
        }
        "global/internal-error" => FailureClass::ProviderOutage,
        "global/unknown" => FailureClass::Unknown,
        c if c.starts_with("provider/") => FailureClass::ProviderOutage,
        _ => return None,
    })
}
