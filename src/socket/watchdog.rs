//! The one task per connection: it keeps time (the `auth.expiring` notice,
//! the expiry close), carries out closes decided anywhere (by the
//! application's reads, a shutdown, a revocation), flushes control replies
//! when the application is not polling, reads for a dropped receiver, and
//! completes the closing handshake.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::extract::ws::{CloseFrame, Message, close_code};
use futures_core::Stream;
use futures_sink::Sink;
use serde::de::DeserializeOwned;
use tokio::time::{Instant, sleep_until};

use super::core::{Ending, Shared};
use crate::config::SessionConfig;
use crate::connections::LiveGuard;
use crate::protocol::{CloseReason, ServerMessage};
use crate::telemetry;

pub(crate) async fn run<C>(shared: Arc<Shared<C>>, live: LiveGuard)
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    let settings = Arc::clone(&shared.lock().settings);
    let ending = watch(&shared, &live, &settings.session).await;
    // Boxed: only a closing connection pays for the handshake's state, so
    // an idle connection's task stays small.
    Box::pin(wind_down(&shared, ending, &settings.session)).await;
    // `live` drops here: the registry stops counting the connection once
    // its closing handshake is over, whatever the application still holds.
}

async fn watch<C>(shared: &Shared<C>, live: &LiveGuard, session: &SessionConfig) -> Ending
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    loop {
        let (deadline, notice_sent) = {
            let mut core = shared.lock();
            core.rearm = false;
            (shared.deadline.deadline(), core.notice_sent)
        };
        // One timer, aimed at whichever comes next.
        let notice = notice_at(deadline, session);
        let wake_at = if notice_sent {
            deadline
        } else {
            notice.min(deadline)
        };
        tokio::select! {
            () = sleep_until(wake_at) => {
                let mut core = shared.lock();
                // A renewal may have moved the deadline since it was read.
                if shared.deadline.has_passed() {
                    shared.end(&mut core, Ending::Close(CloseReason::TokenExpired));
                } else if !core.notice_sent && !core.rearm && Instant::now() >= notice {
                    core.notice_sent = true;
                    let exp_at = shared.deadline.deadline() - session.leeway;
                    let expires_in = exp_at.saturating_duration_since(Instant::now()).as_secs();
                    telemetry::expiring(&core.connection, core.exp, expires_in);
                    let message = ServerMessage::Expiring { exp: core.exp, expires_in };
                    shared.queue_control(&mut core, &message);
                }
            }
            () = poll_fn(|cx| poll_events(shared, live, cx)) => {}
        }
        let core = shared.lock();
        if let Some(ending) = core.ending {
            return ending;
        }
        if shared.application_gone() {
            return Ending::ApplicationDone;
        }
    }
}

/// Ready when something needs the loop's attention; meanwhile flushes
/// control replies and reads for a dropped receiver.
fn poll_events<C>(shared: &Shared<C>, live: &LiveGuard, cx: &mut Context<'_>) -> Poll<()>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    shared.register_watchdog(cx.waker());
    let mut core = shared.lock();
    if let Poll::Ready(reason) = live.signal().poll_requested(cx) {
        shared.end(&mut core, Ending::Close(reason));
    }
    if core.ending.is_some() || core.rearm || shared.application_gone() {
        return Poll::Ready(());
    }
    if Shared::has_outbox(&core)
        && let Poll::Ready(Err(_)) = shared.poll_outbox(&mut core, cx)
    {
        shared.end(&mut core, Ending::PeerGone);
        return Poll::Ready(());
    }
    if !shared.receiver_alive() {
        // Nobody takes application frames any more; control messages are
        // still answered.
        loop {
            match shared.poll_frame(&mut core, cx) {
                Poll::Ready(Some(_)) => {}
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => break,
            }
        }
        if core.rearm {
            return Poll::Ready(());
        }
    }
    Poll::Pending
}

/// Sends the goodbye (after any control replies still queued), then reads
/// until the peer's close or the close timeout, discarding what it sends.
async fn wind_down<C>(shared: &Shared<C>, ending: Ending, session: &SessionConfig)
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    let mut goodbye = match ending {
        Ending::Close(reason) => {
            telemetry::closed(&shared.lock().connection, reason);
            Some(reason.to_message())
        }
        Ending::ApplicationDone => Some(Message::Close(Some(CloseFrame {
            code: close_code::NORMAL,
            reason: "".into(),
        }))),
        Ending::ApplicationClosed => None,
        Ending::PeerGone => {
            telemetry::disconnected(&shared.lock().connection);
            None
        }
    };
    let handshake = async {
        poll_fn(|cx| {
            let mut core = shared.lock();
            ready!(shared.poll_outbox(&mut core, cx))?;
            if goodbye.is_some() {
                ready!(Pin::new(&mut core.transport).poll_ready(cx))?;
                if let Some(message) = goodbye.take() {
                    Pin::new(&mut core.transport).start_send(message)?;
                }
            }
            Pin::new(&mut core.transport).poll_flush(cx)
        })
        .await?;
        if ending == Ending::PeerGone {
            return Ok(());
        }
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
        Ok::<(), axum::Error>(())
    };
    let _ = tokio::time::timeout(session.close_timeout, handshake).await;
    shared.lock().transport.shut();
}

/// When to send `auth.expiring`: `notify_before` ahead of `exp` (not of the
/// leeway-extended deadline), or at once if that moment has passed.
fn notice_at(deadline: Instant, session: &SessionConfig) -> Instant {
    let exp_at = deadline - session.leeway;
    exp_at
        .checked_sub(session.notify_before)
        .unwrap_or_else(Instant::now)
}
