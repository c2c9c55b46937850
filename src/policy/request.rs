use std::sync::Arc;

use http::request::Parts;

use crate::token::RegisteredClaims;

/// What a policy check sees: the claims of the token being checked and
/// where the check happens.
///
/// At the handshake it carries a copy of the request's parts (method, URI,
/// headers, extensions with axum's route parameters), taken after the
/// token was removed from them: the `bearer.` subprotocol entry and the
/// `access_token` query parameter are gone, `Authorization` and `Cookie`
/// are marked sensitive. On renewal it carries the connection's id; the
/// claims are the new token's, whose identity (`iss`, `sub`) is the
/// connection's.
///
/// ```
/// use axum_ws_auth::policy::{PolicyDenial, PolicyRequest};
///
/// async fn only_chat_scope(request: PolicyRequest<serde_json::Value>) -> Result<(), PolicyDenial> {
///     let scope = request.claims()["scope"].as_str().unwrap_or_default();
///     if scope.split(' ').any(|s| s == "chat") { Ok(()) } else { Err(PolicyDenial::Forbidden) }
/// }
/// ```
#[derive(Debug)]
pub struct PolicyRequest<C> {
    claims: Arc<C>,
    registered: Arc<RegisteredClaims>,
    at: At,
}

#[derive(Debug)]
enum At {
    Upgrade(Box<Parts>),
    Renewal { connection_id: u64 },
}

impl<C> PolicyRequest<C> {
    pub(crate) fn upgrade(claims: Arc<C>, registered: Arc<RegisteredClaims>, parts: Parts) -> Self {
        Self {
            claims,
            registered,
            at: At::Upgrade(Box::new(parts)),
        }
    }

    pub(crate) fn renewal(
        claims: Arc<C>,
        registered: Arc<RegisteredClaims>,
        connection_id: u64,
    ) -> Self {
        Self {
            claims,
            registered,
            at: At::Renewal { connection_id },
        }
    }

    /// The application's claims of the token being checked.
    pub fn claims(&self) -> &Arc<C> {
        &self.claims
    }

    /// The registered claims (`iss`, `sub`, `jti`, `iat`, ...) of the token
    /// being checked.
    pub fn registered(&self) -> &Arc<RegisteredClaims> {
        &self.registered
    }

    /// Whether this checks an in-band renewal rather than a handshake.
    pub fn is_renewal(&self) -> bool {
        matches!(self.at, At::Renewal { .. })
    }

    /// The upgrade request's parts, at the handshake.
    pub fn upgrade_parts(&self) -> Option<&Parts> {
        match &self.at {
            At::Upgrade(parts) => Some(parts),
            At::Renewal { .. } => None,
        }
    }

    /// The upgrade request's parts, mutably, to run axum extractors
    /// (`parts.extract::<Path<String>>()`) on them.
    pub fn upgrade_parts_mut(&mut self) -> Option<&mut Parts> {
        match &mut self.at {
            At::Upgrade(parts) => Some(parts),
            At::Renewal { .. } => None,
        }
    }

    /// The connection being renewed ([`Identity::connection_id`](crate::Identity::connection_id)),
    /// on renewal.
    pub fn connection_id(&self) -> Option<u64> {
        match self.at {
            At::Upgrade(_) => None,
            At::Renewal { connection_id } => Some(connection_id),
        }
    }
}
