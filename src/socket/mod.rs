//! The authenticated socket handed to route handlers, and what keeps it
//! authenticated.
//!
//! The application's own task reads and writes the real WebSocket, as with
//! axum's socket: `auth.*` control messages are answered as frames are read
//! (`core.rs`, `renew.rs`), so a message costs no extra task hop or
//! allocation. Any number of tasks may write: the transport sees one waker
//! that wakes them all (`transport.rs`). One timer task per layer
//! (`timers.rs`) sends each connection's notice and ends it at its
//! deadline, even when the application is busy elsewhere; short-lived tasks
//! (`close.rs`) carry out closing handshakes, shutdowns and revocations,
//! flush control frames the transport had no room for, and read on the
//! application's behalf once it has dropped its receiver. An idle
//! connection owns no task.

mod clock;
mod close;
mod core;
mod renew;
#[cfg(test)]
mod tests;
mod timers;
mod transport;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::extract::ws::Message;
use futures_core::Stream;
use futures_sink::Sink;
use futures_util::SinkExt;
use http::HeaderValue;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::telemetry::{self, Connection};
use crate::token::TokenSource;
use crate::upgrade::Authenticated;
use core::{Half, Shared};
pub(crate) use timers::Timers;
use transport::Transport;

/// The connection has been closed (or its token has expired); nothing more
/// can be sent or received. Wrapped in [`axum::Error`].
#[derive(Debug, Clone, Copy, Default, thiserror::Error)]
#[error("the authenticated WebSocket is closed")]
#[non_exhaustive]
pub struct SocketClosed;

fn closed() -> axum::Error {
    axum::Error::new(SocketClosed)
}

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// Starts an upgraded connection (registered, its first timer armed) and
/// returns the application's end of it.
pub(crate) fn spawn<T, C>(transport: T, authenticated: Authenticated<C>) -> AuthWebSocket<C>
where
    T: Transport,
    C: DeserializeOwned + Send + Sync + 'static,
{
    let Authenticated {
        claims,
        registered: _,
        iss,
        sub,
        exp,
        source,
        protocol,
        settings,
    } = authenticated;
    let id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
    let connection = Connection::new(id, iss, sub.clone());
    telemetry::connected(&connection, source, exp);
    let shared = Shared::start(Box::new(transport), settings, connection, exp, claims);
    let half: Arc<dyn Half> = Arc::clone(&shared) as Arc<dyn Half>;
    AuthWebSocket {
        sender: AuthSender {
            half: Arc::clone(&half),
        },
        receiver: AuthReceiver { half },
        shared,
        id,
        sub,
        source,
        protocol,
    }
}

/// A WebSocket whose peer is authenticated, and stays so.
///
/// It yields only the application's own frames: `auth.*` control messages
/// are answered by the connection's driver and never appear here. Once the
/// token expires (with no accepted renewal) [`recv`](Self::recv) returns
/// `None` and [`send`](Self::send) fails, even for frames already queued.
///
/// Use it like axum's `WebSocket`, or [`split`](Self::split) it to read and
/// write from separate tasks. Renewals are answered as frames are read, so
/// keep reading (as any WebSocket application does to see the peer's
/// close), or drop the [`AuthReceiver`] of a push-only connection: the
/// connection then reads for itself. Expiry, the notice and server closes
/// never depend on the application.
///
/// ```
/// use axum_ws_auth::AuthWebSocket;
///
/// #[derive(serde::Deserialize)]
/// struct Claims { sub: String }
///
/// async fn echo(mut socket: AuthWebSocket<Claims>) {
///     while let Some(Ok(message)) = socket.recv().await {
///         if socket.send(message).await.is_err() {
///             break;
///         }
///     }
/// }
/// ```
pub struct AuthWebSocket<C> {
    sender: AuthSender,
    receiver: AuthReceiver,
    shared: Arc<Shared<C>>,
    id: u64,
    sub: Option<Arc<str>>,
    source: TokenSource,
    protocol: Option<HeaderValue>,
}

impl<C> AuthWebSocket<C> {
    /// Receives the next application message; `None` once the connection is
    /// closed or its token has expired.
    pub async fn recv(&mut self) -> Option<Result<Message, axum::Error>> {
        self.receiver.recv().await
    }

    /// Sends an application message.
    pub async fn send(&mut self, message: Message) -> Result<(), axum::Error> {
        self.sender.send(message).await
    }

    /// The claims of the current token (replaced by every accepted renewal).
    pub fn claims(&self) -> Arc<C> {
        self.shared.claims()
    }

    /// A receiver that observes every accepted renewal.
    ///
    /// ```
    /// # async fn f(socket: axum_ws_auth::AuthWebSocket<serde_json::Value>) {
    /// let mut claims = socket.watch_claims();
    /// tokio::spawn(async move {
    ///     while claims.changed().await.is_ok() {
    ///         let current = std::sync::Arc::clone(&claims.borrow_and_update());
    ///         println!("renewed: {current}");
    ///     }
    /// });
    /// # }
    /// ```
    pub fn watch_claims(&self) -> watch::Receiver<Arc<C>> {
        self.shared.watch_claims()
    }

    /// The current token's `exp` (seconds since the Unix epoch).
    pub fn expires_at(&self) -> u64 {
        self.receiver.half.deadline().exp()
    }

    /// The `sub` of the connection; renewals cannot change it.
    pub fn subject(&self) -> Option<&str> {
        self.sub.as_deref()
    }

    /// Where the opening token was found.
    pub fn token_source(&self) -> TokenSource {
        self.source
    }

    /// The selected subprotocol, if any.
    pub fn protocol(&self) -> Option<&HeaderValue> {
        self.protocol.as_ref()
    }

    /// A process-unique id of this connection, as used in log events.
    pub fn connection_id(&self) -> u64 {
        self.id
    }

    /// Splits into independently usable halves. Dropping both ends the
    /// connection with a normal close.
    pub fn split(self) -> (AuthSender, AuthReceiver) {
        (self.sender, self.receiver)
    }
}

impl<C> std::fmt::Debug for AuthWebSocket<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthWebSocket")
            .field("id", &self.id)
            .field("sub", &self.sub)
            .field("source", &self.source)
            .field("protocol", &self.protocol)
            .field("expires_at", &self.expires_at())
            .finish_non_exhaustive()
    }
}

impl<C> Stream for AuthWebSocket<C> {
    type Item = Result<Message, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.receiver).poll_next(cx)
    }
}

impl<C> Sink<Message> for AuthWebSocket<C> {
    type Error = axum::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.sender).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        Pin::new(&mut self.sender).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.sender).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.sender).poll_close(cx)
    }
}

/// The sending half of an [`AuthWebSocket`]. Cloning it gives another
/// sender onto the same connection.
pub struct AuthSender {
    half: Arc<dyn Half>,
}

impl AuthSender {
    /// Sends an application message; fails once the connection is closed or
    /// its token has expired.
    pub async fn send(&mut self, message: Message) -> Result<(), axum::Error> {
        SinkExt::send(self, message).await
    }
}

impl Clone for AuthSender {
    fn clone(&self) -> Self {
        self.half.sender_cloned();
        Self {
            half: Arc::clone(&self.half),
        }
    }
}

impl Drop for AuthSender {
    fn drop(&mut self) {
        self.half.sender_dropped();
    }
}

impl std::fmt::Debug for AuthSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSender").finish_non_exhaustive()
    }
}

impl Sink<Message> for AuthSender {
    type Error = axum::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.half.poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        self.half.start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.half.poll_flush(cx)
    }

    /// Flushes; the connection itself closes when every half is dropped
    /// (or on an explicit `Message::Close`).
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.half.poll_flush(cx)
    }
}

/// The receiving half of an [`AuthWebSocket`]. Reading it is what moves
/// the connection along: control messages are answered as they are read.
/// Keep reading, or drop it (the connection then reads for itself).
pub struct AuthReceiver {
    half: Arc<dyn Half>,
}

impl AuthReceiver {
    /// Receives the next application message; `None` once the connection is
    /// closed or its token has expired.
    pub async fn recv(&mut self) -> Option<Result<Message, axum::Error>> {
        std::future::poll_fn(|cx| self.half.poll_recv(cx)).await
    }
}

impl Drop for AuthReceiver {
    fn drop(&mut self) {
        self.half.receiver_dropped();
    }
}

impl std::fmt::Debug for AuthReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthReceiver").finish_non_exhaustive()
    }
}

impl Stream for AuthReceiver {
    type Item = Result<Message, axum::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.half.poll_recv(cx)
    }
}
