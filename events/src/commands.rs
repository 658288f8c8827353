//! The commands programs send to tgp. The launch command's JSON is public API:
//!
//! ```json
//! {"gpu_type": "H100", "gpu_count": 1, "regions": ["us-east"], "max_hourly_price": "3.00",
//!  "spot_policy": "prefer-spot", "image": "ubuntu:22.04", "env": {},
//!  "ssh_public_key": "ssh-ed25519 AAAA...",
//!  "relaunch": {"max_attempts": 5, "on_demand_fallback": true, "backoff_seconds": 5, "max_backoff_seconds": 300},
//!  "max_lifetime": "8h", "budget": "40.00", "wait_for_capacity": "30m",
//!  "disk_gb": 500, "min_cpu_ram_gb": 64, "min_vcpus": 16, "providers": ["vastai", "runpod"],
//!  "exclude_providers": [], "min_reliability": "0.98", "secure_only": true}
//! ```
//!
//! Decoding goes through [`LaunchCommand::from_json`], which also validates, so a bad command is
//! refused with one message that says exactly what is wrong. Every size has a limit
//! ([`crate::limits`]), checked before the command is decoded, and a refusal quotes at most 200
//! bytes of what it refuses, so every refused command fits as a dead letter.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::gpu::GpuType;
use crate::ids::{InstanceId, ProviderName};
use crate::limits::{
    MAX_COMMAND_BYTES, MAX_ENV_BYTES, MAX_ENV_NAME_BYTES, MAX_ENV_VALUE_BYTES, MAX_ENV_VARS, MAX_IMAGE_BYTES,
    MAX_REASON_BYTES, MAX_REGIONS, MAX_SCALAR_BYTES, MAX_SSH_KEY_BYTES, bounded, quote,
};
use crate::money::Money;
use crate::needs::Needs;
use crate::policy::{RelaunchPolicy, SpotPolicy};
use crate::region::Region;
use crate::sealed::{EnvValue, SealedValue, Secret};
use crate::span::Span;

/// Most GPUs one instance may ask for; no provider offers more in one machine.
pub const MAX_GPU_COUNT: u32 = 16;

/// The longest `max_lifetime` a launch may ask for: a year.
pub const MAX_LIFETIME: Span = Span::from_secs(366 * 86_400);

/// The largest `budget` a launch may set, in dollars.
pub const MAX_BUDGET: Money = Money::from_dollars(1_000_000);

/// How long a chain waits for capacity when no offer fits, unless its launch says otherwise.
pub const DEFAULT_WAIT_FOR_CAPACITY: Span = Span::from_secs(30 * 60);

/// The longest `wait_for_capacity` a launch may ask for: a week.
pub const MAX_WAIT_FOR_CAPACITY: Span = Span::from_secs(7 * 86_400);

/// The image used when a launch names none.
pub const DEFAULT_IMAGE: &str = "ubuntu:22.04";

/// Ask for one GPU instance.
///
/// `V` is the form of the env values: [`Secret`] (the default) as tgp reads a command, `String`
/// as a client program writes one, [`SealedValue`] as the journal keeps it ([`LaunchRequest`]).
/// A `LaunchCommand<Secret>` cannot be serialized at all, so its plain values cannot reach an
/// event, a reply or a log by mistake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchCommand<V = Secret> {
    /// The standard GPU type, e.g. `H100` or `A100-80GB`.
    pub gpu_type: GpuType,
    /// GPUs in the one machine, 1 to [`MAX_GPU_COUNT`].
    pub gpu_count: u32,
    /// Acceptable standard regions; empty (the default) means anywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<Region>,
    /// The most the user pays per GPU per hour, a decimal string. An offer fits when its hourly
    /// price for the whole machine is at most this times `gpu_count`.
    pub max_hourly_price: Money,
    /// Spot or on-demand; default `prefer-spot`.
    #[serde(default)]
    pub spot_policy: SpotPolicy,
    /// Container or machine image; default [`DEFAULT_IMAGE`].
    #[serde(default = "default_image")]
    pub image: String,
    /// Environment variables for the image; default none. Values may be secrets: tgp journals
    /// them sealed, and shows only their names.
    #[serde(default = "BTreeMap::new", skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, V>,
    /// Public key allowed to log in over SSH; default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_public_key: Option<String>,
    /// What to do on failures and interruptions; default 5 attempts with on-demand fallback.
    #[serde(default)]
    pub relaunch: RelaunchPolicy,
    /// Terminate the chain this long after it was requested, wherever it is (`8h`, `1h30m`);
    /// default never. Forgotten instances are the most expensive kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lifetime: Option<Span>,
    /// The most the whole chain may cost, every run and relaunch included, a decimal string of
    /// dollars; default no limit. The chain is terminated before a run would bill past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Money>,
    /// When no offer fits, how long the chain waits for one (selecting again at each offers
    /// refresh) before it fails; default [`DEFAULT_WAIT_FOR_CAPACITY`]. `0s` fails at once.
    /// Markets run dry for minutes at a time; a chain with attempts left should not end for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for_capacity: Option<Span>,
    /// Disk for the machine in GB; default each provider's own (see `docs/providers.md`). The
    /// price selected, journaled and billed is the price with this disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_gb: Option<u32>,
    /// At least this much CPU RAM, in GB; default any. Offers that do not say are excluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_cpu_ram_gb: Option<u32>,
    /// At least this many vCPUs; default any. Offers that do not say are excluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_vcpus: Option<u32>,
    /// Only these providers (by configured name); default every configured one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderName>,
    /// Never these providers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_providers: Vec<ProviderName>,
    /// At least this host reliability, 0 to 1 (a decimal string, e.g. `"0.98"`); default any.
    /// Offers whose provider gives no score are excluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_reliability: Option<Decimal>,
    /// Only secure hosts (RunPod's secure cloud, Vast's datacenter hosts, Lambda, Paperspace);
    /// default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secure_only: bool,
    /// On `tgp.api.launch` only: does what `Nats-Msg-Id` does on `tgp.commands.launch`. The key
    /// becomes the instance id, so it must be a valid instance id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// A launch as accepted and journaled: its env values sealed (see [`crate::sealed`]).
pub type LaunchRequest = LaunchCommand<SealedValue>;

fn default_image() -> String {
    DEFAULT_IMAGE.to_string()
}

/// Stop an instance chain, wherever it is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminateCommand {
    /// The instance to terminate.
    pub instance_id: InstanceId,
    /// Why, for the journal; default "requested by user".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Why a command was refused. The message is meant for the person who wrote the command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The body is not JSON of the command's shape (serde's message names the field and position).
    #[error("cannot decode the command: {0}")]
    Malformed(String),
    /// The JSON has the right shape but a value is not allowed.
    #[error("invalid command: {0}")]
    Invalid(String),
}

impl CommandError {
    fn malformed(e: serde_json::Error) -> Self {
        CommandError::Malformed(bounded(e.to_string()))
    }

    /// The stable code used in error replies (`malformed_command`, `invalid_command`).
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::Malformed(_) => "malformed_command",
            CommandError::Invalid(_) => "invalid_command",
        }
    }
}

impl LaunchCommand<Secret> {
    /// Decodes and validates a launch command from its JSON body.
    pub fn from_json(body: &[u8]) -> Result<Self, CommandError> {
        check_sizes(body, launch_string_limit)?;
        let cmd: LaunchCommand = serde_json::from_slice(body).map_err(CommandError::malformed)?;
        cmd.validate()?;
        Ok(cmd)
    }
}

impl<V> LaunchCommand<V> {
    /// The same launch with `env` in place of its env (sealing and unsealing go through here).
    pub fn with_env<W>(self, env: BTreeMap<String, W>) -> LaunchCommand<W> {
        LaunchCommand {
            gpu_type: self.gpu_type,
            gpu_count: self.gpu_count,
            regions: self.regions,
            max_hourly_price: self.max_hourly_price,
            spot_policy: self.spot_policy,
            image: self.image,
            env,
            ssh_public_key: self.ssh_public_key,
            relaunch: self.relaunch,
            max_lifetime: self.max_lifetime,
            budget: self.budget,
            wait_for_capacity: self.wait_for_capacity,
            disk_gb: self.disk_gb,
            min_cpu_ram_gb: self.min_cpu_ram_gb,
            min_vcpus: self.min_vcpus,
            providers: self.providers,
            exclude_providers: self.exclude_providers,
            min_reliability: self.min_reliability,
            secure_only: self.secure_only,
            idempotency_key: self.idempotency_key,
        }
    }

    /// What the machine must have beyond its GPUs, gathered for selection and the providers.
    pub fn needs(&self) -> Needs {
        Needs {
            disk_gb: self.disk_gb,
            min_cpu_ram_gb: self.min_cpu_ram_gb,
            min_vcpus: self.min_vcpus,
            providers: self.providers.clone(),
            exclude_providers: self.exclude_providers.clone(),
            min_reliability: self.min_reliability,
            secure_only: self.secure_only,
        }
    }

    /// How long to wait for capacity: the command's `wait_for_capacity`, or the default.
    pub fn capacity_wait(&self) -> Span {
        self.wait_for_capacity.unwrap_or(DEFAULT_WAIT_FOR_CAPACITY)
    }

    /// The most the whole machine may cost per hour: the per-GPU maximum times the GPU count.
    pub fn max_machine_price(&self) -> Money {
        self.max_hourly_price * self.gpu_count
    }
}

impl<V: EnvValue> LaunchCommand<V> {
    /// Checks what the types alone cannot: counts, sizes, prices, the SSH key's form and the
    /// idempotency key.
    pub fn validate(&self) -> Result<(), CommandError> {
        if self.gpu_count == 0 || self.gpu_count > MAX_GPU_COUNT {
            return Err(CommandError::Invalid(format!(
                "gpu_count must be 1 to {MAX_GPU_COUNT}, got {}",
                self.gpu_count
            )));
        }
        if self.max_hourly_price.is_negative() || self.max_hourly_price == Money::ZERO {
            return Err(CommandError::Invalid(format!(
                "max_hourly_price must be above zero, got {}",
                self.max_hourly_price.as_decimal()
            )));
        }
        if let Some(budget) = self.budget
            && (budget.is_negative() || budget == Money::ZERO || budget > MAX_BUDGET)
        {
            return Err(CommandError::Invalid(format!(
                "budget must be above zero and at most {}, got {}",
                MAX_BUDGET.as_decimal(),
                budget.as_decimal()
            )));
        }
        if self.max_lifetime == Some(Span::from_secs(0)) {
            return Err(CommandError::Invalid("max_lifetime must be longer than zero".into()));
        }
        if let Some(lifetime) = self.max_lifetime
            && lifetime > MAX_LIFETIME
        {
            return Err(CommandError::Invalid(format!("max_lifetime must be at most {MAX_LIFETIME}, got {lifetime}")));
        }
        if let Some(wait) = self.wait_for_capacity
            && wait > MAX_WAIT_FOR_CAPACITY
        {
            return Err(CommandError::Invalid(format!(
                "wait_for_capacity must be at most {MAX_WAIT_FOR_CAPACITY}, got {wait}"
            )));
        }
        if self.relaunch.backoff_seconds > self.relaunch.max_backoff_seconds {
            return Err(CommandError::Invalid(format!(
                "relaunch.backoff_seconds ({}) must not exceed relaunch.max_backoff_seconds ({})",
                self.relaunch.backoff_seconds, self.relaunch.max_backoff_seconds
            )));
        }
        if self.relaunch.max_attempts == 0 {
            return Err(CommandError::Invalid("relaunch.max_attempts must be at least 1".into()));
        }
        self.needs().validate().map_err(CommandError::Invalid)?;
        self.validate_sizes()?;
        if self.image.trim().is_empty() {
            return Err(CommandError::Invalid("image must not be empty".into()));
        }
        if self.image.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(CommandError::Invalid(format!(
                "image {} must not hold spaces or control characters",
                quote(&self.image)
            )));
        }
        for name in self.env.keys() {
            let mut chars = name.chars();
            let starts_well = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            if !starts_well || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(CommandError::Invalid(format!(
                    "env name {} must be letters, digits and '_', not starting with a digit",
                    quote(name)
                )));
            }
        }
        if let Some(key) = &self.ssh_public_key {
            crate::ssh_key::check(key).map_err(|e| CommandError::Invalid(e.to_string()))?;
        }
        if let Some(key) = &self.idempotency_key {
            key.parse::<InstanceId>().map_err(|e| CommandError::Invalid(format!("idempotency_key: {e}")))?;
        }
        Ok(())
    }

    /// The size limits of [`crate::limits`] on the decoded command (the same figures
    /// [`LaunchCommand::from_json`] checks on the JSON).
    fn validate_sizes(&self) -> Result<(), CommandError> {
        let too_long = |what: &str, value: &str, max: usize| {
            CommandError::Invalid(format!("{what} {} is {} bytes, at most {max}", quote(value), value.len()))
        };
        if self.image.len() > MAX_IMAGE_BYTES {
            return Err(too_long("image", &self.image, MAX_IMAGE_BYTES));
        }
        if self.regions.len() > MAX_REGIONS {
            return Err(CommandError::Invalid(format!("regions lists {}, at most {MAX_REGIONS}", self.regions.len())));
        }
        if self.env.len() > MAX_ENV_VARS {
            return Err(CommandError::Invalid(format!(
                "env sets {} variables, at most {MAX_ENV_VARS}",
                self.env.len()
            )));
        }
        for (name, value) in &self.env {
            if name.len() > MAX_ENV_NAME_BYTES {
                return Err(too_long("env name", name, MAX_ENV_NAME_BYTES));
            }
            if value.byte_len() > MAX_ENV_VALUE_BYTES {
                // The value itself is never quoted: it may be a secret.
                return Err(CommandError::Invalid(format!(
                    "env {name}'s value is {} bytes, at most {MAX_ENV_VALUE_BYTES}",
                    value.byte_len()
                )));
            }
        }
        let env_bytes: usize = self.env.iter().map(|(k, v)| k.len() + v.byte_len()).sum();
        if env_bytes > MAX_ENV_BYTES {
            return Err(CommandError::Invalid(format!("env holds {env_bytes} bytes in all, at most {MAX_ENV_BYTES}")));
        }
        Ok(())
    }
}

impl TerminateCommand {
    /// Decodes a terminate command from its JSON body, within the limits of [`crate::limits`].
    pub fn from_json(body: &[u8]) -> Result<Self, CommandError> {
        check_sizes(body, terminate_string_limit)?;
        serde_json::from_slice(body).map_err(CommandError::malformed)
    }
}

/// Where a string sits in a command: the top-level field it is under (if any), and whether it is
/// an object's key.
struct Position<'a> {
    field: Option<&'a str>,
    depth: usize,
    is_key: bool,
}

/// The longest string a launch command may hold at `at`.
fn launch_string_limit(at: &Position<'_>) -> usize {
    match (at.field, at.depth, at.is_key) {
        (Some("image"), 1, false) => MAX_IMAGE_BYTES,
        (Some("ssh_public_key"), 1, false) => MAX_SSH_KEY_BYTES,
        (Some("env"), 2, true) => MAX_ENV_NAME_BYTES,
        (Some("env"), 2, false) => MAX_ENV_VALUE_BYTES,
        _ => MAX_SCALAR_BYTES,
    }
}

/// The longest string a terminate command may hold at `at`.
fn terminate_string_limit(at: &Position<'_>) -> usize {
    match (at.field, at.depth, at.is_key) {
        (Some("reason"), 1, false) => MAX_REASON_BYTES,
        _ => MAX_SCALAR_BYTES,
    }
}

/// Checks the body's size, and every string in it (keys too) against `limit`, before the typed
/// decode: serde's own messages quote a value whole, and a value of a megabyte quoted in a refusal
/// would make the refusal too large to keep as a dead letter.
fn check_sizes(body: &[u8], limit: fn(&Position<'_>) -> usize) -> Result<(), CommandError> {
    if body.len() > MAX_COMMAND_BYTES {
        return Err(CommandError::Invalid(format!("the command is {} bytes, at most {MAX_COMMAND_BYTES}", body.len())));
    }
    let value: Value = serde_json::from_slice(body).map_err(CommandError::malformed)?;
    check_strings(&value, None, 0, limit)
}

/// Walks `value`, found `depth` containers deep under the top-level `field`.
fn check_strings(
    value: &Value,
    field: Option<&str>,
    depth: usize,
    limit: fn(&Position<'_>) -> usize,
) -> Result<(), CommandError> {
    let check = |text: &str, field: Option<&str>, depth: usize, is_key: bool| {
        let max = limit(&Position { field, depth, is_key });
        if text.len() <= max {
            return Ok(());
        }
        // A top-level key is checked before it is named as a field: name the command instead.
        let place = match field {
            Some(f) if !(is_key && depth == 1) => format!("field {f}"),
            _ => "the command".to_string(),
        };
        let (what, shown) = match (field, is_key) {
            (_, true) => ("a key", quote(text)),
            // An env value may be a secret: its size is enough to say what is wrong.
            (Some("env"), false) => ("a value", "(not shown)".to_string()),
            _ => ("a string", quote(text)),
        };
        Err(CommandError::Invalid(format!("{place} holds {what} of {} bytes, at most {max}: {shown}", text.len())))
    };
    match value {
        Value::String(text) => check(text, field, depth, false),
        Value::Array(items) => items.iter().try_for_each(|item| check_strings(item, field, depth + 1, limit)),
        Value::Object(map) => map.iter().try_for_each(|(key, item)| {
            let field = if depth == 0 { Some(key.as_str()) } else { field };
            check(key, field, depth + 1, true)?;
            check_strings(item, field, depth + 1, limit)
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_decodes_with_defaults() {
        let cmd =
            LaunchCommand::from_json(br#"{"gpu_type": "H100", "gpu_count": 2, "max_hourly_price": "3.00"}"#).unwrap();
        assert_eq!(cmd.gpu_type, GpuType::H100);
        assert_eq!(cmd.spot_policy, SpotPolicy::PreferSpot);
        assert_eq!(cmd.image, DEFAULT_IMAGE);
        assert_eq!(cmd.relaunch, RelaunchPolicy::default());
        assert_eq!(cmd.max_machine_price(), "6.00".parse().unwrap());
        assert_eq!((cmd.max_lifetime, cmd.budget), (None, None));
        assert_eq!(cmd.capacity_wait(), DEFAULT_WAIT_FOR_CAPACITY);
    }

    #[test]
    fn limits_decode_as_written() {
        let cmd = LaunchCommand::from_json(
            br#"{"gpu_type": "H100", "gpu_count": 1, "max_hourly_price": "3", "max_lifetime": "1h30m", "budget": "12.50"}"#,
        )
        .unwrap();
        assert_eq!(cmd.max_lifetime, Some(Span::from_secs(5_400)));
        assert_eq!(cmd.budget, Some("12.50".parse().unwrap()));
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        let cases: [(&[u8], &str); 11] = [
            (br#"{"gpu_type": "H100", "gpu_count": 1, "max_hourly_price": "3", "budget": "2000000"}"#, "at most"),
            (br#"{"gpu_type": "H100", "gpu_count": 1, "max_hourly_price": "3", "max_lifetime": "100000000d"}"#, "at most"),
            (br#"{"gpu_type": "H100", "gpu_count": 1, "max_hourly_price": "3", "budget": "0"}"#, "budget"),
            (br#"{"gpu_type": "H100", "gpu_count": 1, "max_hourly_price": "3", "max_lifetime": "8"}"#, "needs a unit"),
            (
                br#"{"gpu_type": "H100", "gpu_count": 1, "max_hourly_price": "3", "relaunch": {"backoff_seconds": 900}}"#,
                "max_backoff_seconds",
            ),
            (br#"{"gpu_type": "H1000", "gpu_count": 1, "max_hourly_price": "3"}"#, "unknown GPU type"),
            (br#"{"gpu_type": "H100", "gpu_count": 0, "max_hourly_price": "3"}"#, "gpu_count"),
            (br#"{"gpu_type": "H100", "gpu_count": 1, "max_hourly_price": "-3"}"#, "above zero"),
            (br#"{"gpu_type": "H100", "gpu_count": 1}"#, "max_hourly_price"),
            (
                br#"{"gpu_type": "H100", "gpu_count": 1, "max_hourly_price": "3", "regions": ["mars"]}"#,
                "unknown region",
            ),
            (b"not json", "cannot decode"),
        ];
        for (body, expected) in cases {
            let err = LaunchCommand::from_json(body).unwrap_err().to_string();
            assert!(err.contains(expected), "{err:?} lacks {expected:?}");
        }
    }

    fn launch(extra: &str) -> Result<LaunchCommand, CommandError> {
        let body = format!(r#"{{"gpu_type": "H100", "gpu_count": 1, "max_hourly_price": "3"{extra}}}"#);
        LaunchCommand::from_json(body.as_bytes())
    }

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGtQUDn9yRvtM3eSZXF1TKbqBVD/23JqbW1ZSVSbEwnj alice@laptop";

    #[test]
    fn loose_money_spans_and_keys_are_refused() {
        for (extra, expected) in [
            (r#", "budget": "1_000""#.to_string(), "plain decimal"),
            (r#", "budget": "1e3""#.to_string(), "plain decimal"),
            (r#", "budget": "+1""#.to_string(), "plain decimal"),
            (r#", "max_lifetime": "1h1h""#.to_string(), "once, the largest first"),
            (format!(r#", "ssh_public_key": "{KEY}\n{KEY}""#), "more than one line"),
            (r#", "ssh_public_key": "not a key""#.to_string(), "OpenSSH public key"),
            (r#", "env": {"1BAD": "x"}"#.to_string(), "env name"),
            (r#", "image": "ubuntu:22.04\nrm""#.to_string(), "spaces or control"),
        ] {
            let err = launch(&extra).unwrap_err().to_string();
            assert!(err.contains(expected), "{extra}: {err}");
        }
        launch(&format!(r#", "ssh_public_key": "{KEY}", "budget": "1000", "max_lifetime": "1h30m""#)).unwrap();
    }

    #[test]
    fn sizes_are_limited_and_refusals_stay_short() {
        let big = "a".repeat(900_000);
        let many_regions = vec!["\"us-east\""; MAX_REGIONS + 1].join(",");
        let many_env: Vec<String> = (0..=MAX_ENV_VARS).map(|i| format!(r#""V{i}": "x""#)).collect();
        let big_env: Vec<String> = (0..5).map(|i| format!(r#""V{i}": "{}""#, "s".repeat(8000))).collect();
        for (extra, expected) in [
            (format!(r#", "image": "{big}""#), "the command is 900"),
            (format!(r#", "image": "{}""#, "a".repeat(MAX_IMAGE_BYTES + 1)), "field image holds a string of 513 bytes"),
            (format!(r#", "gpu_type": "{}""#, "H".repeat(1000)), "field gpu_type holds a string of 1000 bytes"),
            (format!(r#", "{}": 1"#, "k".repeat(1000)), "a key of 1000 bytes"),
            (format!(r#", "regions": [{many_regions}]"#), "at most 32"),
            (format!(r#", "env": {{{}}}"#, many_env.join(",")), "at most 64"),
            (format!(r#", "env": {{"TOKEN": "{}"}}"#, "s".repeat(MAX_ENV_VALUE_BYTES + 1)), "(not shown)"),
            (format!(r#", "env": {{{}}}"#, big_env.join(",")), "at most 32768"),
        ] {
            let err = launch(&extra).unwrap_err().to_string();
            assert!(err.contains(expected), "{}: {err}", &extra[..extra.len().min(60)]);
            assert!(err.len() <= 600, "a refusal quotes at most 200 bytes: {err}");
            assert!(!err.contains(&"s".repeat(300)), "an env value is never quoted");
        }
        let err = TerminateCommand::from_json(format!(r#"{{"instance_id": "{}"}}"#, "i".repeat(5000)).as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("5000 bytes") && err.len() <= 600, "{err}");
        let reason = format!(r#"{{"instance_id": "i-1", "reason": "{}"}}"#, "r".repeat(MAX_REASON_BYTES + 1));
        assert!(TerminateCommand::from_json(reason.as_bytes()).unwrap_err().to_string().contains("at most 1024"));
    }
}
