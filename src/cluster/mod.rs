//! Several nodes, one set of revocations: a revocation or re-authentication
//! request issued on any node reaches every node, through Redis (feature
//! `redis`).
//!
//! # What runs where
//!
//! Every node keeps its own copy of the revocations in its layer's
//! [`Connections`](crate::Connections) (the local mirror): handshakes and
//! renewals read only that copy and never wait on Redis. A [`Cluster`] per
//! node keeps the copy current:
//!
//! - [`Cluster::revoke`] and [`Cluster::reauthenticate`] apply the command
//!   on the issuing node at once, then store it in Redis and publish it on
//!   the cluster's channel, in one transaction (`MULTI` / `EXEC`).
//! - A background task subscribes to the channel and applies each command
//!   from another node to the local `Connections` (4403 for the sockets a
//!   revocation matches, an early `auth.expiring` for a re-authentication
//!   request). A node recognises its own messages by its node id and does
//!   not apply them twice.
//! - Every command is also stored, in a sorted set scored by the time it
//!   stops mattering (a revocation's retention, a request's deadline). When
//!   the task (re)connects, it first subscribes, then reads every stored
//!   command that still matters (`ZRANGEBYSCORE <set> (now +inf`), so
//!   nothing published while the node was cut off is lost; expired entries
//!   are dropped on the way (`ZREMRANGEBYSCORE <set> -inf now`). Each
//!   command has an id, and a node applies each id once: a
//!   re-authentication request heard on the channel is not asked again by
//!   the next resync.
//! - While the subscription is down, the mirror is stale, and new
//!   handshakes follow the configured [`StalePolicy`](crate::revocation::StalePolicy): `FailClosed` (the
//!   default) refuses them with 503, `FailOpen` lets them in on what the
//!   node knows. Open sockets keep working either way. The task reconnects
//!   with capped exponential backoff and jitter, and pings the subscription
//!   every [`health_check`](ClusterBuilder::health_check) so that a
//!   connection gone silent is noticed. A node is stale from its start
//!   until its first resync.
//! - A command issued while Redis is unreachable is applied locally at
//!   once, reported as not published ([`Issued::published`]), queued, and
//!   published by the task once Redis answers again.
//!
//! Issue commands through the `Cluster`:
//! [`Connections::revoke`](crate::Connections::revoke) and
//! [`Connections::reauthenticate`](crate::Connections::reauthenticate)
//! called directly stay on the node that calls them.
//!
//! A re-authentication request reaches a node when that node applies it:
//! there its deadline is the original one (what is left of the grace), and
//! the renewal that answers it must carry a token issued at or after that
//! node's moment of applying it (normally within a millisecond of the
//! request; later for a node that hears of it in a resync).
//!
//! Redis itself is one server (or a primary behind one address): Redis
//! Cluster mode and Sentinel are not supported.
//!
//! # When Redis loses its data
//!
//! A restart without persistence, a failover to a replica that had not
//! caught up, or a `FLUSHALL` empties the sorted sets, but every node still
//! holds what it issued or applied. The cluster keeps one more key,
//! `<prefix>:epoch`, a random value stamped with the `run_id` of the Redis
//! process it was set under, which each node remembers. Redis loses it
//! with the rest; a Redis back from an older snapshot, or a replica
//! promoted before it caught up, has it under another `run_id`. That is
//! how a node tells (no guessing from timing):
//!
//! - On every (re)connection, and at every
//!   [`health_check`](ClusterBuilder::health_check) (a `FLUSHALL` leaves
//!   the subscription up), a node reads the epoch. Gone, set under another
//!   Redis run, or changed by another node: it resyncs, then writes back
//!   every entry it knows that Redis lacks, byte for byte with its original score (its revocation
//!   instant and expiry are inside), in paced batches, and sets a new
//!   epoch so that the other nodes resync too. Writing back is idempotent
//!   and has no side effect: every node applies each command id once, so a
//!   re-authentication request written back is not asked again. It is
//!   recorded as `cluster_data_loss` (with `written_back`), and counted.
//! - The node goes on serving from its own copy meanwhile: handshakes
//!   never wait on the write-back. (After a restart it is stale until its
//!   resync, as after any reconnection, but not while it writes back.)
//! - A node that finds no epoch and never saw one (it just started) cannot
//!   tell a new cluster from one that lost everything. It stays stale (new
//!   handshakes get 503 with the default `FailClosed`) for
//!   `reconnect_max + health_check + 2 × command_timeout` (19 s with the
//!   defaults: every live node has reconnected or looked by then), and for
//!   as long as another node is writing back (`<prefix>:seeding`, a short
//!   lease). Then, if no node set an epoch, it starts one: it is the first
//!   node of a new cluster.
//!
//! Limits. A live node that cannot reach Redis for longer than a new
//! node's settling time (a partition) cannot write back in time: the new
//! node starts an epoch without it, and learns its entries only when it
//! is back and writes them (all nodes then resync). Entries written back
//! with under a minute left set no new epoch (so that nodes whose clocks
//! differ do not take turns rewriting them), and reach only nodes that
//! sync afterwards. What a node knows lives in its `Cluster`: a `Cluster`
//! started anew on the same `Connections` knows nothing to write back.
//!
//! When *every* node restarted while Redis was empty, nothing is left to
//! write back from, and revocations issued before are forgotten once the
//! first node starts a new epoch. Prevent it with persistence (AOF with
//! `appendfsync everysec`, or RDB snapshots), a replica, or by replaying
//! revocations the application keeps in its own database through
//! [`Cluster::revoke`] at startup.
//!
//! # Keys
//!
//! Under the [`prefix`](ClusterBuilder::prefix) (`axum-ws-auth` by
//! default): the channel `<prefix>:commands`, the sorted sets
//! `<prefix>:revocations` and `<prefix>:reauth`, the string
//! `<prefix>:epoch`, and `<prefix>:seeding` (with an expiry) while a node
//! writes entries back. None of them may be evicted: run Redis with
//! `maxmemory-policy noeviction` (or a `volatile-*` policy). Members and
//! messages are the same JSON envelope:
//!
//! ```json
//! {"v":1,"node":"<node id>","id":"<command id>","sent_at_ms":1764000000000,
//!  "command":{"kind":"revoke","revocation":{"kind":"user","iss":null,"sub":"alice"},
//!             "revoked_at_ms":1764000000000,"drop_at_ms":1764086400000}}
//! ```
//!
//! Anything else on the channel is logged (`event = "cluster_malformed"`)
//! and ignored. Anyone who can publish on the channel can revoke and ask
//! for re-authentication on every node: give the nodes a Redis (or an ACL
//! user) of their own.
//!
//! # Client crate
//!
//! [redis-rs](https://docs.rs/redis) (`redis`, with only `tokio-comp`), not
//! `fred`: it is the most used Redis client in Rust and is maintained under
//! the redis-rs organisation; with default features off it adds little to
//! the build (its parser, `url`); its dedicated RESP2 pub/sub connection
//! (`Client::get_async_pubsub`) works with every Redis and Valkey version
//! and ends its message stream when the connection drops, which is all the
//! task needs to notice a lost subscription. Reconnection, backoff and
//! resync are this module's (one policy, in one place), so neither
//! redis-rs's `ConnectionManager` nor fred's reconnecting client is needed.
//!
//! **No TLS**: redis-rs is built without its TLS features, so the whole
//! build keeps one crypto backend (aws-lc-rs, which jsonwebtoken and the
//! `client` and `jwks` features use); its rustls feature would bring a
//! second provider configuration. A `rediss://` URL is refused with
//! [`ClusterError::UnsupportedScheme`]. Reach Redis over loopback, a
//! private network or a TLS tunnel.
//!
//! # Metrics and events
//!
//! Counters `ws_auth_cluster_published_total{kind}`,
//! `ws_auth_cluster_publish_failures_total{kind}`,
//! `ws_auth_cluster_received_total{kind}`,
//! `ws_auth_cluster_applied_total{kind,via}` (`via`: `channel`, `resync`),
//! `ws_auth_cluster_ignored_total{reason}` (`own`, `duplicate`, `expired`,
//! `malformed`), `ws_auth_cluster_resyncs_total`,
//! `ws_auth_cluster_stale_transitions_total{to}`,
//! `ws_auth_cluster_data_loss_total{cause}` (`epoch_missing`: the epoch
//! this node had seen is gone; `entries_missing`: entries it knows were
//! stored are not), `ws_auth_cluster_written_back_total` (entries); the gauge
//! `ws_auth_cluster_stale` (1 while stale); the histogram
//! `ws_auth_cluster_propagation_lag_seconds{kind}` (from the issuing
//! node's clock at publication to this node's at application, for commands
//! from the channel). `tracing` events `cluster_published`,
//! `cluster_publish_failed`, `cluster_applied`, `cluster_resynced`,
//! `cluster_fresh`, `cluster_stale`, `cluster_malformed`,
//! `cluster_data_loss` (warn), `cluster_waiting`.

mod builder;
mod epoch;
mod error;
mod handle;
mod known;
mod local;
mod message;
mod shared;
mod store;
mod task;
mod telemetry;

pub use builder::{ClusterBuilder, DEFAULT_PREFIX};
pub use error::ClusterError;
pub use handle::{Cluster, Issued};
