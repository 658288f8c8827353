//! The ways a fake misbehaves on cue ([`Misbehaviour`], [`ListGlitch`]), which requests a cue
//! applies to ([`Cue`], by path or by the fake's own [`Operation`]s), and how a served answer is
//! spoiled. The middleware in the parent module records each request and hands a cued one here.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::MAX_BODY;

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

    pub(super) fn matches(&self, method: &str, path: &str, operation: Option<Operation>) -> bool {
        let place = if self.path_prefix.starts_with('@') {
            operation.is_some_and(|o| o.cue_name() == self.path_prefix)
        } else {
            path.starts_with(&self.path_prefix)
        };
        place && self.method.as_deref().is_none_or(|m| m == method)
    }
}

/// Serves `request` misbehaving as `misbehaviour` says.
pub(super) async fn apply(misbehaviour: Misbehaviour, request: Request, next: Next) -> Response {
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
