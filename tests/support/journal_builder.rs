//! Builds instance histories with chosen event times through the real commit path, for audits
//! whose totals can be computed by hand.

use chrono::{DateTime, Utc};
use tgp::journal::JetStreamJournal;
use tgp_actors::aggregate::InstanceCommand as C;
use tgp_actors::journal::Loaded;
use tgp_events::events::{Candidate, Connection, InterruptionReason, OfferSummary};
use tgp_events::{BillingGranularity, BillingUnit, GpuType, InstanceId, LaunchCommand, Money};

pub fn per_second() -> BillingGranularity {
    BillingGranularity { unit: BillingUnit::Second, minimum_seconds: 0 }
}
pub fn per_minute(minimum_seconds: u32) -> BillingGranularity {
    BillingGranularity { unit: BillingUnit::Minute, minimum_seconds }
}
pub fn per_hour() -> BillingGranularity {
    BillingGranularity { unit: BillingUnit::Hour, minimum_seconds: 0 }
}

/// What one launch buys: provider, GPU, region, price, spot, and the on-demand price offered.
pub struct Buy {
    pub provider: &'static str,
    pub gpu: GpuType,
    pub region: &'static str,
    pub price: &'static str,
    pub spot: bool,
    pub on_demand: &'static str,
    pub billing: BillingGranularity,
}

/// One chain, committed event by event with the times given.
pub struct Chain<'a> {
    journal: &'a JetStreamJournal,
    pub id: InstanceId,
    loaded: Loaded,
    machine: u32,
}

impl<'a> Chain<'a> {
    pub async fn request(journal: &'a JetStreamJournal, id: &str, at: DateTime<Utc>) -> Chain<'a> {
        let request = LaunchCommand::from_json(
            br#"{"gpu_type":"H100","gpu_count":1,"max_hourly_price":"9","relaunch":{"max_attempts":9}}"#,
        )
        .unwrap()
        .with_env(Default::default());
        let mut chain = Chain { journal, id: id.parse().unwrap(), loaded: Loaded::default(), machine: 0 };
        let id = chain.id.clone();
        chain.exec(C::RequestLaunch { id, request, at }).await;
        chain
    }

    async fn exec(&mut self, command: C) {
        self.loaded.commit(self.journal, &self.id, command).await.unwrap_or_else(|e| panic!("{}: {e}", self.id));
    }

    /// Selects, attempts and launches at `at`; running a minute later is not needed for cost.
    pub async fn launch(&mut self, buy: &Buy, at: DateTime<Utc>) {
        let summary = |spot: bool, price: &str| OfferSummary {
            provider: buy.provider.parse().unwrap(),
            offer_id: format!("{}-{}", buy.provider, buy.gpu),
            gpu_type: buy.gpu,
            gpu_count: 1,
            region: buy.region.parse().unwrap(),
            hourly_price: price.parse().unwrap(),
            spot,
        };
        let offer = summary(buy.spot, buy.price);
        let candidates = vec![
            Candidate { offer: offer.clone(), verdict: "selected".into() },
            Candidate { offer: summary(false, buy.on_demand), verdict: "a spot offer fits".into() },
        ];
        self.exec(C::SelectOffer { offer, bid: None, reason: "test".into(), candidates, at }).await;
        self.exec(C::StartAttempt { at }).await;
        let attempt_id = self.loaded.instance.pending_attempt.clone().unwrap().0;
        self.machine += 1;
        let price: Money = buy.price.parse().unwrap();
        self.exec(C::RecordLaunched {
            attempt_id,
            provider_instance_id: format!("{}-m{}", self.id, self.machine),
            hourly_price: price,
            billing: buy.billing,
            adopted: false,
            at,
        })
        .await;
        let machine = format!("{}-m{}", self.id, self.machine);
        self.exec(C::RecordRunning { provider_instance_id: machine, connection: Connection::default(), at }).await;
    }

    pub async fn interrupt(&mut self, at: DateTime<Utc>) {
        let machine = format!("{}-m{}", self.id, self.machine);
        self.exec(C::RecordInterrupted {
            provider_instance_id: machine,
            reason: InterruptionReason::Preempted,
            raw_status: "preempted".into(),
            detected_by: "status_poll".into(),
            at,
        })
        .await;
    }

    pub async fn terminate(&mut self, at: DateTime<Utc>) {
        self.exec(C::RequestTermination { reason: "done".into(), at }).await;
        if self.loaded.instance.current_state() != Some(tgp_events::api::InstanceState::Terminated) {
            self.exec(C::RecordTerminated { at }).await;
        }
    }
}
