use std::pin::Pin;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, close_code};
use futures_core::Stream;
use futures_sink::Sink;
use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Sleep, sleep_until};

use super::clock::{RenewLimiter, SharedDeadline, monotonic_instant_of};
use crate::config::{Refusal, SessionConfig, Settings};
use crate::connections::LiveGuard;
use crate::protocol::{
    Classified, CloseReason, InvalidControl, RenewRejection, ServerMessage, classify,
};
use crate::telemetry::{self, Connection};
use crate::token::TokenError;
use crate::upgrade::Authenticated;

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

/// `exp + leeway` on the monotonic clock.
pub(crate) fn deadline_of(exp: u64, session: &SessionConfig) -> Instant {
    monotonic_instant_of(exp) + session.leeway
}

/// How the driving loop ended, and so how the connection is wound down.
enum Ending {
    /// Close with one of the contract's codes.
    Close(CloseReason),
    /// The application let go of both halves: close normally.
    ApplicationDone,
    /// The application sent its own close frame: await the peer's reply.
    ApplicationClosed,
    /// The peer closed or the transport failed: nothing more to send.
    PeerGone,
}

pub(crate) struct Driver<T, C> {
    transport: T,
    settings: Arc<Settings<C>>,
    connection: Connection,
    exp: u64,
    deadline: Arc<SharedDeadline>,
    inbound: mpsc::Sender<Result<Message, axum::Error>>,
    outbound: mpsc::Receiver<Message>,
    claims: watch::Sender<Arc<C>>,
    expiry: Pin<Box<Sleep>>,
    notice: Pin<Box<Sleep>>,
    notice_sent: bool,
    renewals: RenewLimiter,
    invalid_controls: u32,
    live: LiveGuard,
}

impl<T, C> Driver<T, C>
where
    T: Transport,
    C: DeserializeOwned + Send + Sync + 'static,
{
    pub(crate) fn new(
        transport: T,
        authenticated: Authenticated<C>,
        id: u64,
        deadline: Arc<SharedDeadline>,
        inbound: mpsc::Sender<Result<Message, axum::Error>>,
        outbound: mpsc::Receiver<Message>,
        claims: watch::Sender<Arc<C>>,
    ) -> Self {
        let Authenticated {
            sub,
            exp,
            settings,
            source,
            ..
        } = authenticated;
        let session = &settings.session;
        let at = deadline.deadline();
        let renewals = RenewLimiter::new(session.renew_limit, session.renew_window);
        let live = settings.connections.register(id, sub.as_deref());
        let connection = Connection::new(id, sub);
        telemetry::connected(&connection, source, exp);
        Self {
            expiry: Box::pin(sleep_until(at)),
            notice: Box::pin(sleep_until(notice_at(at, session))),
            transport,
            connection,
            exp,
            deadline,
            inbound,
            outbound,
            claims,
            notice_sent: false,
            renewals,
            invalid_controls: 0,
            live,
            settings,
        }
    }

    pub(crate) async fn run(mut self) {
        let ending = self.drive().await;
        let goodbye = match ending {
            Ending::Close(reason) => {
                telemetry::closed(&self.connection, reason);
                Some(reason.to_message())
            }
            Ending::ApplicationDone => Some(Message::Close(Some(CloseFrame {
                code: close_code::NORMAL,
                reason: "".into(),
            }))),
            Ending::ApplicationClosed => None,
            Ending::PeerGone => {
                telemetry::disconnected(&self.connection);
                return;
            }
        };
        self.wind_down(goodbye).await;
    }

    async fn drive(&mut self) -> Ending {
        let mut pending: Option<Result<Message, axum::Error>> = None;
        let mut app_reading = true;
        let mut app_writing = true;
        // A local handle, so a reserved permit does not borrow `self`.
        let inbound = self.inbound.clone();
        loop {
            if !app_reading && !app_writing {
                return Ending::ApplicationDone;
            }
            tokio::select! {
                () = &mut self.expiry => return Ending::Close(CloseReason::TokenExpired),
                reason = self.live.signal().requested() => return Ending::Close(reason),
                () = &mut self.notice, if !self.notice_sent => {
                    if let Err(ending) = self.send_expiring().await {
                        return ending;
                    }
                }
                permit = inbound.reserve(), if pending.is_some() => match permit {
                    Ok(permit) => {
                        if self.deadline.has_passed() {
                            return Ending::Close(CloseReason::TokenExpired);
                        }
                        permit.send(pending.take().expect("guarded by the branch condition"));
                    }
                    Err(_) => {
                        pending = None;
                        app_reading = false;
                    }
                },
                // Only needed to notice an application that dropped its
                // receiver after its sender while the peer is silent.
                () = inbound.closed(), if app_reading && !app_writing && pending.is_none() => app_reading = false,
                message = self.outbound.recv(), if app_writing => match message {
                    None => {
                        app_writing = false;
                        app_reading &= !inbound.is_closed();
                    }
                    Some(message) => {
                        if let Some(ending) = self.write_application(message).await {
                            return ending;
                        }
                    }
                },
                frame = self.transport.next(), if pending.is_none() => match frame {
                    None => return Ending::PeerGone,
                    Some(Err(error)) => {
                        let too_big = is_capacity_error(&error);
                        let _ = self.inbound.try_send(Err(error));
                        return if too_big {
                            Ending::Close(CloseReason::MessageTooBig)
                        } else {
                            Ending::PeerGone
                        };
                    }
                    Some(Ok(message)) => match self.read_frame(message).await {
                        // Straight to the application when there is room;
                        // otherwise wait for room on a later turn.
                        Ok(Some(message)) if app_reading => match inbound.try_send(Ok(message)) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(item)) => pending = Some(item),
                            Err(mpsc::error::TrySendError::Closed(_)) => app_reading = false,
                        },
                        Ok(_) => {}
                        Err(ending) => return ending,
                    },
                },
            }
        }
    }

    /// Writes one application frame, plus whatever else is already queued,
    /// then flushes once.
    async fn write_application(&mut self, first: Message) -> Option<Ending> {
        let mut next = Some(first);
        let mut budget = self.settings.session.channel_capacity;
        while let Some(message) = next.take() {
            if self.deadline.has_passed() {
                return Some(Ending::Close(CloseReason::TokenExpired));
            }
            let is_close = matches!(message, Message::Close(_));
            if self.transport.feed(message).await.is_err() {
                return Some(Ending::PeerGone);
            }
            if is_close {
                return Some(match self.transport.flush().await {
                    Ok(()) => Ending::ApplicationClosed,
                    Err(_) => Ending::PeerGone,
                });
            }
            budget -= 1;
            if budget > 0 {
                next = self.outbound.try_recv().ok();
            }
        }
        match self.transport.flush().await {
            Ok(()) => None,
            Err(_) => Some(Ending::PeerGone),
        }
    }

    /// Handles one inbound frame; returns the frame if it is the
    /// application's.
    async fn read_frame(&mut self, message: Message) -> Result<Option<Message>, Ending> {
        if self.deadline.has_passed() {
            return Err(Ending::Close(CloseReason::TokenExpired));
        }
        match &message {
            Message::Text(text) => {
                match classify(text.as_str(), self.settings.session.max_control_bytes) {
                    Classified::Application => Ok(Some(message)),
                    Classified::Renew { token, id } => self.renew(token, id).await.map(|()| None),
                    Classified::Invalid { id, reason } => {
                        self.invalid_control(id, reason).await.map(|()| None)
                    }
                }
            }
            Message::Close(_) => {
                // Send the close reply tungstenite has queued, hand the
                // peer's frame to the application if it has room, and stop.
                let _ = self.transport.flush().await;
                let _ = self.inbound.try_send(Ok(message));
                Err(Ending::PeerGone)
            }
            Message::Ping(_) => {
                // Get the automatic pong out even if the application is slow.
                let _ = self.transport.flush().await;
                Ok(Some(message))
            }
            Message::Binary(_) | Message::Pong(_) => Ok(Some(message)),
        }
    }

    async fn renew(&mut self, token: String, id: Option<String>) -> Result<(), Ending> {
        if !self.renewals.attempt(Instant::now()) {
            return Err(Ending::Close(CloseReason::TooManyRenewals));
        }
        let checked = self.settings.check_token(&token);
        drop(token);
        let valid = match checked {
            Ok(valid) => valid,
            Err(Refusal::Invalid(error)) => {
                return self
                    .reject(RenewRejection::InvalidToken, error.to_string(), id)
                    .await;
            }
            Err(Refusal::InsufficientScope) => {
                return self
                    .reject(
                        RenewRejection::InsufficientScope,
                        "insufficient scope".into(),
                        id,
                    )
                    .await;
            }
        };
        if valid.sub != self.connection.sub {
            telemetry::subject_change_refused(&self.connection);
            return Err(Ending::Close(CloseReason::Forbidden));
        }
        if valid.exp <= self.exp {
            return self
                .reject(
                    RenewRejection::InvalidToken,
                    TokenError::NotNewer.to_string(),
                    id,
                )
                .await;
        }
        self.exp = valid.exp;
        let deadline = deadline_of(valid.exp, &self.settings.session);
        self.deadline.set(valid.exp, deadline);
        self.claims.send_replace(Arc::new(valid.claims));
        self.expiry.as_mut().reset(deadline);
        self.notice
            .as_mut()
            .reset(notice_at(deadline, &self.settings.session));
        self.notice_sent = false;
        telemetry::renewed(&self.connection, valid.exp);
        self.send_control(&ServerMessage::Renewed { exp: valid.exp, id })
            .await
    }

    async fn reject(
        &mut self,
        error: RenewRejection,
        description: String,
        id: Option<String>,
    ) -> Result<(), Ending> {
        telemetry::renew_rejected(&self.connection, error, &description);
        self.send_control(&ServerMessage::RenewRejected {
            error,
            error_description: Some(description),
            id,
        })
        .await
    }

    async fn invalid_control(
        &mut self,
        id: Option<String>,
        reason: InvalidControl,
    ) -> Result<(), Ending> {
        self.invalid_controls += 1;
        if self.invalid_controls > self.settings.session.invalid_control_limit {
            return Err(Ending::Close(CloseReason::BadRequest));
        }
        self.reject(
            RenewRejection::InvalidRequest,
            reason.description().into(),
            id,
        )
        .await
    }

    async fn send_expiring(&mut self) -> Result<(), Ending> {
        self.notice_sent = true;
        let exp_at = self.deadline.deadline() - self.settings.session.leeway;
        let expires_in = exp_at.saturating_duration_since(Instant::now()).as_secs();
        telemetry::expiring(&self.connection, self.exp, expires_in);
        self.send_control(&ServerMessage::Expiring {
            exp: self.exp,
            expires_in,
        })
        .await
    }

    async fn send_control(&mut self, message: &ServerMessage) -> Result<(), Ending> {
        self.transport
            .send(Message::Text(message.to_json().into()))
            .await
            .map_err(|_| Ending::PeerGone)
    }

    /// Ends the application's view at once, then completes the closing
    /// handshake within the close timeout, discarding whatever the peer
    /// still sends.
    async fn wind_down(self, goodbye: Option<Message>) {
        let Self {
            mut transport,
            inbound,
            outbound,
            settings,
            ..
        } = self;
        drop(inbound);
        drop(outbound);
        let handshake = async move {
            if let Some(goodbye) = goodbye {
                transport.send(goodbye).await?;
            }
            while let Some(Ok(_)) = transport.next().await {}
            Ok::<(), axum::Error>(())
        };
        let _ = tokio::time::timeout(settings.session.close_timeout, handshake).await;
    }
}

/// Whether the peer sent a message or frame over the size limits.
fn is_capacity_error(error: &axum::Error) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<tungstenite::Error>())
        .is_some_and(|error| matches!(error, tungstenite::Error::Capacity(_)))
}

/// When to send `auth.expiring`: `notify_before` ahead of `exp` (not of the
/// leeway-extended deadline), or at once if that moment has passed.
fn notice_at(deadline: Instant, session: &SessionConfig) -> Instant {
    let exp_at = deadline - session.leeway;
    exp_at
        .checked_sub(session.notify_before)
        .unwrap_or_else(Instant::now)
}
