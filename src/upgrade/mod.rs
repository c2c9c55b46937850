//! Authenticating the HTTP upgrade: the tower layer, its service and
//! future, the rejections, and the extractor handed to route handlers.

mod extract;
mod future;
mod layer;
pub mod rejection;
mod service;

use std::sync::Arc;

use http::HeaderValue;

pub use extract::AuthUpgrade;
pub use future::ResponseFuture;
pub use layer::{WsAuthLayer, WsAuthLayerBuilder};
pub use service::WsAuth;

use crate::config::Settings;
use crate::token::{RegisteredClaims, TokenSource};

/// What the layer learned about a request it let through; travels to the
/// extractor in the request's extensions.
pub(crate) struct Authenticated<C> {
    pub(crate) claims: Arc<C>,
    /// The registered claims of the token, typed. The socket side will
    /// expose them next to the claims.
    pub(crate) registered: Arc<RegisteredClaims>,
    /// With `sub`, the connection's identity: a renewal must carry the same
    /// pair (a `sub` is unique only within its issuer).
    pub(crate) iss: Option<Arc<str>>,
    pub(crate) sub: Option<Arc<str>>,
    pub(crate) exp: u64,
    pub(crate) source: TokenSource,
    pub(crate) protocol: Option<HeaderValue>,
    pub(crate) settings: Arc<Settings<C>>,
}

impl<C> Clone for Authenticated<C> {
    fn clone(&self) -> Self {
        Self {
            claims: Arc::clone(&self.claims),
            registered: Arc::clone(&self.registered),
            iss: self.iss.clone(),
            sub: self.sub.clone(),
            exp: self.exp,
            source: self.source,
            protocol: self.protocol.clone(),
            settings: Arc::clone(&self.settings),
        }
    }
}
