//! Where a token comes from and whether it is good.
//!
//! The token sources find the token in an upgrade request (header, `bearer.`
//! subprotocol entry, cookie, query) and [`JwtValidator`] checks it. Both
//! run on the handshake; the validator runs again for every in-band renewal.

mod claims;
pub(crate) mod conceal;
mod error;
#[cfg(feature = "jwks")]
mod jwks;
pub(crate) mod offered;
pub(crate) mod source;
pub(crate) mod validator;

pub use claims::RegisteredClaims;
pub use error::{InvalidRequest, TokenError};
#[cfg(feature = "jwks")]
pub use jwks::{JwksError, JwksSource, JwksSourceBuilder};
pub use source::TokenSource;
pub(crate) use validator::JwtValidator;
pub use validator::{DEFAULT_MAX_TOKEN_BYTES, ValidatedToken};
