//! A TCP proxy that can cut the network between one process and NATS, as a partition does: while
//! cut, no byte passes either way and no connection is closed (no RST, no FIN), so each end
//! learns of it only by waiting. SIGSTOP freezes the process itself; here the process runs on,
//! and its own timers must keep it from acting on a lease it can no longer renew.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The proxy: connect to [`Partition::url`] instead of the server.
pub struct Partition {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Partition {
    /// Forwards every connection made to it to `upstream` (a `nats://host:port` URL).
    pub async fn to(upstream: &str) -> Partition {
        let upstream: SocketAddr = upstream
            .rsplit("//")
            .next()
            .and_then(|hostport| hostport.parse().ok())
            .unwrap_or_else(|| panic!("a nats://ip:port URL: {upstream}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let (cut, _) = watch::channel(false);
        let gate = cut.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else { continue };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, gate.subscribe()));
                tokio::spawn(pipe(server_read, client_write, gate.subscribe()));
            }
        });
        Partition { addr, cut, task }
    }

    /// The URL to give the process that is to be cut off.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// From now on, nothing passes: bytes in flight are held, not dropped.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Everything held passes, and what follows.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to` while the network is whole; holds what it read while it is cut.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if cut.wait_for(|cut| !*cut).await.is_err() {
            return;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if cut.wait_for(|cut| !*cut).await.is_err() || to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
