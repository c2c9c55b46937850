//! The client's background task: connect, run a session, decide whether
//! and when to reconnect.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use super::backoff::unit_random;
use super::connect::{Connected, Socket, connect};
use super::timing::{ServerClock, WallClock, notice_delay, renewal_delay};
use super::token::{self, Fetch, Usage, unverified_exp};
use super::{Backoff, ClientError, ClientEvent, EventCallback, TokenPlacement, TokenProvider};
use crate::protocol::{ClientMessage, CloseReason, ServerMessage, control_object};

/// Failed renewals (rejections, provider failures) tolerated per token
/// before the client lets the connection expire and reconnects.
const MAX_RENEW_RETRIES: u32 = 3;

pub(super) struct Config {
    pub(super) url: String,
    pub(super) protocols: Vec<String>,
    pub(super) placement: TokenPlacement,
    pub(super) renew_before: Duration,
    pub(super) renew_jitter: Duration,
    pub(super) backoff: Backoff,
    pub(super) backoff_reset_after: Duration,
    pub(super) max_refused_handshakes: u32,
    pub(super) token_timeout: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) handshake_timeout: Duration,
    pub(super) close_timeout: Duration,
    pub(super) tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    pub(super) provider: TokenProvider,
    pub(super) wall_clock: WallClock,
    pub(super) on_event: Option<EventCallback>,
}

impl Config {
    fn fetch(&self, usage: Usage) -> Fetch {
        token::fetch(&self.provider, self.token_timeout, usage)
    }
}

/// How a session or a connection attempt ended.
pub(super) enum Outcome {
    /// Reconnect after a backoff delay.
    Retry {
        code: Option<u16>,
        reason: String,
        error: Option<ClientError>,
    },
    /// Stop for good.
    Stop {
        code: Option<u16>,
        reason: String,
        error: Option<ClientError>,
    },
    /// The application closed the client (or dropped it).
    Closed,
}

impl Outcome {
    pub(super) fn retry_on(error: ClientError) -> Self {
        Outcome::Retry {
            code: status_of(&error),
            reason: error.to_string(),
            error: Some(error),
        }
    }

    pub(super) fn stop_on(error: ClientError) -> Self {
        Outcome::Stop {
            code: status_of(&error),
            reason: error.to_string(),
            error: Some(error),
        }
    }
}

fn status_of(error: &ClientError) -> Option<u16> {
    match error {
        ClientError::Refused(status) => Some(*status),
        _ => None,
    }
}

/// Where events go: the application's callback, or the channel it reads.
pub(super) struct Events {
    pub(super) channel: mpsc::Sender<ClientEvent>,
    pub(super) callback: Option<EventCallback>,
}

impl Events {
    /// Delivers one event; `false` once the application has gone.
    async fn send(&self, event: ClientEvent) -> bool {
        match &self.callback {
            Some(callback) => {
                callback(event);
                true
            }
            None => self.channel.send(event).await.is_ok(),
        }
    }
}

/// Completes once the application asked to stop (or dropped the client).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// What carries over from one connection to the next.
#[derive(Default)]
struct Progress {
    /// The backoff step; back to 0 only after a stable connection.
    attempt: u32,
    /// Handshakes refused with 401 or 403 since the last successful open.
    refusals: u32,
    server_clock: ServerClock,
}

pub(super) async fn run(
    config: Arc<Config>,
    mut outbound: mpsc::Receiver<Message>,
    events: Events,
    mut stop: watch::Receiver<bool>,
) {
    let mut progress = Progress::default();
    loop {
        let outcome =
            connect_and_run(&config, &mut outbound, &events, &mut stop, &mut progress).await;
        let (code, reason, error) = match outcome {
            Outcome::Closed => {
                let reason = "closed by the application".into();
                let _ = events
                    .send(ClientEvent::Stopped {
                        code: Some(1000),
                        reason,
                    })
                    .await;
                return;
            }
            Outcome::Stop {
                code,
                reason,
                error,
            } => {
                if let Some(error) = error {
                    let _ = events.send(ClientEvent::Error(error)).await;
                }
                let _ = events.send(ClientEvent::Stopped { code, reason }).await;
                return;
            }
            Outcome::Retry {
                code,
                reason,
                error,
            } => (code, reason, error),
        };
        if let Some(ClientError::Refused(status @ (401 | 403))) = error {
            progress.refusals += 1;
            if progress.refusals >= config.max_refused_handshakes {
                let _ = events
                    .send(ClientEvent::Error(ClientError::Refused(status)))
                    .await;
                let reason = format!(
                    "the handshake was refused {} times in a row, last with HTTP {status}",
                    progress.refusals
                );
                let _ = events
                    .send(ClientEvent::Stopped {
                        code: Some(status),
                        reason,
                    })
                    .await;
                return;
            }
        }
        if let Some(error) = error
            && !events.send(ClientEvent::Error(error)).await
        {
            return;
        }
        let attempt = progress.attempt;
        let retry_in = config.backoff.delay(attempt);
        progress.attempt = attempt.saturating_add(1);
        let event = ClientEvent::Disconnected {
            code,
            reason,
            retry_in,
            attempt,
        };
        if !events.send(event).await {
            return;
        }
        tokio::select! {
            () = stopped(&mut stop) => {
                let reason = "closed by the application".into();
                let _ = events.send(ClientEvent::Stopped { code: Some(1000), reason }).await;
                return;
            }
            () = sleep(retry_in) => {}
        }
    }
}

async fn connect_and_run(
    config: &Config,
    outbound: &mut mpsc::Receiver<Message>,
    events: &Events,
    stop: &mut watch::Receiver<bool>,
    progress: &mut Progress,
) -> Outcome {
    let usage = match config.placement {
        TokenPlacement::Subprotocol => Usage::Subprotocol,
        TokenPlacement::Header => Usage::Bearer,
    };
    let fetched = tokio::select! {
        () = stopped(stop) => return Outcome::Closed,
        fetched = config.fetch(usage) => fetched,
    };
    let token = match fetched {
        Ok(token) => token,
        Err(error) => return Outcome::retry_on(error),
    };
    let connected = tokio::select! {
        () = stopped(stop) => return Outcome::Closed,
        connected = connect(config, &token) => connected,
    };
    let Connected {
        socket,
        protocol,
        server_date,
    } = match connected {
        Ok(connected) => connected,
        Err(outcome) => return outcome,
    };
    progress.refusals = 0;
    if let Some(date) = server_date {
        progress
            .server_clock
            .observe_date(date, (config.wall_clock)());
    }
    let mut session = Session::new(config, socket, &mut progress.server_clock);
    session.schedule_from_exp(unverified_exp(&token));
    drop(token);
    let outcome = if events.send(ClientEvent::Connected { protocol }).await {
        session.run(outbound, events, stop).await
    } else {
        session.close_normally().await
    };
    if session.was_stable() {
        progress.attempt = 0;
    }
    outcome
}

/// One connection's life: application traffic both ways, renewals, close.
struct Session<'a> {
    config: &'a Config,
    socket: Socket,
    server_clock: &'a mut ServerClock,
    renew_at: Option<Instant>,
    fetch: Option<Fetch>,
    /// A renewal was sent and its answer has not come yet.
    awaiting_answer: bool,
    failures: u32,
    next_id: u64,
    opened_at: Instant,
    saw_application_data: bool,
}

impl<'a> Session<'a> {
    fn new(config: &'a Config, socket: Socket, server_clock: &'a mut ServerClock) -> Self {
        Self {
            config,
            socket,
            server_clock,
            renew_at: None,
            fetch: None,
            awaiting_answer: false,
            failures: 0,
            next_id: 0,
            opened_at: Instant::now(),
            saw_application_data: false,
        }
    }

    /// Whether this connection earned a backoff reset: it stayed open for
    /// `backoff_reset_after`, or the server sent application data.
    fn was_stable(&self) -> bool {
        self.saw_application_data || self.opened_at.elapsed() >= self.config.backoff_reset_after
    }

    /// Arms the client's own renewal timer from a token's `exp`, read
    /// against the best estimate of the server's clock.
    fn schedule_from_exp(&mut self, exp: Option<u64>) {
        self.renew_at = exp.and_then(|exp| {
            let remaining = self.server_clock.remaining(exp, (self.config.wall_clock)());
            let delay = renewal_delay(
                remaining,
                self.config.renew_before,
                self.config.renew_jitter,
                unit_random(),
            )?;
            Instant::now().checked_add(delay)
        });
    }

    /// Starts a token fetch unless one is already running (single flight).
    fn start_fetch(&mut self) {
        if self.fetch.is_none() {
            self.fetch = Some(self.config.fetch(Usage::Bearer));
        }
    }

    async fn run(
        &mut self,
        outbound: &mut mpsc::Receiver<Message>,
        events: &Events,
        stop: &mut watch::Receiver<bool>,
    ) -> Outcome {
        loop {
            let renew_at = self.renew_at;
            tokio::select! {
                () = stopped(stop) => return self.close_normally().await,
                message = outbound.recv() => match message {
                    Some(message) => {
                        if let Err(error) = self.socket.send(message).await {
                            return lost(&error);
                        }
                    }
                    None => return self.close_normally().await,
                },
                () = sleep_until(renew_at.unwrap_or_else(Instant::now)), if renew_at.is_some() => {
                    self.renew_at = None;
                    self.start_fetch();
                }
                fetched = async { self.fetch.as_mut().expect("guarded").await }, if self.fetch.is_some() => {
                    self.fetch = None;
                    match fetched {
                        Ok(token) => {
                            self.next_id += 1;
                            let renew = ClientMessage::Renew { token, id: Some(format!("r{}", self.next_id)) };
                            if let Err(error) = self.socket.send(Message::Text(renew.to_json().into())).await {
                                return lost(&error);
                            }
                            self.awaiting_answer = true;
                        }
                        Err(error) => {
                            self.failures += 1;
                            self.retry_renewal_later();
                            if !events.send(ClientEvent::Error(error)).await {
                                return self.close_normally().await;
                            }
                        }
                    }
                }
                frame = self.socket.next() => match frame {
                    None => {
                        let error = ClientError::ConnectionLost("closed without a close frame".into());
                        return Outcome::retry_on(error);
                    }
                    Some(Err(error)) => return lost(&error),
                    Some(Ok(Message::Close(frame))) => return self.closed_by_server(frame).await,
                    Some(Ok(Message::Text(text))) => {
                        let event = match control_object(text.as_str()) {
                            Some(control) => {
                                let parsed = serde_json::from_value(serde_json::Value::Object(control));
                                self.on_control(parsed.ok())
                            }
                            None => {
                                self.saw_application_data = true;
                                Some(ClientEvent::Message(Message::Text(text)))
                            }
                        };
                        if let Some(event) = event
                            && !events.send(event).await
                        {
                            return self.close_normally().await;
                        }
                    }
                    Some(Ok(other @ (Message::Binary(_) | Message::Frame(_)))) => {
                        self.saw_application_data = true;
                        if !events.send(ClientEvent::Message(other)).await {
                            return self.close_normally().await;
                        }
                    }
                    // Pings are answered by tungstenite; pongs need nothing.
                    Some(Ok(_)) => {}
                },
            }
        }
    }

    /// Acts on a server control message; unknown `auth.*` types are ignored
    /// (the prefix is reserved, so they are never application data).
    fn on_control(&mut self, message: Option<ServerMessage>) -> Option<ClientEvent> {
        match message? {
            ServerMessage::Expiring { exp, expires_in } => {
                // The server's own word on its clock: trust it over ours.
                self.server_clock
                    .observe_notice(exp, expires_in, (self.config.wall_clock)());
                // A renewal already under way answers this notice too.
                if !self.awaiting_answer && self.fetch.is_none() {
                    // Every notice is answered, even after renewals failed
                    // (a re-authentication request is a new question).
                    self.failures = 0;
                    let delay = notice_delay(expires_in, self.config.renew_jitter, unit_random());
                    let at = Instant::now()
                        .checked_add(delay)
                        .unwrap_or_else(Instant::now);
                    self.renew_at = Some(self.renew_at.map_or(at, |armed| armed.min(at)));
                }
                None
            }
            ServerMessage::Renewed { exp, .. } => {
                self.awaiting_answer = false;
                self.failures = 0;
                self.schedule_from_exp(Some(exp));
                Some(ClientEvent::Renewed { exp })
            }
            ServerMessage::RenewRejected {
                error,
                error_description,
                ..
            } => {
                self.awaiting_answer = false;
                self.failures += 1;
                self.retry_renewal_later();
                Some(ClientEvent::RenewRejected {
                    error,
                    description: error_description,
                })
            }
        }
    }

    fn retry_renewal_later(&mut self) {
        self.renew_at = (self.failures < MAX_RENEW_RETRIES)
            .then(|| Instant::now() + self.config.backoff.delay(self.failures));
    }

    async fn closed_by_server(&mut self, frame: Option<CloseFrame>) -> Outcome {
        // Let tungstenite send its close reply, but not forever.
        let _ = tokio::time::timeout(self.config.close_timeout, async {
            while let Some(Ok(_)) = self.socket.next().await {}
        })
        .await;
        let code = frame.as_ref().map(|f| u16::from(f.code));
        let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
        match code.and_then(CloseReason::from_code) {
            Some(known) if !known.may_reconnect() => Outcome::Stop {
                code,
                reason,
                error: None,
            },
            _ => Outcome::Retry {
                code,
                reason,
                error: None,
            },
        }
    }

    /// Sends a normal close (1000) and waits up to `close_timeout` for the
    /// server's reply, so the server sees a clean close, not a reset.
    async fn close_normally(&mut self) -> Outcome {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = tokio::time::timeout(self.config.close_timeout, async {
            if self.socket.send(Message::Close(Some(frame))).await.is_ok() {
                while let Some(Ok(_)) = self.socket.next().await {}
            }
        })
        .await;
        Outcome::Closed
    }
}

fn lost(error: &tungstenite::Error) -> Outcome {
    Outcome::retry_on(ClientError::ConnectionLost(error.to_string()))
}
