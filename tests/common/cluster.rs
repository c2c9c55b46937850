//! Nodes of a cluster for the Redis tests: a server with its layer and
//! its `Cluster` in this process, or the `cluster` example in a process of
//! its own. Included with `#[path = "common/cluster.rs"] mod cluster_node;`
//! next to `mod common;` and `mod redis_server;`.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::any;
use axum_ws_auth::Connections;
use axum_ws_auth::cluster::Cluster;
use axum_ws_auth::revocation::{Selector, StalePolicy};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::common::{self, AUDIENCE, Client, ExampleProcess, ISSUER, SECRET};
use crate::redis_server::RedisServer;

pub const PREFIX: &str = "test-cluster";

/// One server with its layer's connections and its cluster handle.
pub struct Node {
    pub addr: SocketAddr,
    pub connections: Connections,
    pub cluster: Cluster,
}

pub fn cluster(redis: &RedisServer, connections: &Connections, policy: StalePolicy) -> Cluster {
    Cluster::builder(redis.url(), connections.clone())
        .prefix(PREFIX)
        .stale_policy(policy)
        .command_timeout(Duration::from_millis(500))
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(400))
        .health_check(Duration::from_millis(500))
        .start()
        .unwrap()
}

pub async fn node(redis: &RedisServer, policy: StalePolicy) -> Node {
    let (addr, connections) = echo_server().await;
    let cluster = cluster(redis, &connections, policy);
    fresh(&cluster).await;
    Node {
        addr,
        connections,
        cluster,
    }
}

/// An echo route behind a layer of its own, served; the layer's
/// connections, for a cluster to share.
pub async fn echo_server() -> (SocketAddr, Connections) {
    let layer = common::builder().build().unwrap();
    let connections = layer.connections();
    let addr = serve(Router::new().route("/ws", any(common::echo)).layer(layer)).await;
    (addr, connections)
}

/// Serves `app` on 127.0.0.1:0 with `TCP_NODELAY`: a close frame that
/// follows an echo is not held back for the client's delayed ACK (~40 ms),
/// which would be measured as propagation lag.
pub async fn serve(app: Router) -> SocketAddr {
    use axum::serve::{Listener, ListenerExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

pub async fn fresh(cluster: &Cluster) {
    tokio::time::timeout(Duration::from_secs(10), cluster.fresh())
        .await
        .expect("the cluster did not become fresh within 10 s");
}

/// A token of `sub` with these extra claims.
pub fn token_with(sub: &str, extra: Value) -> String {
    let mut claims = common::claims(sub, 300);
    claims
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    common::sign(&claims)
}

pub async fn echoes(client: &mut Client) {
    common::send_text(client, "ping").await;
    assert_eq!(
        common::next_app_message(client).await,
        WsMessage::Text("ping".into())
    );
}

/// Waits for the server's close frame and returns its code and how long
/// after `since` it arrived; then completes the closing handshake.
pub async fn closed_within(client: &mut Client, since: Instant) -> (u16, Duration) {
    let (code, lag) = loop {
        if let WsMessage::Close(frame) = common::next_message(client).await {
            break (frame.map_or(1005, |f| f.code.into()), since.elapsed());
        }
    };
    let rest = tokio::time::timeout(Duration::from_secs(10), client.next()).await;
    assert!(
        matches!(rest, Ok(None | Some(Err(_)))),
        "after the close: {rest:?}"
    );
    (code, lag)
}

pub fn user(sub: &str) -> Selector {
    Selector::User {
        iss: Some(ISSUER.to_owned()),
        sub: sub.to_owned(),
    }
}

/// Runs blocking work (starting or stopping redis-server) off the runtime.
pub fn blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

/// Renews `client` with a fresh token of `sub` and expects `auth.renewed`.
pub async fn renew(client: &mut Client, sub: &str) {
    // Issued at or after the request, as a renewal answering it must be.
    let mut claims = common::claims(sub, 600);
    claims["iat"] = json!(common::now());
    let renewal = json!({"type": "auth.renew", "token": common::sign(&claims), "id": "r"});
    common::send_text(client, &renewal.to_string()).await;
    let renewed = common::next_json(client).await;
    assert_eq!(renewed["type"], "auth.renewed", "{renewed}");
}

/// `POST path` with the admin token; (status, body).
pub async fn admin_post(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

pub const ADMIN: &str = "admin token for the cluster test";

/// Node B is the `cluster` example in a process of its own.
pub fn example_node(redis: &RedisServer) -> (ExampleProcess, SocketAddr) {
    let secret = std::str::from_utf8(SECRET).unwrap();
    let url = redis.url();
    let mut process = ExampleProcess::start(
        "cluster",
        &[
            ("WS_AUTH_ADDR", "127.0.0.1:0"),
            ("WS_AUTH_HS256_SECRET", secret),
            ("WS_AUTH_AUDIENCE", AUDIENCE),
            ("WS_AUTH_REDIS_URL", &url),
            ("WS_AUTH_CLUSTER_PREFIX", PREFIX),
            ("WS_AUTH_ADMIN_TOKEN", ADMIN),
        ],
    );
    let addr = process
        .line_after("listening on http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    process.line_after("fresh");
    (process, addr)
}
