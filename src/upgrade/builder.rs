//! Configuration of a [`WsAuthLayer`]: consuming setters, checked once in
//! [`build`](WsAuthLayerBuilder::build).

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;

use super::WsAuthLayer;
use super::checks;
use crate::config::{SessionConfig, Settings};
use crate::policy::{AuthPolicy, Policy, PolicyCheck};
use crate::protocol::PROTOCOL_V1;
use crate::token::source::SourceConfig;
use crate::token::{InvalidRequest, JwtValidator};
use crate::{ConfigError, Connections};

const DEFAULT_POLICY_TIMEOUT: Duration = Duration::from_secs(5);

impl<C> WsAuthLayer<C> {
    /// Starts a configuration that validates tokens with `validator`.
    pub fn builder(validator: JwtValidator) -> WsAuthLayerBuilder<C> {
        WsAuthLayerBuilder {
            validator,
            sources: SourceConfig::default(),
            allowed_origins: None,
            allow_missing_origin: false,
            allow_missing_subject: false,
            protocols: vec![PROTOCOL_V1.to_owned()],
            realm: "websocket".to_owned(),
            policy: None,
            policy_timeout: DEFAULT_POLICY_TIMEOUT,
            session: SessionConfig::default(),
            revocation_retention: crate::connection::DEFAULT_RETENTION,
            _claims: PhantomData,
        }
    }
}

/// Builder for [`WsAuthLayer`]; every setting has a safe default, and
/// [`build`](Self::build) refuses unsafe combinations.
#[must_use]
pub struct WsAuthLayerBuilder<C> {
    validator: JwtValidator,
    sources: SourceConfig,
    allowed_origins: Option<Vec<String>>,
    allow_missing_origin: bool,
    allow_missing_subject: bool,
    protocols: Vec<String>,
    realm: String,
    policy: Option<PolicyCheck<C>>,
    policy_timeout: Duration,
    session: SessionConfig,
    revocation_retention: Duration,
    _claims: PhantomData<fn() -> C>,
}

impl<C> WsAuthLayerBuilder<C> {
    /// The `realm` of `WWW-Authenticate` challenges (default `websocket`).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = realm.into();
        self
    }

    /// Read `Authorization: Bearer` (default on).
    pub fn header_source(mut self, enabled: bool) -> Self {
        self.sources.header = enabled;
        self
    }

    /// Read a `bearer.<jwt>` entry of `Sec-WebSocket-Protocol` (default on).
    /// This is how browsers authenticate, since they cannot set headers on a
    /// WebSocket.
    pub fn subprotocol_source(mut self, enabled: bool) -> Self {
        self.sources.subprotocol = enabled;
        self
    }

    /// Read the token from the cookie `name` (default off).
    ///
    /// Browsers attach cookies to cross-site WebSocket requests, so
    /// [`build`](Self::build) refuses this source unless
    /// [`allowed_origins`](Self::allowed_origins) is set. Behind the layer,
    /// `Cookie` header values are marked sensitive (their `Debug` prints
    /// `Sensitive`).
    pub fn cookie_source(mut self, name: impl Into<String>) -> Self {
        self.sources.cookie = Some(name.into());
        self
    }

    /// Read `?access_token=<jwt>` (default off).
    ///
    /// Discouraged (RFC 6750 section 2.3): URLs end up in proxy and server
    /// logs, and with them the token. Behind the layer, `access_token`
    /// parameters are removed from the request's URI.
    pub fn query_source(mut self, enabled: bool) -> Self {
        self.sources.query = enabled;
        self
    }

    /// Read the token from a place the application names, with `extract`
    /// (default none): a header of its own, a path segment, an extension an
    /// earlier middleware set.
    ///
    /// The extractor comes last, after the enabled built-in sources
    /// (header, subprotocol, cookie, query): it is asked only when none of
    /// them holds a token, and a token found before it wins. Its answer
    /// follows the built-in sources' rules:
    ///
    /// - `Ok(Some(token))`: the token; it passes the size limit
    ///   ([`JwtValidator::with_max_token_bytes`]) and every check of the
    ///   validator, and a refusal is 401 `invalid_token`. An empty string
    ///   is a token too (a malformed one);
    /// - `Ok(None)`: no token here; with no other source holding one, the
    ///   answer is 401 without an error code;
    /// - `Err(kind)`: the request is unusable as sent, e.g. the location
    ///   holds two tokens (the one-token rule is the extractor's to keep):
    ///   400 `invalid_request`. [`InvalidRequest::Custom`] fits most cases.
    ///
    /// The layer cannot know which part of the request the extractor read,
    /// so it cannot hide it from the services behind it as it hides the
    /// built-in locations: treat that location as sensitive (mark a header
    /// with [`HeaderValue::set_sensitive`](http::HeaderValue::set_sensitive), keep it out of logs and traces).
    /// The token source of the connection is [`TokenSource::Custom`]
    /// (`custom` in logs and metrics).
    ///
    /// [`InvalidRequest::Custom`]: crate::token::InvalidRequest::Custom
    /// [`TokenSource::Custom`]: crate::token::TokenSource::Custom
    ///
    /// ```
    /// use axum_ws_auth::{JwtValidator, WsAuthLayer, token::InvalidRequest};
    ///
    /// // A gateway forwards the token in `X-Access-Token`.
    /// let layer = WsAuthLayer::<serde_json::Value>::builder(JwtValidator::hs256([42u8; 32])?)
    ///     .token_from(|parts| {
    ///         let mut values = parts.headers.get_all("x-access-token").iter();
    ///         match (values.next(), values.next()) {
    ///             (None, _) => Ok(None),
    ///             (Some(value), None) => value
    ///                 .to_str()
    ///                 .map(|token| Some(token.to_owned()))
    ///                 .map_err(|_| InvalidRequest::Custom),
    ///             _ => Err(InvalidRequest::Custom),
    ///         }
    ///     })
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<_, axum_ws_auth::ConfigError>(())
    /// ```
    pub fn token_from<F>(mut self, extract: F) -> Self
    where
        F: Fn(&Parts) -> Result<Option<String>, InvalidRequest> + Send + Sync + 'static,
    {
        self.sources.custom = Some(Arc::new(extract));
        self
    }

    /// Refuse (403) requests whose `Origin` is not one of `origins`, e.g.
    /// `https://app.example.com`. Compared case-insensitively.
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }

    /// With an allow-list, also admit requests without `Origin` (non-browser
    /// clients, which cannot be hijacked cross-site). Default off.
    pub fn allow_missing_origin(mut self, allow: bool) -> Self {
        self.allow_missing_origin = allow;
        self
    }

    /// Accept tokens without a `sub` claim (default off: they are refused
    /// with 401 `invalid_token`, "missing or malformed required claim", at
    /// the handshake and on renewal alike).
    ///
    /// A connection's identity is the pair (`iss`, `sub`), and a renewal
    /// must keep it; a connection opened without `sub` can only renew with
    /// a token without `sub` from the same issuer. Opt out only when every
    /// token of an issuer stands for one principal (a service, a device
    /// class). A `sub` required by the [`JwtValidator`]'s own
    /// [`Validation`](jsonwebtoken::Validation) stays required.
    ///
    /// ```
    /// use axum_ws_auth::{JwtValidator, WsAuthLayer};
    ///
    /// // Tokens minted for a kiosk carry no subject.
    /// let layer = WsAuthLayer::<serde_json::Value>::builder(JwtValidator::hs256([42u8; 32])?)
    ///     .allow_missing_subject(true)
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<_, axum_ws_auth::ConfigError>(())
    /// ```
    pub fn allow_missing_subject(mut self, allow: bool) -> Self {
        self.allow_missing_subject = allow;
        self
    }

    /// The application's subprotocols, in order of preference; replaces the
    /// default `["wsauth.v1"]`. Include [`PROTOCOL_V1`] to keep accepting
    /// clients that only speak this crate's control messages.
    pub fn protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// The application's authorization and revocation check: the one hook
    /// that allows, forbids (403 `insufficient_scope`) or revokes (401
    /// `invalid_token`) a token, awaited at the handshake before the route's
    /// handler runs and on every renewal, outside the connection's lock; see
    /// [`policy`](crate::policy). It runs after the token is validated and
    /// checked against the layer's revocations. Setting it again replaces
    /// it.
    ///
    /// While a renewal's check is pending the connection keeps its current
    /// deadline: if the check has not passed by then, the connection closes
    /// with 4401 like any other expiry.
    ///
    /// A check that needs no I/O is a closure returning a ready future: a
    /// role or scope check, applied to every renewal too (a renewal token
    /// without the role is rejected, and the connection lives on under its
    /// current token until that expires).
    ///
    /// ```
    /// use axum_ws_auth::policy::{PolicyDenial, PolicyRequest};
    /// use axum_ws_auth::{JwtValidator, WsAuthLayer};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Claims { #[serde(default)] roles: Vec<String> }
    ///
    /// let layer = WsAuthLayer::<Claims>::builder(JwtValidator::hs256([42u8; 32])?)
    ///     .policy(|request: PolicyRequest<Claims>| {
    ///         let admin = request.claims().roles.iter().any(|role| role == "admin");
    ///         std::future::ready(if admin { Ok(()) } else { Err(PolicyDenial::Forbidden) })
    ///     })
    ///     .build()?;
    /// # Ok::<_, axum_ws_auth::ConfigError>(())
    /// ```
    ///
    /// One that needs I/O awaits it:
    ///
    /// ```
    /// use axum_ws_auth::policy::{PolicyDenial, PolicyRequest};
    /// use axum_ws_auth::{JwtValidator, WsAuthLayer};
    ///
    /// # async fn session_is_live(_jti: Option<&str>) -> bool { true }
    /// let layer = WsAuthLayer::<serde_json::Value>::builder(JwtValidator::hs256([42u8; 32])?)
    ///     .policy(|request: PolicyRequest<serde_json::Value>| async move {
    ///         if session_is_live(request.registered().jti.as_deref()).await {
    ///             Ok(())
    ///         } else {
    ///             Err(PolicyDenial::Revoked)
    ///         }
    ///     })
    ///     .policy_timeout(std::time::Duration::from_secs(2))
    ///     .build()?;
    /// # Ok::<_, axum_ws_auth::ConfigError>(())
    /// ```
    pub fn policy<P: AuthPolicy<C>>(mut self, policy: P) -> Self
    where
        C: 'static,
    {
        self.policy = Some(PolicyCheck::new(policy));
        self
    }

    /// How long a [`policy`](Self::policy) check may take before it counts
    /// as failed (fail closed); 5 seconds unless set.
    pub fn policy_timeout(mut self, timeout: Duration) -> Self {
        self.policy_timeout = timeout;
        self
    }

    /// How long an entry of [`Connections::revoke`] is kept (default 24 h):
    /// at least your tokens' longest lifetime (`exp - iat`, plus the
    /// leeway). A token an entry matches is refused while the entry is
    /// kept; after that, every token issued up to the revocation has
    /// expired anyway, so the list stays bounded. Tokens without `iat`
    /// (which [`Selector::User`](crate::revocation::Selector::User) matches
    /// whenever they were issued) are accepted again once the entry is
    /// gone. Zero is refused.
    ///
    /// ```
    /// use std::time::Duration;
    /// use axum_ws_auth::{JwtValidator, WsAuthLayer};
    ///
    /// // Access tokens live at most 15 minutes here.
    /// let layer = WsAuthLayer::<serde_json::Value>::builder(JwtValidator::hs256([42u8; 32])?)
    ///     .revocation_retention(Duration::from_secs(20 * 60))
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<_, axum_ws_auth::ConfigError>(())
    /// ```
    pub fn revocation_retention(mut self, retention: Duration) -> Self {
        self.revocation_retention = retention;
        self
    }

    /// How long before `exp` the `auth.expiring` notice is sent (default 30 s).
    pub fn notify_before(mut self, ahead: Duration) -> Self {
        self.session.notify_before = ahead;
        self
    }

    /// Spreads the `auth.expiring` notices over a window before
    /// [`notify_before`](Self::notify_before) (off by default, as the wire
    /// contract says): each connection's notice comes between
    /// `notify_before` and `notify_before + window` ahead of its token's
    /// `exp`, at a point fixed for the connection and token. Tokens minted
    /// together (every client reconnecting after a deploy) then renew over
    /// the window instead of in one burst against the token endpoint.
    ///
    /// A window as long as `notify_before` is a good start wherever many
    /// clients connect at once: renewals then come at a flat rate instead of
    /// a burst, other connections' frames do not wait behind them, and since
    /// renewal tokens are minted when asked, the next expiries are spread
    /// too. `BENCHMARKS.md` ("Herd") has the measurements, by window.
    ///
    /// The window also sets how many tokens expire in each second (`exp`
    /// is whole seconds): closing a connection costs its node some tens of
    /// microseconds of CPU (mostly the kernel's TCP work), so a node whose
    /// 4401s should leave within 0.1 s of their deadlines wants a window of
    /// at least its connections divided by the closes it can make in a
    /// tenth of a second. The metric `ws_auth_expiry_close_lateness_seconds`
    /// shows how late they are.
    ///
    /// ```
    /// use std::time::Duration;
    /// use axum_ws_auth::{JwtValidator, WsAuthLayer};
    ///
    /// // Notices 30 to 90 seconds ahead of exp.
    /// let layer = WsAuthLayer::<serde_json::Value>::builder(JwtValidator::hs256([42u8; 32])?)
    ///     .notify_before(Duration::from_secs(30))
    ///     .notice_jitter(Duration::from_secs(60))
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<_, axum_ws_auth::ConfigError>(())
    /// ```
    pub fn notice_jitter(mut self, window: Duration) -> Self {
        self.session.notice_jitter = window;
        self
    }

    /// Clock-skew allowance for `exp` and `nbf`, whole seconds up to 300
    /// (default 5 s). The connection closes at `exp + leeway`.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.session.leeway = leeway;
        self
    }

    /// Renewal attempts allowed per connection in any 60 s (default 10);
    /// one more closes the connection with 4429.
    pub fn renew_limit(mut self, attempts: u32) -> Self {
        self.session.renew_limit = attempts;
        self
    }

    /// Invalid control messages tolerated per connection (default 3); one
    /// more closes the connection with 4400.
    pub fn invalid_control_limit(mut self, messages: u32) -> Self {
        self.session.invalid_control_limit = messages;
        self
    }

    /// Largest control message processed (default 16 KiB); a larger one is
    /// answered with `invalid_request`.
    pub fn max_control_bytes(mut self, bytes: usize) -> Self {
        self.session.max_control_bytes = bytes;
        self
    }

    /// Largest application message accepted, in bytes (default 1 MiB,
    /// against axum's 64 MiB); a larger one closes the connection with 1009.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.session.max_message_bytes = bytes;
        self
    }

    /// Largest single frame accepted, in bytes (default 1 MiB, against
    /// axum's 16 MiB).
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        self.session.max_frame_bytes = bytes;
        self
    }

    /// How long a closing handshake may take before the connection is
    /// dropped (default 5 s).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.session.close_timeout = timeout;
        self
    }

    /// Checks the configuration and prepares it for sharing.
    pub fn build(self) -> Result<WsAuthLayer<C>, ConfigError> {
        let Self {
            mut validator,
            sources,
            allowed_origins,
            allow_missing_origin,
            allow_missing_subject,
            protocols,
            realm,
            policy,
            policy_timeout,
            session,
            revocation_retention,
            _claims,
        } = self;
        checks::token_sources(&sources, allowed_origins.is_some())?;
        checks::realm(&realm)?;
        checks::limits(&session, policy_timeout, revocation_retention)?;
        // Shared with every connection that selects one.
        let protocols = checks::header_values(protocols, "subprotocol", |p| {
            !p.is_empty() && !p.starts_with(crate::protocol::BEARER_PROTOCOL_PREFIX)
        })?
        .into_iter()
        .map(Arc::new)
        .collect();
        let allowed_origins = allowed_origins
            .map(|origins| checks::header_values(origins, "origin", |o| !o.is_empty()))
            .transpose()?;
        validator.set_leeway_secs(session.leeway.as_secs());
        if !allow_missing_subject {
            validator.require_subject();
        }
        Ok(WsAuthLayer::new(Settings {
            validator,
            sources,
            allowed_origins,
            allow_missing_origin,
            protocols,
            realm: realm.into(),
            policy: policy.map(|check| Policy::new(check, policy_timeout)),
            session,
            connections: Connections::new(
                revocation_retention,
                crate::telemetry::REVOCATION_REPORT,
            ),
            timers: crate::timers::Timers::default(),
        }))
    }
}

impl<C> std::fmt::Debug for WsAuthLayerBuilder<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsAuthLayerBuilder")
            .field("validator", &self.validator)
            .field("sources", &self.sources)
            .field("allowed_origins", &self.allowed_origins)
            .field("allow_missing_origin", &self.allow_missing_origin)
            .field("allow_missing_subject", &self.allow_missing_subject)
            .field("protocols", &self.protocols)
            .field("realm", &self.realm)
            .field("session", &self.session)
            .field("revocation_retention", &self.revocation_retention)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Builder = WsAuthLayerBuilder<serde_json::Value>;

    fn builder() -> Builder {
        WsAuthLayer::builder(JwtValidator::hs256([9u8; 32]).unwrap())
    }

    #[test]
    fn cookie_source_requires_an_origin_allow_list() {
        assert_eq!(
            builder().cookie_source("jwt").build().unwrap_err(),
            ConfigError::CookieWithoutOriginAllowList
        );
        assert!(
            builder()
                .cookie_source("jwt")
                .allowed_origins(["https://app.example"])
                .build()
                .is_ok()
        );
    }

    #[test]
    fn unsafe_or_unusable_settings_are_refused() {
        let cases: Vec<(Builder, ConfigError)> = vec![
            (
                builder().leeway(Duration::from_secs(301)),
                ConfigError::Leeway,
            ),
            (
                builder().leeway(Duration::from_millis(1500)),
                ConfigError::Leeway,
            ),
            (
                builder().realm("a\"b"),
                ConfigError::InvalidHeaderText("realm"),
            ),
            (
                builder().protocols(["bearer.x"]),
                ConfigError::InvalidHeaderText("subprotocol"),
            ),
            (
                builder().renew_limit(0),
                ConfigError::ZeroLimit("renew limit"),
            ),
            (
                builder().header_source(false).subprotocol_source(false),
                ConfigError::NoTokenSource,
            ),
        ];
        for (builder, expected) in cases {
            assert_eq!(builder.build().unwrap_err(), expected);
        }
        // The application's extractor is a source of its own.
        assert!(
            builder()
                .header_source(false)
                .subprotocol_source(false)
                .token_from(|_| Ok(None))
                .build()
                .is_ok()
        );
    }
}
