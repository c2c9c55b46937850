//! Authenticating the HTTP upgrade: the tower layer, its service and
//! future, the rejections, and the extractor handed to route handlers.

mod extract;
mod future;
mod layer;
pub mod rejection;
mod service;

pub use extract::AuthUpgrade;
pub use future::ResponseFuture;
pub use layer::{WsAuthLayer, WsAuthLayerBuilder};
pub use service::WsAuth;

pub(crate) use crate::socket::Authenticated;
