//! The handle an application holds: issue a command (applied here at once,
//! then published), watch freshness, stop the task.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::message::{Command, duration_ms, millis};
use super::shared::{Shared, lock};
use crate::revocation::Selector;

/// Revocations and re-authentication requests shared by every node of a
/// cluster through Redis.
///
/// Each node runs one `Cluster` next to its [`WsAuthLayer`](crate::WsAuthLayer):
/// a command issued on any node ([`revoke`](Self::revoke),
/// [`reauthenticate`](Self::reauthenticate)) is applied on that node at once,
/// then stored in Redis and published to the others, whose background task
/// applies it to their own [`Connections`](crate::Connections). Handshakes
/// and renewals only ever read the local copy: none waits on Redis.
///
/// Cloning is cheap; the background task stops when the last clone is
/// dropped, or at [`shutdown`](Self::shutdown).
///
/// ```no_run
/// use axum_ws_auth::cluster::Cluster;
/// use axum_ws_auth::{revocation::{Selector, StalePolicy}};
/// # async fn run(layer: axum_ws_auth::WsAuthLayer<serde_json::Value>) -> Result<(), axum_ws_auth::cluster::ClusterError> {
/// let cluster = Cluster::builder("redis://127.0.0.1:6379/", layer.connections())
///     .prefix("chat-prod")
///     .stale_policy(StalePolicy::FailClosed)
///     .start()?;
/// // On any node: closes alice's sockets here and on every other node.
/// let issued = cluster
///     .revoke(Selector::user(Some("https://issuer.example"), "alice"))
///     .await;
/// println!("{} closed here, published: {}", issued.local, issued.published);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Cluster {
    inner: Arc<Inner>,
}

/// What issuing a command did on this node.
///
/// ```no_run
/// # async fn f(cluster: axum_ws_auth::cluster::Cluster) {
/// use axum_ws_auth::revocation::Selector;
/// let issued = cluster.revoke(Selector::token("t-1")).await;
/// if !issued.published {
///     // Applied here; the other nodes hear of it once Redis is back.
///     tracing::warn!(queued = cluster.queued(), "revocation not yet published");
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Issued {
    /// How many of this node's sockets it reached (closed, or asked to
    /// re-authenticate).
    pub local: usize,
    /// Whether Redis took it. When it did not (Redis unreachable), it is
    /// queued, and the background task stores and publishes it once Redis
    /// answers again; this node applied it either way. Always false for a
    /// command about one connection ([`Selector::Connection`]), which is
    /// applied here only and never queued.
    pub published: bool,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Cluster {
    pub(super) fn spawn(shared: Shared) -> Self {
        let shared = Arc::new(shared);
        // Stale until the first resync: with `FailClosed`, a node that never
        // reached Redis refuses new handshakes instead of trusting an empty
        // list.
        shared.mirror.set_stale(Some(shared.settings.stale_policy));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(super::task::run(Arc::clone(&shared), stopped));
        Self {
            inner: Arc::new(Inner {
                shared,
                stop,
                task: Mutex::new(Some(task)),
            }),
        }
    }

    /// Revokes on every node: closes the matching sockets here at once
    /// (4403) and keeps the revocation, then stores it in Redis (until the
    /// [`retention`](super::ClusterBuilder::retention) has passed) and
    /// publishes it. Waits at most the
    /// [`command_timeout`](super::ClusterBuilder::command_timeout) for Redis.
    ///
    /// [`Selector::Connection`] names a connection of this node (ids are
    /// each node's own): it is applied here only, never published
    /// (`published` is false, and nothing is queued).
    ///
    /// ```no_run
    /// # async fn f(cluster: axum_ws_auth::cluster::Cluster) {
    /// use axum_ws_auth::revocation::Selector;
    /// cluster.revoke(Selector::token("5f2b...")).await;
    /// # }
    /// ```
    pub async fn revoke(&self, revocation: Selector) -> Issued {
        let now = SystemTime::now();
        // The layer's retention rule, with the cluster's retention.
        let drop_at_ms = revocation
            .expires_at(now, self.inner.shared.settings.retention)
            .map_or(u64::MAX, millis);
        let command = Command::Revoke {
            revocation,
            revoked_at_ms: millis(now),
            drop_at_ms,
        };
        self.issue(command, now).await
    }

    /// Asks the matching sockets on every node to renew within `grace`
    /// (an early `auth.expiring`; 4401 without a renewal by then). The
    /// deadline is absolute: a node that was cut off and hears of the
    /// request late gives what is left of it, and none after it passed.
    /// [`Selector::Connection`] is applied here only, as in
    /// [`revoke`](Self::revoke).
    ///
    /// ```no_run
    /// # async fn f(cluster: axum_ws_auth::cluster::Cluster) {
    /// use axum_ws_auth::revocation::Selector;
    /// use std::time::Duration;
    /// let selector = Selector::user(Some("https://issuer.example"), "alice");
    /// cluster.reauthenticate(selector, Duration::from_secs(30)).await;
    /// # }
    /// ```
    pub async fn reauthenticate(&self, selector: Selector, grace: Duration) -> Issued {
        let now = SystemTime::now();
        let command = Command::Reauthenticate {
            selector,
            deadline_ms: millis(now).saturating_add(duration_ms(grace)),
        };
        self.issue(command, now).await
    }

    async fn issue(&self, command: Command, now: SystemTime) -> Issued {
        let (local, published) = self.inner.shared.issue(command, now).await;
        Issued { local, published }
    }

    /// Whether the local mirror is fresh: subscribed, and resynced since the
    /// last time the subscription was lost.
    ///
    /// ```no_run
    /// # fn f(cluster: axum_ws_auth::cluster::Cluster) {
    /// // A readiness probe.
    /// let body = serde_json::json!({ "node": cluster.node_id(), "fresh": cluster.is_fresh() });
    /// # }
    /// ```
    pub fn is_fresh(&self) -> bool {
        *self.inner.shared.fresh().borrow()
    }

    /// Resolves once the local mirror is fresh.
    ///
    /// ```no_run
    /// # async fn f(cluster: axum_ws_auth::cluster::Cluster) {
    /// use std::time::Duration;
    /// let ready = tokio::time::timeout(Duration::from_secs(5), cluster.fresh()).await;
    /// assert!(ready.is_ok(), "Redis unreachable");
    /// # }
    /// ```
    pub async fn fresh(&self) {
        let mut fresh = self.inner.shared.fresh().subscribe();
        let _ = fresh.wait_for(|fresh| *fresh).await;
    }

    /// This node's id, as it appears in the messages it publishes.
    pub fn node_id(&self) -> &str {
        &self.inner.shared.node
    }

    /// How many issued commands wait for Redis to publish them.
    pub fn queued(&self) -> usize {
        self.inner.shared.queued()
    }

    /// Stops the background task and waits for it. The mirror is then
    /// stale (it no longer hears of other nodes' commands): new handshakes
    /// follow the stale policy. Commands still queued are not published.
    pub async fn shutdown(&self) {
        self.inner.stop.send_replace(true);
        let task = lock(&self.inner.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let shared = &self.inner.shared;
        shared.mirror.set_stale(Some(shared.settings.stale_policy));
        shared.fresh().send_replace(false);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
        self.shared
            .mirror
            .set_stale(Some(self.shared.settings.stale_policy));
    }
}
