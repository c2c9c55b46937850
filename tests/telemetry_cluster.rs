//! Redis losing the cluster's data is logged and counted, with how many
//! entries were written back. One test per binary: it installs the global
//! subscriber and metrics recorder.
#![cfg(feature = "redis")]

#[path = "common/cluster.rs"]
mod cluster_node;
mod common;
#[path = "common/redis.rs"]
mod redis_server;

use std::time::Duration;

use axum_ws_auth::revocation::{Selector, StalePolicy};
use cluster_node::*;
use redis_server::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_loss_is_logged_and_counted_with_the_entries_written_back() {
    let (logs, metrics) = common::capture_telemetry();
    let Some(mut redis) =
        RedisServer::start("a_data_loss_is_logged_and_counted_with_the_entries_written_back")
    else {
        return;
    };
    let a = node(&redis, StalePolicy::FailClosed).await;
    a.cluster.revoke(Selector::token("t-1")).await;
    a.cluster.revoke(Selector::token("t-2")).await;
    assert!(!logs.text().contains("cluster_data_loss"));

    blocking(|| redis.restart());
    tokio::time::timeout(Duration::from_secs(20), async {
        while blocking(|| redis.zcard("test-cluster:revocations")) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("not written back");
    fresh(&a.cluster).await;

    let text = logs.text();
    let line = text
        .lines()
        .find(|line| line.contains("event=\"cluster_data_loss\""))
        .unwrap_or_else(|| panic!("no cluster_data_loss event in:\n{text}"));
    assert!(line.contains("cause=\"epoch_missing\""), "{line}");
    assert!(line.contains("written_back=2"), "{line}");
    let rendered = metrics.render();
    assert!(
        rendered.contains("ws_auth_cluster_data_loss_total{cause=\"epoch_missing\"} 1"),
        "{rendered}"
    );
    assert!(
        rendered.contains("ws_auth_cluster_written_back_total 2"),
        "{rendered}"
    );
}
