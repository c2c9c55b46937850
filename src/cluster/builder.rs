//! Configuration of a [`Cluster`]: consuming setters, checked once in
//! [`start`](ClusterBuilder::start).

use std::sync::Arc;
use std::time::Duration;

use super::ClusterError;
use super::handle::Cluster;
use super::local::Mirror;
use super::message::random_id;
use super::shared::{Settings, Shared};
use super::store::{Keys, Store};
use crate::{Connections, revocation::StalePolicy};

/// The key prefix when none is set.
pub const DEFAULT_PREFIX: &str = "axum-ws-auth";

/// Builds a [`Cluster`]; start one with [`Cluster::builder`].
///
/// ```no_run
/// use std::time::Duration;
/// use axum_ws_auth::revocation::StalePolicy;
/// use axum_ws_auth::cluster::Cluster;
/// # fn f(connections: axum_ws_auth::Connections) -> Result<(), axum_ws_auth::cluster::ClusterError> {
/// let cluster = Cluster::builder("redis://10.0.0.5:6379/2", connections)
///     .prefix("chat-prod")
///     .stale_policy(StalePolicy::FailOpen)
///     .retention(Duration::from_secs(24 * 3600))
///     .command_timeout(Duration::from_secs(1))
///     .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(10))
///     .health_check(Duration::from_secs(5))
///     .start()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `start`"]
pub struct ClusterBuilder {
    url: String,
    connections: Connections,
    prefix: String,
    command_timeout: Duration,
    settings: Settings,
}

impl Cluster {
    /// Starts the configuration of a node that shares `connections`'
    /// revocations through the Redis at `url` (`redis://[user:password@]host[:port][/db]`
    /// or `redis+unix:///path`; `rediss://` is not supported).
    pub fn builder(url: impl Into<String>, connections: Connections) -> ClusterBuilder {
        ClusterBuilder {
            url: url.into(),
            connections,
            prefix: DEFAULT_PREFIX.to_owned(),
            command_timeout: Duration::from_secs(2),
            settings: Settings {
                stale_policy: StalePolicy::FailClosed,
                retention: crate::connection::DEFAULT_RETENTION,
                reconnect_base: Duration::from_millis(100),
                reconnect_max: Duration::from_secs(10),
                health_check: Duration::from_secs(5),
            },
        }
    }
}

impl ClusterBuilder {
    /// The namespace of the cluster's keys and channel
    /// (`<prefix>:commands`, `<prefix>:revocations`, `<prefix>:reauth`):
    /// nodes with the same prefix on the same Redis form one cluster.
    /// Default [`DEFAULT_PREFIX`].
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// What new handshakes do while the local copy may be missing other
    /// nodes' commands (Redis unreachable, or not reached yet): refuse
    /// with 503 ([`StalePolicy::FailClosed`], the default) or go on with
    /// what this node knows ([`StalePolicy::FailOpen`]). Open sockets are
    /// never closed for staleness.
    pub fn stale_policy(mut self, policy: StalePolicy) -> Self {
        self.settings.stale_policy = policy;
        self
    }

    /// How long Redis keeps a revocation for nodes that resync (default
    /// 24 h, as the layer's own default). Give it the layer's
    /// [`revocation_retention`](crate::WsAuthLayerBuilder::revocation_retention):
    /// at least the longest lifetime of the tokens your issuer mints, after
    /// which every token the revocation was aimed at has expired anyway.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.settings.retention = retention;
        self
    }

    /// How long a command to Redis (connecting included) may take before it
    /// counts as failed (default 2 s). It bounds how long
    /// [`Cluster::revoke`] waits before queueing.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Reconnection delays: the n-th is drawn in `[0, c]` with
    /// `c = min(max, base * 2^n)` (defaults 100 ms, 10 s), the client's
    /// `client::Backoff` formula ("full jitter").
    pub fn reconnect_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.settings.reconnect_base = base;
        self.settings.reconnect_max = max;
        self
    }

    /// How often the subscription is pinged, so that a connection that went
    /// silent is noticed (default 5 s). It is also when queued commands are
    /// retried, and when the cluster's epoch is read, so that Redis losing
    /// its data under a live subscription (`FLUSHALL`) is noticed and what
    /// this node knows is written back (see the [module docs](super)).
    pub fn health_check(mut self, interval: Duration) -> Self {
        self.settings.health_check = interval;
        self
    }

    /// Checks the settings and spawns the background task (on the current
    /// tokio runtime). Redis need not be up: the node starts stale and
    /// becomes fresh once it has subscribed and resynced.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn start(self) -> Result<Cluster, ClusterError> {
        let client = self.client()?;
        self.check()?;
        let store = Store::new(client, Keys::new(&self.prefix), self.command_timeout);
        let mirror: Arc<dyn Mirror> = Arc::new(self.connections);
        Ok(Cluster::spawn(Shared::new(
            random_id(),
            store,
            mirror,
            self.settings,
        )))
    }

    fn client(&self) -> Result<redis::Client, ClusterError> {
        if let Some((scheme, _)) = self.url.split_once("://")
            && scheme.eq_ignore_ascii_case("rediss")
        {
            return Err(ClusterError::UnsupportedScheme(scheme.to_owned()));
        }
        use redis::IntoConnectionInfo;
        let info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(ClusterError::InvalidUrl)?;
        // A command is one small write: Nagle's algorithm would hold it
        // back for the peer's delayed ACK (tens of milliseconds).
        let tcp = redis::io::tcp::TcpSettings::default().set_nodelay(true);
        redis::Client::open(info.set_tcp_settings(tcp)).map_err(ClusterError::InvalidUrl)
    }

    fn check(&self) -> Result<(), ClusterError> {
        if self.prefix.is_empty() || self.prefix.contains(char::is_whitespace) {
            return Err(ClusterError::InvalidPrefix);
        }
        let Settings {
            retention,
            reconnect_base,
            reconnect_max,
            health_check,
            ..
        } = self.settings;
        let positive = [
            (self.command_timeout, "command_timeout is zero"),
            (retention, "retention is zero"),
            (reconnect_base, "reconnect_backoff base is zero"),
            (health_check, "health_check is zero"),
        ];
        if let Some((_, what)) = positive.iter().find(|(value, _)| value.is_zero()) {
            return Err(ClusterError::InvalidSetting(what));
        }
        if reconnect_max < reconnect_base {
            return Err(ClusterError::InvalidSetting(
                "reconnect_backoff max is below its base",
            ));
        }
        Ok(())
    }
}
