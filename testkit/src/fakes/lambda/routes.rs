//! The fake Lambda's HTTP API: the same paths, bodies, status codes and error envelope as
//! Lambda's v1 API (`shared/providers/lambda.md` §3), behind a key check and rate limits.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State as Shared};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Value, json};

use super::state::{self, FakeKey, State};

/// The shared account.
pub type Account = Arc<Mutex<State>>;

fn lock(account: &Account) -> MutexGuard<'_, State> {
    account.lock().unwrap_or_else(|p| p.into_inner())
}

/// `{"data": ...}` with 200.
fn ok(data: Value) -> Response {
    (StatusCode::OK, axum::Json(json!({ "data": data }))).into_response()
}

/// Lambda's error envelope.
pub fn error(status: StatusCode, code: &str, message: &str, suggestion: Option<&str>) -> Response {
    let mut e = json!({"code": code, "message": message});
    if let Some(s) = suggestion {
        e["suggestion"] = json!(s);
    }
    (status, axum::Json(json!({ "error": e }))).into_response()
}

fn invalid(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "global/invalid-parameters", message, None)
}

fn missing(what: &str, status: StatusCode) -> Response {
    error(
        status,
        "global/object-does-not-exist",
        &format!("Specified {what} does not exist."),
        Some("Check the name or id, then try again."),
    )
}

/// Lambda parses JSON bodies whatever their content type (SkyPilot sends none).
fn body_json(body: &Bytes) -> Result<Value, Box<Response>> {
    serde_json::from_slice(body).map_err(|_| Box::new(invalid("Invalid request data.")))
}

/// The whole API under `/api/v1`.
pub fn router(account: Account) -> Router {
    let api = Router::new()
        .route("/instance-types", get(instance_types))
        .route("/regions", get(regions))
        .route("/instances", get(list_instances))
        .route("/instances/{id}", get(get_instance))
        .route("/instance-operations/launch", post(launch))
        .route("/instance-operations/terminate", post(terminate))
        .route("/ssh-keys", get(list_keys).post(add_key))
        .route("/ssh-keys/{id}", delete(delete_key))
        .with_state(account.clone());
    Router::new().nest("/api/v1", api).layer(middleware::from_fn_with_state(account, gate))
}

/// Key check (Bearer, or Basic with the key as user name), rate limits, and the deprecated
/// old host's `Deprecation` header.
async fn gate(Shared(account): Shared<Account>, request: Request, next: Next) -> Response {
    let (auth, host) = {
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        (header("authorization"), header("host"))
    };
    let is_launch = request.uri().path().ends_with("/instance-operations/launch");
    if let Some(refused) = admit(&account, &auth, is_launch) {
        return refused;
    }
    let mut response = next.run(request).await;
    if host.contains("lambdalabs.com") {
        response.headers_mut().insert("deprecation", HeaderValue::from_static("true"));
    }
    response
}

/// The refusal for a request without the key or past a rate limit, if any.
fn admit(account: &Account, auth: &str, is_launch: bool) -> Option<Response> {
    let mut s = lock(account);
    let accepted = match &s.config.api_key {
        Some(key) => auth == format!("Bearer {key}") || auth == format!("Basic {}", base64(&format!("{key}:"))),
        None => auth.starts_with("Bearer ") && auth.len() > "Bearer ".len(),
    };
    if !accepted {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "global/invalid-api-key",
            "API key was invalid, expired, or deleted.",
            Some("Check your API key or create a new one, then try again."),
        ));
    }
    let now = Instant::now();
    let (interval, per_minute) = (s.config.launch_interval, s.config.launches_per_minute);
    let wait = state::too_soon(s.last_request, s.config.request_interval, now).or_else(|| {
        is_launch.then(|| state::launch_too_soon(&mut s.admitted_launches, interval, per_minute, now)).flatten()
    });
    if let Some(seconds) = wait {
        return Some(too_many(s.config.rate_limit_html, seconds));
    }
    s.last_request = Some(now);
    if is_launch {
        s.admitted_launches.push_back(now);
    }
    None
}

/// 429 as JSON, or as the HTML page a rate-limiting proxy sends (brevdev looks for its text).
fn too_many(html: bool, seconds: u64) -> Response {
    let mut response = if html {
        let page = "<html><head><title>Access denied</title></head><body><h1>Error 1015</h1>\
                    <p>You are being rate limited. The owner of this website has banned you \
                    temporarily from accessing this website.</p></body></html>";
        (StatusCode::TOO_MANY_REQUESTS, [("content-type", "text/html")], page).into_response()
    } else {
        error(
            StatusCode::TOO_MANY_REQUESTS,
            "global/too-many-requests",
            "Too many requests.",
            Some("Slow down, then try again."),
        )
    };
    if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert("retry-after", v);
    }
    response
}

async fn instance_types(Shared(account): Shared<Account>) -> Response {
    ok(lock(&account).instance_types_json())
}

async fn regions() -> Response {
    ok(super::catalog::REGIONS.iter().map(|(c, _)| super::catalog::region_json(c)).collect())
}

async fn list_instances(Shared(account): Shared<Account>) -> Response {
    let mut s = lock(&account);
    s.refresh(Instant::now());
    let all: Vec<Value> = s.instances.values().map(|i| s.instance_json(i)).collect();
    ok(Value::Array(all))
}

async fn get_instance(Shared(account): Shared<Account>, Path(id): Path<String>) -> Response {
    let mut s = lock(&account);
    s.refresh(Instant::now());
    match s.instances.get(&id) {
        Some(i) => ok(s.instance_json(i)),
        None => missing("instance", StatusCode::NOT_FOUND),
    }
}

async fn launch(Shared(account): Shared<Account>, body: Bytes) -> Response {
    let body = match body_json(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let mut s = lock(&account);
    s.launches.push(body.clone());
    let text = |k: &str| body.get(k).and_then(Value::as_str);
    let (Some(type_name), Some(region)) = (text("instance_type_name"), text("region_name")) else {
        return invalid("instance_type_name and region_name are required.");
    };
    let keys: Vec<&str> = match body.get("ssh_key_names").and_then(Value::as_array) {
        Some(a) => a.iter().filter_map(Value::as_str).collect(),
        None => return invalid("ssh_key_names: Field required"),
    };
    if keys.len() != 1 {
        return invalid("ssh_key_names: exactly one SSH key must be specified");
    }
    match body.get("quantity").map(Value::as_u64) {
        None | Some(Some(1)) => {}
        Some(Some(0)) | Some(None) => {
            return invalid("quantity: Input should be greater than or equal to 1");
        }
        Some(Some(_)) => return invalid("quantity: Input should be less than or equal to 1"),
    }
    if text("name").is_some_and(|n| n.chars().count() > 64) {
        return invalid("name: String should have at most 64 characters");
    }
    if text("user_data").is_some_and(|u| u.len() > 1_000_000) {
        return invalid("user_data: must not exceed 1MB");
    }
    let Some(t) = s.types.get(type_name).cloned() else {
        return missing("instance type", StatusCode::BAD_REQUEST);
    };
    if !super::catalog::REGIONS.iter().any(|(c, _)| *c == region) {
        return missing("region", StatusCode::BAD_REQUEST);
    }
    if !s.keys.iter().any(|k| k.name == keys[0]) {
        return missing("SSH key", StatusCode::BAD_REQUEST);
    }
    let has_capacity = s.capacity.contains(&(type_name.to_string(), region.to_string()));
    if s.no_capacity || !has_capacity {
        return error(
            StatusCode::BAD_REQUEST,
            "instance-operations/launch/insufficient-capacity",
            "Not enough capacity to fulfill launch request.",
            Some("Try a different region or instance type."),
        );
    }
    let id = s.launch(t, region, &body, Instant::now());
    ok(json!({ "instance_ids": [id] }))
}

async fn terminate(Shared(account): Shared<Account>, body: Bytes) -> Response {
    let body = match body_json(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Some(ids) = body.get("instance_ids").and_then(Value::as_array) else {
        return invalid("instance_ids: Field required");
    };
    let ids: Vec<String> = ids.iter().filter_map(|v| v.as_str().map(str::to_string)).collect();
    let mut s = lock(&account);
    let now = Instant::now();
    s.refresh(now);
    // One bad id fails the whole batch (unconfirmed at Lambda; the simplest reading).
    for id in &ids {
        match s.instances.get(id).map(|i| i.status.as_str()) {
            None => return missing("instance", StatusCode::NOT_FOUND),
            Some("terminating" | "terminated") => {
                return error(StatusCode::BAD_REQUEST, "global/unknown", "An unknown error occurred.", None);
            }
            Some(_) => {}
        }
    }
    let mut out = Vec::new();
    for id in &ids {
        if let Some(i) = s.instances.get_mut(id) {
            state::set(i, "terminating", now);
        }
        if let Some(i) = s.instances.get(id) {
            out.push(s.instance_json(i));
        }
    }
    ok(json!({ "terminated_instances": out }))
}

async fn list_keys(Shared(account): Shared<Account>) -> Response {
    let s = lock(&account);
    ok(s.keys.iter().map(|k| s.key_json(k)).collect())
}

async fn add_key(Shared(account): Shared<Account>, body: Bytes) -> Response {
    let body = match body_json(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Some(name) = body.get("name").and_then(Value::as_str).filter(|n| (1..=64).contains(&n.len())) else {
        return invalid("name: String should have 1 to 64 characters");
    };
    let mut s = lock(&account);
    if s.keys.iter().any(|k| k.name == name) {
        return invalid("An SSH key with this name already exists.");
    }
    let id = s.new_id();
    let (public_key, private_key) = match body.get("public_key").and_then(Value::as_str) {
        Some(k) if (1..=4096).contains(&k.len()) => (k.to_string(), None),
        Some(_) => return invalid("public_key: String should have 1 to 4096 characters"),
        // Lambda generates a pair and returns the private half once.
        None => (
            format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{id} generated"),
            Some(format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{id}\n-----END OPENSSH PRIVATE KEY-----\n")),
        ),
    };
    let key = FakeKey { id, name: name.to_string(), public_key };
    let mut v = s.key_json(&key);
    if let Some(p) = private_key {
        v["private_key"] = json!(p);
    }
    s.keys.push(key);
    ok(v)
}

async fn delete_key(Shared(account): Shared<Account>, Path(id): Path<String>) -> Response {
    let mut s = lock(&account);
    let before = s.keys.len();
    s.keys.retain(|k| k.id != id);
    if s.keys.len() == before {
        return missing("SSH key", StatusCode::NOT_FOUND);
    }
    ok(json!({}))
}

/// Standard base64, for the Basic form of the key.
fn base64(input: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.as_bytes().chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(super::base64("test-key:"), "dGVzdC1rZXk6");
        assert_eq!(super::base64("ab"), "YWI=");
    }
}
