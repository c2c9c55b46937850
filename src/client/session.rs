//! The client's background task: connect, run a session, decide whether
//! and when to reconnect.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use http::HeaderValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use super::token::unverified_exp;
use super::{Backoff, ClientEvent, TokenFuture, TokenPlacement, TokenProvider};
use crate::protocol::{
    BEARER_PROTOCOL_PREFIX, ClientMessage, CloseReason, ServerMessage, control_object,
};

/// Renewal rejections tolerated per token before the client lets the
/// connection expire and reconnects with a fresh one.
const MAX_RENEW_RETRIES: u32 = 3;

pub(super) struct Config {
    pub(super) url: String,
    pub(super) protocols: Vec<String>,
    pub(super) placement: TokenPlacement,
    pub(super) renew_before: Duration,
    pub(super) backoff: Backoff,
    pub(super) tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    pub(super) provider: TokenProvider,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Socket = WebSocketStream<Box<dyn Io>>;

/// How a session or a connection attempt ended.
enum Outcome {
    Reconnect { code: Option<u16>, reason: String },
    Stop { code: Option<u16>, reason: String },
    ClosedByApplication,
}

pub(super) async fn run(
    config: Arc<Config>,
    mut outbound: mpsc::Receiver<Message>,
    events: mpsc::Sender<ClientEvent>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut attempt = 0u32;
    loop {
        let outcome = tokio::select! {
            _ = &mut stop => return,
            outcome = connect_and_run(&config, &mut outbound, &events, &mut attempt) => outcome,
        };
        match outcome {
            Outcome::ClosedByApplication => return,
            Outcome::Stop { code, reason } => {
                let _ = events.send(ClientEvent::Stopped { code, reason }).await;
                return;
            }
            Outcome::Reconnect { code, reason } => {
                let retry_in = config.backoff.delay(attempt);
                attempt = attempt.saturating_add(1);
                let event = ClientEvent::Disconnected {
                    code,
                    reason,
                    retry_in,
                };
                if events.send(event).await.is_err() {
                    return;
                }
                tokio::select! {
                    _ = &mut stop => return,
                    () = sleep(retry_in) => {}
                }
            }
        }
    }
}

async fn connect_and_run(
    config: &Config,
    outbound: &mut mpsc::Receiver<Message>,
    events: &mpsc::Sender<ClientEvent>,
    attempt: &mut u32,
) -> Outcome {
    let token = match (config.provider)().await {
        Ok(token) => token,
        Err(error) => {
            return Outcome::Reconnect {
                code: None,
                reason: format!("token provider failed: {error}"),
            };
        }
    };
    let (socket, protocol) = match connect(config, &token).await {
        Ok(connected) => connected,
        Err(outcome) => return outcome,
    };
    *attempt = 0;
    if events
        .send(ClientEvent::Connected { protocol })
        .await
        .is_err()
    {
        return Outcome::ClosedByApplication;
    }
    Session::new(config, socket, &token)
        .run(outbound, events)
        .await
}

async fn connect(config: &Config, token: &str) -> Result<(Socket, Option<String>), Outcome> {
    let fatal = |reason: String| Outcome::Stop { code: None, reason };
    let retry = |reason: String| Outcome::Reconnect { code: None, reason };
    let mut request = config
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| fatal(format!("invalid url: {e}")))?;
    let mut protocols = config.protocols.join(", ");
    match config.placement {
        TokenPlacement::Header => {
            let value = HeaderValue::try_from(format!("Bearer {token}"))
                .map_err(|_| retry("token is not valid in a header".into()))?;
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, value);
        }
        TokenPlacement::Subprotocol => {
            if !protocols.is_empty() {
                protocols.push_str(", ");
            }
            protocols.push_str(BEARER_PROTOCOL_PREFIX);
            protocols.push_str(token);
        }
    }
    if !protocols.is_empty() {
        let value = HeaderValue::try_from(protocols)
            .map_err(|_| retry("token is not valid in a header".into()))?;
        request
            .headers_mut()
            .insert(http::header::SEC_WEBSOCKET_PROTOCOL, value);
    }

    let uri = request.uri().clone();
    let secure = uri.scheme_str() == Some("wss");
    let host = uri.host().unwrap_or_default().to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| retry(format!("connect failed: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if secure {
        let tls = config
            .tls
            .clone()
            .ok_or_else(|| fatal("wss:// needs AuthClientBuilder::tls_config".into()))?;
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host)
            .map_err(|e| fatal(format!("invalid server name: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| retry(format!("TLS handshake failed: {e}")))?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    match tokio_tungstenite::client_async(request, io).await {
        Ok((socket, response)) => {
            let protocol = response
                .headers()
                .get(http::header::SEC_WEBSOCKET_PROTOCOL)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            Ok((socket, protocol))
        }
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status();
            let outcome = if status == http::StatusCode::BAD_REQUEST
                || status == http::StatusCode::FORBIDDEN
            {
                Outcome::Stop {
                    code: Some(status.as_u16()),
                    reason: format!("handshake refused with {status}"),
                }
            } else {
                Outcome::Reconnect {
                    code: Some(status.as_u16()),
                    reason: format!("handshake refused with {status}"),
                }
            };
            Err(outcome)
        }
        Err(error) => Err(retry(format!("handshake failed: {error}"))),
    }
}

/// One connection's life: application traffic both ways, renewals, close.
struct Session<'a> {
    config: &'a Config,
    socket: Socket,
    renew_at: Option<Instant>,
    fetch: Option<TokenFuture>,
    rejections: u32,
    next_id: u64,
}

impl<'a> Session<'a> {
    fn new(config: &'a Config, socket: Socket, token: &str) -> Self {
        let mut session = Self {
            config,
            socket,
            renew_at: None,
            fetch: None,
            rejections: 0,
            next_id: 0,
        };
        session.schedule_renewal(unverified_exp(token));
        session
    }

    /// Renews `renew_before` ahead of `exp`, or halfway through a token
    /// whose whole remaining life is shorter than that.
    fn schedule_renewal(&mut self, exp: Option<u64>) {
        self.renew_at = exp.map(|exp| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let remaining = Duration::from_secs(exp).saturating_sub(now);
            let ahead = self.config.renew_before.min(remaining / 2);
            Instant::now() + remaining.saturating_sub(ahead)
        });
    }

    /// Starts a token fetch unless one is already running (single flight).
    fn start_fetch(&mut self) {
        if self.fetch.is_none() {
            self.fetch = Some((self.config.provider)());
        }
    }

    async fn run(
        mut self,
        outbound: &mut mpsc::Receiver<Message>,
        events: &mpsc::Sender<ClientEvent>,
    ) -> Outcome {
        loop {
            let renew_at = self.renew_at;
            tokio::select! {
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
                        }
                        Err(_) => self.retry_renewal_later(),
                    }
                }
                frame = self.socket.next() => match frame {
                    None => return Outcome::Reconnect { code: None, reason: "connection lost".into() },
                    Some(Err(error)) => return lost(&error),
                    Some(Ok(Message::Close(frame))) => return self.closed_by_server(frame).await,
                    Some(Ok(Message::Text(text))) => {
                        if let Some(control) = control_object(text.as_str()) {
                            let parsed = serde_json::from_value(serde_json::Value::Object(control));
                            if let Some(event) = self.on_control(parsed.ok())
                                && events.send(event).await.is_err()
                            {
                                return self.close_normally().await;
                            }
                        } else if events.send(ClientEvent::Message(Message::Text(text))).await.is_err() {
                            return self.close_normally().await;
                        }
                    }
                    Some(Ok(other)) => {
                        if events.send(ClientEvent::Message(other)).await.is_err() {
                            return self.close_normally().await;
                        }
                    }
                },
            }
        }
    }

    /// Acts on a server control message; unknown `auth.*` types are ignored
    /// (the prefix is reserved, so they are never application data).
    fn on_control(&mut self, message: Option<ServerMessage>) -> Option<ClientEvent> {
        match message? {
            ServerMessage::Expiring { .. } => {
                self.start_fetch();
                None
            }
            ServerMessage::Renewed { exp, .. } => {
                self.rejections = 0;
                self.schedule_renewal(Some(exp));
                Some(ClientEvent::Renewed { exp })
            }
            ServerMessage::RenewRejected {
                error,
                error_description,
                ..
            } => {
                self.rejections += 1;
                self.retry_renewal_later();
                Some(ClientEvent::RenewRejected {
                    error,
                    description: error_description,
                })
            }
        }
    }

    fn retry_renewal_later(&mut self) {
        self.renew_at = (self.rejections < MAX_RENEW_RETRIES)
            .then(|| Instant::now() + self.config.backoff.delay(self.rejections));
    }

    async fn closed_by_server(mut self, frame: Option<CloseFrame>) -> Outcome {
        // Let tungstenite send its close reply.
        while let Some(Ok(_)) = self.socket.next().await {}
        let code = frame.as_ref().map(|f| u16::from(f.code));
        let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
        match code.and_then(CloseReason::from_code) {
            Some(known) if !known.may_reconnect() => Outcome::Stop { code, reason },
            _ => Outcome::Reconnect { code, reason },
        }
    }

    async fn close_normally(mut self) -> Outcome {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = self.socket.close(Some(frame)).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(_)) = self.socket.next().await {}
        })
        .await;
        Outcome::ClosedByApplication
    }
}

fn lost(error: &tungstenite::Error) -> Outcome {
    Outcome::Reconnect {
        code: None,
        reason: format!("connection lost: {error}"),
    }
}
