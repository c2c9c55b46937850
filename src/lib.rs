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
//! #[derive(Deserialize)]
//! struct Claims {
//!     sub: String,
//! }
//!
//! async fn echo(upgrade: AuthUpgrade<Claims>) -> Response {
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
//!     let app = Router::new().route("/ws", any(echo)).layer(layer);
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
//! # Features
//!
//! - `client`: `client::AuthClient`, a Rust client that renews in-band and
//!   reconnects with backoff, over `ws://` or `wss://` (rustls).
//! - `jwks`: `JwksSource`, signing keys from a pinned HTTPS JWKS URL with
//!   rotation, for `JwtValidator::jwks`.
//!
//! Both use aws-lc-rs, the crypto backend jsonwebtoken uses here.
//!
//! # Shutdown and revocation
//!
//! [`WsAuthLayer::connections`] returns a [`Connections`] handle:
//! `shutdown()` closes every socket with 1001, `close_subject(sub)` closes a
//! revoked user's sockets with 4403.
//!
//! # Logging
//!
//! Every security event is a `tracing` event with target `axum_ws_auth`
//! and an `event` field (`upgrade_refused`, `connected`, `expiring`,
//! `renewed`, `renew_rejected`, `identity_change`, `closed`). Tokens never
//! appear in events, error bodies or close reasons.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;
mod config;
mod connections;
mod error;
pub mod protocol;
mod socket;
mod telemetry;
mod token;
mod upgrade;

pub use connections::Connections;
pub use error::ConfigError;
pub use socket::{AuthReceiver, AuthSender, AuthWebSocket, SocketClosed};
pub use token::{
    DEFAULT_MAX_TOKEN_BYTES, InvalidRequest, JwtValidator, RegisteredClaims, TokenError,
    TokenSource, ValidatedToken,
};
#[cfg(feature = "jwks")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
pub use token::{JwksError, JwksSource, JwksSourceBuilder};
pub use upgrade::rejection;
pub use upgrade::{AuthUpgrade, ResponseFuture, WsAuth, WsAuthLayer, WsAuthLayerBuilder};

/// Re-exported so applications name the same `jsonwebtoken` types
/// (`DecodingKey`, `Validation`, `Algorithm`) as this crate.
pub use jsonwebtoken;

/// The Rust snippets of README.md, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
