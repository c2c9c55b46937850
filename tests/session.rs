//! Sections 2 and 3 of the wire contract over real sockets. Exact timing is
//! covered on the paused clock in the crate's unit tests; the one real-time
//! test here uses two-second tokens.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn renew(token: &str, id: &str) -> String {
    json!({"type": "auth.renew", "token": token, "id": id}).to_string()
}

#[tokio::test]
async fn renewal_keeps_the_connection_past_its_first_exp_then_it_closes_4401() {
    let addr = serve(
        builder()
            .leeway(Duration::ZERO)
            .notify_before(Duration::from_secs(1)),
    )
    .await;
    let first = claims("alice", 2);
    let first_exp = first["exp"].as_u64().unwrap();
    let mut client = connect_bearer(addr, &sign(&first)).await;

    let notice = next_json(&mut client).await;
    assert_eq!(notice["type"], "auth.expiring");
    assert_eq!(notice["exp"], first_exp);
    assert!(notice["expires_in"].as_u64().unwrap() <= 1);

    let mut second = claims("alice", 3);
    second["scope"] = json!("chat renewed");
    send_text(&mut client, &renew(&sign(&second), "r1")).await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"type": "auth.renewed", "exp": second["exp"], "id": "r1"})
    );

    // Past the first exp, the connection still echoes and reports new claims.
    tokio::time::sleep(Duration::from_millis(
        (first_exp * 1000).saturating_sub(now_millis()) + 200,
    ))
    .await;
    send_text(&mut client, "claims").await;
    let mut reply = next_json(&mut client).await;
    if reply["type"] == "auth.expiring" {
        reply = next_json(&mut client).await;
    }
    assert_eq!(reply["scope"], "chat renewed");

    // Closed under the renewed token, not before its exp (the exact moment
    // is checked on the paused clock: `accepted_renewal_replaces_claims_and_rearms_both_timers`).
    assert_eq!(
        expect_close(&mut client).await,
        (4401, "token expired".to_owned())
    );
    assert!(now_millis() >= second["exp"].as_u64().unwrap() * 1000);
}

#[tokio::test]
async fn rejected_renewal_is_answered_and_the_connection_lives_on() {
    let addr = serve(builder()).await;
    let mut client = connect_bearer(addr, &token("alice", 600)).await;
    let mut wrong_aud = claims("alice", 900);
    wrong_aud["aud"] = json!("elsewhere");
    send_text(&mut client, &renew(&sign(&wrong_aud), "a")).await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"type": "auth.renew_rejected", "error": "invalid_token", "error_description": "invalid audience", "id": "a"})
    );
    send_text(&mut client, &renew(&token("alice", 10), "b")).await;
    assert_eq!(
        next_json(&mut client).await["error_description"],
        "token not newer than the current one"
    );
    send_text(&mut client, "still here").await;
    assert_eq!(
        next_message(&mut client).await,
        WsMessage::Text("still here".into())
    );
}

#[tokio::test]
async fn renewal_changing_sub_closes_4403() {
    let addr = serve(builder()).await;
    let mut client = connect_bearer(addr, &token("alice", 600)).await;
    send_text(&mut client, &renew(&token("mallory", 900), "x")).await;
    assert_eq!(
        expect_close(&mut client).await,
        (4403, "forbidden".to_owned())
    );
}

#[tokio::test]
async fn renewal_flood_closes_4429() {
    let addr = serve(builder().renew_limit(2)).await;
    let mut client = connect_bearer(addr, &token("alice", 600)).await;
    for n in 0..2 {
        send_text(&mut client, &renew(&token("alice", 700 + n), "ok")).await;
        assert_eq!(next_json(&mut client).await["type"], "auth.renewed");
    }
    send_text(&mut client, &renew(&token("alice", 800), "flood")).await;
    assert_eq!(
        expect_close(&mut client).await,
        (4429, "too many renewals".to_owned())
    );
}

#[tokio::test]
async fn repeated_invalid_control_messages_close_4400() {
    let addr = serve(builder().invalid_control_limit(1)).await;
    let mut client = connect_bearer(addr, &token("alice", 600)).await;
    send_text(&mut client, r#"{"type":"auth.renew","id":"no-token"}"#).await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"type": "auth.renew_rejected", "error": "invalid_request", "error_description": "token must be a string", "id": "no-token"})
    );
    send_text(&mut client, r#"{"type":"auth.whatever"}"#).await;
    assert_eq!(
        expect_close(&mut client).await,
        (4400, "bad request".to_owned())
    );
}

#[tokio::test]
async fn oversized_control_message_is_invalid_request() {
    let addr = serve(builder().max_control_bytes(1024)).await;
    let mut client = connect_bearer(addr, &token("alice", 600)).await;
    let padded = json!({"type": "auth.renew", "token": "x".repeat(2000), "id": "big"}).to_string();
    send_text(&mut client, &padded).await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"type": "auth.renew_rejected", "error": "invalid_request", "error_description": "control message too large", "id": "big"})
    );
}

#[tokio::test]
async fn application_frames_pass_untouched_both_ways() {
    let addr = serve(builder()).await;
    let mut client = connect_bearer(addr, &token("alice", 600)).await;
    let frames = vec![
        WsMessage::Text(r#"{"type":"chat","body":"mentions auth.renew"}"#.into()),
        WsMessage::Text(r#"{"type":"Auth.renew","token":"x"}"#.into()),
        WsMessage::Binary(br#"{"type":"auth.renew","token":"x"}"#.to_vec().into()),
        WsMessage::Text("{ not json".into()),
        WsMessage::Binary(vec![0, 159, 146, 150].into()),
    ];
    for frame in &frames {
        client.send(frame.clone()).await.unwrap();
    }
    for frame in &frames {
        assert_eq!(&next_message(&mut client).await, frame);
    }
}

#[tokio::test]
async fn client_close_is_answered_and_other_connections_carry_on() {
    let addr = serve(builder()).await;
    let mut leaving = connect_bearer(addr, &token("alice", 600)).await;
    let mut staying = connect_bearer(addr, &token("bob", 600)).await;
    leaving.close(None).await.unwrap();
    assert!(matches!(
        next_message(&mut leaving).await,
        WsMessage::Close(_)
    ));
    send_text(&mut staying, "ping").await;
    assert_eq!(
        next_message(&mut staying).await,
        WsMessage::Text("ping".into())
    );
}

/// With a 1 KiB limit: a 1 KiB message echoes back, one byte more closes
/// the connection with 1009.
async fn a_kib_passes_and_a_byte_more_closes_1009(big: &mut Client) {
    big.send(WsMessage::Binary(vec![7u8; 1024].into()))
        .await
        .unwrap();
    assert_eq!(
        next_message(big).await,
        WsMessage::Binary(vec![7u8; 1024].into())
    );
    big.send(WsMessage::Binary(vec![7u8; 1025].into()))
        .await
        .unwrap();
    assert_eq!(
        expect_close(big).await,
        (1009, "message too big".to_owned())
    );
}

#[tokio::test]
async fn a_message_over_the_size_limit_closes_1009_without_disturbing_others() {
    let addr = serve(builder().max_message_bytes(1024)).await;
    let mut big = connect_bearer(addr, &token("alice", 600)).await;
    let mut other = connect_bearer(addr, &token("bob", 600)).await;
    a_kib_passes_and_a_byte_more_closes_1009(&mut big).await;
    send_text(&mut other, "fine").await;
    assert_eq!(
        next_message(&mut other).await,
        WsMessage::Text("fine".into())
    );
}

/// The layer's `max_message_bytes` is the one message-size limit: a
/// handler's `map_upgrade` adjusts buffers, and cannot raise it (the
/// connection's read-ahead budget is sized from it).
#[tokio::test]
async fn the_layers_message_limit_holds_whatever_the_handler_asks_of_the_upgrade() {
    use axum::Router;
    use axum::response::Response;
    use axum::routing::any;
    use axum_ws_auth::AuthUpgrade;

    async fn roomy(upgrade: AuthUpgrade<Claims>) -> Response {
        echo(upgrade.map_upgrade(|ws| ws.max_message_size(1 << 20).read_buffer_size(4096))).await
    }
    let layer = builder().max_message_bytes(1024).build().unwrap();
    let addr = serve_router(Router::new().route("/ws", any(roomy)).route_layer(layer)).await;
    let mut big = connect_bearer(addr, &token("alice", 600)).await;
    a_kib_passes_and_a_byte_more_closes_1009(&mut big).await;
}
