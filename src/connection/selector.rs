//! Which live connections an operation applies to.

use serde::{Deserialize, Serialize};

use super::Identity;
use crate::token::RegisteredClaims;

/// Which live connections
/// [`Connections::reauthenticate`](crate::Connections::reauthenticate)
/// asks to re-authenticate, judged by each connection's *current* token
/// (renewals change `jti` and `iat`).
///
/// Serializable like [`Revocation`](crate::revocation::Revocation), so that a cluster
/// can forward the request to every node
/// (`{"kind":"user","iss":null,"sub":"alice"}`, `{"kind":"all"}`).
///
/// ```
/// use axum_ws_auth::revocation::ConnectionSelector;
///
/// // Alice's roles changed: her sockets should carry a fresh token.
/// let alice = ConnectionSelector::user(Some("https://issuer.example"), "alice");
/// // A signing key was retired at this moment: every older token.
/// let older = ConnectionSelector::issued_before(1_764_000_000);
/// let json = serde_json::to_string(&older)?;
/// assert_eq!(json, r#"{"kind":"issued_before","before":1764000000}"#);
/// assert_eq!(serde_json::from_str::<ConnectionSelector>(&json)?, older);
/// # let _ = alice;
/// # Ok::<_, serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConnectionSelector {
    /// Every live connection.
    All,
    /// The connections of the user (`iss`, `sub`); `iss` is compared
    /// exactly (`None` selects connections whose token has no `iss`).
    User {
        /// The tokens' `iss`.
        iss: Option<String>,
        /// The tokens' `sub`.
        sub: String,
    },
    /// The connection whose current token has this `jti`.
    Token {
        /// The token's `jti`.
        jti: String,
    },
    /// Connections whose current token was issued strictly before `before`
    /// (`iat < before`, a NumericDate), or has no `iat`.
    IssuedBefore {
        /// Seconds since the Unix epoch.
        before: u64,
    },
    /// The one connection with this id
    /// ([`Identity::connection_id`](crate::Identity::connection_id)).
    Connection {
        /// The connection's id.
        id: u64,
    },
}

impl ConnectionSelector {
    /// The connections of (`iss`, `sub`): see [`ConnectionSelector::User`].
    ///
    /// ```
    /// # use axum_ws_auth::revocation::ConnectionSelector;
    /// let selector = ConnectionSelector::user(None, "kiosk-7");
    /// assert!(matches!(selector, ConnectionSelector::User { iss: None, .. }));
    /// ```
    pub fn user(iss: Option<&str>, sub: &str) -> Self {
        ConnectionSelector::User {
            iss: iss.map(str::to_owned),
            sub: sub.to_owned(),
        }
    }

    /// The connection whose token has this `jti`: see
    /// [`ConnectionSelector::Token`].
    ///
    /// ```
    /// # use axum_ws_auth::revocation::ConnectionSelector;
    /// assert_eq!(ConnectionSelector::token("t-1"), ConnectionSelector::Token { jti: "t-1".into() });
    /// ```
    pub fn token(jti: impl Into<String>) -> Self {
        ConnectionSelector::Token { jti: jti.into() }
    }

    /// Connections whose token has `iat < before`: see
    /// [`ConnectionSelector::IssuedBefore`].
    ///
    /// ```
    /// # use axum_ws_auth::revocation::ConnectionSelector;
    /// let selector = ConnectionSelector::issued_before(1_764_000_000);
    /// assert_eq!(selector, ConnectionSelector::IssuedBefore { before: 1_764_000_000 });
    /// ```
    pub fn issued_before(before: u64) -> Self {
        ConnectionSelector::IssuedBefore { before }
    }

    /// The connection with this id: see [`ConnectionSelector::Connection`].
    ///
    /// ```
    /// # use axum_ws_auth::revocation::ConnectionSelector;
    /// assert_eq!(ConnectionSelector::connection(7), ConnectionSelector::Connection { id: 7 });
    /// ```
    pub fn connection(id: u64) -> Self {
        ConnectionSelector::Connection { id }
    }

    /// Whether a connection with this identity may be selected, before its
    /// current token is read.
    pub(crate) fn may_select(&self, identity: &Identity) -> bool {
        match self {
            ConnectionSelector::Connection { id } => identity.connection_id() == *id,
            ConnectionSelector::User { iss, sub } => {
                identity.is_same(iss.as_deref(), Some(sub.as_str()))
            }
            ConnectionSelector::All
            | ConnectionSelector::Token { .. }
            | ConnectionSelector::IssuedBefore { .. } => true,
        }
    }

    /// Whether a connection whose current token has these claims is
    /// selected (after [`may_select`](Self::may_select)).
    pub(crate) fn selects(&self, claims: &RegisteredClaims) -> bool {
        match self {
            ConnectionSelector::Token { jti } => claims.jti.as_deref() == Some(jti),
            ConnectionSelector::IssuedBefore { before } => {
                claims.iat.is_none_or(|iat| iat < *before)
            }
            ConnectionSelector::All
            | ConnectionSelector::User { .. }
            | ConnectionSelector::Connection { .. } => true,
        }
    }
}
