//! The live-connection registry: graceful shutdown (1001, and the server
//! exits) and revocation of a subject's sockets (4403).

mod common;

use std::time::Duration;

use axum::Router;
use axum::routing::any;
use axum_ws_auth::revocation::Selector;
use common::*;

#[tokio::test]
async fn shutdown_closes_every_socket_with_1001_and_the_server_exits() {
    let layer = builder().build().unwrap();
    let connections = layer.connections();
    let app = Router::new().route("/ws", any(echo)).layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = connections.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
                stop.shutdown();
            })
            .await
            .unwrap();
    });

    let mut clients = Vec::new();
    for user in ["alice", "bob", "carol"] {
        clients.push(connect_bearer(addr, &token(user, 600)).await);
    }
    // The drivers register as they start.
    tokio::time::timeout(Duration::from_secs(5), async {
        while connections.count() < 3 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();

    stop_tx.send(()).unwrap();
    for client in &mut clients {
        assert_eq!(
            expect_close(client).await,
            (1001, "server shutting down".to_owned())
        );
    }
    tokio::time::timeout(Duration::from_secs(5), connections.closed())
        .await
        .expect("every connection ends");
    assert_eq!(connections.count(), 0);
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server exits")
        .unwrap();
    // The listener is gone with the server.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn revoking_a_user_closes_only_their_sockets_with_4403_and_refuses_their_tokens() {
    let layer = builder().build().unwrap();
    let connections = layer.connections();
    let addr = serve_router(Router::new().route("/ws", any(echo)).layer(layer)).await;
    let mut alice_phone = connect_bearer(addr, &token("alice", 600)).await;
    let mut alice_laptop = connect_bearer(addr, &token("alice", 600)).await;
    let mut bob = connect_bearer(addr, &token("bob", 600)).await;
    tokio::time::timeout(Duration::from_secs(5), async {
        while connections.count() < 3 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();

    assert_eq!(connections.revoke(Selector::user(Some(ISSUER), "alice")), 2);
    for client in [&mut alice_phone, &mut alice_laptop] {
        assert_eq!(expect_close(client).await, (4403, "forbidden".to_owned()));
    }
    // Bob is untouched; Alice cannot come back with her token.
    send_text(&mut bob, "still here").await;
    assert_eq!(
        next_message(&mut bob).await,
        tokio_tungstenite::tungstenite::Message::Text("still here".into())
    );
    let refused = connect(
        addr,
        &[("authorization", &format!("Bearer {}", token("alice", 600)))],
    )
    .await
    .err()
    .unwrap();
    assert_eq!(refused.status, 401);
    assert!(refused.challenge.unwrap().contains("token revoked"));
}
