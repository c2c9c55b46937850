//! The connection's short-lived tasks: the closing handshake, reading for
//! a receiver the application dropped or does not poll while a renewal is
//! due, and flushing control frames the transport had no room for. None of
//! them exists while a connection is simply idle.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, ready};

use axum::extract::ws::{CloseFrame, Message, close_code};
use futures_core::Stream;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::core::Shared;
use super::transport::Reader;
use crate::connection::EndReason;
use crate::protocol::CloseReason;
use crate::telemetry;

/// How far the server's close frame got before the closing task ran: the
/// connection writes it at once, under the lock that ended it, when the
/// transport takes it (`Shared::goodbye_now`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Goodbye {
    /// Not written: the closing task sends it.
    Unsent,
    /// Handed to the transport, not yet flushed: the closing task flushes
    /// it and reports the close.
    Handed,
    /// Flushed and reported.
    Flushed,
}

/// The frame a server-side end sends: the contract's close for the
/// reason, or a normal close when the application let go of the socket;
/// none when the peer closed first (its close is answered by the socket).
pub(crate) fn goodbye_of(ending: &EndReason) -> Option<Message> {
    match ending {
        EndReason::Dropped => Some(Message::Close(Some(CloseFrame {
            code: close_code::NORMAL,
            reason: "".into(),
        }))),
        other => other.close_reason().map(CloseReason::to_message),
    }
}

/// Reports a server close (`flushed`: its frame left just now; a close at
/// the connection's deadline then records how late it left).
pub(crate) fn report_close<C>(shared: &Shared<C>, ending: &EndReason, flushed: bool) {
    let Some(reason) = ending.close_reason() else {
        return;
    };
    // The deadline no longer moves once the connection is ending.
    let lateness = (flushed
        && matches!(ending, EndReason::Expired | EndReason::NotReauthenticated))
    .then(|| Instant::now().saturating_duration_since(shared.deadline.deadline()));
    telemetry::closed(&shared.identity, reason, lateness);
}

/// Sends the goodbye unless it went out already (after any control frames
/// still queued), reads until the peer's close or the close timeout, then
/// drops the socket and the connection's registry entry, whatever the
/// application still holds.
///
/// The server's close is reported once its frame is flushed (or could not
/// be): a close at the connection's deadline with how late it left.
pub(crate) async fn run<C>(shared: Arc<Shared<C>>)
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    let (ending, sent, timeout) = {
        let core = shared.lock();
        let ending = core.ending.clone().unwrap_or(EndReason::ConnectionLost);
        if ending.is_peer() {
            telemetry::disconnected(&shared.identity);
        }
        (ending, core.goodbye, core.settings.session.close_timeout)
    };
    let mut reported = sent == Goodbye::Flushed;
    let mut report = |flushed: bool| {
        if !std::mem::replace(&mut reported, true) {
            report_close(&shared, &ending, flushed);
        }
    };
    let mut goodbye = match sent {
        Goodbye::Unsent => goodbye_of(&ending),
        Goodbye::Handed | Goodbye::Flushed => None,
    };
    let handshake = async {
        let slot = shared.writer_slot();
        let written = poll_fn(|cx| shared.poll_goodbye(&mut goodbye, slot, cx)).await;
        report(written.is_ok());
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
    // The close frame never left (the peer did not read it in time).
    report(false);
    shared.finish();
}

/// Reads for a push-only application: control messages are still answered
/// and the peer's close still noticed; application frames are dropped.
pub(crate) async fn read_for_dropped_receiver<C>(shared: Arc<Shared<C>>)
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
pub(crate) async fn read_for_renewal<C>(shared: Arc<Shared<C>>)
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    #[cfg(test)]
    let _alive = shared.renewal_reader_started();
    poll_fn(|cx| shared.poll_renewal_reader(cx)).await;
}

/// Sends queued control frames as soon as the transport takes them.
pub(crate) async fn flush<C>(shared: Arc<Shared<C>>)
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    let slot = shared.writer_slot();
    poll_fn(|cx| shared.poll_flush_task(slot, cx)).await;
}
