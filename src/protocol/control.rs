use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::CONTROL_TYPE_PREFIX;

/// Correlation ids longer than this are refused rather than echoed, so a
/// client cannot make the server reflect arbitrary amounts of data.
const MAX_ID_BYTES: usize = 128;

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

/// What one inbound text frame is, according to section 2 of the contract.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Classified {
    /// Belongs to the application; passes through untouched.
    Application,
    /// A well-formed `auth.renew`.
    Renew { token: String, id: Option<String> },
    /// An `auth.*` message that cannot be acted upon.
    Invalid {
        id: Option<String>,
        reason: InvalidControl,
    },
}

/// Why a control message was answered with `invalid_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InvalidControl {
    UnknownType,
    MissingToken,
    BadId,
    TooLarge,
}

impl InvalidControl {
    pub(crate) const fn description(self) -> &'static str {
        match self {
            InvalidControl::UnknownType => "unknown control message type",
            InvalidControl::MissingToken => "token must be a string",
            InvalidControl::BadId => "id must be a string of at most 128 bytes",
            InvalidControl::TooLarge => "control message too large",
        }
    }
}

/// Decides whether a text frame is a control message, and parses it if so.
///
/// A control message is a JSON object whose `"type"` member is a string
/// starting with `auth.`. The pre-filter keeps application traffic off the
/// JSON parser without ever missing a control message: after the opening
/// `{`, the text must contain `auth.` literally or a `\u` escape (the only
/// way JSON can spell those characters otherwise).
pub(crate) fn classify(text: &str, max_control_bytes: usize) -> Classified {
    let Some(mut object) = control_object(text) else {
        return Classified::Application;
    };
    let is_renew = object.get("type").and_then(Value::as_str) == Some("auth.renew");
    let id = match object.remove("id") {
        None => None,
        Some(Value::String(id)) if id.len() <= MAX_ID_BYTES => Some(id),
        Some(_) => {
            return Classified::Invalid {
                id: None,
                reason: InvalidControl::BadId,
            };
        }
    };
    let invalid = |reason| Classified::Invalid {
        id: id.clone(),
        reason,
    };
    if text.len() > max_control_bytes {
        return invalid(InvalidControl::TooLarge);
    }
    if !is_renew {
        return invalid(InvalidControl::UnknownType);
    }
    match object.remove("token") {
        Some(Value::String(token)) => Classified::Renew { token, id },
        _ => invalid(InvalidControl::MissingToken),
    }
}

/// Whether a text frame is a control message (section 2 of the contract):
/// a JSON object whose `"type"` is a string starting with `auth.`.
/// Binary frames never are.
///
/// ```
/// use axum_ws_auth::protocol::is_control_message;
///
/// assert!(is_control_message(r#"{"type":"auth.renew","token":"t"}"#));
/// assert!(!is_control_message(r#"{"type":"chat","text":"auth.renew"}"#));
/// assert!(!is_control_message("auth.renew"));
/// ```
pub fn is_control_message(text: &str) -> bool {
    control_object(text).is_some()
}

/// The JSON object of a control message, or `None` for an application frame.
pub(crate) fn control_object(text: &str) -> Option<Map<String, Value>> {
    if !may_be_control(text) {
        return None;
    }
    let object = serde_json::from_str::<Map<String, Value>>(text).ok()?;
    match object.get("type") {
        Some(Value::String(kind)) if kind.starts_with(CONTROL_TYPE_PREFIX) => Some(object),
        _ => None,
    }
}

fn may_be_control(text: &str) -> bool {
    let body = text.trim_start_matches([' ', '\t', '\n', '\r']);
    body.starts_with('{') && (body.contains(CONTROL_TYPE_PREFIX) || body.contains("\\u"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 16 * 1024;

    fn renew(token: &str, id: Option<&str>) -> Classified {
        Classified::Renew {
            token: token.into(),
            id: id.map(Into::into),
        }
    }

    #[test]
    fn renew_messages_are_recognised() {
        assert_eq!(
            classify(r#"{"type":"auth.renew","token":"a.b.c"}"#, LIMIT),
            renew("a.b.c", None)
        );
        assert_eq!(
            classify(
                " \n{\"id\":\"7\",\"token\":\"a.b.c\",\"type\":\"auth.renew\"}",
                LIMIT
            ),
            renew("a.b.c", Some("7"))
        );
    }

    #[test]
    fn escaped_type_is_still_a_control_message() {
        assert_eq!(
            classify(r#"{"type":"\u0061uth.renew","token":"t"}"#, LIMIT),
            renew("t", None)
        );
        assert_eq!(
            classify(r#"{"\u0074ype":"auth.renew","token":"t"}"#, LIMIT),
            renew("t", None)
        );
    }

    #[test]
    fn application_frames_pass_through() {
        for text in [
            "hello",
            "",
            "claims",
            r#"{"type":"chat","body":"auth.renew"}"#,
            r#"{"type":"Auth.renew","token":"t"}"#,
            r#"{"kind":"auth.renew","token":"t"}"#,
            r#"{"type":["auth.renew"]}"#,
            r#"[{"type":"auth.renew"}]"#,
            r#"{"type":"auth.renew","token":"t""#,
            "\"auth.renew\"",
            r#"{"type": "auth"}"#,
        ] {
            assert_eq!(classify(text, LIMIT), Classified::Application, "{text}");
        }
    }

    #[test]
    fn invalid_control_messages_keep_their_id() {
        let invalid = |id: Option<&str>, reason| Classified::Invalid {
            id: id.map(Into::into),
            reason,
        };
        assert_eq!(
            classify(r#"{"type":"auth.renew","id":"x"}"#, LIMIT),
            invalid(Some("x"), InvalidControl::MissingToken)
        );
        assert_eq!(
            classify(r#"{"type":"auth.renew","token":42}"#, LIMIT),
            invalid(None, InvalidControl::MissingToken)
        );
        assert_eq!(
            classify(r#"{"type":"auth.logout","id":"y"}"#, LIMIT),
            invalid(Some("y"), InvalidControl::UnknownType)
        );
        assert_eq!(
            classify(r#"{"type":"auth.renew","token":"t","id":5}"#, LIMIT),
            invalid(None, InvalidControl::BadId)
        );
        let long_id = "i".repeat(MAX_ID_BYTES + 1);
        assert_eq!(
            classify(
                &format!(r#"{{"type":"auth.renew","token":"t","id":"{long_id}"}}"#),
                LIMIT
            ),
            invalid(None, InvalidControl::BadId)
        );
        let big = format!(
            r#"{{"type":"auth.renew","token":"{}","id":"z"}}"#,
            "a".repeat(64)
        );
        assert_eq!(
            classify(&big, 32),
            invalid(Some("z"), InvalidControl::TooLarge)
        );
    }

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
