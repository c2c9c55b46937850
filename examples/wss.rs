//! `wss://` with axum-server and rustls, Prometheus `/metrics`, and graceful
//! shutdown: the production shape of the echo server. It serves WebSockets
//! over HTTP/1.1 and over HTTP/2 (RFC 8441), chosen by ALPN.
//!
//! ```text
//! cargo run --example wss
//! ```
//!
//! - `/ws`: authenticated echo (the text `claims` answers the current claims).
//! - `/metrics`: the crate's counters in Prometheus text format. It is not
//!   behind the token layer; expose it only to your monitoring network.
//! - SIGINT / SIGTERM: every open socket is closed with `1001 server shutting
//!   down`, then the process exits.
//!
//! Environment: `WS_AUTH_ADDR` (default `127.0.0.1:3443`),
//! `WS_AUTH_TLS_CERT` and `WS_AUTH_TLS_KEY` (PEM files; when unset, a
//! self-signed certificate for `localhost` is generated and its path
//! printed), `WS_AUTH_HS256_SECRET`, `WS_AUTH_AUDIENCE`,
//! `WS_AUTH_TOKEN_TTL_SECS` (the printed sample token's, default 3600),
//! `WS_AUTH_NOTIFY_BEFORE_SECS` (default 30), `WS_AUTH_LEEWAY_SECS` (default 5).

#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::Message;
use axum::response::Response;
use axum::routing::{any, get};
use axum_server::tls_rustls::RustlsConfig;
use axum_ws_auth::{AuthUpgrade, Connections, JwtValidator, WsAuthLayer};
use serde_json::json;

/// No claims of the application's own: `claims` answers with the token's
/// payload as it came. Registered claims are in `upgrade.registered()`.
type Claims = serde_json::Value;

async fn echo(upgrade: AuthUpgrade<Claims>) -> Response {
    upgrade.on_upgrade(|mut socket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            let reply = match message {
                Message::Text(text) if text.as_str() == "claims" => {
                    Message::Text(socket.claims().to_string().into())
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

async fn tls_config() -> Result<RustlsConfig, Box<dyn std::error::Error>> {
    if let (Ok(cert), Ok(key)) = (
        std::env::var("WS_AUTH_TLS_CERT"),
        std::env::var("WS_AUTH_TLS_KEY"),
    ) {
        return Ok(RustlsConfig::from_pem_file(cert, key).await?);
    }
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
    let cert = generated.cert.pem();
    let path = std::env::temp_dir().join("axum-ws-auth-wss-example.pem");
    std::fs::write(&path, &cert)?;
    println!("self-signed certificate for localhost: {}", path.display());
    Ok(RustlsConfig::from_pem(
        cert.into_bytes(),
        generated.signing_key.serialize_pem().into_bytes(),
    )
    .await?)
}

/// On SIGINT or SIGTERM: close every authenticated socket with 1001, and
/// let axum-server finish the HTTP side.
async fn shutdown_on_signal(server: axum_server::Handle<SocketAddr>, connections: Connections) {
    support::shutdown_signal().await;
    println!("shutting down");
    connections.shutdown();
    server.graceful_shutdown(Some(Duration::from_secs(10)));
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    support::init_tracing();
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;

    let env = support::Env::load(support::Defaults {
        addr: "127.0.0.1:3443",
        audience: "axum-ws-auth-demo",
        token_ttl_secs: 3600,
        notify_before_secs: 30,
        leeway_secs: 5,
    })?;
    let addr: SocketAddr = env.addr.parse()?;
    let validator = JwtValidator::hs256(&env.secret)?.with_audience(&[&env.audience]);
    let layer = WsAuthLayer::<Claims>::builder(validator)
        .realm("wss-echo")
        .notify_before(env.notify_before)
        .leeway(env.leeway)
        .build()?;
    let connections = layer.connections();
    let app = Router::new()
        .route("/ws", any(echo))
        .route_layer(layer)
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        );

    let tls = tls_config().await?;
    let handle = axum_server::Handle::new();
    tokio::spawn(shutdown_on_signal(handle.clone(), connections.clone()));
    let mut server = axum_server::bind_rustls(addr, tls).handle(handle.clone());
    // WebSockets over HTTP/2 (RFC 8441) are a CONNECT with `:protocol`:
    // `RustlsConfig` offers ALPN `h2` and `http/1.1`, but extended CONNECT
    // is off unless enabled here. The route is `any()`, since HTTP/1.1
    // upgrades with GET and HTTP/2 with CONNECT.
    server.http_builder().http2().enable_connect_protocol();
    let server = tokio::spawn(server.serve(app.into_make_service()));
    let Some(local) = handle.listening().await else {
        return Err(server
            .await?
            .err()
            .map_or_else(|| "server did not start".into(), Into::into));
    };
    println!("listening on wss://{local}/ws");
    println!(
        "sample token (valid {} s, sub \"demo\"):\n{}",
        env.token_ttl.as_secs(),
        env.minter().mint("demo", json!({}))?
    );

    server.await??;
    let _ = tokio::time::timeout(Duration::from_secs(10), connections.closed()).await;
    println!("stopped");
    Ok(())
}
