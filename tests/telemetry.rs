//! Every security event is logged and counted, and no token ever appears in
//! a log line. One test per binary: it installs the global subscriber and
//! metrics recorder.

mod common;

use std::time::Duration;

use axum::Router;
use axum::routing::any;
use axum_ws_auth::policy::{PolicyDenial, PolicyRequest};
use common::*;
use serde_json::json;

fn renew(token: &str) -> String {
    json!({"type": "auth.renew", "token": token, "id": "r"}).to_string()
}

#[tokio::test]
async fn security_events_are_logged_and_counted_without_tokens() {
    let (logs, metrics) = capture_telemetry();

    let addr = serve(
        builder()
            .renew_limit(2)
            .leeway(Duration::ZERO)
            .notify_before(Duration::from_secs(1)),
    )
    .await;
    let mut tokens = Vec::new();

    // Refused: a tampered token, and a token of the wrong audience.
    let mut foreign = claims("alice", 60);
    foreign["aud"] = json!("elsewhere");
    for token in [format!("{}x", token("alice", 60)), sign(&foreign)] {
        assert!(
            connect(addr, &[("authorization", &format!("Bearer {token}"))])
                .await
                .is_err()
        );
        tokens.push(token);
    }

    // Renewal rejected, then accepted, then a third attempt passes the
    // limit of two per minute: 4429.
    let opening = token("alice", 600);
    let mut client = connect_bearer(addr, &opening).await;
    let rejected = sign(&foreign);
    send_text(&mut client, &renew(&rejected)).await;
    assert_eq!(next_json(&mut client).await["type"], "auth.renew_rejected");
    let accepted = token("alice", 900);
    send_text(&mut client, &renew(&accepted)).await;
    assert_eq!(next_json(&mut client).await["type"], "auth.renewed");
    let flood = token("alice", 1200);
    send_text(&mut client, &renew(&flood)).await;
    assert_eq!(expect_close(&mut client).await.0, 4429);
    tokens.extend([opening, rejected, accepted, flood]);

    // A renewal for another subject: 4403.
    let opening = token("bob", 600);
    let mut client = connect_bearer(addr, &opening).await;
    let hijack = token("mallory", 900);
    send_text(&mut client, &renew(&hijack)).await;
    assert_eq!(expect_close(&mut client).await.0, 4403);
    tokens.extend([opening, hijack]);

    // The policy's refusal is logged and counted like the layer's; a
    // token from the application's location is counted as `custom`.
    let rooms = serve_router(
        Router::new().route("/ws", any(echo)).route_layer(
            builder()
                .policy(|request: PolicyRequest<Claims>| {
                    let eve = request.claims().sub == "eve";
                    std::future::ready(if eve {
                        Err(PolicyDenial::Forbidden)
                    } else {
                        Ok(())
                    })
                })
                .token_from(|parts| {
                    Ok(parts
                        .headers
                        .get("x-access-token")
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned))
                })
                .build()
                .unwrap(),
        ),
    )
    .await;
    let eve = token("eve", 60);
    assert_eq!(
        connect(rooms, &[("authorization", &format!("Bearer {eve}"))])
            .await
            .err()
            .unwrap()
            .status,
        403
    );
    let dave = token("dave", 60);
    let mut client = connect(rooms, &[("x-access-token", &dave)])
        .await
        .unwrap()
        .client;
    client.close(None).await.unwrap();
    tokens.extend([eve, dave]);

    // Expiry: a one-second token.
    let short = token("carol", 1);
    let mut client = connect_bearer(addr, &short).await;
    assert_eq!(expect_close(&mut client).await.0, 4401);
    tokens.push(short);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let text = logs.text();
    for needle in [
        "event=\"upgrade_refused\"",
        "reason=signature invalid",
        "reason=invalid audience",
        "reason=insufficient scope",
        "source=\"custom\"",
        "event=\"connected\"",
        "event=\"renew_rejected\"",
        "event=\"renewed\"",
        "event=\"identity_change\"",
        "code=4429",
        "code=4403",
        "code=4401",
        // How late the 4401 at the deadline left.
        "lateness_ms=",
        "event=\"expiring\"",
        "sub=\"alice\"",
    ] {
        assert!(text.contains(needle), "missing {needle} in logs:\n{text}");
    }
    for token in &tokens {
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !text.contains(token.as_str()),
            "a token leaked into the logs"
        );
        assert!(
            !text.contains(signature),
            "a token signature leaked into the logs"
        );
    }

    let rendered = metrics.render();
    for needle in [
        r#"ws_auth_upgrades_refused_total{status="401",error="invalid_token"} 2"#,
        r#"ws_auth_connections_opened_total{source="header"} 3"#,
        r#"ws_auth_connections_opened_total{source="custom"} 1"#,
        r#"ws_auth_upgrades_refused_total{status="403",error="insufficient_scope"} 1"#,
        r#"ws_auth_renewals_total{result="rejected",error="invalid_token"} 1"#,
        r#"ws_auth_renewals_total{result="accepted",error="none"} 1"#,
        r#"ws_auth_server_closes_total{code="4429"} 1"#,
        r#"ws_auth_server_closes_total{code="4403"} 1"#,
        r#"ws_auth_server_closes_total{code="4401"} 1"#,
        "ws_auth_connections_active 0",
        "ws_auth_expiry_close_lateness_seconds_count 1",
    ] {
        assert!(
            rendered.contains(needle),
            "missing {needle} in metrics:\n{rendered}"
        );
    }
}
