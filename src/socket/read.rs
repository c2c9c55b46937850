//! The frame loop: reading for the application, answering control
//! messages on the way, and keeping late frames out.

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use axum::extract::ws::Message;
use futures_core::Stream;
use serde::de::DeserializeOwned;

use super::core::{Core, Shared};
use super::stash::ReadAhead;
use super::transport::Reader;
use crate::connection::EndReason;
use crate::protocol::{Classified, classify};

impl<C> Shared<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    /// Reads until an application frame arrives, answering control
    /// messages on the way; `None` once the connection has ended (or, for
    /// the renewal reader, once the renewal landed). Called by the
    /// application's receiver, by the task that reads for a dropped one
    /// (which discards what it returns), and by the renewal reader (which
    /// keeps it for the application).
    pub(crate) fn poll_frame(
        &self,
        core: &mut Core<C>,
        cx: &mut Context<'_>,
        reader: Reader,
    ) -> Poll<Option<Result<Message, axum::Error>>> {
        // No clock read here: the one after each frame below is what keeps
        // late frames out, and the timer task ends an idle connection.
        if core.ending.is_some() {
            return Poll::Ready(None);
        }
        loop {
            // While the renewal reader runs, the transport's one read waker
            // is the fan-out that wakes both readers.
            let polled = match core.read_ahead.as_deref().and_then(ReadAhead::readers) {
                Some((readers, waker)) => {
                    readers.park(reader, cx.waker());
                    Pin::new(&mut core.transport).poll_next(&mut Context::from_waker(waker))
                }
                None => Pin::new(&mut core.transport).poll_next(cx),
            };
            let Poll::Ready(frame) = polled else {
                if reader == Reader::Application {
                    park(&mut core.parked_reader, cx);
                }
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
                self.end(core, self.deadline.ending());
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
            // The renewal reader is done once the renewal landed: what
            // follows is the application's to read.
            if reader == Reader::Renewal && !core.notice_sent {
                return Poll::Ready(None);
            }
        }
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
