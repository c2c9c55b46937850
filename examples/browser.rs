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
//! `WS_AUTH_HS256_SECRET`, `WS_AUTH_AUDIENCE` (default
//! `axum-ws-auth-browser-demo`), `WS_AUTH_TOKEN_TTL_SECS` (default 30, short so
//! renewals are visible), `WS_AUTH_NOTIFY_BEFORE_SECS` (default 10),
//! `WS_AUTH_LEEWAY_SECS` (default 0).

#[path = "support/mod.rs"]
mod support;

use axum::Router;
use axum::extract::ws::Message;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{any, post};
use axum_ws_auth::{AuthUpgrade, Connections, JwtValidator, WsAuthLayer, revocation::Selector};
use serde::de::IgnoredAny;

const PAGE: &str = include_str!("browser/index.html");

/// Mints a short-lived token for the demo user (`iat` also lets the
/// browser client learn how far its clock is off).
async fn token(State(minter): State<support::Minter>) -> Response {
    minter.token_response("browser-demo", serde_json::json!({}))
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

/// Asks every open socket for a fresh token within `grace_secs`; answers
/// how many were asked.
fn admin_routes(connections: Connections) -> Router<support::Minter> {
    Router::new().route(
        "/admin/reauth/{grace_secs}",
        post(move |Path(grace_secs): Path<u64>| async move {
            let grace = std::time::Duration::from_secs(grace_secs);
            connections.reauthenticate(Selector::All, grace).to_string()
        }),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    support::init_tracing();
    let env = support::Env::load(support::Defaults {
        addr: "127.0.0.1:3000",
        audience: "axum-ws-auth-browser-demo",
        token_ttl_secs: 30,
        notify_before_secs: 10,
        leeway_secs: 0,
    })?;
    let layer = WsAuthLayer::<IgnoredAny>::builder(
        JwtValidator::hs256(&env.secret)?.with_audience(&[&env.audience]),
    )
    .realm("browser-demo")
    .notify_before(env.notify_before)
    .leeway(env.leeway)
    .build()?;
    let admin = support::env_or("WS_AUTH_DEMO_ADMIN", 0u8)? == 1;
    let connections = layer.connections();
    let mut app = Router::new()
        .route("/ws", any(echo))
        .route_layer(layer)
        .merge(support::page_routes(PAGE))
        .route("/token", post(token));
    if admin {
        app = app.merge(admin_routes(connections));
    }
    let app = app.with_state(env.minter());

    let listener = tokio::net::TcpListener::bind(&env.addr).await?;
    println!("listening on http://{}/", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
