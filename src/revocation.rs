//! What a layer revokes, and whom it asks to re-authenticate: the values
//! [`Connections`](crate::Connections) takes and a cluster shares between
//! nodes.
//!
//! - [`Revocation`]: a user (`iss`, `sub`), a token (`jti`), or a user's
//!   tokens issued before an instant, for
//!   [`Connections::revoke`](crate::Connections::revoke);
//! - [`RevocationEntry`]: a revocation with its instant, as
//!   [`Connections::revocations`](crate::Connections::revocations) lists
//!   them and [`Connections::apply_revocation`](crate::Connections::apply_revocation)
//!   takes them from another node;
//! - [`ConnectionSelector`]: the connections
//!   [`Connections::reauthenticate`](crate::Connections::reauthenticate)
//!   asks for a fresh token;
//! - [`StalePolicy`]: what new handshakes get while the revocation list may
//!   be behind.
//!
//! ```
//! use axum_ws_auth::revocation::Revocation;
//! # fn f(connections: &axum_ws_auth::Connections) {
//! // "Log out everywhere" for alice: every token issued up to now.
//! let closed = connections.revoke(Revocation::user(Some("https://issuer.example"), "alice"));
//! # let _ = closed;
//! # }
//! ```

pub use crate::connection::{ConnectionSelector, Revocation, RevocationEntry, StalePolicy};
