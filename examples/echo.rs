//! An authenticated echo server: the crate's main example.
//!
//! ```text
//! cargo run --example echo
//! ```
//!
//! Route `/ws` echoes every frame unchanged, except the text `claims`, which
//! is answered with the connection's current claims as JSON. Tokens come
//! from `Authorization: Bearer` or a `bearer.<jwt>` subprotocol entry.
//!
//! Environment:
//! - `WS_AUTH_ADDR` (default `127.0.0.1:3000`)
//! - `WS_AUTH_HS256_SECRET` (at least 32 bytes; a development default is used
//!   and announced when unset)
//! - `WS_AUTH_AUDIENCE` (default `axum-ws-auth-demo`)
//! - `WS_AUTH_ISSUER` (optional; when set, `iss` is required)
//! - `WS_AUTH_NOTIFY_BEFORE_SECS` (default 30)
//! - `WS_AUTH_LEEWAY_SECS` (default 5)
//! - `WS_AUTH_RENEW_LIMIT` (renewal attempts per 60 s, default 10)
//! - `WS_AUTH_TOKEN_TTL_SECS` (lifetime of the printed sample token, default 3600)

#[path = "support/mod.rs"]
mod support;

use axum::Router;
use axum::extract::ws::Message;
use axum::response::Response;
use axum::routing::any;
use axum_ws_auth::{AuthUpgrade, JwtValidator, WsAuthLayer};
use serde_json::{Value, json};

/// This application reads no claims of its own: it echoes the token's
/// payload as it came. The registered claims (`sub`, `aud`, `exp`, ...)
/// are the crate's business, typed in `upgrade.registered()`; an
/// application that reads, say, a `scope` declares only that.
type Claims = Value;

async fn echo(upgrade: AuthUpgrade<Claims>) -> Response {
    let registered = upgrade.registered();
    tracing::info!(sub = ?registered.sub, aud = ?registered.aud, exp = registered.exp, "upgrading");
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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    support::init_tracing();
    let env = support::Env::load(support::Defaults {
        addr: "127.0.0.1:3000",
        audience: "axum-ws-auth-demo",
        token_ttl_secs: 3600,
        notify_before_secs: 30,
        leeway_secs: 5,
    })?;
    let issuer = std::env::var("WS_AUTH_ISSUER").ok();
    let renew_limit = support::env_or("WS_AUTH_RENEW_LIMIT", 10u32)?;

    let mut validator = JwtValidator::hs256(&env.secret)?.with_audience(&[&env.audience]);
    if let Some(issuer) = &issuer {
        validator = validator.with_issuer(&[issuer]);
    }
    let layer = WsAuthLayer::<Claims>::builder(validator)
        .realm("echo")
        .notify_before(env.notify_before)
        .leeway(env.leeway)
        .renew_limit(renew_limit)
        .build()?;
    // `route_layer`: only `/ws` asks for a token; other paths stay 404.
    let app = Router::new().route("/ws", any(echo)).route_layer(layer);

    let listener = tokio::net::TcpListener::bind(&env.addr).await?;
    let local = listener.local_addr()?;
    println!("listening on {local}");
    // A token a newcomer can paste; a real deployment gets tokens from its
    // identity provider instead.
    let extra = issuer.map_or_else(|| json!({}), |iss| json!({ "iss": iss }));
    let sample = env.minter().mint("demo", extra)?;
    let ttl = env.token_ttl.as_secs();
    println!("sample token (valid {ttl} s, sub \"demo\"):\n{sample}");
    println!("try: websocat -H 'Authorization: Bearer {sample}' ws://{local}/ws");
    axum::serve(listener, app).await?;
    Ok(())
}
