//! NATS names: subjects, streams, buckets and headers. Other programs use these constants rather
//! than strings, so a rename is a compile error instead of silence. `docs/events.md` describes each.

use crate::ids::InstanceId;

/// The journal stream: every event tgp records.
pub const EVENTS_STREAM: &str = "TGP_EVENTS";
/// Subjects captured by [`EVENTS_STREAM`].
pub const EVENTS_SUBJECTS: &str = "tgp.events.>";
/// Prefix of an instance's subject; the instance id is the last token.
pub const INSTANCE_EVENTS_PREFIX: &str = "tgp.events.instance";
/// Every instance's events (`tgp.events.instance.>`), for subscribers and replays.
pub const INSTANCE_EVENTS_ALL: &str = "tgp.events.instance.>";

/// Prefix of a provider's subject; the provider name is the last token.
pub const PROVIDER_EVENTS_PREFIX: &str = "tgp.events.provider";

/// What happens to tgp itself ([`crate::controller_events`]): its consumers' recoveries.
pub const CONTROLLER_EVENTS: &str = "tgp.events.controller";

/// The subject of one provider's events.
pub fn provider_events(provider: &crate::ProviderName) -> String {
    format!("{PROVIDER_EVENTS_PREFIX}.{provider}")
}

/// The subject holding one instance's commits.
pub fn instance_events(id: &InstanceId) -> String {
    format!("{INSTANCE_EVENTS_PREFIX}.{id}")
}

/// The durable, work-queue command stream: commands wait here while tgp is down.
pub const COMMANDS_STREAM: &str = "TGP_COMMANDS";
/// Subjects captured by [`COMMANDS_STREAM`].
pub const COMMANDS_SUBJECTS: &str = "tgp.commands.>";
/// Publish a launch command here (the `Nats-Msg-Id` header is the idempotency key).
pub const LAUNCH_COMMAND: &str = "tgp.commands.launch";
/// Publish a terminate command here.
pub const TERMINATE_COMMAND: &str = "tgp.commands.terminate";

/// Commands that could not be decoded or were invalid, kept with the reason.
pub const DEAD_LETTERS_STREAM: &str = "TGP_DEAD_LETTERS";
/// Subjects captured by [`DEAD_LETTERS_STREAM`]; the original subject follows the prefix.
pub const DEAD_LETTERS_SUBJECTS: &str = "tgp.dead.>";
/// Prefix of a dead letter's subject: `tgp.dead.<original subject>`.
pub const DEAD_LETTERS_PREFIX: &str = "tgp.dead";

/// Interrupt a machine on cue (`{"provider_instance_id": "sim-3"}`), as a provider reclaiming spot
/// capacity would. Served only by `tgp-dev run` (the testkit's fake and simulated markets); the
/// product has no market that can be cued.
pub const SIM_INTERRUPT: &str = "tgp.sim.interrupt";
/// Change how the simulated market behaves (the testkit's `MarketCue` as JSON): refuse launches,
/// lose launch answers, withdraw spot capacity. Served only by `tgp-dev run --market simulated`.
pub const SIM_CUE: &str = "tgp.sim.cue";

/// Key-value bucket of instance snapshots.
pub const SNAPSHOTS_BUCKET: &str = "tgp_snapshots";

/// Key-value bucket of journal messages that did not decode and were skipped: the key is the
/// stream sequence, the value says the subject and why (`tgp journal check` lists them).
pub const QUARANTINE_BUCKET: &str = "tgp_quarantine";

/// Key-value bucket holding the controller lease: one key, [`LEADER_KEY`], whose holder leads;
/// the bucket's `max_age` is the lease's time to live.
pub const LEADER_BUCKET: &str = "tgp_leader";

/// The lease's key in [`LEADER_BUCKET`].
pub const LEADER_KEY: &str = "controller";

/// Header on every journal commit: the epoch of the leader that wrote it (the lease's revision
/// when it was taken), so a commit can be traced to the controller that decided it.
pub const HEADER_LEADER_EPOCH: &str = "Tgp-Leader-Epoch";

/// The request/reply service's name, as NATS service discovery shows it.
pub const SERVICE_NAME: &str = "tgp";
/// Prefix of the request/reply endpoints.
pub const API_PREFIX: &str = "tgp.api";
/// Request a launch; answers the instance id and state.
pub const API_LAUNCH: &str = "tgp.api.launch";
/// Request a termination.
pub const API_TERMINATE: &str = "tgp.api.terminate";
/// Ask for one instance's state.
pub const API_GET: &str = "tgp.api.get";
/// Ask for the instances tgp manages.
pub const API_LIST: &str = "tgp.api.list";
/// Ask for spend over a range, grouped (the live cost projection).
pub const API_COST: &str = "tgp.api.cost";
/// Ask for the prices paid (the pricing projection).
pub const API_PRICES: &str = "tgp.api.prices";
/// Ask for offers across providers (through the provider actors' limits and caches).
pub const API_OFFERS: &str = "tgp.api.offers";
/// Disable a provider at run time (`{"provider": "vastai", "reason": "..."}`).
pub const API_PROVIDER_DISABLE: &str = "tgp.api.provider.disable";
/// Enable a provider again (`{"provider": "vastai"}`).
pub const API_PROVIDER_ENABLE: &str = "tgp.api.provider.enable";
/// Who leads (`{}`): answered by every `tgp run`, leader or standby, so a command that found no
/// controller (a leader just died, its standby not yet in charge) can be told who leads.
pub const API_LEADER: &str = "tgp.api.leader";
/// The queue group every `tgp run` answers [`API_LEADER`] in: one answer per request.
pub const API_LEADER_GROUP: &str = "tgp-leader";

/// Header: standard JetStream de-duplication id (the idempotency key on commands).
pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";
/// Header: the instance id of a commit.
pub const HEADER_AGGREGATE_ID: &str = "Tgp-Aggregate-Id";
/// Header: the sequence of the first event in a commit.
pub const HEADER_FIRST_SEQUENCE: &str = "Tgp-First-Sequence";
/// Header: the sequence of the last event in a commit.
pub const HEADER_LAST_SEQUENCE: &str = "Tgp-Last-Sequence";
/// Header: the event types in a commit, comma-separated, so filters need not parse the body.
pub const HEADER_EVENT_TYPES: &str = "Tgp-Event-Types";
/// Header: the schema version of the commit's events.
pub const HEADER_SCHEMA_VERSION: &str = "Tgp-Schema-Version";
/// Header: the correlation id tying a commit to the command that caused it.
pub const HEADER_CORRELATION_ID: &str = "Tgp-Correlation-Id";
/// Header on a dead letter: why the command was refused.
pub const HEADER_DEAD_REASON: &str = "Tgp-Dead-Letter-Reason";
/// Header on a dead letter: the error code.
pub const HEADER_DEAD_CODE: &str = "Tgp-Dead-Letter-Code";
