//! Selector, staleness and re-authentication are logged and counted,
//! without tokens. One test per binary: it installs the global subscriber
//! and metrics recorder.

mod common;

use std::time::{Duration, SystemTime};

use axum::Router;
use axum::routing::any;
use axum_ws_auth::revocation::{Selector, StalePolicy};
use common::*;
use serde_json::json;

#[tokio::test]
async fn revocations_staleness_and_reauthentication_are_logged_and_counted() {
    let (logs, metrics) = capture_telemetry();

    let layer = builder().build().unwrap();
    let connections = layer.connections();
    let addr = serve_router(Router::new().route("/ws", any(echo)).route_layer(layer)).await;

    // Two entries; the same token again (from another node) changes nothing.
    connections.revoke(Selector::token("t1"));
    connections.revoke(Selector::user(Some(ISSUER), "mallory"));
    connections.apply_revocation(
        Selector::token("t1"),
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
        connections.reauthenticate(Selector::All, Duration::from_secs(30)),
        1
    );
    assert_eq!(next_json(&mut bob).await["type"], "auth.expiring");
    assert_eq!(connections.revoke(Selector::user(Some(ISSUER), "bob")), 1);
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

    let text = logs.text();
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
