//! The wire contract: control messages and close codes.
//!
//! Everything a peer can observe after the upgrade is defined here, so the
//! server-side socket driver, the Rust client and the tests all speak from
//! one definition. The contract itself is versioned as [`PROTOCOL_V1`]; a
//! breaking change gets a new protocol name.

mod classify;
mod close;
mod messages;

pub use classify::is_control_message;
pub use close::CloseReason;
pub use messages::{ClientMessage, RenewRejection, ServerMessage};

#[cfg(feature = "client")]
pub(crate) use classify::control_object;
pub(crate) use classify::{Classified, InvalidControl, classify};

/// The subprotocol a client offers to say "I speak the control messages of
/// this crate's wire contract, version 1".
pub const PROTOCOL_V1: &str = "wsauth.v1";

/// Prefix of the `Sec-WebSocket-Protocol` entry that carries a token.
pub const BEARER_PROTOCOL_PREFIX: &str = "bearer.";

/// Prefix of the `"type"` of every control message; reserved by the contract.
pub const CONTROL_TYPE_PREFIX: &str = "auth.";
