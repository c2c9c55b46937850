//! Rejections: how the layer and the extractor answer a request they
//! refuse, as axum's `extract::rejection` groups its own.
//!
//! - [`AuthRejection`] (with its [`RejectionKind`]) is the layer's RFC 6750
//!   response to an upgrade it (or its policy) refuses;
//! - [`AuthUpgradeRejection`] is the rejection of the
//!   [`AuthUpgrade`](crate::AuthUpgrade) extractor: [`MissingAuthLayer`]
//!   (a server bug) or axum's own `WebSocketUpgradeRejection`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};

use crate::token::{InvalidRequest, TokenError};

/// Why the layer refused an upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No token in any enabled source (401, no error code).
    MissingToken,
    /// The request is malformed (400, `invalid_request`).
    InvalidRequest(InvalidRequest),
    /// The token was refused (401, `invalid_token`).
    InvalidToken(TokenError),
    /// The application's authorization check refused a valid token
    /// (403, `insufficient_scope`).
    InsufficientScope,
    /// `Origin` is not on the allow-list (403, no challenge).
    OriginNotAllowed,
    /// The layer's [`policy`](crate::policy) check could not decide (an
    /// error, a timeout, a panic): refused, fail closed (503 with
    /// `Retry-After`, no challenge: the token may well be good).
    PolicyUnavailable,
    /// The revocation list may be behind and the cluster fails closed
    /// ([`StalePolicy::FailClosed`](crate::revocation::StalePolicy::FailClosed)): 503
    /// with `Retry-After`, no challenge (the token may well be fine).
    RevocationsStale,
}

/// `Retry-After` of a 503 while the revocation list is stale, in seconds.
const RETRY_AFTER_SECS: &str = "5";

/// The response to a refused upgrade, as RFC 6750 section 3 describes it.
///
/// The body is a short plain-text line; neither it nor the
/// `WWW-Authenticate` header ever contains the token.
///
/// ```
/// use axum::response::IntoResponse;
/// use axum_ws_auth::token::TokenError;
/// use axum_ws_auth::rejection::{AuthRejection, RejectionKind};
///
/// let response = AuthRejection::new("chat", RejectionKind::InvalidToken(TokenError::Expired))
///     .into_response();
/// assert_eq!(response.status(), 401);
/// assert_eq!(
///     response.headers()["www-authenticate"],
///     r#"Bearer realm="chat", error="invalid_token", error_description="token expired""#,
/// );
/// ```
#[derive(Debug, Clone)]
pub struct AuthRejection {
    realm: Arc<str>,
    kind: RejectionKind,
}

impl AuthRejection {
    /// A rejection in `realm`. The realm must not contain `"` or `\`; the
    /// layer's builder checks that for its own realm.
    pub fn new(realm: impl Into<Arc<str>>, kind: RejectionKind) -> Self {
        Self {
            realm: realm.into(),
            kind,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &RejectionKind {
        &self.kind
    }

    /// The HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            RejectionKind::MissingToken | RejectionKind::InvalidToken(_) => {
                StatusCode::UNAUTHORIZED
            }
            RejectionKind::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            RejectionKind::InsufficientScope | RejectionKind::OriginNotAllowed => {
                StatusCode::FORBIDDEN
            }
            RejectionKind::PolicyUnavailable | RejectionKind::RevocationsStale => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The RFC 6750 error code, if the response carries one.
    pub fn error_code(&self) -> Option<&'static str> {
        match self.kind {
            RejectionKind::MissingToken
            | RejectionKind::OriginNotAllowed
            | RejectionKind::PolicyUnavailable
            | RejectionKind::RevocationsStale => None,
            RejectionKind::InvalidRequest(_) => Some("invalid_request"),
            RejectionKind::InvalidToken(_) => Some("invalid_token"),
            RejectionKind::InsufficientScope => Some("insufficient_scope"),
        }
    }

    /// Logs and counts the refusal.
    pub(crate) fn record(&self) {
        crate::telemetry::upgrade_refused(self.status(), self.error_code(), &self.description());
    }

    /// The short, token-free description of the failure.
    pub fn description(&self) -> String {
        match &self.kind {
            RejectionKind::MissingToken => "missing token".to_owned(),
            RejectionKind::InvalidRequest(reason) => reason.to_string(),
            RejectionKind::InvalidToken(reason) => reason.to_string(),
            RejectionKind::InsufficientScope => "insufficient scope".to_owned(),
            RejectionKind::OriginNotAllowed => "origin not allowed".to_owned(),
            RejectionKind::PolicyUnavailable => "authorization check unavailable".to_owned(),
            RejectionKind::RevocationsStale => "revocation list unavailable".to_owned(),
        }
    }

    fn challenge(&self) -> Option<String> {
        let realm = &self.realm;
        match &self.kind {
            RejectionKind::OriginNotAllowed
            | RejectionKind::PolicyUnavailable
            | RejectionKind::RevocationsStale => None,
            RejectionKind::MissingToken => Some(format!(r#"Bearer realm="{realm}""#)),
            RejectionKind::InsufficientScope => Some(format!(
                r#"Bearer realm="{realm}", error="insufficient_scope""#
            )),
            RejectionKind::InvalidRequest(reason) => Some(format!(
                r#"Bearer realm="{realm}", error="invalid_request", error_description="{reason}""#
            )),
            RejectionKind::InvalidToken(reason) => Some(format!(
                r#"Bearer realm="{realm}", error="invalid_token", error_description="{reason}""#
            )),
        }
    }
}

impl std::fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.error_code() {
            Some(code) => write!(f, "{code}: {}", self.description()),
            None => f.write_str(&self.description()),
        }
    }
}

impl std::error::Error for AuthRejection {}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(format!("{self}\n")));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = self.challenge().and_then(|c| HeaderValue::try_from(c).ok()) {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        if matches!(
            self.kind,
            RejectionKind::PolicyUnavailable | RejectionKind::RevocationsStale
        ) {
            headers.insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
        }
        response
    }
}

/// The route is not behind a [`WsAuthLayer`](crate::WsAuthLayer) with the
/// same claims type: a server bug, answered with 500.
#[derive(Debug, Clone, Copy, Default, thiserror::Error)]
#[error("AuthUpgrade used on a route without a WsAuthLayer for this claims type")]
#[non_exhaustive]
pub struct MissingAuthLayer;

impl IntoResponse for MissingAuthLayer {
    fn into_response(self) -> Response {
        tracing::error!(target: "axum_ws_auth", "{self}");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n").into_response()
    }
}

/// Rejection of [`AuthUpgrade`](crate::AuthUpgrade).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthUpgradeRejection {
    /// See [`MissingAuthLayer`].
    #[error(transparent)]
    MissingAuthLayer(MissingAuthLayer),
    /// The request is not a valid WebSocket upgrade.
    #[error(transparent)]
    WebSocketUpgrade(WebSocketUpgradeRejection),
}

impl IntoResponse for AuthUpgradeRejection {
    fn into_response(self) -> Response {
        match self {
            AuthUpgradeRejection::MissingAuthLayer(rejection) => rejection.into_response(),
            AuthUpgradeRejection::WebSocketUpgrade(rejection) => rejection.into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(kind: RejectionKind) -> (StatusCode, Option<String>) {
        let response = AuthRejection::new("r", kind).into_response();
        let header = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned());
        (response.status(), header)
    }

    #[test]
    fn every_kind_maps_to_its_rfc_6750_response() {
        assert_eq!(
            challenge(RejectionKind::MissingToken),
            (StatusCode::UNAUTHORIZED, Some(r#"Bearer realm="r""#.into()))
        );
        assert_eq!(
            challenge(RejectionKind::InvalidRequest(InvalidRequest::DuplicateAuthorization)),
            (
                StatusCode::BAD_REQUEST,
                Some(r#"Bearer realm="r", error="invalid_request", error_description="multiple authorization headers""#.into())
            )
        );
        assert_eq!(
            challenge(RejectionKind::InvalidToken(TokenError::InvalidSignature)),
            (
                StatusCode::UNAUTHORIZED,
                Some(r#"Bearer realm="r", error="invalid_token", error_description="signature invalid""#.into())
            )
        );
        assert_eq!(
            challenge(RejectionKind::InsufficientScope),
            (
                StatusCode::FORBIDDEN,
                Some(r#"Bearer realm="r", error="insufficient_scope""#.into())
            )
        );
        assert_eq!(
            challenge(RejectionKind::OriginNotAllowed),
            (StatusCode::FORBIDDEN, None)
        );
        assert_eq!(
            challenge(RejectionKind::PolicyUnavailable),
            (StatusCode::SERVICE_UNAVAILABLE, None)
        );
        let response = AuthRejection::new("r", RejectionKind::PolicyUnavailable).into_response();
        assert_eq!(response.headers()[RETRY_AFTER], "5");
        assert_eq!(
            challenge(RejectionKind::RevocationsStale),
            (StatusCode::SERVICE_UNAVAILABLE, None)
        );
        let response = AuthRejection::new("r", RejectionKind::RevocationsStale).into_response();
        assert_eq!(response.headers()[RETRY_AFTER], "5");
    }
}
