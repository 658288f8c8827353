//! Fake provider servers: each speaks one provider's real wire format over HTTP, with seeded
//! offers, machines that change state with realistic delays, and misbehaviour on cue. They are
//! part of the product because the demo's market runs on them; tests use the same fakes.
//!
//! What every fake shares lives here: the server itself ([`FakeServer`]), a log of the requests
//! it got (tests assert on what reached the provider), and cues ([`Cue`]) that make the next
//! matching requests fail, stall, answer broken or renamed JSON, or carry `Deprecation` headers.

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
}

/// A misbehaviour for the next `times` requests whose path starts with `path_prefix` (and, when
/// given, whose method matches).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cue {
    /// Path prefix the request must have (`/` for all).
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
}

/// What a fake's tests and the demo use to steer it: the request log and the cue queue.
#[derive(Clone, Default)]
pub struct FakeControl {
    inner: Arc<Mutex<ControlState>>,
}

#[derive(Default)]
struct ControlState {
    seen: Vec<SeenRequest>,
    cues: VecDeque<Cue>,
}

impl FakeControl {
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

    fn take_cue(&self, method: &str, path: &str) -> Option<Misbehaviour> {
        let mut state = self.inner.lock().expect("fake control");
        let index = state
            .cues
            .iter()
            .position(|c| path.starts_with(&c.path_prefix) && c.method.as_deref().is_none_or(|m| m == method))?;
        let cue = state.cues.get_mut(index).expect("found");
        cue.times -= 1;
        let misbehaviour = cue.misbehaviour.clone();
        if cue.times == 0 {
            state.cues.remove(index);
        }
        Some(misbehaviour)
    }
}

async fn misbehave(State(control): State<FakeControl>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    control.inner.lock().expect("fake control").seen.push(SeenRequest {
        method: method.clone(),
        path: path.clone(),
        query: request.uri().query().map(str::to_string),
        authorization: request.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string),
        at: std::time::Instant::now(),
    });
    let Some(misbehaviour) = control.take_cue(&method, &path) else {
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
        Misbehaviour::MalformedJson | Misbehaviour::RenameField { .. } => {
            let response = next.run(request).await;
            let (parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, 64 << 20).await.unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes).to_string();
            let changed = match misbehaviour {
                Misbehaviour::RenameField { from, to } => text.replace(&format!("\"{from}\":"), &format!("\"{to}\":")),
                _ => text[..text.len() / 2].to_string(),
            };
            let mut response = Response::from_parts(parts, Body::from(changed));
            response.headers_mut().remove("content-length");
            response
        }
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
}
