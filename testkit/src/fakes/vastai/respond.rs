//! How the Vast fake answers, shared by its routes and its listing: Vast's error envelope, and the
//! gate every call passes (the key, and the per-endpoint minimum interval answered with a
//! plain-text 429 and no `Retry-After`).

// A refusal is the response to send, built once per request.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Shared;

pub(super) type Q = Query<HashMap<String, String>>;

pub(super) type S = State<Arc<Shared>>;

pub(super) fn reply(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Vast's error envelope.
pub(super) fn fail(status: StatusCode, code: &str, msg: &str) -> Response {
    reply(status, json!({"success": false, "error": code, "msg": msg}))
}

/// Checks the key and the endpoint's minimum interval. `anonymous` lets a keyless call through
/// (offer search works without a key); `bad_key` is the status a wrong key gets.
pub(super) fn admit(
    s: &Shared,
    endpoint: &'static str,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    anonymous: bool,
    bad_key: StatusCode,
) -> Result<(), Response> {
    if let Some(min) = s.config.min_interval {
        let mut state = s.lock();
        let now = Instant::now();
        if state.last_call.get(endpoint).is_some_and(|t| now.duration_since(*t) < min) {
            let mut r = (StatusCode::TOO_MANY_REQUESTS, "API requests too frequent").into_response();
            r.headers_mut().insert("content-type", HeaderValue::from_static("text/plain"));
            return Err(r);
        }
        state.last_call.insert(endpoint, now);
    }
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .or_else(|| query.get("api_key").map(|k| k.trim()))
        .filter(|k| !k.is_empty());
    let ok = match (key, &s.config.api_key) {
        (None, _) => anonymous,
        (Some(k), Some(accepted)) => k == accepted,
        (Some(_), None) => true,
    };
    if ok { Ok(()) } else { Err(fail(bad_key, "auth_error", "Invalid user key")) }
}
