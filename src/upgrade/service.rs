use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use http::header::ORIGIN;
use http::request::Parts;
use http::{HeaderMap, Request};
use serde::de::DeserializeOwned;
use tower_service::Service;

use super::rejection::{AuthRejection, RejectionKind};
use super::{Authenticated, ResponseFuture};
use crate::config::Settings;
use crate::policy::{PolicyDenial, PolicyRequest};
use crate::token::TokenError;
use crate::token::conceal::conceal_tokens;
use crate::token::offered::OfferedProtocols;
use crate::token::source::find_token;

/// Middleware that authenticates WebSocket upgrade requests; made by
/// [`WsAuthLayer`](super::WsAuthLayer).
///
/// A request that passes reaches the inner service with its claims attached
/// for [`AuthUpgrade`](super::AuthUpgrade) and its tokens out of sight: the
/// `bearer.` subprotocol entry (and, with the query source, `access_token`)
/// removed, `Authorization` (and, with the cookie source, `Cookie`) marked
/// sensitive so that `Debug` of the request prints `Sensitive`. One that
/// fails is answered here and never upgraded.
pub struct WsAuth<S, C> {
    inner: S,
    settings: Arc<Settings<C>>,
}

impl<S, C> WsAuth<S, C> {
    pub(super) fn new(inner: S, settings: Arc<Settings<C>>) -> Self {
        Self { inner, settings }
    }
}

impl<S: Clone, C> Clone for WsAuth<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            settings: Arc::clone(&self.settings),
        }
    }
}

impl<S: std::fmt::Debug, C> std::fmt::Debug for WsAuth<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsAuth")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
            .finish()
    }
}

impl<S, C, B> Service<Request<B>> for WsAuth<S, C>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    C: DeserializeOwned + Send + Sync + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        match authenticate(&self.settings, &parts) {
            Ok(authenticated) => {
                conceal_tokens(&self.settings.sources, &mut parts.headers, &mut parts.uri);
                if let Some(policy) = &self.settings.policy {
                    let request = PolicyRequest::upgrade(
                        Arc::clone(&authenticated.claims),
                        Arc::clone(&authenticated.registered),
                        parts.clone(),
                    );
                    let check = policy.run(request);
                    let check = Box::pin(async move { check.await.map_err(rejection_of) });
                    parts.extensions.insert(authenticated);
                    // The service `poll_ready` prepared goes with the
                    // request; this one keeps a fresh clone.
                    let clone = self.inner.clone();
                    let ready = std::mem::replace(&mut self.inner, clone);
                    let realm = Arc::clone(&self.settings.realm);
                    return ResponseFuture::checking(
                        check,
                        ready,
                        Request::from_parts(parts, body),
                        realm,
                    );
                }
                parts.extensions.insert(authenticated);
                let request = Request::from_parts(parts, body);
                ResponseFuture::inner(self.inner.call(request))
            }
            Err(kind) => {
                let rejection = AuthRejection::new(Arc::clone(&self.settings.realm), kind);
                rejection.record();
                ResponseFuture::rejected(rejection.into_response())
            }
        }
    }
}

fn authenticate<C: DeserializeOwned>(
    settings: &Arc<Settings<C>>,
    parts: &Parts,
) -> Result<Authenticated<C>, RejectionKind> {
    check_origin(settings, &parts.headers)?;
    let offered = OfferedProtocols::parse(&parts.headers).map_err(RejectionKind::InvalidRequest)?;
    let protocol = offered
        .select(&settings.protocols)
        .map_err(RejectionKind::InvalidRequest)?;
    let found = find_token(&settings.sources, parts, &offered)
        .map_err(RejectionKind::InvalidRequest)?
        .ok_or(RejectionKind::MissingToken)?;
    let valid = settings
        .check_token(&found.token)
        .map_err(RejectionKind::InvalidToken)?;
    // After the token: a client without a valid one learns nothing of the
    // node's state.
    settings
        .connections
        .check_fresh()
        .map_err(|_| RejectionKind::RevocationsStale)?;
    Ok(Authenticated {
        claims: Arc::new(valid.claims),
        registered: Arc::new(valid.registered),
        source: found.source,
        protocol,
        settings: Arc::clone(settings),
    })
}

fn rejection_of(denial: PolicyDenial) -> RejectionKind {
    match denial {
        PolicyDenial::Forbidden => RejectionKind::InsufficientScope,
        PolicyDenial::Revoked => RejectionKind::InvalidToken(TokenError::Revoked),
        PolicyDenial::Failed(_) => RejectionKind::PolicyUnavailable,
    }
}

fn check_origin<C>(settings: &Settings<C>, headers: &HeaderMap) -> Result<(), RejectionKind> {
    let Some(allowed) = &settings.allowed_origins else {
        return Ok(());
    };
    let mut origins = headers.get_all(ORIGIN).iter();
    match (origins.next(), origins.next()) {
        (None, _) if settings.allow_missing_origin => Ok(()),
        (Some(origin), None)
            if allowed
                .iter()
                .any(|candidate| candidate.as_bytes().eq_ignore_ascii_case(origin.as_bytes())) =>
        {
            Ok(())
        }
        _ => Err(RejectionKind::OriginNotAllowed),
    }
}
