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
//! application's behalf once it has dropped its receiver, or, between a
//! notice and its renewal, while it holds its receiver without reading it
//! (`ahead.rs`). An idle connection owns no task.
//!
//! # Invariants
//!
//! Read this section first: every file of this module keeps these, and the
//! seeded property test (`tests/property.rs`) checks them under random
//! interleavings of writers, renewals, invalid control messages, clock
//! jumps, backpressure and the application letting go.
//!
//! One connection's state is [`core::Core`], behind one mutex; the
//! deadline ([`clock::SharedDeadline`]) is the only state read without it.
//! By owner:
//!
//! | concern | fields | owner |
//! | --- | --- | --- |
//! | the current token | `claims`, `registered`, `claims_watch`, the deadline | `renew.rs` (an accepted renewal replaces all at once) |
//! | reading | `receiver`, `parked_reader`, `read_ahead` | `read.rs`, `ahead.rs` (its state in `stash.rs`) |
//! | writing | `outbox`, `control_unflushed`, `flushing` | `write.rs` |
//! | renewal | `renewals`, `invalid_controls`, `renewal_check`, `notice_sent` | `renew.rs`, `expiry.rs` |
//! | the timer | `armed_at` | `core.rs` (`arm`), `expiry.rs` (`fire`) |
//! | ending | `ending`, `on_end`, `live` | `core.rs` (`end`, `finish`), `close.rs` (the tasks) |
//!
//! The files form a DAG: `core.rs` holds the state and its transitions and
//! imports none of the others; `close.rs` starts the connection's tasks
//! (`start_closing`, `start_flushing`, ...), which the others call as
//! methods.
//!
//! 1. **No application frame after the deadline.** The deadline is
//!    `exp + leeway` (or an earlier re-authentication deadline) on the
//!    monotonic clock. Every path that hands a frame over checks it under
//!    the lock first: a frame read after it is dropped and ends the
//!    connection (`read.rs`); `start_write` refuses to hand one to the
//!    transport (`write.rs`); frames read ahead are never handed over after
//!    it (`ahead.rs`). A frame the transport accepted before the deadline
//!    goes out ahead of the close frame.
//! 2. **Expiry never depends on the application.** The layer's timer task
//!    fires each connection at `min(notice point, deadline)` (`arm` keeps
//!    `armed_at` the earliest pending entry); it never waits for a
//!    connection's lock (`try_lock`, and a busy connection is fired again
//!    shortly). The application's reading or writing only ever brings the
//!    end earlier.
//! 3. **One notice per token.** `notice_sent` is set when `auth.expiring`
//!    is queued and cleared only when a renewal is accepted (a new token):
//!    a token gets at most one notice, the one that expires exactly one,
//!    before the close. A re-authentication request sends its own, with its
//!    earlier `exp`.
//! 4. **Someone reads while a renewal is due.** From a notice until a
//!    renewal lands (`notice_sent`), either the application is parked in
//!    `recv` (`receiver == Reading`), or its receiver is dropped and a task
//!    reads in its place, or a renewal reader runs (`ensure_reading`); frames
//!    read for the application are kept in order, bounded
//!    (`STASH_FRAMES`, `max_message_bytes`), and handed to its next `recv`.
//! 5. **Control frames never wait behind the application's.** Notices and
//!    renewal answers go to the `outbox` and are written before any
//!    application frame (`poll_write_ready` drains it first); a control
//!    frame the transport had no room for is flushed by one task at a time
//!    (`flushing`), and `control_unflushed` says one was handed over but
//!    not yet flushed.
//! 6. **One renewal is checked at a time.** `renewal_check` holds the
//!    policy check of the renewal in flight; another `auth.renew` meanwhile
//!    is answered `invalid_request`. The policy runs outside the lock; the
//!    deadline holds while it runs (a check still running at the deadline
//!    ends the connection with 4401).
//! 7. **When `ending` is set, the connection is over.** The first decision
//!    wins and gives the close code (`end`): every parked half is woken,
//!    the renewal check aborted, frames kept for the application dropped
//!    (unless the peer closed first), every writer fails from then on, and
//!    one closing task (`close.rs`) sends the close frame and waits, at
//!    most `close_timeout`, for the peer's. `closed()` futures complete.
//!    The registry entry (`live`) is released when that task is done, so
//!    `Connections::closed` resolves only when every closing handshake is
//!    over.
//! 8. **Nothing hangs, and nothing leaks.** Every task the connection
//!    starts ends with it; a writer that gives up leaves no waker parked;
//!    the last half dropped, on any thread, ends the connection (on the
//!    runtime it started on).

mod ahead;
mod clock;
mod close;
mod core;
mod expiry;
mod read;
mod reauth;
mod renew;
mod send;
mod stash;
#[cfg(test)]
mod tests;
mod transport;
mod write;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::extract::ws::Message;
use futures_core::Stream;
use futures_sink::Sink;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::config::Settings;
use crate::connection::{AuthEvent, EndReason, Identity};
use crate::telemetry;
use crate::token::RegisteredClaims;
use crate::token::TokenSource;
use core::{Half, Shared};
use http::HeaderValue;
pub use send::SendFuture;
use transport::Slot;
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

/// What the layer learned about a request it let through: it travels to
/// the extractor in the request's extensions, and opens the connection.
pub(crate) struct Authenticated<C> {
    pub(crate) claims: Arc<C>,
    /// The registered claims of the token, typed: their (`iss`, `sub`) is
    /// the connection's identity (a renewal must carry the same pair), their
    /// `exp` its first deadline.
    pub(crate) registered: Arc<RegisteredClaims>,
    pub(crate) source: TokenSource,
    pub(crate) protocol: Option<Arc<HeaderValue>>,
    pub(crate) settings: Arc<Settings<C>>,
}

impl<C> Clone for Authenticated<C> {
    fn clone(&self) -> Self {
        Self {
            claims: Arc::clone(&self.claims),
            registered: Arc::clone(&self.registered),
            source: self.source,
            protocol: self.protocol.clone(),
            settings: Arc::clone(&self.settings),
        }
    }
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
        registered,
        source,
        protocol,
        settings,
    } = authenticated;
    let id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
    let (iss, sub) = (registered.iss.clone(), registered.sub.clone());
    let identity = Identity::new(id, iss, sub, source, protocol);
    telemetry::connected(&identity, registered.exp);
    let shared = Shared::start(Box::new(transport), settings, identity, claims, registered);
    let half: Arc<dyn Half> = Arc::clone(&shared) as Arc<dyn Half>;
    AuthWebSocket {
        sender: AuthSender {
            slot: shared.writer_slot(),
            shared: Arc::clone(&shared),
            half: Arc::clone(&half),
        },
        receiver: AuthReceiver { shared, half },
    }
}

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
    sender: AuthSender<C>,
    receiver: AuthReceiver<C>,
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
    shared: Arc<Shared<C>>,
    /// The same connection with its claims type erased, for `Clone` and
    /// `Drop`, which cannot require what the connection's code does of `C`.
    half: Arc<dyn Half>,
    /// This sender's place among the writers waiting for the socket.
    slot: Slot,
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
    shared: Arc<Shared<C>>,
    half: Arc<dyn Half>,
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
