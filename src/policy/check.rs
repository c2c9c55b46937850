use std::future::Future;

use super::{PolicyDenial, PolicyRequest};

/// An asynchronous authorization and revocation check, run at the
/// handshake (before the route's handler is called) and on every renewal
/// (outside the connection's lock, while application frames keep flowing).
///
/// Implemented for every `Fn(PolicyRequest<C>) -> impl Future` closure;
/// implement it on a type of your own to keep a pool or a cache in it:
///
/// ```
/// use std::future::Future;
/// use std::sync::Arc;
/// use axum_ws_auth::policy::{AuthPolicy, PolicyDenial, PolicyRequest};
///
/// #[derive(Clone)]
/// struct Banned(Arc<std::collections::HashSet<String>>);
///
/// impl<C: Send + Sync + 'static> AuthPolicy<C> for Banned {
///     type Future = std::future::Ready<Result<(), PolicyDenial>>;
///
///     fn check(&self, request: PolicyRequest<C>) -> Self::Future {
///         let banned = request.registered().sub.as_deref().is_some_and(|sub| self.0.contains(sub));
///         std::future::ready(if banned { Err(PolicyDenial::Revoked) } else { Ok(()) })
///     }
/// }
/// ```
pub trait AuthPolicy<C>: Send + Sync + 'static {
    /// The check's future.
    type Future: Future<Output = Result<(), PolicyDenial>> + Send + 'static;

    /// Checks one handshake or renewal.
    fn check(&self, request: PolicyRequest<C>) -> Self::Future;
}

impl<C, F, Fut> AuthPolicy<C> for F
where
    F: Fn(PolicyRequest<C>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), PolicyDenial>> + Send + 'static,
{
    type Future = Fut;

    fn check(&self, request: PolicyRequest<C>) -> Fut {
        self(request)
    }
}
