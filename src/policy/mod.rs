//! Asynchronous policy: authorization and revocation checks that need I/O
//! (a database, a session store), run at the handshake and on every
//! renewal.
//!
//! An [`AuthPolicy`] sees a [`PolicyRequest`]: the validated claims, and at
//! the handshake the request's parts (path, route parameters, headers with
//! the token taken out), or on renewal the connection's id. It answers
//! `Ok(())` or a [`PolicyDenial`]. Any async closure taking a
//! `PolicyRequest<C>` is a policy:
//!
//! ```
//! use axum::extract::Path;
//! use axum::RequestPartsExt;
//! use axum_ws_auth::policy::{PolicyDenial, PolicyRequest};
//! use axum_ws_auth::{JwtValidator, WsAuthLayer};
//!
//! # async fn may_join(_user: Option<&str>, _room: &str) -> Result<bool, std::io::Error> { Ok(true) }
//! let layer = WsAuthLayer::<serde_json::Value>::builder(JwtValidator::hs256([42u8; 32])?)
//!     .policy(|mut request: PolicyRequest<serde_json::Value>| async move {
//!         // Renewals keep the room the handshake allowed.
//!         let Some(parts) = request.upgrade_parts_mut() else { return Ok(()) };
//!         let Ok(Path(room)) = parts.extract::<Path<String>>().await else {
//!             return Err(PolicyDenial::Forbidden);
//!         };
//!         match may_join(request.registered().sub.as_deref(), &room).await {
//!             Ok(true) => Ok(()),
//!             Ok(false) => Err(PolicyDenial::Forbidden),
//!             Err(error) => Err(PolicyDenial::failed(format!("room store: {error}"))),
//!         }
//!     })
//!     .build()?;
//! # Ok::<_, axum_ws_auth::ConfigError>(())
//! ```
//!
//! The layer bounds every check with a timeout
//! ([`policy_timeout`](crate::WsAuthLayerBuilder::policy_timeout)); a check
//! that fails, times out or panics fails closed: the handshake is answered
//! `503 Service Unavailable`, the renewal is rejected, and a `policy_failed`
//! tracing event says why. A check that panics disturbs no other
//! connection.

mod check;
mod denial;
mod guard;
mod request;

pub use check::AuthPolicy;
pub use denial::PolicyDenial;
pub(crate) use guard::{Policy, PolicyCheck};
pub use request::PolicyRequest;
