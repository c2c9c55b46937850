//! A chat server: the example to copy.
//!
//! ```text
//! WS_AUTH_ADMIN_TOKEN=change-me cargo run --example chat
//! ```
//!
//! Then open the printed URL in two windows. What it shows:
//! - `GET /ws/{room}` behind the layer (`route_layer`): one
//!   [`broadcast`](tokio::sync::broadcast) channel per room on axum `State`;
//!   each socket is split, a task forwards the room to a clone of its
//!   sender, and the handler reads.
//! - Roles come from the token's `roles` claim and are read on every
//!   message, so a renewal that drops `writer` makes the user read-only at
//!   once (`{"error":"read-only"}`); a renewal that changes the roles also
//!   pushes them to the client (`{"roles":[...]}`).
//! - `POST /admin/kick/{user}` with `Authorization: Bearer
//!   $WS_AUTH_ADMIN_TOKEN` revokes the user: every socket of theirs is
//!   closed with 4403, their tokens issued so far are refused, and it
//!   answers `{"closed": n}`.
//! - Ctrl-C (or SIGTERM): every socket is closed with 1001, then the server
//!   exits once they are gone (at most 10 s).
//! - `GET /` serves a page using `examples/browser/wsauth-client.js`.
//!
//! **Demo only**: `POST /token?user=alice&roles=writer` mints a token for
//! anyone who asks. A real application gets tokens from its identity
//! provider, after authenticating the user.
//!
//! Environment: `WS_AUTH_ADDR` (default `127.0.0.1:3000`),
//! `WS_AUTH_HS256_SECRET`, `WS_AUTH_AUDIENCE` (default `axum-ws-auth-chat`),
//! `WS_AUTH_TOKEN_TTL_SECS` (default 60), `WS_AUTH_NOTIFY_BEFORE_SECS`
//! (default 20), `WS_AUTH_LEEWAY_SECS` (default 0), `WS_AUTH_ADMIN_TOKEN`
//! (the admin route is off without it).

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Message;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Json, Router};
use axum_ws_auth::revocation::Selector;
use axum_ws_auth::{AuthSender, AuthUpgrade, Connections, JwtValidator, WsAuthLayer};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, watch};

const PAGE: &str = include_str!("chat/index.html");
const READ_ONLY: &str = r#"{"error":"read-only"}"#;

/// The claims this application reads. `sub`, `exp`, `aud` are checked by
/// the layer and come typed from `registered()`.
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    roles: Vec<String>,
}

impl Claims {
    fn can_write(&self) -> bool {
        self.roles.iter().any(|role| role == "writer")
    }
}

#[derive(Clone)]
struct AppState {
    rooms: Arc<Mutex<HashMap<String, broadcast::Sender<String>>>>,
    connections: Connections,
    minter: support::Minter,
    admin_token: Option<Arc<str>>,
}

impl AppState {
    /// The room's channel, created on first use; rooms nobody listens to
    /// any more are dropped on the way.
    fn room(&self, name: &str) -> broadcast::Sender<String> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms.retain(|_, room| room.receiver_count() > 0);
        rooms
            .entry(name.to_owned())
            .or_insert_with(|| broadcast::channel(64).0)
            .clone()
    }
}

async fn chat(
    Path(room): Path<String>,
    State(state): State<AppState>,
    upgrade: AuthUpgrade<Claims>,
) -> Response {
    let room = state.room(&room);
    upgrade.on_upgrade(move |socket| async move {
        let user = socket
            .registered()
            .sub
            .as_deref()
            .unwrap_or_default()
            .to_owned();
        let (sender, mut receiver) = socket.split();
        // The room to this socket, on a task with a clone of the sender.
        let forward = tokio::spawn(forward(
            room.subscribe(),
            receiver.watch_claims(),
            sender.clone(),
        ));

        // This socket to the room, if its current token (the latest renewal's)
        // has the `writer` role.
        let mut reply = sender;
        while let Some(Ok(message)) = receiver.recv().await {
            let Message::Text(text) = message else {
                continue;
            };
            if receiver.claims().can_write() {
                let _ = room.send(json!({ "from": user, "text": text.as_str() }).to_string());
            } else if reply.send(Message::Text(READ_ONLY.into())).await.is_err() {
                break;
            }
        }
        forward.abort();
    })
}

/// The room, and changes of the user's roles, to one socket through its own
/// clone of the sender.
async fn forward(
    mut feed: broadcast::Receiver<String>,
    mut claims: watch::Receiver<Arc<Claims>>,
    mut out: AuthSender<Claims>,
) {
    let mut roles = claims.borrow().roles.clone();
    loop {
        let frame = tokio::select! {
            line = feed.recv() => match line {
                Ok(line) => line,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            },
            changed = claims.changed() => match changed {
                Ok(()) if claims.borrow_and_update().roles != roles => {
                    roles.clone_from(&claims.borrow().roles);
                    json!({ "roles": roles }).to_string()
                }
                Ok(()) => continue,
                Err(_) => break,
            },
        };
        if out.send(Message::Text(frame.into())).await.is_err() {
            break;
        }
    }
}

/// `POST /admin/kick/{user}`: revokes the user, closing their sockets with
/// 4403.
async fn kick(
    Path(user): Path<String>,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Response {
    let Some(expected) = &state.admin_token else {
        return (
            StatusCode::FORBIDDEN,
            "admin route disabled: set WS_AUTH_ADMIN_TOKEN",
        )
            .into_response();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    // Revoked, not only closed: the tokens issued to the user so far are
    // refused from now on, at the handshake and on renewal. (The demo's
    // tokens carry no `iss`; pass your issuer's.)
    let closed = state.connections.revoke(Selector::user(None, &user));
    Json(json!({ "closed": closed })).into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// DEMO ONLY: `POST /token?user=alice&roles=writer,admin` mints a token for
/// whoever asks. A real application authenticates the caller first.
async fn token(State(state): State<AppState>, uri: Uri) -> Response {
    let mut user = "guest";
    let mut roles = Vec::new();
    for (key, value) in uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
    {
        match key {
            "user" => user = value,
            "roles" => roles = value.split(',').filter(|role| !role.is_empty()).collect(),
            _ => {}
        }
    }
    let plain = |s: &str| {
        (1..=32).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !plain(user) || !roles.iter().all(|role| plain(role)) {
        return (
            StatusCode::BAD_REQUEST,
            "user and roles: 1-32 of [A-Za-z0-9_-]",
        )
            .into_response();
    }
    state.minter.token_response(user, json!({ "roles": roles }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    support::init_tracing();
    let env = support::Env::load(support::Defaults {
        addr: "127.0.0.1:3000",
        audience: "axum-ws-auth-chat",
        token_ttl_secs: 60,
        notify_before_secs: 20,
        leeway_secs: 0,
    })?;
    let layer = WsAuthLayer::<Claims>::builder(
        JwtValidator::hs256(&env.secret)?.with_audience(&[&env.audience]),
    )
    .realm("chat")
    .notify_before(env.notify_before)
    .leeway(env.leeway)
    .build()?;
    let connections = layer.connections();
    let admin_token = std::env::var("WS_AUTH_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    if admin_token.is_none() {
        println!("WS_AUTH_ADMIN_TOKEN is unset: the admin route is disabled");
    }
    let state = AppState {
        rooms: Arc::default(),
        connections: connections.clone(),
        minter: env.minter(),
        admin_token: admin_token.map(Arc::from),
    };

    let app = Router::new()
        .route("/ws/{room}", any(chat))
        .route_layer(layer)
        .merge(support::page_routes(PAGE))
        .route("/token", post(token))
        .route("/admin/kick/{user}", post(kick))
        .with_state(state);

    let listener = tokio::net::TcpListener::bind(&env.addr).await?;
    println!("listening on http://{}/", listener.local_addr()?);
    let stop = connections.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            support::shutdown_signal().await;
            println!("shutting down");
            stop.shutdown();
        })
        .await?;
    let _ = tokio::time::timeout(Duration::from_secs(10), connections.closed()).await;
    println!("stopped");
    Ok(())
}
