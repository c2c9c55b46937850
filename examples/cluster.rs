//! One node of a cluster that shares revocations through Redis (feature
//! `redis`). Start a `redis-server`, then two nodes:
//!
//! ```text
//! redis-server --port 6379 --save '' --appendonly no &
//! WS_AUTH_ADMIN_TOKEN=change-me WS_AUTH_ADDR=127.0.0.1:3001 cargo run --features redis --example cluster
//! WS_AUTH_ADMIN_TOKEN=change-me WS_AUTH_ADDR=127.0.0.1:3002 cargo run --features redis --example cluster
//! ```
//!
//! What it shows:
//! - `GET /ws` behind the layer: an echo socket.
//! - `POST /admin/revoke/user/{sub}[?iss=...]`, `POST /admin/revoke/token/{jti}` and
//!   `POST /admin/reauthenticate/{sub}?grace_secs=30` (with
//!   `Authorization: Bearer $WS_AUTH_ADMIN_TOKEN`) on any node: applied on
//!   that node at once and published to every other node through Redis;
//!   answers `{"local": n, "published": true}`.
//! - `GET /health`: `{"node": "...", "fresh": true}`; while Redis is
//!   unreachable the node is stale, and with `WS_AUTH_STALE_POLICY=closed`
//!   (the default) new handshakes get 503.
//! - Ctrl-C (or SIGTERM): sockets closed with 1001, the cluster task stopped.
//!
//! **Demo only**: `POST /token?user=alice` mints a token for anyone.
//!
//! Environment: those of the other examples (`WS_AUTH_ADDR`, default
//! `127.0.0.1:3001`; `WS_AUTH_HS256_SECRET`; `WS_AUTH_AUDIENCE`, default
//! `axum-ws-auth-cluster`; `WS_AUTH_TOKEN_TTL_SECS`, ...), and
//! `WS_AUTH_REDIS_URL` (default `redis://127.0.0.1:6379/`),
//! `WS_AUTH_CLUSTER_PREFIX` (default `axum-ws-auth-example`),
//! `WS_AUTH_STALE_POLICY` (`closed` or `open`), `WS_AUTH_ADMIN_TOKEN`.

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::serve::{Listener, ListenerExt};
use axum::{Json, Router};
use axum_ws_auth::cluster::{Cluster, Issued};
use axum_ws_auth::revocation::{Selector, StalePolicy};
use axum_ws_auth::{AuthUpgrade, JwtValidator, WsAuthLayer};
use serde_json::json;

#[derive(Clone)]
struct AppState {
    cluster: Cluster,
    minter: support::Minter,
    admin_token: Option<Arc<str>>,
}

async fn echo(upgrade: AuthUpgrade<serde_json::Value>) -> Response {
    upgrade.on_upgrade(|mut socket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            if socket.send(message).await.is_err() {
                break;
            }
        }
    })
}

/// The admin token check: `Err` is the response to send.
fn admin(state: &AppState, headers: &HeaderMap) -> Result<(), (StatusCode, &'static str)> {
    let Some(expected) = state.admin_token.as_deref() else {
        let body = "admin routes disabled: set WS_AUTH_ADMIN_TOKEN";
        return Err((StatusCode::FORBIDDEN, body));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default()
        .as_bytes();
    // Constant time over the expected length.
    let differs = expected.len() != given.len()
        || expected
            .bytes()
            .zip(given)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0;
    if differs {
        return Err((StatusCode::UNAUTHORIZED, "wrong admin token"));
    }
    Ok(())
}

fn issued(state: &AppState, issued: Issued) -> Response {
    Json(json!({
        "node": state.cluster.node_id(),
        "local": issued.local,
        "published": issued.published,
    }))
    .into_response()
}

/// `POST /admin/revoke/{user|token}/{value}`.
async fn revoke(
    State(state): State<AppState>,
    Path((what, value)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Err(refused) = admin(&state, &headers) {
        return refused.into_response();
    }
    let revocation = match what.as_str() {
        // `?iss=`: the tokens' issuer (the example's own tokens have none).
        "user" => Selector::user(query_field(&uri, "iss").as_deref(), &value),
        "token" => Selector::token(value),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    issued(&state, state.cluster.revoke(revocation).await)
}

/// The value of `name` in the query string.
fn query_field(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(key, value)| (key == name).then(|| value.to_owned()))
}

/// `POST /admin/reauthenticate/{sub}?grace_secs=30`.
async fn reauthenticate(
    State(state): State<AppState>,
    Path(sub): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Err(refused) = admin(&state, &headers) {
        return refused.into_response();
    }
    let grace_secs = query_field(&uri, "grace_secs").and_then(|secs| secs.parse().ok());
    let grace = Duration::from_secs(grace_secs.unwrap_or(30));
    let selector = Selector::user(None, &sub);
    issued(&state, state.cluster.reauthenticate(selector, grace).await)
}

async fn health(State(state): State<AppState>) -> Response {
    Json(json!({ "node": state.cluster.node_id(), "fresh": state.cluster.is_fresh() }))
        .into_response()
}

/// DEMO ONLY: `POST /token?user=alice&jti=t1` mints a token for whoever asks.
async fn token(State(state): State<AppState>, uri: Uri) -> Response {
    let user = query_field(&uri, "user").unwrap_or_else(|| "guest".to_owned());
    let jti = query_field(&uri, "jti").unwrap_or_else(|| format!("{user}-{}", std::process::id()));
    state.minter.token_response(&user, json!({ "jti": jti }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    support::init_tracing();
    let env = support::Env::load(support::Defaults {
        addr: "127.0.0.1:3001",
        audience: "axum-ws-auth-cluster",
        token_ttl_secs: 300,
        notify_before_secs: 20,
        leeway_secs: 0,
    })?;
    let redis_url = support::env_or("WS_AUTH_REDIS_URL", "redis://127.0.0.1:6379/".to_owned())?;
    let prefix = support::env_or("WS_AUTH_CLUSTER_PREFIX", "axum-ws-auth-example".to_owned())?;
    let policy = match support::env_or("WS_AUTH_STALE_POLICY", "closed".to_owned())?.as_str() {
        "open" => StalePolicy::FailOpen,
        "closed" => StalePolicy::FailClosed,
        other => return Err(format!("WS_AUTH_STALE_POLICY={other:?}: open or closed").into()),
    };

    let layer = WsAuthLayer::<serde_json::Value>::builder(
        JwtValidator::hs256(&env.secret)?.with_audience(&[&env.audience]),
    )
    .realm("cluster")
    .notify_before(env.notify_before)
    .leeway(env.leeway)
    .build()?;
    let connections = layer.connections();
    let cluster = Cluster::builder(redis_url, connections.clone())
        .prefix(prefix)
        .stale_policy(policy)
        .start()?;
    let state = AppState {
        cluster: cluster.clone(),
        minter: env.minter(),
        admin_token: std::env::var("WS_AUTH_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .map(Arc::from),
    };
    if state.admin_token.is_none() {
        println!("WS_AUTH_ADMIN_TOKEN is unset: the admin routes are disabled");
    }

    let app = Router::new()
        .route("/ws", any(echo))
        .route_layer(layer)
        .route("/health", get(health))
        .route("/token", post(token))
        .route("/admin/revoke/{what}/{value}", post(revoke))
        .route("/admin/reauthenticate/{sub}", post(reauthenticate))
        .with_state(state);

    // TCP_NODELAY: a close frame is not held back behind unacknowledged data.
    let listener = tokio::net::TcpListener::bind(&env.addr)
        .await?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    println!("node {}", cluster.node_id());
    println!("listening on http://{}/", listener.local_addr()?);
    let fresh = cluster.clone();
    tokio::spawn(async move {
        fresh.fresh().await;
        println!("fresh");
    });
    let stop = connections.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            support::shutdown_signal().await;
            println!("shutting down");
            stop.shutdown();
        })
        .await?;
    let _ = tokio::time::timeout(Duration::from_secs(10), connections.closed()).await;
    cluster.shutdown().await;
    println!("stopped");
    Ok(())
}
