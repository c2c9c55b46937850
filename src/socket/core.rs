//! The connection's state, shared by the application's halves and the
//! watchdog task behind one (uncontended) mutex.
//!
//! Reads and writes happen on whichever task asks: the application's, when
//! it calls `recv` or `send`, so a message costs one task wake-up, as with a
//! bare axum socket. Control messages are handled as they are read; their
//! replies wait in a small outbox that every later poll flushes first. The
//! watchdog (see `watchdog.rs`) owns time: the notice, the expiry, and
//! closes requested from outside.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use axum::extract::ws::Message;
use futures_core::Stream;
use futures_sink::Sink;
use futures_util::task::AtomicWaker;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::time::Instant;

use super::clock::{RenewLimiter, SharedDeadline, monotonic_instant_of};
use super::closed;
use crate::config::{Refusal, SessionConfig, Settings};
use crate::protocol::{
    Classified, CloseReason, InvalidControl, RenewRejection, ServerMessage, classify,
};
use crate::telemetry::{self, Connection};
use crate::token::TokenError;

/// The real WebSocket under a connection: axum's `WebSocket`, or an
/// in-memory stand-in in tests.
pub(crate) trait Transport:
    Stream<Item = Result<Message, axum::Error>>
    + Sink<Message, Error = axum::Error>
    + Unpin
    + Send
    + 'static
{
}

impl<T> Transport for T where
    T: Stream<Item = Result<Message, axum::Error>>
        + Sink<Message, Error = axum::Error>
        + Unpin
        + Send
        + 'static
{
}

/// The transport until the connection is over. Shutting it drops the
/// socket, closing the TCP connection whatever halves the application
/// still holds; afterwards it reads as ended and refuses writes.
pub(crate) struct Io(Option<Box<dyn Transport>>);

impl Io {
    pub(crate) fn shut(&mut self) {
        self.0 = None;
    }
}

impl Stream for Io {
    type Item = Result<Message, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match &mut self.0 {
            Some(transport) => Pin::new(transport).poll_next(cx),
            None => Poll::Ready(None),
        }
    }
}

impl Sink<Message> for Io {
    type Error = axum::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match &mut self.0 {
            Some(transport) => Pin::new(transport).poll_ready(cx),
            None => Poll::Ready(Err(closed())),
        }
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        match &mut self.0 {
            Some(transport) => Pin::new(transport).start_send(item),
            None => Err(closed()),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match &mut self.0 {
            Some(transport) => Pin::new(transport).poll_flush(cx),
            None => Poll::Ready(Err(closed())),
        }
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match &mut self.0 {
            Some(transport) => Pin::new(transport).poll_close(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// `exp + leeway` on the monotonic clock.
pub(crate) fn deadline_of(exp: u64, session: &SessionConfig) -> Instant {
    monotonic_instant_of(exp) + session.leeway
}

/// Why the connection is ending, once that is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Close with one of the contract's codes.
    Close(CloseReason),
    /// The application let go of every half: close normally.
    ApplicationDone,
    /// The application sent its own close frame: await the peer's reply.
    ApplicationClosed,
    /// The peer closed or the transport failed: nothing more to send.
    PeerGone,
}

pub(crate) struct Core<C> {
    pub(crate) transport: Io,
    pub(crate) settings: Arc<Settings<C>>,
    pub(crate) connection: Connection,
    pub(crate) exp: u64,
    claims: Arc<C>,
    /// Created on the first `watch_claims`: most applications never ask.
    claims_watch: Option<watch::Sender<Arc<C>>>,
    renewals: RenewLimiter,
    invalid_controls: u32,
    outbox: VecDeque<Message>,
    pub(crate) ending: Option<Ending>,
    pub(crate) notice_sent: bool,
    /// Set when the deadline moved, so the watchdog re-arms its timers.
    pub(crate) rearm: bool,
    /// A sender parked on a full socket, woken when anyone makes the socket
    /// writable again (the transport keeps a single write waker).
    parked_writer: Option<Waker>,
    /// The application's reader, parked until a frame arrives; woken when
    /// the connection ends so its `recv` returns `None` at once.
    parked_reader: Option<Waker>,
}

/// Everything one connection shares between its tasks.
pub(crate) struct Shared<C> {
    core: Mutex<Core<C>>,
    pub(crate) deadline: SharedDeadline,
    watchdog: AtomicWaker,
    senders: AtomicUsize,
    receiver_alive: AtomicBool,
}

impl<C> Shared<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    pub(crate) fn new(
        transport: Box<dyn Transport>,
        settings: Arc<Settings<C>>,
        connection: Connection,
        exp: u64,
        deadline: Instant,
        claims: Arc<C>,
    ) -> Self {
        let session = &settings.session;
        let renewals = RenewLimiter::new(session.renew_limit, session.renew_window);
        Self {
            core: Mutex::new(Core {
                transport: Io(Some(transport)),
                connection,
                exp,
                claims,
                claims_watch: None,
                renewals,
                invalid_controls: 0,
                outbox: VecDeque::new(),
                ending: None,
                notice_sent: false,
                rearm: false,
                parked_writer: None,
                parked_reader: None,
                settings,
            }),
            deadline: SharedDeadline::new(exp, deadline),
            watchdog: AtomicWaker::new(),
            senders: AtomicUsize::new(1),
            receiver_alive: AtomicBool::new(true),
        }
    }

    pub(crate) fn wake_watchdog(&self) {
        self.watchdog.wake();
    }

    pub(crate) fn register_watchdog(&self, waker: &Waker) {
        self.watchdog.register(waker);
    }

    /// Decides how the connection ends (the first decision wins) and tells
    /// the watchdog, which carries it out.
    pub(crate) fn end(&self, core: &mut Core<C>, ending: Ending) {
        if core.ending.is_none() {
            core.ending = Some(ending);
        }
        for parked in [core.parked_reader.take(), core.parked_writer.take()]
            .into_iter()
            .flatten()
        {
            parked.wake();
        }
        self.wake_watchdog();
    }

    pub(crate) fn application_gone(&self) -> bool {
        self.senders.load(Ordering::Acquire) == 0 && !self.receiver_alive.load(Ordering::Acquire)
    }

    pub(crate) fn receiver_alive(&self) -> bool {
        self.receiver_alive.load(Ordering::Acquire)
    }

    /// Reads until an application frame arrives. Control messages are
    /// answered on the way; `deliver` is false when nobody will take
    /// application frames (the watchdog reading for a dropped receiver).
    pub(crate) fn poll_frame(
        &self,
        core: &mut Core<C>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, axum::Error>>> {
        // No clock read here: the one after each frame below is what keeps
        // late frames out, and the watchdog ends an idle connection.
        if core.ending.is_some() {
            return Poll::Ready(None);
        }
        if let Poll::Ready(Err(_)) = self.poll_outbox(core, cx) {
            self.end(core, Ending::PeerGone);
            return Poll::Ready(None);
        }
        loop {
            let Poll::Ready(frame) = Pin::new(&mut core.transport).poll_next(cx) else {
                park(&mut core.parked_reader, cx);
                return Poll::Pending;
            };
            let message = match frame {
                None => {
                    self.end(core, Ending::PeerGone);
                    return Poll::Ready(None);
                }
                Some(Err(error)) => {
                    let ending = if is_capacity_error(&error) {
                        Ending::Close(CloseReason::MessageTooBig)
                    } else {
                        Ending::PeerGone
                    };
                    self.end(core, ending);
                    return Poll::Ready(Some(Err(error)));
                }
                Some(Ok(message)) => message,
            };
            // A frame that arrives after the deadline is dropped.
            if self.deadline.has_passed() {
                self.end(core, Ending::Close(CloseReason::TokenExpired));
                return Poll::Ready(None);
            }
            match &message {
                Message::Text(text) => {
                    match classify(text.as_str(), core.settings.session.max_control_bytes) {
                        Classified::Application => return Poll::Ready(Some(Ok(message))),
                        Classified::Renew { token, id } => self.renew(core, token, id),
                        Classified::Invalid { id, reason } => {
                            self.invalid_control(core, id, reason)
                        }
                    }
                }
                Message::Close(_) => {
                    // Get tungstenite's queued close reply out, then stop.
                    let _ = Pin::new(&mut core.transport).poll_flush(cx);
                    self.end(core, Ending::PeerGone);
                    return Poll::Ready(Some(Ok(message)));
                }
                Message::Ping(_) => {
                    let _ = Pin::new(&mut core.transport).poll_flush(cx);
                    return Poll::Ready(Some(Ok(message)));
                }
                Message::Binary(_) | Message::Pong(_) => return Poll::Ready(Some(Ok(message))),
            }
            if core.ending.is_some() {
                return Poll::Ready(None);
            }
            if let Poll::Ready(Err(_)) = self.poll_outbox(core, cx) {
                self.end(core, Ending::PeerGone);
                return Poll::Ready(None);
            }
        }
    }

    /// Writes queued control frames; Ready(Ok) once the outbox is empty and
    /// flushed.
    pub(crate) fn poll_outbox(
        &self,
        core: &mut Core<C>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), axum::Error>> {
        if core.outbox.is_empty() {
            return Poll::Ready(Ok(()));
        }
        while let Some(message) = core.outbox.pop_front() {
            match Pin::new(&mut core.transport).poll_ready(cx) {
                Poll::Ready(Ok(())) => Pin::new(&mut core.transport).start_send(message)?,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {
                    core.outbox.push_front(message);
                    return Poll::Pending;
                }
            }
        }
        let flushed = Pin::new(&mut core.transport).poll_flush(cx);
        if flushed.is_ready()
            && let Some(writer) = core.parked_writer.take()
        {
            writer.wake();
        }
        flushed
    }

    pub(crate) fn queue_control(&self, core: &mut Core<C>, message: &ServerMessage) {
        core.outbox
            .push_back(Message::Text(message.to_json().into()));
        // Whoever polls next flushes it; the watchdog makes sure someone does.
        self.wake_watchdog();
    }

    pub(crate) fn has_outbox(core: &Core<C>) -> bool {
        !core.outbox.is_empty()
    }

    fn renew(&self, core: &mut Core<C>, token: String, id: Option<String>) {
        if !core.renewals.attempt(Instant::now()) {
            self.end(core, Ending::Close(CloseReason::TooManyRenewals));
            return;
        }
        let checked = core.settings.check_token(&token);
        drop(token);
        let valid = match checked {
            Ok(valid) => valid,
            Err(Refusal::Invalid(error)) => {
                return self.reject(core, RenewRejection::InvalidToken, error.to_string(), id);
            }
            Err(Refusal::InsufficientScope) => {
                return self.reject(
                    core,
                    RenewRejection::InsufficientScope,
                    "insufficient scope".into(),
                    id,
                );
            }
        };
        if valid.sub.as_deref() != core.connection.sub.as_deref() {
            telemetry::subject_change_refused(&core.connection);
            self.end(core, Ending::Close(CloseReason::Forbidden));
            return;
        }
        if valid.exp <= core.exp {
            return self.reject(
                core,
                RenewRejection::InvalidToken,
                TokenError::NotNewer.to_string(),
                id,
            );
        }
        core.exp = valid.exp;
        self.deadline
            .set(valid.exp, deadline_of(valid.exp, &core.settings.session));
        core.claims = Arc::new(valid.claims);
        if let Some(watch) = &core.claims_watch {
            watch.send_replace(Arc::clone(&core.claims));
        }
        core.notice_sent = false;
        core.rearm = true;
        telemetry::renewed(&core.connection, valid.exp);
        self.queue_control(core, &ServerMessage::Renewed { exp: valid.exp, id });
    }

    fn reject(
        &self,
        core: &mut Core<C>,
        error: RenewRejection,
        description: String,
        id: Option<String>,
    ) {
        telemetry::renew_rejected(&core.connection, error, &description);
        self.queue_control(
            core,
            &ServerMessage::RenewRejected {
                error,
                error_description: Some(description),
                id,
            },
        );
    }

    fn invalid_control(&self, core: &mut Core<C>, id: Option<String>, reason: InvalidControl) {
        core.invalid_controls += 1;
        if core.invalid_controls > core.settings.session.invalid_control_limit {
            self.end(core, Ending::Close(CloseReason::BadRequest));
            return;
        }
        self.reject(
            core,
            RenewRejection::InvalidRequest,
            reason.description().into(),
            id,
        );
    }
}

impl<C> Shared<C> {
    pub(crate) fn claims(&self) -> Arc<C> {
        Arc::clone(&self.lock().claims)
    }

    pub(crate) fn watch_claims(&self) -> watch::Receiver<Arc<C>> {
        let mut core = self.lock();
        let current = Arc::clone(&core.claims);
        core.claims_watch
            .get_or_insert_with(|| watch::Sender::new(current))
            .subscribe()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Core<C>> {
        // Every critical section leaves the core consistent, panic or not.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The application's view of a connection, with the claims type erased so
/// the public halves are not generic.
pub(crate) trait Half: Send + Sync {
    fn deadline(&self) -> &SharedDeadline;
    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, axum::Error>>>;
    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), axum::Error>>;
    fn start_send(&self, message: Message) -> Result<(), axum::Error>;
    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<Result<(), axum::Error>>;
    fn sender_cloned(&self);
    fn sender_dropped(&self);
    fn receiver_dropped(&self);
}

impl<C> Half for Shared<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    fn deadline(&self) -> &SharedDeadline {
        &self.deadline
    }

    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, axum::Error>>> {
        let mut core = self.lock();
        self.poll_frame(&mut core, cx)
    }

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        // The deadline is checked in `start_send`, before anything is written.
        let mut core = self.lock();
        if core.ending.is_some() {
            return Poll::Ready(Err(closed()));
        }
        let ready = match self.poll_outbox(&mut core, cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut core.transport).poll_ready(cx),
            other => other,
        };
        match ready {
            Poll::Pending => {
                park(&mut core.parked_writer, cx);
                Poll::Pending
            }
            Poll::Ready(Err(_)) => {
                self.end(&mut core, Ending::PeerGone);
                Poll::Ready(Err(closed()))
            }
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
        }
    }

    fn start_send(&self, message: Message) -> Result<(), axum::Error> {
        let mut core = self.lock();
        // No application frame leaves after the deadline.
        if self.deadline.has_passed() {
            self.end(&mut core, Ending::Close(CloseReason::TokenExpired));
        }
        if core.ending.is_some() {
            return Err(closed());
        }
        let is_close = matches!(message, Message::Close(_));
        Pin::new(&mut core.transport).start_send(message)?;
        if is_close {
            self.end(&mut core, Ending::ApplicationClosed);
        }
        Ok(())
    }

    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        let mut core = self.lock();
        if matches!(core.ending, Some(ending) if ending != Ending::ApplicationClosed) {
            return Poll::Ready(Err(closed()));
        }
        match Pin::new(&mut core.transport).poll_flush(cx) {
            Poll::Pending => {
                park(&mut core.parked_writer, cx);
                Poll::Pending
            }
            other => other,
        }
    }

    fn sender_cloned(&self) {
        self.senders.fetch_add(1, Ordering::AcqRel);
    }

    fn sender_dropped(&self) {
        self.senders.fetch_sub(1, Ordering::AcqRel);
        self.wake_watchdog();
    }

    fn receiver_dropped(&self) {
        self.receiver_alive.store(false, Ordering::Release);
        self.wake_watchdog();
    }
}

/// Remembers the task to wake, without re-cloning the same waker on every
/// poll of a busy connection.
fn park(slot: &mut Option<Waker>, cx: &Context<'_>) {
    if !slot
        .as_ref()
        .is_some_and(|parked| parked.will_wake(cx.waker()))
    {
        *slot = Some(cx.waker().clone());
    }
}

/// Whether the peer sent a message or frame over the size limits.
fn is_capacity_error(error: &axum::Error) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<tungstenite::Error>())
        .is_some_and(|error| matches!(error, tungstenite::Error::Capacity(_)))
}
