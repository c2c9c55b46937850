//! A real server on 127.0.0.1:0 and a real tokio-tungstenite client.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::ws::Message;
use axum::response::Response;
use axum::routing::any;
use axum_ws_auth::{AuthUpgrade, JwtValidator, WsAuthLayer, WsAuthLayerBuilder};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Request, StatusCode};
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &[u8] = b"test secret of more than 32 bytes, for HS256";
pub const AUDIENCE: &str = "axum-ws-auth-tests";
pub const ISSUER: &str = "https://issuer.test";
pub const REALM: &str = "tests";

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default)]
    pub scope: String,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Standard claims for `sub`, valid for `ttl` seconds.
pub fn claims(sub: &str, ttl: i64) -> Value {
    json!({
        "sub": sub,
        "exp": (now() as i64 + ttl),
        "aud": AUDIENCE,
        "iss": ISSUER,
        "scope": "chat",
    })
}

pub fn sign_with(claims: &Value, header: &Header, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).unwrap()
}

pub fn sign(claims: &Value) -> String {
    sign_with(
        claims,
        &Header::new(Algorithm::HS256),
        &EncodingKey::from_secret(SECRET),
    )
}

pub fn token(sub: &str, ttl: i64) -> String {
    sign(&claims(sub, ttl))
}

/// A compact JWS with any header and payload JSON and the given signature bytes.
pub fn forge(header: &Value, payload: &Value, signature: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.{}",
        b64.encode(header.to_string()),
        b64.encode(payload.to_string()),
        b64.encode(signature)
    )
}

pub fn validator() -> JwtValidator {
    JwtValidator::hs256(SECRET)
        .unwrap()
        .with_audience(&[AUDIENCE])
        .with_issuer(&[ISSUER])
}

pub fn builder() -> WsAuthLayerBuilder<Claims> {
    WsAuthLayer::builder(validator()).realm(REALM)
}

/// Echoes every frame; the text `claims` answers with the current claims.
pub async fn echo(upgrade: AuthUpgrade<Claims>) -> Response {
    upgrade.on_upgrade(|mut socket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            let reply = match message {
                Message::Text(text) if text.as_str() == "claims" => {
                    Message::Text(serde_json::to_string(&*socket.claims()).unwrap().into())
                }
                Message::Close(_) => break,
                other => other,
            };
            if socket.send(reply).await.is_err() {
                break;
            }
        }
    })
}

pub async fn serve_router(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

pub async fn serve(builder: WsAuthLayerBuilder<Claims>) -> SocketAddr {
    serve_router(
        Router::new()
            .route("/ws", any(echo))
            .layer(builder.build().unwrap()),
    )
    .await
}

/// What a refused handshake looked like.
#[derive(Debug)]
pub struct Refused {
    pub status: StatusCode,
    pub challenge: Option<String>,
    pub body: String,
}

pub struct Connected {
    pub client: Client,
    pub protocol: Option<String>,
}

pub fn request(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    request
}

pub async fn connect_request(request: Request<()>) -> Result<Connected, Refused> {
    match tokio_tungstenite::connect_async(request).await {
        Ok((client, response)) => Ok(Connected {
            client,
            protocol: response
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap().to_owned()),
        }),
        Err(tungstenite::Error::Http(response)) => Err(Refused {
            status: response.status(),
            challenge: response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned()),
            body: String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned(),
        }),
        Err(other) => panic!("handshake failed below HTTP: {other}"),
    }
}

pub async fn connect(addr: SocketAddr, headers: &[(&str, &str)]) -> Result<Connected, Refused> {
    connect_request(request(addr, "/ws", headers)).await
}

pub async fn connect_bearer(addr: SocketAddr, token: &str) -> Client {
    let auth = format!("Bearer {token}");
    connect(addr, &[("authorization", &auth)])
        .await
        .unwrap()
        .client
}

pub async fn next_message(client: &mut Client) -> WsMessage {
    tokio::time::timeout(std::time::Duration::from_secs(10), client.next())
        .await
        .expect("no frame within 10 s")
        .expect("stream ended")
        .expect("websocket error")
}

pub async fn next_json(client: &mut Client) -> Value {
    match next_message(client).await {
        WsMessage::Text(text) => serde_json::from_str(text.as_str()).unwrap(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Skips to the server's close frame, then completes the closing handshake
/// (tungstenite sends its reply on the next read) as a real client would.
pub async fn expect_close(client: &mut Client) -> (u16, String) {
    let closed = loop {
        match next_message(client).await {
            WsMessage::Close(Some(frame)) => {
                break (frame.code.into(), frame.reason.as_str().to_owned());
            }
            WsMessage::Close(None) => break (1005, String::new()),
            _ => continue,
        }
    };
    let rest = tokio::time::timeout(std::time::Duration::from_secs(10), client.next()).await;
    assert!(
        matches!(rest, Ok(None | Some(Err(_)))),
        "frames after the close: {rest:?}"
    );
    closed
}

pub async fn send_text(client: &mut Client, text: &str) {
    client.send(WsMessage::Text(text.into())).await.unwrap();
}

/// A compiled example (cargo builds them for `cargo test`), killed on drop.
pub struct ExampleProcess {
    pub child: std::process::Child,
    pub stdout: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl ExampleProcess {
    pub fn start(name: &str, env: &[(&str, &str)]) -> Self {
        // Tests run from target/<profile>/deps; examples sit in target/<profile>/examples.
        let exe = std::env::current_exe().unwrap();
        let binary = exe
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("examples")
            .join(name);
        let mut child = std::process::Command::new(&binary)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stdout = child.stdout.take().unwrap();
        Self {
            child,
            stdout: std::io::BufRead::lines(std::io::BufReader::new(stdout)),
        }
    }

    pub fn line(&mut self) -> String {
        self.stdout.next().expect("example closed stdout").unwrap()
    }

    /// Reads lines until one starts with `prefix`; returns the rest of it.
    pub fn line_after(&mut self, prefix: &str) -> String {
        loop {
            let line = self.line();
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_owned();
            }
        }
    }
}

impl Drop for ExampleProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Like [`echo`], for a layer whose claims type is `serde_json::Value`
/// (tokens with claims `Claims` cannot hold: no `sub`, fractional `exp`).
pub async fn echo_value(upgrade: AuthUpgrade<Value>) -> Response {
    upgrade.on_upgrade(|mut socket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            let reply = match message {
                Message::Text(text) if text.as_str() == "claims" => {
                    Message::Text(serde_json::to_string(&*socket.claims()).unwrap().into())
                }
                Message::Close(_) => break,
                other => other,
            };
            if socket.send(reply).await.is_err() {
                break;
            }
        }
    })
}

/// A server of [`echo_value`] behind `builder`.
pub async fn serve_value(builder: WsAuthLayerBuilder<Value>) -> SocketAddr {
    serve_router(
        Router::new()
            .route("/ws", any(echo_value))
            .layer(builder.build().unwrap()),
    )
    .await
}

/// The next frame that is not a control message (`auth.expiring` comes
/// first on a connection whose token is already inside the notice window).
pub async fn next_app_message(client: &mut Client) -> WsMessage {
    loop {
        let message = next_message(client).await;
        if let WsMessage::Text(text) = &message
            && serde_json::from_str::<Value>(text.as_str())
                .ok()
                .and_then(|v| v["type"].as_str().map(|t| t.starts_with("auth.")))
                .unwrap_or(false)
        {
            continue;
        }
        return message;
    }
}

/// What a [`serve_recording`] handler saw from `recv`, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Text(String),
    Close(Option<u16>),
    Other,
    Error,
    /// `recv` returned `None`: the stream ended.
    End,
}

/// An echo server that also reports every `recv` result of each connection.
pub async fn serve_recording(
    builder: WsAuthLayerBuilder<Claims>,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let handler = move |upgrade: AuthUpgrade<Claims>| {
        let tx = tx.clone();
        async move {
            upgrade.on_upgrade(move |mut socket| async move {
                loop {
                    let seen = match socket.recv().await {
                        None => {
                            let _ = tx.send(Seen::End);
                            return;
                        }
                        Some(Err(_)) => Seen::Error,
                        Some(Ok(Message::Text(text))) => {
                            let _ = socket.send(Message::Text(text.clone())).await;
                            Seen::Text(text.as_str().to_owned())
                        }
                        Some(Ok(Message::Close(frame))) => Seen::Close(frame.map(|f| f.code)),
                        Some(Ok(_)) => Seen::Other,
                    };
                    let _ = tx.send(seen);
                }
            })
        }
    };
    let addr = serve_router(
        Router::new()
            .route("/ws", any(handler))
            .layer(builder.build().unwrap()),
    )
    .await;
    (addr, rx)
}

/// A server that accepts the upgrade, optionally echoes one text frame,
/// keeps the connection for `hold`, then drops it.
pub async fn serve_flaky(
    builder: WsAuthLayerBuilder<Claims>,
    hold: std::time::Duration,
    echo_first: bool,
) -> SocketAddr {
    let handler = move |upgrade: AuthUpgrade<Claims>| async move {
        upgrade.on_upgrade(move |mut socket| async move {
            if echo_first && let Some(Ok(Message::Text(text))) = socket.recv().await {
                let _ = socket.send(Message::Text(text)).await;
            }
            tokio::time::sleep(hold).await;
        })
    };
    serve_router(
        Router::new()
            .route("/ws", any(handler))
            .layer(builder.build().unwrap()),
    )
    .await
}

/// A TCP listener that accepts connections and never answers: the HTTP
/// upgrade hangs.
pub async fn silent_listener() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

/// A listener whose accept queue is full and never drained: a new TCP
/// connect to it hangs (Linux drops the SYN). The returned streams keep the
/// queue full; keep them alive.
pub async fn full_listener() -> (SocketAddr, tokio::net::TcpListener, Vec<TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let connect = TcpStream::connect(addr);
        match tokio::time::timeout(std::time::Duration::from_millis(200), connect).await {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    (addr, listener, fillers)
}

pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A TLS connector trusting only `cert`, offering `alpn`.
pub fn tls_connector(cert: &rcgen::Certificate, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

/// The `wss` example on a free port with a fresh self-signed certificate
/// for `localhost`; the process is killed and the files removed on drop.
pub struct WssExample {
    pub process: ExampleProcess,
    pub cert: rcgen::Certificate,
    pub addr: SocketAddr,
    dir: std::path::PathBuf,
}

impl WssExample {
    pub fn start(tag: &str) -> Self {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let dir = std::env::temp_dir().join(format!("axum-ws-auth-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, certified.cert.pem()).unwrap();
        std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
        let secret = std::str::from_utf8(SECRET).unwrap();
        let mut process = ExampleProcess::start(
            "wss",
            &[
                ("WS_AUTH_ADDR", "127.0.0.1:0"),
                ("WS_AUTH_TLS_CERT", cert_path.to_str().unwrap()),
                ("WS_AUTH_TLS_KEY", key_path.to_str().unwrap()),
                ("WS_AUTH_HS256_SECRET", secret),
                ("WS_AUTH_AUDIENCE", AUDIENCE),
            ],
        );
        let url = process.line_after("listening on ");
        let addr = url
            .strip_prefix("wss://")
            .and_then(|rest| rest.strip_suffix("/ws"))
            .unwrap()
            .parse()
            .unwrap();
        Self {
            process,
            cert: certified.cert,
            addr,
            dir,
        }
    }
}

impl Drop for WssExample {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether this run is CI (`CI=true`), where a missing system program
/// (Chromium, redis-server) fails a test instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !matches!(value.trim(), "" | "0" | "false"))
}

/// `program` on PATH, if there.
pub fn on_path(program: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Skips a test that cannot run here: one loud line on stderr, written past
/// the test harness's capture so that it shows in cargo's output, naming
/// what to install; under CI the test fails instead.
pub fn skip_without(test: &str, why: &str, install: &str) {
    use std::io::Write;
    assert!(
        !in_ci(),
        "{test}: {why}; {install} (CI=true: a missing tool fails instead of skipping)"
    );
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {why}; {install}");
}

/// Everything the global `tracing` subscriber writes, for asserting on log
/// lines (and on what they must never contain).
#[derive(Clone, Default)]
pub struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Installs the process's global subscriber (debug level, captured) and
/// Prometheus recorder: once per test binary.
pub fn capture_telemetry() -> (CapturedLogs, metrics_exporter_prometheus::PrometheusHandle) {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .init();
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();
    (logs, metrics)
}
