//! The real WebSocket under a connection, and the wakers of everyone
//! waiting to write to it.
//!
//! A transport remembers one write waker (tokio-tungstenite keeps a single
//! slot), but a connection has any number of writers: every clone of the
//! application's sender, the task that flushes control frames, the closing
//! handshake. So the transport only ever sees the connection's own
//! [`Writers`] waker, and that waker wakes every task parked on it.
//!
//! The read side usually has one reader, the application's. Only while the
//! connection reads ahead for a renewal (`ahead.rs`) are there two, and then
//! the transport sees a [`Readers`] waker that wakes both.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use axum::extract::ws::Message;
use futures_core::Stream;
use futures_sink::Sink;

use super::closed;

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
    pub(crate) fn new(transport: Box<dyn Transport>) -> Self {
        Self(Some(transport))
    }

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

/// Every task waiting for the transport to take writes, one slot per
/// writer: a sender whose attempts are abandoned (a timeout, a `select!`)
/// keeps one waker parked, not one per attempt, and a dropped sender
/// leaves.
#[derive(Default)]
pub(crate) struct Writers {
    parked: Mutex<Vec<(Slot, Waker)>>,
    /// How many are parked, readable without the lock: the transport wakes
    /// this on every readiness change, and usually nobody is parked.
    parked_len: AtomicUsize,
    /// Bumped by every wake, so a task that parks just after a wake it
    /// did not see is woken at once instead of being lost.
    wakes: AtomicU64,
    next_slot: AtomicU64,
}

/// A writer's place among the parked ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot(u64);

/// What a writer saw before polling the transport; hand it back to
/// [`Writers::park`] if the poll was pending.
#[derive(Clone, Copy)]
pub(crate) struct Seen(u64);

impl Writers {
    /// The waker to give the transport for every write-side poll; made
    /// once per connection.
    pub(crate) fn waker(self: &Arc<Self>) -> Waker {
        Waker::from(Arc::clone(self))
    }

    /// A slot for a new writer.
    pub(crate) fn slot(&self) -> Slot {
        Slot(self.next_slot.fetch_add(1, Ordering::Relaxed))
    }

    /// Read before polling the transport, to park with if the poll is
    /// pending.
    pub(crate) fn seen(&self) -> Seen {
        Seen(self.wakes.load(Ordering::SeqCst))
    }

    fn parked(&self) -> std::sync::MutexGuard<'_, Vec<(Slot, Waker)>> {
        self.parked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Parks `waker` in `slot` until the transport can take writes again
    /// (or the connection ends).
    pub(crate) fn park(&self, slot: Slot, waker: &Waker, seen: Seen) {
        let mut parked = self.parked();
        match parked.iter_mut().find(|(taken, _)| *taken == slot) {
            Some((_, parked)) if parked.will_wake(waker) => {}
            Some((_, parked)) => parked.clone_from(waker),
            None => parked.push((slot, waker.clone())),
        }
        // Published before the wake count is read: a wake that reads no
        // parked writer has bumped the count first, and is seen here.
        self.parked_len.store(parked.len(), Ordering::SeqCst);
        if self.wakes.load(Ordering::SeqCst) != seen.0 {
            drop(parked);
            waker.wake_by_ref();
        }
    }

    /// A writer is gone: forget its waker.
    pub(crate) fn leave(&self, slot: Slot) {
        let mut parked = self.parked();
        parked.retain(|(taken, _)| *taken != slot);
        self.parked_len.store(parked.len(), Ordering::SeqCst);
    }

    /// Wakes every parked writer.
    pub(crate) fn wake_all(&self) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        if self.parked_len.load(Ordering::SeqCst) == 0 {
            return;
        }
        let parked = {
            let mut parked = self.parked();
            self.parked_len.store(0, Ordering::SeqCst);
            std::mem::take(&mut *parked)
        };
        for (_, waker) in parked {
            waker.wake();
        }
    }

    #[cfg(test)]
    pub(crate) fn parked_count(&self) -> usize {
        self.parked().len()
    }
}

impl Wake for Writers {
    fn wake(self: Arc<Self>) {
        self.wake_all();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_all();
    }
}

/// Who reads a connection's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reader {
    /// The application's receiver (or, once it is dropped, the task that
    /// reads in its place).
    Application,
    /// The connection's renewal reader, between a notice and its renewal.
    Renewal,
}

/// The two readers of a transport that remembers one read waker: made
/// when the renewal reader starts and dropped when it ends, so a
/// connection pays for it only while both may read.
#[derive(Debug, Default)]
pub(crate) struct Readers {
    parked: Mutex<[Option<Waker>; 2]>,
}

impl Readers {
    /// A fan-out whose application slot starts with the waker the
    /// application last parked with (the transport may hold only that one
    /// until the renewal reader polls), and the waker to give the transport.
    pub(crate) fn new(application: Option<Waker>) -> (Arc<Self>, Waker) {
        let readers = Arc::new(Self {
            parked: Mutex::new([application, None]),
        });
        let waker = Waker::from(Arc::clone(&readers));
        (readers, waker)
    }

    fn parked(&self) -> std::sync::MutexGuard<'_, [Option<Waker>; 2]> {
        self.parked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Parks `reader`'s waker. Called before the transport is polled, so a
    /// frame that arrives in between wakes it.
    pub(crate) fn park(&self, reader: Reader, waker: &Waker) {
        let mut parked = self.parked();
        let slot = &mut parked[reader as usize];
        match slot {
            Some(parked) if parked.will_wake(waker) => {}
            Some(parked) => parked.clone_from(waker),
            None => *slot = Some(waker.clone()),
        }
    }

    /// Wakes one reader, if parked.
    pub(crate) fn wake_one(&self, reader: Reader) {
        let waker = self.parked()[reader as usize].take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Wakes both readers.
    pub(crate) fn wake_all(&self) {
        let [application, renewal] = std::mem::take(&mut *self.parked());
        for waker in [application, renewal].into_iter().flatten() {
            waker.wake();
        }
    }
}

impl Wake for Readers {
    fn wake(self: Arc<Self>) {
        self.wake_all();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn every_parked_writer_is_woken_once_per_wake() {
        let writers = Arc::new(Writers::default());
        let counts: Vec<Arc<Count>> = (0..5).map(|_| Arc::default()).collect();
        let transport_waker = writers.waker();
        let seen = writers.seen();
        for count in &counts {
            let slot = writers.slot();
            let waker = Waker::from(Arc::clone(count));
            writers.park(slot, &waker, seen);
            writers.park(slot, &waker, seen);
        }
        assert_eq!(
            writers.parked_count(),
            5,
            "a writer parks once however often it polls"
        );
        transport_waker.wake_by_ref();
        for count in &counts {
            assert_eq!(count.0.load(Ordering::SeqCst), 1);
        }
        assert_eq!(writers.parked_count(), 0);
    }

    #[test]
    fn the_read_fan_out_wakes_both_readers_once() {
        let application = Arc::new(Count::default());
        let renewal = Arc::new(Count::default());
        let (readers, transport_waker) = Readers::new(Some(Waker::from(Arc::clone(&application))));
        let renewal_waker = Waker::from(Arc::clone(&renewal));
        readers.park(Reader::Renewal, &renewal_waker);
        readers.park(Reader::Renewal, &renewal_waker);
        transport_waker.wake_by_ref();
        transport_waker.wake_by_ref();
        assert_eq!(application.0.load(Ordering::SeqCst), 1);
        assert_eq!(renewal.0.load(Ordering::SeqCst), 1);
        readers.park(Reader::Renewal, &renewal_waker);
        readers.wake_one(Reader::Application);
        readers.wake_one(Reader::Renewal);
        assert_eq!(application.0.load(Ordering::SeqCst), 1, "not parked again");
        assert_eq!(renewal.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_wake_between_poll_and_park_is_not_lost() {
        let writers = Arc::new(Writers::default());
        let transport_waker = writers.waker();
        let seen = writers.seen();
        // The transport wakes after the poll returned Pending but before the
        // writer parked.
        transport_waker.wake();
        let count = Arc::new(Count::default());
        writers.park(writers.slot(), &Waker::from(Arc::clone(&count)), seen);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_writer_keeps_one_waker_however_many_attempts_it_abandons() {
        let writers = Arc::new(Writers::default());
        let seen = writers.seen();
        let slot = writers.slot();
        let counts: Vec<Arc<Count>> = (0..1000).map(|_| Arc::default()).collect();
        for count in &counts {
            // Each attempt from another short-lived task, then abandoned.
            writers.park(slot, &Waker::from(Arc::clone(count)), seen);
        }
        assert_eq!(writers.parked_count(), 1);
        writers.wake_all();
        assert_eq!(
            counts[999].0.load(Ordering::SeqCst),
            1,
            "the latest attempt is woken"
        );
        let other = writers.slot();
        writers.park(other, &Waker::from(Arc::clone(&counts[0])), writers.seen());
        writers.leave(other);
        assert_eq!(writers.parked_count(), 0, "a dropped writer leaves");
    }
}
