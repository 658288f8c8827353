//! The RunPod fake's REST v2 routes: `GET /v2/catalog/gpus[/{id}]`, `GET|POST /v2/pods`,
//! `GET|DELETE /v2/pods/{id}`, `POST /v2/pods/{id}/action`. Errors are problem+json.

// Handlers return their refusal as a whole `Response`; boxing it would only add noise here.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};

use super::state::{FakeGpu, LEVELS, Phase};
use super::{CreateError, CreateRequest, Shared, World, lock};

/// An RFC 9457 problem answer.
pub(crate) fn problem(status: StatusCode, detail: &str, errors: Option<Vec<String>>) -> Response {
    let mut body =
        json!({"title": status.canonical_reason().unwrap_or("Error"), "status": status.as_u16(), "detail": detail});
    if let Some(errors) = errors {
        body["errors"] = json!(errors);
    }
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/problem+json"));
    response
}

fn authorized(world: &World, headers: &HeaderMap) -> Result<(), Response> {
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if world.key_ok(key.trim()) {
        Ok(())
    } else if key.is_empty() {
        Err(problem(StatusCode::UNAUTHORIZED, "missing bearer token", None))
    } else {
        Err(problem(StatusCode::UNAUTHORIZED, "invalid api key", None))
    }
}

fn gpu_json(world: &World, gpu: &FakeGpu, query: &HashMap<String, String>) -> Value {
    let cloud = query.get("cloud").map(String::as_str).unwrap_or("SECURE");
    let count: u32 = query.get("count").and_then(|c| c.parse().ok()).unwrap_or(1);
    let price = |d: Option<rust_decimal::Decimal>| d.and_then(|d| d.to_f64());
    let mut v = json!({
        "id": gpu.id, "name": gpu.name, "pool": "POOL", "manufacturer": "NVIDIA", "memory": gpu.memory,
        "secure": gpu.secure_price.is_some(), "community": gpu.community_price.is_some(),
        "price": {"secure": price(gpu.secure_price), "community": price(gpu.community_price), "serverless": null},
        "maxCount": {"secure": gpu.max_count, "community": if gpu.community_price.is_some() { gpu.max_count } else { 0 }},
    });
    if query.get("include").is_some_and(|i| i.contains("AVAILABILITY")) {
        let sold = World::prices(gpu, cloud).0.is_some() && count <= gpu.max_count;
        let dcs: Vec<Value> = World::places(cloud)
            .into_iter()
            .map(|dc| {
                let level = if sold { world.level(gpu.id, dc) } else { 0 };
                json!({"id": dc, "name": dc, "availability": LEVELS.get(level).copied().unwrap_or("NONE")})
            })
            .collect();
        let best = dcs
            .iter()
            .filter_map(|d| d["availability"].as_str())
            .map(|l| LEVELS.iter().position(|x| *x == l).unwrap_or(0))
            .max()
            .unwrap_or(0);
        v["availability"] = json!(LEVELS.get(best).copied().unwrap_or("NONE"));
        if best > 0 {
            v["dataCenters"] = json!(dcs);
        }
    }
    v
}

fn catalog_query_ok(query: &HashMap<String, String>) -> Result<(), Response> {
    let availability = query.get("include").is_some_and(|i| i.contains("AVAILABILITY"));
    let needs = ["count", "cloud", "countryCodes", "cudaVersions", "minCudaVersion"];
    if !availability && needs.iter().any(|k| query.contains_key(*k)) {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "count, cloud, countryCodes and CUDA filters need include=AVAILABILITY",
            None,
        ));
    }
    if availability && !query.contains_key("product") {
        return Err(problem(StatusCode::BAD_REQUEST, "include=AVAILABILITY requires product", None));
    }
    if let Some(c) = query.get("cloud").filter(|c| !matches!(c.as_str(), "SECURE" | "COMMUNITY")) {
        return Err(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid query",
            Some(vec![format!("cloud: {c:?} is not one of SECURE, COMMUNITY")]),
        ));
    }
    Ok(())
}

pub(crate) async fn catalog(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let world = lock(&s);
    if let Err(r) = authorized(&world, &headers).and_then(|_| catalog_query_ok(&query)) {
        return r;
    }
    let gpus: Vec<Value> = world.gpus.iter().map(|g| gpu_json(&world, g, &query)).collect();
    Json(json!({"gpus": gpus})).into_response()
}

pub(crate) async fn catalog_one(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let world = lock(&s);
    if let Err(r) = authorized(&world, &headers).and_then(|_| catalog_query_ok(&query)) {
        return r;
    }
    match world.gpu(&id) {
        Some(g) => Json(gpu_json(&world, g, &query)).into_response(),
        None => problem(StatusCode::NOT_FOUND, "gpu type not found", None),
    }
}

fn pod_json(world: &World, id: &str) -> Option<Value> {
    let pod = world.pods.get(id)?;
    let mut v = pod.v2(world.phase(pod));
    if let Some(status) = world.status_override.get(id) {
        v["status"] = json!(status);
    }
    Some(v)
}

pub(crate) async fn list(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let world = lock(&s);
    if let Err(r) = authorized(&world, &headers) {
        return r;
    }
    let pods: Vec<Value> = world.pods.keys().filter_map(|id| pod_json(&world, id)).collect();
    Json(json!({"pods": pods})).into_response()
}

pub(crate) async fn get_pod(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let world = lock(&s);
    if let Err(r) = authorized(&world, &headers) {
        return r;
    }
    match pod_json(&world, &id) {
        Some(v) => Json(v).into_response(),
        None => problem(StatusCode::NOT_FOUND, "pod not found", None),
    }
}

pub(crate) async fn terminate(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let mut world = lock(&s);
    if let Err(r) = authorized(&world, &headers) {
        return r;
    }
    match world.pods.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => problem(StatusCode::NOT_FOUND, "pod not found", None),
    }
}

pub(crate) async fn action(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let mut world = lock(&s);
    if let Err(r) = authorized(&world, &headers) {
        return r;
    }
    let action = body["action"].as_str().unwrap_or_default().to_string();
    let Some(pod) = world.pods.get(&id) else {
        return problem(StatusCode::NOT_FOUND, "pod not found", None);
    };
    let phase = world.phase(pod);
    let allowed = match phase {
        Phase::Running => ["stop", "restart", "terminate"].contains(&action.as_str()),
        Phase::Exited | Phase::Error => ["start", "terminate"].contains(&action.as_str()),
        _ => ["stop", "terminate"].contains(&action.as_str()),
    };
    if !allowed {
        return problem(StatusCode::CONFLICT, &format!("action {action:?} is not allowed in the pod's state"), None);
    }
    match action.as_str() {
        "terminate" => {
            world.pods.remove(&id);
            return StatusCode::NO_CONTENT.into_response();
        }
        "stop" => {
            if let Some(p) = world.pods.get_mut(&id) {
                p.exited = Some("User");
            }
        }
        _ => {
            if let Some(p) = world.pods.get_mut(&id) {
                if p.spot && action == "start" {
                    return problem(StatusCode::CONFLICT, "Cannot resume a spot pod as an on demand pod.", None);
                }
                p.exited = None;
                p.error = false;
                p.created = std::time::Instant::now();
            }
        }
    }
    pod_json(&world, &id).map(|v| Json(v).into_response()).unwrap_or_else(|| StatusCode::NO_CONTENT.into_response())
}

const CREATE_FIELDS: [&str; 16] = [
    "name",
    "image",
    "gpu",
    "cpu",
    "cloud",
    "dataCenterIds",
    "disk",
    "mounts",
    "ports",
    "env",
    "args",
    "startSsh",
    "templateId",
    "registry",
    "globalNetworking",
    "locked",
];
const GPU_FIELDS: [&str; 4] = ["id", "count", "minCudaVersion", "allowedCudaVersions"];

pub(crate) async fn create(State(s): State<Shared>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let mut world = lock(&s);
    if let Err(r) = authorized(&world, &headers) {
        return r;
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return problem(StatusCode::BAD_REQUEST, "the body is not a JSON object", None);
    };
    let mut errors: Vec<String> = body
        .keys()
        .filter(|k| !CREATE_FIELDS.contains(&k.as_str()))
        .map(|k| format!("$: additional properties '{k}' not allowed"))
        .collect();
    if let Some(gpu) = body.get("gpu").and_then(Value::as_object) {
        errors.extend(
            gpu.keys()
                .filter(|k| !GPU_FIELDS.contains(&k.as_str()))
                .map(|k| format!("$.gpu: additional properties '{k}' not allowed")),
        );
    }
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let name = text("name").filter(|n| !n.is_empty());
    let image = text("image").filter(|n| !n.is_empty());
    if name.is_none() {
        errors.push("$.name: required, minimum length 1".into());
    }
    if image.is_none() {
        errors.push("$.image: required".into());
    }
    let env = match body.get("env") {
        None => Some(BTreeMap::new()),
        Some(Value::Object(m)) => m.iter().map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect(),
        Some(_) => None,
    };
    if env.is_none() {
        errors.push("$.env: must be an object of strings".into());
    }
    if !errors.is_empty() {
        return problem(StatusCode::UNPROCESSABLE_ENTITY, "validation failed", Some(errors));
    }
    let Some(gpu) = body.get("gpu").and_then(Value::as_object) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "exactly one of gpu or cpu must be set (this fake serves GPU pods only)",
            None,
        );
    };
    let list = |k: &str| {
        body.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let req = CreateRequest {
        name: name.unwrap_or_default(),
        image: image.unwrap_or_default(),
        env: env.unwrap_or_default(),
        gpu: gpu.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
        count: gpu.get("count").and_then(Value::as_u64).unwrap_or(1) as u32,
        cloud: text("cloud").unwrap_or_else(|| "SECURE".into()),
        locations: list("dataCenterIds"),
        ports: list("ports"),
        start_ssh: body.get("startSsh").and_then(Value::as_bool).unwrap_or(false),
        disk: body.get("disk").and_then(Value::as_u64).unwrap_or(50) as u32,
        bid_per_gpu: None,
        via: "rest-v2",
    };
    match world.create(req) {
        Ok(pod) => {
            let phase = world.phase(&pod);
            (StatusCode::CREATED, Json(pod.v2(phase))).into_response()
        }
        Err(CreateError::Capacity(message)) => problem(StatusCode::BAD_REQUEST, message, None),
        Err(CreateError::Invalid(message)) => problem(StatusCode::BAD_REQUEST, &message, None),
    }
}
