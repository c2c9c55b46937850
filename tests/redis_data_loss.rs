//! A revoked token stays revoked when Redis loses its data (a restart
//! without persistence, a `FLUSHALL`): every surviving node writes back
//! what it knows, with the original instants and expiries, and a node that
//! starts while Redis is empty waits, stale, until one has. A real
//! `redis-server` on a free loopback port, started without persistence.
//! Skipped with one `SKIPPED` line without `redis-server` (a failure under
//! `CI=true`).
#![cfg(feature = "redis")]

#[path = "common/cluster.rs"]
mod cluster_node;
mod common;
#[path = "common/redis.rs"]
mod redis_server;

use std::time::Duration;

use axum_ws_auth::Connections;
use axum_ws_auth::cluster::Cluster;
use axum_ws_auth::revocation::{Selector, StalePolicy};
use cluster_node::*;
use futures_util::StreamExt;
use redis_server::RedisServer;
use serde_json::json;

const REVOCATIONS: &str = "test-cluster:revocations";
const REAUTH: &str = "test-cluster:reauth";

/// Polls `condition` every 20 ms for at most 20 s.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not within 20 s: {what}"));
}

/// A cluster node whose reconnections back off from 200 ms up to `max`:
/// its settling time, for a node that finds no epoch, is `max` + 1.5 s.
fn with_backoff(url: &str, connections: &Connections, max: Duration) -> Cluster {
    Cluster::builder(url, connections.clone())
        .prefix("test-cluster")
        .command_timeout(Duration::from_millis(500))
        .reconnect_backoff(Duration::from_millis(200), max)
        .health_check(Duration::from_millis(500))
        .start()
        .unwrap()
}

/// The status of a handshake with `token` on `addr`: 101 or the refusal's.
async fn handshake(addr: std::net::SocketAddr, token: &str) -> u16 {
    let bearer = format!("Bearer {token}");
    match common::connect(addr, &[("authorization", &bearer)]).await {
        Ok(connected) => {
            let mut client = connected.client;
            echoes(&mut client).await;
            101
        }
        Err(refused) => refused.status.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_after_redis_restarted_empty_still_refuses_a_revoked_user() {
    let Some(mut redis) = RedisServer::start(
        "a_node_started_after_redis_restarted_empty_still_refuses_a_revoked_user",
    ) else {
        return;
    };
    let a = node(&redis, StalePolicy::FailClosed).await;
    let b = node(&redis, StalePolicy::FailClosed).await;
    let c = node(&redis, StalePolicy::FailClosed).await;
    // Issued before the revocation: the token an attacker kept.
    let alice_token = common::token("alice", 300);
    let mut alice_on_b = common::connect_bearer(b.addr, &alice_token).await;
    let mut alice_on_c = common::connect_bearer(c.addr, &alice_token).await;
    echoes(&mut alice_on_b).await;
    echoes(&mut alice_on_c).await;

    assert!(a.cluster.revoke(user("alice")).await.published);
    assert_eq!(common::expect_close(&mut alice_on_b).await.0, 4403);
    assert_eq!(common::expect_close(&mut alice_on_c).await.0, 4403);
    let before = redis.scores(REVOCATIONS);
    assert_eq!(before.len(), 1);

    // Redis comes back empty: every node notices, writes back, is fresh.
    blocking(|| redis.restart());
    eventually("the revocation written back", || {
        blocking(|| redis.scores(REVOCATIONS)) == before
    })
    .await;
    for node in [&a, &b, &c] {
        fresh(&node.cluster).await;
    }

    // Node D, the example in a process of its own, started only now.
    let (_d, d_addr) = blocking(|| example_node(&redis));
    assert_eq!(handshake(d_addr, &alice_token).await, 401);
    assert_eq!(handshake(d_addr, &common::token("bob", 300)).await, 101);
    for node in [&a, &b, &c] {
        assert_eq!(handshake(node.addr, &alice_token).await, 401);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_starts_while_redis_is_empty_stays_stale_until_a_survivor_wrote_back() {
    let Some(mut redis) = RedisServer::start(
        "a_node_that_starts_while_redis_is_empty_stays_stale_until_a_survivor_wrote_back",
    ) else {
        return;
    };
    // The survivor reconnects within a second; the new node, configured
    // for slower reconnections, waits 7.5 s for a survivor (reconnect max +
    // health check + two command timeouts) before it would start an epoch
    // of its own.
    let url = redis.url();
    let with_backoff = |connections: &Connections, max| with_backoff(&url, connections, max);
    let (_a_addr, a_connections) = echo_server().await;
    let a = with_backoff(&a_connections, Duration::from_secs(1));
    fresh(&a).await;
    let alice_token = common::token("alice", 300);
    a.revoke(user("alice")).await;

    blocking(|| redis.restart());
    let (d_addr, d_connections) = echo_server().await;
    let d = with_backoff(&d_connections, Duration::from_secs(6));
    // Redis answers, but holds nothing: D refuses handshakes (fail closed)
    // instead of trusting the empty list.
    assert_eq!(handshake(d_addr, &alice_token).await, 503);
    assert!(!d.is_fresh());
    fresh(&d).await;
    assert_eq!(blocking(|| redis.zcard(REVOCATIONS)), 1);
    assert_eq!(handshake(d_addr, &alice_token).await, 401);
    assert_eq!(handshake(d_addr, &common::token("bob", 300)).await, 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_back_from_an_older_snapshot_is_not_trusted_until_survivors_wrote_back() {
    let Some(mut redis) = RedisServer::start_persistent(
        "a_redis_back_from_an_older_snapshot_is_not_trusted_until_survivors_wrote_back",
    ) else {
        return;
    };
    let url = redis.url();
    let with_backoff = |connections: &Connections, max| with_backoff(&url, connections, max);
    let a_connections = common::builder().build().unwrap().connections();
    let a = with_backoff(&a_connections, Duration::from_secs(1));
    fresh(&a).await;
    // A snapshot with the epoch and no revocation; then alice is revoked,
    // and Redis crashes before it saves again: it comes back with the
    // epoch this node saw, and without the revocation (as a replica that
    // had not caught up would).
    assert_eq!(blocking(|| redis.command(&["SAVE"])).unwrap(), "+OK");
    let alice_token = common::token("alice", 300);
    assert!(a.revoke(user("alice")).await.published);
    blocking(|| redis.crash_and_restart());
    assert_eq!(blocking(|| redis.zcard(REVOCATIONS)), 0);

    let (d_addr, d_connections) = echo_server().await;
    let d = with_backoff(&d_connections, Duration::from_secs(6));
    assert_eq!(handshake(d_addr, &alice_token).await, 503);
    fresh(&d).await;
    assert_eq!(blocking(|| redis.zcard(REVOCATIONS)), 1);
    assert_eq!(handshake(d_addr, &alice_token).await, 401);
    assert_eq!(handshake(d_addr, &common::token("bob", 300)).await, 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushall_is_noticed_and_written_back_without_asking_for_reauthentication_twice() {
    let Some(redis) = RedisServer::start(
        "a_flushall_is_noticed_and_written_back_without_asking_for_reauthentication_twice",
    ) else {
        return;
    };
    let a = node(&redis, StalePolicy::FailClosed).await;
    let b = node(&redis, StalePolicy::FailClosed).await;
    let alice_token = common::token("alice", 300);
    let mut erin = common::connect_bearer(b.addr, &common::token("erin", 300)).await;
    echoes(&mut erin).await;
    a.cluster.revoke(user("alice")).await;
    let selector = Selector::user(Some(common::ISSUER), "erin");
    a.cluster
        .reauthenticate(selector, Duration::from_secs(60))
        .await;
    assert_eq!(common::next_json(&mut erin).await["type"], "auth.expiring");
    renew(&mut erin, "erin").await;
    let (revocations, reauth) = (redis.scores(REVOCATIONS), redis.scores(REAUTH));
    assert_eq!((revocations.len(), reauth.len()), (1, 1));

    // The subscriptions stay up through a FLUSHALL: only the epoch tells.
    assert_eq!(blocking(|| redis.command(&["FLUSHALL"])).unwrap(), "+OK");
    eventually("both entries written back", || {
        blocking(|| (redis.scores(REVOCATIONS), redis.scores(REAUTH)))
            == (revocations.clone(), reauth.clone())
    })
    .await;
    assert!(a.cluster.is_fresh() && b.cluster.is_fresh());
    // Erin renewed once; the written-back request does not ask again.
    let next = tokio::time::timeout(Duration::from_millis(1500), erin.next()).await;
    assert!(next.is_err(), "asked again after the write-back: {next:?}");
    echoes(&mut erin).await;

    // A node started after the FLUSHALL learns both.
    let c = node(&redis, StalePolicy::FailClosed).await;
    assert_eq!(handshake(c.addr, &alice_token).await, 401);
    assert!(c.cluster.is_fresh());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_near_its_expiry_is_written_back_with_its_original_expiry() {
    let Some(redis) =
        RedisServer::start("an_entry_near_its_expiry_is_written_back_with_its_original_expiry")
    else {
        return;
    };
    let short = |connections: &Connections| {
        Cluster::builder(redis.url(), connections.clone())
            .prefix("test-cluster")
            .retention(Duration::from_secs(6))
            .command_timeout(Duration::from_millis(500))
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(400))
            .health_check(Duration::from_millis(500))
            .start()
            .unwrap()
    };
    let a_connections = common::builder().build().unwrap().connections();
    let a = short(&a_connections);
    fresh(&a).await;
    a.revoke(Selector::token("near")).await;
    a.revoke(Selector::token("later")).await;
    let original = redis.scores(REVOCATIONS);
    assert_eq!(original.len(), 2);

    // Part of the retention passes; then Redis loses everything.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(blocking(|| redis.command(&["FLUSHALL"])).unwrap(), "+OK");
    eventually("both entries written back", || {
        blocking(|| redis.scores(REVOCATIONS)).len() == 2
    })
    .await;
    // The same members with the same scores: the original expiry, not the
    // moment of the write-back plus the retention.
    assert_eq!(redis.scores(REVOCATIONS), original);
    let now_ms = common::now_millis();
    for (_, score) in &original {
        assert!(*score < now_ms + 5_000, "{score} vs now {now_ms}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_entries_are_written_back_while_handshakes_go_on() {
    let Some(redis) =
        RedisServer::start("ten_thousand_entries_are_written_back_while_handshakes_go_on")
    else {
        return;
    };
    const ENTRIES: usize = 10_000;
    let a = node(&redis, StalePolicy::FailClosed).await;
    let b = node(&redis, StalePolicy::FailClosed).await;
    for i in 0..ENTRIES {
        assert!(
            a.cluster
                .revoke(Selector::token(format!("r-{i}")))
                .await
                .published
        );
    }
    eventually("node B applied every revocation", || {
        b.connections.revocations().len() == ENTRIES
    })
    .await;
    assert_eq!(redis.zcard(REVOCATIONS), ENTRIES);

    assert_eq!(blocking(|| redis.command(&["FLUSHALL"])).unwrap(), "+OK");
    // Both nodes write back, paced; handshakes on both keep working and
    // neither goes stale.
    let mut handshakes = 0;
    let written_back = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            for node in [&a, &b] {
                let token = common::token(&format!("user-{handshakes}"), 300);
                assert_eq!(handshake(node.addr, &token).await, 101);
                assert!(node.cluster.is_fresh());
                handshakes += 1;
            }
            let written_back = blocking(|| redis.zcard(REVOCATIONS));
            if written_back >= ENTRIES {
                break written_back;
            }
        }
    })
    .await
    .expect("the entries were not written back within 60 s");
    assert_eq!(written_back, ENTRIES);

    // A new node refuses a token revoked before the FLUSHALL.
    let c = node(&redis, StalePolicy::FailClosed).await;
    let mut claims = common::claims("zoe", 300);
    claims["jti"] = json!(format!("r-{}", ENTRIES - 1));
    assert_eq!(handshake(c.addr, &common::sign(&claims)).await, 401);
}
