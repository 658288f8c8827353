//! Launch and terminate: the calls that cost money, and the lookups around them.

use reqwest::Method;
use tgp_actors::provider::{LaunchReceipt, LaunchSpec, ProviderError};
use tgp_events::AttemptId;
use tgp_events::events::FailureClass;

use super::launch::{self, OsChoice};
use super::wire::{self, Machine, MachineMutation, OsTemplate, Page, StartupScript};
use super::{
    BILLING, EP_AVAILABILITY, EP_CREATE, EP_DELETE, EP_LIST, EP_SCRIPT_CREATE, EP_SCRIPT_DELETE, EP_SCRIPTS,
    EP_TEMPLATES, PAGE_LIMIT, PaperspaceClient,
};

impl PaperspaceClient {
    /// In this order: every refusal that needs no call (spot, offer id, image, env, SSH key);
    /// adopt a live machine already named after the attempt (create has no idempotency key);
    /// the template; availability (no capacity is refused before create); the startup script;
    /// the create. A refused create removes the script; an unknown outcome keeps it.
    pub(super) async fn launch_machine(&self, spec: &LaunchSpec) -> Result<LaunchReceipt, ProviderError> {
        let invalid = |m: String| self.error(FailureClass::InvalidRequest, m);
        if spec.spot {
            return Err(invalid("Paperspace has no preemptible machines; launch on demand".into()));
        }
        let mut parts = spec.offer_id.splitn(3, '/');
        let (Some(label), Some(short), Some(_dated)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid(format!("{:?} is not a Paperspace offer id", spec.offer_id)));
        };
        let region = wire::api_from_short(short);
        let price = self
            .prices
            .hourly(label)
            .ok_or_else(|| invalid(format!("{label} is not in the price table as of {}", self.prices.as_of)))?;
        if wire::split_label(label).1 != spec.gpu_count {
            return Err(invalid(format!("{label} does not have {} GPUs", spec.gpu_count)));
        }
        let os = launch::os_choice(&spec.image).map_err(invalid)?;
        let script = launch::startup_script(spec).map_err(invalid)?;
        let name = spec.attempt_id.as_str();
        let receipt = |id: String| LaunchReceipt { provider_instance_id: id, hourly_price: price, billing: BILLING };
        if let Some(existing) = self.find_by_name(name).await? {
            return Ok(receipt(existing.id));
        }
        let template = self.template_for(label, &os).await?;
        if !self.available(label, region).await? {
            return Err(self.error(
                FailureClass::Capacity,
                format!("{EP_AVAILABILITY}: {label} is not available in {region} now"),
            ));
        }
        let script_id = match script {
            None => None,
            Some(text) => {
                let body = wire::CreateStartupScript { name, script: &text, is_run_once: true, is_enabled: true };
                let request = self.http.request(Method::POST, "/startup-scripts").json(&body);
                let created: StartupScript = self.http.json(EP_SCRIPT_CREATE, request).await?;
                Some(created.id)
            }
        };
        let body = wire::CreateMachine {
            name,
            machine_type: label,
            region,
            // A launch's own disk (raised to Paperspace's smallest), else the `disk_size` option.
            disk_size: spec.disk_gb.map_or(self.disk_size, |gb| gb.max(super::MIN_DISK_GB)),
            template_id: &template,
            public_ip_type: "dynamic",
            startup_script_id: script_id.as_deref(),
            start_on_create: true,
            enable_nvlink: wire::wants_nvlink(label),
            auto_shutdown_enabled: false,
            email_password: false,
        };
        let request = self.http.request(Method::POST, "/machines").json(&body);
        match self.http.json::<MachineMutation>(EP_CREATE, request).await {
            Ok(created) => Ok(receipt(created.data.id)),
            Err(mut e) => {
                if Self::is_capacity(&e) {
                    e.class = FailureClass::Capacity;
                }
                // Refused for sure: the script is garbage. Unknown outcome: the machine may use it.
                let refused = matches!(
                    e.class,
                    FailureClass::InvalidRequest
                        | FailureClass::Capacity
                        | FailureClass::Auth
                        | FailureClass::RateLimited
                );
                if let (true, Some(id)) = (refused, script_id) {
                    self.delete_script(&id).await;
                }
                Err(e)
            }
        }
    }

    /// Deletes the machine (Ok when already gone), then its startup script, if tgp made one.
    pub(super) async fn terminate_machine(&self, provider_instance_id: &str) -> Result<(), ProviderError> {
        self.check_id(provider_instance_id)?;
        let path = format!("/machines/{provider_instance_id}");
        match self.http.send(EP_DELETE, self.http.request(Method::DELETE, &path)).await {
            Ok(answer) => {
                // The answer's shape is unconfirmed; it is read only to find the script's name.
                if let Ok(deleted) = serde_json::from_slice::<MachineMutation>(&answer.body)
                    && AttemptId::from_label(&deleted.data.name).is_some()
                {
                    self.delete_scripts_named(&deleted.data.name).await;
                }
                Ok(())
            }
            Err(e) if e.class == FailureClass::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The template for a launch: the image's own, else option `template_id`, else the default
    /// lookup (SkyPilot's H100 templates, then an OS template of that Ubuntu version that lists
    /// the machine type as available).
    async fn template_for(&self, machine_type: &str, os: &OsChoice) -> Result<String, ProviderError> {
        let version = match os {
            OsChoice::Template(id) => return Ok(id.clone()),
            OsChoice::Ubuntu(version) => version,
        };
        if let Some(id) = self.template_id.clone().or(wire::default_template(machine_type).map(str::to_string)) {
            return Ok(id);
        }
        let wanted = format!("ubuntu {version}");
        let templates: Vec<OsTemplate> = self.list_all("/os-templates", EP_TEMPLATES, &[]).await?;
        templates
            .into_iter()
            .find(|t| {
                let label = t.operating_system_label.as_deref().unwrap_or(&t.name);
                (label.to_ascii_lowercase().contains(&wanted) || t.name.to_ascii_lowercase().contains(&wanted))
                    && t.available_machine_types.iter().any(|m| m.machine_type_label == machine_type && m.is_available)
            })
            .map(|t| t.id)
            .ok_or_else(|| {
                self.error(
                    FailureClass::InvalidRequest,
                    format!("no Paperspace OS template for Ubuntu {version} boots {machine_type}; set the template_id option or use paperspace-template:<id>"),
                )
            })
    }

    /// Machines already carrying this name (create has no idempotency key).
    async fn find_by_name(&self, name: &str) -> Result<Option<Machine>, ProviderError> {
        let request =
            self.http.request(Method::GET, "/machines").query(&[("name", name), ("limit", &PAGE_LIMIT.to_string())]);
        let page: Page<Machine> = self.http.json(EP_LIST, request).await?;
        let items = page.items.require(&self.http, EP_LIST, "items")?;
        Ok(items.into_iter().find(|m| m.name == name && m.dt_deleted.is_none()))
    }

    async fn delete_scripts_named(&self, name: &str) {
        let found: Result<Vec<StartupScript>, _> =
            self.list_all("/startup-scripts", EP_SCRIPTS, &[("name", name)]).await;
        let scripts = match found {
            Ok(s) => s,
            Err(e) => {
                return tracing::warn!(error = %e, name, "cannot list Paperspace startup scripts to delete");
            }
        };
        for script in scripts.into_iter().filter(|s| s.name == name) {
            self.delete_script(&script.id).await;
        }
    }

    async fn delete_script(&self, id: &str) {
        if self.check_id(id).is_err() {
            return;
        }
        let request = self.http.request(Method::DELETE, &format!("/startup-scripts/{id}"));
        if let Err(e) = self.http.send(EP_SCRIPT_DELETE, request).await {
            tracing::warn!(error = %e, script = id, "cannot delete a Paperspace startup script");
        }
    }

    fn is_capacity(error: &ProviderError) -> bool {
        let text = error.message.to_ascii_lowercase();
        text.contains("capacity") || text.contains("higher than normal demand")
    }
}
