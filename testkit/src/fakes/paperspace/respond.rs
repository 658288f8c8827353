//! How the Paperspace fake answers, shared by its machine routes and its template and script
//! routes: Paperspace's error body, and its cursor pages (`after`, `limit`, `hasMore`, `nextPage`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Shared;

pub(super) type S = State<Arc<Shared>>;

pub(super) type Q = Query<HashMap<String, String>>;

pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({"code": code, "message": message}))).into_response()
}

pub(super) fn bad(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
}

pub(super) fn not_found(what: &str) -> Response {
    error(StatusCode::NOT_FOUND, "NOT_FOUND", &format!("{what} not found"))
}

pub(super) fn ok(value: Value) -> Response {
    axum::Json(value).into_response()
}

/// One page of `items` (already in order, each with its cursor), honouring `after` and `limit`.
pub(super) fn page(items: Vec<(String, Value)>, query: &HashMap<String, String>, cap: usize) -> Response {
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => cap,
        Some(Ok(l)) if (1..=120).contains(&l) => l.min(cap),
        Some(_) => return bad("limit must be between 1 and 120"),
    };
    let start = match query.get("after") {
        None => 0,
        Some(cursor) => match items.iter().position(|(c, _)| c == cursor) {
            Some(i) => i + 1,
            None => return bad("Invalid cursor"),
        },
    };
    let rest: Vec<_> = items.into_iter().skip(start).collect();
    let has_more = rest.len() > limit;
    let chunk: Vec<_> = rest.into_iter().take(limit).collect();
    let next = if has_more { chunk.last().map(|(c, _)| c.clone()) } else { None };
    let values: Vec<Value> = chunk.into_iter().map(|(_, v)| v).collect();
    ok(json!({"items": values, "hasMore": has_more, "nextPage": next}))
}
