//! The browser client demo: serves `examples/browser/` (the copyable
//! `wsauth-client.js` module and a demo page), an authenticated echo route,
//! and a `/token` endpoint.
//!
//! ```text
//! cargo run --example browser
//! ```
//!
//! Then open the printed URL. `POST /token` stands in for the application's
//! own HTTPS refresh interface: a real one authenticates the caller (session
//! cookie, OAuth refresh token) before minting a short-lived access token.
//!
//! Environment: `WS_AUTH_ADDR` (default `127.0.0.1:3000`),
//! `WS_AUTH_HS256_SECRET`, `WS_AUTH_TOKEN_TTL_SECS` (default 30, short so
//! renewals are visible), `WS_AUTH_NOTIFY_BEFORE_SECS` (default 10),
//! `WS_AUTH_LEEWAY_SECS` (default 0).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::Message;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get, post};
use axum_ws_auth::{AuthUpgrade, JwtValidator, WsAuthLayer};
use jsonwebtoken::{EncodingKey, Header};
use serde::Serialize;
use serde::de::IgnoredAny;

const DEV_SECRET: &str = "development secret, replace me: 32+ bytes";
const AUDIENCE: &str = "axum-ws-auth-browser-demo";
const PAGE: &str = include_str!("browser/index.html");
const CLIENT: &str = include_str!("browser/wsauth-client.js");

/// What the demo's stand-in identity provider puts in a token. The socket
/// reads none of it itself (`AuthUpgrade<IgnoredAny>`): the registered
/// claims are the crate's business.
#[derive(Serialize)]
struct IssuedClaims {
    sub: String,
    /// Issued at: also lets the browser client learn how far its clock is off.
    iat: u64,
    exp: u64,
    aud: String,
}

#[derive(Clone)]
struct TokenIssuer {
    key: EncodingKey,
    ttl: u64,
}

/// Mints a short-lived token for the demo user.
async fn token(State(issuer): State<TokenIssuer>) -> Response {
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|now| now.as_secs())
        .unwrap_or_default();
    let claims = IssuedClaims {
        sub: "browser-demo".into(),
        iat,
        exp: iat + issuer.ttl,
        aud: AUDIENCE.into(),
    };
    match jsonwebtoken::encode(&Header::default(), &claims, &issuer.key) {
        Ok(jwt) => ([(header::CACHE_CONTROL, "no-store")], jwt).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn echo(upgrade: AuthUpgrade<IgnoredAny>) -> Response {
    upgrade.on_upgrade(|mut socket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) || socket.send(message).await.is_err() {
                break;
            }
        }
    })
}

fn env_secs(name: &str, default: u64) -> Result<u64, String> {
    std::env::var(name).map_or(Ok(default), |value| {
        value
            .parse()
            .map_err(|_| format!("{name}={value:?} is not a number of seconds"))
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "axum_ws_auth=info".into()),
        )
        .init();
    let addr = std::env::var("WS_AUTH_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let secret = std::env::var("WS_AUTH_HS256_SECRET").unwrap_or_else(|_| DEV_SECRET.into());
    let issuer = TokenIssuer {
        key: EncodingKey::from_secret(secret.as_bytes()),
        ttl: env_secs("WS_AUTH_TOKEN_TTL_SECS", 30)?,
    };

    let layer = WsAuthLayer::<IgnoredAny>::builder(
        JwtValidator::hs256(&secret)?.with_audience(&[AUDIENCE]),
    )
    .realm("browser-demo")
    .notify_before(Duration::from_secs(env_secs(
        "WS_AUTH_NOTIFY_BEFORE_SECS",
        10,
    )?))
    .leeway(Duration::from_secs(env_secs("WS_AUTH_LEEWAY_SECS", 0)?))
    .build()?;
    let app = Router::new()
        .route("/ws", any(echo))
        .route_layer(layer)
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/wsauth-client.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    CLIENT,
                )
            }),
        )
        .route("/token", post(token))
        .with_state(issuer);

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}/", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
