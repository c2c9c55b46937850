//! Why a cluster could not start, or why its subscription was lost.

/// An error of the [`cluster`](super) module.
///
/// ```
/// use axum_ws_auth::cluster::ClusterError;
///
/// let error = ClusterError::UnsupportedScheme("rediss".into());
/// assert!(error.to_string().contains("rediss"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The URL is not a Redis URL this crate can use.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(#[source] redis::RedisError),
    /// TLS to Redis (`rediss://`) is not supported: this crate builds
    /// redis-rs without TLS, so that the whole build keeps one crypto
    /// backend (aws-lc-rs). Reach Redis over loopback, a private network or
    /// a TLS tunnel (stunnel, a service mesh).
    #[error("unsupported Redis URL scheme {0}:// (no TLS support; see the cluster module docs)")]
    UnsupportedScheme(String),
    /// The prefix is empty or contains whitespace.
    #[error("invalid key prefix: empty, or contains whitespace")]
    InvalidPrefix,
    /// A duration setting is zero, or a maximum is below its minimum.
    #[error("invalid setting: {0}")]
    InvalidSetting(&'static str),
    /// Redis answered with an error, or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("redis did not answer in time ({0})")]
    Timeout(&'static str),
    /// The subscription's connection closed.
    #[error("the subscription's connection closed")]
    SubscriptionClosed,
}
