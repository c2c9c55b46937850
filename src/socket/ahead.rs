//! Reading ahead for a renewal: from an `auth.expiring` notice until its
//! renewal lands, something must read the connection, or the peer's
//! `auth.renew` is never seen. An application that holds its receiver but
//! does not poll it (a push-only handler) gets a short-lived renewal reader:
//! a task that reads under the connection's lock, answers control messages
//! as the application's own reads do, and keeps the application's frames,
//! in order, for its next `recv`.
//!
//! The frames kept are bounded ([`STASH_FRAMES`] frames, or
//! `max_message_bytes` in total, whichever comes first; the frame that
//! crosses the byte bound is kept). With the stash full the renewal reader
//! stops reading until the application takes a frame: memory stays bounded
//! and the peer meets backpressure, and a renewal sent behind that many
//! unread frames is answered once the application reads (or the
//! connection expires, as it would have without the renewal).
//!
//! An idle connection pays one pointer for this: the state (`stash.rs`) is
//! allocated when the renewal reader starts, and freed once it has ended and
//! the application has taken every frame it kept.

use std::task::{Context, Poll};

use axum::extract::ws::Message;
use serde::de::DeserializeOwned;

use super::core::{Core, Receiver, Shared};
use super::stash::{Frame, ReadAhead};
use super::transport::{Reader, Readers};
use crate::connection::EndReason;

impl<C> Shared<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    /// An `auth.expiring` went out: the timer's notice, or an early request
    /// to re-authenticate. Until a renewal lands, the connection makes sure
    /// someone reads. Call this wherever a notice is sent.
    pub(super) fn notice_sent(&self, core: &mut Core<C>) {
        core.notice_sent = true;
        self.ensure_reading(core);
    }

    /// A renewal landed: the renewal reader, if any, stops.
    pub(super) fn renewal_landed(&self, core: &mut Core<C>) {
        core.notice_sent = false;
        if let Some((readers, _)) = core.read_ahead.as_deref().and_then(ReadAhead::readers) {
            readers.wake_one(Reader::Renewal);
        }
    }

    /// Starts the renewal reader if a renewal is due and nobody is sure to
    /// read: the application holds its receiver but is not parked in
    /// `recv` (a dropped receiver has its own reader). One parked in a
    /// `Stream` poll gets a reader too: a dropped `next()` future leaves no
    /// trace, so its waker may be stale.
    pub(super) fn ensure_reading(&self, core: &mut Core<C>) {
        if !core.notice_sent || core.receiver != Receiver::Held || core.ending.is_some() {
            return;
        }
        if core
            .read_ahead
            .as_deref()
            .is_some_and(|ahead| ahead.readers.is_some())
        {
            return;
        }
        let Some(me) = self.me.upgrade() else {
            return;
        };
        // The transport may hold only the application's waker until the
        // renewal reader polls: the fan-out wakes that one too.
        let readers = Readers::new(core.parked_reader.clone());
        core.read_ahead.get_or_insert_default().readers = Some(readers);
        self.start_renewal_reader(me);
    }

    /// The application's read: frames read ahead for it first, in order,
    /// then the transport.
    pub(super) fn poll_application(
        &self,
        core: &mut Core<C>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Frame>> {
        if let Some(kept) = self.take_kept(core) {
            return Poll::Ready(kept);
        }
        self.poll_frame(core, cx, Reader::Application)
    }

    /// The next frame read ahead, if any: `Some(None)` once the connection
    /// has expired (a frame is never handed over after the deadline) or
    /// the server ended it; frames read before the peer closed or went away
    /// are still handed over, as the application's own reads would have.
    fn take_kept(&self, core: &mut Core<C>) -> Option<Option<Frame>> {
        if core.read_ahead.as_deref()?.frames.is_empty() {
            return None;
        }
        if self.deadline.has_passed() {
            self.end(core, self.deadline.ending());
        }
        let deliverable =
            !self.deadline.has_passed() && core.ending.as_ref().is_none_or(EndReason::is_peer);
        let max_bytes = core.settings.session.max_message_bytes;
        let ahead = core.read_ahead.as_deref_mut()?;
        if !deliverable {
            ahead.clear();
            core.release_read_ahead();
            return Some(None);
        }
        let was_full = ahead.is_full(max_bytes);
        let frame = ahead.frames.pop_front()?;
        ahead.bytes -= weight(&frame);
        if was_full && let Some((readers, _)) = &ahead.readers {
            readers.wake_one(Reader::Renewal);
        }
        core.release_read_ahead();
        Some(Some(frame))
    }

    /// One step of the renewal reader: Ready once the renewal landed, the
    /// connection ended or the application dropped its receiver.
    pub(super) fn poll_renewal_reader(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut core = self.lock();
        let max_bytes = core.settings.session.max_message_bytes;
        loop {
            if core.ending.is_some() || !core.notice_sent || core.receiver == Receiver::Dropped {
                break;
            }
            let Some(ahead) = core.read_ahead.as_deref_mut() else {
                break;
            };
            if ahead.is_full(max_bytes) {
                // Woken when the application takes a frame.
                if let Some((readers, _)) = &ahead.readers {
                    readers.park(Reader::Renewal, cx.waker());
                }
                return Poll::Pending;
            }
            match self.poll_frame(&mut core, cx, Reader::Renewal) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => break,
                Poll::Ready(Some(frame)) => self.keep(&mut core, frame),
            }
        }
        if let Some(ahead) = core.read_ahead.as_deref_mut() {
            ahead.readers = None;
        }
        core.release_read_ahead();
        Poll::Ready(())
    }

    /// Keeps a frame the renewal reader read for the application, and
    /// wakes the application if it waits.
    fn keep(&self, core: &mut Core<C>, frame: Frame) {
        if core.receiver == Receiver::Dropped
            || !core.ending.as_ref().is_none_or(EndReason::is_peer)
        {
            return;
        }
        let Some(ahead) = core.read_ahead.as_deref_mut() else {
            return;
        };
        ahead.bytes += weight(&frame);
        ahead.frames.push_back(frame);
        if let Some(reader) = core.parked_reader.take() {
            reader.wake();
        }
    }

    /// Nothing the application could still take: forget the frames kept
    /// for it and, once the renewal reader has ended too, the state itself.
    pub(super) fn drop_kept(&self, core: &mut Core<C>) {
        if let Some(ahead) = core.read_ahead.as_deref_mut() {
            ahead.clear();
            if let Some((readers, _)) = &ahead.readers {
                readers.wake_one(Reader::Renewal);
            }
        }
        core.release_read_ahead();
    }
}

impl<C> Core<C> {
    /// Frees the read-ahead state once it holds nothing.
    fn release_read_ahead(&mut self) {
        if self
            .read_ahead
            .as_deref()
            .is_some_and(|ahead| ahead.frames.is_empty() && ahead.readers.is_none())
        {
            self.read_ahead = None;
        }
    }

    /// How many frames are kept for the application.
    #[cfg(test)]
    pub(super) fn kept_frames(&self) -> usize {
        self.read_ahead
            .as_deref()
            .map_or(0, |ahead| ahead.frames.len())
    }
}

/// What a kept frame costs, counted against `max_message_bytes`.
fn weight(frame: &Frame) -> usize {
    match frame {
        Ok(Message::Text(text)) => text.as_str().len(),
        Ok(Message::Binary(bytes) | Message::Ping(bytes) | Message::Pong(bytes)) => bytes.len(),
        Ok(Message::Close(close)) => close.as_ref().map_or(0, |close| close.reason.len()),
        Err(_) => 0,
    }
}
