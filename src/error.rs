/// A configuration that cannot be used safely, refused when it is built
/// rather than discovered on the first request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The validation allows no algorithm at all.
    #[error("the validation allows no algorithm")]
    NoAlgorithm,
    /// An allowed algorithm cannot be used with the key (e.g. `HS256` with
    /// an RSA public key, the classic algorithm-confusion setup).
    #[error("algorithm {0} does not match the key's family")]
    AlgorithmKeyMismatch(String),
    /// An HMAC secret shorter than the hash output (RFC 7518 section 3.2).
    #[error("an HMAC secret must be at least 32 bytes")]
    WeakSecret,
    /// The leeway is not whole seconds or longer than five minutes.
    #[error("leeway must be whole seconds and at most 300 s")]
    Leeway,
    /// Cookie tokens were enabled without an `Origin` allow-list, which
    /// would allow cross-site WebSocket hijacking.
    #[error("a cookie token source requires an Origin allow-list")]
    CookieWithoutOriginAllowList,
    /// A realm, cookie name, origin or subprotocol is not valid in its header.
    #[error("{0} is not valid in an HTTP header")]
    InvalidHeaderText(&'static str),
    /// No token source is enabled.
    #[error("no token source is enabled")]
    NoTokenSource,
    /// A limit that must be positive is zero.
    #[error("{0} must be greater than zero")]
    ZeroLimit(&'static str),
}
