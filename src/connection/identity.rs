use std::sync::Arc;

use http::HeaderValue;

use crate::token::{RegisteredClaims, TokenSource};

/// Who is on the other end of an authenticated connection: one value,
/// fixed at the handshake, shared by the socket, its halves, the registry
/// and every log event.
///
/// The token's identity is the pair (`iss`, `sub`): a subject is unique
/// only within its issuer, and a renewal may not change either.
///
/// ```
/// # fn f(socket: &axum_ws_auth::AuthWebSocket<serde_json::Value>) {
/// let who = socket.identity();
/// println!(
///     "connection {} of {:?} from {:?}, token in the {}",
///     who.connection_id(),
///     who.subject(),
///     who.issuer(),
///     who.token_source().as_str(),
/// );
/// # }
/// ```
#[derive(Debug)]
pub struct Identity {
    id: u64,
    iss: Option<Arc<str>>,
    sub: Option<Arc<str>>,
    source: TokenSource,
    /// The layer's own value, shared by every connection selecting it.
    protocol: Option<Arc<HeaderValue>>,
}

impl Identity {
    pub(crate) fn new(
        id: u64,
        iss: Option<Arc<str>>,
        sub: Option<Arc<str>>,
        source: TokenSource,
        protocol: Option<Arc<HeaderValue>>,
    ) -> Self {
        Self {
            id,
            iss,
            sub,
            source,
            protocol,
        }
    }

    /// A process-unique id of this connection, as used in log events.
    pub fn connection_id(&self) -> u64 {
        self.id
    }

    /// The token's `iss`, if it had one.
    pub fn issuer(&self) -> Option<&str> {
        self.iss.as_deref()
    }

    /// The token's `sub` (present unless the layer allows tokens without
    /// one).
    pub fn subject(&self) -> Option<&str> {
        self.sub.as_deref()
    }

    /// Where the opening token was found.
    pub fn token_source(&self) -> TokenSource {
        self.source
    }

    /// The subprotocol selected at the handshake, if any.
    pub fn protocol(&self) -> Option<&HeaderValue> {
        self.protocol.as_deref()
    }

    /// Points a renewal's claims at this identity's `iss` and `sub` (the
    /// same strings: the renewal passed [`is_same`](Self::is_same)), so a
    /// connection keeps one copy of each however often it renews.
    pub(crate) fn share_with(&self, claims: &mut RegisteredClaims) {
        if claims.iss.as_deref() == self.issuer() {
            claims.iss.clone_from(&self.iss);
        }
        if claims.sub.as_deref() == self.subject() {
            claims.sub.clone_from(&self.sub);
        }
    }

    /// Whether a token with this `iss` and `sub` names the same principal.
    pub(crate) fn is_same(&self, iss: Option<&str>, sub: Option<&str>) -> bool {
        self.issuer() == iss && self.subject() == sub
    }
}
