//! Renting an offer and destroying an instance on Vast.ai (shared/providers/vastai.md 3.2, 3.5).
//!
//! Before any money is spent, the spec is checked against what Vast takes (image, label, env names,
//! SSH key, bid range) and the offer is looked up again: gone means no capacity, a minimum bid
//! above tgp's bid means no capacity at that price. The rent itself sends `cancel_unavail: true`
//! so that a busy machine answers 410 `no_such_ask` instead of creating a stopped instance that
//! bills storage; an answer that still carries `new_contract` with a failure (a bid below the
//! minimum) has that stopped instance destroyed before the error is returned.

use reqwest::Method;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};
use tgp_actors::provider::{LaunchReceipt, LaunchSpec, ProviderError};
use tgp_events::Money;
use tgp_events::events::FailureClass;

use super::wire::CreateAnswer;
use super::{BILLING, Pricing, VastAiClient};

/// Longest `label` Vast takes on create.
pub const MAX_LABEL: usize = 256;
/// Longest `image` Vast takes.
pub const MAX_IMAGE: usize = 1024;
/// Longest `onstart` script Vast takes.
pub const MAX_ONSTART: usize = 4048;
/// Vast's bid range on create, $/h: 0.001 to 128.
fn bid_range() -> (Decimal, Decimal) {
    (Decimal::new(1, 3), Decimal::from(128))
}
/// SSH through Vast's proxy and direct to the host's mapped port (the CLI's `--ssh --direct`;
/// "ssh_direc" is Vast's own spelling).
pub const RUNTYPE: &str = "ssh_direc ssh_proxy";

/// The `onstart` script that installs the launch's SSH key next to the account's keys.
pub fn onstart_script(ssh_public_key: &str) -> String {
    format!(
        "mkdir -p /root/.ssh && chmod 700 /root/.ssh && echo '{}' >> /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys",
        ssh_public_key.trim()
    )
}

fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The create body for a spec, or why Vast cannot take it (checked before anything is rented).
pub fn create_body(spec: &LaunchSpec, disk_gb: u32) -> Result<Value, String> {
    let label = spec.attempt_id.as_str();
    if label.len() > MAX_LABEL {
        return Err(format!("label {label:?} is longer than Vast's {MAX_LABEL} characters"));
    }
    let image = spec.image.trim();
    if image.is_empty() || image.len() > MAX_IMAGE || image.contains(char::is_whitespace) {
        return Err(format!(
            "image {:?} is not a Docker image reference Vast takes (1..{MAX_IMAGE} characters, no spaces)",
            spec.image
        ));
    }
    // Vast's env object also carries Docker flags (`"-p 8000:8000": "1"`): only plain names pass.
    if let Some(bad) = spec.env.keys().find(|k| !valid_env_name(k)) {
        return Err(format!(
            "environment variable name {bad:?} is not valid (letters, digits, _; Vast reads other keys as Docker flags)"
        ));
    }
    let onstart = match spec.ssh_public_key.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(key) => {
            let known = ["ssh-", "ecdsa-", "sk-"].iter().any(|p| key.starts_with(p));
            if !known || key.contains(['\'', '\n', '\r']) {
                return Err("the SSH public key is not one OpenSSH line (ssh-ed25519 AAAA... comment)".into());
            }
            let script = onstart_script(key);
            if script.len() > MAX_ONSTART {
                return Err(format!(
                    "the SSH key makes the onstart script longer than Vast's {MAX_ONSTART} characters"
                ));
            }
            Some(script)
        }
    };
    let price = if spec.spot {
        let bid = spec.bid.ok_or("a spot launch on Vast needs a bid (without one Vast silently rents on demand)")?;
        let (low, high) = bid_range();
        let bid = bid.as_decimal();
        if bid < low || bid > high {
            return Err(format!("bid ${bid}/h is outside Vast's range ${low}..${high}"));
        }
        json!(bid.to_f64())
    } else {
        Value::Null
    };
    Ok(json!({
        "client_id": "me",
        "image": image,
        "env": spec.env.iter().map(|(k, v)| (k.clone(), Value::from(v.expose()))).collect::<serde_json::Map<_, _>>(),
        "price": price,
        "disk": disk_gb,
        "label": label,
        "onstart": onstart,
        "runtype": RUNTYPE,
        "cancel_unavail": true,
    }))
}

fn mentions(e: &ProviderError, what: &str) -> bool {
    e.code.as_deref() == Some(what) || e.message.contains(what)
}

/// Rents `spec.offer_id`, labelled with the attempt id.
pub async fn launch(client: &VastAiClient, spec: &LaunchSpec) -> Result<LaunchReceipt, ProviderError> {
    let invalid = |m: String| client.error(FailureClass::InvalidRequest, m);
    let offer_id: u64 =
        spec.offer_id.trim().parse().map_err(|_| invalid(format!("{:?} is not a Vast offer id", spec.offer_id)))?;
    let disk_gb = client.disk_for(spec.disk_gb);
    let mut body = create_body(spec, disk_gb).map_err(invalid)?;
    let pricing = if spec.spot { Pricing::Bid } else { Pricing::OnDemand };

    // Look the offer up again: gone, too small or above the bid costs nothing to find out.
    let query = json!({
        "id": {"eq": offer_id},
        "rentable": {"eq": true},
        "rented": {"eq": false},
        "type": pricing.wire(),
        "allocated_storage": disk_gb,
        "limit": 1,
    });
    let offers = client.search(&query).await?;
    let capacity = |m: String| client.error(FailureClass::Capacity, m).with_code("no_such_ask");
    let offer = offers
        .into_iter()
        .find(|o| o.id == offer_id)
        .ok_or_else(|| capacity(format!("offer {offer_id} is no longer available")))?;
    if offer.num_gpus < spec.gpu_count {
        return Err(invalid(format!("offer {offer_id} has {} GPUs, {} asked for", offer.num_gpus, spec.gpu_count)));
    }
    let hourly_price = match (spec.spot, spec.bid) {
        (true, Some(bid)) => {
            // tgp's bid is the whole hourly price, storage included; Vast takes the compute part.
            let storage = offer.storage_total_cost.ok_or_else(|| {
                client.error(
                    FailureClass::ContractChanged,
                    format!("offer {offer_id} has no storage_total_cost: the storage a bid rental pays is unknown"),
                )
            })?;
            let compute = bid.as_decimal() - storage;
            if let Some(min) = offer.min_bid.filter(|min| *min > compute) {
                return Err(client
                    .error(
                        FailureClass::Capacity,
                        format!(
                            "offer {offer_id}: the minimum bid rose to ${min}/h (plus ${storage}/h storage), above the bid {bid}/h"
                        ),
                    )
                    .with_code("invalid_price"));
            }
            if compute < bid_range().0 {
                return Err(invalid(format!(
                    "bid {bid}/h does not cover the ${storage}/h storage of {disk_gb} GB on offer {offer_id}"
                )));
            }
            body["price"] = json!(compute.to_f64());
            bid
        }
        _ => offer.dph_total.map(Money::from_decimal).ok_or_else(|| {
            client.error(FailureClass::ContractChanged, format!("offer {offer_id} has no dph_total price"))
        })?,
    };

    let endpoint = "PUT /api/v0/asks/{id}/";
    let request = client.http.request(Method::PUT, &format!("/api/v0/asks/{offer_id}/")).json(&body);
    let answer: CreateAnswer = match client.http.json(endpoint, request).await {
        Ok(answer) => answer,
        Err(mut e) => {
            if e.class == FailureClass::NotFound || mentions(&e, "no_such_ask") {
                // 404: the offer went between search and rent; 410: it cannot start now.
                e.class = FailureClass::Capacity;
            } else if mentions(&e, "invalid_price") {
                // A bid below the minimum may have left a stopped instance behind.
                e.class = FailureClass::Capacity;
                sweep(client, spec.attempt_id.as_str()).await;
            }
            return Err(e);
        }
    };
    match (answer.success, answer.new_contract) {
        (Some(false), contract) => {
            if let Some(id) = contract {
                // Vast made a stopped instance anyway (bid below the minimum): destroy it.
                if let Err(e) = terminate(client, &id.to_string()).await {
                    tracing::warn!(instance = id, error = %e, "could not destroy the stopped instance of a failed rent");
                }
            }
            let code = answer.error.unwrap_or_else(|| "unknown".into());
            let class = match code.as_str() {
                "invalid_price" | "no_such_ask" => FailureClass::Capacity,
                _ => FailureClass::InvalidRequest,
            };
            Err(client
                .error(class, format!("{endpoint}: {}", answer.msg.unwrap_or_else(|| code.clone())))
                .with_code(code))
        }
        (_, Some(id)) => Ok(LaunchReceipt { provider_instance_id: id.to_string(), hourly_price, billing: BILLING }),
        // Success without an id: an instance may exist; the status poll settles it by label.
        (_, None) => Err(client.error(FailureClass::Unknown, format!("{endpoint}: success without new_contract"))),
    }
}

/// Destroys whatever carries `label` (best effort, logged): what a failed rent may leave.
async fn sweep(client: &VastAiClient, label: &str) {
    let filters = json!({"label": {"eq": label}});
    match client.list_all(Some(&filters)).await {
        Ok(found) => {
            for machine in found.iter().filter(|m| m.label.as_deref() == Some(label)) {
                if let Err(e) = terminate(client, &machine.id).await {
                    tracing::warn!(instance = %machine.id, error = %e, "could not destroy a failed rent's instance");
                }
            }
        }
        Err(e) => tracing::warn!(label, error = %e, "could not look for a failed rent's instance"),
    }
}

/// Destroys an instance; gone already (404, `no_such_instance`, `not_found`) is success.
pub async fn terminate(client: &VastAiClient, provider_instance_id: &str) -> Result<(), ProviderError> {
    let id = client.instance_id(provider_instance_id)?;
    let endpoint = "DELETE /api/v0/instances/{id}/";
    let gone = |code: Option<&str>| matches!(code, Some("no_such_instance" | "not_found"));
    let request = client.http.request(Method::DELETE, &format!("/api/v0/instances/{id}/")).json(&json!({}));
    match client.http.json::<Value>(endpoint, request).await {
        Ok(answer) => {
            if answer.get("success").and_then(Value::as_bool) != Some(false) {
                return Ok(());
            }
            let code = answer.get("error").and_then(Value::as_str);
            if gone(code) {
                return Ok(());
            }
            let message = answer.get("msg").and_then(Value::as_str).unwrap_or("destroy refused");
            let error = client.error(FailureClass::InvalidRequest, format!("{endpoint}: {message}"));
            Err(match code {
                Some(code) => error.with_code(code),
                None => error,
            })
        }
        Err(e) if e.class == FailureClass::NotFound || gone(e.code.as_deref()) => Ok(()),
        Err(e) => Err(e),
    }
}
