//! The connection's state, shared by the application's halves, the layer's
//! timer task and the connection's short-lived tasks behind one
//! (uncontended) mutex: how a connection starts, ends, and counts its
//! halves. What happens on it lives beside this file: the frame loop
//! (`read.rs`), the write path with its control outbox (`write.rs`),
//! renewal (`renew.rs`), re-authentication requests (`reauth.rs`), reading
//! ahead for a renewal the application does not read (`ahead.rs`), the
//! timer's notice and expiry (`expiry.rs`) and the
//! short-lived tasks (`close.rs`). An idle connection owns no task.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::Waker;
use std::time::Duration;

use axum::extract::ws::Message;
use serde::de::DeserializeOwned;
use tokio::runtime::Handle;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::clock::{RenewLimiter, SharedDeadline};
use super::stash::ReadAhead;
use super::transport::{Io, Slot, Transport, Writers};
use crate::config::Settings;
use crate::connection::{AuthEvent, Closable, EndReason, Identity, LiveGuard};
use crate::telemetry::Active;
use crate::timers::Timed;
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
    /// Created on the first `closed`; notified when `ending` is set.
    on_end: Option<Arc<Notify>>,
    pub(super) renewals: RenewLimiter,
    pub(super) invalid_controls: u32,
    /// Control frames not yet handed to the transport.
    pub(super) outbox: VecDeque<Message>,
    /// A control frame was handed to the transport and not yet flushed.
    pub(super) control_unflushed: bool,
    /// A task is flushing control frames the transport had no room for.
    pub(super) flushing: bool,
    /// Why the connection ended, once that is decided (the first
    /// decision wins).
    pub(crate) ending: Option<EndReason>,
    /// An `auth.expiring` went out and no renewal has landed since: someone
    /// must read (`ahead.rs`).
    pub(super) notice_sent: bool,
    /// Whether the application is sure to read (`ahead.rs`).
    pub(super) receiver: Receiver,
    /// Frames read ahead for an application that is not reading, and the
    /// renewal reader's wakers; allocated only while either exists.
    pub(super) read_ahead: Option<Box<ReadAhead>>,
    /// The policy check of a renewal, while it runs (one at a time).
    pub(super) renewal_check: Option<AbortHandle>,
    /// The application's reader, parked until a frame arrives; woken when
    /// the connection ends so its `recv` returns `None` at once.
    pub(super) parked_reader: Option<Waker>,
    /// This connection's entry in the layer's timer schedule.
    pub(super) armed_at: Option<Instant>,
    /// Registry membership, released when the closing handshake is over.
    pub(crate) live: Option<LiveGuard>,
}

/// The application's receiver, as far as reading for a renewal cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Receiver {
    /// Held, and not known to be waiting for a frame.
    Held,
    /// Parked in `recv` (only `recv` sets this: its future puts `Held`
    /// back if dropped before it is done, which a `Stream` poll cannot),
    /// so it reads as soon as a frame arrives.
    Reading,
    /// Dropped: a task reads in its place.
    Dropped,
}

/// Everything one connection shares between its tasks.
pub(crate) struct Shared<C> {
    pub(super) core: Mutex<Core<C>>,
    pub(crate) identity: Identity,
    _active: Active,
    pub(crate) deadline: SharedDeadline,
    /// Itself, for starting tasks that outlive the current borrow.
    pub(super) me: Weak<Shared<C>>,
    /// Every task waiting to write, and the one waker the transport sees.
    pub(super) writers: Arc<Writers>,
    pub(super) write_waker: Waker,
    /// The runtime the connection started on: its tasks are started there,
    /// whichever thread drops the application's last half.
    pub(super) runtime: Handle,
    closing_started: AtomicBool,
    /// Senders plus the receiver the application still holds; whoever
    /// takes it to zero ends the connection.
    halves: AtomicUsize,
    /// Renewal readers whose task has not ended.
    #[cfg(test)]
    pub(super) renewal_readers: Arc<AtomicUsize>,
}

impl<C> Shared<C> {
    /// A writer's slot for a task of the connection's own.
    pub(super) fn writer_slot(&self) -> Slot {
        self.writers.slot()
    }

    /// Counts a renewal reader until the returned guard (held by its task)
    /// is dropped.
    #[cfg(test)]
    pub(super) fn renewal_reader_started(&self) -> impl Drop + Send + use<C> {
        struct Alive(Arc<AtomicUsize>);
        impl Drop for Alive {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.renewal_readers.fetch_add(1, Ordering::SeqCst);
        Alive(Arc::clone(&self.renewal_readers))
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
        claims: Arc<C>,
        registered: Arc<RegisteredClaims>,
    ) -> Arc<Self> {
        let session = &settings.session;
        let deadline = SharedDeadline::new(registered.exp, session.leeway);
        let id = identity.connection_id();
        let writers = Arc::new(Writers::default());
        let shared = Arc::new_cyclic(|me| Self {
            core: Mutex::new(Core {
                transport: Io::new(transport),
                claims,
                registered: Arc::clone(&registered),
                claims_watch: None,
                events: None,
                on_end: None,
                renewals: RenewLimiter::default(),
                invalid_controls: 0,
                outbox: VecDeque::new(),
                control_unflushed: false,
                flushing: false,
                ending: None,
                notice_sent: false,
                receiver: Receiver::Held,
                read_ahead: None,
                renewal_check: None,
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
            #[cfg(test)]
            renewal_readers: Arc::default(),
        });
        let settings = Arc::clone(&shared.lock().settings);
        let closable: Weak<dyn Closable> =
            Arc::downgrade(&(Arc::clone(&shared) as Arc<dyn Closable>));
        let (live, ending) = settings.connections.register(id, &registered, closable);
        let mut core = shared.lock();
        core.live = Some(live);
        if let Some(ending) = ending {
            shared.end(&mut core, ending);
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
            self.notice_at(&core.settings.session).min(deadline)
        }
    }

    /// Decides how the connection ends (the first decision wins), wakes
    /// every parked half, and starts the closing handshake.
    pub(crate) fn end(&self, core: &mut Core<C>, ending: EndReason) {
        if core.ending.is_none() {
            core.ending = Some(ending);
            if let Some(on_end) = &core.on_end {
                on_end.notify_waiters();
            }
        }
        if let Some(check) = core.renewal_check.take() {
            check.abort();
        }
        if let Some(reader) = core.parked_reader.take() {
            reader.wake();
        }
        if let Some(ahead) = &core.read_ahead {
            ahead.wake_readers();
        }
        // Frames read ahead are handed over after the peer's close (as the
        // application's own reads would have), never after the server's.
        if !core.ending.as_ref().is_some_and(EndReason::is_peer) {
            self.drop_kept(core);
        }
        self.writers.wake_all();
        if !self.closing_started.swap(true, Ordering::AcqRel)
            && let Some(me) = self.me.upgrade()
        {
            self.start_closing(me);
        }
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

    /// A sender was cloned: one more half holds the connection.
    pub(super) fn half_added(&self) {
        self.halves.fetch_add(1, Ordering::Relaxed);
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

    /// Completes with the end reason once the connection has ended.
    /// Cancel-safe: dropping it unregisters it.
    pub(crate) async fn closed(&self) -> EndReason {
        let on_end = {
            let mut core = self.lock();
            if let Some(ending) = &core.ending {
                return ending.clone();
            }
            Arc::clone(core.on_end.get_or_insert_with(Default::default))
        };
        loop {
            let notified = on_end.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check: an end decided in between
            // still wakes it.
            notified.as_mut().enable();
            if let Some(ending) = self.end_reason() {
                return ending;
            }
            notified.await;
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Core<C>> {
        // Every critical section leaves the core consistent, panic or not.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
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

impl<C> Closable for Shared<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn close_if(&self, matches: &dyn Fn(&RegisteredClaims) -> bool, reason: EndReason) -> bool {
        let mut core = self.lock();
        if core.ending.is_some() || !matches(&core.registered) {
            return false;
        }
        self.end(&mut core, reason);
        true
    }

    fn reauthenticate_if(
        &self,
        matches: &dyn Fn(&RegisteredClaims) -> bool,
        grace: Duration,
    ) -> bool {
        self.request_reauth(matches, grace)
    }
}

/// Events kept for a subscriber that falls behind; older ones are dropped
/// (it sees `RecvError::Lagged`), never the connection's own work.
const EVENTS_BUFFERED: usize = 16;
