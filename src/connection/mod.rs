//! What the crate knows about a live connection, below the socket that
//! drives it: who is on the other end ([`Identity`]), what happened to its
//! authentication ([`AuthEvent`]), why it ended ([`EndReason`]), the set of
//! a layer's live connections ([`Connections`]) and the revocations it
//! enforces ([`Selector`]).

mod cutoffs;
mod end;
mod event;
mod identity;
mod registry;
mod revocation;
mod selector;
mod stale;
mod store;

pub use end::EndReason;
pub use event::AuthEvent;
pub use identity::Identity;
pub use registry::Connections;
pub(crate) use registry::{Closable, LiveGuard};
pub(crate) use revocation::DEFAULT_RETENTION;
pub use revocation::{RevocationEntry, StalePolicy};
pub use selector::Selector;
pub(crate) use store::Report;
