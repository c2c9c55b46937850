//! Who a layer revokes or asks to re-authenticate, and how a cluster
//! shares it.
//!
//! One [`Selector`] says *who* (everyone, a user, a token, a user's or
//! everyone's tokens issued before an instant, a session, one connection),
//! and [`Connections`](crate::Connections) has two verbs for it:
//!
//! - [`revoke`](crate::Connections::revoke): stored for the retention, the
//!   matching tokens are refused at the handshake and on renewal, and live
//!   sockets whose current token matches are closed with 4403;
//! - [`reauthenticate`](crate::Connections::reauthenticate): an early
//!   `auth.expiring`, and 4401 unless a fresh token comes in time.
//!
//! Closing one connection with a code of the contract, storing nothing,
//! is [`close_connection`](crate::Connections::close_connection).
//! [`RevocationEntry`] is a revocation with its instant, as a cluster
//! shares it; [`StalePolicy`] is what new handshakes get while a cluster
//! node's copy may be behind.
//!
//! ```
//! use axum_ws_auth::revocation::Selector;
//! # fn f(connections: &axum_ws_auth::Connections) {
//! // "Log out everywhere" for alice: every token issued up to now.
//! let closed = connections.revoke(Selector::user(Some("https://issuer.example"), "alice"));
//! # let _ = closed;
//! # }
//! ```

pub use crate::connection::{RevocationEntry, Selector, StalePolicy};
