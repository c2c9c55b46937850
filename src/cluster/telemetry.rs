//! The cluster's metrics and `tracing` events (target `axum_ws_auth`, an
//! `event` field like the rest of the crate). Labels have small fixed value
//! sets: no subject, no id, no payload.

use std::time::Duration;

use super::message::duration_ms;
use crate::telemetry::TARGET;

pub(super) const METRIC_PUBLISHED: &str = "ws_auth_cluster_published_total";
pub(super) const METRIC_PUBLISH_FAILURES: &str = "ws_auth_cluster_publish_failures_total";
pub(super) const METRIC_RECEIVED: &str = "ws_auth_cluster_received_total";
pub(super) const METRIC_APPLIED: &str = "ws_auth_cluster_applied_total";
pub(super) const METRIC_IGNORED: &str = "ws_auth_cluster_ignored_total";
pub(super) const METRIC_RESYNCS: &str = "ws_auth_cluster_resyncs_total";
pub(super) const METRIC_STALE: &str = "ws_auth_cluster_stale";
pub(super) const METRIC_STALE_TRANSITIONS: &str = "ws_auth_cluster_stale_transitions_total";
pub(super) const METRIC_LAG: &str = "ws_auth_cluster_propagation_lag_seconds";
pub(super) const METRIC_DATA_LOSS: &str = "ws_auth_cluster_data_loss_total";
pub(super) const METRIC_WRITTEN_BACK: &str = "ws_auth_cluster_written_back_total";

/// Where an applied command came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    Channel,
    Resync,
}

impl Via {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Via::Channel => "channel",
            Via::Resync => "resync",
        }
    }
}

pub(super) fn published(kind: &'static str, id: &str) {
    metrics::counter!(METRIC_PUBLISHED, "kind" => kind).increment(1);
    tracing::debug!(target: TARGET, event = "cluster_published", kind, id, "command published");
}

pub(super) fn publish_failed(kind: &'static str, id: &str, error: &redis::RedisError) {
    metrics::counter!(METRIC_PUBLISH_FAILURES, "kind" => kind).increment(1);
    tracing::warn!(
        target: TARGET,
        event = "cluster_publish_failed",
        kind,
        id,
        %error,
        "command applied here, not yet published: queued until Redis answers"
    );
}

pub(super) fn received(kind: &'static str) {
    metrics::counter!(METRIC_RECEIVED, "kind" => kind).increment(1);
}

pub(super) fn applied(kind: &'static str, id: &str, via: Via, sockets: usize, lag: Duration) {
    metrics::counter!(METRIC_APPLIED, "kind" => kind, "via" => via.as_str()).increment(1);
    if via == Via::Channel {
        metrics::histogram!(METRIC_LAG, "kind" => kind).record(lag.as_secs_f64());
    }
    tracing::info!(
        target: TARGET,
        event = "cluster_applied",
        kind,
        id,
        via = via.as_str(),
        sockets,
        lag_ms = duration_ms(lag),
        "command from another node applied"
    );
}

/// A message not applied: this node's own, one already applied, or one
/// that is not a command.
pub(super) fn ignored(reason: &'static str) {
    metrics::counter!(METRIC_IGNORED, "reason" => reason).increment(1);
}

pub(super) fn malformed(source: &'static str, error: &dyn std::fmt::Display) {
    ignored("malformed");
    tracing::warn!(
        target: TARGET,
        event = "cluster_malformed",
        source,
        %error,
        "ignored a message that is not a command of this crate"
    );
}

pub(super) fn resynced(entries: usize, applied: usize) {
    metrics::counter!(METRIC_RESYNCS).increment(1);
    tracing::info!(
        target: TARGET,
        event = "cluster_resynced",
        entries,
        applied,
        "read every stored command"
    );
}

/// Redis lost entries this node knew (`loss` says how it could tell);
/// `written_back` of them are stored again.
pub(super) fn data_loss(loss: super::epoch::Loss, written_back: usize) {
    metrics::counter!(METRIC_DATA_LOSS, "cause" => loss.as_str()).increment(1);
    metrics::counter!(METRIC_WRITTEN_BACK)
        .increment(u64::try_from(written_back).unwrap_or(u64::MAX));
    tracing::warn!(
        target: TARGET,
        event = "cluster_data_loss",
        cause = loss.as_str(),
        written_back,
        "Redis lost the cluster's entries: wrote back what this node knows"
    );
}

/// Redis holds no epoch and this node never saw one: it stays stale.
pub(super) fn waiting(settle: Duration) {
    tracing::info!(
        target: TARGET,
        event = "cluster_waiting",
        settle_ms = duration_ms(settle),
        "Redis holds no cluster epoch (a new cluster, or Redis lost its data): \
         staying stale while other nodes may write back what they know"
    );
}

pub(super) fn fresh() {
    metrics::gauge!(METRIC_STALE).set(0.0);
    metrics::counter!(METRIC_STALE_TRANSITIONS, "to" => "fresh").increment(1);
    tracing::info!(
        target: TARGET,
        event = "cluster_fresh",
        "subscribed and resynced: the local mirror is fresh"
    );
}

pub(super) fn stale(error: &dyn std::fmt::Display, retry_in: Duration) {
    metrics::gauge!(METRIC_STALE).set(1.0);
    metrics::counter!(METRIC_STALE_TRANSITIONS, "to" => "stale").increment(1);
    tracing::warn!(
        target: TARGET,
        event = "cluster_stale",
        %error,
        retry_in_ms = duration_ms(retry_in),
        "Redis subscription lost: the local mirror is stale"
    );
}

pub(super) fn reconnect_failed(error: &dyn std::fmt::Display, retry_in: Duration) {
    tracing::debug!(
        target: TARGET,
        event = "cluster_reconnect_failed",
        %error,
        retry_in_ms = duration_ms(retry_in),
        "Redis still unreachable"
    );
}
