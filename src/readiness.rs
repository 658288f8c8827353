//! Whether this `tgp run` could act at once: it leads, or it stands by with its index of
//! unfinished chains caught up with the journal.
//!
//! A standby just started first folds every commit after the index's checkpoint, which on a long
//! history takes seconds to minutes. Until then a takeover would start cold, so it must not count
//! as a standby: Kubernetes should not route a rollout past it, and a benchmark or an operator
//! should not kill the leader yet. `tgp.api.leader` says it (`answerer_ready`), and
//! `tgp run --ready-addr` serves it as an HTTP probe (`GET /ready`: 200 when ready, 503 before).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How far this process has come, shared by the controller (which moves it) and whoever answers.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicU8>);

/// The stages a controller passes through, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Folding the commits after the index's checkpoint: a takeover now would start cold.
    CatchingUp,
    /// Waiting for the lease with the index current: it can take over at once.
    WarmStandby,
    /// Holding the lease.
    Leading,
}

impl Readiness {
    /// Moves to `stage`.
    pub fn set(&self, stage: Stage) {
        self.0.store(stage as u8, Ordering::Release);
    }

    /// Where the controller is now.
    pub fn stage(&self) -> Stage {
        match self.0.load(Ordering::Acquire) {
            0 => Stage::CatchingUp,
            1 => Stage::WarmStandby,
            _ => Stage::Leading,
        }
    }

    /// Leader or warm standby.
    pub fn is_ready(&self) -> bool {
        self.stage() != Stage::CatchingUp
    }
}

/// Why the readiness probe could not be served: its address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("readiness probe at {addr}: {source}")]
pub struct ProbeError {
    /// The address asked for (`--ready-addr`).
    pub addr: std::net::SocketAddr,
    /// What binding it said.
    #[source]
    pub source: std::io::Error,
}

/// Serves `GET /ready` at `addr` until the task is aborted.
pub async fn serve(addr: std::net::SocketAddr, readiness: Readiness) -> Result<JoinHandle<()>, ProbeError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| ProbeError { addr, source })?;
    Ok(tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(answer(stream, readiness.stage()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "readiness probe: a connection was not accepted");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }))
}

/// Reads one request's head (at most 4 KiB, within 5 s) and answers it, closing the connection.
async fn answer(mut stream: TcpStream, stage: Stage) {
    let mut head = Vec::with_capacity(512);
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buffer = [0u8; 512];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 4096 {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buffer[..n]),
            }
        }
    });
    if read.await.is_err() {
        return;
    }
    let _ = stream.write_all(response(&head, stage).as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The HTTP response to a request whose head is `head`.
fn response(head: &[u8], stage: Stage) -> String {
    let line = head.split(|b| *b == b'\r' || *b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let (status, body) = match (method, path) {
        (b"GET" | b"HEAD", b"/ready") => match stage {
            Stage::Leading => ("200 OK", "leading\n"),
            Stage::WarmStandby => ("200 OK", "warm standby: can take over at once\n"),
            Stage::CatchingUp => {
                ("503 Service Unavailable", "catching up: folding the journal into the index of unfinished chains\n")
            }
        },
        (b"GET" | b"HEAD", _) => ("404 Not Found", "the readiness probe is GET /ready\n"),
        _ => ("405 Method Not Allowed", "the readiness probe is GET /ready\n"),
    };
    let body = if method == b"HEAD" { "" } else { body };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_catching_up_is_not_ready_and_a_warm_one_or_the_leader_is() {
        let readiness = Readiness::default();
        assert_eq!(readiness.stage(), Stage::CatchingUp);
        assert!(!readiness.is_ready());
        let get = b"GET /ready HTTP/1.1\r\nHost: tgp\r\n\r\n";
        assert!(response(get, readiness.stage()).starts_with("HTTP/1.1 503 "));
        readiness.set(Stage::WarmStandby);
        assert!(readiness.is_ready());
        assert!(response(get, readiness.stage()).starts_with("HTTP/1.1 200 "));
        readiness.set(Stage::Leading);
        assert!(response(get, readiness.stage()).ends_with("\r\n\r\nleading\n"));
    }

    #[test]
    fn other_paths_and_methods_are_told_where_the_probe_is() {
        assert!(response(b"GET /metrics HTTP/1.1\r\n\r\n", Stage::Leading).starts_with("HTTP/1.1 404 "));
        assert!(response(b"POST /ready HTTP/1.1\r\n\r\n", Stage::Leading).starts_with("HTTP/1.1 405 "));
        assert!(
            response(b"HEAD /ready HTTP/1.1\r\n\r\n", Stage::Leading)
                .ends_with("Content-Length: 0\r\nConnection: close\r\n\r\n")
        );
    }
}
