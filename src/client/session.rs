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

use super::config::{Config, Events, Outcome};
use super::connect::{Connected, Socket, connect};
use super::timing::{FAR_FUTURE, ServerClock, at_or_far, notice_delay, renewal_delay, retry_at};
use super::token::{Fetch, Usage, unverified_exp};
use super::{ClientError, ClientEvent, TokenPlacement};
use crate::jitter::unit_random;
use crate::protocol::{ClientMessage, CloseReason, ServerMessage, control_object};

/// A renewal the server has not answered within this long is given up (a
/// server of the contract always answers): an error event, and notices are
/// answered again (one that came meanwhile at once).
const RENEW_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

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
    if let Some((date, sent)) = server_date {
        progress.server_clock.observe_date(date, sent);
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
    /// `renew_at` is the client's own timer (from a token's `exp`), not an
    /// answer to a notice or a retry.
    own_timer_armed: bool,
    /// The client's own timer renewed since the server's last notice: it
    /// does not renew again until the next notice, so an offset that went
    /// stale (the local clock was stepped) cannot make it renew in a loop.
    own_renewal_spent: bool,
    /// When the current token (or a re-authentication request) ends, if known.
    deadline: Option<Instant>,
    fetch: Option<Fetch>,
    /// A renewal was sent and its answer has not come yet: until when the
    /// client waits for it.
    answer_by: Option<Instant>,
    /// A notice came while waiting for that answer.
    asked_meanwhile: bool,
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
            own_timer_armed: false,
            own_renewal_spent: false,
            deadline: None,
            fetch: None,
            answer_by: None,
            asked_meanwhile: false,
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
    /// against the best estimate of the server's clock; at most once between
    /// two notices of the server (then the notice decides).
    fn schedule_from_exp(&mut self, exp: Option<u64>) {
        self.deadline = None;
        let own_renewal_spent = self.own_renewal_spent;
        self.renew_at = exp.and_then(|exp| {
            let remaining = self.server_clock.remaining(exp, (self.config.wall_clock)());
            self.deadline = (!remaining.is_zero()).then(|| at_or_far(Instant::now(), remaining));
            if own_renewal_spent {
                return None;
            }
            let delay = renewal_delay(
                remaining,
                self.config.renew_before,
                self.config.renew_jitter,
                unit_random(),
            )?;
            Instant::now().checked_add(delay)
        });
        self.own_timer_armed = self.renew_at.is_some();
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
            let answer_by = self.answer_by;
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
                    if std::mem::take(&mut self.own_timer_armed) {
                        self.own_renewal_spent = true;
                    }
                    self.start_fetch();
                }
                () = sleep_until(answer_by.unwrap_or_else(Instant::now)), if answer_by.is_some() => {
                    self.answer_by = None;
                    if std::mem::take(&mut self.asked_meanwhile) {
                        self.renew_at = Some(Instant::now());
                        self.own_timer_armed = false;
                    }
                    let error = ClientError::RenewalUnanswered(RENEW_ANSWER_TIMEOUT);
                    if !events.send(ClientEvent::Error(error)).await {
                        return self.close_normally().await;
                    }
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
                            self.answer_by = Some(at_or_far(Instant::now(), RENEW_ANSWER_TIMEOUT));
                            self.asked_meanwhile = false;
                        }
                        Err(error) => {
                            // A failed fetch costs the server nothing: retry
                            // for as long as the token has life left.
                            self.failures += 1;
                            self.retry_renewal_later(false);
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
                            Some(control) => match read_control(control) {
                                Control::Known(message) => self.on_control(message),
                                Control::UnreadableAnswer(kind) => self.on_unreadable_answer(kind),
                                Control::Other => None,
                            },
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
    fn on_control(&mut self, message: ServerMessage) -> Option<ClientEvent> {
        match message {
            ServerMessage::Expiring { exp, expires_in } => {
                // The server's own word on its clock: trust it over ours.
                self.server_clock
                    .observe_notice(exp, expires_in, (self.config.wall_clock)());
                self.deadline = Some(at_or_far(
                    Instant::now(),
                    Duration::from_secs(expires_in).min(FAR_FUTURE),
                ));
                self.own_renewal_spent = false;
                // A renewal already under way answers this notice too.
                if self.answer_by.is_some() {
                    // If that answer never comes, this notice is answered then.
                    self.asked_meanwhile = true;
                } else if self.fetch.is_none() {
                    // Every notice is answered, even after renewals failed
                    // (a re-authentication request is a new question).
                    self.failures = 0;
                    let delay = notice_delay(expires_in, self.config.renew_jitter, unit_random());
                    let at = Instant::now()
                        .checked_add(delay)
                        .unwrap_or_else(Instant::now);
                    self.renew_at = Some(self.renew_at.map_or(at, |armed| armed.min(at)));
                    self.own_timer_armed = false;
                }
                None
            }
            ServerMessage::Renewed { exp, .. } => {
                self.answer_by = None;
                self.failures = 0;
                self.schedule_from_exp(Some(exp));
                Some(ClientEvent::Renewed { exp })
            }
            ServerMessage::RenewRejected {
                error,
                error_description,
                ..
            } => {
                self.answer_by = None;
                self.failures += 1;
                self.retry_renewal_later(true);
                Some(ClientEvent::RenewRejected {
                    error,
                    description: error_description,
                })
            }
        }
    }

    /// An answer to a renewal that this client cannot read (an error code it
    /// does not know, a missing `exp`): the renewal counts as rejected, so
    /// that later notices are answered again.
    fn on_unreadable_answer(&mut self, kind: &'static str) -> Option<ClientEvent> {
        if self.answer_by.take().is_none() {
            return Some(ClientEvent::Error(ClientError::UnreadableControl(kind)));
        }
        self.failures += 1;
        self.retry_renewal_later(true);
        Some(ClientEvent::Error(ClientError::UnreadableControl(kind)))
    }

    /// Plans the next renewal attempt after a failed one, or none.
    /// `counted`: the failure was a rejection by the server, which counts
    /// against its rate limit.
    fn retry_renewal_later(&mut self, counted: bool) {
        self.own_timer_armed = false;
        self.renew_at = retry_at(
            Instant::now(),
            self.deadline,
            self.failures,
            counted,
            self.config.backoff,
            unit_random(),
        );
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

/// A control message, read.
#[derive(Debug, PartialEq)]
enum Control {
    Known(ServerMessage),
    /// An `auth.renewed` or `auth.renew_rejected` that does not parse.
    UnreadableAnswer(&'static str),
    /// An unknown `auth.*` type, or a notice that does not parse: ignored.
    Other,
}

fn read_control(control: serde_json::Map<String, serde_json::Value>) -> Control {
    let kind = match control.get("type").and_then(serde_json::Value::as_str) {
        Some("auth.renewed") => Some("auth.renewed"),
        Some("auth.renew_rejected") => Some("auth.renew_rejected"),
        _ => None,
    };
    match serde_json::from_value(serde_json::Value::Object(control)) {
        Ok(message) => Control::Known(message),
        Err(_) => kind.map_or(Control::Other, Control::UnreadableAnswer),
    }
}

fn lost(error: &tungstenite::Error) -> Outcome {
    Outcome::retry_on(ClientError::ConnectionLost(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(text: &str) -> serde_json::Map<String, serde_json::Value> {
        control_object(text).expect("a control message")
    }

    #[test]
    fn an_answer_the_client_cannot_read_is_reported_not_dropped() {
        assert_eq!(
            read_control(object(r#"{"type":"auth.renewed","exp":5}"#)),
            Control::Known(ServerMessage::Renewed { exp: 5, id: None })
        );
        for (text, kind) in [
            (
                r#"{"type":"auth.renew_rejected","error":"temporarily_unavailable"}"#,
                "auth.renew_rejected",
            ),
            (r#"{"type":"auth.renew_rejected"}"#, "auth.renew_rejected"),
            (r#"{"type":"auth.renewed","exp":"soon"}"#, "auth.renewed"),
            (r#"{"type":"auth.renewed"}"#, "auth.renewed"),
        ] {
            assert_eq!(
                read_control(object(text)),
                Control::UnreadableAnswer(kind),
                "{text}"
            );
        }
        // Unknown types (the prefix is reserved) and unreadable notices are ignored.
        assert_eq!(
            read_control(object(r#"{"type":"auth.future"}"#)),
            Control::Other
        );
        assert_eq!(
            read_control(object(r#"{"type":"auth.expiring"}"#)),
            Control::Other
        );
        // The error text names the message type only.
        assert_eq!(
            ClientError::UnreadableControl("auth.renewed").to_string(),
            "the server's auth.renewed message could not be read"
        );
    }
}
