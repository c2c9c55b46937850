//! The connection's state, shared by the application's halves, the layer's
//! timer task and the connection's short-lived tasks behind one
//! (uncontended) mutex.
//!
//! Reads and writes happen on whichever task asks: the application's, when
//! it calls `recv` or `send`, so a message costs one task wake-up, as with a
//! bare axum socket. Control messages are handled as they are read
//! (`renew.rs`); their replies, like the timer's notices, wait in a small
//! outbox that goes out as soon as the transport takes writes, on a flush
//! task of its own when the transport is full. Whatever ends a connection
//! starts its closing handshake on a short-lived task (`close.rs`), so an
//! idle connection owns no task.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError, Weak};
use std::task::{Context, Poll, Waker};

use axum::extract::ws::Message;
use futures_core::Stream;
use futures_sink::Sink;
use serde::de::DeserializeOwned;
use tokio::runtime::Handle;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use super::clock::{RenewLimiter, SharedDeadline};
use super::transport::{Io, Slot, Transport, Writers};
use super::{close, closed};
use crate::config::{SessionConfig, Settings};
use crate::connection::{AuthEvent, Closable, EndReason, Identity, LiveGuard};
use crate::protocol::{Classified, ServerMessage, classify};
use crate::telemetry::{self, Active};
use crate::timers::{Fired, Timed};
use crate::token::RegisteredClaims;

pub(crate) struct Core<C> {
    pub(crate) transport: Io,
    pub(crate) settings: Arc<Settings<C>>,
    pub(super) claims: Arc<C>,
    pub(super) registered: Arc<RegisteredClaims>,
    /// Created on the first `watch_claims`: most applications never ask.
    pub(super) claims_watch: Option<watch::Sender<Arc<C>>>,
    /// Created on the first `events`: most applications never ask.
    events: Option<broadcast::Sender<AuthEvent>>,
    pub(super) renewals: RenewLimiter,
    pub(super) invalid_controls: u32,
    /// Control frames not yet handed to the transport.
    outbox: VecDeque<Message>,
    /// A control frame was handed to the transport and not yet flushed.
    control_unflushed: bool,
    /// A task is flushing control frames the transport had no room for.
    flushing: bool,
    /// Why the connection ended, once that is decided (the first
    /// decision wins).
    pub(crate) ending: Option<EndReason>,
    pub(super) notice_sent: bool,
    /// The application's reader, parked until a frame arrives; woken when
    /// the connection ends so its `recv` returns `None` at once.
    parked_reader: Option<Waker>,
    /// This connection's entry in the layer's timer schedule.
    armed_at: Option<Instant>,
    /// Registry membership, released when the closing handshake is over.
    pub(crate) live: Option<LiveGuard>,
}

/// Everything one connection shares between its tasks.
pub(crate) struct Shared<C> {
    core: Mutex<Core<C>>,
    pub(crate) identity: Identity,
    _active: Active,
    pub(crate) deadline: SharedDeadline,
    /// Itself, for starting tasks that outlive the current borrow.
    me: Weak<Shared<C>>,
    /// Every task waiting to write, and the one waker the transport sees.
    writers: Arc<Writers>,
    write_waker: Waker,
    /// The runtime the connection started on: its tasks are started there,
    /// whichever thread drops the application's last half.
    runtime: Handle,
    closing_started: AtomicBool,
    /// Senders plus the receiver the application still holds; whoever
    /// takes it to zero ends the connection.
    halves: AtomicUsize,
}

impl<C> Shared<C> {
    /// A writer's slot for a task of the connection's own.
    pub(super) fn writer_slot(&self) -> Slot {
        self.writers.slot()
    }
}

impl<C> Shared<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    /// Builds the connection, registers it and arms its first timer.
    pub(crate) fn start(
        transport: Box<dyn Transport>,
        settings: Arc<Settings<C>>,
        identity: Identity,
        exp: u64,
        claims: Arc<C>,
        registered: Arc<RegisteredClaims>,
    ) -> Arc<Self> {
        let session = &settings.session;
        let renewals = RenewLimiter::new(session.renew_limit, session.renew_window);
        let deadline = SharedDeadline::new(exp, session.leeway);
        let id = identity.connection_id();
        let sub = identity.shared_subject();
        let writers = Arc::new(Writers::default());
        let shared = Arc::new_cyclic(|me| Self {
            core: Mutex::new(Core {
                transport: Io::new(transport),
                claims,
                registered,
                claims_watch: None,
                events: None,
                renewals,
                invalid_controls: 0,
                outbox: VecDeque::new(),
                control_unflushed: false,
                flushing: false,
                ending: None,
                notice_sent: false,
                parked_reader: None,
                armed_at: None,
                live: None,
                settings,
            }),
            identity,
            _active: Active::new(),
            deadline,
            me: me.clone(),
            write_waker: writers.waker(),
            writers,
            runtime: Handle::current(),
            closing_started: AtomicBool::new(false),
            halves: AtomicUsize::new(2),
        });
        let settings = Arc::clone(&shared.lock().settings);
        let closable: Weak<dyn Closable> =
            Arc::downgrade(&(Arc::clone(&shared) as Arc<dyn Closable>));
        let (live, shutting_down) = settings.connections.register(id, sub, closable);
        let mut core = shared.lock();
        core.live = Some(live);
        if shutting_down {
            shared.end(&mut core, EndReason::ServerShutdown);
        } else {
            shared.arm(&mut core);
        }
        drop(core);
        shared
    }

    /// Asks the timer task for a wake-up at the next notice or deadline,
    /// unless one at least as early is already pending.
    pub(super) fn arm(&self, core: &mut Core<C>) {
        let next = self.next_wake(core);
        if core.armed_at.is_some_and(|armed| armed <= next) {
            return;
        }
        let target: Weak<dyn Timed> = self.me.clone();
        core.settings
            .timers
            .arm(self.identity.connection_id(), core.armed_at, next, target);
        core.armed_at = Some(next);
    }

    fn next_wake(&self, core: &Core<C>) -> Instant {
        let deadline = self.deadline.deadline();
        if core.notice_sent {
            deadline
        } else {
            notice_at(self.deadline.exp_at(), &core.settings.session).min(deadline)
        }
    }

    /// Decides how the connection ends (the first decision wins), wakes
    /// every parked half, and starts the closing handshake.
    pub(crate) fn end(&self, core: &mut Core<C>, ending: EndReason) {
        if core.ending.is_none() {
            core.ending = Some(ending);
        }
        if let Some(reader) = core.parked_reader.take() {
            reader.wake();
        }
        self.writers.wake_all();
        if !self.closing_started.swap(true, Ordering::AcqRel)
            && let Some(me) = self.me.upgrade()
        {
            self.runtime.spawn(close::run(me));
        }
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
        loop {
            let Poll::Ready(frame) = Pin::new(&mut core.transport).poll_next(cx) else {
                park(&mut core.parked_reader, cx);
                return Poll::Pending;
            };
            let message = match frame {
                None => {
                    self.end(core, EndReason::ConnectionLost);
                    return Poll::Ready(None);
                }
                Some(Err(error)) => {
                    let ending = if is_capacity_error(&error) {
                        EndReason::MessageTooBig
                    } else {
                        EndReason::ConnectionLost
                    };
                    self.end(core, ending);
                    return Poll::Ready(Some(Err(error)));
                }
                Some(Ok(message)) => message,
            };
            // A frame that arrives after the deadline is dropped.
            if self.deadline.has_passed() {
                self.end(core, EndReason::Expired);
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
                Message::Close(frame) => {
                    // Get tungstenite's queued close reply out, then stop.
                    core.control_unflushed = true;
                    self.flush_control(core);
                    let (code, reason) = frame.as_ref().map_or((1005, String::new()), |frame| {
                        (frame.code, frame.reason.as_str().to_owned())
                    });
                    self.end(core, EndReason::PeerClosed { code, reason });
                    return Poll::Ready(Some(Ok(message)));
                }
                Message::Ping(_) => {
                    // tungstenite queued the pong; see it out.
                    core.control_unflushed = true;
                    self.flush_control(core);
                    return Poll::Ready(Some(Ok(message)));
                }
                Message::Binary(_) | Message::Pong(_) => return Poll::Ready(Some(Ok(message))),
            }
            if core.ending.is_some() {
                return Poll::Ready(None);
            }
        }
    }

    /// Queues a control frame and sends it as soon as the transport takes it.
    pub(super) fn send_control(&self, core: &mut Core<C>, message: &ServerMessage) {
        core.outbox
            .push_back(Message::Text(message.to_json().into()));
        self.flush_control(core);
    }

    /// Writes and flushes queued control frames now if the transport takes
    /// them, or on a flush task as soon as it does, whatever the
    /// application is doing.
    fn flush_control(&self, core: &mut Core<C>) {
        match self.poll_control(core, &mut Context::from_waker(&self.write_waker)) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => self.end(core, EndReason::ConnectionLost),
            Poll::Pending => {
                if !core.flushing
                    && core.ending.is_none()
                    && let Some(me) = self.me.upgrade()
                {
                    core.flushing = true;
                    self.runtime.spawn(close::flush(me));
                }
            }
        }
    }

    /// Writes queued control frames; Ready(Ok) once none is left unflushed.
    /// `cx` must carry the connection's write waker.
    fn poll_control(
        &self,
        core: &mut Core<C>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), axum::Error>> {
        while let Some(message) = core.outbox.pop_front() {
            match Pin::new(&mut core.transport).poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    Pin::new(&mut core.transport).start_send(message)?;
                    core.control_unflushed = true;
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {
                    core.outbox.push_front(message);
                    return Poll::Pending;
                }
            }
        }
        if core.control_unflushed {
            std::task::ready!(Pin::new(&mut core.transport).poll_flush(cx))?;
            core.control_unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    /// One step of the flush task: Ready once nothing is left to flush or
    /// the connection is ending (the closing handshake sends the rest).
    pub(super) fn poll_flush_task(&self, slot: Slot, cx: &mut Context<'_>) -> Poll<()> {
        let mut core = self.lock();
        if core.ending.is_some() {
            core.flushing = false;
            return Poll::Ready(());
        }
        let seen = self.writers.seen();
        match self.poll_control(&mut core, &mut Context::from_waker(&self.write_waker)) {
            Poll::Pending => {
                self.writers.park(slot, cx.waker(), seen);
                Poll::Pending
            }
            Poll::Ready(result) => {
                core.flushing = false;
                if result.is_err() {
                    self.end(&mut core, EndReason::ConnectionLost);
                }
                Poll::Ready(())
            }
        }
    }

    /// Sends what is queued, then `goodbye`, for the closing handshake.
    pub(super) fn poll_goodbye(
        &self,
        goodbye: &mut Option<Message>,
        slot: Slot,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), axum::Error>> {
        let mut core = self.lock();
        let seen = self.writers.seen();
        let mut wcx = Context::from_waker(&self.write_waker);
        let mut step = || -> Poll<Result<(), axum::Error>> {
            std::task::ready!(self.poll_control(&mut core, &mut wcx))?;
            if goodbye.is_some() {
                std::task::ready!(Pin::new(&mut core.transport).poll_ready(&mut wcx))?;
                if let Some(message) = goodbye.take() {
                    Pin::new(&mut core.transport).start_send(message)?;
                }
            }
            Pin::new(&mut core.transport).poll_flush(&mut wcx)
        };
        let result = step();
        if result.is_pending() {
            self.writers.park(slot, cx.waker(), seen);
        }
        result
    }

    /// Ends the connection for good: the socket is dropped and the registry
    /// entry released, whatever the application still holds.
    pub(super) fn finish(&self) {
        let mut core = self.lock();
        core.transport.shut();
        core.live = None;
        drop(core);
        self.writers.wake_all();
    }

    pub(super) fn half_dropped(&self) -> bool {
        if self.halves.fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut core = self.lock();
            self.end(&mut core, EndReason::Dropped);
            return true;
        }
        false
    }
}

impl<C> Core<C> {
    /// Tells the application's event subscribers, if any.
    pub(super) fn emit(&self, event: AuthEvent) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }
}

impl<C> Shared<C> {
    pub(crate) fn claims(&self) -> Arc<C> {
        Arc::clone(&self.lock().claims)
    }

    pub(crate) fn registered(&self) -> Arc<RegisteredClaims> {
        Arc::clone(&self.lock().registered)
    }

    pub(crate) fn events(&self) -> broadcast::Receiver<AuthEvent> {
        self.lock()
            .events
            .get_or_insert_with(|| broadcast::Sender::new(EVENTS_BUFFERED))
            .subscribe()
    }

    pub(crate) fn watch_claims(&self) -> watch::Receiver<Arc<C>> {
        let mut core = self.lock();
        let current = Arc::clone(&core.claims);
        core.claims_watch
            .get_or_insert_with(|| watch::Sender::new(current))
            .subscribe()
    }

    /// Why the connection ended, once it has.
    pub(crate) fn end_reason(&self) -> Option<EndReason> {
        self.lock().ending.clone()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Core<C>> {
        // Every critical section leaves the core consistent, panic or not.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The application's view of a connection, with the claims type erased so
/// the public halves are not generic.
pub(crate) trait Half: Send + Sync {
    #[cfg(test)]
    fn deadline(&self) -> &SharedDeadline;
    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, axum::Error>>>;
    fn poll_ready(&self, slot: Slot, cx: &mut Context<'_>) -> Poll<Result<(), axum::Error>>;
    fn start_send(&self, message: Message) -> Result<(), axum::Error>;
    fn poll_flush(&self, slot: Slot, cx: &mut Context<'_>) -> Poll<Result<(), axum::Error>>;
    /// A new sender: counted as a half, given a writer's slot.
    fn sender_cloned(&self) -> Slot;
    fn sender_dropped(&self, slot: Slot);
    fn receiver_dropped(&self);
    /// Control frames are waiting to be written or flushed.
    #[cfg(test)]
    fn control_pending(&self) -> bool;
    #[cfg(test)]
    fn parked_writers(&self) -> usize;
}

impl<C> Half for Shared<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    #[cfg(test)]
    fn deadline(&self) -> &SharedDeadline {
        &self.deadline
    }

    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, axum::Error>>> {
        let mut core = self.lock();
        self.poll_frame(&mut core, cx)
    }

    fn poll_ready(&self, slot: Slot, cx: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        // The deadline is checked in `start_send`, before anything is written.
        let mut core = self.lock();
        if core.ending.is_some() {
            return Poll::Ready(Err(closed()));
        }
        let seen = self.writers.seen();
        let mut wcx = Context::from_waker(&self.write_waker);
        // Control frames first: a notice or renewal answer never waits
        // behind the application's backlog.
        let ready = match self.poll_control(&mut core, &mut wcx) {
            Poll::Ready(Ok(())) => Pin::new(&mut core.transport).poll_ready(&mut wcx),
            other => other,
        };
        match ready {
            Poll::Pending => {
                self.writers.park(slot, cx.waker(), seen);
                Poll::Pending
            }
            Poll::Ready(Err(_)) => {
                self.end(&mut core, EndReason::ConnectionLost);
                Poll::Ready(Err(closed()))
            }
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
        }
    }

    fn start_send(&self, message: Message) -> Result<(), axum::Error> {
        let mut core = self.lock();
        // No application frame leaves after the deadline.
        if self.deadline.has_passed() {
            self.end(&mut core, EndReason::Expired);
        }
        if core.ending.is_some() {
            return Err(closed());
        }
        let is_close = matches!(message, Message::Close(_));
        Pin::new(&mut core.transport).start_send(message)?;
        if is_close {
            self.end(&mut core, EndReason::ApplicationClosed);
        }
        Ok(())
    }

    fn poll_flush(&self, slot: Slot, cx: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        let mut core = self.lock();
        match &core.ending {
            // The peer is gone: what was not flushed never will be.
            Some(ending) if ending.is_peer() => return Poll::Ready(Err(closed())),
            // The server is closing: frames accepted before go out ahead of
            // the close frame, on the closing task.
            Some(ending) if *ending != EndReason::ApplicationClosed => {
                return Poll::Ready(Ok(()));
            }
            _ => {}
        }
        let seen = self.writers.seen();
        match Pin::new(&mut core.transport).poll_flush(&mut Context::from_waker(&self.write_waker))
        {
            Poll::Pending => {
                self.writers.park(slot, cx.waker(), seen);
                Poll::Pending
            }
            Poll::Ready(Ok(())) => {
                core.control_unflushed = false;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
        }
    }

    fn sender_cloned(&self) -> Slot {
        self.halves.fetch_add(1, Ordering::Relaxed);
        self.writers.slot()
    }

    fn sender_dropped(&self, slot: Slot) {
        self.writers.leave(slot);
        self.half_dropped();
    }

    #[cfg(test)]
    fn parked_writers(&self) -> usize {
        self.writers.parked_count()
    }

    #[cfg(test)]
    fn control_pending(&self) -> bool {
        let core = self.lock();
        !core.outbox.is_empty() || core.control_unflushed
    }

    fn receiver_dropped(&self) {
        // Nobody reads any more: keep answering control messages (and seeing
        // the peer's close) on a task of the connection's own.
        if !self.half_dropped()
            && let Some(me) = self.me.upgrade()
        {
            self.runtime.spawn(close::read_for_dropped_receiver(me));
        }
    }
}

impl<C> Drop for Shared<C> {
    fn drop(&mut self) {
        let core = self.core.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(armed) = core.armed_at {
            core.settings
                .timers
                .cancel(self.identity.connection_id(), armed);
        }
    }
}

impl<C> Timed for Shared<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    fn fire(self: Arc<Self>, fired: Instant) -> Fired {
        // Never wait for a connection's lock here: the timer task serves
        // every connection of the layer.
        let mut core = match self.core.try_lock() {
            Ok(core) => core,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Fired::Busy,
        };
        // Every entry at or before the one firing has left the schedule.
        if core.armed_at.is_some_and(|armed| armed <= fired) {
            core.armed_at = None;
        }
        if core.ending.is_some() {
            return Fired::Done;
        }
        // Every token gets its notice, even one whose notice and deadline
        // fall together (no notice window, no leeway).
        let exp_at = self.deadline.exp_at();
        if !core.notice_sent && Instant::now() >= notice_at(exp_at, &core.settings.session) {
            let expires_in = exp_at.saturating_duration_since(Instant::now()).as_secs();
            let notice = ServerMessage::Expiring {
                exp: self.deadline.exp(),
                expires_in,
            };
            self.send_control(&mut core, &notice);
            core.notice_sent = true;
            core.emit(AuthEvent::Expiring {
                exp: self.deadline.exp(),
                expires_in,
            });
            // Last: a panicking log or metrics hook must not lose the notice.
            telemetry::expiring(&self.identity, self.deadline.exp(), expires_in);
        }
        if self.deadline.has_passed() {
            self.end(&mut core, EndReason::Expired);
            return Fired::Done;
        }
        self.arm(&mut core);
        Fired::Done
    }
}

impl<C> Closable for Shared<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    fn request_close(&self, reason: EndReason) {
        let mut core = self.lock();
        self.end(&mut core, reason);
    }
}

/// Events kept for a subscriber that falls behind; older ones are dropped
/// (it sees `RecvError::Lagged`), never the connection's own work.
const EVENTS_BUFFERED: usize = 16;

/// When to send `auth.expiring`: `notify_before` ahead of `exp` (not of the
/// leeway-extended deadline), or at once if that moment has passed.
fn notice_at(exp_at: Instant, session: &SessionConfig) -> Instant {
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
