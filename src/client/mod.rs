//! A Rust client for the `wsauth.v1` contract (feature `client`).
//!
//! [`AuthClient`] keeps one authenticated connection alive for as long as
//! the application wants it:
//!
//! - It fetches tokens through the application's own provider (its HTTPS
//!   refresh endpoint, say), under a timeout, trims them and checks that they
//!   can be sent; never more than one fetch is in flight.
//! - It renews in-band when the server sends `auth.expiring`, and on its own
//!   timer from the token's `exp`, read against the server's clock (learnt
//!   from the notices and the upgrade's `Date`), so a client clock that is
//!   hours off cannot make it renew in a loop. The moment of renewal is
//!   spread over a jitter window, so tokens minted together are not renewed
//!   in one burst.
//! - It reconnects with full-jitter [`Backoff`] after `4401`, `4429`,
//!   `1001`, a lost connection or a failed attempt. The backoff resets only
//!   after a connection stayed open for a while or carried application data.
//! - It stops for good after `4403`, `4400` or `1009`, when the server
//!   refuses the handshake with 400, or after a number of handshakes in a row
//!   refused with 401 or 403.
//! - [`AuthClient::close`] sends a close frame and waits briefly for the
//!   server's reply.
//!
//! Every failure is reported as a [`ClientEvent::Error`], followed by a
//! scheduled retry or a final [`ClientEvent::Stopped`]; nothing fails
//! silently. Events come from [`AuthClient::next_event`], from the client
//! as a [`Stream`](futures_core::Stream), or through a callback
//! ([`AuthClientBuilder::on_event`]). No event, error or log line ever holds
//! a token.
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
//!         ClientEvent::Error(error) => eprintln!("{error}"),
//!         ClientEvent::Stopped { reason, .. } => { eprintln!("stopped: {reason}"); break; }
//!         _ => {}
//!     }
//! }
//! # }
//! ```

mod builder;
mod config;
mod connect;
mod error;
mod session;
mod timing;
mod token;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use crate::backoff::Backoff;
pub use builder::AuthClientBuilder;
pub use error::ClientError;
pub use tokio_rustls::rustls;
pub use tokio_tungstenite::tungstenite::Message;

use crate::protocol::RenewRejection;

/// Errors a token provider may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

type TokenFuture = Pin<Box<dyn Future<Output = Result<String, BoxError>> + Send>>;
type TokenProvider = Arc<dyn Fn() -> TokenFuture + Send + Sync>;
type EventCallback = Arc<dyn Fn(ClientEvent) + Send + Sync>;

/// Where the client puts its token on the upgrade request.
///
/// ```
/// use axum_ws_auth::client::{AuthClient, TokenPlacement};
///
/// # async fn token() -> Result<String, std::io::Error> { Ok(String::new()) }
/// assert_eq!(TokenPlacement::default(), TokenPlacement::Subprotocol);
/// let builder = AuthClient::builder("ws://127.0.0.1:3000/ws", token)
///     .token_placement(TokenPlacement::Header);
/// ```
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
///
/// ```
/// use axum_ws_auth::client::{ClientError, ClientEvent};
///
/// fn log(event: &ClientEvent) {
///     match event {
///         ClientEvent::Error(ClientError::Refused(status)) => eprintln!("refused: {status}"),
///         ClientEvent::Disconnected { retry_in, .. } => eprintln!("retry in {retry_in:?}"),
///         ClientEvent::Stopped { reason, .. } => eprintln!("stopped: {reason}"),
///         _ => {}
///     }
/// }
/// log(&ClientEvent::Renewed { exp: 1_764_000_000 });
/// ```
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
    /// A renewal was refused; the client retries up to three times per
    /// token, spread over the time left before expiry. (A token provider
    /// that fails is retried with backoff until shortly before expiry.)
    RenewRejected {
        /// The RFC 6750 error code.
        error: RenewRejection,
        /// The server's short explanation.
        description: Option<String>,
    },
    /// Something failed. It is followed by a retry: a renewal retry while
    /// connected, or [`Disconnected`](Self::Disconnected) with the delay
    /// before the next attempt; or by [`Stopped`](Self::Stopped).
    Error(ClientError),
    /// The connection ended, or an attempt failed, and the client will
    /// reconnect after `retry_in`.
    Disconnected {
        /// The close code or refusing HTTP status, if there was one.
        code: Option<u16>,
        /// Why, in words (never a token).
        reason: String,
        /// The jittered delay before the next attempt.
        retry_in: Duration,
        /// The backoff step this delay was drawn from (0-based); it grows
        /// until a connection is stable.
        attempt: u32,
    },
    /// The client stopped for good; this is the last event.
    Stopped {
        /// The close code or refusing HTTP status, if any (1000 when the
        /// application closed the client).
        code: Option<u16>,
        /// Why, in words.
        reason: String,
    },
}

/// The application's end was closed; nothing more can be sent.
///
/// ```no_run
/// use axum_ws_auth::client::{AuthClient, ClientStopped, Message};
///
/// # async fn run(client: AuthClient) {
/// let sent: Result<(), ClientStopped> = client.send(Message::Text("hi".into())).await;
/// if let Err(stopped) = sent {
///     eprintln!("{stopped}");
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the client has stopped")]
#[non_exhaustive]
pub struct ClientStopped;

/// A self-renewing, reconnecting client connection.
///
/// Read its events continuously, with [`next_event`](Self::next_event) or
/// as a [`Stream`](futures_core::Stream): the background task waits for the
/// application to take events, so an application that stops reading also
/// stops renewing. (With [`AuthClientBuilder::on_event`] the events go to
/// the callback instead.)
///
/// ```no_run
/// use axum_ws_auth::client::{AuthClient, ClientEvent};
/// use futures_util::StreamExt;
///
/// # async fn token() -> Result<String, std::io::Error> { Ok(String::new()) }
/// # async fn run() {
/// let mut client = AuthClient::builder("ws://127.0.0.1:3000/ws", token).connect();
/// while let Some(event) = client.next().await {
///     if let ClientEvent::Connected { .. } = event {
///         break;
///     }
/// }
/// client.close().await;
/// # }
/// ```
#[derive(Debug)]
pub struct AuthClient {
    outbound: mpsc::Sender<Message>,
    events: mpsc::Receiver<ClientEvent>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl AuthClient {
    /// A client for `url` (`ws://` or `wss://`) that gets its tokens from
    /// `provider`. Nothing happens until [`AuthClientBuilder::connect`].
    ///
    /// ```
    /// use axum_ws_auth::client::AuthClient;
    ///
    /// # async fn refresh() -> Result<String, std::io::Error> { Ok(String::new()) }
    /// let builder = AuthClient::builder("wss://chat.example/ws", || refresh());
    /// ```
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
        AuthClientBuilder::new(url.into(), provider)
    }

    /// Queues an application message; it is sent on the current connection,
    /// or on the next one while reconnecting.
    ///
    /// ```no_run
    /// # use axum_ws_auth::client::{AuthClient, Message};
    /// # async fn run(client: AuthClient) {
    /// client.send(Message::Text("hello".into())).await.unwrap();
    /// # }
    /// ```
    pub async fn send(&self, message: Message) -> Result<(), ClientStopped> {
        self.outbound.send(message).await.map_err(|_| ClientStopped)
    }

    /// The next event; `None` after [`ClientEvent::Stopped`] (at once, with
    /// an [`on_event`](AuthClientBuilder::on_event) callback, only when the
    /// client has stopped).
    ///
    /// ```no_run
    /// # use axum_ws_auth::client::AuthClient;
    /// # async fn run(mut client: AuthClient) {
    /// while let Some(event) = client.next_event().await {
    ///     println!("{event:?}");
    /// }
    /// # }
    /// ```
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    /// Closes the connection normally and stops reconnecting: sends a close
    /// frame (1000) and waits for the server's reply, at most
    /// [`close_timeout`](AuthClientBuilder::close_timeout). A connection
    /// attempt under way is abandoned.
    ///
    /// ```no_run
    /// # use axum_ws_auth::client::AuthClient;
    /// # async fn run(client: AuthClient) {
    /// client.close().await;
    /// # }
    /// ```
    pub async fn close(mut self) {
        // Nobody reads events any more: the task must not wait for us.
        self.events.close();
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
    }
}

impl futures_core::Stream for AuthClient {
    type Item = ClientEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ClientEvent>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for AuthClient {
    /// Dropping the client closes it in the background, as
    /// [`close`](Self::close) does, without waiting.
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn spawn(config: config::Config) -> AuthClient {
    let (outbound_tx, outbound_rx) = mpsc::channel(64);
    let (events_tx, events_rx) = mpsc::channel(64);
    let (stop_tx, stop_rx) = watch::channel(false);
    let events = config::Events {
        channel: events_tx,
        callback: config.on_event.clone(),
    };
    let task = tokio::spawn(session::run(Arc::new(config), outbound_rx, events, stop_rx));
    AuthClient {
        outbound: outbound_tx,
        events: events_rx,
        stop: stop_tx,
        task,
    }
}
