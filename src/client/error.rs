//! What went wrong, in words that never contain a token.

use std::time::Duration;

/// A failure the client recovered from, or stopped on.
///
/// Each one is reported as [`ClientEvent::Error`](super::ClientEvent::Error)
/// and followed by a scheduled retry (a renewal retry, or
/// [`ClientEvent::Disconnected`](super::ClientEvent::Disconnected) with its
/// delay) or by the final [`ClientEvent::Stopped`](super::ClientEvent::Stopped).
/// Neither `Display` nor `Debug` ever shows a token.
///
/// ```
/// use std::time::Duration;
/// use axum_ws_auth::client::ClientError;
///
/// let error = ClientError::TokenTimeout(Duration::from_secs(10));
/// assert_eq!(error.to_string(), "the token provider did not answer within 10s");
/// assert!(error.is_token_error());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The token provider returned an error (its message, as it gave it).
    #[error("the token provider failed: {0}")]
    TokenProvider(String),
    /// The token provider did not answer within
    /// [`token_timeout`](super::AuthClientBuilder::token_timeout).
    #[error("the token provider did not answer within {0:?}")]
    TokenTimeout(Duration),
    /// The provider's token (after trimming) cannot be sent: it is empty, too
    /// long, or has characters a header or a subprotocol entry cannot carry
    /// (an HTML error page, say).
    #[error("the token is unusable: {0}")]
    UnusableToken(&'static str),
    /// TCP (and TLS) did not connect within
    /// [`connect_timeout`](super::AuthClientBuilder::connect_timeout).
    #[error("connecting timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// TCP or TLS failed.
    #[error("connecting failed: {0}")]
    Connect(String),
    /// The server did not answer the upgrade within
    /// [`handshake_timeout`](super::AuthClientBuilder::handshake_timeout).
    #[error("the handshake timed out after {0:?}")]
    HandshakeTimeout(Duration),
    /// The server refused the upgrade with this HTTP status.
    #[error("the handshake was refused with HTTP {0}")]
    Refused(u16),
    /// The upgrade failed below HTTP (a malformed answer, say).
    #[error("the handshake failed: {0}")]
    Handshake(String),
    /// An open connection broke without a close frame.
    #[error("the connection was lost: {0}")]
    ConnectionLost(String),
    /// The server answered a renewal with a control message this client
    /// cannot read (an unknown error code, a missing field); the renewal
    /// counts as rejected.
    #[error("the server's {0} message could not be read")]
    UnreadableControl(&'static str),
    /// The server did not answer a renewal within this long (10 s); the
    /// client stops waiting for the answer, answers the server's next notice
    /// (at once, if one came meanwhile), and otherwise lets the connection
    /// run until it expires and reconnects.
    #[error("the server did not answer a renewal within {0:?}")]
    RenewalUnanswered(Duration),
    /// The client cannot work as configured (a bad URL, `wss://` without TLS
    /// settings).
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl ClientError {
    /// Whether getting a token failed (provider error, timeout, unusable
    /// token), as opposed to the network or the server.
    ///
    /// ```
    /// use axum_ws_auth::client::ClientError;
    ///
    /// assert!(ClientError::UnusableToken("empty").is_token_error());
    /// assert!(!ClientError::Refused(401).is_token_error());
    /// ```
    pub fn is_token_error(&self) -> bool {
        matches!(
            self,
            ClientError::TokenProvider(_)
                | ClientError::TokenTimeout(_)
                | ClientError::UnusableToken(_)
        )
    }
}
