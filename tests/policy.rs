//! The layer's asynchronous policy at the handshake, against a real server:
//! it sees the route's parameters and the headers but not the token, its
//! denials are RFC 6750 responses, and a check that fails, hangs or panics
//! refuses (503) without disturbing any other handshake.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Path;
use axum::routing::{any, get};
use axum::{RequestPartsExt, Router};
use axum_ws_auth::policy::{AuthPolicy, PolicyDenial, PolicyRequest};
use axum_ws_auth::{AuthUpgrade, WsAuthLayerBuilder};
use common::*;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// What the policy saw of one handshake.
#[derive(Debug, Default, Clone)]
struct Seen {
    room: Option<String>,
    client_header: Option<String>,
    authorization_sensitive: Option<bool>,
    uri: String,
    protocols: Option<String>,
}

fn room_policy(seen: Arc<Mutex<Vec<Seen>>>, slow: Arc<Notify>) -> impl AuthPolicy<Claims> {
    move |mut request: PolicyRequest<Claims>| {
        let seen = Arc::clone(&seen);
        let slow = Arc::clone(&slow);
        Box::pin(async move {
            let sub = request.claims().sub.clone();
            let parts = request.upgrade_parts_mut().expect("a handshake");
            let room = parts
                .extract::<Path<String>>()
                .await
                .ok()
                .map(|Path(room)| room);
            seen.lock().unwrap().push(Seen {
                room: room.clone(),
                client_header: parts
                    .headers
                    .get("x-client")
                    .map(|v| v.to_str().unwrap().to_owned()),
                authorization_sensitive: parts
                    .headers
                    .get("authorization")
                    .map(|v| v.is_sensitive()),
                uri: parts.uri.to_string(),
                protocols: parts
                    .headers
                    .get("sec-websocket-protocol")
                    .map(|v| v.to_str().unwrap().to_owned()),
            });
            match sub.as_str() {
                "revoked" => return Err(PolicyDenial::Revoked),
                "failing" => return Err(PolicyDenial::failed("session store down")),
                "panicking" => panic!("policy bug"),
                "hanging" => std::future::pending::<()>().await,
                "slow" => slow.notified().await,
                _ => {}
            }
            match room.as_deref() {
                Some("lobby") => Ok(()),
                _ => Err(PolicyDenial::Forbidden),
            }
        })
    }
}

struct Server {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    slow: Arc<Notify>,
    handled: Arc<AtomicUsize>,
}

async fn start(
    configure: impl FnOnce(WsAuthLayerBuilder<Claims>) -> WsAuthLayerBuilder<Claims>,
) -> Server {
    let seen = Arc::default();
    let slow = Arc::new(Notify::new());
    let handled = Arc::new(AtomicUsize::new(0));
    let layer = configure(builder())
        .query_source(true)
        .policy(room_policy(Arc::clone(&seen), Arc::clone(&slow)))
        .build()
        .unwrap();
    let counter = Arc::clone(&handled);
    let app = Router::new()
        .route(
            "/rooms/{room}",
            any(move |upgrade: AuthUpgrade<Claims>| {
                counter.fetch_add(1, Ordering::SeqCst);
                echo(upgrade)
            }),
        )
        .route_layer(layer)
        .route("/health", get(|| async { "ok" }));
    Server {
        addr: serve_router(app).await,
        seen,
        slow,
        handled,
    }
}

async fn connect_as(server: &Server, room: &str, sub: &str) -> Result<Connected, Refused> {
    let auth = format!("Bearer {}", token(sub, 60));
    connect_request(request(
        server.addr,
        &format!("/rooms/{room}"),
        &[("authorization", &auth), ("x-client", "test-suite")],
    ))
    .await
}

fn refused_as(refused: &Refused, status: u16, challenge: Option<String>) {
    assert_eq!(refused.status.as_u16(), status, "{refused:?}");
    assert_eq!(refused.challenge, challenge, "{refused:?}");
}

#[tokio::test]
async fn the_policy_sees_the_route_and_headers_but_never_the_token() {
    let server = start(|b| b).await;
    let token = token("alice", 60);
    // The token in the subprotocol and the query: both out of sight.
    let bearer = format!("wsauth.v1, bearer.{token}");
    let mut client = connect_request(request(
        server.addr,
        "/rooms/lobby?x=1",
        &[("sec-websocket-protocol", &bearer), ("x-client", "browser")],
    ))
    .await
    .unwrap()
    .client;
    send_text(&mut client, "hi").await;
    assert_eq!(
        next_message(&mut client).await,
        WsMessage::Text("hi".into())
    );
    let auth = format!("Bearer {token}");
    let query = format!("/rooms/lobby?access_token={token}&keep=1");
    connect_request(request(server.addr, &query, &[]))
        .await
        .unwrap();
    connect_request(request(
        server.addr,
        "/rooms/lobby",
        &[("authorization", &auth)],
    ))
    .await
    .unwrap();
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter().all(|s| s.room.as_deref() == Some("lobby")),
        "{seen:?}"
    );
    assert_eq!(seen[0].client_header.as_deref(), Some("browser"));
    assert_eq!(seen[0].protocols.as_deref(), Some("wsauth.v1"));
    assert_eq!(seen[1].uri, "/rooms/lobby?keep=1");
    assert_eq!(seen[2].authorization_sensitive, Some(true));
    assert!(!format!("{seen:?}").contains(&token));
    assert_eq!(server.handled.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn denials_are_rfc_6750_responses_and_the_handler_never_runs() {
    let server = start(|b| b).await;
    let refused = connect_as(&server, "vault", "alice").await.err().unwrap();
    refused_as(
        &refused,
        403,
        Some(format!(
            r#"Bearer realm="{REALM}", error="insufficient_scope""#
        )),
    );
    let refused = connect_as(&server, "lobby", "revoked").await.err().unwrap();
    refused_as(
        &refused,
        401,
        Some(format!(
            r#"Bearer realm="{REALM}", error="invalid_token", error_description="token revoked""#
        )),
    );
    assert_eq!(server.handled.load(Ordering::SeqCst), 0);
    // An unknown path stays 404, and the policy is not asked.
    let response = reqwest_like_get(server.addr, "/nowhere").await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    assert_eq!(server.seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn failing_hanging_and_panicking_checks_fail_closed_with_503() {
    let server = start(|b| b.policy_timeout(Duration::from_millis(300))).await;
    for sub in ["failing", "hanging", "panicking"] {
        let auth = format!("Bearer {}", token(sub, 60));
        let request = request(server.addr, "/rooms/lobby", &[("authorization", &auth)]);
        match tokio_tungstenite::connect_async(request).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 503, "{sub}");
                assert_eq!(response.headers()["retry-after"], "5", "{sub}");
                assert!(
                    response.headers().get("www-authenticate").is_none(),
                    "{sub}"
                );
                let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                    .into_owned();
                assert_eq!(body, "authorization check unavailable\n", "{sub}");
            }
            other => panic!("{sub}: expected 503, got {other:?}"),
        }
    }
    assert_eq!(server.handled.load(Ordering::SeqCst), 0);
    // The server is fine afterwards.
    connect_as(&server, "lobby", "alice").await.unwrap();
}

/// One handshake whose check waits on its store does not hold up another.
#[tokio::test]
async fn a_slow_check_holds_up_only_its_own_handshake() {
    let server = start(|b| b.policy_timeout(Duration::from_secs(60))).await;
    let slow = tokio::spawn({
        let addr = server.addr;
        async move {
            let auth = format!("Bearer {}", token("slow", 60));
            connect_request(request(addr, "/rooms/lobby", &[("authorization", &auth)]))
                .await
                .is_ok()
        }
    });
    // Wait until the slow check is running.
    while server.seen.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut fast = connect_as(&server, "lobby", "alice").await.unwrap().client;
    send_text(&mut fast, "first").await;
    assert_eq!(
        next_message(&mut fast).await,
        WsMessage::Text("first".into())
    );
    assert!(!slow.is_finished());
    server.slow.notify_one();
    assert!(slow.await.unwrap());
}

/// A plain GET over a raw socket: the status line and headers.
async fn reqwest_like_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}
