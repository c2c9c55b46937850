//! The application's view of a connection with its claims type erased
//! ([`Half`]), so that the public halves' `Clone` and `Drop`, which cannot
//! require what the connection's code does of `C`, can still reach it.

#[cfg(test)]
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use axum::extract::ws::Message;
use serde::de::DeserializeOwned;

#[cfg(test)]
use super::clock::SharedDeadline;
use super::core::{Receiver, Shared};
use super::transport::Slot;

/// The application's view of a connection, with the claims type erased so
/// the public halves are not generic.
pub(crate) trait Half: Send + Sync {
    #[cfg(test)]
    fn deadline(&self) -> &SharedDeadline;
    /// `in_recv`: called from `recv`, whose future calls `recv_abandoned`
    /// if dropped before it is done.
    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        in_recv: bool,
    ) -> Poll<Option<Result<Message, axum::Error>>>;
    /// A `recv` future was dropped while parked.
    fn recv_abandoned(&self);
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
    /// Frames read ahead and not yet taken by the application.
    #[cfg(test)]
    fn kept_frames(&self) -> usize;
    /// Renewal readers whose task has not ended.
    #[cfg(test)]
    fn renewal_readers(&self) -> usize;
}

impl<C> Half for Shared<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    #[cfg(test)]
    fn deadline(&self) -> &SharedDeadline {
        &self.deadline
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        in_recv: bool,
    ) -> Poll<Option<Result<Message, axum::Error>>> {
        let mut core = self.lock();
        let polled = self.poll_application(&mut core, cx);
        core.receiver = if in_recv && polled.is_pending() {
            Receiver::Reading
        } else {
            Receiver::Held
        };
        if polled.is_ready() {
            // The application may not come back: a renewal that is due
            // must not wait for it.
            self.ensure_reading(&mut core);
        }
        polled
    }

    fn recv_abandoned(&self) {
        let mut core = self.lock();
        if core.receiver == Receiver::Reading {
            core.receiver = Receiver::Held;
            self.ensure_reading(&mut core);
        }
    }

    fn poll_ready(&self, slot: Slot, cx: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        self.poll_write_ready(slot, cx)
    }

    fn start_send(&self, message: Message) -> Result<(), axum::Error> {
        self.start_write(message)
    }

    fn poll_flush(&self, slot: Slot, cx: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        self.poll_write_flush(slot, cx)
    }

    fn sender_cloned(&self) -> Slot {
        self.half_added();
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
    fn kept_frames(&self) -> usize {
        self.lock().kept_frames()
    }

    #[cfg(test)]
    fn renewal_readers(&self) -> usize {
        self.renewal_readers.load(Ordering::SeqCst)
    }

    #[cfg(test)]
    fn control_pending(&self) -> bool {
        let core = self.lock();
        !core.outbox.is_empty() || core.control_unflushed
    }

    fn receiver_dropped(&self) {
        {
            // Frames kept for it go; the renewal reader, if any, stops.
            let mut core = self.lock();
            core.receiver = Receiver::Dropped;
            self.drop_kept(&mut core);
        }
        // Nobody reads any more: keep answering control messages (and seeing
        // the peer's close) on a task of the connection's own.
        if !self.half_dropped()
            && let Some(me) = self.me.upgrade()
        {
            self.start_reading_for_dropped_receiver(me);
        }
    }
}
