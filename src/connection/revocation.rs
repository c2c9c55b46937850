//! Revocation entries as a cluster publishes them ([`RevocationEntry`]),
//! and the switch a cluster layer sets while its copy of the list may be
//! behind ([`StalePolicy`]). What a revocation matches is the
//! [`Selector`]'s; the layer's store of entries is `store.rs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::Selector;

/// Default of [`WsAuthLayerBuilder::revocation_retention`](crate::WsAuthLayerBuilder::revocation_retention).
pub(crate) const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Whole seconds since the Unix epoch, rounded down (0 before it).
pub(crate) fn seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// A revocation and the moment it was made, as
/// [`Connections::revocations`](crate::Connections::revocations) lists
/// them: what a cluster publishes, and replays on another node with
/// [`Connections::apply_revocation`](crate::Connections::apply_revocation).
///
/// ```
/// # use axum_ws_auth::{JwtValidator, WsAuthLayer, revocation::Selector};
/// let layer = WsAuthLayer::<serde_json::Value>::builder(JwtValidator::hs256([42u8; 32])?).build()?;
/// let connections = layer.connections();
/// connections.revoke(Selector::token("t-1"));
/// let entries = connections.revocations();
/// assert_eq!(entries.len(), 1);
/// assert_eq!(entries[0].revocation, Selector::token("t-1"));
/// assert!(entries[0].revoked_at <= std::time::SystemTime::now());
/// # Ok::<_, axum_ws_auth::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RevocationEntry {
    /// What is revoked.
    pub revocation: Selector,
    /// When it was revoked. For [`Selector::User`] and [`Selector::All`]
    /// this is also the cutoff: tokens issued up to this second match.
    pub revoked_at: SystemTime,
}

impl RevocationEntry {
    /// An entry, as another node made it.
    ///
    /// ```
    /// # use axum_ws_auth::revocation::{Selector, RevocationEntry};
    /// let entry = RevocationEntry::new(Selector::token("t-1"), std::time::SystemTime::now());
    /// let json = serde_json::to_string(&entry)?;
    /// assert_eq!(serde_json::from_str::<RevocationEntry>(&json)?, entry);
    /// # Ok::<_, serde_json::Error>(())
    /// ```
    pub fn new(revocation: Selector, revoked_at: SystemTime) -> Self {
        Self {
            revocation,
            revoked_at,
        }
    }
}

/// What new handshakes meet while a cluster's copy of the revocation list
/// may be behind (the connection to the other nodes is down, a resync is
/// under way), as set by
/// [`Connections::set_revocations_stale`](crate::Connections::set_revocations_stale).
///
/// Renewals and live sockets are never affected: they are checked against
/// the entries this node has.
///
/// ```
/// # use axum_ws_auth::{JwtValidator, WsAuthLayer, revocation::StalePolicy};
/// let layer = WsAuthLayer::<serde_json::Value>::builder(JwtValidator::hs256([42u8; 32])?).build()?;
/// let connections = layer.connections();
/// // The pub/sub connection dropped: refuse new sockets until resynced.
/// connections.set_revocations_stale(Some(StalePolicy::FailClosed));
/// assert_eq!(connections.revocations_stale(), Some(StalePolicy::FailClosed));
/// // Resynced.
/// connections.set_revocations_stale(None);
/// # Ok::<_, axum_ws_auth::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StalePolicy {
    /// Keep accepting new handshakes, checked against the entries this node
    /// has: availability first.
    FailOpen,
    /// Refuse new handshakes with `503 Service Unavailable` and a
    /// `Retry-After`: a token revoked on another node meanwhile cannot
    /// open a socket here.
    FailClosed,
}
