//! `ProviderClient` for [`LambdaClient`]: every operation as Lambda's API takes it.

use super::*;

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

    /// Lambda documents about one request per second (and one launch per 12 s, which the client
    /// spaces itself); tgp's older 1000/h figure is looser at bursts, so 60/min with no burst.
    fn rate_limits(&self) -> RateLimits {
        RateLimits { requests_per_minute: 60, burst: 1 }
    }

    fn translate_gpu(&self, gpu: GpuType) -> Option<String> {
        tables::gpu_name(gpu).map(str::to_string)
    }

    fn translate_region(&self, region: &Region) -> Option<String> {
        tables::region_code(region).map(str::to_string)
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
            quantity: 1,
            name: attempt.to_string(),
            tags: vec![Tag { key: ATTEMPT_TAG.into(), value: attempt.to_string() }],
            user_data: Some(user_data),
        };
        let body = serde_json::to_value(&body).map_err(|e| invalid(format!("cannot encode the launch: {e}")))?;
        self.launch_slot().await;
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
