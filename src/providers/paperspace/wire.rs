//! Paperspace's v1 wire format as the client reads it, the translation tables (GPU and region
//! names, both ways, in this one place), and the machine `state` table.
//!
//! Decoding is tolerant: unknown fields are ignored; the fields tgp needs are required, so a
//! renamed one is a `contract_changed` error that names it.

use serde::{Deserialize, Serialize};
use tgp_actors::provider::MachineStatus;
use tgp_events::events::InterruptionReason;
use tgp_events::{GpuType, Region};

use crate::providers::http::ListField;

// ---------------------------------------------------------------------------------------------
// Translation tables.

/// Base machine-type label (without the `x<N>` GPU-count suffix) to standard GPU type. Labels not
/// here (`A4000`, `A5000`, `P4000`, `P5000`, `P6000`, `RTX4000`, `RTX5000`, `GPU+`) have no
/// standard name: their offers are kept with `gpu_type: None`.
const GPU_TABLE: [(&str, GpuType); 6] = [
    ("H100", GpuType::H100),
    ("A100-80G", GpuType::A100_80GB),
    ("A100", GpuType::A100_40GB),
    ("A6000", GpuType::A6000),
    ("V100", GpuType::V100),
    ("V100-32G", GpuType::V100),
];

/// Region: the API's string, its short code (used in offer ids), the standard region.
const REGION_TABLE: [(&str, &str, &str); 3] = [
    ("East Coast (NY2)", "NY2", "us-east"),
    ("West Coast (CA1)", "CA1", "us-west"),
    ("Europe (AMS1)", "AMS1", "eu-west"),
];

/// The standard GPU type of a base machine-type label.
pub fn gpu_from_label(base: &str) -> Option<GpuType> {
    GPU_TABLE.iter().find(|(l, _)| *l == base).map(|(_, g)| *g)
}

/// The base machine-type label of a standard GPU type (the 16 GB `V100` for V100).
pub fn label_from_gpu(gpu: GpuType) -> Option<&'static str> {
    GPU_TABLE.iter().find(|(_, g)| *g == gpu).map(|(l, _)| *l)
}

/// The standard region of an API region string.
pub fn region_from_api(api: &str) -> Option<Region> {
    REGION_TABLE.iter().find(|(a, _, _)| *a == api).and_then(|(_, _, r)| r.parse().ok())
}

/// The API region string of a standard region.
pub fn api_from_region(region: &Region) -> Option<&'static str> {
    REGION_TABLE.iter().find(|(_, _, r)| *r == region.as_str()).map(|(a, _, _)| *a)
}

/// The short code (`NY2`) of an API region string, for offer ids; unknown strings stay as sent.
pub fn short_from_api(api: &str) -> &str {
    REGION_TABLE.iter().find(|(a, _, _)| *a == api).map_or(api, |(_, s, _)| *s)
}

/// The API region string of a short code; unknown codes are taken as API strings already.
pub fn api_from_short(short: &str) -> &str {
    REGION_TABLE.iter().find(|(_, s, _)| *s == short).map_or(short, |(a, _, _)| *a)
}

/// Splits a machine-type label into its base and GPU count: `A100-80Gx8` is (`A100-80G`, 8);
/// a label without a numeric `x<N>` suffix is one GPU.
pub fn split_label(label: &str) -> (&str, u32) {
    match label.rsplit_once('x') {
        Some((base, n)) if !base.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (base, n.parse().unwrap_or(1))
        }
        _ => (label, 1),
    }
}

/// Machine types SkyPilot creates with `enableNvlink: true`.
pub fn wants_nvlink(label: &str) -> bool {
    matches!(label, "H100x8" | "A100-80Gx8")
}

/// Templates SkyPilot hard-codes because H100 machines need H100-specific images.
pub fn default_template(label: &str) -> Option<&'static str> {
    match label {
        "H100" => Some("tiq8mhti"),
        "H100x8" => Some("tvimtol9"),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Machine states.

/// Every `state` value of the note (§6), mapped. `None`: a value no table knows (the caller
/// reports it and treats the machine as starting).
///
/// tgp never stops a Paperspace machine (terminating deletes it), so `stopping` and `off` mean
/// someone or something turned it off outside tgp: a console user, the auto-shutdown timer, an
/// unpaid balance, or a create that failed for capacity (the create event ends in `error` and the
/// machine stays `off`). Paperspace has no preemptible machines, hence no preemption state.
pub fn map_state(state: &str) -> Option<MachineStatus> {
    Some(match state {
        "provisioning" | "starting" | "serviceready" | "restarting" | "upgrading" => MachineStatus::Starting,
        "ready" => MachineStatus::Running,
        "stopping" | "off" => MachineStatus::Interrupted(InterruptionReason::StoppedOutsideTgp),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Wire shapes.

/// A machine (`GET /machines/{id}`, list items, `data` of mutations); only what tgp reads.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    /// `ps` + 7 characters.
    pub id: String,
    /// The name tgp gave it (the attempt id).
    pub name: String,
    /// See [`map_state`].
    pub state: String,
    /// `A100-80G`, `H100x8`, ...
    pub machine_type: String,
    /// `East Coast (NY2)`, ...
    pub region: String,
    /// Null until a dynamic IP is attached (at power-on).
    #[serde(default)]
    pub public_ip: Option<String>,
    /// Set once the machine is deleted.
    #[serde(default)]
    pub dt_deleted: Option<String>,
}

/// One page of a list endpoint.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// This page's items; `null` or absent is a contract change, never an empty page.
    #[serde(default = "ListField::default")]
    pub items: ListField<T>,
    /// More pages follow.
    pub has_more: bool,
    /// The cursor for `after=`, when more follow.
    #[serde(default)]
    pub next_page: Option<String>,
}

/// `{"data": machine, "event": ...}`, the answer to mutations.
#[derive(Clone, Debug, Deserialize)]
pub struct MachineMutation {
    /// The machine after the call.
    pub data: Machine,
}

/// `GET /machine-availability`.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct Availability {
    /// Point-in-time only: a create can still fail for capacity.
    pub available: bool,
}

/// An OS template (`GET /os-templates` items), for the default template lookup.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OsTemplate {
    /// `t…`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `Ubuntu 22.04`, ...
    #[serde(default)]
    pub operating_system_label: Option<String>,
    /// Machine types it can boot.
    #[serde(default)]
    pub available_machine_types: Vec<TemplateMachineType>,
}

/// One machine type a template can boot.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMachineType {
    /// The machine type label.
    pub machine_type_label: String,
    /// Whether it can boot it now.
    #[serde(default)]
    pub is_available: bool,
}

/// A startup script (only its id and name matter to tgp).
#[derive(Clone, Debug, Deserialize)]
pub struct StartupScript {
    /// `s…`.
    pub id: String,
    /// tgp names it after the attempt.
    pub name: String,
}

/// `POST /startup-scripts` body: how tgp passes the SSH key and environment.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateStartupScript<'a> {
    /// The attempt id.
    pub name: &'a str,
    /// A shell script run as root at first boot.
    pub script: &'a str,
    /// Only at first boot.
    pub is_run_once: bool,
    /// On.
    pub is_enabled: bool,
}

/// `POST /machines` body.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateMachine<'a> {
    /// The attempt id, so reconciliation finds the machine by name.
    pub name: &'a str,
    /// Machine type label.
    pub machine_type: &'a str,
    /// API region string.
    pub region: &'a str,
    /// GB.
    pub disk_size: u32,
    /// OS template.
    pub template_id: &'a str,
    /// `dynamic`: an IP while powered on, nothing billed while idle.
    pub public_ip_type: &'a str,
    /// The SSH key and environment script, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_script_id: Option<&'a str>,
    /// Start now.
    pub start_on_create: bool,
    /// For 8-GPU types.
    pub enable_nvlink: bool,
    /// No auto shutdown: tgp decides when a machine ends.
    pub auto_shutdown_enabled: bool,
    /// No password email per machine.
    pub email_password: bool,
}

/// Paperspace's v1 error envelope: `{"code", "message", "details"?, "issues"?}`.
pub fn parse_error_body(body: &[u8]) -> Option<(Option<String>, String)> {
    #[derive(Deserialize)]
    struct Issue {
        message: String,
    }
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(default)]
        code: Option<String>,
        message: String,
        #[serde(default)]
        issues: Vec<Issue>,
    }
    let envelope: Envelope = serde_json::from_slice(body).ok()?;
    let mut message = envelope.message;
    for issue in envelope.issues {
        message.push_str("; ");
        message.push_str(&issue.message);
    }
    Some((envelope.code, message))
}

#[cfg(test)]
mod tests {
    use super::{
        GPU_TABLE, REGION_TABLE, api_from_region, api_from_short, gpu_from_label, label_from_gpu, parse_error_body,
        region_from_api, short_from_api, split_label,
    };
    use tgp_events::{GpuType, Region};

    #[test]
    fn labels_split_into_base_and_count() {
        assert_eq!(split_label("A100-80Gx8"), ("A100-80G", 8));
        assert_eq!(split_label("H100"), ("H100", 1));
        assert_eq!(split_label("RTX4000"), ("RTX4000", 1));
        assert_eq!(split_label("GPU+"), ("GPU+", 1));
        assert_eq!(split_label("x2"), ("x2", 1));
    }

    #[test]
    fn tables_translate_both_ways() {
        for (label, gpu) in GPU_TABLE {
            assert_eq!(gpu_from_label(label), Some(gpu));
        }
        assert_eq!(label_from_gpu(GpuType::V100), Some("V100"));
        assert_eq!(label_from_gpu(GpuType::RTX4090), None);
        for (api, _short, std) in REGION_TABLE {
            let region: Region = std.parse().unwrap();
            assert_eq!(region_from_api(api), Some(region.clone()));
            assert_eq!(api_from_region(&region), Some(api));
            assert_eq!(api_from_short(short_from_api(api)), api);
        }
    }

    #[test]
    fn errors_keep_code_message_and_issues() {
        let body = br#"{"code":"BAD_REQUEST","message":"Invalid input","issues":[{"message":"diskSize too small"}]}"#;
        assert_eq!(
            parse_error_body(body),
            Some((Some("BAD_REQUEST".into()), "Invalid input; diskSize too small".into()))
        );
        assert_eq!(parse_error_body(b"<html>"), None);
    }
}
