//! Who an operation on a layer's connections is about: one [`Selector`]
//! for both verbs, [`Connections::revoke`](crate::Connections::revoke) and
//! [`Connections::reauthenticate`](crate::Connections::reauthenticate).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::Identity;
use super::revocation::seconds;
use crate::token::RegisteredClaims;

/// Who to revoke, or ask to re-authenticate.
///
/// The two verbs read a selector the same way, with one difference for the
/// dated ones ([`All`](Self::All), [`User`](Self::User)): a revocation
/// matches the tokens issued *up to its moment* (`iat` at or before that
/// second, or no `iat`), so a user may log in anew afterwards; a
/// re-authentication request asks every selected connection, whatever its
/// token's `iat`.
///
/// | selector | [`revoke`](crate::Connections::revoke): refused and closed with 4403 | [`reauthenticate`](crate::Connections::reauthenticate): asked for a fresh token |
/// | --- | --- | --- |
/// | `All` | every token issued up to now | every connection |
/// | `User { iss, sub }` | the user's tokens issued up to now | the user's connections |
/// | `Token { jti }` | the token with this `jti` | the connection whose token has it |
/// | `IssuedBefore { iss, sub, before }` | the user's tokens with `iat < before` | the user's connections whose token has `iat < before` |
/// | `AllIssuedBefore { before }` | every token with `iat < before` | every connection whose token has `iat < before` |
/// | `Session { sid }` | the tokens of this session (`sid` claim) | the connections of this session |
/// | `Connection { id }` | this connection is closed; nothing is stored | this connection |
///
/// A user is the pair (`iss`, `sub`), as everywhere in this crate: `iss`
/// is compared exactly, and `None` stands for tokens *without* an `iss`
/// claim, not for "any issuer". Pass the issuer your tokens carry (the
/// connection's [`Identity::issuer`](crate::Identity::issuer), or
/// `RegisteredClaims::iss`). A token without `iat` cannot be dated, so the
/// dated selectors match it. Connections are judged by their *current*
/// token (renewals change `jti` and `iat`).
///
/// It is serializable, to travel between the nodes of a cluster (as JSON:
/// `{"kind":"user","iss":"https://issuer.example","sub":"alice"}`,
/// `{"kind":"token","jti":"t-1"}`,
/// `{"kind":"issued_before","iss":null,"sub":"alice","before":1764000000}`,
/// `{"kind":"all_issued_before","before":1764000000}`, `{"kind":"all"}`,
/// `{"kind":"session","sid":"s-1"}`, `{"kind":"connection","id":7}`).
///
/// ```
/// use axum_ws_auth::revocation::Selector;
///
/// let alice = Selector::user(Some("https://issuer.example"), "alice");
/// let json = serde_json::to_string(&alice)?;
/// assert_eq!(json, r#"{"kind":"user","iss":"https://issuer.example","sub":"alice"}"#);
/// assert_eq!(serde_json::from_str::<Selector>(&json)?, alice);
///
/// // "Log out everywhere" at a moment the application recorded.
/// let password_changed_at = 1_764_000_000;
/// let older = Selector::issued_before(Some("https://issuer.example"), "alice", password_changed_at);
/// // A signing key retired at this moment: every older token.
/// let retired = Selector::all_issued_before(1_764_000_000);
/// # let _ = (older, retired);
/// # Ok::<_, serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Selector {
    /// Everyone. A revocation refuses every token issued up to its second,
    /// including those a client fetches later in that same second: clients
    /// that reconnect at once are refused until their token endpoint mints
    /// one dated a second later.
    All,
    /// The user (`iss`, `sub`).
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
    /// The user's tokens issued strictly before `before` (`iat < before`),
    /// and those without `iat`: "log out everywhere", a password change
    /// recorded at `before`. A revocation of it is kept for the retention
    /// after the later of `before` and the moment of the revocation.
    IssuedBefore {
        /// The tokens' `iss`; `None` only for tokens without one.
        iss: Option<String>,
        /// The tokens' `sub`.
        sub: String,
        /// A NumericDate (seconds since the Unix epoch).
        before: u64,
    },
    /// Every token issued strictly before `before` (`iat < before`), and
    /// those without `iat`: a signing key retired, an incident's start.
    ///
    /// `before` is a NumericDate in *seconds*; a date in the future (or in
    /// milliseconds by mistake) refuses every token until then, for
    /// everyone, and a revocation cannot be taken back: pass a moment that
    /// has passed.
    AllIssuedBefore {
        /// A NumericDate (seconds since the Unix epoch).
        before: u64,
    },
    /// The tokens whose `sid` claim (an OpenID Connect session id) is this
    /// one. Tokens without `sid` never match.
    Session {
        /// The session id.
        sid: String,
    },
    /// The one connection with this id
    /// ([`Identity::connection_id`](crate::Identity::connection_id)).
    Connection {
        /// The connection's id.
        id: u64,
    },
}

impl Selector {
    /// Everyone: see [`Selector::All`].
    ///
    /// ```
    /// # use axum_ws_auth::revocation::Selector;
    /// assert_eq!(Selector::all(), Selector::All);
    /// ```
    pub fn all() -> Self {
        Selector::All
    }

    /// The user (`iss`, `sub`): see [`Selector::User`].
    ///
    /// ```
    /// # use axum_ws_auth::revocation::Selector;
    /// let selector = Selector::user(None, "kiosk-7");
    /// assert!(matches!(selector, Selector::User { iss: None, .. }));
    /// ```
    pub fn user(iss: Option<&str>, sub: &str) -> Self {
        Selector::User {
            iss: iss.map(str::to_owned),
            sub: sub.to_owned(),
        }
    }

    /// The token with this `jti`: see [`Selector::Token`].
    ///
    /// ```
    /// # use axum_ws_auth::revocation::Selector;
    /// assert_eq!(Selector::token("t-1"), Selector::Token { jti: "t-1".into() });
    /// ```
    pub fn token(jti: impl Into<String>) -> Self {
        Selector::Token { jti: jti.into() }
    }

    /// The user's tokens with `iat < before`: see
    /// [`Selector::IssuedBefore`].
    ///
    /// ```
    /// # use axum_ws_auth::revocation::Selector;
    /// let selector = Selector::issued_before(None, "kiosk-7", 1_764_000_000);
    /// assert!(matches!(selector, Selector::IssuedBefore { before: 1_764_000_000, .. }));
    /// ```
    pub fn issued_before(iss: Option<&str>, sub: &str, before: u64) -> Self {
        Selector::IssuedBefore {
            iss: iss.map(str::to_owned),
            sub: sub.to_owned(),
            before,
        }
    }

    /// Every token with `iat < before`: see [`Selector::AllIssuedBefore`].
    ///
    /// ```
    /// # use axum_ws_auth::revocation::Selector;
    /// let selector = Selector::all_issued_before(1_764_000_000);
    /// assert_eq!(selector, Selector::AllIssuedBefore { before: 1_764_000_000 });
    /// ```
    pub fn all_issued_before(before: u64) -> Self {
        Selector::AllIssuedBefore { before }
    }

    /// The tokens of this session: see [`Selector::Session`].
    ///
    /// ```
    /// # use axum_ws_auth::revocation::Selector;
    /// assert_eq!(Selector::session("s-1"), Selector::Session { sid: "s-1".into() });
    /// ```
    pub fn session(sid: impl Into<String>) -> Self {
        Selector::Session { sid: sid.into() }
    }

    /// The connection with this id: see [`Selector::Connection`].
    ///
    /// ```
    /// # use axum_ws_auth::revocation::Selector;
    /// assert_eq!(Selector::connection(7), Selector::Connection { id: 7 });
    /// ```
    pub fn connection(id: u64) -> Self {
        Selector::Connection { id }
    }

    /// The short name of the variant, as in logs and metrics.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Selector::All => "all",
            Selector::User { .. } => "user",
            Selector::Token { .. } => "token",
            Selector::IssuedBefore { .. } => "issued_before",
            Selector::AllIssuedBefore { .. } => "all_issued_before",
            Selector::Session { .. } => "session",
            Selector::Connection { .. } => "connection",
        }
    }

    /// The subject it names, if any.
    pub(crate) fn subject(&self) -> Option<&str> {
        match self {
            Selector::User { sub, .. } | Selector::IssuedBefore { sub, .. } => Some(sub),
            _ => None,
        }
    }

    /// Whether a revocation of it is stored (every selector but one
    /// connection, which names no token).
    pub(crate) fn is_stored(&self) -> bool {
        !matches!(self, Selector::Connection { .. })
    }

    /// Whether a connection with this identity may be selected, before its
    /// current token is read.
    pub(crate) fn may_select(&self, identity: &Identity) -> bool {
        match self {
            Selector::Connection { id } => identity.connection_id() == *id,
            Selector::User { iss, sub } | Selector::IssuedBefore { iss, sub, .. } => {
                identity.is_same(iss.as_deref(), Some(sub.as_str()))
            }
            Selector::All
            | Selector::Token { .. }
            | Selector::AllIssuedBefore { .. }
            | Selector::Session { .. } => true,
        }
    }

    /// Whether a connection whose current token has these claims is asked
    /// to re-authenticate (after [`may_select`](Self::may_select)).
    pub(crate) fn selects(&self, claims: &RegisteredClaims) -> bool {
        match self {
            Selector::Token { jti } => claims.jti.as_deref() == Some(jti),
            Selector::Session { sid } => claims.sid.as_deref() == Some(sid),
            Selector::IssuedBefore { before, .. } | Selector::AllIssuedBefore { before } => {
                claims.iat.is_none_or(|iat| iat < *before)
            }
            Selector::All | Selector::User { .. } | Selector::Connection { .. } => true,
        }
    }

    /// Whether a token with these registered claims is revoked by a
    /// revocation of it made at `revoked_at` (after
    /// [`may_select`](Self::may_select), for a live connection: one
    /// [`Connection`](Self::Connection) matches whatever its token).
    pub(crate) fn matches(&self, revoked_at: SystemTime, claims: &RegisteredClaims) -> bool {
        let up_to_now = || claims.iat.is_none_or(|iat| iat <= seconds(revoked_at));
        match self {
            Selector::All => up_to_now(),
            Selector::User { iss, sub } => same_identity(iss, sub, claims) && up_to_now(),
            Selector::Token { jti } => claims.jti.as_deref() == Some(jti),
            Selector::IssuedBefore { iss, sub, before } => {
                same_identity(iss, sub, claims) && claims.iat.is_none_or(|iat| iat < *before)
            }
            Selector::AllIssuedBefore { before } => claims.iat.is_none_or(|iat| iat < *before),
            Selector::Session { sid } => claims.sid.as_deref() == Some(sid),
            Selector::Connection { .. } => true,
        }
    }

    /// When no token a revocation of it can match is valid any more, by
    /// the retention rule; `None` when that is beyond any representable
    /// time.
    pub(crate) fn expires_at(
        &self,
        revoked_at: SystemTime,
        retention: Duration,
    ) -> Option<SystemTime> {
        let from = match self {
            // Tokens issued up to `before` live on after it.
            Selector::IssuedBefore { before, .. } | Selector::AllIssuedBefore { before } => {
                UNIX_EPOCH
                    .checked_add(Duration::from_secs(*before))?
                    .max(revoked_at)
            }
            _ => revoked_at,
        };
        from.checked_add(retention)
    }
}

fn same_identity(iss: &Option<String>, sub: &str, claims: &RegisteredClaims) -> bool {
    claims.iss.as_deref() == iss.as_deref() && claims.sub.as_deref() == Some(sub)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, revocable};

    fn with_sid(sid: &str, iat: Option<u64>) -> RegisteredClaims {
        RegisteredClaims {
            sid: Some(sid.to_owned()),
            ..revocable(Some("i"), Some("alice"), None, iat)
        }
    }

    #[test]
    fn each_variant_revokes_what_its_docs_say() {
        let t = 1_000_000;
        let user = Selector::user(Some("i"), "alice");
        let token = Selector::token("j-1");
        let before = Selector::issued_before(None, "alice", t);
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
        // All: everyone's tokens up to the second, or undated.
        let all = Selector::all();
        assert!(all.matches(at(t), &revocable(Some("j"), Some("bob"), None, Some(t))));
        assert!(all.matches(at(t), &revocable(None, None, None, None)));
        assert!(!all.matches(at(t), &revocable(None, Some("bob"), None, Some(t + 1))));
        // AllIssuedBefore: everyone's, strictly before.
        let retired = Selector::all_issued_before(t);
        assert!(retired.matches(at(0), &revocable(Some("j"), Some("bob"), None, Some(t - 1))));
        assert!(retired.matches(at(0), &revocable(None, None, None, None)));
        assert!(!retired.matches(at(0), &revocable(None, Some("bob"), None, Some(t))));
        // Session: by sid alone; tokens without one never match.
        let session = Selector::session("s-1");
        assert!(session.matches(at(0), &with_sid("s-1", Some(u64::MAX))));
        assert!(!session.matches(at(0), &with_sid("s-10", None)));
        assert!(!session.matches(at(0), &alice(None)));
    }

    #[test]
    fn each_variant_selects_what_its_docs_say() {
        let t = 1_000_000;
        let alice = |iat| revocable(Some("i"), Some("alice"), Some("j-1"), iat);
        // Requests are not dated: a user's fresh token is asked too.
        assert!(Selector::user(Some("i"), "alice").selects(&alice(Some(u64::MAX))));
        assert!(Selector::all().selects(&alice(Some(u64::MAX))));
        assert!(Selector::token("j-1").selects(&alice(None)));
        assert!(!Selector::token("j-2").selects(&alice(None)));
        assert!(Selector::all_issued_before(t).selects(&alice(Some(t - 1))));
        assert!(!Selector::all_issued_before(t).selects(&alice(Some(t))));
        assert!(Selector::issued_before(Some("i"), "alice", t).selects(&alice(None)));
        assert!(Selector::session("s-1").selects(&with_sid("s-1", None)));
        assert!(!Selector::session("s-1").selects(&alice(None)));
    }

    #[test]
    fn the_json_of_each_variant_is_stable() {
        let cases = [
            (Selector::all(), r#"{"kind":"all"}"#),
            (
                Selector::user(None, "a"),
                r#"{"kind":"user","iss":null,"sub":"a"}"#,
            ),
            (Selector::token("t"), r#"{"kind":"token","jti":"t"}"#),
            (
                Selector::issued_before(Some("i"), "a", 5),
                r#"{"kind":"issued_before","iss":"i","sub":"a","before":5}"#,
            ),
            (
                Selector::all_issued_before(5),
                r#"{"kind":"all_issued_before","before":5}"#,
            ),
            (Selector::session("s"), r#"{"kind":"session","sid":"s"}"#),
            (Selector::connection(7), r#"{"kind":"connection","id":7}"#),
        ];
        for (selector, json) in cases {
            assert_eq!(serde_json::to_string(&selector).unwrap(), json);
            assert_eq!(serde_json::from_str::<Selector>(json).unwrap(), selector);
        }
        // A per-user `issued_before` needs its user: never read as everyone.
        assert!(
            serde_json::from_str::<Selector>(r#"{"kind":"issued_before","before":5}"#).is_err()
        );
    }
}
