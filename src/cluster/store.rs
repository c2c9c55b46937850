//! The Redis side: the keys, the command connection (re-opened after a
//! failure), storing and publishing a command, reading what is stored,
//! the epoch, and writing back entries Redis lost.

use std::time::{Duration, SystemTime};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisResult};
use tokio::sync::Mutex;

use super::epoch::Observed;
use super::known::{Entry, Set};
use super::message::{Envelope, duration_ms, millis};

/// The names a cluster uses under its prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    /// The pub/sub channel every node subscribes to.
    pub(super) channel: String,
    /// Revocations (sorted set, scored by the time they may be dropped).
    revocations: String,
    /// Re-authentication requests (sorted set, scored by their deadline).
    reauth: String,
    /// A random value that Redis loses with its data (see `epoch.rs`).
    epoch: String,
    /// Held (with an expiry) while a node writes entries back.
    seeding: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            channel: format!("{prefix}:commands"),
            revocations: format!("{prefix}:revocations"),
            reauth: format!("{prefix}:reauth"),
            epoch: format!("{prefix}:epoch"),
            seeding: format!("{prefix}:seeding"),
        }
    }

    fn set(&self, set: Set) -> &str {
        match set {
            Set::Revocations => &self.revocations,
            Set::Reauth => &self.reauth,
        }
    }

    fn sets(&self) -> [&str; 2] {
        [&self.revocations, &self.reauth]
    }
}

/// Commands to Redis over one multiplexed connection, opened on first use
/// and opened again after any failure.
#[derive(Debug)]
pub(super) struct Store {
    client: Client,
    pub(super) keys: Keys,
    timeout: Duration,
    connection: Mutex<Option<MultiplexedConnection>>,
}

impl Store {
    pub(super) fn new(client: Client, keys: Keys, timeout: Duration) -> Self {
        Self {
            client,
            keys,
            timeout,
            connection: Mutex::new(None),
        }
    }

    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = &*slot {
            return Ok(connection.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Runs `pipe`; on failure the connection is dropped, so the next call
    /// opens a new one.
    async fn run<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> RedisResult<T> {
        let mut connection = self.connection().await?;
        let result = pipe.query_async(&mut connection).await;
        if result.is_err() {
            *self.connection.lock().await = None;
        }
        result
    }

    /// Stores the command (until it stops mattering) and publishes it, in
    /// one transaction: a node that sees the message can also find it
    /// stored, and nothing is stored unpublished. Expired entries of the
    /// same set are dropped on the way.
    pub(super) async fn publish(&self, envelope: &Envelope, now: SystemTime) -> RedisResult<()> {
        let payload = envelope.to_json();
        let set = self.keys.set(Set::of(&envelope.command));
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZADD")
            .arg(set)
            .arg(envelope.command.keep_until_ms())
            .arg(&payload)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(set)
            .arg("-inf")
            .arg(millis(now))
            .ignore()
            .cmd("PUBLISH")
            .arg(&self.keys.channel)
            .arg(&payload)
            .ignore();
        self.run::<()>(&pipe).await
    }

    /// Every stored command that still matters, revocations first; drops
    /// the expired ones.
    pub(super) async fn stored(&self, now: SystemTime) -> RedisResult<Vec<Vec<u8>>> {
        let now = millis(now);
        let mut pipe = redis::pipe();
        for set in self.keys.sets() {
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(set)
                .arg("-inf")
                .arg(now)
                .ignore()
                .cmd("ZRANGEBYSCORE")
                .arg(set)
                .arg(format!("({now}"))
                .arg("+inf");
        }
        let (revocations, reauth): (Vec<Vec<u8>>, Vec<Vec<u8>>) = self.run(&pipe).await?;
        Ok(revocations.into_iter().chain(reauth).collect())
    }

    /// The epoch and whether a node is re-seeding, in one look.
    pub(super) async fn observe(&self) -> RedisResult<Observed> {
        let mut pipe = redis::pipe();
        pipe.cmd("MGET")
            .arg(&self.keys.epoch)
            .arg(&self.keys.seeding)
            .cmd("INFO")
            .arg("server");
        // Bytes, not strings: a value someone else wrote is judged, never
        // a decoding error that would keep the node reconnecting.
        type Keys = (Option<Vec<u8>>, Option<Vec<u8>>);
        let ((epoch, seeding), info): (Keys, Vec<u8>) = self.run(&pipe).await?;
        Ok(Observed::new(epoch, seeding.is_some(), run_id(&info)))
    }

    /// Sets a new epoch (whatever was there), stamped with the Redis run
    /// it was set under: after a node wrote entries back, every other node
    /// sees it change and resyncs.
    pub(super) async fn set_epoch(&self, epoch: &[u8]) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg(&self.keys.epoch).arg(epoch).ignore();
        self.run::<()>(&pipe).await
    }

    /// Writes `entries` back with their original scores (idempotent: the
    /// member is the same bytes), and holds the seeding lease for `lease`
    /// more, so that a node that just started waits for the rest.
    pub(super) async fn write_back(
        &self,
        entries: &[Entry],
        node: &str,
        lease: Duration,
    ) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for entry in entries {
            pipe.cmd("ZADD")
                .arg(self.keys.set(entry.set))
                .arg(entry.keep_until_ms)
                .arg(&*entry.payload)
                .ignore();
        }
        let lease_ms = duration_ms(lease).max(1);
        pipe.cmd("SET")
            .arg(&self.keys.seeding)
            .arg(node)
            .arg("PX")
            .arg(lease_ms)
            .ignore();
        self.run::<()>(&pipe).await
    }
}

/// The `run_id` of `INFO server`: it changes whenever the Redis process
/// does (a restart, with or without its data; a failover to a replica).
/// Empty when the server does not report one.
fn run_id(info: &[u8]) -> &[u8] {
    info.split(|byte| *byte == b'\n')
        .find_map(|line| line.strip_prefix(b"run_id:"))
        .map_or(&[][..], |id| id.trim_ascii())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_run_id_is_read_from_info_server() {
        let info = b"# Server\r\nredis_version:7.0.15\r\nrun_id:4f2a9c\r\ntcp_port:6379\r\n";
        assert_eq!(super::run_id(info), b"4f2a9c");
        assert_eq!(super::run_id(b"# Server\r\n"), b"");
        assert_eq!(super::run_id(b"\xff\xfe"), b"");
    }
}
