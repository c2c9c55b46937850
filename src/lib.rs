//! JWT-authenticated WebSockets for [axum] that stay authenticated.
//!
//! The WebSocket protocol has no authentication of its own, and a socket
//! outlives the token that opened it. This crate closes both gaps:
//!
//! 1. [`WsAuthLayer`] checks a JWT on the HTTP upgrade, taken from
//!    `Authorization: Bearer`, a `bearer.<jwt>` subprotocol entry (browsers
//!    cannot set headers on a WebSocket) or, opt-in, a cookie, the query
//!    string or a place the application names
//!    ([`WsAuthLayerBuilder::token_from`]), in that order of precedence.
//!    Failures are RFC 6750 responses; nothing is upgraded.
//! 2. [`AuthUpgrade`] hands the route an [`AuthWebSocket`], which runs a
//!    per-connection expiry timer, sends an `auth.expiring` notice before
//!    `exp`, and accepts in-band `auth.renew` messages, while the application
//!    sees only its own frames and the current claims. The socket closes with
//!    a clear code ([`protocol::CloseReason`]) when the token expires, or a
//!    renewal is abused.
//!
//! The wire contract (control messages, close codes) is in [`protocol`].
//!
//! # Quickstart
//!
//! ```no_run
//! use axum::{Router, response::Response, routing::any};
//! use axum_ws_auth::{AuthUpgrade, JwtValidator, WsAuthLayer};
//! use serde::Deserialize;
//!
//! /// Only what the application itself reads: the registered claims
//! /// (`sub`, `aud`, `exp`, ...) are the crate's, in `upgrade.registered()`.
//! #[derive(Deserialize)]
//! struct Claims {
//!     #[serde(default)]
//!     scope: String,
//! }
//!
//! async fn echo(upgrade: AuthUpgrade<Claims>) -> Response {
//!     let user = upgrade.registered().sub.clone();
//!     tracing::info!(?user, scope = %upgrade.claims().scope, "connecting");
//!     upgrade.on_upgrade(|mut socket| async move {
//!         // Renewals, expiry notices and the expiry close happen underneath.
//!         while let Some(Ok(message)) = socket.recv().await {
//!             if socket.send(message).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let secret = std::env::var("WS_AUTH_HS256_SECRET")?;
//!     let validator = JwtValidator::hs256(secret)?.with_audience(&["chat"]);
//!     let layer = WsAuthLayer::<Claims>::builder(validator).build()?;
//!     // `route_layer`, not `layer`: see "Routing" below.
//!     let app = Router::new().route("/ws", any(echo)).route_layer(layer);
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! A browser connects with
//! `new WebSocket(url, ["wsauth.v1", "bearer." + jwt])`; the server selects
//! `wsauth.v1` and never echoes the token.
//!
//! # Routing
//!
//! Put the layer on the WebSocket routes with [`Router::route_layer`], not
//! [`Router::layer`]. `layer` wraps the routes added before it and the
//! router's fallback too, so the layer answers requests that match no
//! route: a path that does not exist gets 401 and a `WWW-Authenticate`
//! challenge instead of 404 (scanners and typos then look like auth
//! failures in logs and metrics), and a plain HTTP route next to the
//! socket (a health check, a page) demands a WebSocket token.
//! `route_layer` runs the layer only for requests that match one of the
//! routes added before it: an unknown path stays 404, with no challenge.
//! axum's own docs of `route_layer` make the same point for authorization
//! middleware.
//!
//! Every route added before `route_layer` is behind it, and none added
//! after; keep the WebSocket routes in a router of their own and merge it
//! into the application:
//!
//! ```
//! use axum::{Router, response::Response, routing::{any, get}};
//! use axum_ws_auth::{AuthUpgrade, JwtValidator, WsAuthLayer};
//!
//! async fn chat(upgrade: AuthUpgrade<serde_json::Value>) -> Response {
//!     upgrade.on_upgrade(|_socket| async move { /* ... */ })
//! }
//!
//! let layer = WsAuthLayer::<serde_json::Value>::builder(JwtValidator::hs256([42u8; 32])?)
//!     .build()?;
//! let sockets = Router::new()
//!     .route("/ws", any(chat))
//!     .route("/ws/{room}", any(chat))
//!     .route_layer(layer);
//! let app: Router = Router::new()
//!     .route("/health", get(|| async { "ok" }))
//!     .merge(sockets);
//! # Ok::<_, axum_ws_auth::ConfigError>(())
//! ```
//!
//! A handler that takes [`AuthUpgrade`] on a route without the layer
//! answers 500 ([`rejection::MissingAuthLayer`]), so a route left out is
//! loud, not open.
//!
//! [`Router::route_layer`]: axum::Router::route_layer
//! [`Router::layer`]: axum::Router::layer
//!
//! # Features
//!
//! - `client`: `client::AuthClient`, a Rust client that renews in-band and
//!   reconnects with backoff, over `ws://` or `wss://` (rustls).
//! - `jwks`: `JwksSource`, signing keys from a pinned HTTPS JWKS URL with
//!   rotation, for `JwtValidator::jwks`.
//! - `redis`: `cluster::Cluster`, revocations and re-authentication
//!   requests shared by every node of a cluster through Redis (no TLS to
//!   Redis: `rediss://` is refused).
//!
//! `client` and `jwks` use aws-lc-rs, the crypto backend jsonwebtoken uses
//! here; `redis` brings no crypto.
//!
//! # What the application sees of a connection
//!
//! The socket and both its halves tell who is connected
//! ([`AuthWebSocket::identity`]: connection id, `iss`, `sub`, token source,
//! subprotocol), the current claims and registered claims, what happened to
//! the connection's authentication ([`AuthWebSocket::events`]: notices and
//! renewal outcomes as [`AuthEvent`]s) and, once it is over, why it ended
//! ([`AuthWebSocket::end_reason`], an [`EndReason`]).
//!
//! # Fan-out
//!
//! Split the socket and clone the [`AuthSender`] for every task that
//! writes: any number of clones may write at once, each is woken when the
//! socket drains and fails at once when the connection ends. Notices and
//! renewal answers never wait behind the application's frames.
//!
//! # Policy
//!
//! Authorization and revocation checks that need I/O go in an asynchronous
//! [`policy`], awaited at the handshake (with the request's route
//! parameters and headers) and on every renewal, bounded by a timeout and
//! failing closed.
//!
//! # Shutdown, revocation and re-authentication
//!
//! [`WsAuthLayer::connections`] returns a [`Connections`] handle:
//! `shutdown()` closes every socket with 1001;
//! one [`Selector`](revocation::Selector) says who (everyone, a user, a
//! token's `jti`, a user's or everyone's tokens issued before an instant,
//! a session, one connection), and two verbs act on it:
//! [`revoke`](Connections::revoke) refuses the tokens it matches at the
//! handshake and on renewal, and closes the live sockets whose current
//! token it matches with 4403;
//! [`reauthenticate`](Connections::reauthenticate) asks the sockets it
//! picks for a fresh token within a grace period (an early
//! `auth.expiring`), or closes them with 4401.
//! [`close_connection`](Connections::close_connection) closes one socket
//! with a code of the contract. A cluster shares
//! revocations between nodes with
//! [`apply_revocation`](Connections::apply_revocation),
//! [`revocations`](Connections::revocations) and
//! [`set_revocations_stale`](Connections::set_revocations_stale).
//!
//! # Logging
//!
//! Every security event is a `tracing` event with target `axum_ws_auth`
//! and an `event` field (`upgrade_refused`, `connected`, `expiring`,
//! `renewed`, `renew_rejected`, `identity_change`, `closed`, `revoked`,
//! `revocations_stale`, `revocations_fresh`, `reauth_requested`, and
//! `timer_panicked` / `timer_restarted` should the timer task fail). Tokens
//! never appear in events, error bodies, close reasons or `Debug` output.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(feature = "client", feature = "redis"))]
mod backoff;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod cluster;
mod config;
mod connection;
mod error;
mod jitter;
pub mod policy;
pub mod protocol;
pub mod revocation;
mod socket;
mod telemetry;
#[cfg(test)]
mod testing;
mod timers;
pub mod token;
mod upgrade;

pub use connection::{AuthEvent, Connections, EndReason, Identity};
pub use error::ConfigError;
pub use socket::{AuthReceiver, AuthSender, AuthWebSocket, SendFuture, SocketClosed};
pub use token::validator::JwtValidator;
pub use upgrade::rejection;
pub use upgrade::{AuthUpgrade, ResponseFuture, WsAuth, WsAuthLayer, WsAuthLayerBuilder};

/// Re-exported so applications name the same `jsonwebtoken` types
/// (`DecodingKey`, `Validation`, `Algorithm`) as this crate.
pub use jsonwebtoken;

/// The Rust snippets of README.md, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
