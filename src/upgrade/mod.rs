//! Authenticating the HTTP upgrade: the tower layer, its service and
//! future, the rejections, and the extractor handed to route handlers.

mod builder;
mod checks;
mod extract;
mod future;
mod layer;
pub mod rejection;
mod service;

pub use builder::WsAuthLayerBuilder;
pub use extract::AuthUpgrade;
pub use future::ResponseFuture;
pub use layer::WsAuthLayer;
pub use service::WsAuth;

pub(crate) use crate::socket::Authenticated;
