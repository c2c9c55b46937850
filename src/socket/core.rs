//! The connection's state, shared by the application's halves and the
//! connection's short-lived tasks behind one (uncontended) mutex.
//!
//! Reads and writes happen on whichever task asks: the application's, when
//! it calls `recv` or `send`, so a message costs one task wake-up, as with a
//! bare axum socket. Control messages are handled as they are read; their
//! replies wait in a small outbox that every later poll flushes first. The
//! layer's timer task (`timers.rs`) wakes the connection for its notice and
//! expiry; whatever ends a connection starts its closing handshake on a
//! short-lived task (`close.rs`), so an idle connection owns no task.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};

use axum::extract::ws::Message;
use futures_core::Stream;
use futures_sink::Sink;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::time::Instant;

use super::clock::{RenewLimiter, SharedDeadline, monotonic_instant_of};
use super::timers::Timed;
use super::{close, closed};
use crate::config::{Refusal, SessionConfig, Settings};
use crate::connections::{Closable, LiveGuard};
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
    claims: Arc<C>,
    /// Created on the first `watch_claims`: most applications never ask.
    claims_watch: Option<watch::Sender<Arc<C>>>,
    renewals: RenewLimiter,
    invalid_controls: u32,
    outbox: VecDeque<Message>,
    pub(crate) ending: Option<Ending>,
    pub(crate) notice_sent: bool,
    /// A sender parked on a full socket, woken when anyone makes the socket
    /// writable again (the transport keeps a single write waker).
    parked_writer: Option<Waker>,
    /// The application's reader, parked until a frame arrives; woken when
    /// the connection ends so its `recv` returns `None` at once.
    parked_reader: Option<Waker>,
    /// When the timer task will next wake this connection.
    armed_at: Option<Instant>,
    /// Registry membership, released when the closing handshake is over.
    pub(crate) live: Option<LiveGuard>,
}

/// Everything one connection shares between its tasks.
pub(crate) struct Shared<C> {
    core: Mutex<Core<C>>,
    pub(crate) deadline: SharedDeadline,
    /// Itself, for starting tasks that outlive the current borrow.
    me: Weak<Shared<C>>,
    closing_started: AtomicBool,
    senders: AtomicUsize,
    receiver_alive: AtomicBool,
}

impl<C> Shared<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    /// Builds the connection, registers it and arms its first timer.
    pub(crate) fn start(
        transport: Box<dyn Transport>,
        settings: Arc<Settings<C>>,
        connection: Connection,
        exp: u64,
        deadline: Instant,
        claims: Arc<C>,
    ) -> Arc<Self> {
        let session = &settings.session;
        let renewals = RenewLimiter::new(session.renew_limit, session.renew_window);
        let id = connection.id;
        let sub = connection.sub.clone();
        let shared = Arc::new_cyclic(|me| Self {
            core: Mutex::new(Core {
                transport: Io(Some(transport)),
                connection,
                claims,
                claims_watch: None,
                renewals,
                invalid_controls: 0,
                outbox: VecDeque::new(),
                ending: None,
                notice_sent: false,
                parked_writer: None,
                parked_reader: None,
                armed_at: None,
                live: None,
                settings,
            }),
            deadline: SharedDeadline::new(exp, deadline),
            me: me.clone(),
            closing_started: AtomicBool::new(false),
            senders: AtomicUsize::new(1),
            receiver_alive: AtomicBool::new(true),
        });
        let settings = Arc::clone(&shared.lock().settings);
        let closable: Weak<dyn Closable> =
            Arc::downgrade(&(Arc::clone(&shared) as Arc<dyn Closable>));
        let live = settings.connections.register(id, sub, closable);
        let mut core = shared.lock();
        core.live = Some(live);
        shared.arm(&mut core);
        drop(core);
        shared
    }

    /// Asks the timer task for a wake-up at the next notice or deadline,
    /// unless one at least as early is already pending.
    fn arm(&self, core: &mut Core<C>) {
        let next = self.next_wake(core);
        if core.armed_at.is_some_and(|armed| armed <= next) {
            return;
        }
        core.armed_at = Some(next);
        let target: Weak<dyn Timed> = self.me.clone();
        core.settings.timers.arm(core.connection.id, next, target);
    }

    fn next_wake(&self, core: &Core<C>) -> Instant {
        let deadline = self.deadline.deadline();
        if core.notice_sent {
            deadline
        } else {
            notice_at(deadline, &core.settings.session).min(deadline)
        }
    }

    /// Decides how the connection ends (the first decision wins), wakes
    /// the application's parked halves, and starts the closing handshake.
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
        if !self.closing_started.swap(true, Ordering::AcqRel)
            && let Some(me) = self.me.upgrade()
        {
            tokio::spawn(close::run(me));
        }
    }

    pub(crate) fn application_gone(&self) -> bool {
        self.senders.load(Ordering::Acquire) == 0 && !self.receiver_alive.load(Ordering::Acquire)
    }

    /// Reads until an application frame arrives, answering control
    /// messages on the way. Called by the application's receiver, or by the
    /// task that reads for a dropped one (which discards what it returns).
    pub(crate) fn poll_frame(
        &self,
        core: &mut Core<C>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, axum::Error>>> {
        // No clock read here: the one after each frame below is what keeps
        // late frames out, and the timer task ends an idle connection.
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

    /// Queues a control frame; the caller flushes it (a reader as it goes
    /// on reading, the timer through `close::flush_now_or_later`).
    pub(crate) fn queue_control(&self, core: &mut Core<C>, message: &ServerMessage) {
        core.outbox
            .push_back(Message::Text(message.to_json().into()));
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
        if valid.exp <= self.deadline.exp() {
            return self.reject(
                core,
                RenewRejection::InvalidToken,
                TokenError::NotNewer.to_string(),
                id,
            );
        }
        self.deadline
            .set(valid.exp, deadline_of(valid.exp, &core.settings.session));
        core.claims = Arc::new(valid.claims);
        if let Some(watch) = &core.claims_watch {
            watch.send_replace(Arc::clone(&core.claims));
        }
        core.notice_sent = false;
        self.arm(core);
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
        self.after_half_dropped();
    }

    fn receiver_dropped(&self) {
        self.receiver_alive.store(false, Ordering::Release);
        self.after_half_dropped();
        // Nobody reads any more: keep answering control messages (and seeing
        // the peer's close) on a task of the connection's own.
        if !self.application_gone()
            && let Some(me) = self.me.upgrade()
        {
            tokio::spawn(close::read_for_dropped_receiver(me));
        }
    }
}

impl<C> Shared<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    fn after_half_dropped(&self) {
        if self.application_gone() {
            let mut core = self.lock();
            self.end(&mut core, Ending::ApplicationDone);
        }
    }
}

impl<C> Drop for Shared<C> {
    fn drop(&mut self) {
        let core = self.core.get_mut().unwrap_or_else(PoisonError::into_inner);
        core.settings.timers.cancel(core.connection.id);
    }
}

impl<C> Timed for Shared<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    fn fire(self: Arc<Self>) -> Option<Instant> {
        let mut core = self.lock();
        core.armed_at = None;
        if core.ending.is_some() {
            return None;
        }
        if self.deadline.has_passed() {
            self.end(&mut core, Ending::Close(CloseReason::TokenExpired));
            return None;
        }
        let deadline = self.deadline.deadline();
        let leeway = core.settings.session.leeway;
        if !core.notice_sent && Instant::now() >= notice_at(deadline, &core.settings.session) {
            core.notice_sent = true;
            let exp_at = deadline - leeway;
            let expires_in = exp_at.saturating_duration_since(Instant::now()).as_secs();
            telemetry::expiring(&core.connection, self.deadline.exp(), expires_in);
            let notice = ServerMessage::Expiring {
                exp: self.deadline.exp(),
                expires_in,
            };
            self.queue_control(&mut core, &notice);
            close::flush_now_or_later(&self, &mut core);
        }
        let next = self.next_wake(&core);
        core.armed_at = Some(next);
        Some(next)
    }
}

impl<C> Closable for Shared<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    fn request_close(&self, reason: CloseReason) {
        let mut core = self.lock();
        self.end(&mut core, Ending::Close(reason));
    }
}

/// When to send `auth.expiring`: `notify_before` ahead of `exp` (not of the
/// leeway-extended deadline), or at once if that moment has passed.
fn notice_at(deadline: Instant, session: &SessionConfig) -> Instant {
    let exp_at = deadline - session.leeway;
    exp_at
        .checked_sub(session.notify_before)
        .unwrap_or_else(Instant::now)
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
