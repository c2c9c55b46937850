//! Configuration for [`AuthClient`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::config::Config;
use super::{AuthClient, Backoff, ClientEvent, TokenPlacement, TokenProvider, rustls};
use crate::protocol::PROTOCOL_V1;

/// Configuration for [`AuthClient`], from [`AuthClient::builder`].
///
/// ```
/// use std::time::Duration;
/// use axum_ws_auth::client::{AuthClient, Backoff};
///
/// # async fn token() -> Result<String, std::io::Error> { Ok(String::new()) }
/// let builder = AuthClient::builder("ws://127.0.0.1:3000/ws", token)
///     .renew_before(Duration::from_secs(120))
///     .renew_jitter(Duration::from_secs(60))
///     .token_timeout(Duration::from_secs(5))
///     .max_refused_handshakes(3)
///     .backoff(Backoff { base: Duration::from_secs(1), max: Duration::from_secs(60) });
/// ```
#[must_use]
pub struct AuthClientBuilder {
    config: Config,
}

impl AuthClientBuilder {
    pub(super) fn new(url: String, provider: TokenProvider) -> Self {
        Self {
            config: Config {
                url,
                protocols: vec![PROTOCOL_V1.to_owned()],
                placement: TokenPlacement::default(),
                renew_before: Duration::from_secs(60),
                renew_jitter: Duration::from_secs(30),
                backoff: Backoff::default(),
                backoff_reset_after: Duration::from_secs(10),
                max_refused_handshakes: 5,
                token_timeout: Duration::from_secs(10),
                connect_timeout: Duration::from_secs(10),
                handshake_timeout: Duration::from_secs(10),
                close_timeout: Duration::from_secs(2),
                tls: None,
                provider,
                wall_clock: Arc::new(SystemTime::now),
                on_event: None,
            },
        }
    }

    /// The application's subprotocols to offer besides the token
    /// (default `["wsauth.v1"]`).
    ///
    /// ```
    /// # async fn token() -> Result<String, std::io::Error> { Ok(String::new()) }
    /// # let builder = axum_ws_auth::client::AuthClient::builder("ws://127.0.0.1:3000/ws", token);
    /// let builder = builder.protocols(["graphql-transport-ws", "wsauth.v1"]);
    /// ```
    pub fn protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Where to put the token (default: the subprotocol list).
    ///
    /// ```
    /// # async fn token() -> Result<String, std::io::Error> { Ok(String::new()) }
    /// # let builder = axum_ws_auth::client::AuthClient::builder("ws://127.0.0.1:3000/ws", token);
    /// use axum_ws_auth::client::TokenPlacement;
    ///
    /// let builder = builder.token_placement(TokenPlacement::Header);
    /// ```
    pub fn token_placement(mut self, placement: TokenPlacement) -> Self {
        self.config.placement = placement;
        self
    }

    /// Renew this long before `exp` on the client's own timer, or halfway
    /// through a shorter token's life (default 60 s). The server's
    /// `auth.expiring` notice triggers a renewal too, whichever comes first.
    ///
    /// `exp` is read against the server's clock as the client last saw it
    /// (the `expires_in` of a notice, or the upgrade response's `Date`), not
    /// against its own: a token that looks expired to the client, but that
    /// the server has just accepted, waits for the server's notice.
    ///
    /// ```
    /// # async fn token() -> Result<String, std::io::Error> { Ok(String::new()) }
    /// # let builder = axum_ws_auth::client::AuthClient::builder("ws://127.0.0.1:3000/ws", token);
    /// let builder = builder.renew_before(std::time::Duration::from_secs(300));
    /// ```
    pub fn renew_before(mut self, ahead: Duration) -> Self {
        self.config.renew_before = ahead;
        self
    }

    /// Spread the moment of renewal over this window (default 30 s): the
    /// client's own timer fires at a random point up to `window` earlier than
    /// [`renew_before`](Self::renew_before) says (at most half the wait), and
    /// the answer to a notice waits a random time up to `window` (at most a
    /// quarter of the time left). Clients holding tokens minted together then
    /// do not renew in one burst. `Duration::ZERO` turns it off.
    ///
    /// ```
    /// # async fn token() -> Result<String, std::io::Error> { Ok(String::new()) }
    /// # let builder = axum_ws_auth::client::AuthClient::builder("ws://127.0.0.1:3000/ws", token);
    /// let builder = builder.renew_jitter(std::time::Duration::from_secs(120));
    /// ```
    pub fn renew_jitter(mut self, window: Duration) -> Self {
        self.config.renew_jitter = window;
        self
    }

    /// Reconnection backoff (default 500 ms doubling to 30 s, full jitter).
    ///
    /// ```
    /// # async fn token() -> Result<String, std::io::Error> { Ok(String::new()) }
    /// # let builder = axum_ws_auth::client::AuthClient::builder("ws://127.0.0.1:3000/ws", token);
    /// use std::time::Duration;
    /// use axum_ws_auth::client::Backoff;
    ///
    /// let builder = builder.backoff(Backoff { base: Duration::from_secs(1), max: Duration::from_secs(60) });
    /// ```
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// The backoff goes back to its first step only after a connection has
    /// stayed open this long (default 10 s), or has received application
    /// data. A server that accepts and closes at once therefore sees growing
    /// delays, not a reconnect storm.
    ///
    /// ```
    /// # async fn token() -> Result<String, std::io::Error> { Ok(String::new()) }
    /// # let builder = axum_ws_auth::client::AuthClient::builder("ws://127.0.0.1:3000/ws", token);
    /// let builder = builder.backoff_reset_after(std::time::Duration::from_secs(30));
    /// ```
    pub fn backoff_reset_after(mut self, open_for: Duration) -> Self {
        self.config.backoff_reset_after = open_for;
        self
    }

    /// Stop after this many handshakes in a row refused with 401 or 403
    /// and no successful open in between (default 5; at least 1). The last
    /// event is then [`ClientEvent::Stopped`] with that status. A 400 stops
    /// at once: the request itself is wrong.
    ///
    /// ```
    /// # async fn token() -> Result<String, std::io::Error> { Ok(String::new()) }
    /// # let builder = axum_ws_auth::client::AuthClient::builder("ws://127.0.0.1:3000/ws", token);
    /// let builder = builder.max_refused_handshakes(3);
    /// ```
    pub fn max_refused_handshakes(mut self, attempts: u32) -> Self {
        self.config.max_refused_handshakes = attempts.max(1);
        self
    }

    /// How long the token provider may take (default 10 s). A provider that
    /// does not answer in time counts as failed: an error event, then a retry.
    ///
    /// ```
    /// # async fn token() -> Result<String, std::io::Error> { Ok(String::new()) }
    /// # let builder = axum_ws_auth::client::AuthClient::builder("ws://127.0.0.1:3000/ws", token);
    /// let builder = builder.token_timeout(std::time::Duration::from_secs(3));
    /// ```
    pub fn token_timeout(mut self, timeout: Duration) -> Self {
        self.config.token_timeout = timeout;
        self
    }

    /// How long TCP (and TLS) may take to connect (default 10 s).
    ///
    /// ```
    /// # async fn token() -> Result<String, std::io::Error> { Ok(String::new()) }
    /// # let builder = axum_ws_auth::client::AuthClient::builder("ws://127.0.0.1:3000/ws", token);
    /// let builder = builder.connect_timeout(std::time::Duration::from_secs(3));
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How long the server may take to answer the HTTP upgrade once
    /// connected (default 10 s).
    ///
    /// ```
    /// # async fn token() -> Result<String, std::io::Error> { Ok(String::new()) }
    /// # let builder = axum_ws_auth::client::AuthClient::builder("ws://127.0.0.1:3000/ws", token);
    /// let builder = builder.handshake_timeout(std::time::Duration::from_secs(3));
    /// ```
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// How long [`AuthClient::close`] (and the reply to a server's close)
    /// waits for the closing handshake to complete (default 2 s).
    ///
    /// ```
    /// # async fn token() -> Result<String, std::io::Error> { Ok(String::new()) }
    /// # let builder = axum_ws_auth::client::AuthClient::builder("ws://127.0.0.1:3000/ws", token);
    /// let builder = builder.close_timeout(std::time::Duration::from_millis(500));
    /// ```
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }

    /// The wall clock the client reads a token's `exp` against before the
    /// server has told it its own (default [`SystemTime::now`]). For tests,
    /// and for applications with a better time source.
    ///
    /// ```
    /// # async fn token() -> Result<String, std::io::Error> { Ok(String::new()) }
    /// # let builder = axum_ws_auth::client::AuthClient::builder("ws://127.0.0.1:3000/ws", token);
    /// use std::time::{Duration, SystemTime};
    ///
    /// // A clock three hours fast.
    /// let builder = builder.wall_clock(|| SystemTime::now() + Duration::from_secs(3 * 3600));
    /// ```
    pub fn wall_clock<F>(mut self, now: F) -> Self
    where
        F: Fn() -> SystemTime + Send + Sync + 'static,
    {
        self.config.wall_clock = Arc::new(now);
        self
    }

    /// Delivers events to `callback` instead of the queue behind
    /// [`AuthClient::next_event`], which then only ends (`None`) once the
    /// client has stopped. The callback runs on the client's task: it must
    /// return quickly and not panic.
    ///
    /// ```
    /// # async fn token() -> Result<String, std::io::Error> { Ok(String::new()) }
    /// # let builder = axum_ws_auth::client::AuthClient::builder("ws://127.0.0.1:3000/ws", token);
    /// use axum_ws_auth::client::ClientEvent;
    ///
    /// let builder = builder.on_event(|event| {
    ///     if let ClientEvent::Error(error) = event {
    ///         eprintln!("{error}");
    ///     }
    /// });
    /// ```
    pub fn on_event<F>(mut self, callback: F) -> Self
    where
        F: Fn(ClientEvent) + Send + Sync + 'static,
    {
        self.config.on_event = Some(Arc::new(callback));
        self
    }

    /// TLS settings for `wss://` URLs (required for them).
    ///
    /// ```
    /// # async fn token() -> Result<String, std::io::Error> { Ok(String::new()) }
    /// # let builder = axum_ws_auth::client::AuthClient::builder("ws://127.0.0.1:3000/ws", token);
    /// use std::sync::Arc;
    /// use axum_ws_auth::client::rustls;
    ///
    /// # fn tls() -> rustls::ClientConfig { unimplemented!() }
    /// # if false {
    /// let builder = builder.tls_config(Arc::new(tls()));
    /// # }
    /// ```
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.config.tls = Some(config);
        self
    }

    /// Starts connecting in the background and returns the client. Needs a
    /// tokio runtime.
    ///
    /// ```no_run
    /// # async fn token() -> Result<String, std::io::Error> { Ok(String::new()) }
    /// # async fn run() {
    /// # let builder = axum_ws_auth::client::AuthClient::builder("ws://127.0.0.1:3000/ws", token);
    /// let client = builder.connect();
    /// # }
    /// ```
    pub fn connect(self) -> AuthClient {
        super::spawn(self.config)
    }
}

impl std::fmt::Debug for AuthClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.config;
        f.debug_struct("AuthClientBuilder")
            .field("url", &c.url)
            .field("protocols", &c.protocols)
            .field("placement", &c.placement)
            .field("renew_before", &c.renew_before)
            .field("renew_jitter", &c.renew_jitter)
            .field("backoff", &c.backoff)
            .field("backoff_reset_after", &c.backoff_reset_after)
            .field("max_refused_handshakes", &c.max_refused_handshakes)
            .field("token_timeout", &c.token_timeout)
            .field("connect_timeout", &c.connect_timeout)
            .field("handshake_timeout", &c.handshake_timeout)
            .field("close_timeout", &c.close_timeout)
            .finish_non_exhaustive()
    }
}
