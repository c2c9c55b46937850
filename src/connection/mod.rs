//! What the crate knows about a live connection, below the socket that
//! drives it: who is on the other end ([`Identity`]), why it ended
//! ([`EndReason`]), and the set of a layer's live connections
//! ([`Connections`]).

mod end;
mod identity;
mod registry;

pub use end::EndReason;
pub use identity::Identity;
pub use registry::Connections;
pub(crate) use registry::{Closable, LiveGuard};
