use std::sync::Arc;

use tower_layer::Layer;

use super::WsAuth;
use crate::Connections;
use crate::config::Settings;

/// A [`Layer`] that authenticates WebSocket upgrades with a JWT and hands
/// the claims of type `C` to [`AuthUpgrade`](super::AuthUpgrade).
///
/// Cloning is cheap: all configuration sits behind one `Arc`, built once.
///
/// ```
/// use axum::{Router, response::Response, routing::any};
/// use axum_ws_auth::policy::{PolicyDenial, PolicyRequest};
/// use axum_ws_auth::{AuthUpgrade, JwtValidator, WsAuthLayer};
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Claims { scope: String }
///
/// async fn ws(upgrade: AuthUpgrade<Claims>) -> Response {
///     upgrade.on_upgrade(|mut socket| async move {
///         while let Some(Ok(message)) = socket.recv().await {
///             if socket.send(message).await.is_err() { break; }
///         }
///     })
/// }
///
/// let layer = WsAuthLayer::<Claims>::builder(JwtValidator::hs256([42u8; 32])?)
///     .realm("chat")
///     .policy(|request: PolicyRequest<Claims>| {
///         let chat = request.claims().scope.split(' ').any(|s| s == "chat");
///         std::future::ready(if chat { Ok(()) } else { Err(PolicyDenial::Forbidden) })
///     })
///     .build()?;
/// // `route_layer`: only `/ws` asks for a token (see "Routing" in the crate docs).
/// let app: Router = Router::new().route("/ws", any(ws)).route_layer(layer);
/// # Ok::<_, axum_ws_auth::ConfigError>(())
/// ```
pub struct WsAuthLayer<C> {
    settings: Arc<Settings<C>>,
}

impl<C> WsAuthLayer<C> {
    /// The live connections this layer has authenticated and its
    /// revocations: graceful shutdown, revocation, re-authentication.
    /// Every clone of the layer shares them.
    pub fn connections(&self) -> Connections {
        self.settings.connections.clone()
    }
}

impl<C> WsAuthLayer<C> {
    /// The layer of a finished configuration (`builder.rs`).
    pub(super) fn new(settings: Settings<C>) -> Self {
        Self {
            settings: Arc::new(settings),
        }
    }

    #[cfg(test)]
    pub(crate) fn settings(&self) -> &Arc<Settings<C>> {
        &self.settings
    }
}

impl<C> Clone for WsAuthLayer<C> {
    fn clone(&self) -> Self {
        Self {
            settings: Arc::clone(&self.settings),
        }
    }
}

impl<C> std::fmt::Debug for WsAuthLayer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsAuthLayer")
            .field("settings", &self.settings)
            .finish()
    }
}

impl<S, C> Layer<S> for WsAuthLayer<C> {
    type Service = WsAuth<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        WsAuth::new(inner, Arc::clone(&self.settings))
    }
}
