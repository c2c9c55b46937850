//! The load's clients: tokio-tungstenite connections, from a chosen
//! loopback source address when one process holds many.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub(crate) type Client = WebSocketStream<TcpStream>;

/// One upgrade to `addr`, the token in `Authorization`, from `source` if
/// given (an address of the loopback range: each has its own 28k
/// ephemeral ports).
pub(crate) async fn try_connect_from(
    source: Option<IpAddr>,
    addr: SocketAddr,
    token: &str,
) -> Result<Client, String> {
    let mut request = format!("ws://{addr}/ws")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .map_err(|_| "token is not a header value")?,
    );
    let stream = match source {
        None => TcpStream::connect(addr).await.map_err(|e| e.to_string())?,
        Some(source) => {
            // No SO_REUSEADDR: with it, bind hands one port to several
            // sockets and their connects collide.
            let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
            socket
                .bind(SocketAddr::new(source, 0))
                .map_err(|e| format!("bind {source}: {e}"))?;
            let stream = socket.connect(addr).await.map_err(|e| e.to_string())?;
            // Workers exit with thousands of connections open: a reset
            // leaves no TIME_WAIT to hold this address's ports.
            stream.set_zero_linger().map_err(|e| e.to_string())?;
            stream
        }
    };
    // Clients read small frames: a 4 KiB read buffer, so 100k of them fit
    // beside the servers.
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
    let (client, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .map_err(|e| e.to_string())?;
    Ok(client)
}

pub(crate) async fn try_connect(addr: SocketAddr, token: &str) -> Option<Client> {
    try_connect_from(None, addr, token).await.ok()
}

/// Connects, retrying briefly while a server child starts listening.
pub(crate) async fn connect(addr: SocketAddr, token: &str) -> Client {
    for attempt in 0.. {
        match try_connect_from(None, addr, token).await {
            Ok(client) => return client,
            Err(_) if attempt < 20 => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(error) => panic!("connect failed: {error}"),
        }
    }
    unreachable!()
}

pub(crate) async fn connect_many(addr: SocketAddr, token: &str, count: usize) -> Vec<Client> {
    let mut clients = Vec::with_capacity(count);
    for batch in (0..count).collect::<Vec<_>>().chunks(250) {
        let connecting: Vec<_> = batch.iter().map(|_| connect(addr, token)).collect();
        clients.extend(futures_util::future::join_all(connecting).await);
    }
    clients
}

/// What a timed run did.
#[derive(Clone, Copy)]
pub(crate) struct Run {
    pub(crate) operations: u64,
    pub(crate) elapsed: Duration,
}

impl Run {
    pub(crate) fn rate(self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64()
    }

    /// Microseconds of `cpu` per operation.
    pub(crate) fn micros_each(self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e6 / self.operations.max(1) as f64
    }
}

/// Waits for the run's tasks; what they counted since `start`.
async fn counted(tasks: Vec<JoinHandle<()>>, count: &AtomicU64, start: Instant) -> Run {
    for task in tasks {
        task.await.unwrap();
    }
    Run {
        operations: count.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
    }
}

/// Echo round trips over `connections` ping-pong connections.
pub(crate) async fn echo_rate(
    addr: SocketAddr,
    connections: usize,
    size: usize,
    token: &str,
    run: Duration,
) -> Run {
    let clients = connect_many(addr, token, connections).await;
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + run;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let count = count.clone();
            tokio::spawn(async move {
                let payload = WsMessage::Binary(vec![0x5a; size].into());
                while Instant::now() < deadline {
                    client.send(payload.clone()).await.unwrap();
                    match client.next().await {
                        Some(Ok(WsMessage::Binary(_))) => count.fetch_add(1, Ordering::Relaxed),
                        other => panic!("unexpected {other:?}"),
                    };
                }
                let _ = client.close(None).await;
            })
        })
        .collect();
    counted(tasks, &count, start).await
}

/// Upgrades by `concurrency` loops of connect + close.
pub(crate) async fn handshake_rate(
    addr: SocketAddr,
    token: &str,
    concurrency: usize,
    run: Duration,
) -> Run {
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + run;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (count, token) = (count.clone(), token.to_owned());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let mut client = connect(addr, &token).await;
                    count.fetch_add(1, Ordering::Relaxed);
                    let _ = client.close(None).await;
                    while let Some(Ok(_)) = client.next().await {}
                }
            })
        })
        .collect();
    counted(tasks, &count, start).await
}
