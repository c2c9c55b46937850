//! The application's end of a connection: the socket and its two halves,
//! each a handle on the connection's shared state (`core.rs`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::ws::Message;
use futures_core::Stream;
use futures_sink::Sink;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::core::Shared;
use super::half::Half;
use super::send::SendFuture;
use super::transport::Slot;
use crate::connection::{AuthEvent, EndReason, Identity};
use crate::token::RegisteredClaims;

/// What the socket and both its halves tell about the connection.
macro_rules! connection_accessors {
    () => {
        /// Who is on the other end: connection id, `iss`, `sub`, token
        /// source and selected subprotocol.
        pub fn identity(&self) -> &Identity {
            &self.shared().identity
        }

        /// The claims of the current token (replaced by every accepted
        /// renewal).
        pub fn claims(&self) -> Arc<C> {
            self.shared().claims()
        }

        /// The registered claims of the current token (`iss`, `sub`, `aud`,
        /// `exp`, `nbf`, `iat`, `jti`), replaced by every accepted renewal.
        pub fn registered(&self) -> Arc<RegisteredClaims> {
            self.shared().registered()
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
            self.shared().watch_claims()
        }

        /// A receiver of this connection's authentication events (notices,
        /// accepted and refused renewals), from now on.
        pub fn events(&self) -> tokio::sync::broadcast::Receiver<AuthEvent> {
            self.shared().events()
        }

        /// The current token's `exp` (seconds since the Unix epoch).
        pub fn expires_at(&self) -> u64 {
            self.shared().deadline.exp()
        }

        /// Why the connection ended; `None` while it is open.
        pub fn end_reason(&self) -> Option<EndReason> {
            self.shared().end_reason()
        }

        /// Completes once the connection has ended (expired, revoked,
        /// closed by the peer or the server, or lost), with the reason: what
        /// a handler that only sends waits on to stop, without a failed
        /// `send`. Completes at once if it has already ended.
        ///
        /// Cancel-safe: drop it (in a `select!`) and call it again at will;
        /// an end is never missed.
        ///
        /// The peer's close and a lost connection are seen when the
        /// connection reads: a handler that only sends drops its
        /// [`AuthReceiver`], so that the connection reads for itself.
        ///
        /// ```
        /// use axum_ws_auth::{AuthWebSocket, EndReason};
        /// use axum::extract::ws::Message;
        ///
        /// async fn push(socket: AuthWebSocket<serde_json::Value>) {
        ///     let (mut sender, receiver) = socket.split();
        ///     // Never read here: the connection reads (renewals, the peer's close).
        ///     drop(receiver);
        ///     let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
        ///     let reason: EndReason = loop {
        ///         tokio::select! {
        ///             reason = sender.closed() => break reason,
        ///             _ = ticks.tick() => {
        ///                 if sender.send(Message::text("tick")).await.is_err() {
        ///                     break sender.closed().await;
        ///                 }
        ///             }
        ///         }
        ///     };
        ///     tracing::info!(?reason, "push stream over");
        /// }
        /// ```
        pub async fn closed(&self) -> EndReason {
            self.shared().closed().await
        }
    };
}

/// A WebSocket whose peer is authenticated, and stays so.
///
/// It yields only the application's own frames: `auth.*` control messages
/// are answered by the connection and never appear here. Once the token
/// expires (with no accepted renewal) [`recv`](Self::recv) returns `None`,
/// also for frames that arrived before the deadline but were not read by
/// then, and [`send`](Self::send) fails; [`end_reason`](Self::end_reason)
/// then says why. A frame `send` handed to the socket before the deadline
/// is reported sent and goes out ahead of the close frame.
///
/// Use it like axum's `WebSocket`, or [`split`](Self::split) it to read and
/// write from separate tasks, and clone the [`AuthSender`] for as many
/// writers as you like. Expiry, the notice, renewals and server closes
/// never depend on the application reading: control messages are answered
/// as the application reads, and between an `auth.expiring` notice and its
/// renewal, a connection whose application is not waiting in
/// [`recv`](Self::recv) reads for itself. A push-only handler may therefore
/// hold the socket (or its [`AuthReceiver`]) and only send, or drop the
/// receiver (the connection then reads for itself, and drops the peer's
/// application frames).
///
/// Application frames the connection reads while the application does not
/// are kept for its next `recv`, in order: at most 32 frames, or
/// `max_message_bytes` in total. Once that is full the connection stops
/// reading until the application reads (the peer meets backpressure), so a
/// renewal the peer sends behind more unread frames than that is answered
/// only when the application reads. Frames kept are never handed over after
/// the deadline, nor after the server ended the connection; those read
/// before the peer's close are.
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
    pub(super) sender: AuthSender<C>,
    pub(super) receiver: AuthReceiver<C>,
}

impl<C> AuthWebSocket<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    /// Receives the next application message; `None` once the connection is
    /// closed or its token has expired.
    ///
    /// Cancel-safe: a `recv` dropped before it completes (in a `select!`,
    /// under a timeout) takes no message with it; the next `recv` gets it.
    pub async fn recv(&mut self) -> Option<Result<Message, axum::Error>> {
        self.receiver.recv().await
    }

    /// Sends an application message; fails once the connection is closed or
    /// its token has expired.
    pub fn send(&mut self, message: Message) -> SendFuture<'_, C> {
        self.sender.send(message)
    }
}

impl<C> AuthWebSocket<C> {
    connection_accessors!();

    fn shared(&self) -> &Arc<Shared<C>> {
        &self.receiver.shared
    }

    /// Splits into independently usable halves. Dropping both (every clone
    /// of the sender and the receiver) ends the connection with a normal
    /// close.
    pub fn split(self) -> (AuthSender<C>, AuthReceiver<C>) {
        (self.sender, self.receiver)
    }
}

impl<C> std::fmt::Debug for AuthWebSocket<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthWebSocket")
            .field("identity", self.identity())
            .field("expires_at", &self.expires_at())
            .finish_non_exhaustive()
    }
}

impl<C> Stream for AuthWebSocket<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    type Item = Result<Message, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.receiver).poll_next(cx)
    }
}

impl<C> Sink<Message> for AuthWebSocket<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
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

/// The sending half of an [`AuthWebSocket`]. Clone it for every task that
/// writes (rooms, broadcasts): each clone is woken when the socket drains,
/// and fails at once when the connection ends.
pub struct AuthSender<C> {
    pub(super) shared: Arc<Shared<C>>,
    /// The same connection with its claims type erased, for `Clone` and
    /// `Drop`, which cannot require what the connection's code does of `C`.
    pub(super) half: Arc<dyn Half>,
    /// This sender's place among the writers waiting for the socket.
    pub(super) slot: Slot,
}

impl<C> AuthSender<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    /// Sends an application message; fails once the connection is closed or
    /// its token has expired.
    pub fn send(&mut self, message: Message) -> SendFuture<'_, C> {
        SendFuture::new(self, message)
    }
}

impl<C> AuthSender<C> {
    connection_accessors!();

    fn shared(&self) -> &Arc<Shared<C>> {
        &self.shared
    }
}

impl<C> Clone for AuthSender<C> {
    fn clone(&self) -> Self {
        Self {
            slot: self.half.sender_cloned(),
            shared: Arc::clone(&self.shared),
            half: Arc::clone(&self.half),
        }
    }
}

impl<C> Drop for AuthSender<C> {
    fn drop(&mut self) {
        self.half.sender_dropped(self.slot);
    }
}

impl<C> std::fmt::Debug for AuthSender<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSender")
            .field("identity", self.identity())
            .finish_non_exhaustive()
    }
}

impl<C> Sink<Message> for AuthSender<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    type Error = axum::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.shared().poll_ready(self.slot, cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        self.shared().start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.shared().poll_flush(self.slot, cx)
    }

    /// Flushes; the connection itself closes when every half is dropped
    /// (or on an explicit `Message::Close`).
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.shared().poll_flush(self.slot, cx)
    }
}

/// The receiving half of an [`AuthWebSocket`]. Control messages are
/// answered as it is read; while a renewal is due and it is not being
/// read, the connection reads for it and keeps the application's frames for
/// its next `recv` (see [`AuthWebSocket`]). Drop it if the application never
/// reads: the connection then reads for itself.
pub struct AuthReceiver<C> {
    pub(super) shared: Arc<Shared<C>>,
    pub(super) half: Arc<dyn Half>,
}

impl<C> AuthReceiver<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    /// Receives the next application message; `None` once the connection is
    /// closed or its token has expired.
    ///
    /// Cancel-safe: a `recv` dropped before it completes (in a `select!`,
    /// under a timeout) takes no message with it; the next `recv` gets it.
    pub async fn recv(&mut self) -> Option<Result<Message, axum::Error>> {
        let mut abandoned = Abandoned(Some(&*self.half));
        let received = std::future::poll_fn(|cx| self.shared().poll_recv(cx, true)).await;
        abandoned.0 = None;
        received
    }
}

impl<C> AuthReceiver<C> {
    connection_accessors!();

    fn shared(&self) -> &Arc<Shared<C>> {
        &self.shared
    }
}

impl<C> Drop for AuthReceiver<C> {
    fn drop(&mut self) {
        self.half.receiver_dropped();
    }
}

impl<C> std::fmt::Debug for AuthReceiver<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthReceiver")
            .field("identity", self.identity())
            .finish_non_exhaustive()
    }
}

impl<C> Stream for AuthReceiver<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    type Item = Result<Message, axum::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.shared().poll_recv(cx, false)
    }
}

/// Tells the connection when a `recv` future is dropped before it is done
/// (a `select!`, a timeout): the application is no longer parked in a read,
/// so a renewal that is due gets a reader of its own.
struct Abandoned<'a>(Option<&'a dyn Half>);

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if let Some(half) = self.0 {
            half.recv_abandoned();
        }
    }
}
