//! The connection's short-lived tasks: the closing handshake, reading for
//! a receiver the application dropped or does not poll while a renewal is
//! due, and flushing control frames the transport had no room for. None of
//! them exists while a connection is simply idle.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, ready};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, close_code};
use futures_core::Stream;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::core::Shared;
use super::transport::Reader;
use crate::connection::EndReason;
use crate::protocol::CloseReason;
use crate::telemetry;

/// Each task starts on the connection's own runtime, whichever thread asks
/// (the application may drop its last half anywhere).
impl<C> Shared<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    /// The closing handshake ([`run`]); once per connection.
    pub(super) fn start_closing(&self, me: Arc<Self>) {
        self.runtime.spawn(run(me));
    }

    /// Reading in place of a receiver the application dropped.
    pub(super) fn start_reading_for_dropped_receiver(&self, me: Arc<Self>) {
        self.runtime.spawn(read_for_dropped_receiver(me));
    }

    /// Reading for a renewal the application does not read (`ahead.rs`).
    pub(super) fn start_renewal_reader(&self, me: Arc<Self>) {
        self.runtime.spawn(read_for_renewal(me));
    }

    /// Flushing control frames the transport had no room for.
    pub(super) fn start_flushing(&self, me: Arc<Self>) {
        self.runtime.spawn(flush(me));
    }
}

/// Sends the goodbye (after any control frames still queued), reads until
/// the peer's close or the close timeout, then drops the socket and the
/// connection's registry entry, whatever the application still holds.
///
/// The server's close is reported once its frame is flushed (or could not
/// be): a close at the connection's deadline with how late it left.
async fn run<C>(shared: Arc<Shared<C>>)
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    let (ending, deadline, timeout) = {
        let core = shared.lock();
        let ending = core.ending.clone().unwrap_or(EndReason::ConnectionLost);
        if ending.is_peer() {
            telemetry::disconnected(&shared.identity);
        }
        // The deadline this close is late against (no renewal lands once
        // the connection is ending).
        let deadline = matches!(ending, EndReason::Expired | EndReason::NotReauthenticated)
            .then(|| shared.deadline.deadline());
        (ending, deadline, core.settings.session.close_timeout)
    };
    let reason = ending.close_reason();
    let mut reported = false;
    let mut report = |lateness: Option<Duration>| {
        if let Some(reason) = reason
            && !std::mem::replace(&mut reported, true)
        {
            telemetry::closed(&shared.identity, reason, lateness);
        }
    };
    let mut goodbye = match &ending {
        EndReason::Dropped => Some(Message::Close(Some(CloseFrame {
            code: close_code::NORMAL,
            reason: "".into(),
        }))),
        _ => reason.map(CloseReason::to_message),
    };
    let late = || deadline.map(|deadline| Instant::now().saturating_duration_since(deadline));
    let handshake = async {
        let slot = shared.writer_slot();
        let written = poll_fn(|cx| shared.poll_goodbye(&mut goodbye, slot, cx)).await;
        // The one clock read of the close: when its frame was flushed (a
        // connection lost meanwhile has no close frame to be late).
        report(written.as_ref().ok().and_then(|()| late()));
        written?;
        if !ending.is_peer() {
            poll_fn(|cx| {
                let mut core = shared.lock();
                loop {
                    match ready!(Pin::new(&mut core.transport).poll_next(cx)) {
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => return Poll::Ready(()),
                    }
                }
            })
            .await;
        }
        Ok::<(), axum::Error>(())
    };
    let _ = tokio::time::timeout(timeout, handshake).await;
    // The close frame has not left by the close timeout (the peer does
    // not read): how late it is now, a lower bound, so the worst cases
    // are not the ones missing from the histogram.
    report(late());
    shared.finish();
}

/// Reads for a push-only application: control messages are still answered
/// and the peer's close still noticed; application frames are dropped.
async fn read_for_dropped_receiver<C>(shared: Arc<Shared<C>>)
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    poll_fn(|cx| {
        let mut core = shared.lock();
        loop {
            match shared.poll_frame(&mut core, cx, Reader::Application) {
                Poll::Ready(Some(_)) => {}
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await;
}

/// Reads for an application that holds its receiver but is not reading,
/// from a notice until its renewal lands or the connection ends; keeps the
/// application's frames for its next `recv` (`ahead.rs`).
async fn read_for_renewal<C>(shared: Arc<Shared<C>>)
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    #[cfg(test)]
    let _alive = shared.renewal_reader_started();
    poll_fn(|cx| shared.poll_renewal_reader(cx)).await;
}

/// Sends queued control frames as soon as the transport takes them.
async fn flush<C>(shared: Arc<Shared<C>>)
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    let slot = shared.writer_slot();
    poll_fn(|cx| shared.poll_flush_task(slot, cx)).await;
}
