//! The client commands: they talk to a running controller over NATS exactly as any program would
//! (`tgp.api.*` requests, the journal stream), so they double as worked examples of the API.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::journal::{JournalReader, StartAt};
use crate::render::describe;
use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use tgp_events::api::{ErrorReply, InstanceSummary, LeaderReply, ListReply, ListRequest};
use tgp_events::commit::EventRecord;
use tgp_events::events::InstanceEvent;
use tgp_events::subjects::{
    API_GET, API_LAUNCH, API_LEADER, API_LIST, API_TERMINATE, INSTANCE_EVENTS_ALL, instance_events,
};
use tgp_events::{GpuType, InstanceId, LaunchCommand, Money, Needs, Region, RelaunchPolicy, SpotPolicy};

use super::needs::NeedsArgs;
use super::{NatsArgs, parse_duration};

/// Runs a client command on a small runtime.
pub fn block_on<F: Future<Output = anyhow::Result<()>>>(fut: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(fut)
}

/// Sends a request and decodes the success body, or turns `{"error": ...}` into an error.
async fn request<T: serde::de::DeserializeOwned>(
    client: &async_nats::Client,
    subject: &str,
    body: Vec<u8>,
) -> anyhow::Result<T> {
    let reply = tokio::time::timeout(Duration::from_secs(30), client.request(subject.to_string(), body.into()))
        .await
        .with_context(|| format!("no answer on {subject} within 30 s"))?;
    let reply = match reply {
        Ok(reply) => reply,
        Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
            bail!("no controller answers on {subject}: {}", who_leads(client).await)
        }
        Err(e) => return Err(e).with_context(|| format!("requesting {subject}")),
    };
    if let Ok(err) = serde_json::from_slice::<ErrorReply>(&reply.payload) {
        if err.error.code == "not_leader" {
            bail!("{} ({}); {}", err.error.message, err.error.code, who_leads(client).await);
        }
        bail!("{} ({})", err.error.message, err.error.code);
    }
    serde_json::from_slice(&reply.payload).with_context(|| format!("unexpected answer on {subject}"))
}

/// Who leads, as `tgp.api.leader` says, in a sentence for an error: what a user whose command
/// found no leader needs to decide whether to wait or to start a `tgp run`.
async fn who_leads(client: &async_nats::Client) -> String {
    let asked = tokio::time::timeout(Duration::from_secs(5), client.request(API_LEADER, "{}".into())).await;
    let Ok(Ok(reply)) = asked else {
        return "no tgp runs against this NATS server (nothing answers tgp.api.leader either): start `tgp run`".into();
    };
    match serde_json::from_slice::<LeaderReply>(&reply.payload) {
        Ok(LeaderReply { leader: Some(leader), answered_by, answerer_leads: false, answerer_ready }) => format!(
            "not_leader: {answered_by} stands by{}; {} (host {}, pid {}) holds the lease since {} and has not answered: \
             if it died, {answered_by} takes over when its lease lapses; send the command again then",
            if answerer_ready { "" } else { " (still catching up with the journal)" },
            leader.name,
            leader.host,
            leader.pid,
            leader.since.format("%H:%M:%S UTC")
        ),
        Ok(LeaderReply { leader: Some(leader), .. }) => {
            format!("{} leads (since {}); send the command again", leader.name, leader.since.format("%H:%M:%S UTC"))
        }
        Ok(LeaderReply { leader: None, answered_by, .. }) => format!(
            "not_leader: no tgp holds the lease right now; {answered_by} is taking it: send the command again in a few seconds"
        ),
        Err(_) => format!("tgp.api.leader answered: {}", String::from_utf8_lossy(&reply.payload)),
    }
}

#[derive(Args)]
pub struct LaunchArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// GPU type: H100, H200, A100-80GB, L40S, A6000, RTX4090, ...
    #[arg(long)]
    gpu: GpuType,
    /// GPUs in the machine.
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Acceptable regions (repeat or comma-separate); any when omitted.
    #[arg(long, value_delimiter = ',')]
    region: Vec<Region>,
    /// Most you pay per GPU per hour, in dollars, e.g. 3.00.
    #[arg(long)]
    max_price: Money,
    /// spot-only, on-demand-only or prefer-spot.
    #[arg(long, default_value = "prefer-spot")]
    spot_policy: SpotPolicy,
    /// Container or machine image.
    #[arg(long, default_value = tgp_events::commands::DEFAULT_IMAGE)]
    image: String,
    /// Environment variables, KEY=VALUE (repeatable).
    #[arg(long = "env", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// File with the SSH public key to install.
    #[arg(long)]
    ssh_key_file: Option<std::path::PathBuf>,
    /// Launch attempts for the whole chain (relaunches included).
    #[arg(long, default_value_t = 5)]
    max_attempts: u32,
    /// Never fall back to on-demand when spot is gone.
    #[arg(long)]
    no_on_demand_fallback: bool,
    /// Seconds to wait before the attempt after an interruption or failed launch, doubled per
    /// setback in a row (capacity failures fail over at once).
    #[arg(long, default_value_t = 5)]
    backoff_seconds: u32,
    /// The longest wait between attempts, in seconds.
    #[arg(long, default_value_t = 300)]
    max_backoff_seconds: u32,
    /// Terminate the instance this long after launch, e.g. 8h or 1h30m (default: never).
    #[arg(long)]
    max_lifetime: Option<tgp_events::Span>,
    /// The most the whole chain may cost in dollars, relaunches included, e.g. 40.00.
    #[arg(long)]
    budget: Option<Money>,
    /// When no offer fits, wait this long for one (selecting again as offers refresh) before
    /// failing, e.g. 2h; 0s fails at once (default: 30m).
    #[arg(long)]
    wait_for_capacity: Option<tgp_events::Span>,
    /// Idempotency key (becomes the instance id): repeating the command never launches twice.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Print the instance id and return without following it.
    #[arg(long)]
    no_wait: bool,
    /// Give up following after this long (the instance keeps going).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    needs: NeedsArgs,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

pub async fn launch(args: LaunchArgs) -> anyhow::Result<()> {
    let ssh_public_key = match &args.ssh_key_file {
        Some(path) => Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?.trim().to_string(),
        ),
        None => None,
    };
    let Needs { disk_gb, min_cpu_ram_gb, min_vcpus, providers, exclude_providers, min_reliability, secure_only } =
        args.needs.needs()?;
    let command = LaunchCommand {
        gpu_type: args.gpu,
        gpu_count: args.count,
        regions: args.region,
        max_hourly_price: args.max_price,
        spot_policy: args.spot_policy,
        image: args.image,
        env: args.env.into_iter().collect::<BTreeMap<_, _>>(),
        ssh_public_key,
        relaunch: RelaunchPolicy {
            max_attempts: args.max_attempts,
            on_demand_fallback: !args.no_on_demand_fallback,
            backoff_seconds: args.backoff_seconds,
            max_backoff_seconds: args.max_backoff_seconds,
        },
        max_lifetime: args.max_lifetime,
        budget: args.budget,
        wait_for_capacity: args.wait_for_capacity,
        disk_gb,
        min_cpu_ram_gb,
        min_vcpus,
        providers,
        exclude_providers,
        min_reliability,
        secure_only,
        idempotency_key: args.idempotency_key,
    };
    command.validate()?;
    let client = args.nats.connect("tgp-cli").await?;
    let summary: InstanceSummary = request(&client, API_LAUNCH, serde_json::to_vec(&command)?).await?;
    println!("instance {} accepted ({})", summary.instance_id, summary.state.name());
    if args.no_wait {
        return Ok(());
    }
    let end = follow(&client, &summary.instance_id, args.timeout, |e| {
        matches!(e, InstanceEvent::Running { .. } | InstanceEvent::Failed { .. } | InstanceEvent::Terminated { .. })
    })
    .await?;
    match end {
        InstanceEvent::Running { connection, .. } => {
            println!(
                "ready. connect with: {}",
                connection.ssh_command().unwrap_or_else(|| "(the provider gave no address)".into())
            );
            println!("terminate with: tgp terminate {}", summary.instance_id);
            Ok(())
        }
        InstanceEvent::Failed { reason, .. } => {
            bail!("instance {} failed: {reason}", summary.instance_id)
        }
        _ => bail!("instance {} was terminated before it ran", summary.instance_id),
    }
}

/// Prints an instance's events from its first until `stop` matches one; returns that one.
async fn follow(
    client: &async_nats::Client,
    id: &InstanceId,
    timeout: Duration,
    stop: impl Fn(&InstanceEvent) -> bool,
) -> anyhow::Result<InstanceEvent> {
    let js = crate::connect::jetstream(client.clone());
    let reader = JournalReader::open(&js).await?;
    let mut commits = reader.follow(&instance_events(id), StartAt::Beginning).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, commits.next()).await.with_context(|| {
            format!("gave up following {id} after {timeout:?}; it goes on: `tgp watch --instance {id}`")
        })?;
        let (_, at, commit) = next.context("the journal read ended")??;
        for (_, event) in commit.events {
            println!("  {} {}", at.format("%H:%M:%S"), describe(&event));
            if stop(&event) {
                return Ok(event);
            }
        }
    }
}

#[derive(Args)]
pub struct TerminateArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// The instance id.
    instance_id: InstanceId,
    /// Why, for the journal.
    #[arg(long)]
    reason: Option<String>,
    /// Return once the request is journaled, without waiting for the provider.
    #[arg(long)]
    no_wait: bool,
}

pub async fn terminate(args: TerminateArgs) -> anyhow::Result<()> {
    let client = args.nats.connect("tgp-cli").await?;
    let body = serde_json::json!({"instance_id": args.instance_id, "reason": args.reason.unwrap_or_else(|| "tgp terminate".into())});
    let summary: InstanceSummary = request(&client, API_TERMINATE, serde_json::to_vec(&body)?).await?;
    println!("instance {} {}", summary.instance_id, summary.state.name());
    if !args.no_wait && !summary.state.is_final() {
        follow(&client, &args.instance_id, Duration::from_secs(600), |e| {
            matches!(e, InstanceEvent::Terminated { .. } | InstanceEvent::Failed { .. })
        })
        .await?;
    }
    Ok(())
}

#[derive(Args)]
pub struct WatchArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    pins: super::journal::PinArgs,
    /// Only this instance.
    #[arg(long)]
    instance: Option<InstanceId>,
    /// Start at this stream sequence.
    #[arg(long, conflicts_with = "since")]
    from_seq: Option<u64>,
    /// Start at this time: RFC 3339 (2026-11-27T09:00:00Z) or an age (10m, 2h).
    #[arg(long)]
    since: Option<String>,
    /// Print each event's JSON record instead of a sentence.
    #[arg(long)]
    json: bool,
}

fn parse_since(text: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let age = parse_duration(text).map_err(|e| anyhow::anyhow!("--since: {e}, or an RFC 3339 time"))?;
    Ok(Utc::now() - chrono::Duration::from_std(age)?)
}

pub async fn watch(args: WatchArgs) -> anyhow::Result<()> {
    let client = args.nats.connect("tgp-cli").await?;
    let js = crate::connect::jetstream(client);
    let start = match (&args.from_seq, &args.since) {
        (Some(seq), _) => StartAt::Sequence(*seq),
        (None, Some(since)) => StartAt::Time(parse_since(since)?),
        (None, None) => StartAt::New,
    };
    let filter = args.instance.as_ref().map_or_else(|| INSTANCE_EVENTS_ALL.to_string(), instance_events);
    let mut commits = args.pins.apply(JournalReader::open(&js).await?)?.follow(&filter, start).await?;
    while let Some(next) = commits.next().await {
        let (seq, at, commit) = match next {
            Ok(read) => read,
            // A commit this tgp cannot read (quarantined and logged): watching only shows it, so go on.
            Err(cqrs_es::persist::PersistenceError::DeserializationError(e)) => {
                eprintln!("skipped: {e}");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for (sequence, event) in &commit.events {
            if args.json {
                let record = EventRecord::new(*sequence, event);
                println!(
                    "{}",
                    serde_json::json!({"stream_sequence": seq, "instance_id": commit.instance, "event": record})
                );
            } else {
                println!("{seq:>8} {} {:<24} {}", at.format("%Y-%m-%d %H:%M:%S"), commit.instance, describe(event));
            }
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct GetArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// The instance id.
    instance_id: InstanceId,
}

pub async fn get(args: GetArgs) -> anyhow::Result<()> {
    let client = args.nats.connect("tgp-cli").await?;
    let summary: InstanceSummary =
        request(&client, API_GET, serde_json::to_vec(&serde_json::json!({"instance_id": args.instance_id}))?).await?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    nats: NatsArgs,
}

/// Every instance `filter` matches, asked page by page (`tgp.api.list` answers in pages where
/// the list does not fit in one NATS message).
pub async fn list_all(client: &async_nats::Client, filter: ListRequest) -> anyhow::Result<Vec<InstanceSummary>> {
    let mut request = ListRequest { limit: Some(LIST_PAGE), after: None, ..filter };
    let mut all = Vec::new();
    loop {
        let body = serde_json::to_vec(&request).expect("a list request encodes");
        let reply: ListReply = self::request(client, API_LIST, body).await?;
        all.extend(reply.instances);
        match reply.next_after {
            Some(after) => request.after = Some(after),
            None => return Ok(all),
        }
    }
}

/// How many instances `tgp list` asks for at a time (a page also ends where the message is full).
const LIST_PAGE: usize = 2_000;

pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = args.nats.connect("tgp-cli").await?;
    let instances = list_all(&client, ListRequest::default()).await?;
    for s in &instances {
        println!(
            "{:<28} {:<12} {:<10} {:<12} {}",
            s.instance_id,
            s.state.name(),
            s.provider.as_ref().map(|p| p.as_str()).unwrap_or("-"),
            s.provider_instance_id.as_deref().unwrap_or("-"),
            s.hourly_price.map(|p| format!("{p}/h")).unwrap_or_default()
        );
    }
    println!("{} live instance(s)", instances.len());
    Ok(())
}
