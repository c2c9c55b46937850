//! A Rust client for the `wsauth.v1` contract (feature `client`).
//!
//! [`AuthClient`] keeps one authenticated connection alive for as long as
//! the application wants it: it fetches tokens through the application's own
//! provider (its HTTPS refresh endpoint, say), renews in-band when the
//! server sends `auth.expiring` and on its own timer from the token's `exp`,
//! never has more than one token fetch in flight, and reconnects with
//! full-jitter [`Backoff`] after `4401`, `4429`, `1001` or a lost
//! connection. It stops for good after `4403` or `4400`, or when the server
//! refuses the handshake with 400 or 403.
//!
//! ```no_run
//! use axum_ws_auth::client::{AuthClient, ClientEvent, Message};
//!
//! # async fn fetch_token() -> Result<String, std::io::Error> { Ok(String::new()) }
//! # async fn run() {
//! let mut client = AuthClient::builder("ws://127.0.0.1:3000/ws", || fetch_token()).connect();
//! client.send(Message::Text("hello".into())).await.unwrap();
//! while let Some(event) = client.next_event().await {
//!     match event {
//!         ClientEvent::Message(message) => println!("{message:?}"),
//!         ClientEvent::Stopped { reason, .. } => { eprintln!("stopped: {reason}"); break; }
//!         _ => {}
//!     }
//! }
//! # }
//! ```

mod backoff;
mod session;
mod token;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use backoff::Backoff;
pub use tokio_rustls::rustls;
pub use tokio_tungstenite::tungstenite::Message;

use crate::protocol::{PROTOCOL_V1, RenewRejection};

/// Errors a token provider may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

type TokenFuture = Pin<Box<dyn Future<Output = Result<String, BoxError>> + Send>>;
type TokenProvider = Arc<dyn Fn() -> TokenFuture + Send + Sync>;

/// Where the client puts its token on the upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TokenPlacement {
    /// `Sec-WebSocket-Protocol: wsauth.v1, bearer.<jwt>`, as a browser must.
    #[default]
    Subprotocol,
    /// `Authorization: Bearer <jwt>`.
    Header,
}

/// What happened on the connection, in order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A connection is open (the first, or after a reconnect).
    Connected {
        /// The subprotocol the server selected.
        protocol: Option<String>,
    },
    /// An application frame from the server.
    Message(Message),
    /// A renewal was accepted; the connection now lives until `exp`.
    Renewed {
        /// The new token's `exp`.
        exp: u64,
    },
    /// A renewal was refused; the client retries a few times with backoff.
    RenewRejected {
        /// The RFC 6750 error code.
        error: RenewRejection,
        /// The server's short explanation.
        description: Option<String>,
    },
    /// The connection ended and the client will reconnect after `retry_in`.
    Disconnected {
        /// The close code, if the server sent one.
        code: Option<u16>,
        /// Why, in words (never a token).
        reason: String,
        /// The jittered delay before the next attempt.
        retry_in: Duration,
    },
    /// The client stopped for good.
    Stopped {
        /// The close code or refusing HTTP status, if any.
        code: Option<u16>,
        /// Why, in words.
        reason: String,
    },
}

/// The application's end was closed; nothing more can be sent.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the client has stopped")]
#[non_exhaustive]
pub struct ClientStopped;

/// Configuration for [`AuthClient`].
#[must_use]
pub struct AuthClientBuilder {
    config: session::Config,
}

impl AuthClientBuilder {
    /// The application's subprotocols to offer besides the token
    /// (default `["wsauth.v1"]`).
    pub fn protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Where to put the token (default: the subprotocol list).
    pub fn token_placement(mut self, placement: TokenPlacement) -> Self {
        self.config.placement = placement;
        self
    }

    /// Renew this long before `exp` on the client's own timer, or halfway
    /// through a shorter token's life (default 60 s). The server's
    /// `auth.expiring` notice triggers a renewal too, whichever comes first.
    pub fn renew_before(mut self, ahead: Duration) -> Self {
        self.config.renew_before = ahead;
        self
    }

    /// Reconnection backoff (default 500 ms doubling to 30 s, full jitter).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// TLS settings for `wss://` URLs (required for them).
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.config.tls = Some(config);
        self
    }

    /// Starts connecting in the background and returns the client.
    pub fn connect(self) -> AuthClient {
        let (outbound_tx, outbound_rx) = mpsc::channel(64);
        let (events_tx, events_rx) = mpsc::channel(64);
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(session::run(
            Arc::new(self.config),
            outbound_rx,
            events_tx,
            stop_rx,
        ));
        AuthClient {
            outbound: outbound_tx,
            events: events_rx,
            stop: Some(stop_tx),
            task,
        }
    }
}

impl std::fmt::Debug for AuthClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthClientBuilder")
            .field("url", &self.config.url)
            .field("protocols", &self.config.protocols)
            .field("placement", &self.config.placement)
            .field("renew_before", &self.config.renew_before)
            .field("backoff", &self.config.backoff)
            .finish_non_exhaustive()
    }
}

/// A self-renewing, reconnecting client connection.
///
/// Read [`next_event`](Self::next_event) continuously: the background task
/// waits for the application to take events, so an application that stops
/// reading also stops renewing.
#[derive(Debug)]
pub struct AuthClient {
    outbound: mpsc::Sender<Message>,
    events: mpsc::Receiver<ClientEvent>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl AuthClient {
    /// A client for `url` (`ws://` or `wss://`) that gets its tokens from
    /// `provider`. Nothing happens until [`AuthClientBuilder::connect`].
    pub fn builder<F, Fut, E>(url: impl Into<String>, provider: F) -> AuthClientBuilder
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let provider: TokenProvider = Arc::new(move || {
            let fetch = provider();
            Box::pin(async move { fetch.await.map_err(Into::into) })
        });
        AuthClientBuilder {
            config: session::Config {
                url: url.into(),
                protocols: vec![PROTOCOL_V1.to_owned()],
                placement: TokenPlacement::default(),
                renew_before: Duration::from_secs(60),
                backoff: Backoff::default(),
                tls: None,
                provider,
            },
        }
    }

    /// Queues an application message; it is sent on the current connection,
    /// or on the next one while reconnecting.
    pub async fn send(&self, message: Message) -> Result<(), ClientStopped> {
        self.outbound.send(message).await.map_err(|_| ClientStopped)
    }

    /// The next event; `None` after [`ClientEvent::Stopped`].
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    /// Closes the connection normally and stops reconnecting.
    pub async fn close(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for AuthClient {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
