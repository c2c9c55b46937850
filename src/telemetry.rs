//! One `tracing` event per security event, all under the target
//! `axum_ws_auth`. Events carry the connection id and `sub`, never a token.

use crate::protocol::{CloseReason, RenewRejection};
use crate::token::TokenSource;
use crate::upgrade::AuthRejection;

const TARGET: &str = "axum_ws_auth";

/// Who a connection's events are about.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) id: u64,
    pub(crate) sub: Option<String>,
}

impl Connection {
    pub(crate) fn new(id: u64, sub: Option<String>) -> Self {
        Self { id, sub }
    }

    fn sub(&self) -> &str {
        self.sub.as_deref().unwrap_or("-")
    }
}

pub(crate) fn upgrade_refused(rejection: &AuthRejection) {
    tracing::warn!(
        target: TARGET,
        event = "upgrade_refused",
        status = rejection.status().as_u16(),
        error = rejection.error_code().unwrap_or("-"),
        reason = %rejection.description(),
        "WebSocket upgrade refused"
    );
}

pub(crate) fn upgrade_failed(error: axum::Error) {
    tracing::debug!(target: TARGET, event = "upgrade_failed", %error, "WebSocket upgrade failed");
}

pub(crate) fn connected(connection: &Connection, source: TokenSource, exp: u64) {
    tracing::info!(
        target: TARGET,
        event = "connected",
        conn_id = connection.id,
        sub = connection.sub(),
        source = source.as_str(),
        exp,
        "authenticated WebSocket opened"
    );
}

pub(crate) fn expiring(connection: &Connection, exp: u64, expires_in: u64) {
    tracing::debug!(
        target: TARGET,
        event = "expiring",
        conn_id = connection.id,
        sub = connection.sub(),
        exp,
        expires_in,
        "token expiry notice sent"
    );
}

pub(crate) fn renewed(connection: &Connection, exp: u64) {
    tracing::info!(
        target: TARGET,
        event = "renewed",
        conn_id = connection.id,
        sub = connection.sub(),
        exp,
        "token renewed"
    );
}

pub(crate) fn renew_rejected(connection: &Connection, error: RenewRejection, reason: &str) {
    tracing::warn!(
        target: TARGET,
        event = "renew_rejected",
        conn_id = connection.id,
        sub = connection.sub(),
        error = error.as_str(),
        reason,
        "token renewal rejected"
    );
}

pub(crate) fn subject_change_refused(connection: &Connection) {
    tracing::warn!(
        target: TARGET,
        event = "subject_change",
        conn_id = connection.id,
        sub = connection.sub(),
        "renewal tried to change sub"
    );
}

pub(crate) fn closed(connection: &Connection, reason: CloseReason) {
    tracing::warn!(
        target: TARGET,
        event = "closed",
        conn_id = connection.id,
        sub = connection.sub(),
        code = reason.code(),
        reason = reason.phrase(),
        "authenticated WebSocket closed by the server"
    );
}

pub(crate) fn disconnected(connection: &Connection) {
    tracing::debug!(
        target: TARGET,
        event = "disconnected",
        conn_id = connection.id,
        sub = connection.sub(),
        "peer went away"
    );
}
