use std::borrow::Cow;

/// Why a policy refused a handshake or a renewal.
///
/// | denial | handshake | renewal |
/// | --- | --- | --- |
/// | `Forbidden` | 403 `insufficient_scope` | `auth.renew_rejected` `insufficient_scope` |
/// | `Revoked` | 401 `invalid_token` ("token revoked") | `auth.renew_rejected` `invalid_token` |
/// | `Failed` (also a timeout or a panic) | 503, no challenge | `auth.renew_rejected` `invalid_token` |
///
/// `Failed` is the check's own failure (its database is down): the layer
/// fails closed, and the reason goes to the `policy_failed` tracing event
/// only, never to the client.
///
/// ```
/// use axum_ws_auth::policy::PolicyDenial;
///
/// fn from_lookup(found: Result<bool, std::io::Error>) -> Result<(), PolicyDenial> {
///     match found {
///         Ok(true) => Ok(()),
///         Ok(false) => Err(PolicyDenial::Forbidden),
///         Err(error) => Err(PolicyDenial::failed(format!("session store: {error}"))),
///     }
/// }
/// assert_eq!(from_lookup(Ok(false)), Err(PolicyDenial::Forbidden));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyDenial {
    /// The token is valid but does not allow this (scope, role, room).
    #[error("insufficient scope")]
    Forbidden,
    /// The token, its session or its user was revoked.
    #[error("token revoked")]
    Revoked,
    /// The check could not decide; the layer fails closed.
    #[error("authorization check failed: {0}")]
    Failed(Cow<'static, str>),
}

impl PolicyDenial {
    /// A check that could not decide, with a reason for the logs (never
    /// sent to the client; keep tokens out of it).
    pub fn failed(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Failed(reason.into())
    }
}
