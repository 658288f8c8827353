//! The fake's HTTP API: Vast's paths (with or without the trailing slash), auth (a Bearer token or
//! the legacy `?api_key=`), Vast's error envelope, and its per-endpoint minimum interval answered
//! with a plain-text 429 and no `Retry-After`.

// Handlers stop early with the response to send; it is built once per request, never moved
// around hot paths, so boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use serde_json::{Map, Value, json};

use super::Shared;
use super::catalog::{passes, sort};
use super::instances::{FakeInstance, Pinned};
use super::respond::{Q, S, admit, fail, reply};

/// Every route the client and the official CLIs use.
pub fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new();
    for slash in ["/", ""] {
        router = router
            .route(&format!("/api/v0/bundles{slash}"), post(search))
            .route(&format!("/api/v0/asks/{{id}}{slash}"), put(create))
            .route(&format!("/api/v0/instances{slash}"), get(super::listing::list_v0))
            .route(&format!("/api/v0/instances/{{id}}{slash}"), get(show).put(change).delete(destroy))
            .route(&format!("/api/v0/instances/bid_price/{{id}}{slash}"), put(change_bid))
            .route(&format!("/api/v1/instances{slash}"), get(super::listing::list_v1));
    }
    router.with_state(shared)
}

fn object(body: &Bytes) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ if body.is_empty() => Ok(Map::new()),
        _ => Err(fail(StatusCode::BAD_REQUEST, "invalid_request", "Invalid json body")),
    }
}

fn id_of(raw: &str) -> Result<u64, Response> {
    raw.parse().map_err(|_| fail(StatusCode::BAD_REQUEST, "invalid_args", "invalid instance_id"))
}

async fn search(State(s): S, headers: HeaderMap, Query(q): Q, body: Bytes) -> Response {
    let bad_key = if s.config.bundles_bad_key_404 { StatusCode::NOT_FOUND } else { StatusCode::UNAUTHORIZED };
    if let Err(r) = admit(&s, "POST /bundles", &headers, &q, true, bad_key) {
        return r;
    }
    let query = match object(&body) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let bid = query.get("type").and_then(Value::as_str) == Some("bid");
    let storage = query.get("allocated_storage").and_then(Value::as_f64).unwrap_or(8.0);
    let limit = query.get("limit").and_then(Value::as_u64).unwrap_or(64) as usize;
    let mut offers: Vec<Value> =
        s.lock().offers.iter().map(|o| o.to_json(bid, storage)).filter(|o| passes(o, &query)).collect();
    sort(&mut offers, query.get("order"));
    offers.truncate(limit);
    reply(StatusCode::OK, json!({"offers": offers}))
}

async fn create(State(s): S, Path(raw): Path<String>, headers: HeaderMap, Query(q): Q, body: Bytes) -> Response {
    if let Err(r) = admit(&s, "PUT /asks", &headers, &q, false, StatusCode::UNAUTHORIZED) {
        return r;
    }
    let request = match object(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(ask) = raw.parse::<u64>() else {
        return fail(StatusCode::BAD_REQUEST, "invalid_args", "error 400/3467: Invalid args: ask id");
    };
    let mut state = s.lock();
    state.created.push(Value::Object(request.clone()));
    let gone = || {
        reply(
            StatusCode::NOT_FOUND,
            json!({"success": false, "error": "invalid_args", "ask_id": ask,
            "msg": format!("error 404/3603: no_such_ask Instance type by id {ask} is not available.")}),
        )
    };
    let Some(offer) = state.offers.iter().find(|o| o.id == ask && !o.rented).cloned() else {
        return gone();
    };
    let image = request.get("image").and_then(Value::as_str).unwrap_or("").trim();
    if image.is_empty() && request.get("template_hash_id").is_none_or(Value::is_null) {
        return fail(StatusCode::BAD_REQUEST, "invalid_args", "error 400/3467: Invalid args: image is required");
    }
    let label = request.get("label").and_then(Value::as_str).map(str::to_string);
    if label.as_ref().is_some_and(|l| l.len() > 256) {
        return fail(StatusCode::BAD_REQUEST, "invalid_args", "error 400/3467: Invalid args: label too long");
    }
    let bid = match request.get("price") {
        None | Some(Value::Null) => None,
        Some(p) => match p.as_f64() {
            Some(p) if (0.001..=128.0).contains(&p) => Some(p),
            _ => {
                return fail(
                    StatusCode::BAD_REQUEST,
                    "invalid_price",
                    "error 400/3467: Invalid args: price must be between 0.001 and 128",
                );
            }
        },
    };
    let cancel_unavail = request.get("cancel_unavail").and_then(Value::as_bool).unwrap_or(bid.is_none());
    if state.no_capacity && cancel_unavail {
        return reply(
            StatusCode::GONE,
            json!({"success": false, "error": "no_such_ask", "ask_id": ask,
            "msg": format!("error 410/3907: no_such_ask Instance type {ask} is no longer available.")}),
        );
    }
    let too_low = bid.is_some_and(|b| b < offer.min_bid);
    let stopped = Pinned {
        actual: Some("stopped".into()),
        intended: "running".into(),
        cur: "stopped".into(),
        next: "stopped".into(),
        status_msg: None,
    };
    let id = state.next_id;
    state.next_id += 1;
    let instance = FakeInstance {
        id,
        offer: offer.clone(),
        label,
        is_bid: bid.is_some(),
        bid,
        disk: request.get("disk").and_then(Value::as_f64).unwrap_or(10.0),
        request,
        created: Instant::now(),
        outcome: state.outcome,
        pinned: (too_low || state.no_capacity).then_some(stopped),
        proxy_only: state.proxy_only,
    };
    state.instances.insert(id, instance);
    if let Some(o) = state.offers.iter_mut().find(|o| o.id == ask) {
        o.rented = true;
    }
    if too_low {
        return reply(
            StatusCode::OK,
            json!({"success": false, "error": "invalid_price", "new_contract": id,
            "msg": format!("Your bid is below the minimum bid of ${}/hr for this machine", offer.min_bid)}),
        );
    }
    reply(StatusCode::OK, json!({"success": true, "new_contract": id}))
}

async fn show(State(s): S, Path(raw): Path<String>, headers: HeaderMap, Query(q): Q) -> Response {
    if let Err(r) = admit(&s, "GET /instances/{id}", &headers, &q, false, StatusCode::UNAUTHORIZED) {
        return r;
    }
    let id = match id_of(&raw) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let state = s.lock();
    let instance = state.instances.get(&id).map(|i| i.to_json(s.config.boot_delay));
    reply(StatusCode::OK, json!({"instances": instance}))
}

async fn change(State(s): S, Path(raw): Path<String>, headers: HeaderMap, Query(q): Q, body: Bytes) -> Response {
    if let Err(r) = admit(&s, "PUT /instances/{id}", &headers, &q, false, StatusCode::UNAUTHORIZED) {
        return r;
    }
    let (id, request) = match (id_of(&raw), object(&body)) {
        (Ok(id), Ok(b)) => (id, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let mut state = s.lock();
    let Some(instance) = state.instances.get_mut(&id) else {
        return fail(StatusCode::NOT_FOUND, "no_such_instance", "Instance with that ID does not exist.");
    };
    if let Some(label) = request.get("label").and_then(Value::as_str) {
        instance.label = Some(label.to_string());
    }
    match request.get("state").and_then(Value::as_str) {
        Some("stopped") => instance.pinned = Some(Pinned::all("stopped")),
        Some("running") if instance.bid.is_some_and(|b| b < instance.offer.min_bid) => {
            if let Some(p) = instance.pinned.as_mut() {
                p.intended = "running".into();
            }
        }
        Some("running") => instance.pinned = Some(Pinned::all("running")),
        _ => {}
    }
    reply(StatusCode::OK, json!({"success": true}))
}

async fn change_bid(State(s): S, Path(raw): Path<String>, headers: HeaderMap, Query(q): Q, body: Bytes) -> Response {
    if let Err(r) = admit(&s, "PUT /instances/bid_price", &headers, &q, false, StatusCode::UNAUTHORIZED) {
        return r;
    }
    let (id, request) = match (id_of(&raw), object(&body)) {
        (Ok(id), Ok(b)) => (id, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let Some(price) = request.get("price").and_then(Value::as_f64).filter(|p| (0.001..=32.0).contains(p)) else {
        return fail(StatusCode::BAD_REQUEST, "invalid_args", "Please set a bid price >= 0.001.");
    };
    let mut state = s.lock();
    let Some(instance) = state.instances.get_mut(&id) else {
        return fail(StatusCode::NOT_FOUND, "no_such_instance", "Instance with that ID does not exist.");
    };
    instance.bid = Some(price);
    instance.is_bid = true;
    let paused = instance.pinned.as_ref().is_some_and(|p| p.actual.as_deref() == Some("stopped"));
    if paused && price >= instance.offer.min_bid {
        instance.pinned = Some(Pinned::all("running"));
    }
    reply(StatusCode::OK, json!({"success": true}))
}

async fn destroy(State(s): S, Path(raw): Path<String>, headers: HeaderMap, Query(q): Q) -> Response {
    if let Err(r) = admit(&s, "DELETE /instances/{id}", &headers, &q, false, StatusCode::UNAUTHORIZED) {
        return r;
    }
    let id = match id_of(&raw) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let mut state = s.lock();
    let Some(instance) = state.instances.remove(&id) else {
        return fail(StatusCode::NOT_FOUND, "not_found", "Instance not found");
    };
    if let Some(o) = state.offers.iter_mut().find(|o| o.id == instance.offer.id) {
        o.rented = false;
    }
    reply(StatusCode::OK, json!({"success": true, "msg": format!("destroying instance {id}.")}))
}
