//! The write path: the application's frames, and the control frames
//! (notices, renewal answers) that go out ahead of them as soon as the
//! transport takes writes, on a flush task when it is full.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::ws::Message;
use futures_sink::Sink;
use serde::de::DeserializeOwned;

use super::closed;
use super::core::{Core, Shared};
use super::transport::Slot;
use crate::connection::EndReason;
use crate::protocol::ServerMessage;

impl<C> Shared<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    /// Queues a control frame and sends it as soon as the transport takes it.
    pub(super) fn send_control(&self, core: &mut Core<C>, message: &ServerMessage) {
        core.outbox
            .push_back(Message::Text(message.to_json().into()));
        self.flush_control(core);
    }

    /// Writes and flushes queued control frames now if the transport takes
    /// them, or on a flush task as soon as it does, whatever the
    /// application is doing.
    pub(super) fn flush_control(&self, core: &mut Core<C>) {
        match self.poll_control(core, &mut Context::from_waker(&self.write_waker)) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => self.end(core, EndReason::ConnectionLost),
            Poll::Pending => {
                if !core.flushing
                    && core.ending.is_none()
                    && let Some(me) = self.me.upgrade()
                {
                    core.flushing = true;
                    self.start_flushing(me);
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
        // A connection sends a control frame or two per token: keeping the
        // queue's buffer (four frames, 192 bytes) for the rest of its life
        // would cost more than allocating it again for the next notice.
        if core.outbox.capacity() != 0 {
            core.outbox = VecDeque::new();
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

    pub(super) fn poll_write_ready(
        &self,
        slot: Slot,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), axum::Error>> {
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

    pub(super) fn start_write(&self, message: Message) -> Result<(), axum::Error> {
        let mut core = self.lock();
        // No application frame leaves after the deadline.
        if self.deadline.has_passed() {
            self.end(&mut core, self.deadline.ending());
        }
        if core.ending.is_some() {
            return Err(closed());
        }
        let is_close = matches!(message, Message::Close(_));
        if let Err(error) = Pin::new(&mut core.transport).start_send(message) {
            // The transport is broken: every half learns it now, not at
            // the next read.
            self.end(&mut core, EndReason::ConnectionLost);
            return Err(error);
        }
        if is_close {
            self.end(&mut core, EndReason::ApplicationClosed);
        }
        Ok(())
    }

    pub(super) fn poll_write_flush(
        &self,
        slot: Slot,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), axum::Error>> {
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
            Poll::Ready(Err(error)) => {
                self.end(&mut core, EndReason::ConnectionLost);
                Poll::Ready(Err(error))
            }
        }
    }
}
