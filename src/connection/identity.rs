use std::sync::Arc;

use http::HeaderValue;

use crate::token::TokenSource;

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
    protocol: Option<HeaderValue>,
}

impl Identity {
    pub(crate) fn new(
        id: u64,
        iss: Option<Arc<str>>,
        sub: Option<Arc<str>>,
        source: TokenSource,
        protocol: Option<HeaderValue>,
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
        self.protocol.as_ref()
    }

    /// The issuer as shared with the registry.
    pub(crate) fn shared_issuer(&self) -> Option<Arc<str>> {
        self.iss.clone()
    }

    /// The subject as shared with the registry.
    pub(crate) fn shared_subject(&self) -> Option<Arc<str>> {
        self.sub.clone()
    }

    /// Whether a token with this `iss` and `sub` names the same principal.
    pub(crate) fn is_same(&self, iss: Option<&str>, sub: Option<&str>) -> bool {
        self.issuer() == iss && self.subject() == sub
    }
}
