//! A push-only handler that keeps its whole socket and never reads it, over
//! a real server and a real tokio-tungstenite client: the client renews on
//! every notice and the connection lives past its first token's expiry.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::ws::Message;
use axum::response::Response;
use axum::routing::any;
use axum_ws_auth::AuthUpgrade;
use common::{Claims, builder, claims, connect_bearer, serve_router, sign};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Pushes a tick every 100 ms, holding the socket, never reading it.
async fn ticker(upgrade: AuthUpgrade<Claims>) -> Response {
    upgrade.on_upgrade(|mut socket| async move {
        let mut n = 0u64;
        while socket
            .send(Message::Text(format!("tick {n}").into()))
            .await
            .is_ok()
        {
            n += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

#[tokio::test]
async fn a_push_only_handler_keeps_its_connection_past_the_first_expiry_when_the_client_renews() {
    let addr = serve_router(
        Router::new().route("/ws", any(ticker)).layer(
            builder()
                .leeway(Duration::ZERO)
                .notify_before(Duration::from_secs(2))
                .build()
                .unwrap(),
        ),
    )
    .await;
    // Just past a whole second: the first token lives about 3 s.
    tokio::time::sleep(Duration::from_millis(1050 - now_millis() % 1000)).await;
    let first = claims("alice", 3);
    let first_exp = first["exp"].as_u64().unwrap();
    let mut client = connect_bearer(addr, &sign(&first)).await;

    let mut renewals = 0;
    let mut pending: Option<u64> = None;
    let mut ticks = 0u64;
    let mut ticks_after_first_exp = 0u64;
    let until = first_exp * 1000 + 2500;
    while now_millis() < until {
        let message = tokio::time::timeout(Duration::from_secs(1), client.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "stalled {} ms after the first exp",
                    now_millis() as i64 - (first_exp * 1000) as i64
                )
            })
            .expect("stream ended")
            .expect("websocket error");
        let text = match message {
            WsMessage::Text(text) => text,
            other => panic!(
                "{other:?} {} ms after the first exp, after {renewals} renewals",
                now_millis() as i64 - (first_exp * 1000) as i64
            ),
        };
        if let Some(tick) = text.as_str().strip_prefix("tick ") {
            assert_eq!(tick.parse::<u64>().unwrap(), ticks, "ticks in order");
            ticks += 1;
            if now_millis() > first_exp * 1000 {
                ticks_after_first_exp += 1;
            }
            continue;
        }
        let control: Value = serde_json::from_str(text.as_str()).unwrap();
        match control["type"].as_str() {
            Some("auth.expiring") => {
                let renewal = claims("alice", 4);
                pending = renewal["exp"].as_u64();
                let renew = json!({"type": "auth.renew", "token": sign(&renewal), "id": format!("r{renewals}")});
                client
                    .send(WsMessage::Text(renew.to_string().into()))
                    .await
                    .unwrap();
            }
            Some("auth.renewed") => {
                assert_eq!(
                    control,
                    json!({"type": "auth.renewed", "exp": pending, "id": format!("r{renewals}")})
                );
                renewals += 1;
            }
            _ => panic!("unexpected control message {control}"),
        }
    }
    assert!(renewals >= 2, "{renewals} renewals");
    assert!(
        ticks_after_first_exp >= 10,
        "{ticks_after_first_exp} ticks after the first exp"
    );
    let _ = client.close(None).await;
}
