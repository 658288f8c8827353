//! How the market answers tgp's provider calls: the catalog's offers, launches that start
//! machines, and listings and status calls that show them as the provider's API would, each
//! call first passing the misfortune schedule (5xx bursts, 429s) and then the cues.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::Rng;
use tgp_actors::provider::{
    LaunchReceipt, LaunchSpec, Offer, OfferFilter, ProviderClient, ProviderError, ProviderInfo, ProviderInstance,
    RateLimits,
};
use tgp_events::events::FailureClass;
use tgp_events::{GpuType, Region};

use super::machine::{Machine, STARTING, TERMINATED, Truth};
use super::misfortune::{Glitch, rng_for};
use super::{Books, Call, Destruction, MachineIds, Market};

impl Market {
    /// Logs a call and answers 5xx during a burst, or 429 when the seed says so.
    fn call(
        &self,
        books: &mut Books,
        operation: &'static str,
        subject: &str,
        key: &str,
    ) -> Result<DateTime<Utc>, ProviderError> {
        let now = self.clock.now();
        let outage = self.chaos.in_outage(self.name.as_str(), now);
        let limited = !outage && self.chaos.rate_limits(key, now);
        let outcome = if outage {
            "outage"
        } else if limited {
            "rate_limited"
        } else {
            "ok"
        };
        if let Some(calls) = &mut books.calls {
            calls.push(Call { at: now, operation, subject: subject.to_string(), outcome: outcome.into() });
        }
        if outage {
            return Err(ProviderError::new(&self.name, FailureClass::ProviderOutage, "503 Service Unavailable"));
        }
        if limited {
            let mut e = ProviderError::new(&self.name, FailureClass::RateLimited, "429 Too Many Requests");
            e.retry_after_seconds = Some(2);
            return Err(e);
        }
        Ok(now)
    }

    /// Sets the outcome of the call just logged.
    fn mark(books: &mut Books, outcome: &str) {
        if let Some(call) = books.calls.as_mut().and_then(|calls| calls.last_mut()) {
            call.outcome = outcome.into();
        }
    }

    /// Whether a cue refuses this launch: spot withdrawn (which uses up no cue), or a launch
    /// still to refuse.
    fn refused_on_cue(books: &mut Books, spec: &LaunchSpec) -> bool {
        let saved = &mut books.saved;
        if spec.spot && saved.spot_withdrawn {
            return true;
        }
        let cued = saved.refuse_launches > 0;
        saved.refuse_launches = saved.refuse_launches.saturating_sub(1);
        cued
    }

    /// Whether a cue loses this launch's answer (the machine starts regardless).
    fn answer_lost_on_cue(books: &mut Books) -> bool {
        let saved = &mut books.saved;
        let cued = saved.lose_launch_answers > 0;
        saved.lose_launch_answers = saved.lose_launch_answers.saturating_sub(1);
        cued
    }

    fn not_found(&self, id: &str) -> ProviderError {
        ProviderError::new(&self.name, FailureClass::NotFound, format!("no machine {id}"))
    }
}

#[async_trait]
impl ProviderClient for Market {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            name: self.name.clone(),
            supports_spot: true,
            supports_bids: false,
            docs_url: "docs/architecture.md#the-simulated-market".into(),
        }
    }

    fn rate_limits(&self) -> RateLimits {
        RateLimits { requests_per_minute: 6000, burst: 100, launches: None }
    }

    fn translate_gpu(&self, gpu: GpuType) -> Option<String> {
        self.catalog.translate_gpu(gpu)
    }

    fn translate_region(&self, region: &Region) -> Option<String> {
        self.catalog.translate_region(region)
    }

    /// Answers from the market as this process last saw it: offers change no machine, and
    /// reading a large state file for each would cost more than the answer.
    async fn list_offers(&self, filter: &OfferFilter) -> Result<Vec<Offer>, ProviderError> {
        let mut books = self.books.lock().expect("market books");
        let key = format!("offers/{}/{}", self.name, self.clock.now().timestamp_millis());
        let now = self.call(&mut books, "list_offers", "", &key)?;
        Ok(self.catalog.offers(filter, now, !books.saved.spot_withdrawn))
    }

    async fn launch(&self, spec: &LaunchSpec) -> Result<LaunchReceipt, ProviderError> {
        let label = spec.attempt_id.to_string();
        self.change(|books| {
            books.saved.launch_calls += 1;
            let now = self.call(books, "launch", &label, &format!("launch-429/{label}"))?;
            let (offer, price) = self.catalog.quote(spec)?;
            let mut rng = rng_for(self.chaos.seed, &format!("launch/{label}"));
            let calm = self.chaos.calm(now);
            if Self::refused_on_cue(books, spec) || (!calm && rng.random_bool(self.chaos.chances.no_capacity)) {
                Self::mark(books, "capacity");
                return Err(ProviderError::new(
                    &self.name,
                    FailureClass::Capacity,
                    "no capacity for this offer right now",
                ));
            }
            let ready_at = now + self.chaos.boot_time(&mut rng);
            let preempt_at = self.chaos.preempt_at(&mut rng, now).filter(|_| spec.spot);
            let id = match self.ids {
                MachineIds::Numbered => {
                    books.saved.next_id += 1;
                    format!("sim-{}", books.saved.next_id)
                }
                MachineIds::ByLabel => format!("m-{label}"),
            };
            let machine = Machine {
                id: id.clone(),
                label: label.clone(),
                offer_id: offer.id.clone(),
                spot: spec.spot,
                hourly_price: price,
                billing: offer.billing,
                launched_at: now,
                ready_at,
                status: STARTING.into(),
                preempt_at,
                fate: self.chaos.fate(&label, ready_at),
                terminated_at: None,
            };
            books.saved.machines.insert(id.clone(), machine);
            if Self::answer_lost_on_cue(books) || (!calm && rng.random_bool(self.chaos.chances.lost_answer)) {
                Self::mark(books, "answer_lost");
                return Err(ProviderError::new(
                    &self.name,
                    FailureClass::ProviderOutage,
                    "connection reset after the request was sent",
                ));
            }
            if self.chaos.cut_off(&label, now) {
                Self::mark(books, "cut_off");
                return Err(ProviderError::new(
                    &self.name,
                    FailureClass::ContractChanged,
                    "cannot parse the launch answer: EOF while parsing an object at line 1 column 48",
                ));
            }
            Ok(LaunchReceipt { provider_instance_id: id, hourly_price: price, billing: offer.billing })
        })
    }

    async fn terminate(&self, provider_instance_id: &str) -> Result<(), ProviderError> {
        self.change(|books| {
            let n = {
                let n = books.terminate_calls.entry(provider_instance_id.to_string()).or_default();
                *n += 1;
                *n
            };
            let key = format!("terminate/{provider_instance_id}/{n}");
            let now = self.call(books, "terminate", provider_instance_id, &key)?;
            let Books { saved, destroyed, .. } = books;
            if let Some(m) = saved.machines.get_mut(provider_instance_id) {
                let was = m.truth(now);
                if !matches!(was, Truth::Gone | Truth::Terminated) {
                    destroyed.push(Destruction {
                        at: now,
                        provider: self.name.to_string(),
                        machine: m.id.clone(),
                        label: m.label.clone(),
                        was,
                    });
                    m.status = TERMINATED.into();
                    m.terminated_at = Some(now);
                }
            }
            Ok(())
        })
    }

    /// Answers as a real provider does: the machine, `terminated` for a while after it was
    /// destroyed, and not found when it vanished, is out of sight, or never existed.
    async fn status(&self, provider_instance_id: &str) -> Result<ProviderInstance, ProviderError> {
        self.change(|books| {
            let key = format!("status/{provider_instance_id}/{}", self.clock.now().timestamp_millis());
            let now = self.call(books, "status", provider_instance_id, &key)?;
            let seen = books.saved.machines.get_mut(provider_instance_id).and_then(|m| {
                m.advance(now);
                m.describe(now)
            });
            seen.ok_or_else(|| {
                Self::mark(books, "not_found");
                self.not_found(provider_instance_id)
            })
        })
    }

    async fn list_instances(&self) -> Result<Vec<ProviderInstance>, ProviderError> {
        self.change(|books| {
            let key = format!("list/{}/{}", self.name, self.clock.now().timestamp_millis());
            let now = self.call(books, "list_instances", "", &key)?;
            let glitch = self.chaos.glitch(self.name.as_str(), now);
            let outcome = match glitch {
                None => "ok",
                Some(Glitch::Empty) => "empty",
                Some(Glitch::Partial) => "partial",
                Some(Glitch::Null) => "null",
            };
            Self::mark(books, outcome);
            let listed = books
                .saved
                .machines
                .values_mut()
                .filter_map(|m| {
                    m.advance(now);
                    (m.status != TERMINATED).then(|| m.describe(now)).flatten()
                })
                .collect::<Vec<_>>();
            match glitch {
                None => Ok(listed),
                Some(Glitch::Empty) => Ok(Vec::new()),
                Some(Glitch::Null) => Err(ProviderError::new(
                    &self.name,
                    FailureClass::ContractChanged,
                    "the instance list is null, not a list",
                )),
                Some(Glitch::Partial) => {
                    let name = self.name.as_str();
                    let mut kept: Vec<ProviderInstance> =
                        listed.iter().filter(|m| !self.chaos.omitted(name, now, &m.id)).cloned().collect();
                    if kept.len() == listed.len() {
                        kept.pop();
                    }
                    Ok(kept)
                }
            }
        })
    }
}
