//! The control messages of the wire contract (section 2), as types: what a
//! client sends ([`ClientMessage`]), what the server sends
//! ([`ServerMessage`]), and why a renewal is rejected ([`RenewRejection`]).
//! Which inbound frames are control messages is `classify.rs`'s.

use serde::{Deserialize, Serialize};

/// A control message a client sends to the server.
///
/// `Debug` never prints the token.
///
/// ```
/// use axum_ws_auth::protocol::ClientMessage;
///
/// let renew = ClientMessage::Renew { token: "e30.e30.sig".into(), id: Some("r1".into()) };
/// assert_eq!(
///     renew.to_json(),
///     r#"{"type":"auth.renew","token":"e30.e30.sig","id":"r1"}"#,
/// );
/// assert!(!format!("{renew:?}").contains("e30"));
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum ClientMessage {
    /// Replace the connection's token with a fresh one.
    #[serde(rename = "auth.renew")]
    Renew {
        /// The new compact JWT.
        token: String,
        /// Optional correlation id, echoed in the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
}

impl ClientMessage {
    /// Serializes the message as the JSON text of one WebSocket text frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("control messages always serialize")
    }
}

impl std::fmt::Debug for ClientMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientMessage::Renew { id, .. } => f
                .debug_struct("Renew")
                .field("token", &"<redacted>")
                .field("id", id)
                .finish(),
        }
    }
}

/// A control message the server sends to a client.
///
/// ```
/// use axum_ws_auth::protocol::ServerMessage;
///
/// let msg: ServerMessage =
///     serde_json::from_str(r#"{"type":"auth.expiring","exp":1764000000,"expires_in":30}"#).unwrap();
/// assert_eq!(msg, ServerMessage::Expiring { exp: 1764000000, expires_in: 30 });
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum ServerMessage {
    /// The current token expires soon; sent once per token, `notify_before`
    /// ahead of its `exp`.
    #[serde(rename = "auth.expiring")]
    Expiring {
        /// The token's `exp` (seconds since the Unix epoch).
        exp: u64,
        /// Whole seconds from the moment the message was sent until `exp`,
        /// rounded down.
        expires_in: u64,
    },
    /// A renewal was accepted; the connection now lives until `exp`.
    #[serde(rename = "auth.renewed")]
    Renewed {
        /// The new token's `exp`.
        exp: u64,
        /// The request's correlation id, if it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// A renewal was refused; the connection goes on under its current token.
    #[serde(rename = "auth.renew_rejected")]
    RenewRejected {
        /// What kind of failure, as an RFC 6750 error code.
        error: RenewRejection,
        /// A short, token-free explanation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_description: Option<String>,
        /// The request's correlation id, if it had a usable one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
}

impl ServerMessage {
    /// Serializes the message as the JSON text of one WebSocket text frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("control messages always serialize")
    }
}

/// The RFC 6750 error code of an `auth.renew_rejected` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RenewRejection {
    /// The control message itself was unusable.
    InvalidRequest,
    /// The token failed validation or was not newer than the current one.
    InvalidToken,
    /// The token was valid but the application's authorization check refused it.
    InsufficientScope,
}

impl RenewRejection {
    /// The error code as it appears on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            RenewRejection::InvalidRequest => "invalid_request",
            RenewRejection::InvalidToken => "invalid_token",
            RenewRejection::InsufficientScope => "insufficient_scope",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_match_the_contract() {
        assert_eq!(
            ServerMessage::Expiring {
                exp: 1764000000,
                expires_in: 30
            }
            .to_json(),
            r#"{"type":"auth.expiring","exp":1764000000,"expires_in":30}"#
        );
        assert_eq!(
            ServerMessage::Renewed {
                exp: 1764003600,
                id: Some("a".into())
            }
            .to_json(),
            r#"{"type":"auth.renewed","exp":1764003600,"id":"a"}"#
        );
        assert_eq!(
            ServerMessage::RenewRejected {
                error: RenewRejection::InvalidToken,
                error_description: Some("signature invalid".into()),
                id: None
            }
            .to_json(),
            r#"{"type":"auth.renew_rejected","error":"invalid_token","error_description":"signature invalid"}"#
        );
    }
}
