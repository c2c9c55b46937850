//! What the client's task runs on: its configuration, where its events
//! go, and how a session or one connection attempt ended. Both the connection attempt
//! (`connect.rs`) and the session (`session.rs`) read them.

use std::sync::Arc;
use std::time::Duration;

use super::timing::WallClock;
use super::token::{self, Fetch, Usage};
use tokio::sync::mpsc;

use super::{Backoff, ClientError, ClientEvent, EventCallback, TokenPlacement, TokenProvider};

/// Everything the builder set.
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
    pub(super) fn fetch(&self, usage: Usage) -> Fetch {
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
    pub(super) async fn send(&self, event: ClientEvent) -> bool {
        match &self.callback {
            Some(callback) => {
                callback(event);
                true
            }
            None => self.channel.send(event).await.is_ok(),
        }
    }
}
