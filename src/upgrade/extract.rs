use std::future::Future;

use axum::extract::FromRequestParts;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;
use http::HeaderValue;
use http::request::Parts;
use serde::de::DeserializeOwned;

use super::Authenticated;
use super::rejection::{AuthUpgradeRejection, MissingAuthLayer};
use crate::socket::{self, AuthWebSocket};
use crate::telemetry;
use crate::token::{RegisteredClaims, TokenSource};

/// Extractor for an upgrade request that [`WsAuthLayer`](super::WsAuthLayer)
/// has authenticated; finish it with [`on_upgrade`](Self::on_upgrade).
///
/// `C` must be the claims type of the layer in front of the route.
///
/// ```
/// use axum::response::Response;
/// use axum_ws_auth::AuthUpgrade;
///
/// #[derive(serde::Deserialize)]
/// struct Claims { name: String }
///
/// async fn handler(upgrade: AuthUpgrade<Claims>) -> Response {
///     let name = upgrade.claims().name.clone();
///     let sub = upgrade.registered().sub.clone().unwrap_or_default();
///     upgrade.on_upgrade(move |mut socket| async move {
///         let _ = socket.send(format!("hello {name} ({sub})").into()).await;
///     })
/// }
/// ```
pub struct AuthUpgrade<C> {
    upgrade: WebSocketUpgrade,
    authenticated: Authenticated<C>,
}

impl<C> AuthUpgrade<C> {
    /// The claims of the token that opened the connection.
    pub fn claims(&self) -> &C {
        &self.authenticated.claims
    }

    /// The registered claims (`iss`, `sub`, `aud`, `exp`, `nbf`, `iat`,
    /// `jti`) of the token that opened the connection, whatever `C`
    /// declares.
    ///
    /// ```
    /// use axum::response::Response;
    /// use axum_ws_auth::AuthUpgrade;
    ///
    /// // The application reads no claims of its own.
    /// async fn handler(upgrade: AuthUpgrade<serde::de::IgnoredAny>) -> Response {
    ///     let registered = upgrade.registered();
    ///     let greeting = format!(
    ///         "hello {} ({}), until {}",
    ///         registered.sub.as_deref().unwrap_or("anonymous"),
    ///         registered.aud.join(", "),
    ///         registered.exp,
    ///     );
    ///     upgrade.on_upgrade(move |mut socket| async move {
    ///         let _ = socket.send(greeting.into()).await;
    ///     })
    /// }
    /// ```
    pub fn registered(&self) -> &RegisteredClaims {
        &self.authenticated.registered
    }

    /// Where the token was found.
    pub fn token_source(&self) -> TokenSource {
        self.authenticated.source
    }

    /// The subprotocol that will be selected, if the client offered any.
    pub fn selected_protocol(&self) -> Option<&HeaderValue> {
        self.authenticated.protocol.as_deref()
    }

    /// Adjusts the underlying [`WebSocketUpgrade`]: its buffer sizes. The
    /// subprotocol is chosen by the layer, and the message and frame size
    /// limits are the layer's
    /// ([`max_message_bytes`](crate::WsAuthLayerBuilder::max_message_bytes),
    /// [`max_frame_bytes`](crate::WsAuthLayerBuilder::max_frame_bytes)):
    /// they are applied after this, whatever it sets.
    ///
    /// ```
    /// # use axum_ws_auth::AuthUpgrade;
    /// # fn f(upgrade: AuthUpgrade<serde_json::Value>) -> AuthUpgrade<serde_json::Value> {
    /// upgrade.map_upgrade(|ws| ws.read_buffer_size(4 * 1024).write_buffer_size(4 * 1024))
    /// # }
    /// ```
    pub fn map_upgrade(
        mut self,
        configure: impl FnOnce(WebSocketUpgrade) -> WebSocketUpgrade,
    ) -> Self {
        self.upgrade = configure(self.upgrade);
        self
    }
}

impl<C> AuthUpgrade<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    /// Completes the upgrade and runs `callback` with the authenticated
    /// socket. The connection's expiry, notice and renewal run on their own
    /// task, whether or not `callback` is reading or writing.
    #[must_use = "the upgrade only happens when this response is returned"]
    pub fn on_upgrade<F, Fut>(self, callback: F) -> Response
    where
        F: FnOnce(AuthWebSocket<C>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Self {
            mut upgrade,
            authenticated,
        } = self;
        if let Some(protocol) = &authenticated.protocol {
            upgrade.set_selected_protocol(HeaderValue::clone(protocol));
        }
        // The layer's limits, after `map_upgrade`: one knob each, and the
        // connection's read-ahead budget is sized from them.
        let session = &authenticated.settings.session;
        let upgrade = upgrade
            .max_message_size(session.max_message_bytes)
            .max_frame_size(session.max_frame_bytes);
        // A plain closure returning the handler's future, not an async
        // block around it: the task then holds only that future. An async
        // block would keep its captures (axum's `WebSocket`, moved out on
        // the first poll, and the upgrade's claims) in the task for the
        // connection's whole life, about half a KiB each.
        let authenticated = Box::new(authenticated);
        upgrade
            .on_failed_upgrade(telemetry::upgrade_failed)
            .on_upgrade(move |websocket| callback(socket::spawn(websocket, *authenticated)))
    }
}

/// Shows where the token came from and the protocol to select; never the
/// token, the claims or axum's `WebSocketUpgrade` (whose offered-protocol
/// set is a copy of the request's).
impl<C> std::fmt::Debug for AuthUpgrade<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthUpgrade")
            .field("token_source", &self.authenticated.source)
            .field("selected_protocol", &self.authenticated.protocol)
            .finish_non_exhaustive()
    }
}

impl<S, C> FromRequestParts<S> for AuthUpgrade<C>
where
    S: Send + Sync,
    C: Send + Sync + 'static,
{
    type Rejection = AuthUpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let authenticated = parts
            .extensions
            .remove::<Authenticated<C>>()
            .ok_or(AuthUpgradeRejection::MissingAuthLayer(MissingAuthLayer))?;
        let upgrade = WebSocketUpgrade::from_request_parts(parts, state)
            .await
            .map_err(AuthUpgradeRejection::WebSocketUpgrade)?;
        Ok(Self {
            upgrade,
            authenticated,
        })
    }
}
