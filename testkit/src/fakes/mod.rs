//! Fake provider servers: each speaks one provider's real wire format over HTTP, with seeded
//! offers, machines that change state with realistic delays, and misbehaviour on cue. The demo's
//! market runs on them (`tgp-dev demo`), and so do the tests.
//!
//! What every fake shares lives here: the server itself ([`FakeServer`]), a log of the requests
//! it got (tests assert on what reached the provider), and cues ([`Cue`]) that make the next
//! matching requests fail, stall, answer broken, renamed or glitched JSON, or carry `Deprecation`
//! headers. Each fake names its own endpoints by [`Operation`], so a cue or a count can say
//! "the launch" or "the listing" without knowing the provider's paths.

mod cues;
pub mod lambda;
pub mod market;
pub mod paperspace;
pub mod runpod;
pub mod vastai;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio::task::JoinHandle;

pub use cues::{Classifier, Cue, ListGlitch, Misbehaviour, Operation};
pub(crate) use cues::{id_after, ids_in_body};

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
pub(crate) const MAX_BODY: usize = 64 << 20;

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
    cues::apply(misbehaviour, request, next).await
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
