//! Revocation, staleness and re-authentication are logged and counted,
//! without tokens. One test per binary: it installs the global subscriber
//! and metrics recorder.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::routing::any;
use axum_ws_auth::revocation::{ConnectionSelector, Revocation, StalePolicy};
use common::*;
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn revocations_staleness_and_reauthentication_are_logged_and_counted() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .init();
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();

    let layer = builder().build().unwrap();
    let connections = layer.connections();
    let addr = serve_router(Router::new().route("/ws", any(echo)).route_layer(layer)).await;

    // Two entries; the same token again (from another node) changes nothing.
    connections.revoke(Revocation::token("t1"));
    connections.revoke(Revocation::user(Some(ISSUER), "mallory"));
    connections.apply_revocation(
        Revocation::token("t1"),
        SystemTime::now() - Duration::from_secs(60),
    );

    // Stale, failing closed: a handshake is refused with 503.
    connections.set_revocations_stale(Some(StalePolicy::FailClosed));
    let refused_token = token("alice", 600);
    let refused = connect(
        addr,
        &[("authorization", &format!("Bearer {refused_token}"))],
    )
    .await
    .err()
    .unwrap();
    assert_eq!(refused.status, 503);
    let stale = metrics.render();
    connections.set_revocations_stale(None);

    // A re-authentication request, then the user revoked: 4403.
    let mut claims = claims("bob", 600);
    claims["jti"] = json!("b1");
    let bob_token = sign(&claims);
    let mut bob = connect_bearer(addr, &bob_token).await;
    while connections.count() < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        connections.reauthenticate(ConnectionSelector::All, Duration::from_secs(30)),
        1
    );
    assert_eq!(next_json(&mut bob).await["type"], "auth.expiring");
    assert_eq!(connections.revoke(Revocation::user(Some(ISSUER), "bob")), 1);
    assert_eq!(expect_close(&mut bob).await.0, 4403);
    tokio::time::sleep(Duration::from_millis(100)).await;

    for needle in [
        r#"ws_auth_revocations_stale 1"#,
        r#"ws_auth_upgrades_refused_total{status="503",error="none"} 1"#,
    ] {
        assert!(
            stale.contains(needle),
            "missing {needle} in metrics:\n{stale}"
        );
    }
    let rendered = metrics.render();
    for needle in [
        "ws_auth_revocation_entries 3",
        r#"ws_auth_revocations_total{kind="token",new="true"} 1"#,
        r#"ws_auth_revocations_total{kind="token",new="false"} 1"#,
        r#"ws_auth_revocations_total{kind="user",new="true"} 2"#,
        "ws_auth_revocations_stale 0",
        "ws_auth_reauth_requests_total 1",
        r#"ws_auth_server_closes_total{code="4403"} 1"#,
    ] {
        assert!(
            rendered.contains(needle),
            "missing {needle} in metrics:\n{rendered}"
        );
    }

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    for needle in [
        "event=\"revoked\" kind=\"token\" sub=\"-\" new=true closed=0",
        "event=\"revoked\" kind=\"user\" sub=\"bob\" new=true closed=1",
        "event=\"revocations_stale\" policy=\"fail_closed\"",
        "event=\"revocations_fresh\"",
        "event=\"upgrade_refused\" status=503",
        "reason=revocation list unavailable",
        "event=\"reauth_requested\"",
        "code=4403",
    ] {
        assert!(text.contains(needle), "missing {needle} in logs:\n{text}");
    }
    for token in [&refused_token, &bob_token] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!text.contains(signature), "a token leaked into the logs");
    }
}
