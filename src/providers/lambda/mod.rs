//! The Lambda Cloud client: `ProviderClient` over Lambda's REST API v1 (`<host>/api/v1/...`,
//! Bearer key; wire format in `shared/providers/lambda.md`).
//!
//! Lambda rents whole VMs by instance type at one price in integer cents per hour, the same in
//! every region; availability is the list of regions with capacity. There is no spot tier, so
//! every offer is on demand. A launch needs one registered SSH key *name*: the `ssh_key_name`
//! option, or the launch's public key registered under a name derived from it.
//!
//! Options (`[lambda] options` in the configuration): `ssh_key_name` (a key already registered
//! at Lambda), `launch_interval_ms` and `launches_per_minute` (the launch spacing the provider
//! actor keeps, from [`ProviderClient::rate_limits`]; default 12000 and 5, Lambda's documented
//! limit; 0 and 0 for none), `request_timeout_ms` (per call; default 30000).

mod launch;
mod names;
mod offers;
pub mod wire;

use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde::de::DeserializeOwned;
use tgp_actors::provider::{
    LaunchReceipt, LaunchSpacing, LaunchSpec, MachineStatus, Offer, OfferFilter, ProviderClient, ProviderError,
    ProviderInfo, ProviderInstance, RateLimits,
};
use tgp_events::events::{Connection, FailureClass};
use tgp_events::{AttemptId, BillingGranularity, BillingUnit, GpuType, Money, ProviderName, Region};

use super::api_change::{ApiChangeKind, ApiChangeReporter};
use super::config::{ConfigError, ProviderKind, ProviderSettings};
use super::http::ProviderHttp;
use super::options::ClientOptions;
pub use launch::{ATTEMPT_TAG, offer_id, parse_offer_id, ssh_key_name};
use wire::{Envelope, Instance, LaunchAnswer, LaunchBody, SshKey, Tag};

/// Lambda's path prefix under the host root.
const API: &str = "/api/v1";
/// Lambda's documented launch limit (API spec 1.8.3): one launch per 12 seconds...
const DEFAULT_LAUNCH_INTERVAL: Duration = Duration::from_secs(12);
/// ...and five per minute.
const DEFAULT_LAUNCHES_PER_MINUTE: u32 = 5;

/// How Lambda bills: by the hourly price in one-minute increments, no minimum documented.
pub const BILLING: BillingGranularity = BillingGranularity { unit: BillingUnit::Minute, minimum_seconds: 0 };

/// The Lambda Cloud client. One per account; cheap to share behind an `Arc`.
pub struct LambdaClient {
    http: ProviderHttp,
    name: ProviderName,
    /// A key already registered at Lambda, from the `ssh_key_name` option.
    ssh_key_name: Option<String>,
    /// How far apart launch calls must be, for the provider actor; `None` for no spacing.
    launch_spacing: Option<LaunchSpacing>,
}

impl LambdaClient {
    /// A client for the account in `settings` (`url` is the host root, e.g.
    /// `https://cloud.lambda.ai`). Fails without a key or with an option it cannot read.
    pub fn from_settings(settings: &ProviderSettings, reporter: ApiChangeReporter) -> Result<Self, ProviderError> {
        let options = ClientOptions::new(ProviderKind::Lambda, settings);
        let read = || -> Result<Self, ConfigError> {
            let min_interval = options.millis("launch_interval_ms", DEFAULT_LAUNCH_INTERVAL, 0)?;
            let per_minute = options.number("launches_per_minute", DEFAULT_LAUNCHES_PER_MINUTE, 0..=600)?;
            let launch_spacing =
                (!min_interval.is_zero() || per_minute > 0).then_some(LaunchSpacing { min_interval, per_minute });
            let ssh_key_name = options.text("ssh_key_name").filter(|s| !s.is_empty()).map(str::to_string);
            Ok(LambdaClient {
                http: options.http(options.url(), reporter, wire::parse_error)?,
                name: options.name(),
                ssh_key_name,
                launch_spacing,
            })
        };
        read().map_err(|e| options.refusal(e))
    }

    fn error(&self, class: FailureClass, message: impl Into<String>) -> ProviderError {
        ProviderError::new(&self.name, class, message)
    }

    /// Lambda answers "no capacity" and "not found" as 400: its own code decides the class.
    /// A rate limit stays a rate limit whatever the code.
    fn reclass(mut e: ProviderError) -> ProviderError {
        if e.class != FailureClass::RateLimited
            && let Some(class) = e.code.as_deref().and_then(wire::class_for_code)
        {
            e.class = class;
        }
        e
    }

    /// One call answering `{"data": T}`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, ProviderError> {
        let endpoint = format!("{method} {API}{path}");
        let mut request = self.http.request(method, &format!("{API}{path}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.http.json::<Envelope<T>>(&endpoint, request).await.map(|e| e.data).map_err(Self::reclass)
    }

    fn checked_id<'a>(&self, id: &'a str) -> Result<&'a str, ProviderError> {
        let ok = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then_some(id)
            .ok_or_else(|| self.error(FailureClass::InvalidRequest, format!("{id:?} is not a Lambda instance id")))
    }

    /// Maps one instance; an unknown status is reported and treated as Starting (see
    /// [`names::status`]): the machine is listed, so it most likely exists and bills, and
    /// Starting makes tgp neither relaunch (double billing) nor forget it, while a person looks.
    fn instance(&self, endpoint: &str, i: Instance) -> ProviderInstance {
        let status = names::status(&i.status).unwrap_or_else(|| {
            self.http.report(endpoint, ApiChangeKind::UnknownStatus(i.status.clone()));
            MachineStatus::Starting
        });
        let tag = i.tags.iter().flatten().find(|t| t.key == ATTEMPT_TAG).map(|t| t.value.clone());
        let label = i.name.clone().into_iter().chain(tag).find(|l| AttemptId::from_label(l).is_some());
        let connection = match i.ip.filter(|ip| !ip.is_empty()) {
            Some(ip) => Connection {
                public_ip: Some(ip.clone()),
                ssh_host: Some(ip),
                ssh_port: Some(22),
                ssh_user: Some("ubuntu".into()),
            },
            None => Connection::default(),
        };
        ProviderInstance {
            id: i.id,
            label,
            status,
            raw_status: i.status,
            connection,
            hourly_price: Some(Money::from_cents(i.instance_type.price_cents_per_hour)),
            billing: Some(BILLING),
        }
    }

    /// The key name to launch with: the configured one, or the launch's public key registered
    /// under its derived name (looked up first, so it is registered once).
    async fn ssh_key(&self, public_key: Option<&str>) -> Result<String, ProviderError> {
        if let Some(name) = &self.ssh_key_name {
            return Ok(name.clone());
        }
        let (public_key, name) =
            public_key.and_then(|k| Some((k.trim(), ssh_key_name(k)?))).ok_or_else(|| self.no_ssh_key())?;
        let keys: Vec<SshKey> = self.call(Method::GET, "/ssh-keys", None).await?;
        let same = |k: &str| k.split_whitespace().take(2).eq(public_key.split_whitespace().take(2));
        if let Some(existing) = keys.iter().find(|k| k.name == name) {
            return match existing.public_key.as_deref() {
                Some(k) if !same(k) => Err(self.error(
                    FailureClass::InvalidRequest,
                    format!("the SSH key {name} at Lambda holds a different public key"),
                )),
                _ => Ok(name),
            };
        }
        let body = serde_json::json!({"name": name, "public_key": public_key});
        let added: SshKey = self.call(Method::POST, "/ssh-keys", Some(body)).await?;
        Ok(added.name)
    }

    fn no_ssh_key(&self) -> ProviderError {
        self.error(
            FailureClass::InvalidRequest,
            "Lambda needs an SSH key to launch: set the lambda option ssh_key_name to a key \
             registered at Lambda, or give the launch an OpenSSH public key",
        )
    }
}

#[async_trait]
impl ProviderClient for LambdaClient {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            name: self.name.clone(),
            supports_spot: false,
            supports_bids: false,
            docs_url: "https://docs.lambda.ai/api/cloud".into(),
        }
    }

    /// Lambda documents about one request per second, and launches at one per 12 s and five per
    /// minute (spec 1.8.3); tgp's older 1000/h figure is looser at bursts, so 60/min with no
    /// burst, and the launch spacing for the provider actor to schedule.
    fn rate_limits(&self) -> RateLimits {
        RateLimits { requests_per_minute: 60, burst: 1, launches: self.launch_spacing }
    }

    fn translate_gpu(&self, gpu: GpuType) -> Option<String> {
        names::gpu_name(gpu).map(str::to_string)
    }

    fn translate_region(&self, region: &Region) -> Option<String> {
        names::region_code(region).map(str::to_string)
    }

    async fn list_offers(&self, filter: &OfferFilter) -> Result<Vec<Offer>, ProviderError> {
        let types = self.instance_types().await?;
        Ok(self.offers(&types).into_iter().filter(|o| filter.matches(o)).collect())
    }

    async fn launch(&self, spec: &LaunchSpec) -> Result<LaunchReceipt, ProviderError> {
        // Everything Lambda cannot take is refused here, before any call.
        let invalid = |m: String| self.error(FailureClass::InvalidRequest, m);
        if spec.spot {
            return Err(invalid("Lambda has no spot or interruptible capacity; launch on demand".into()));
        }
        let (type_name, region) = parse_offer_id(&spec.offer_id).ok_or_else(|| {
            invalid(format!("{:?} is not a Lambda offer id (<instance type>@<region>)", spec.offer_id))
        })?;
        let attempt = spec.attempt_id.as_str();
        if attempt.len() > launch::MAX_NAME_LEN {
            return Err(invalid(format!(
                "attempt id {attempt} is longer than Lambda's {} character name limit",
                launch::MAX_NAME_LEN
            )));
        }
        let user_data = launch::user_data(attempt, &spec.image, &spec.env).map_err(invalid)?;
        if self.ssh_key_name.is_none() && spec.ssh_public_key.as_deref().and_then(ssh_key_name).is_none() {
            return Err(self.no_ssh_key());
        }

        // The offer as Lambda lists it now: price, GPU count, and capacity in that region.
        let types = self.instance_types().await?;
        let entry = types.get(type_name).ok_or_else(|| {
            self.error(FailureClass::NotFound, format!("Lambda no longer offers instance type {type_name}"))
        })?;
        let t = &entry.instance_type;
        if t.specs.gpus != spec.gpu_count {
            return Err(invalid(format!("{type_name} has {} GPUs, {} asked", t.specs.gpus, spec.gpu_count)));
        }
        if !entry.regions_with_capacity_available.iter().any(|r| r.name == region) {
            return Err(
                self.error(FailureClass::Capacity, format!("Lambda lists no capacity for {type_name} in {region} now"))
            );
        }
        let hourly_price = Money::from_cents(t.price_cents_per_hour);
        let key_name = self.ssh_key(spec.ssh_public_key.as_deref()).await?;

        let body = LaunchBody {
            region_name: region.to_string(),
            instance_type_name: type_name.to_string(),
            ssh_key_names: vec![key_name],
            file_system_names: Vec::new(),
            name: attempt.to_string(),
            tags: vec![Tag { key: ATTEMPT_TAG.into(), value: attempt.to_string() }],
            user_data: Some(user_data),
        };
        let body = serde_json::to_value(&body).map_err(|e| invalid(format!("cannot encode the launch: {e}")))?;
        let answer: LaunchAnswer = self.call(Method::POST, "/instance-operations/launch", Some(body)).await?;
        let Some(id) = answer.instance_ids.into_iter().next() else {
            let endpoint = format!("POST {API}/instance-operations/launch");
            let what = "the launch answer holds no instance id".to_string();
            self.http.report(&endpoint, ApiChangeKind::UnexpectedShape(what.clone()));
            // The machine may exist: Unknown lets the next status poll find it by its name.
            return Err(self.error(FailureClass::Unknown, format!("{endpoint}: {what}")));
        };
        Ok(LaunchReceipt { provider_instance_id: id, hourly_price, billing: BILLING })
    }

    /// Terminates; Ok when the machine is gone or going. Lambda answers an unknown id with 404
    /// and a second terminate with `global/unknown` (SkyPilot PR #3410): on any error but auth
    /// and rate limits, the machine's status settles whether it is already on its way out.
    async fn terminate(&self, provider_instance_id: &str) -> Result<(), ProviderError> {
        let id = self.checked_id(provider_instance_id)?;
        let body = serde_json::json!({ "instance_ids": [id] });
        let result: Result<wire::TerminateAnswer, _> =
            self.call(Method::POST, "/instance-operations/terminate", Some(body)).await;
        let error = match result {
            Ok(a) if !a.terminated_instances.is_empty() => return Ok(()),
            Ok(_) => self.error(
                FailureClass::Unknown,
                format!("POST {API}/instance-operations/terminate: no instance terminated"),
            ),
            Err(e) if e.class == FailureClass::NotFound => return Ok(()),
            Err(e) if matches!(e.class, FailureClass::Auth | FailureClass::RateLimited) => {
                return Err(e);
            }
            Err(e) => e,
        };
        match self.status(id).await {
            Err(e) if e.class == FailureClass::NotFound => Ok(()),
            Ok(m) if m.status == MachineStatus::Terminated => Ok(()),
            _ => Err(error),
        }
    }

    /// One instance. Only Lambda's own not-found (`global/object-does-not-exist` or
    /// `global/not-found`, by code) is `NotFound`; a 404 without Lambda's envelope (a proxy, a
    /// wrong host root) concludes nothing and is `Unknown`. `terminated` is `Ok(Terminated)`.
    async fn status(&self, provider_instance_id: &str) -> Result<ProviderInstance, ProviderError> {
        let id = self.checked_id(provider_instance_id)?;
        let path = format!("/instances/{id}");
        let instance: Instance = self.call(Method::GET, &path, None).await.map_err(|mut e| {
            let lambdas_own = e.code.as_deref().and_then(wire::class_for_code) == Some(FailureClass::NotFound);
            if e.class == FailureClass::NotFound && !lambdas_own {
                e.class = FailureClass::Unknown;
                e.message =
                    format!("{} (not Lambda's not-found answer; nothing is concluded about instance {id})", e.message);
            }
            e
        })?;
        Ok(self.instance(&format!("GET {API}{path}"), instance))
    }

    /// One call: Lambda's `GET /instances` has no pagination (spec v1.10.0). `data` `null` or
    /// absent is an error, never "no instances".
    async fn list_instances(&self) -> Result<Vec<ProviderInstance>, ProviderError> {
        let endpoint = format!("GET {API}/instances");
        let request = self.http.request(Method::GET, &format!("{API}/instances"));
        let answer: wire::ListEnvelope<Instance> = self.http.json(&endpoint, request).await.map_err(Self::reclass)?;
        let instances = answer.data.require(&self.http, &endpoint, "data")?;
        Ok(instances.into_iter().map(|i| self.instance(&endpoint, i)).collect())
    }
}
