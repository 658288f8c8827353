//! The RunPod fake's GraphQL endpoint. Documents are parsed ([`super::parse`]), validated against
//! the fields and input types the fake knows (validation errors: HTTP 400, as RunPod's server
//! gives them), executed, and answered with only the selected fields (aliases honoured).
//! Resolver errors (capacity, not found, ...) come back with HTTP 200 inside `errors`.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Map, Value, json};

use super::parse::{Field, Kind, parse};
use super::schema::validate;
use super::state::FakeGpu;
use super::{CreateError, CreateRequest, Shared, SpotSchema, World, lock};

fn answer(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn validation(message: String) -> Response {
    answer(
        StatusCode::BAD_REQUEST,
        json!({"errors": [{"message": message, "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}]}),
    )
}

/// Keeps the selected fields of `full`, under their aliases.
fn project(full: &Value, fields: &[Field], type_name: &str) -> Value {
    if fields.is_empty() {
        return full.clone();
    }
    match full {
        Value::Array(items) => Value::Array(items.iter().map(|i| project(i, fields, type_name)).collect()),
        Value::Object(map) => {
            let mut out = Map::new();
            for f in fields {
                let v = if f.name == "__typename" {
                    json!(type_name)
                } else {
                    map.get(&f.name).cloned().unwrap_or(Value::Null)
                };
                out.insert(f.key().to_string(), project(&v, &f.selections, ""));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn price(d: Option<Decimal>) -> Value {
    d.and_then(|d| d.to_f64()).map(Value::from).unwrap_or(Value::Null)
}

fn decimal(v: Option<&Value>) -> Option<Decimal> {
    v.and_then(|v| v.as_f64().map(|f| f.to_string()).or_else(|| v.as_str().map(str::to_string)))
        .and_then(|s| Decimal::from_str(&s).ok())
}

fn lowest_price(world: &World, gpu: &FakeGpu, input: Option<&Value>) -> Value {
    let input = input.cloned().unwrap_or(Value::Null);
    let count = input["gpuCount"].as_u64().unwrap_or(1) as u32;
    let cloud = if input["secureCloud"].as_bool() == Some(false) { "COMMUNITY" } else { "SECURE" };
    let at = input["dataCenterId"].as_str().or(input["countryCode"].as_str());
    let level = World::places(cloud)
        .into_iter()
        .filter(|p| at.is_none_or(|a| *p == a || p.contains(&format!("-{a}-"))))
        .map(|p| world.level(gpu.id, p))
        .max()
        .unwrap_or(0);
    let (on_demand, spot) = World::prices(gpu, cloud);
    let spot = spot.filter(|_| world.spot == SpotSchema::Live);
    if level == 0 || count > gpu.max_count || on_demand.is_none() {
        return json!({"minimumBidPrice": null, "uninterruptablePrice": null, "stockStatus": null, "availableGpuCounts": [], "minVcpu": null, "minMemory": null});
    }
    let counts: Vec<u32> = [1, 2, 4, 8].into_iter().filter(|c| *c <= gpu.max_count).collect();
    let stock = ["None", "Low", "Medium", "High"].get(level).copied().unwrap_or("None");
    json!({"minimumBidPrice": price(spot), "uninterruptablePrice": price(on_demand), "minVcpu": 8, "minMemory": 50,
           "stockStatus": stock, "availableGpuCounts": counts,
           "maxUnreservedGpuCount": gpu.max_count, "gpuName": gpu.name, "gpuTypeId": gpu.id, "countryCode": at})
}

fn gpu_types(world: &World, field: &Field) -> Value {
    let input = field.args.get("input").cloned().unwrap_or(Value::Null);
    let ids: Vec<String> = match (&input["id"], &input["ids"]) {
        (Value::String(id), _) => vec![id.clone()],
        (_, Value::Array(ids)) => ids.iter().filter_map(|i| i.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    };
    let live = world.spot == SpotSchema::Live;
    let list = world.gpus.iter().filter(|g| ids.is_empty() || ids.iter().any(|i| i == g.id)).map(|g| {
        let full = json!({"id": g.id, "displayName": g.name, "manufacturer": "Nvidia", "memoryInGb": g.memory,
            "maxGpuCount": g.max_count, "maxGpuCountSecureCloud": g.max_count, "maxGpuCountCommunityCloud": if g.community_price.is_some() { g.max_count } else { 0 },
            "minPodGpuCount": 1, "secureCloud": g.secure_price.is_some(), "communityCloud": g.community_price.is_some(),
            "securePrice": price(g.secure_price), "communityPrice": price(g.community_price),
            "secureSpotPrice": price(g.secure_spot.filter(|_| live)), "communitySpotPrice": price(g.community_spot.filter(|_| live)),
            "oneWeekPrice": null, "oneMonthPrice": null, "threeMonthPrice": null, "sixMonthPrice": null});
        let mut out = Map::new();
        for f in &field.selections {
            let v = match f.name.as_str() {
                "lowestPrice" => project(&lowest_price(world, g, f.args.get("input")), &f.selections, "LowestPrice"),
                "__typename" => json!("GpuType"),
                name => project(full.get(name).unwrap_or(&Value::Null), &f.selections, ""),
            };
            out.insert(f.key().to_string(), v);
        }
        Value::Object(out)
    });
    Value::Array(list.collect())
}

fn create_request(input: &Value, spot: bool) -> CreateRequest {
    let env: BTreeMap<String, String> = input["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| {
                    Some((e["key"].as_str()?.to_string(), e["value"].as_str().unwrap_or_default().to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    let gpu = input["gpuTypeId"].as_str().or(input["gpuTypeIdList"][0].as_str()).unwrap_or_default();
    let cloud = match input["cloudType"].as_str() {
        Some("COMMUNITY") => "COMMUNITY",
        _ => "SECURE",
    };
    let location = input["dataCenterId"].as_str().or(input["countryCode"].as_str());
    let locations = match location {
        Some(l) if l.contains('-') => vec![l.to_string()],
        Some(cc) => {
            World::places(cloud).into_iter().filter(|p| p.contains(&format!("-{cc}-"))).map(str::to_string).collect()
        }
        None => Vec::new(),
    };
    CreateRequest {
        name: input["name"].as_str().unwrap_or_default().to_string(),
        image: input["imageName"].as_str().unwrap_or_default().to_string(),
        env,
        gpu: gpu.to_string(),
        count: input["gpuCount"].as_u64().unwrap_or(1) as u32,
        cloud: cloud.to_string(),
        locations,
        ports: input["ports"]
            .as_str()
            .map(|p| p.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect())
            .unwrap_or_default(),
        start_ssh: input["startSsh"].as_bool().unwrap_or(false),
        disk: input["containerDiskInGb"].as_u64().unwrap_or(50) as u32,
        bid_per_gpu: if spot { Some(decimal(input.get("bidPerGpu")).unwrap_or_default()) } else { None },
        via: "graphql",
    }
}

type Resolved = Result<Value, (String, &'static str)>;

fn pod_value(world: &World, id: &str) -> Option<Value> {
    world.pods.get(id).map(|p| p.graphql(world.phase(p)))
}

fn resolve(world: &mut World, field: &Field) -> Resolved {
    let input = field.args.get("input").cloned().unwrap_or(Value::Null);
    let pod_id = input["podId"].as_str().unwrap_or_default().to_string();
    let not_found = || ("pod not found".to_string(), "POD_NOT_FOUND");
    Ok(match field.name.as_str() {
        "__typename" => json!("Query"),
        "gpuTypes" => return Ok(gpu_types(world, field)),
        "pod" => project(&pod_value(world, &pod_id).unwrap_or(Value::Null), &field.selections, "Pod"),
        "myself" => {
            let pods: Vec<Value> = world.pods.keys().filter_map(|id| pod_value(world, id)).collect();
            project(&json!({"id": "user_fake", "pods": pods}), &field.selections, "User")
        }
        "podFindAndDeployOnDemand" | "podRentInterruptable" => {
            if input["imageName"].as_str().is_none_or(str::is_empty) && input["templateId"].is_null() {
                return Err(("imageName is required".into(), "BAD_USER_INPUT"));
            }
            match world.create(create_request(&input, field.name == "podRentInterruptable")) {
                Ok(pod) => project(&pod.graphql(world.phase(&pod)), &field.selections, "Pod"),
                Err(CreateError::Capacity(m)) => return Err((m.to_string(), "BAD_USER_INPUT")),
                Err(CreateError::Invalid(m)) => return Err((m, "BAD_USER_INPUT")),
            }
        }
        "podTerminate" => match world.pods.remove(&pod_id) {
            Some(_) => Value::Null,
            None => return Err(("pod not found to terminate".into(), "POD_NOT_FOUND")),
        },
        "podStop" => {
            world.pods.get_mut(&pod_id).ok_or_else(not_found)?.exited = Some("User");
            project(&pod_value(world, &pod_id).unwrap_or_default(), &field.selections, "Pod")
        }
        "podResume" | "podBidResume" => {
            let bid = decimal(input.get("bidPerGpu"));
            let pod = world.pods.get(&pod_id).ok_or_else(not_found)?;
            if pod.spot && field.name == "podResume" {
                return Err(("Cannot resume a spot pod as an on demand pod.".into(), "BAD_USER_INPUT"));
            }
            let minimum = world.gpus.iter().find(|g| g.id == pod.gpu).and_then(|g| World::prices(g, &pod.cloud).1);
            if field.name == "podBidResume" && bid.zip(minimum).is_none_or(|(b, m)| b < m) {
                return Err((super::NO_SPOT_CAPACITY.into(), "BAD_USER_INPUT"));
            }
            if let Some(p) = world.pods.get_mut(&pod_id) {
                p.exited = None;
                p.created = std::time::Instant::now();
                if let Some(b) = bid {
                    p.bid_per_gpu = Some(b);
                    p.cost = b * Decimal::from(p.gpu_count);
                }
            }
            project(&pod_value(world, &pod_id).unwrap_or_default(), &field.selections, "Pod")
        }
        _ => Value::Null,
    })
}

pub(crate) async fn serve(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let mut world = lock(&s);
    if world.graphql_gone {
        return answer(
            StatusCode::GONE,
            json!({"errors": [{"message": "The GraphQL API has been retired. Use the REST API v2: https://docs.runpod.io/api-reference-v2"}]}),
        );
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let key = bearer.or(query.get("api_key").map(String::as_str)).unwrap_or("");
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return answer(StatusCode::BAD_REQUEST, json!({"errors": [{"message": "POST body sent invalid JSON."}]}));
    };
    let document = request["query"].as_str().unwrap_or_default().to_string();
    let variables = request["variables"].as_object().cloned().unwrap_or_default();
    world.documents.push((document.clone(), Value::Object(variables.clone())));
    let op = match parse(&document, &variables) {
        Ok(op) => op,
        Err(e) => {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"errors": [{"message": e, "extensions": {"code": "GRAPHQL_PARSE_FAILED"}}]}),
            );
        }
    };
    let public = op.kind == Kind::Query && op.selections.iter().all(|f| f.name == "gpuTypes");
    if !(world.key_ok(key) || key.is_empty() && public) {
        return answer(
            StatusCode::UNAUTHORIZED,
            json!({"errors": [{"message": "Unauthorized request, please check your API key.", "extensions": {"code": "UNAUTHENTICATED"}}]}),
        );
    }
    if let Err(message) = validate(op.kind, &op.selections, world.spot) {
        return validation(message);
    }
    let mut data = Map::new();
    let mut errors = Vec::new();
    for field in &op.selections {
        match resolve(&mut world, field) {
            Ok(v) => {
                data.insert(field.key().to_string(), v);
            }
            Err((message, code)) => {
                errors.push(json!({"message": message, "path": [field.key()], "extensions": {"code": code}}));
                data.insert(field.key().to_string(), Value::Null);
            }
        }
    }
    let mut body = json!({"data": data});
    if !errors.is_empty() {
        body["errors"] = json!(errors);
    }
    answer(StatusCode::OK, body)
}
