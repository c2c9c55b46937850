use axum::extract::ws::{CloseFrame, Message};

/// Why the server closed an authenticated socket, with its wire close code.
///
/// Codes follow the `4000 + HTTP status` convention (as graphql-ws does), so
/// a client can map them onto what it already knows about HTTP statuses.
///
/// ```
/// use axum_ws_auth::protocol::CloseReason;
///
/// assert_eq!(CloseReason::TokenExpired.code(), 4401);
/// assert_eq!(CloseReason::from_code(4429), Some(CloseReason::TooManyRenewals));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The token's `exp` plus leeway passed with no accepted renewal (4401).
    /// The client should get a fresh token and reconnect.
    TokenExpired,
    /// The token was revoked, or a renewal tried to change `sub` (4403).
    /// The client must not reconnect with the same credentials.
    Forbidden,
    /// Repeated invalid control messages (4400). The client is broken.
    BadRequest,
    /// The renewal rate limit was passed (4429). Back off, then reconnect.
    TooManyRenewals,
    /// Graceful server shutdown (1001). Reconnect with backoff.
    ServerShutdown,
    /// A message over the size limit (1009). The client is broken.
    MessageTooBig,
}

impl CloseReason {
    /// Every reason, for exhaustive tests and client tables.
    pub const ALL: [CloseReason; 6] = [
        CloseReason::TokenExpired,
        CloseReason::Forbidden,
        CloseReason::BadRequest,
        CloseReason::TooManyRenewals,
        CloseReason::ServerShutdown,
        CloseReason::MessageTooBig,
    ];

    /// The close code sent on the wire.
    pub const fn code(self) -> u16 {
        match self {
            CloseReason::TokenExpired => 4401,
            CloseReason::Forbidden => 4403,
            CloseReason::BadRequest => 4400,
            CloseReason::TooManyRenewals => 4429,
            CloseReason::ServerShutdown => 1001,
            CloseReason::MessageTooBig => 1009,
        }
    }

    /// [`code`](Self::code) as text, for metric labels (a `'static` str:
    /// no allocation per close).
    pub(crate) const fn code_label(self) -> &'static str {
        match self {
            CloseReason::TokenExpired => "4401",
            CloseReason::Forbidden => "4403",
            CloseReason::BadRequest => "4400",
            CloseReason::TooManyRenewals => "4429",
            CloseReason::ServerShutdown => "1001",
            CloseReason::MessageTooBig => "1009",
        }
    }

    /// The short close reason phrase sent on the wire (well under the
    /// 123-byte limit of RFC 6455).
    pub const fn phrase(self) -> &'static str {
        match self {
            CloseReason::TokenExpired => "token expired",
            CloseReason::Forbidden => "forbidden",
            CloseReason::BadRequest => "bad request",
            CloseReason::TooManyRenewals => "too many renewals",
            CloseReason::ServerShutdown => "server shutting down",
            CloseReason::MessageTooBig => "message too big",
        }
    }

    /// Maps a received close code back to a reason, if it is one of ours.
    pub const fn from_code(code: u16) -> Option<CloseReason> {
        match code {
            4401 => Some(CloseReason::TokenExpired),
            4403 => Some(CloseReason::Forbidden),
            4400 => Some(CloseReason::BadRequest),
            4429 => Some(CloseReason::TooManyRenewals),
            1001 => Some(CloseReason::ServerShutdown),
            1009 => Some(CloseReason::MessageTooBig),
            _ => None,
        }
    }

    /// Whether a client may reconnect after this close (with a fresh token
    /// and backoff). [`CloseReason::Forbidden`], [`CloseReason::BadRequest`]
    /// and [`CloseReason::MessageTooBig`] say "do not try again as you are".
    pub const fn may_reconnect(self) -> bool {
        !matches!(
            self,
            CloseReason::Forbidden | CloseReason::BadRequest | CloseReason::MessageTooBig
        )
    }

    pub(crate) fn to_message(self) -> Message {
        Message::Close(Some(CloseFrame {
            code: self.code(),
            reason: self.phrase().into(),
        }))
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code(), self.phrase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_reasons_fit_a_close_frame() {
        for reason in CloseReason::ALL {
            assert_eq!(CloseReason::from_code(reason.code()), Some(reason));
            assert_eq!(reason.code_label(), reason.code().to_string());
            assert!(reason.phrase().len() <= 123);
        }
        assert_eq!(CloseReason::from_code(1000), None);
    }
}
