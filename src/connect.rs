//! Connecting to NATS: one place that names the connection, waits for it, and refuses a server
//! too old for what tgp does.

use std::time::Duration;

use crate::journal::layout::{LayoutError, check_server_version};

/// Why tgp could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing answered at the URL.
    #[error("cannot connect to NATS at {url}: {source}")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// What the client said.
        source: async_nats::ConnectError,
    },
    /// The server is too old or its JetStream layout is wrong.
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

/// Connects as `name` and checks the server version.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, ConnectError> {
    let client = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .connect(url)
        .await
        .map_err(|source| ConnectError::Unreachable { url: url.to_string(), source })?;
    check_server_version(&client.server_info().version)?;
    Ok(client)
}

/// A JetStream context whose requests time out in 5 s (a timed-out append is settled by the
/// journal, see its docs).
pub fn jetstream(client: async_nats::Client) -> async_nats::jetstream::Context {
    async_nats::jetstream::ContextBuilder::new().timeout(Duration::from_secs(5)).build(client)
}
