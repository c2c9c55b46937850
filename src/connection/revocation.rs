//! Revocation: what can be revoked ([`Revocation`]) and what each variant
//! matches, an entry as a cluster publishes it ([`RevocationEntry`]), and
//! the switch a cluster layer sets while its copy of the list may be
//! behind ([`StalePolicy`]). The layer's store of entries is `store.rs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::token::RegisteredClaims;

/// Default of [`WsAuthLayerBuilder::revocation_retention`](crate::WsAuthLayerBuilder::revocation_retention).
pub(crate) const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// What to revoke: the tokens it matches are refused at the handshake and
/// on renewal, and the live sockets whose current token it matches are
/// closed with `4403 forbidden`
/// ([`Connections::revoke`](crate::Connections::revoke)).
///
/// A user is the pair (`iss`, `sub`), as everywhere in this crate: `iss`
/// is compared exactly, and `None` stands for tokens *without* an `iss`
/// claim, not for "any issuer". Pass the issuer your tokens carry (the
/// connection's [`Identity::issuer`](crate::Identity::issuer), or
/// `RegisteredClaims::iss`).
///
/// `iat` is read as the issuer wrote it. A token without `iat` cannot be
/// dated, so the dated variants ([`User`](Self::User),
/// [`IssuedBefore`](Self::IssuedBefore)) match it.
///
/// It is serializable, to travel between the nodes of a cluster (as JSON:
/// `{"kind":"user","iss":"https://issuer.example","sub":"alice"}`,
/// `{"kind":"token","jti":"t-1"}`,
/// `{"kind":"issued_before","iss":null,"sub":"alice","before":1764000000}`).
///
/// ```
/// use axum_ws_auth::revocation::Revocation;
///
/// let alice = Revocation::user(Some("https://issuer.example"), "alice");
/// let json = serde_json::to_string(&alice)?;
/// assert_eq!(json, r#"{"kind":"user","iss":"https://issuer.example","sub":"alice"}"#);
/// assert_eq!(serde_json::from_str::<Revocation>(&json)?, alice);
///
/// // "Log out everywhere" at a moment the application recorded.
/// let password_changed_at = 1_764_000_000;
/// let older = Revocation::issued_before(Some("https://issuer.example"), "alice", password_changed_at);
/// let one = Revocation::token("4f0c2a9e-session-17");
/// # let _ = (older, one);
/// # Ok::<_, serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Revocation {
    /// Every token of the user (`iss`, `sub`) issued up to the moment of the
    /// revocation (`iat` at or before that second), and every token of
    /// theirs without `iat`. Tokens issued later are accepted again: the
    /// user may log in anew.
    User {
        /// The tokens' `iss`; `None` only for tokens without one.
        iss: Option<String>,
        /// The tokens' `sub`.
        sub: String,
    },
    /// The one token whose `jti` this is, from any issuer (RFC 7519 asks
    /// issuers to keep `jti` values apart). Tokens without `jti` never
    /// match.
    Token {
        /// The token's `jti`.
        jti: String,
    },
    /// Every token of the user (`iss`, `sub`) issued strictly before
    /// `before` (`iat < before`), and every token of theirs without `iat`:
    /// "log out everywhere", a password change recorded at `before`.
    /// Kept for the retention after the later of `before` and the moment
    /// of the revocation.
    IssuedBefore {
        /// The tokens' `iss`; `None` only for tokens without one.
        iss: Option<String>,
        /// The tokens' `sub`.
        sub: String,
        /// A NumericDate (seconds since the Unix epoch).
        before: u64,
    },
}

impl Revocation {
    /// Every token of (`iss`, `sub`) issued up to now: see [`Revocation::User`].
    ///
    /// ```
    /// # use axum_ws_auth::revocation::Revocation;
    /// let revocation = Revocation::user(Some("https://issuer.example"), "alice");
    /// assert!(matches!(revocation, Revocation::User { .. }));
    /// ```
    pub fn user(iss: Option<&str>, sub: &str) -> Self {
        Revocation::User {
            iss: iss.map(str::to_owned),
            sub: sub.to_owned(),
        }
    }

    /// The token with this `jti`: see [`Revocation::Token`].
    ///
    /// ```
    /// # use axum_ws_auth::revocation::Revocation;
    /// assert_eq!(Revocation::token("t-1"), Revocation::Token { jti: "t-1".into() });
    /// ```
    pub fn token(jti: impl Into<String>) -> Self {
        Revocation::Token { jti: jti.into() }
    }

    /// Every token of (`iss`, `sub`) with `iat < before`: see
    /// [`Revocation::IssuedBefore`].
    ///
    /// ```
    /// # use axum_ws_auth::revocation::Revocation;
    /// let revocation = Revocation::issued_before(None, "kiosk-7", 1_764_000_000);
    /// assert!(matches!(revocation, Revocation::IssuedBefore { before: 1_764_000_000, .. }));
    /// ```
    pub fn issued_before(iss: Option<&str>, sub: &str, before: u64) -> Self {
        Revocation::IssuedBefore {
            iss: iss.map(str::to_owned),
            sub: sub.to_owned(),
            before,
        }
    }

    /// The short name of the variant, as in logs and metrics.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Revocation::User { .. } => "user",
            Revocation::Token { .. } => "token",
            Revocation::IssuedBefore { .. } => "issued_before",
        }
    }

    /// The subject it names, if any.
    pub(crate) fn subject(&self) -> Option<&str> {
        match self {
            Revocation::User { sub, .. } | Revocation::IssuedBefore { sub, .. } => Some(sub),
            Revocation::Token { .. } => None,
        }
    }

    /// The identity it names, if it names one.
    pub(crate) fn identity(&self) -> Option<(Option<&str>, &str)> {
        match self {
            Revocation::User { iss, sub } | Revocation::IssuedBefore { iss, sub, .. } => {
                Some((iss.as_deref(), sub))
            }
            Revocation::Token { .. } => None,
        }
    }

    /// Whether a token with these registered claims is revoked by this
    /// revocation, made at `revoked_at`.
    pub(crate) fn matches(&self, revoked_at: SystemTime, claims: &RegisteredClaims) -> bool {
        match self {
            Revocation::Token { jti } => claims.jti.as_deref() == Some(jti),
            Revocation::User { iss, sub } => {
                same_identity(iss, sub, claims)
                    && claims.iat.is_none_or(|iat| iat <= seconds(revoked_at))
            }
            Revocation::IssuedBefore { iss, sub, before } => {
                same_identity(iss, sub, claims) && claims.iat.is_none_or(|iat| iat < *before)
            }
        }
    }

    /// When no token this entry can match is valid any more, by the
    /// retention rule; `None` when that is beyond any representable time.
    pub(super) fn expires_at(
        &self,
        revoked_at: SystemTime,
        retention: Duration,
    ) -> Option<SystemTime> {
        let from = match self {
            // Tokens issued up to `before` live on after it.
            Revocation::IssuedBefore { before, .. } => UNIX_EPOCH
                .checked_add(Duration::from_secs(*before))?
                .max(revoked_at),
            Revocation::User { .. } | Revocation::Token { .. } => revoked_at,
        };
        from.checked_add(retention)
    }
}

fn same_identity(iss: &Option<String>, sub: &str, claims: &RegisteredClaims) -> bool {
    claims.iss.as_deref() == iss.as_deref() && claims.sub.as_deref() == Some(sub)
}

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
/// # use axum_ws_auth::{JwtValidator, WsAuthLayer, revocation::Revocation};
/// let layer = WsAuthLayer::<serde_json::Value>::builder(JwtValidator::hs256([42u8; 32])?).build()?;
/// let connections = layer.connections();
/// connections.revoke(Revocation::token("t-1"));
/// let entries = connections.revocations();
/// assert_eq!(entries.len(), 1);
/// assert_eq!(entries[0].revocation, Revocation::token("t-1"));
/// assert!(entries[0].revoked_at <= std::time::SystemTime::now());
/// # Ok::<_, axum_ws_auth::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RevocationEntry {
    /// What is revoked.
    pub revocation: Revocation,
    /// When it was revoked. For [`Revocation::User`] this is also the
    /// cutoff: tokens issued up to this second match.
    pub revoked_at: SystemTime,
}

impl RevocationEntry {
    /// An entry, as another node made it.
    ///
    /// ```
    /// # use axum_ws_auth::revocation::{Revocation, RevocationEntry};
    /// let entry = RevocationEntry::new(Revocation::token("t-1"), std::time::SystemTime::now());
    /// let json = serde_json::to_string(&entry)?;
    /// assert_eq!(serde_json::from_str::<RevocationEntry>(&json)?, entry);
    /// # Ok::<_, serde_json::Error>(())
    /// ```
    pub fn new(revocation: Revocation, revoked_at: SystemTime) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, revocable};

    #[test]
    fn each_variant_matches_what_its_docs_say() {
        let t = 1_000_000;
        let user = Revocation::user(Some("i"), "alice");
        let token = Revocation::token("j-1");
        let before = Revocation::issued_before(None, "alice", t);
        let alice = |iat| revocable(Some("i"), Some("alice"), Some("other"), iat);
        // User: issued up to the second of the revocation, or undated.
        assert!(user.matches(at(t), &alice(Some(t))));
        assert!(user.matches(at(t) + Duration::from_millis(999), &alice(Some(t))));
        assert!(user.matches(at(t), &alice(Some(0))));
        assert!(user.matches(at(t), &alice(None)));
        assert!(!user.matches(at(t), &alice(Some(t + 1))));
        assert!(!user.matches(at(t), &alice(Some(u64::MAX))));
        // Identity is exact: another issuer, no issuer, another subject.
        assert!(!user.matches(at(t), &revocable(Some("j"), Some("alice"), None, None)));
        assert!(!user.matches(at(t), &revocable(None, Some("alice"), None, None)));
        assert!(!user.matches(at(t), &revocable(Some("i"), Some("bob"), None, None)));
        assert!(!user.matches(at(t), &revocable(Some("i"), None, None, None)));
        // Token: by jti alone, whoever it names.
        assert!(token.matches(at(0), &revocable(None, None, Some("j-1"), None)));
        assert!(token.matches(
            at(0),
            &revocable(Some("x"), Some("y"), Some("j-1"), Some(5))
        ));
        assert!(!token.matches(at(0), &revocable(None, None, Some("j-10"), None)));
        assert!(!token.matches(at(0), &revocable(None, None, None, None)));
        // IssuedBefore: strictly before, or undated; no issuer is exact.
        let no_iss = |iat| revocable(None, Some("alice"), None, iat);
        assert!(before.matches(at(0), &no_iss(Some(t - 1))));
        assert!(before.matches(at(0), &no_iss(Some(0))));
        assert!(before.matches(at(0), &no_iss(None)));
        assert!(!before.matches(at(0), &no_iss(Some(t))));
        assert!(!before.matches(at(0), &alice(Some(0))));
    }
}
