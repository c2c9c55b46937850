//! No token reaches what sits behind the layer: `Debug` of the request an
//! inner middleware sees, of the headers a handler extracts, and of
//! `AuthUpgrade`, against a real server.

mod common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, Uri};
use axum::middleware::{Next, from_fn};
use axum::routing::any;
use axum_ws_auth::AuthUpgrade;
use common::*;
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Seen = Arc<Mutex<Vec<String>>>;

/// Every source on; an inner middleware and the handler record what they
/// can print.
async fn serve_recording() -> (std::net::SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let in_middleware = Arc::clone(&seen);
    let in_handler = Arc::clone(&seen);
    let app = Router::new()
        .route(
            "/ws",
            any(
                move |uri: Uri, headers: HeaderMap, upgrade: AuthUpgrade<Claims>| async move {
                    in_handler.lock().unwrap().extend([
                        format!("{uri:?}"),
                        format!("{headers:?}"),
                        format!("{upgrade:?}"),
                    ]);
                    assert_eq!(
                        upgrade.selected_protocol().map(|p| p.to_str().unwrap()),
                        Some("wsauth.v1")
                    );
                    echo(upgrade).await
                },
            ),
        )
        .layer(from_fn(move |request: Request, next: Next| {
            let seen = Arc::clone(&in_middleware);
            async move {
                seen.lock().unwrap().push(format!("{request:?}"));
                next.run(request).await
            }
        }))
        .layer(
            builder()
                .cookie_source("jwt")
                .query_source(true)
                .allowed_origins(["https://app.example"])
                .build()
                .unwrap(),
        );
    (serve_router(app).await, seen)
}

#[tokio::test]
async fn no_token_is_printable_behind_the_layer_whatever_its_source() {
    let (addr, seen) = serve_recording().await;
    let origin = ("origin", "https://app.example");
    let jwt = token("alice", 60);
    let signature = jwt.rsplit('.').next().unwrap().to_owned();
    let header = format!("Bearer {jwt}");
    let bearer_entry = format!("wsauth.v1, bearer.{jwt}");
    let cookie = format!("theme=dark; jwt={jwt}");
    let query = format!("/ws?room=1&access_token={jwt}");
    let cases: Vec<(&str, http::Request<()>)> = vec![
        (
            "header",
            request(
                addr,
                "/ws",
                &[
                    origin,
                    ("authorization", &header),
                    ("sec-websocket-protocol", "wsauth.v1"),
                ],
            ),
        ),
        (
            "subprotocol",
            request(
                addr,
                "/ws",
                &[origin, ("sec-websocket-protocol", &bearer_entry)],
            ),
        ),
        (
            "cookie",
            request(
                addr,
                "/ws",
                &[
                    origin,
                    ("cookie", &cookie),
                    ("sec-websocket-protocol", "wsauth.v1"),
                ],
            ),
        ),
        (
            "query",
            request(
                addr,
                &query,
                &[origin, ("sec-websocket-protocol", "wsauth.v1")],
            ),
        ),
        (
            "every source at once",
            request(
                addr,
                &query,
                &[
                    origin,
                    ("authorization", &header),
                    ("sec-websocket-protocol", &bearer_entry),
                    ("cookie", &cookie),
                ],
            ),
        ),
    ];
    for (name, request) in cases {
        seen.lock().unwrap().clear();
        let connected = connect_request(request)
            .await
            .unwrap_or_else(|refused| panic!("{name}: {refused:?}"));
        assert_eq!(connected.protocol.as_deref(), Some("wsauth.v1"), "{name}");
        let mut client = connected.client;
        send_text(&mut client, "hello").await;
        assert_eq!(
            next_message(&mut client).await,
            WsMessage::Text("hello".into()),
            "{name}"
        );
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 4, "{name}: {seen:?}");
        for printed in &seen {
            assert!(!printed.contains(&jwt), "{name}: token in {printed}");
            assert!(
                !printed.contains(&signature),
                "{name}: signature in {printed}"
            );
        }
        // What is left is still useful: the other entries, cookies, query.
        let request_debug = &seen[0];
        assert!(
            request_debug.contains("wsauth.v1"),
            "{name}: {request_debug}"
        );
        if name == "every source at once" {
            assert!(request_debug.contains("room=1"), "{request_debug}");
            assert!(request_debug.contains("Sensitive"), "{request_debug}");
        }
        assert!(seen[3].starts_with("AuthUpgrade"), "{}", seen[3]);
    }
}
