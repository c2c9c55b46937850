//! One `tracing` event and one `metrics` counter per security event.
//!
//! Events use the target `axum_ws_auth` and carry the connection id and
//! `sub`, never a token. Metric names are the `METRIC_*` constants; labels
//! have small fixed value sets (no `sub`, no reason text from clients).
//!
//! A connection ended because its deadline passed (its token's `exp` plus
//! leeway, or a re-authentication request's deadline) also records how late
//! its 4401 close frame left: the histogram
//! `ws_auth_expiry_close_lateness_seconds`, from the deadline on the
//! monotonic clock to the moment the close frame was flushed to the
//! transport (or, for a frame a peer that does not read holds back, to the
//! close timeout: a lower bound), and the `lateness_ms` field of its
//! `closed` event.

use std::time::Duration;

use http::StatusCode;

use crate::connection::{Identity, Report, Selector, StalePolicy};
use crate::protocol::{CloseReason, RenewRejection};

pub(crate) const TARGET: &str = "axum_ws_auth";

pub(crate) const METRIC_UPGRADES_REFUSED: &str = "ws_auth_upgrades_refused_total";
pub(crate) const METRIC_CONNECTIONS_OPENED: &str = "ws_auth_connections_opened_total";
pub(crate) const METRIC_CONNECTIONS_ACTIVE: &str = "ws_auth_connections_active";
pub(crate) const METRIC_EXPIRY_NOTICES: &str = "ws_auth_expiry_notices_total";
pub(crate) const METRIC_RENEWALS: &str = "ws_auth_renewals_total";
pub(crate) const METRIC_CLOSES: &str = "ws_auth_server_closes_total";
pub(crate) const METRIC_POLICY_FAILURES: &str = "ws_auth_policy_failures_total";
pub(crate) const METRIC_REVOCATION_ENTRIES: &str = "ws_auth_revocation_entries";
pub(crate) const METRIC_REVOCATIONS: &str = "ws_auth_revocations_total";
pub(crate) const METRIC_REVOCATIONS_STALE: &str = "ws_auth_revocations_stale";
pub(crate) const METRIC_REAUTH_REQUESTS: &str = "ws_auth_reauth_requests_total";
pub(crate) const METRIC_EXPIRY_CLOSE_LATENESS: &str = "ws_auth_expiry_close_lateness_seconds";

/// What a layer's revocation store reports, installed by the layer's
/// builder (the store sits below this module).
pub(crate) const REVOCATION_REPORT: Report = Report {
    entries: revocation_entries,
    applied: revocation_applied,
    stale: revocations_stale,
};

/// Counts a connection as active while it lives.
#[derive(Debug)]
pub(crate) struct Active;

impl Active {
    pub(crate) fn new() -> Self {
        metrics::gauge!(METRIC_CONNECTIONS_ACTIVE).increment(1.0);
        Active
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        metrics::gauge!(METRIC_CONNECTIONS_ACTIVE).decrement(1.0);
    }
}

fn sub(identity: &Identity) -> &str {
    identity.subject().unwrap_or("-")
}

/// A refused upgrade: its status, RFC 6750 error code and short,
/// token-free reason.
pub(crate) fn upgrade_refused(status: StatusCode, error: Option<&'static str>, reason: &str) {
    metrics::counter!(
        METRIC_UPGRADES_REFUSED,
        "status" => status.as_str().to_owned(),
        "error" => error.unwrap_or("none"),
    )
    .increment(1);
    tracing::warn!(
        target: TARGET,
        event = "upgrade_refused",
        status = status.as_u16(),
        error = error.unwrap_or("-"),
        reason = %reason,
        "WebSocket upgrade refused"
    );
}

/// A policy check that could not decide (an error, a timeout, a panic):
/// the handshake or renewal it guarded was refused.
pub(crate) fn policy_failed(at: &'static str, sub: Option<&str>, reason: &str) {
    metrics::counter!(METRIC_POLICY_FAILURES, "at" => at).increment(1);
    tracing::error!(
        target: TARGET,
        event = "policy_failed",
        at,
        sub = sub.unwrap_or("-"),
        reason,
        "policy check failed; refused (fail closed)"
    );
}

pub(crate) fn upgrade_failed(error: axum::Error) {
    tracing::debug!(target: TARGET, event = "upgrade_failed", %error, "WebSocket upgrade failed");
}

pub(crate) fn connected(connection: &Identity, exp: u64) {
    let source = connection.token_source();
    metrics::counter!(METRIC_CONNECTIONS_OPENED, "source" => source.as_str()).increment(1);
    tracing::info!(
        target: TARGET,
        event = "connected",
        conn_id = connection.connection_id(),
        sub = sub(connection),
        source = source.as_str(),
        exp,
        "authenticated WebSocket opened"
    );
}

pub(crate) fn expiring(connection: &Identity, exp: u64, expires_in: u64) {
    metrics::counter!(METRIC_EXPIRY_NOTICES).increment(1);
    tracing::debug!(
        target: TARGET,
        event = "expiring",
        conn_id = connection.connection_id(),
        sub = sub(connection),
        exp,
        expires_in,
        "token expiry notice sent"
    );
}

pub(crate) fn renewed(connection: &Identity, exp: u64) {
    metrics::counter!(METRIC_RENEWALS, "result" => "accepted", "error" => "none").increment(1);
    tracing::info!(
        target: TARGET,
        event = "renewed",
        conn_id = connection.connection_id(),
        sub = sub(connection),
        exp,
        "token renewed"
    );
}

pub(crate) fn renew_rejected(connection: &Identity, error: RenewRejection, reason: &str) {
    metrics::counter!(METRIC_RENEWALS, "result" => "rejected", "error" => error.as_str())
        .increment(1);
    tracing::warn!(
        target: TARGET,
        event = "renew_rejected",
        conn_id = connection.connection_id(),
        sub = sub(connection),
        error = error.as_str(),
        reason,
        "token renewal rejected"
    );
}

pub(crate) fn identity_change_refused(connection: &Identity) {
    tracing::warn!(
        target: TARGET,
        event = "identity_change",
        conn_id = connection.connection_id(),
        sub = sub(connection),
        "renewal tried to change the token's identity (iss, sub)"
    );
}

/// The server's close frame went out (`lateness`: how long after the
/// connection's deadline it was flushed, for a close at that deadline), or
/// could not be written (`lateness` is `None` then too).
pub(crate) fn closed(connection: &Identity, reason: CloseReason, lateness: Option<Duration>) {
    metrics::counter!(METRIC_CLOSES, "code" => reason.code_label()).increment(1);
    if let Some(lateness) = lateness {
        metrics::histogram!(METRIC_EXPIRY_CLOSE_LATENESS).record(lateness.as_secs_f64());
    }
    // Expiry and shutdown are routine; the other closes mean a misbehaving
    // or hostile client.
    macro_rules! closed_event {
        ($level:ident) => {
            tracing::$level!(
                target: TARGET,
                event = "closed",
                conn_id = connection.connection_id(),
                sub = sub(connection),
                code = reason.code(),
                reason = reason.phrase(),
                lateness_ms = lateness.map(|late| late.as_secs_f64() * 1000.0),
                "authenticated WebSocket closed by the server"
            )
        };
    }
    match reason {
        CloseReason::TokenExpired | CloseReason::ServerShutdown => closed_event!(info),
        _ => closed_event!(warn),
    }
}

pub(crate) fn disconnected(connection: &Identity) {
    tracing::debug!(
        target: TARGET,
        event = "disconnected",
        conn_id = connection.connection_id(),
        sub = sub(connection),
        "peer went away"
    );
}

/// The number of stored revocations changed by `delta` (a gauge summed
/// over every layer of the process).
fn revocation_entries(delta: i64) {
    metrics::gauge!(METRIC_REVOCATION_ENTRIES).increment(delta as f64);
}

/// A revocation was applied (`new`: it changed this node's list) and
/// closed `closed` sockets.
fn revocation_applied(revocation: &Selector, new: bool, closed: usize) {
    metrics::counter!(
        METRIC_REVOCATIONS,
        "kind" => revocation.kind(),
        "new" => if new { "true" } else { "false" },
    )
    .increment(1);
    tracing::info!(
        target: TARGET,
        event = "revoked",
        kind = revocation.kind(),
        sub = revocation.subject().unwrap_or("-"),
        new,
        closed,
        "revocation applied"
    );
}

/// The staleness switch of a layer changed from `was` to `now`.
fn revocations_stale(was: Option<StalePolicy>, now: Option<StalePolicy>) {
    match (was.is_some(), now.is_some()) {
        (false, true) => metrics::gauge!(METRIC_REVOCATIONS_STALE).increment(1.0),
        (true, false) => metrics::gauge!(METRIC_REVOCATIONS_STALE).decrement(1.0),
        _ => {}
    }
    match now {
        Some(policy) => tracing::warn!(
            target: TARGET,
            event = "revocations_stale",
            policy = match policy {
                StalePolicy::FailClosed => "fail_closed",
                StalePolicy::FailOpen => "fail_open",
            },
            "revocation list may be behind"
        ),
        None => tracing::info!(
            target: TARGET,
            event = "revocations_fresh",
            "revocation list current again"
        ),
    }
}

pub(crate) fn reauth_requested(connection: &Identity, exp: u64, expires_in: u64) {
    metrics::counter!(METRIC_REAUTH_REQUESTS).increment(1);
    tracing::info!(
        target: TARGET,
        event = "reauth_requested",
        conn_id = connection.connection_id(),
        sub = sub(connection),
        exp,
        expires_in,
        "re-authentication requested"
    );
}
