//! The fake's instance lists: the paginated `GET /api/v1/instances/` (keyset pagination with
//! `after_token` / `next_token`, JSON-encoded query parameters, `select_filters` on stored columns
//! only) and the deprecated `GET /api/v0/instances/` that returns everything at once.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::catalog::test;
use super::respond::{Q, S, admit, fail, reply};

pub async fn list_v0(State(s): S, headers: HeaderMap, Query(q): Q) -> Response {
    if let Err(r) = admit(&s, "GET /instances", &headers, &q, false, StatusCode::UNAUTHORIZED) {
        return r;
    }
    let all: Vec<Value> = s.lock().instances.values().map(|i| i.to_json(s.config.boot_delay)).collect();
    let mut r = reply(StatusCode::OK, json!({"instances": all}));
    if s.config.deprecate_v0_list {
        r.headers_mut().insert("deprecation", HeaderValue::from_static("true"));
    }
    r
}

/// Columns `select_filters` may use (stored ones); computed ones give 400, as on Vast.
const STORED: &[&str] = &[
    "id",
    "label",
    "actual_status",
    "intended_status",
    "cur_state",
    "next_state",
    "gpu_name",
    "verification",
    "machine_id",
    "is_bid",
    "status_msg",
    "geolocation",
];

fn token(id: u64) -> String {
    format!("eyJ{id:x}")
}

pub async fn list_v1(State(s): S, headers: HeaderMap, Query(q): Q) -> Response {
    if let Err(r) = admit(&s, "GET /v1/instances", &headers, &q, false, StatusCode::UNAUTHORIZED) {
        return r;
    }
    let max = i64::from(s.config.page_size);
    let limit = match q.get("limit").and_then(|l| l.trim().parse::<i64>().ok()) {
        None => max,
        Some(n) if n <= 0 => 5,
        Some(n) => n.min(max),
    } as usize;
    let after = match q.get("after_token") {
        None => 0,
        Some(t) => match t.strip_prefix("eyJ").and_then(|h| u64::from_str_radix(h, 16).ok()) {
            Some(id) => id,
            None => {
                return fail(StatusCode::BAD_REQUEST, "invalid_token", "Invalid after_token");
            }
        },
    };
    let filters = match q.get("select_filters").map(|f| serde_json::from_str::<Value>(f)) {
        None => Map::new(),
        Some(Ok(Value::Object(f))) => f,
        Some(_) => {
            return fail(StatusCode::BAD_REQUEST, "invalid_request", "Error in query parameters: select_filters");
        }
    };
    if let Some(bad) = filters.keys().find(|k| !STORED.contains(&k.as_str())) {
        return fail(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("Error in query parameters: {bad} is not a valid search key"),
        );
    }
    let state = s.lock();
    let matching: Vec<Value> = state
        .instances
        .values()
        .map(|i| i.to_json(s.config.boot_delay))
        .filter(|i| {
            filters.iter().all(|(field, ops)| {
                ops.as_object().is_some_and(|ops| ops.iter().all(|(op, v)| test(i.get(field), op, v)))
            })
        })
        .collect();
    let mut label_counts = Map::new();
    for i in &matching {
        let label = i["label"].as_str().unwrap_or("").to_string();
        let n = label_counts.get(&label).and_then(Value::as_u64).unwrap_or(0);
        label_counts.insert(label, json!(n + 1));
    }
    let rest: Vec<&Value> = matching.iter().filter(|i| i["id"].as_u64().unwrap_or(0) > after).collect();
    let page: Vec<Value> = rest.iter().take(limit).map(|v| (*v).clone()).collect();
    let next = (rest.len() > page.len()).then(|| page.last().and_then(|v| v["id"].as_u64()).map(token)).flatten();
    reply(
        StatusCode::OK,
        json!({"success": true, "instances_found": matching.len(),
        "total_instances": state.instances.len(), "label_counts": label_counts,
        "next_token": next, "instances": page}),
    )
}
