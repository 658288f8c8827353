//! The fake's HTTP routes, in Paperspace's own shapes and error envelope.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, patch};
use chrono::Utc;
use serde_json::{Value, json};

use super::respond::{Q, S, bad, error, not_found, ok, page};
use super::state::{self, CATALOG, FakeEvent, FakeMachine, Phase, World};
use super::{Shared, templates};

/// Every route under `/v1`, behind the key check and the rate limit.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/machine-availability", get(availability))
        .route("/machines", get(list_machines).post(create_machine))
        .route("/machines/{id}", get(get_machine).delete(delete_machine))
        .route("/machines/{id}/start", patch(start_machine))
        .route("/machines/{id}/stop", patch(stop_machine))
        .route("/machine-events", get(list_events))
        .route("/os-templates", get(templates::list_templates))
        .route("/startup-scripts", get(templates::list_scripts).post(templates::create_script))
        .route("/startup-scripts/{id}", get(templates::get_script).delete(templates::delete_script))
        .route_layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared);
    Router::new().nest("/v1", api)
}

/// Bearer key check, then the (optional) per-minute limit.
async fn gate(State(shared): S, request: Request, next: Next) -> Response {
    let expected = format!("Bearer {}", shared.config.api_key);
    let given = request.headers().get("authorization").and_then(|v| v.to_str().ok());
    if given != Some(expected.as_str()) {
        return error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "Invalid API key");
    }
    if let Some(limit) = shared.config.rate_limit_per_minute {
        let now = Instant::now();
        let mut world = shared.world();
        world.recent.retain(|t| now.duration_since(*t) < Duration::from_secs(60));
        if world.recent.len() >= limit {
            return error(StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_REQUESTS", "Too many requests");
        }
        world.recent.push(now);
    }
    next.run(request).await
}

async fn availability(State(shared): S, Query(q): Q) -> Response {
    let (Some(machine_type), Some(region)) = (q.get("machineType"), q.get("region")) else {
        return bad("machineType and region are required");
    };
    if !CATALOG.iter().any(|c| c.0 == machine_type) {
        return bad(&format!("Invalid machine type {machine_type}"));
    }
    ok(json!({"available": shared.world().is_available(machine_type, region)}))
}

/// Adds a machine booting now; returns its id.
pub(crate) fn insert_machine(
    shared: &Shared,
    name: &str,
    machine_type: &str,
    region: &str,
    template: &str,
    script: Option<String>,
    request: Value,
) -> String {
    let now = Instant::now();
    let mut world = shared.world();
    let fails = world.no_capacity || world.silent_capacity_failure;
    let id = world.token("ps", 7);
    let (a, b) = (world.octet(), world.octet());
    let seq = world.next_seq();
    let disk_size = request.get("diskSize").and_then(Value::as_u64).unwrap_or(100);
    world.machines.insert(
        id.clone(),
        FakeMachine {
            id: id.clone(),
            name: name.into(),
            machine_type: machine_type.into(),
            region: region.into(),
            template_id: template.into(),
            startup_script_id: script,
            disk_size,
            public_ip: format!("198.51.100.{a}"),
            private_ip: format!("10.64.{b}.{a}"),
            phase: Phase::Booting { since: now, fails },
            created: Utc::now(),
            seq,
            deleted: None,
            request,
        },
    );
    let error = fails.then(|| state::CAPACITY_ERROR.to_string());
    push_event(&mut world, &id, "create", now + shared.config.boot_delay, error);
    id
}

/// Records a machine event ending at `resolves_at`.
pub(crate) fn push_event(world: &mut World, machine_id: &str, name: &str, resolves_at: Instant, error: Option<String>) {
    let id = format!("{}-{}-4bd4-b770-{}", world.token("", 8), world.token("", 4), world.token("", 12));
    world.events.push(FakeEvent {
        id,
        machine_id: machine_id.into(),
        name: name.into(),
        resolves_at,
        error,
        created: Utc::now(),
    });
}

fn machine_view(shared: &Shared, m: &FakeMachine) -> Value {
    let s = state::state_of(m, Instant::now(), shared.delays());
    state::machine_json(m, &s, state::usage_rate(&m.machine_type))
}

fn last_event(world: &World, machine_id: &str) -> Value {
    world
        .events
        .iter()
        .rev()
        .find(|e| e.machine_id == machine_id)
        .map_or(Value::Null, |e| state::event_json(e, Instant::now()))
}

async fn create_machine(State(shared): S, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "PARSE_ERROR", "Invalid JSON body");
    };
    let text = |k: &str| request.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(name), Some(machine_type), Some(region), Some(template)) =
        (text("name"), text("machineType"), text("region"), text("templateId"))
    else {
        return bad("name, machineType, region and templateId are required");
    };
    let Some(disk) = request.get("diskSize").and_then(Value::as_u64) else {
        return bad("diskSize is required");
    };
    if name.is_empty() || !(50..=2000).contains(&disk) {
        return bad("Invalid name or diskSize");
    }
    let Some(entry) = CATALOG.iter().find(|c| c.0 == machine_type) else {
        return bad(&format!("Invalid machine type {machine_type}"));
    };
    if !entry.1.contains(&region.as_str()) {
        return bad(&format!("{machine_type} is not offered in {region}"));
    }
    match state::template_boots(&template, &machine_type) {
        None => return bad("templateId not found"),
        Some(false) => {
            return bad(&format!("Template {template} does not support {machine_type}"));
        }
        Some(true) => {}
    }
    let script = text("startupScriptId");
    if let Some(id) = &script
        && !shared.world().scripts.contains_key(id)
    {
        return bad("startupScriptId not found");
    }
    let id = insert_machine(&shared, &name, &machine_type, &region, &template, script, request);
    let world = shared.world();
    let Some(m) = world.machines.get(&id) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_SERVER_ERROR", "lost");
    };
    ok(json!({"data": machine_view(&shared, m), "event": last_event(&world, &id)}))
}

async fn get_machine(State(shared): S, Path(id): Path<String>) -> Response {
    let world = shared.world();
    match world.machines.get(&id).filter(|m| m.deleted.is_none()) {
        Some(m) => ok(machine_view(&shared, m)),
        None => not_found("Machine"),
    }
}

async fn list_machines(State(shared): S, Query(q): Q) -> Response {
    let world = shared.world();
    let mut machines: Vec<&FakeMachine> = world
        .machines
        .values()
        .filter(|m| m.deleted.is_none())
        .filter(|m| q.get("name").is_none_or(|n| *n == m.name))
        .filter(|m| q.get("region").is_none_or(|r| *r == m.region))
        .filter(|m| q.get("machineType").is_none_or(|t| *t == m.machine_type))
        .collect();
    machines.sort_by_key(|m| std::cmp::Reverse(m.seq));
    let items = machines.into_iter().map(|m| (m.id.clone(), machine_view(&shared, m))).collect();
    page(items, &q, shared.config.page_size)
}

async fn delete_machine(State(shared): S, Path(id): Path<String>) -> Response {
    let now = Instant::now();
    let mut world = shared.world();
    let Some(m) = world.machines.get_mut(&id).filter(|m| m.deleted.is_none()) else {
        return not_found("Machine");
    };
    m.deleted = Some(Utc::now());
    let data = state::machine_json(m, "off", state::usage_rate(&m.machine_type));
    push_event(&mut world, &id, "deactivate", now, None);
    ok(json!({"data": data, "event": last_event(&world, &id)}))
}

async fn start_machine(State(shared): S, Path(id): Path<String>) -> Response {
    let now = Instant::now();
    let delays = shared.delays();
    let mut world = shared.world();
    let fails = world.no_capacity || world.silent_capacity_failure;
    let Some(m) = world.machines.get_mut(&id).filter(|m| m.deleted.is_none()) else {
        return not_found("Machine");
    };
    match state::state_of(m, now, delays).as_str() {
        "off" => m.phase = Phase::Booting { since: now, fails },
        "provisioning" | "starting" | "serviceready" => {
            return bad("This machine is currently starting.");
        }
        _ => return bad("This machine must be off to start."),
    }
    let data = machine_view(&shared, m);
    let error = fails.then(|| state::CAPACITY_ERROR.to_string());
    push_event(&mut world, &id, "start", now + delays.boot, error);
    ok(json!({"data": data, "event": last_event(&world, &id)}))
}

async fn stop_machine(State(shared): S, Path(id): Path<String>) -> Response {
    let now = Instant::now();
    let delays = shared.delays();
    let mut world = shared.world();
    let Some(m) = world.machines.get_mut(&id).filter(|m| m.deleted.is_none()) else {
        return not_found("Machine");
    };
    if !matches!(state::state_of(m, now, delays).as_str(), "ready" | "serviceready") {
        return bad("This machine is not running.");
    }
    m.phase = Phase::Stopping { since: now };
    let data = machine_view(&shared, m);
    push_event(&mut world, &id, "stop", now + delays.stop, None);
    ok(json!({"data": data, "event": last_event(&world, &id)}))
}

async fn list_events(State(shared): S, Query(q): Q) -> Response {
    let now = Instant::now();
    let world = shared.world();
    let items = world
        .events
        .iter()
        .rev()
        .filter(|e| q.get("machineId").is_none_or(|m| *m == e.machine_id))
        .map(|e| (e.id.clone(), state::event_json(e, now)))
        .collect();
    page(items, &q, shared.config.page_size)
}
