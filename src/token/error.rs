/// Why a token was refused (RFC 6750 `invalid_token`).
///
/// The [`Display`](std::fmt::Display) text is the short `error_description`
/// sent to clients; it never contains the token or any of its claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a compact JWS, bad base64 or JSON, or an unknown `alg`.
    #[error("malformed token")]
    Malformed,
    /// Longer than the configured maximum; not even parsed.
    #[error("token too large")]
    TooLarge,
    /// The signature does not verify with the configured key.
    #[error("signature invalid")]
    InvalidSignature,
    /// The header names critical extensions (`crit`) or JWE parameters
    /// (`enc`, `zip`) this validator does not implement (RFC 7515 4.1.11).
    #[error("unsupported token header")]
    UnsupportedHeader,
    /// No key with the token's `kid` is known (JWKS); a refresh has been
    /// scheduled, so a retry may succeed.
    #[error("unknown signing key")]
    UnknownKey,
    /// The header's `alg` is not on the allow-list (this includes `none`
    /// and algorithm-confusion attempts).
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// `exp` (plus leeway) has passed; this includes `exp` of `0` or a
    /// fraction that rounds to a past second.
    #[error("token expired")]
    Expired,
    /// `nbf` (minus leeway) is still in the future (up to `u64::MAX`:
    /// such a token is never valid).
    #[error("token not yet valid")]
    NotYetValid,
    /// `aud` does not name this service.
    #[error("invalid audience")]
    InvalidAudience,
    /// `iss` is not an accepted issuer.
    #[error("invalid issuer")]
    InvalidIssuer,
    /// A claim the validation requires (`exp`; `sub` unless the layer
    /// allows tokens without a subject; as configured `iss`, `aud`, `nbf`)
    /// is absent or not of its type. jsonwebtoken does not tell the two
    /// apart, so an `exp` that is not a NumericDate it can read lands here:
    /// a string, `null`, a negative number (`-1`, `-1e18`), or a number at
    /// or beyond `u64::MAX as f64` (`1e300`, `1.8446744073709552e19`).
    #[error("missing or malformed required claim")]
    MissingClaim,
    /// An optional registered claim has the wrong type: `nbf` or `iat`
    /// that is not a NumericDate (a string, negative, or beyond
    /// `u64::MAX as f64`), `iss` that is a list rather than one string,
    /// `aud` that is neither a string nor a list of strings, or an optional
    /// `iss`, `sub` or `jti` that is not a string.
    #[error("invalid claim format")]
    InvalidClaimFormat,
    /// The claims do not deserialize into the application's claims type.
    #[error("claims do not match the expected shape")]
    UnexpectedClaims,
    /// The token was revoked
    /// ([`Connections::revoke`](crate::Connections::revoke)), or the
    /// application's [policy](crate::policy) answered
    /// [`PolicyDenial::Revoked`](crate::policy::PolicyDenial::Revoked).
    #[error("token revoked")]
    Revoked,
    /// A renewal whose `exp` is not later than the current token's.
    #[error("token not newer than the current one")]
    NotNewer,
    /// A renewal answering a re-authentication request
    /// ([`Connections::reauthenticate`](crate::Connections::reauthenticate))
    /// whose token was issued before the request (its `iat` is earlier than
    /// the request's second, or it has no `iat`).
    #[error("token issued before the re-authentication request")]
    IssuedBeforeReauthentication,
}

impl TokenError {
    pub(crate) fn from_jwt(error: &jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind;
        match error.kind() {
            ErrorKind::InvalidSignature => TokenError::InvalidSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                TokenError::AlgorithmNotAllowed
            }
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidAudience => TokenError::InvalidAudience,
            ErrorKind::InvalidIssuer => TokenError::InvalidIssuer,
            ErrorKind::MissingRequiredClaim(_) => TokenError::MissingClaim,
            ErrorKind::InvalidClaimFormat(_) | ErrorKind::InvalidSubject => {
                TokenError::InvalidClaimFormat
            }
            _ => TokenError::Malformed,
        }
    }
}

/// Why an upgrade request is unusable as sent (RFC 6750 `invalid_request`,
/// status 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRequest {
    /// An `Authorization: Bearer` header without a well-formed token.
    #[error("malformed authorization header")]
    MalformedAuthorization,
    /// More than one `Authorization` header.
    #[error("multiple authorization headers")]
    DuplicateAuthorization,
    /// `Sec-WebSocket-Protocol` is not a list of tokens.
    #[error("malformed subprotocol list")]
    MalformedSubprotocols,
    /// More than one `bearer.` entry.
    #[error("multiple bearer subprotocol entries")]
    DuplicateBearerSubprotocol,
    /// Protocols were offered but none the server can select (including a
    /// list holding only the `bearer.` entry).
    #[error("no acceptable subprotocol offered")]
    NoAcceptableSubprotocol,
    /// The token cookie appears more than once.
    #[error("multiple token cookies")]
    DuplicateCookie,
    /// `access_token` appears more than once, or is not decodable.
    #[error("malformed access_token parameter")]
    MalformedQuery,
    /// The application's token extractor
    /// ([`WsAuthLayerBuilder::token_from`](crate::WsAuthLayerBuilder::token_from))
    /// found its location unusable: malformed, or holding more than one
    /// token.
    #[error("malformed token location")]
    Custom,
}
