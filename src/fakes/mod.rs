//! Fake provider servers: each speaks one provider's real wire format over HTTP, with seeded
//! offers, machines that change state with realistic delays, and misbehaviour on cue. They are
//! part of the product because the demo's market runs on them; tests use the same fakes.
//!
//! What every fake shares lives here: the server itself ([`FakeServer`]), a log of the requests
//! it got (tests assert on what reached the provider), and cues ([`Cue`]) that make the next
//! matching requests fail, stall, answer broken, renamed or glitched JSON, or carry `Deprecation`
//! headers. Each fake names its own endpoints by [`Operation`], so a cue or a count can say
//! "the launch" or "the listing" without knowing the provider's paths.

pub mod lambda;
pub mod market;
pub mod paperspace;
pub mod runpod;
pub mod vastai;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::task::JoinHandle;

/// How a listing answer is spoiled, in the provider's own answer shape. Real listings have come
/// back empty, `null` or without their list field while every machine kept running (Vast's
/// deprecated v0 list, skypilot#10517); a client must not read any of these as "no machines".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListGlitch {
    /// The list is `[]`.
    Empty,
    /// The list is `null`.
    Null,
    /// The list field is absent.
    Missing,
    /// The machine with this provider id (`"id"` of the list's elements) is left out.
    Omit(String),
}

/// A way to misbehave once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Answer this status with this body (and a `Retry-After` when given) instead of serving.
    Status {
        /// HTTP status.
        code: u16,
        /// Body (the provider's error envelope, or anything).
        body: String,
        /// `Retry-After` header value.
        retry_after: Option<String>,
    },
    /// Wait this long before serving.
    Slow(Duration),
    /// Serve, then cut the JSON body in half.
    MalformedJson,
    /// Serve, then rename a JSON field in the body (`"from":` becomes `"to":`).
    RenameField {
        /// The field's real name.
        from: String,
        /// What it is renamed to.
        to: String,
    },
    /// Serve, adding `Deprecation: true` and a `Sunset` date.
    Deprecated {
        /// The `Sunset` header value.
        sunset: String,
    },
    /// Serve, then replace/remove the machines list at this JSON pointer in the answer.
    GlitchList {
        /// JSON pointer (RFC 6901) of the list in the answer, e.g. `/instances`.
        pointer: String,
        /// What happens to it.
        glitch: ListGlitch,
    },
    /// Serve (the provider acts: a launch creates its machine), then hold the answer this long
    /// before sending it, so the client times out after the provider acted.
    StallAfterServing(Duration),
}

/// What a request does, in the terms every provider shares. Each fake classifies its own
/// endpoints, so cues and counts can name an operation instead of a provider's paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// The instance list its client's `list_instances` calls (every page).
    List,
    /// A call that creates a machine (every launch path the client uses).
    Launch,
    /// One machine's status.
    Status,
    /// A destroy/terminate call.
    Destroy,
}

impl Operation {
    /// The name a cue's `path_prefix` uses for it: `@list`, `@launch`, `@status`, `@destroy`.
    pub fn cue_name(self) -> &'static str {
        match self {
            Operation::List => "@list",
            Operation::Launch => "@launch",
            Operation::Status => "@status",
            Operation::Destroy => "@destroy",
        }
    }
}

/// How a fake classifies a request (method, path, body): its operation and the provider machine
/// ids it names, or `None` for requests that are none of the [`Operation`]s.
pub type Classifier = fn(&str, &str, &[u8]) -> Option<(Operation, Vec<String>)>;

/// A misbehaviour for the next `times` requests whose path starts with `path_prefix` (and, when
/// given, whose method matches).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cue {
    /// Path prefix the request must have (`/` for all), or an operation's [`Operation::cue_name`]
    /// (`@launch`): then every request the fake classifies as that operation matches.
    pub path_prefix: String,
    /// Method the request must have, when given.
    pub method: Option<String>,
    /// How many requests it applies to.
    pub times: u32,
    /// What to do.
    pub misbehaviour: Misbehaviour,
}

impl Cue {
    /// A cue for the next request under `path_prefix`, any method.
    pub fn once(path_prefix: &str, misbehaviour: Misbehaviour) -> Self {
        Cue { path_prefix: path_prefix.into(), method: None, times: 1, misbehaviour }
    }

    /// A cue for the next `times` requests of `operation`, as the fake classifies them.
    pub fn on(operation: Operation, misbehaviour: Misbehaviour, times: u32) -> Self {
        Cue { path_prefix: operation.cue_name().into(), method: None, times, misbehaviour }
    }

    fn matches(&self, method: &str, path: &str, operation: Option<Operation>) -> bool {
        let place = if self.path_prefix.starts_with('@') {
            operation.is_some_and(|o| o.cue_name() == self.path_prefix)
        } else {
            path.starts_with(&self.path_prefix)
        };
        place && self.method.as_deref().is_none_or(|m| m == method)
    }
}

/// One request as the fake saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenRequest {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// The `Authorization` header, if any (tests check the key is sent as the provider wants).
    pub authorization: Option<String>,
    /// When it arrived (tests check request rates at the provider's side).
    pub at: std::time::Instant,
    /// The body, as text (lossy UTF-8); tests read what a call asked for (Lambda's terminate
    /// names its machines only here).
    pub body: String,
    /// What the fake took the request for, if it is one of the [`Operation`]s.
    pub operation: Option<Operation>,
    /// The provider machine ids the request names (a destroy's or a status call's machine).
    pub machine_ids: Vec<String>,
}

/// What a fake's tests and the demo use to steer it: the request log and the cue queue.
#[derive(Clone, Default)]
pub struct FakeControl {
    inner: Arc<Mutex<ControlState>>,
    /// The fake's own reading of its endpoints; none for ad-hoc servers in tests.
    classify: Option<Classifier>,
}

#[derive(Default)]
struct ControlState {
    seen: Vec<SeenRequest>,
    cues: VecDeque<Cue>,
}

impl FakeControl {
    /// A control for a fake that classifies its requests with `classify`, so `@operation` cues
    /// and [`FakeControl::calls`] work.
    pub fn classified(classify: Classifier) -> Self {
        FakeControl { inner: Arc::default(), classify: Some(classify) }
    }

    /// How many requests of `operation` named `machine_id` (a cued request counts: it reached
    /// the fake).
    pub fn calls(&self, operation: Operation, machine_id: &str) -> usize {
        self.inner
            .lock()
            .expect("fake control")
            .seen
            .iter()
            .filter(|r| r.operation == Some(operation) && r.machine_ids.iter().any(|id| id == machine_id))
            .count()
    }

    /// Queues a cue; cues apply in the order given.
    pub fn cue(&self, cue: Cue) {
        self.inner.lock().expect("fake control").cues.push_back(cue);
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.inner.lock().expect("fake control").seen.clone()
    }

    /// How many requests matched `method` and started with `path_prefix`.
    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        self.inner
            .lock()
            .expect("fake control")
            .seen
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(path_prefix))
            .count()
    }

    fn take_cue(&self, method: &str, path: &str, operation: Option<Operation>) -> Option<Misbehaviour> {
        let mut state = self.inner.lock().expect("fake control");
        let index = state.cues.iter().position(|c| c.matches(method, path, operation))?;
        let cue = state.cues.get_mut(index).expect("found");
        cue.times -= 1;
        let misbehaviour = cue.misbehaviour.clone();
        if cue.times == 0 {
            state.cues.remove(index);
        }
        Some(misbehaviour)
    }
}

/// Largest request body the fakes read (every real request body is far smaller).
const MAX_BODY: usize = 64 << 20;

async fn misbehave(State(control): State<FakeControl>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let at = std::time::Instant::now();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY).await.unwrap_or_default();
    let (operation, machine_ids) = control
        .classify
        .and_then(|classify| classify(&method, &path, &body))
        .map_or((None, Vec::new()), |(o, ids)| (Some(o), ids));
    control.inner.lock().expect("fake control").seen.push(SeenRequest {
        method: method.clone(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_string),
        authorization: parts.headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string),
        at,
        body: String::from_utf8_lossy(&body).into_owned(),
        operation,
        machine_ids,
    });
    let request = Request::from_parts(parts, Body::from(body));
    let Some(misbehaviour) = control.take_cue(&method, &path, operation) else {
        return next.run(request).await;
    };
    match misbehaviour {
        Misbehaviour::Status { code, body, retry_after } => {
            let mut response =
                (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), body).into_response();
            response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
            if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                response.headers_mut().insert("retry-after", value);
            }
            response
        }
        Misbehaviour::Slow(delay) => {
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
        Misbehaviour::Deprecated { sunset } => {
            let mut response = next.run(request).await;
            response.headers_mut().insert("deprecation", HeaderValue::from_static("true"));
            if let Ok(value) = HeaderValue::from_str(&sunset) {
                response.headers_mut().insert("sunset", value);
            }
            response
        }
        Misbehaviour::StallAfterServing(delay) => {
            let response = next.run(request).await;
            tokio::time::sleep(delay).await;
            response
        }
        Misbehaviour::MalformedJson | Misbehaviour::RenameField { .. } | Misbehaviour::GlitchList { .. } => {
            let response = next.run(request).await;
            let (parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, MAX_BODY).await.unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes).to_string();
            let changed = match misbehaviour {
                Misbehaviour::RenameField { from, to } => text.replace(&format!("\"{from}\":"), &format!("\"{to}\":")),
                Misbehaviour::GlitchList { pointer, glitch } => glitched(&text, &pointer, &glitch),
                _ => cut_in_half(&text),
            };
            let mut response = Response::from_parts(parts, Body::from(changed));
            response.headers_mut().remove("content-length");
            response
        }
    }
}

/// The first half of `text`, cut at a character boundary.
fn cut_in_half(text: &str) -> String {
    let mut end = text.len() / 2;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// `text` (a JSON answer) with the list at `pointer` spoiled; unchanged when the answer is not
/// JSON or has nothing at the pointer's parent (an error answer is left as it is).
fn glitched(text: &str, pointer: &str, glitch: &ListGlitch) -> String {
    let Ok(mut answer) = serde_json::from_str::<serde_json::Value>(text) else {
        return text.to_string();
    };
    let (parent, key) = match pointer.rsplit_once('/') {
        Some((parent, key)) => (parent, key.replace("~1", "/").replace("~0", "~")),
        None => return text.to_string(),
    };
    let Some(serde_json::Value::Object(holder)) = answer.pointer_mut(parent) else {
        return text.to_string();
    };
    match glitch {
        ListGlitch::Empty => {
            holder.insert(key, serde_json::Value::Array(Vec::new()));
        }
        ListGlitch::Null => {
            holder.insert(key, serde_json::Value::Null);
        }
        ListGlitch::Missing => {
            holder.remove(&key);
        }
        ListGlitch::Omit(id) => {
            if let Some(serde_json::Value::Array(list)) = holder.get_mut(&key) {
                list.retain(|machine| !same_id(machine.get("id"), id));
            }
        }
    }
    answer.to_string()
}

/// Whether a JSON id (a number or a string) is `id`.
fn same_id(value: Option<&serde_json::Value>, id: &str) -> bool {
    match value {
        Some(serde_json::Value::String(s)) => s == id,
        Some(serde_json::Value::Number(n)) => n.to_string() == id,
        _ => false,
    }
}

/// A running fake: its address, its control, and the task serving it (stopped on drop).
pub struct FakeServer {
    addr: SocketAddr,
    /// The request log and cue queue.
    pub control: FakeControl,
    task: JoinHandle<()>,
}

impl FakeServer {
    /// Serves `router` (a provider's routes) on a free loopback port, behind the request log and
    /// cues of `control`.
    pub async fn start(router: Router, control: FakeControl) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().expect("an address"), router, control).await
    }

    /// Serves on a given address (the demo uses fixed ports so users can point tools at them).
    pub async fn start_on(addr: SocketAddr, router: Router, control: FakeControl) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = router.layer(middleware::from_fn_with_state(control.clone(), misbehave));
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "fake provider server stopped");
            }
        });
        Ok(FakeServer { addr, control, task })
    }

    /// The host root to give a client (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the demo and tests need of every provider's fake beyond its HTTP API.
pub trait FakeProvider: Send + Sync {
    /// The host root to give the provider's client.
    fn url(&self) -> String;
    /// The request log and cue queue.
    fn control(&self) -> &FakeControl;
    /// Takes a running machine away as the provider would (Vast: stopped state; RunPod: EXITED;
    /// Lambda: preempted; Paperspace: off). False when there is no such running machine.
    fn interrupt(&self, machine_id: &str) -> bool;
    /// Sets whether launches fail for lack of capacity (in the provider's own words).
    fn set_no_capacity(&self, none: bool);
    /// Ids of the machines that exist and are not terminated (tests compare them to the journal).
    fn live_machines(&self) -> Vec<String>;
    /// The JSON pointer of the machines list in this provider's list answer (`/instances`).
    fn list_pointer(&self) -> &'static str;
    /// The machine really disappears, as if destroyed outside tgp: gone from listings, and its
    /// status call answers the provider's own "not found". False when there is no such machine.
    fn vanish(&self, machine_id: &str) -> bool;

    /// A cue on this provider's instance-list endpoint (the one its client's list_instances
    /// calls; every page of a paged listing is one request).
    fn list_cue(&self, misbehaviour: Misbehaviour, times: u32) -> Cue {
        Cue::on(Operation::List, misbehaviour, times)
    }
    /// A cue that glitches this provider's instance listing (knows its own list field's pointer).
    fn list_glitch_cue(&self, glitch: ListGlitch, times: u32) -> Cue {
        self.list_cue(Misbehaviour::GlitchList { pointer: self.list_pointer().to_string(), glitch }, times)
    }
    /// A cue on this provider's launch endpoint (every launch path its client uses).
    fn launch_cue(&self, misbehaviour: Misbehaviour, times: u32) -> Cue {
        Cue::on(Operation::Launch, misbehaviour, times)
    }
    /// The number of destroy/terminate calls that reached the fake for this machine (cued ones
    /// included: tests assert that tgp did not even try).
    fn destroy_calls(&self, machine_id: &str) -> usize {
        self.control().calls(Operation::Destroy, machine_id)
    }
}

/// The last path segment after `prefix` when it is one id (`/v2/pods/abc` → `abc`); for the
/// fakes' classifiers. A trailing slash is allowed.
pub(crate) fn id_after<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?.trim_end_matches('/');
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

/// The ids in a JSON body's `field` array (numbers or strings), for the fakes' classifiers.
pub(crate) fn ids_in_body(body: &[u8], field: &str) -> Vec<String> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    value
        .get(field)
        .and_then(serde_json::Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(|id| match id {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_glitches_spoil_only_the_list_at_the_pointer() {
        let page = r#"{"instances": [{"id": 1}, {"id": 2}], "next_token": "t", "data": {"a/b": [{"id": "x"}]}}"#;
        let glitch = |pointer: &str, g: ListGlitch| {
            serde_json::from_str::<serde_json::Value>(&glitched(page, pointer, &g)).unwrap()
        };
        assert_eq!(glitch("/instances", ListGlitch::Empty)["instances"], serde_json::json!([]));
        assert_eq!(glitch("/instances", ListGlitch::Null)["instances"], serde_json::Value::Null);
        let missing = glitch("/instances", ListGlitch::Missing);
        assert!(missing.get("instances").is_none() && missing["next_token"] == "t");
        assert_eq!(glitch("/instances", ListGlitch::Omit("2".into()))["instances"], serde_json::json!([{"id": 1}]));
        assert_eq!(glitch("/data/a~1b", ListGlitch::Omit("x".into()))["data"]["a/b"], serde_json::json!([]));
        // Not JSON, or nothing at the pointer's parent (an error answer): left as it is.
        assert_eq!(glitched("oops", "/instances", &ListGlitch::Null), "oops");
        assert_eq!(glitched(page, "/nowhere/list", &ListGlitch::Null), page);
        assert_eq!(cut_in_half("é€€"), "é");
    }

    #[test]
    fn cues_match_paths_or_the_fakes_operations() {
        let on_launch = Cue::on(Operation::Launch, Misbehaviour::MalformedJson, 1);
        assert!(on_launch.matches("POST", "/v2/pods", Some(Operation::Launch)));
        assert!(!on_launch.matches("GET", "/v2/pods", Some(Operation::List)));
        assert!(!on_launch.matches("POST", "/@launch", None), "an operation name is not a path");
        let by_path = Cue { method: Some("GET".into()), ..Cue::once("/v2/pods", Misbehaviour::MalformedJson) };
        assert!(by_path.matches("GET", "/v2/pods/abc", Some(Operation::Status)));
        assert!(!by_path.matches("DELETE", "/v2/pods/abc", Some(Operation::Destroy)));
        assert_eq!(id_after("/api/v0/instances/42/", "/api/v0/instances/"), Some("42"));
        assert_eq!(id_after("/api/v0/instances/bid_price/42", "/api/v0/instances/"), None);
        assert_eq!(ids_in_body(br#"{"instance_ids": [1, "b", null]}"#, "instance_ids"), vec!["1", "b"]);
    }
}
