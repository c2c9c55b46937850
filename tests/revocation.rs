//! Revocation and re-authentication against a real server: revoking a
//! user, a token, a session, everyone, or every token issued before an
//! instant closes exactly
//! the matching sockets with 4403 (judged by each socket's current token),
//! revoked tokens are refused at the handshake and on renewal, one
//! connection is closed with a chosen code, a stale revocation list fails
//! new handshakes closed (503) or open, and a re-authentication request is
//! answered by a fresh token or ends the socket at its deadline.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::Message;
use axum::response::Response;
use axum::routing::any;
use axum_ws_auth::protocol::CloseReason;
use axum_ws_auth::{
    AuthUpgrade, Connections, WsAuthLayerBuilder,
    revocation::{Selector, StalePolicy},
};
use common::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

/// Echoes; the text `id` answers with the connection's id.
async fn handler(upgrade: AuthUpgrade<Claims>) -> Response {
    upgrade.on_upgrade(|mut socket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            let reply = match message {
                Message::Text(text) if text.as_str() == "id" => {
                    Message::Text(socket.identity().connection_id().to_string().into())
                }
                Message::Close(_) => break,
                other => other,
            };
            if socket.send(reply).await.is_err() {
                break;
            }
        }
    })
}

async fn start(builder: WsAuthLayerBuilder<Claims>) -> (SocketAddr, Connections) {
    let layer = builder.build().unwrap();
    let connections = layer.connections();
    let app = Router::new().route("/ws", any(handler)).route_layer(layer);
    (serve_router(app).await, connections)
}

/// A token for `sub` living `ttl` seconds, with `jti` and `iat`.
fn token_with(sub: &str, ttl: i64, jti: &str, iat: u64) -> String {
    let mut claims = claims(sub, ttl);
    claims["jti"] = json!(jti);
    claims["iat"] = json!(iat);
    sign(&claims)
}

async fn wait_for(connections: &Connections, count: usize) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while connections.count() != count {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} connections, not {count}", connections.count()));
}

async fn assert_alive(client: &mut Client, text: &str) {
    send_text(client, text).await;
    assert_eq!(
        next_app_message(client).await,
        tungstenite::Message::Text(text.into())
    );
}

async fn connection_id(client: &mut Client) -> u64 {
    send_text(client, "id").await;
    match next_app_message(client).await {
        tungstenite::Message::Text(text) => text.as_str().parse().unwrap(),
        other => panic!("{other:?}"),
    }
}

fn renew(token: &str, id: &str) -> String {
    json!({"type": "auth.renew", "token": token, "id": id}).to_string()
}

/// The next control message, skipping application frames.
async fn next_control(client: &mut Client) -> Value {
    loop {
        let value = next_json(client).await;
        if value["type"]
            .as_str()
            .is_some_and(|kind| kind.starts_with("auth."))
        {
            return value;
        }
    }
}

#[tokio::test]
async fn revoke_closes_exactly_the_matching_sockets_with_4403() {
    let (addr, connections) = start(builder()).await;
    let t = now();
    let mut alice_old = connect_bearer(addr, &token_with("alice", 600, "a1", t - 100)).await;
    let mut alice_new = connect_bearer(addr, &token_with("alice", 600, "a2", t)).await;
    let mut bob = connect_bearer(addr, &token_with("bob", 600, "b1", t)).await;
    let mut carol = connect_bearer(addr, &token_with("carol", 600, "c1", t - 100)).await;
    // Carol renews: her socket's current token is c2 from now on.
    send_text(&mut carol, &renew(&token_with("carol", 700, "c2", t), "r")).await;
    assert_eq!(next_control(&mut carol).await["type"], "auth.renewed");
    wait_for(&connections, 4).await;

    // Alice's tokens issued before t - 50: the old one only.
    assert_eq!(
        connections.revoke(Selector::issued_before(Some(ISSUER), "alice", t - 50)),
        1
    );
    assert_eq!(
        expect_close(&mut alice_old).await,
        (4403, "forbidden".to_owned())
    );
    // The issuer is part of the identity: no match without it.
    assert_eq!(connections.revoke(Selector::user(None, "alice")), 0);
    // Carol's first token is no longer her socket's.
    assert_eq!(connections.revoke(Selector::token("c1")), 0);
    assert_alive(&mut carol, "carol").await;
    assert_eq!(connections.revoke(Selector::token("c2")), 1);
    assert_eq!(expect_close(&mut carol).await.0, 4403);
    assert_eq!(connections.revoke(Selector::user(Some(ISSUER), "bob")), 1);
    assert_eq!(expect_close(&mut bob).await.0, 4403);

    assert_alive(&mut alice_new, "alice is still here").await;
    wait_for(&connections, 1).await;
    assert_eq!(connections.revocations().len(), 5);
}

/// A token for `sub` in the OIDC session `sid`.
fn token_in_session(sub: &str, jti: &str, sid: &str) -> String {
    let mut claims = claims(sub, 600);
    claims["jti"] = json!(jti);
    claims["sid"] = json!(sid);
    sign(&claims)
}

#[tokio::test]
async fn revoking_a_session_closes_its_sockets_and_refuses_its_tokens_only() {
    let (addr, connections) = start(builder()).await;
    let mut laptop = connect_bearer(addr, &token_in_session("alice", "l1", "s-1")).await;
    let mut phone = connect_bearer(addr, &token_in_session("alice", "p1", "s-2")).await;
    wait_for(&connections, 2).await;

    assert_eq!(connections.revoke(Selector::session("s-1")), 1);
    assert_eq!(
        expect_close(&mut laptop).await,
        (4403, "forbidden".to_owned())
    );
    assert_alive(&mut phone, "the other session").await;
    let (status, ..) = refused_headers(addr, &token_in_session("alice", "l2", "s-1")).await;
    assert_eq!(status, 401);
    let mut again = connect_bearer(addr, &token_in_session("alice", "p2", "s-2")).await;
    assert_alive(&mut again, "a token of the other session").await;
    // A renewal into the revoked session is refused; the socket lives on.
    send_text(
        &mut phone,
        &renew(&token_in_session("alice", "p3", "s-1"), "r"),
    )
    .await;
    let answer = next_control(&mut phone).await;
    assert_eq!(answer["type"], "auth.renew_rejected", "{answer}");
    assert_alive(&mut phone, "still the phone").await;
}

#[tokio::test]
async fn revoking_everyone_closes_every_socket_and_refuses_tokens_issued_up_to_then() {
    let (addr, connections) = start(builder()).await;
    let t = now();
    let mut alice = connect_bearer(addr, &token_with("alice", 600, "a1", t - 10)).await;
    let mut bob = connect_bearer(addr, &token_with("bob", 600, "b1", t)).await;
    wait_for(&connections, 2).await;
    assert_eq!(connections.revoke(Selector::all()), 2);
    for client in [&mut alice, &mut bob] {
        assert_eq!(expect_close(client).await.0, 4403);
    }
    let (status, ..) = refused_headers(addr, &token_with("carol", 600, "c1", t)).await;
    assert_eq!(status, 401);
    // Tokens issued after the revocation's second open sockets again.
    let mut later = connect_bearer(addr, &token_with("carol", 600, "c2", now() + 2)).await;
    assert_alive(&mut later, "a later token").await;
}

#[tokio::test]
async fn revoked_tokens_are_refused_at_the_handshake_and_on_renewal() {
    let (addr, connections) = start(builder()).await;
    let t = now();
    connections.revoke(Selector::token("stolen"));
    let refused = connect(
        addr,
        &[(
            "authorization",
            &format!("Bearer {}", token_with("alice", 600, "stolen", t)),
        )],
    )
    .await
    .err()
    .unwrap();
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.challenge.as_deref(),
        Some(r#"Bearer realm="tests", error="invalid_token", error_description="token revoked""#)
    );
    assert!(!refused.body.contains("eyJ"));

    // A user revoked now: tokens issued up to this second are refused,
    // one issued after it is accepted (the user logged in again).
    connections.revoke(Selector::user(Some(ISSUER), "mallory"));
    let refused = connect(
        addr,
        &[(
            "authorization",
            &format!("Bearer {}", token_with("mallory", 600, "m1", t)),
        )],
    )
    .await
    .err()
    .unwrap();
    assert_eq!(refused.status, 401);
    let mut again = connect_bearer(addr, &token_with("mallory", 600, "m2", t + 2)).await;
    assert_alive(&mut again, "new session").await;

    // A renewal with a revoked token is refused; the socket lives on.
    let mut alice = connect_bearer(addr, &token_with("alice", 600, "a1", t)).await;
    connections.revoke(Selector::token("a-next"));
    send_text(
        &mut alice,
        &renew(&token_with("alice", 900, "a-next", t), "r1"),
    )
    .await;
    assert_eq!(
        next_control(&mut alice).await,
        json!({"type": "auth.renew_rejected", "error": "invalid_token", "error_description": "token revoked", "id": "r1"})
    );
    assert_alive(&mut alice, "still open").await;
}

#[tokio::test]
async fn close_connection_closes_one_socket_with_the_chosen_code() {
    let (addr, connections) = start(builder()).await;
    let mut bystander = connect_bearer(addr, &token("bob", 600)).await;
    for reason in [
        CloseReason::TokenExpired,
        CloseReason::Forbidden,
        CloseReason::BadRequest,
        CloseReason::TooManyRenewals,
        CloseReason::ServerShutdown,
    ] {
        let mut client = connect_bearer(addr, &token("alice", 600)).await;
        let id = connection_id(&mut client).await;
        assert!(connections.close_connection(id, reason));
        assert_eq!(
            expect_close(&mut client).await,
            (reason.code(), reason.phrase().to_owned())
        );
        assert!(!connections.close_connection(id, reason));
        assert_alive(&mut bystander, "bystander").await;
    }
}

/// The status, `Retry-After` and `WWW-Authenticate` of a refused handshake.
async fn refused_headers(
    addr: SocketAddr,
    token: &str,
) -> (u16, Option<String>, Option<String>, String) {
    let auth = format!("Bearer {token}");
    match tokio_tungstenite::connect_async(request(addr, "/ws", &[("authorization", &auth)])).await
    {
        Err(tungstenite::Error::Http(response)) => {
            let header = |name| {
                response
                    .headers()
                    .get(name)
                    .map(|value: &tungstenite::http::HeaderValue| {
                        value.to_str().unwrap().to_owned()
                    })
            };
            (
                response.status().as_u16(),
                header("retry-after"),
                header("www-authenticate"),
                String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                    .into_owned(),
            )
        }
        Ok(_) => panic!("the handshake was accepted"),
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test]
async fn a_stale_list_fails_new_handshakes_closed_or_open_and_live_sockets_carry_on() {
    let (addr, connections) = start(builder()).await;
    let t = now();
    let mut live = connect_bearer(addr, &token_with("alice", 600, "a1", t)).await;
    connections.set_revocations_stale(Some(StalePolicy::FailClosed));
    let (status, retry_after, challenge, body) =
        refused_headers(addr, &token_with("alice", 600, "a2", t)).await;
    assert_eq!(status, 503);
    assert_eq!(retry_after.as_deref(), Some("5"));
    assert_eq!(challenge, None);
    assert_eq!(body, "revocation list unavailable\n");
    // Without a valid token, the answer is the usual 401: the node's state
    // is not for strangers.
    let refused = connect(addr, &[]).await.err().unwrap();
    assert_eq!(refused.status.as_u16(), 401);
    // The open socket keeps working, renewals included.
    assert_alive(&mut live, "still here").await;
    send_text(&mut live, &renew(&token_with("alice", 900, "a3", t), "r")).await;
    assert_eq!(next_control(&mut live).await["type"], "auth.renewed");

    connections.set_revocations_stale(Some(StalePolicy::FailOpen));
    let mut open = connect_bearer(addr, &token_with("alice", 600, "a4", t)).await;
    assert_alive(&mut open, "fail open").await;
    // Fail open still applies the entries this node has.
    connections.revoke(Selector::token("a5"));
    let (status, ..) = refused_headers(addr, &token_with("alice", 600, "a5", t)).await;
    assert_eq!(status, 401);
    connections.set_revocations_stale(None);
    let mut fresh = connect_bearer(addr, &token_with("alice", 600, "a6", t)).await;
    assert_alive(&mut fresh, "fresh").await;
}

#[tokio::test]
async fn a_reauthentication_request_is_answered_by_a_fresh_token_or_ends_the_socket() {
    // Long tokens: only the request brings a notice.
    let (addr, connections) = start(builder().leeway(Duration::ZERO)).await;
    let t = now();
    let mut answers = connect_bearer(addr, &token_with("alice", 600, "a1", t - 10)).await;
    let mut ignores = connect_bearer(addr, &token_with("alice", 600, "a2", t - 10)).await;
    let mut other = connect_bearer(addr, &token_with("bob", 600, "b1", t - 10)).await;
    wait_for(&connections, 3).await;
    let grace = Duration::from_secs(2);
    let before = now();
    let asked = connections.reauthenticate(Selector::user(Some(ISSUER), "alice"), grace);
    assert_eq!(asked, 2);
    let requested = now();
    for client in [&mut answers, &mut ignores] {
        let notice = next_control(client).await;
        assert_eq!(notice["type"], "auth.expiring");
        let exp = notice["exp"].as_u64().unwrap();
        assert!((before + 2..=requested + 3).contains(&exp), "{notice}");
        assert!(notice["expires_in"].as_u64().unwrap() <= 2, "{notice}");
    }
    // The current token does not answer it; a fresh one does.
    send_text(
        &mut answers,
        &renew(&token_with("alice", 600, "a1", t - 10), "old"),
    )
    .await;
    let rejected = next_control(&mut answers).await;
    assert_eq!(rejected["type"], "auth.renew_rejected", "{rejected}");
    assert_eq!(
        rejected["error_description"],
        "token issued before the re-authentication request"
    );
    send_text(
        &mut answers,
        &renew(&token_with("alice", 700, "a3", now()), "fresh"),
    )
    .await;
    assert_eq!(next_control(&mut answers).await["type"], "auth.renewed");

    // The one that did not renew is closed at the request's deadline, as
    // expired (its token's own exp is ten minutes away, past the frame
    // read's hang guard).
    assert_eq!(
        expect_close(&mut ignores).await,
        (4401, "token expired".to_owned())
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_alive(&mut answers, "renewed in time").await;
    assert_alive(&mut other, "not asked").await;
}
