//! The fake's OS templates and startup scripts.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use serde_json::{Value, json};

use super::respond::{Q, S, bad, error, not_found, ok, page};
use super::state::{self, CATALOG, FakeScript, TEMPLATES};

pub(super) async fn list_templates(State(shared): S, Query(q): Q) -> Response {
    let items = TEMPLATES
        .iter()
        .filter(|t| q.get("name").is_none_or(|n| n == t.1))
        .map(|(id, name, os, _)| {
            let types: Vec<Value> = CATALOG
                .iter()
                .filter(|c| state::template_boots(id, c.0) == Some(true))
                .map(|c| json!({"machineTypeLabel": c.0, "isAvailable": true}))
                .collect();
            let value = json!({"id": id, "name": name, "agentType": "LinuxHeadless",
                "operatingSystemLabel": os, "defaultSizeGb": 100,
                "dtCreated": "2025-01-01T00:00:00Z", "availableMachineTypes": types});
            (id.to_string(), value)
        })
        .collect();
    page(items, &q, shared.config.page_size)
}

fn script_json(s: &FakeScript) -> Value {
    json!({"id": s.id, "name": s.name, "script": s.script, "isRunOnce": s.is_run_once,
           "isEnabled": true, "dtCreated": Utc::now().to_rfc3339()})
}

pub(super) async fn create_script(State(shared): S, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "PARSE_ERROR", "Invalid JSON body");
    };
    let (Some(name), Some(script)) =
        (request.get("name").and_then(Value::as_str), request.get("script").and_then(Value::as_str))
    else {
        return bad("name and script are required");
    };
    let mut world = shared.world();
    let id = world.token("s", 7);
    let created = FakeScript {
        id: id.clone(),
        name: name.into(),
        script: script.into(),
        is_run_once: request.get("isRunOnce").and_then(Value::as_bool).unwrap_or(false),
    };
    let value = script_json(&created);
    world.scripts.insert(id, created);
    ok(value)
}

pub(super) async fn list_scripts(State(shared): S, Query(q): Q) -> Response {
    let world = shared.world();
    let items = world
        .scripts
        .values()
        .filter(|s| q.get("name").is_none_or(|n| *n == s.name))
        .map(|s| (s.id.clone(), script_json(s)))
        .collect();
    page(items, &q, shared.config.page_size)
}

pub(super) async fn get_script(State(shared): S, Path(id): Path<String>) -> Response {
    match shared.world().scripts.get(&id) {
        Some(s) => ok(script_json(s)),
        None => not_found("Startup script"),
    }
}

pub(super) async fn delete_script(State(shared): S, Path(id): Path<String>) -> Response {
    match shared.world().scripts.remove(&id) {
        Some(s) => ok(script_json(&s)),
        None => not_found("Startup script"),
    }
}
