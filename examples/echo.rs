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

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::ws::Message;
use axum::response::Response;
use axum::routing::any;
use axum_ws_auth::{AuthUpgrade, JwtValidator, WsAuthLayer};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

const DEV_SECRET: &str = "development secret, replace me: 32+ bytes";

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

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|_| format!("{name}={value:?} is not a valid value")),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "axum_ws_auth=info".into()),
        )
        .init();

    let addr: String = env_or("WS_AUTH_ADDR", "127.0.0.1:3000".to_owned())?;
    let secret = match std::env::var("WS_AUTH_HS256_SECRET") {
        Ok(secret) => secret,
        Err(_) => {
            eprintln!("WS_AUTH_HS256_SECRET is unset: using the development secret");
            DEV_SECRET.to_owned()
        }
    };
    let audience: String = env_or("WS_AUTH_AUDIENCE", "axum-ws-auth-demo".to_owned())?;
    let issuer = std::env::var("WS_AUTH_ISSUER").ok();
    let notify_before = env_or("WS_AUTH_NOTIFY_BEFORE_SECS", 30u64)?;
    let leeway = env_or("WS_AUTH_LEEWAY_SECS", 5u64)?;
    let renew_limit = env_or("WS_AUTH_RENEW_LIMIT", 10u32)?;

    let mut validator = JwtValidator::hs256(&secret)?.with_audience(&[&audience]);
    if let Some(issuer) = &issuer {
        validator = validator.with_issuer(&[issuer]);
    }
    let layer = WsAuthLayer::<Claims>::builder(validator)
        .realm("echo")
        .notify_before(Duration::from_secs(notify_before))
        .leeway(Duration::from_secs(leeway))
        .renew_limit(renew_limit)
        .build()?;
    // `route_layer`: only `/ws` asks for a token; other paths stay 404.
    let app = Router::new().route("/ws", any(echo)).route_layer(layer);

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    println!("listening on {local}");
    let sample = sample_token(&secret, &audience, issuer)?;
    println!("sample token (valid 1 hour, sub \"demo\"):\n{sample}");
    println!("try: websocat -H 'Authorization: Bearer {sample}' ws://{local}/ws");
    axum::serve(listener, app).await?;
    Ok(())
}

/// A token a newcomer can paste; a real deployment gets tokens from its
/// identity provider instead.
fn sample_token(
    secret: &str,
    audience: &str,
    issuer: Option<String>,
) -> Result<String, jsonwebtoken::errors::Error> {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|now| now.as_secs() + 3600)
        .unwrap_or_default();
    let mut claims = json!({"sub": "demo", "exp": exp, "aud": audience});
    if let Some(issuer) = issuer {
        claims["iss"] = issuer.into();
    }
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}
