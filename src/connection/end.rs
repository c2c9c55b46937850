use crate::protocol::CloseReason;

/// Why an authenticated connection ended, as the application can ask of
/// its socket once `recv` has returned `None` or `send` has failed.
///
/// ```
/// use axum_ws_auth::{AuthWebSocket, EndReason};
///
/// async fn run(mut socket: AuthWebSocket<serde_json::Value>) {
///     while let Some(Ok(_message)) = socket.recv().await {}
///     match socket.end_reason() {
///         Some(EndReason::Expired) => println!("the token expired"),
///         Some(EndReason::PeerClosed { code, .. }) => println!("the client left ({code})"),
///         other => println!("ended: {other:?}"),
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The token expired with no accepted renewal (closed with 4401).
    Expired,
    /// The server asked for re-authentication
    /// ([`Connections::reauthenticate`](crate::Connections::reauthenticate))
    /// and no renewal with a fresh token was accepted by the deadline it
    /// set (closed with 4401, as an expiry).
    NotReauthenticated,
    /// The connection's user or token was revoked (closed with 4403).
    Revoked,
    /// A renewal tried to change the token's identity (closed with 4403).
    IdentityChanged,
    /// The renewal rate limit was passed (closed with 4429).
    TooManyRenewals,
    /// Repeated invalid control messages (closed with 4400).
    BadRequests,
    /// A message over the size limit (closed with 1009).
    MessageTooBig,
    /// Graceful shutdown (closed with 1001).
    ServerShutdown,
    /// The application closed this connection with
    /// [`Connections::close_connection`](crate::Connections::close_connection).
    CloseRequested {
        /// The code and phrase it chose.
        reason: CloseReason,
    },
    /// The peer sent a close frame.
    PeerClosed {
        /// The peer's close code (1005 when its frame had none).
        code: u16,
        /// The peer's close reason.
        reason: String,
    },
    /// The connection failed, or the peer went away without a close frame.
    ConnectionLost,
    /// The application sent its own close frame.
    ApplicationClosed,
    /// The application dropped every half of the socket (closed with 1000).
    Dropped,
}

impl EndReason {
    /// The contract's close code the server sends for this ending, if it is
    /// one the server decides.
    pub fn close_reason(&self) -> Option<CloseReason> {
        Some(match self {
            EndReason::Expired | EndReason::NotReauthenticated => CloseReason::TokenExpired,
            EndReason::Revoked | EndReason::IdentityChanged => CloseReason::Forbidden,
            EndReason::TooManyRenewals => CloseReason::TooManyRenewals,
            EndReason::BadRequests => CloseReason::BadRequest,
            EndReason::MessageTooBig => CloseReason::MessageTooBig,
            EndReason::ServerShutdown => CloseReason::ServerShutdown,
            EndReason::CloseRequested { reason } => *reason,
            EndReason::PeerClosed { .. }
            | EndReason::ConnectionLost
            | EndReason::ApplicationClosed
            | EndReason::Dropped => return None,
        })
    }

    /// Whether the peer ended it: nothing more is sent.
    pub(crate) fn is_peer(&self) -> bool {
        matches!(
            self,
            EndReason::PeerClosed { .. } | EndReason::ConnectionLost
        )
    }
}
