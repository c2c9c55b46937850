use crate::protocol::RenewRejection;

/// What happened to a connection's authentication, for the application's
/// UI or audit trail: the same facts the client sees as control messages,
/// without parsing frames. Subscribe with `AuthWebSocket::events`.
///
/// ```
/// use axum_ws_auth::{AuthEvent, AuthWebSocket};
///
/// fn audit(socket: &AuthWebSocket<serde_json::Value>) {
///     let mut events = socket.events();
///     tokio::spawn(async move {
///         while let Ok(event) = events.recv().await {
///             match event {
///                 AuthEvent::Renewed { exp } => println!("renewed until {exp}"),
///                 other => println!("{other:?}"),
///             }
///         }
///     });
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthEvent {
    /// `auth.expiring` was sent: the token expires at `exp`. (An early
    /// notice asking for re-authentication is
    /// [`ReauthRequested`](Self::ReauthRequested) instead.)
    Expiring {
        /// The token's `exp` (seconds since the Unix epoch).
        exp: u64,
        /// Whole seconds left when the notice was sent.
        expires_in: u64,
    },
    /// The server asked for re-authentication
    /// ([`Connections::reauthenticate`](crate::Connections::reauthenticate)):
    /// an early `auth.expiring` was sent, and the connection ends at `exp`
    /// unless a renewal with a token issued since is accepted.
    ReauthRequested {
        /// The new deadline (seconds since the Unix epoch): never later
        /// than the token's own `exp`.
        exp: u64,
        /// Whole seconds left when the notice was sent.
        expires_in: u64,
    },
    /// A renewal was accepted; the connection now lives until `exp`.
    Renewed {
        /// The new token's `exp`.
        exp: u64,
    },
    /// A renewal or control message was refused; nothing changed.
    RenewRejected {
        /// The RFC 6750 error code sent to the client.
        error: RenewRejection,
        /// The short, token-free reason sent to the client.
        description: String,
    },
}
