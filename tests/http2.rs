//! WebSockets over HTTP/2 (RFC 8441 extended CONNECT) behind the layer:
//! over h2c (`axum::serve`, a prior-knowledge client) and over TLS with ALPN
//! `h2` (axum-server and rustls), with a hyper HTTP/2 client and
//! tokio-tungstenite on the upgraded stream. Refusals, success, subprotocol
//! selection, in-band renewal and expiry; and the `wss` example serving both
//! HTTP/2 and HTTP/1.1.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::any;
use axum_ws_auth::WsAuthLayerBuilder;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http2::SendRequest;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Role;

/// The bound on every wait in this file.
const WAIT: Duration = Duration::from_secs(10);

/// A WebSocket on an HTTP/2 stream.
type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// A test server and how to reach it.
struct Server {
    addr: SocketAddr,
    /// `None`: h2c with prior knowledge. `Some`: TLS, the client offering
    /// only the ALPN protocol `h2`.
    tls: Option<TlsConnector>,
}

fn app(builder: WsAuthLayerBuilder<Claims>) -> Router {
    Router::new()
        .route("/ws", any(echo))
        .layer(builder.build().unwrap())
}

/// `axum::serve` with axum's `http2` feature: it accepts HTTP/2 prior
/// knowledge and enables extended CONNECT itself.
async fn h2c(builder: WsAuthLayerBuilder<Claims>) -> Server {
    Server {
        addr: serve_router(app(builder)).await,
        tls: None,
    }
}

/// axum-server with rustls: ALPN `h2` and `http/1.1` are set by
/// `RustlsConfig`; extended CONNECT must be enabled on its HTTP builder.
async fn tls(builder: WsAuthLayerBuilder<Claims>) -> Server {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let config = axum_server::tls_rustls::RustlsConfig::from_pem(
        certified.cert.pem().into_bytes(),
        certified.signing_key.serialize_pem().into_bytes(),
    )
    .await
    .unwrap();
    let handle = axum_server::Handle::new();
    let mut server = axum_server::bind_rustls(SocketAddr::from(([127, 0, 0, 1], 0)), config)
        .handle(handle.clone());
    server.http_builder().http2().enable_connect_protocol();
    tokio::spawn(server.serve(app(builder).into_make_service()));
    let addr = timeout(WAIT, handle.listening())
        .await
        .unwrap()
        .expect("axum-server did not start");
    Server {
        addr,
        tls: Some(tls_connector(&certified.cert, &[b"h2"])),
    }
}

/// What a refused extended CONNECT looked like.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    challenge: Option<String>,
    body: String,
}

impl Server {
    /// A new HTTP/2 connection to a peer that allows extended CONNECT.
    async fn connect(&self) -> SendRequest<Empty<Bytes>> {
        let tcp = timeout(WAIT, TcpStream::connect(self.addr))
            .await
            .unwrap()
            .unwrap();
        match &self.tls {
            None => handshake(tcp).await,
            Some(connector) => {
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let stream = timeout(WAIT, connector.connect(name, tcp))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
                handshake(stream).await
            }
        }
    }

    /// `CONNECT` with `:protocol = websocket` on a new connection.
    async fn request(&self, headers: &[(&str, &str)]) -> Response<Incoming> {
        let mut send = self.connect().await;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut request = Request::builder()
            .method(Method::CONNECT)
            .uri(format!("{scheme}://localhost:{}/ws", self.addr.port()))
            .extension(hyper::ext::Protocol::from_static("websocket"))
            .header("sec-websocket-version", "13");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        timeout(WAIT, send.send_request(request.body(Empty::new()).unwrap()))
            .await
            .expect("no response within 10 s")
            .unwrap()
    }

    /// A WebSocket (the HTTP/2 success status is 200, not 101), and the
    /// selected subprotocol.
    async fn open(&self, headers: &[(&str, &str)]) -> (Socket, Option<String>) {
        let mut response = self.request(headers).await;
        assert_eq!(response.status(), StatusCode::OK, "{response:?}");
        let protocol = response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap().to_owned());
        let upgraded = timeout(WAIT, hyper::upgrade::on(&mut response))
            .await
            .unwrap()
            .unwrap();
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
        (socket, protocol)
    }

    async fn open_bearer(&self, token: &str) -> Socket {
        let auth = format!("Bearer {token}");
        self.open(&[("authorization", &auth)]).await.0
    }

    /// A refused request: its status, challenge and body; it never became a
    /// stream of WebSocket frames.
    async fn refused(&self, headers: &[(&str, &str)]) -> Refusal {
        let mut response = self.request(headers).await;
        let upgrade = timeout(WAIT, hyper::upgrade::on(&mut response)).await;
        assert!(matches!(upgrade, Ok(Err(_))), "upgraded: {upgrade:?}");
        let status = response.status();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = timeout(WAIT, response.into_body().collect())
            .await
            .unwrap()
            .unwrap()
            .to_bytes();
        Refusal {
            status,
            challenge,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

/// The HTTP/2 handshake; waits for the server's SETTINGS to allow extended
/// CONNECT (they arrive on the connection task hyper spawns).
async fn handshake<T>(io: T) -> SendRequest<Empty<Bytes>>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = timeout(
        WAIT,
        hyper::client::conn::http2::Builder::new(TokioExecutor::new()).handshake(TokioIo::new(io)),
    )
    .await
    .unwrap()
    .unwrap();
    timeout(WAIT, async {
        while !conn.is_extended_connect_protocol_enabled() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the server does not enable extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL)");
    tokio::spawn(conn);
    send
}

async fn next<S>(socket: &mut WebSocketStream<S>) -> WsMessage
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    timeout(WAIT, socket.next())
        .await
        .expect("no frame within 10 s")
        .expect("stream ended")
        .expect("websocket error")
}

async fn next_json<S>(socket: &mut WebSocketStream<S>) -> Value
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match next(socket).await {
        WsMessage::Text(text) => serde_json::from_str(text.as_str()).unwrap(),
        other => panic!("expected text, got {other:?}"),
    }
}

async fn send_text<S>(socket: &mut WebSocketStream<S>, text: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    timeout(WAIT, socket.send(WsMessage::Text(text.into())))
        .await
        .unwrap()
        .unwrap();
}

/// Echo of a text and a binary frame.
async fn assert_echoes<S>(socket: &mut WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    send_text(socket, "over h2").await;
    assert_eq!(next(socket).await, WsMessage::Text("over h2".into()));
    let binary = WsMessage::Binary(Bytes::from_static(&[0, 159, 146, 150]));
    timeout(WAIT, socket.send(binary.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next(socket).await, binary);
}

/// Skips to the server's close frame, then lets the client finish the
/// closing handshake.
async fn expect_close(socket: &mut Socket) -> (u16, String) {
    let closed = loop {
        match next(socket).await {
            WsMessage::Close(Some(frame)) => {
                break (frame.code.into(), frame.reason.as_str().to_owned());
            }
            WsMessage::Close(None) => break (1005, String::new()),
            _ => continue,
        }
    };
    let rest = timeout(WAIT, socket.next()).await;
    assert!(
        matches!(rest, Ok(None | Some(Err(_)))),
        "frames after the close: {rest:?}"
    );
    closed
}

// (a) Refusals: 401 with the RFC 6750 challenge, and no WebSocket.

async fn refusals(server: Server) {
    let missing = server.refused(&[]).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED, "{missing:?}");
    assert_eq!(
        missing.challenge.as_deref(),
        Some(format!(r#"Bearer realm="{REALM}""#).as_str())
    );

    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("alice", 600),
        &EncodingKey::from_secret(b"another secret of more than 32 bytes"),
    )
    .unwrap();
    let bad = server
        .refused(&[("authorization", &format!("Bearer {forged}"))])
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED, "{bad:?}");
    assert_eq!(
        bad.challenge.as_deref(),
        Some(
            format!(
                r#"Bearer realm="{REALM}", error="invalid_token", error_description="signature invalid""#
            )
            .as_str()
        )
    );
    assert!(!bad.body.contains(&forged), "{bad:?}");

    let expired = sign(&claims("alice", -60));
    let offered = format!("wsauth.v1, bearer.{expired}");
    let late = server
        .refused(&[("sec-websocket-protocol", &offered)])
        .await;
    assert_eq!(late.status, StatusCode::UNAUTHORIZED, "{late:?}");
    assert_eq!(
        late.challenge.as_deref(),
        Some(
            format!(
                r#"Bearer realm="{REALM}", error="invalid_token", error_description="token expired""#
            )
            .as_str()
        )
    );
    assert!(!late.body.contains(&expired), "{late:?}");
}

#[tokio::test]
async fn h2c_refuses_missing_and_bad_tokens_with_401() {
    refusals(h2c(builder()).await).await;
}

#[tokio::test]
async fn tls_h2_refuses_missing_and_bad_tokens_with_401() {
    refusals(tls(builder()).await).await;
}

// (b) The Authorization header opens a WebSocket that echoes.

async fn header_auth(server: Server) {
    let (mut socket, protocol) = server
        .open(&[("authorization", &format!("Bearer {}", token("alice", 600)))])
        .await;
    assert_eq!(protocol, None);
    assert_echoes(&mut socket).await;
    send_text(&mut socket, "claims").await;
    assert_eq!(next_json(&mut socket).await["sub"], "alice");
}

#[tokio::test]
async fn h2c_bearer_header_opens_an_echoing_websocket() {
    header_auth(h2c(builder()).await).await;
}

#[tokio::test]
async fn tls_h2_bearer_header_opens_an_echoing_websocket() {
    header_auth(tls(builder()).await).await;
}

// (c) The subprotocol token: `wsauth.v1` is selected, the bearer entry
// never comes back.

async fn subprotocol_auth(server: Server) {
    let jwt = token("bob", 600);
    let offered = format!("wsauth.v1, bearer.{jwt}");
    let (mut socket, protocol) = server.open(&[("sec-websocket-protocol", &offered)]).await;
    assert_eq!(protocol.as_deref(), Some("wsauth.v1"));
    assert_echoes(&mut socket).await;
    send_text(&mut socket, "claims").await;
    assert_eq!(next_json(&mut socket).await["sub"], "bob");
}

#[tokio::test]
async fn h2c_subprotocol_token_selects_wsauth_v1() {
    subprotocol_auth(h2c(builder()).await).await;
}

#[tokio::test]
async fn tls_h2_subprotocol_token_selects_wsauth_v1() {
    subprotocol_auth(tls(builder()).await).await;
}

// (d) In-band renewal past the first `exp`, then 4401 at the second.

fn short_lived() -> WsAuthLayerBuilder<Claims> {
    builder()
        .leeway(Duration::ZERO)
        .notify_before(Duration::from_secs(1))
}

async fn renewal_then_expiry(server: Server) {
    let first = claims("alice", 2);
    let first_exp = first["exp"].as_u64().unwrap();
    let mut socket = server.open_bearer(&sign(&first)).await;

    let notice = next_json(&mut socket).await;
    assert_eq!(notice["type"], "auth.expiring");
    assert_eq!(notice["exp"], first_exp);

    let second = claims("alice", 3);
    let renewal = json!({"type": "auth.renew", "token": sign(&second), "id": "h2"});
    send_text(&mut socket, &renewal.to_string()).await;
    assert_eq!(
        next_json(&mut socket).await,
        json!({"type": "auth.renewed", "exp": second["exp"], "id": "h2"})
    );

    // Past the first exp the stream still echoes.
    let wait = (first_exp * 1000).saturating_sub(now_millis()) + 100;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    send_text(&mut socket, "still here").await;
    let mut reply = next(&mut socket).await;
    if matches!(&reply, WsMessage::Text(text) if text.as_str().contains("auth.expiring")) {
        reply = next(&mut socket).await;
    }
    assert_eq!(reply, WsMessage::Text("still here".into()));

    // Closed under the renewed token, not before its exp.
    assert_eq!(
        expect_close(&mut socket).await,
        (4401, "token expired".to_owned())
    );
    assert!(now_millis() >= second["exp"].as_u64().unwrap() * 1000);
}

#[tokio::test]
async fn h2c_renews_in_band_then_closes_4401_at_expiry() {
    renewal_then_expiry(h2c(short_lived()).await).await;
}

#[tokio::test]
async fn tls_h2_renews_in_band_then_closes_4401_at_expiry() {
    renewal_then_expiry(tls(short_lived()).await).await;
}

// The `wss` example serves HTTP/2 (ALPN `h2`) and HTTP/1.1 on one port.

#[tokio::test]
async fn wss_example_serves_websockets_over_h2_and_http1() {
    let example = WssExample::start("h2");
    let addr = example.addr;
    let certified = &example;

    // A client offering both protocols gets HTTP/2.
    let server = Server {
        addr,
        tls: Some(tls_connector(&certified.cert, &[b"h2", b"http/1.1"])),
    };
    let refused = server.refused(&[]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        refused.challenge.as_deref(),
        Some(r#"Bearer realm="wss-echo""#)
    );
    let mut socket = server.open_bearer(&token("alice", 600)).await;
    assert_echoes(&mut socket).await;

    // A client offering only HTTP/1.1 upgrades with GET on the same port.
    let http1 = tls_connector(&certified.cert, &[b"http/1.1"]);
    let tcp = timeout(WAIT, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = timeout(WAIT, http1.connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut request = format!("wss://localhost:{}/ws", addr.port())
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token("alice", 600)).parse().unwrap(),
    );
    let (mut client, _) = timeout(WAIT, tokio_tungstenite::client_async(request, stream))
        .await
        .unwrap()
        .unwrap();
    assert_echoes(&mut client).await;

    drop(example);
}
