//! What happens to tgp itself, as journaled on `tgp.events.controller`: one of its own NATS
//! consumers (command intake, projections, metrics) was lost (an outage, a deleted consumer) and
//! recreated, or one of its streams was changed under it. An operator reading the journal sees
//! when tgp healed, from where it resumed, and when and why it stopped taking launches.
//! One message per event: `{"type": ..., "version": 1, "at": ..., "data": {...}}`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Something that happened to the controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ControllerEvent {
    /// One of tgp's consumers stopped delivering and was recreated; it resumed after the last
    /// message it had taken in, so nothing was folded twice and nothing was skipped.
    ConsumerRecovered {
        /// The consumer (`tgp-intake`, `projection-cost`, `projection-pricing`, `metrics`).
        consumer: String,
        /// Why it had stopped (the client's error, or the connection lost and regained).
        reason: String,
        /// The last stream sequence it had taken in before the new consumer (it resumes after it).
        resumed_after: u64,
    },
    /// One of tgp's streams was deleted, recreated, reconfigured or stripped of messages while tgp
    /// ran (two looks in a row showed it). tgp stopped taking new launches and recreated nothing.
    /// When the journal itself was deleted this event cannot be stored: it is still published on
    /// `tgp.events.controller` for whoever listens.
    JournalStreamChanged {
        /// The stream (`TGP_EVENTS`, `TGP_COMMANDS`, `TGP_DEAD_LETTERS`).
        stream: String,
        /// `deleted`, `recreated`, `reconfigured` or `history_removed`.
        change: String,
        /// What changed, field by field or count by count.
        detail: String,
    },
    /// A journal message was quarantined: it does not decode, or is not signed by tgp's key. It
    /// is skipped by every read and never acted on; `tgp journal check` lists it.
    JournalMessageQuarantined {
        /// Its stream sequence in `TGP_EVENTS`.
        sequence: u64,
        /// The subject it was stored on.
        subject: String,
        /// Why it was refused.
        reason: String,
    },
}

impl ControllerEvent {
    /// The type name, as in the `type` field.
    pub fn type_name(&self) -> &'static str {
        match self {
            ControllerEvent::ConsumerRecovered { .. } => "ConsumerRecovered",
            ControllerEvent::JournalStreamChanged { .. } => "JournalStreamChanged",
            ControllerEvent::JournalMessageQuarantined { .. } => "JournalMessageQuarantined",
        }
    }
}

/// A controller event as journaled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerRecord {
    /// When.
    pub at: DateTime<Utc>,
    /// Schema version of the event.
    pub version: u32,
    /// The event.
    #[serde(flatten)]
    pub event: ControllerEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form() {
        let record = ControllerRecord {
            at: "2026-12-02T06:00:00Z".parse().expect("a time"),
            version: 1,
            event: ControllerEvent::ConsumerRecovered {
                consumer: "projection-cost".into(),
                reason: "consumer deleted".into(),
                resumed_after: 41,
            },
        };
        let json = serde_json::to_value(&record).expect("serializes");
        assert_eq!(json["type"], "ConsumerRecovered");
        assert_eq!(json["data"]["resumed_after"], 41);
        assert_eq!(serde_json::from_value::<ControllerRecord>(json).expect("decodes"), record);
    }
}
